//! The built-in registry of well-known releases (`data/registry.yaml`), offline.
//!
//! Each entry names the version its facts apply to (licences change between versions)
//! and each fact carries its source URL and the date it was recorded. `basis` says how
//! far the facts were verified: `stored-source` (checked against the OSI's published
//! validation, MOT's or the OSAI Index's data), or `recalled` (from the producer's
//! published model card, not re-checked offline).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::audit::{blank_components, resolve_component_licenses, Evidence, EvidenceKind, Release};
use crate::licenses::RestrictionKind;
use crate::mot::MotRelease;

#[derive(Debug, Clone, Deserialize)]
pub struct Fact {
    #[serde(default = "yes")]
    pub available: bool,
    pub license: Option<String>,
    pub source: String,
    pub checked: Option<String>,
    pub note: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub name: String,
    pub version: String,
    pub producer: String,
    pub checked: String,
    pub basis: String,
    /// The OSI's OSAID 1.0 validation outcome, where the OSI published one:
    /// `pass`, `fail`, or `fail-license` (would pass with other licence terms).
    pub osi_validation: Option<String>,
    pub osi_source: Option<String>,
    pub note: Option<String>,
    /// MOT's own description of this release (a file name in `data/mot/models/`, MIT, from
    /// github.com/lfai/model_openness_tool), whose class and completeness the audit reports.
    pub mot: Option<String>,
    /// Restrictions of the weights' licence that do not bind this release, each with its source.
    #[serde(default)]
    pub not_restricted_by: Vec<Exemption>,
    /// Facts by component key (see `COMPONENT_KEYS`).
    pub facts: BTreeMap<String, Fact>,
}

/// Registry fact keys and the MOF component each describes.
pub const COMPONENT_KEYS: &[(&str, u32)] = &[
    ("weights", 10),
    ("intermediate", 24),
    ("architecture", 9),
    ("training_code", 7),
    ("data_code", 16),
    ("inference_code", 8),
    ("eval_code", 18),
    ("eval_data", 19),
    ("eval_results", 12),
    ("model_card", 13),
    ("data_card", 14),
    ("tech_report", 11),
    ("paper", 21),
    ("datasets", 15),
    ("metadata", 17),
    ("libraries", 22),
    ("samples", 20),
];

/// The MOT model files registry entries name (`mot:`), embedded: the audit runs offline.
const MOT_FILES: &[(&str, &str)] = &[
    (
        "Pythia-6.9B.yml",
        include_str!("../data/mot/models/Pythia-6.9B.yml"),
    ),
    (
        "OLMo-7B.yml",
        include_str!("../data/mot/models/OLMo-7B.yml"),
    ),
    ("Amber.yml", include_str!("../data/mot/models/Amber.yml")),
    (
        "CrystalCoder.yml",
        include_str!("../data/mot/models/CrystalCoder.yml"),
    ),
    ("T5-11b.yml", include_str!("../data/mot/models/T5-11b.yml")),
    (
        "Llama-2-7B.yml",
        include_str!("../data/mot/models/Llama-2-7B.yml"),
    ),
    ("Grok-1.yml", include_str!("../data/mot/models/Grok-1.yml")),
    ("Phi-2.yml", include_str!("../data/mot/models/Phi-2.yml")),
    (
        "Mixtral-8x7B-v0.1.yml",
        include_str!("../data/mot/models/Mixtral-8x7B-v0.1.yml"),
    ),
    ("BLOOM.yml", include_str!("../data/mot/models/BLOOM.yml")),
    (
        "Falcon-180B.yml",
        include_str!("../data/mot/models/Falcon-180B.yml"),
    ),
    (
        "Falcon-40B.yml",
        include_str!("../data/mot/models/Falcon-40B.yml"),
    ),
    (
        "Llama-3-8B.yml",
        include_str!("../data/mot/models/Llama-3-8B.yml"),
    ),
    (
        "Llama-3.1-8B.yml",
        include_str!("../data/mot/models/Llama-3.1-8B.yml"),
    ),
    (
        "Qwen2.5-7B.yml",
        include_str!("../data/mot/models/Qwen2.5-7B.yml"),
    ),
    (
        "DeepSeek-V3.yml",
        include_str!("../data/mot/models/DeepSeek-V3.yml"),
    ),
    (
        "DeepSeek-R1.yml",
        include_str!("../data/mot/models/DeepSeek-R1.yml"),
    ),
];

/// A restriction of a licence that does not apply to a release, and why.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Exemption {
    pub kind: RestrictionKind,
    pub source: String,
    pub why: String,
}

/// A name that stands for several releases with different terms.
#[derive(Debug, Clone, Deserialize)]
pub struct Family {
    pub name: String,
    pub candidates: Vec<String>,
    pub note: Option<String>,
}

