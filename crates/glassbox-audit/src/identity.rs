//! What the release under audit is called (its folder, Hub cache id, card, `mof.yml`): to tell
//! code that starts from the release itself, and so fine-tunes it, from code that produced it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

use crate::card;
use crate::card_links::{hub_file_link, link_at};
use crate::content::{self, CodeRole};
use crate::mot::MotRelease;
use crate::snapshot::{read_text, strings};

/// What the release in `root` is called, each with how it is known, to tell training code
/// that starts from the release itself (and so fine-tunes it) from code that produced it:
/// - the folder's name, and the Hub id of a Hub cache folder (`models--ORG--NAME/snapshots/REV`);
/// - the card's `model_name` and `model-index` names;
/// - a Hub repository the card links a training script of this folder in (Phi-3's card links
///   `huggingface.co/microsoft/Phi-3-mini-4k-instruct/resolve/main/sample_finetune.py`);
/// - `mof.yml`'s release name.
///
/// A config's `_name_or_path` is not used: it records where the weights were loaded from when
/// they were saved, for a fine-tuned model often its base. Whatever names the card's
/// `base_model` is dropped: code starting from the base produced this release.
pub(crate) fn release_names(
    root: &Path,
    files: &[String],
    roles: &BTreeMap<String, CodeRole>,
) -> content::ReleaseNames {
    let mut names = content::ReleaseNames::default();
    let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let component = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().to_string())
    };
    if let Some(folder) = component(Some(&canonical)) {
        names
            .names
            .push((folder, "the release folder's name".into()));
    }
    let parent = canonical.parent();
    if component(parent).as_deref() == Some("snapshots") {
        if let Some(cache) = component(parent.and_then(Path::parent)) {
            if let Some((org, name)) = cache
                .strip_prefix("models--")
                .and_then(|r| r.split_once("--"))
            {
                names.repo_ids.push((
                    format!("{org}/{name}"),
                    format!("the Hub cache folder {cache}"),
                ));
            }
        }
    }
    let mut bases: Vec<String> = Vec::new();
    if let Some(card_rel) = files.iter().find(|f| f.eq_ignore_ascii_case("README.md")) {
        let path = root.join(card_rel);
        let text = read_text(&path).unwrap_or_default();
        // A card whose front matter does not parse is reported by the audit itself.
        let (fm, _) = card::front_matter(&text, &path).unwrap_or((None, String::new()));
        if let Some(fm) = &fm {
            bases = strings(fm.get("base_model"));
            for n in strings(fm.get("model_name")) {
                names
                    .names
                    .push((n, format!("the card's `model_name` in {card_rel}")));
            }
            if let Some(Value::Sequence(entries)) = fm.get("model-index") {
                for n in entries.iter().filter_map(|e| e.get("name")?.as_str()) {
                    names.names.push((
                        n.to_string(),
                        format!("the card's `model-index` in {card_rel}"),
                    ));
                }
            }
        }
        for (n, line) in text.lines().enumerate() {
            for (at, _) in line.match_indices("huggingface.co/") {
                let link = link_at(&line[at..]);
                let Some((id, file)) = hub_file_link(&link) else {
                    continue;
                };
                if roles.get(&file) == Some(&CodeRole::Training) {
                    names.repo_ids.push((
                        id,
                        format!("{card_rel} line {} links {file} in that repository", n + 1),
                    ));
                }
            }
        }
    }
    if let Some(mot_rel) = files
        .iter()
        .find(|f| matches!(f.to_lowercase().as_str(), "mof.yml" | "mof.yaml"))
    {
        if let Ok(mot) = MotRelease::read(&root.join(mot_rel)) {
            names
                .names
                .push((mot.name, format!("the release name in {mot_rel}")));
        }
    }
    // Code that starts from the base model is how this release was made.
    let base_named = |n: &str| {
        bases.iter().any(|b| {
            b.eq_ignore_ascii_case(n)
                || b.rsplit('/')
                    .next()
                    .is_some_and(|l| l.eq_ignore_ascii_case(n))
        })
    };
    names.repo_ids.retain(|(id, _)| !base_named(id));
    names
        .names
        .retain(|(n, _)| !n.trim().is_empty() && !base_named(n));
    names
}
