//! The licences of what a release names but does not ship (`data/third_party.yaml`, sourced
//! and dated): a declared dataset keeps its own licence, and the library a card names as the
//! code that runs the model has its own; each is looked up here and is `unknown` otherwise —
//! never the model's.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::licenses::{self, LicenseInfo};

#[derive(Debug, Clone, Deserialize)]
pub struct Fact {
    #[serde(alias = "name")]
    pub id: String,
    pub license: String,
    pub source: String,
    pub note: Option<String>,
    /// When this fact was recorded, where it is not the file's `checked`.
    pub checked: Option<String>,
}

#[derive(Deserialize)]
struct ThirdPartyFile {
    checked: String,
    datasets: Vec<Fact>,
    libraries: Vec<Fact>,
}

fn file() -> &'static ThirdPartyFile {
    static F: OnceLock<ThirdPartyFile> = OnceLock::new();
    F.get_or_init(|| {
        serde_yaml::from_str(include_str!("../data/third_party.yaml"))
            .expect("data/third_party.yaml is checked by the crate's tests")
    })
}

/// Every recorded dataset.
pub fn datasets() -> &'static [Fact] {
    &file().datasets
}

/// Every recorded library.
pub fn libraries() -> &'static [Fact] {
    &file().libraries
}

fn lookup(table: &[Fact], what: &str, id: &str) -> (LicenseInfo, String) {
    let id = id.trim();
    match table.iter().find(|d| d.id.eq_ignore_ascii_case(id)) {
        Some(d) => {
            let mut info = licenses::classify(&d.license);
            info.source = Some(d.source.clone());
            (
                info,
                format!(
                    "{what} registry: {} ({}, {})",
                    d.id,
                    d.source,
                    d.checked.as_deref().unwrap_or(&file().checked)
                ),
            )
        }
        None => (
            licenses::classify(&format!("unknown licence of {what} {id}")),
            format!("{id}: not in the {what} registry, its licence is unknown"),
        ),
    }
}

/// The licence of the dataset `id` (case-insensitive) and where it is recorded; an unknown
/// licence (`known() == false`) when it is not recorded or its terms are `other`.
pub fn dataset_license(id: &str) -> (LicenseInfo, String) {
    lookup(datasets(), "dataset", id)
}

/// The licence of the library `name` (a card's `library_name`), as [`dataset_license`].
pub fn library_license(name: &str) -> (LicenseInfo, String) {
    lookup(libraries(), "library", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recorded_licence_is_known_or_other() {
        assert!(datasets().len() >= 10 && !libraries().is_empty());
        for d in datasets().iter().chain(libraries()) {
            let info = licenses::classify(&d.license);
            assert!(
                info.known() || d.license == "other",
                "{}: {}",
                d.id,
                d.license
            );
        }
        assert!(!dataset_license("someone/private-crawl").0.known());
        // OLMo 2's mixes, as its card lists them; the Pile's data has no one licence on record
        for mix in ["allenai/olmo-mix-1124", "allenai/dolmino-mix-1124"] {
            assert_eq!(
                dataset_license(mix).0.id.as_deref(),
                Some("ODC-By-1.0"),
                "{mix}"
            );
        }
        assert!(dataset_license("allenai/olmo-mix-1124")
            .1
            .contains("2026-11-26"));
        assert!(!dataset_license("EleutherAI/pile").0.known());
        assert_eq!(
            dataset_license("allenai/DOLMA").0.id.as_deref(),
            Some("ODC-By-1.0")
        );
        assert_eq!(
            library_license("transformers").0.id.as_deref(),
            Some("Apache-2.0")
        );
    }
}