#[derive(Deserialize)]
struct RegistryFile {
    #[serde(default)]
    families: Vec<Family>,
    entries: Vec<Entry>,
}

fn file() -> &'static RegistryFile {
    static R: OnceLock<RegistryFile> = OnceLock::new();
    R.get_or_init(|| {
        serde_yaml::from_str(include_str!("../data/registry.yaml"))
            .expect("data/registry.yaml is checked by the crate's tests")
    })
}

/// All entries, parsed once from the embedded data file.
pub fn entries() -> &'static [Entry] {
    &file().entries
}

/// The names that stand for several releases.
pub fn families() -> &'static [Family] {
    &file().families
}

/// The family `name` stands for, case-insensitively, when it names one (not a release).
pub fn family(name: &str) -> Option<&'static Family> {
    let name = name.trim().trim_end_matches('/');
    families()
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}

/// Finds an entry by id or alias, case-insensitively.
pub fn lookup(id: &str) -> Option<&'static Entry> {
    let id = id.trim().trim_end_matches('/');
    entries().iter().find(|e| {
        e.id.eq_ignore_ascii_case(id) || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
    })
}

impl Entry {
    /// How a fact is known, said in full: only the weights licence of a `stored-source` entry
    /// (recorded on the entry's date) was checked against the sources stored with the project;
    /// every other fact is recalled from its cited page, not re-verified.
    pub fn basis_of(&self, key: &str, fact: &Fact) -> String {
        if self.basis == "stored-source" && key == "weights" && fact.checked.is_none() {
            format!(
                "verified against the stored OSI, MOT and OSAI-index data on {}",
                self.checked
            )
        } else {
            format!(
                "recalled from the cited source on {}, not re-verified",
                fact.checked.as_deref().unwrap_or(&self.checked)
            )
        }
    }

    /// MOT's description of this release, when the entry names one (embedded data, checked
    /// by the crate's tests like the registry itself).
    pub fn mot_release(&self) -> Option<MotRelease> {
        let file = self.mot.as_deref()?;
        let (_, text) = MOT_FILES.iter().find(|(name, _)| *name == file)?;
        MotRelease::parse(text, &Path::new("data/mot/models").join(file)).ok()
    }

    /// Turns the entry's facts into evidence.
    pub fn release(&self) -> Release {
        let mut components = blank_components();
        let mut own = BTreeMap::new();
        let mut notes = Vec::new();
        for (key, fact) in &self.facts {
            let Some(&(_, id)) = COMPONENT_KEYS.iter().find(|(k, _)| k == key) else {
                notes.push(format!("registry: unknown fact `{key}` ignored"));
                continue;
            };
            let comp = components
                .iter_mut()
                .find(|c| c.id == id)
                .expect("all components listed");
            let checked = fact.checked.clone().unwrap_or_else(|| self.checked.clone());
            let basis = self.basis_of(key, fact);
            comp.evidence = if fact.available {
                Evidence {
                    kind: EvidenceKind::Registry,
                    detail: format!("{} — {basis}", fact.source),
                    checked: Some(checked),
                }
            } else {
                Evidence::absent(format!("not released ({} — {basis})", fact.source))
            };
            own.insert(id, fact.license.clone());
            if let Some(n) = &fact.note {
                notes.push(format!("{key}: {n}"));
            }
        }
        if let Some(n) = &self.note {
            notes.push(n.clone());
        }
        notes.push(format!(
            "registry facts for {} ({}); basis: {}",
            self.name, self.version, self.basis
        ));
        if let Some(outcome) = &self.osi_validation {
            notes.push(format!(
                "OSI OSAID 1.0 validation: {outcome} ({})",
                self.osi_source
                    .as_deref()
                    .unwrap_or("https://opensource.org/ai")
            ));
        }
        // Registry facts state each component's licence directly.
        resolve_component_licenses(&mut components, &own, &[]);
        Release {
            name: self.id.clone(),
            version: Some(self.version.clone()),
            input: "registry".into(),
            components,
            release_licenses: vec![],
            restrictions: vec![],
            license_files: vec![],
            data_statements: vec![],
            exemptions: self.not_restricted_by.clone(),
            notes,
            mot_model: self.mot_release().map(|m| m.mof_model()),
        }
    }
}

/// The registry as `glassbox audit --list --json` prints it: each entry's id, name, version,
/// producer, tier, weights licence, OSI validation, when it was checked and on what basis.
pub fn list_document() -> serde_json::Value {
    let rows: Vec<_> = entries()
        .iter()
        .map(|e| {
            let a = e.release().audit();
            serde_json::json!({
                "id": e.id, "name": e.name, "version": e.version, "producer": e.producer,
                "tier": a.tier, "weights_license": a.weights_license.as_ref().map(|l| l.display()),
                "osi_validation": e.osi_validation, "checked": e.checked, "basis": e.basis,
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}
