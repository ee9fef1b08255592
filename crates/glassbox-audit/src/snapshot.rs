//! Gathering evidence from a local Hub snapshot directory (see the crate docs for the
//! exact file and front-matter rules).

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

use crate::audit::{
    blank_components, resolve_component_licenses, ComponentEvidence, Evidence, EvidenceKind,
    LicenseFile, Release, Restriction,
};
use crate::card;
use crate::card_links::declared_links;
use crate::content::{self, CodeRole, DataStatement};
use crate::identity::release_names;
use crate::licenses::{self, LicenseInfo};
use crate::mot::MotRelease;
use crate::paths::{component_of, is_code_file, is_license_file, is_terms_file, license_scope};
use crate::third_party;
use crate::AuditError;

/// The most files looked at, and the deepest directory level, so a huge or deep tree
/// cannot stall the audit.
const MAX_FILES: usize = 20_000;
const MAX_DEPTH: usize = 6;
/// Licence and card files larger than this are not read (no real licence is this long).
const MAX_TEXT_BYTES: u64 = 2 << 20;
/// The most code files whose text is read to see what they do.
const MAX_CODE_READ: usize = 2_000;

/// Walks the tree; returns relative paths with `/` separators.
fn list_files(root: &Path) -> Result<Vec<String>, AuditError> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(source) if depth == 0 => {
                return Err(AuditError::Io {
                    path: dir.clone(),
                    source,
                })
            }
            // An unreadable subdirectory is skipped: what it holds is simply not evidence.
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth < MAX_DEPTH {
                stack.push((path, depth + 1));
            } else if kind.is_file() || kind.is_symlink() {
                if let Ok(rel) = path.strip_prefix(root) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
                if out.len() >= MAX_FILES {
                    return Ok(out);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `path` is a regular file larger than [`read_text`] reads (it then reads nothing).
fn too_large(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > MAX_TEXT_BYTES)
}

pub(crate) fn read_text(path: &Path) -> Result<String, AuditError> {
    let meta = std::fs::metadata(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Too large to be a card or licence, or not a regular file (a FIFO would block the read,
    // a device never end): not evidence.
    if meta.len() > MAX_TEXT_BYTES || !meta.is_file() {
        return Ok(String::new());
    }
    // Read no further than the bound: a file can hold more than its size says (`/proc`
    // files say 0, and a link to /proc/self/pagemap read on to gigabytes).
    use std::io::Read;
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_TEXT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_TEXT_BYTES {
        return Ok(String::new());
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

fn set(components: &mut [ComponentEvidence], id: u32, evidence: Evidence) {
    if let Some(c) = components.iter_mut().find(|c| c.id == id) {
        // Present beats declared beats absent; the first of equal rank stays.
        let rank = |k: EvidenceKind| match k {
            EvidenceKind::Present => 0,
            EvidenceKind::Registry => 1,
            EvidenceKind::Declared => 2,
            EvidenceKind::Absent => 3,
        };
        if rank(evidence.kind) < rank(c.evidence.kind) {
            c.evidence = evidence;
        }
    }
}

fn present(detail: impl Into<String>) -> Evidence {
    Evidence {
        kind: EvidenceKind::Present,
        detail: detail.into(),
        checked: None,
    }
}

fn declared(detail: impl Into<String>) -> Evidence {
    Evidence {
        kind: EvidenceKind::Declared,
        detail: detail.into(),
        checked: None,
    }
}

/// What a licence text that is a changed standard licence adds, quoted (and what it lacks).
fn variant_summary(ident: &licenses::TextIdentification) -> String {
    let mut parts: Vec<String> = ident
        .additional_text
        .iter()
        .take(3)
        .map(|l| format!("line {}: \"{}\"", l.line, l.quote))
        .collect();
    if ident.additional_text.len() > 3 {
        parts.push(format!("{} more line(s)", ident.additional_text.len() - 3));
    }
    if parts.is_empty() {
        parts.push("nothing added".into());
    }
    if ident.missing_words > 0 {
        parts.push(format!(
            "{} word(s) of its text missing",
            ident.missing_words
        ));
    }
    format!("added: {}", parts.join("; "))
}

/// A licence text that could not be identified: its terms are unknown.
fn unidentified(rel: &str) -> LicenseInfo {
    licenses::classify(&format!("unidentified licence text in {rel}"))
}

/// What a directory knows about licences, for finding the one that applies to a file.
struct LicenseScope<'a> {
    root: &'a Path,
    files: &'a [String],
    /// The card's (or `mof.yml`'s) release licences: the repository's declared terms.
    declared: &'a [(String, LicenseInfo, Evidence)],
}

impl LicenseScope<'_> {
    /// The licence evidence of file `rel`, holding component `id`, most specific first: an
    /// SPDX header in the file; a licence file in its folder or the nearest folder above it
    /// (at the top level, a file scoped to the component's content type — `LICENSE-DATA` for
    /// data — before the plain `LICENSE`); the repository's declared licence. A licence text
    /// that cannot be identified makes the terms unknown. None when nothing applies.
    fn of_file(&self, rel: &str, id: u32) -> Option<(LicenseInfo, String)> {
        if is_code_file(rel) {
            if let Ok(text) = read_text(&self.root.join(rel)) {
                if let Some(spdx) = content::spdx_header(&text) {
                    return Some((licenses::classify(&spdx), format!("SPDX header in {rel}")));
                }
            }
        }
        let kind = crate::mof::component(id).content_type.as_str();
        let mut dir = rel.rsplit_once('/').map(|(d, _)| d.to_string());
        loop {
            let here: Vec<&String> = self
                .files
                .iter()
                .filter(|f| {
                    let parent = f.rsplit_once('/').map(|(d, _)| d);
                    parent == dir.as_deref() && is_license_file(f)
                })
                .collect();
            let chosen = if dir.is_none() {
                let scoped = here
                    .iter()
                    .find(|f| license_scope(f) == Some(kind))
                    .copied();
                if scoped.is_none() {
                    // The release's own statement for this content type (`mof.yml`'s
                    // `release.license.data`, say) is more specific than a plain LICENSE.
                    if let Some((_, l, e)) = self.declared.iter().find(|(s, _, _)| s == kind) {
                        return Some((
                            l.clone(),
                            format!("the release's {kind} licence ({})", e.detail),
                        ));
                    }
                }
                scoped.or_else(|| {
                    here.iter()
                        .find(|f| license_scope(f) == Some("distribution"))
                        .copied()
                })
            } else {
                here.first().copied()
            };
            if let Some(lf) = chosen {
                // At the top, the release's reading of its licence file stands: the file's
                // licence, the card's where the file is not identified, both where they conflict.
                if dir.is_none() {
                    let scope = license_scope(lf);
                    if let Some((_, l, e)) = self
                        .declared
                        .iter()
                        .find(|(s, _, _)| Some(s.as_str()) == scope)
                    {
                        return Some((
                            l.clone(),
                            format!("{lf} (the release's licence: {})", e.detail),
                        ));
                    }
                }
                let text = read_text(&self.root.join(lf)).unwrap_or_default();
                let info = match licenses::identify_text(&text).id {
                    Some(found) => licenses::classify(&found),
                    None => unidentified(lf),
                };
                return Some((info, lf.clone()));
            }
            match dir {
                None => break,
                Some(d) => dir = d.rsplit_once('/').map(|(p, _)| p.to_string()),
            }
        }
        self.declared
            .iter()
            .find(|(scope, _, _)| scope == "distribution")
            .map(|(_, l, e)| {
                (
                    l.clone(),
                    format!("the repository's licence ({})", e.detail),
                )
            })
    }
}

/// Gathers the evidence in a snapshot directory.
pub fn gather(root: &Path) -> Result<Release, AuditError> {
    if !root.is_dir() {
        return Err(AuditError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let files = list_files(root)?;
    let mut components = blank_components();
    let mut notes = Vec::new();
    let mut own_licenses: BTreeMap<u32, Option<String>> = BTreeMap::new();
    // Licences stated for components that are declared, not shipped (a card sentence, a
    // dataset or library registry fact); anything declared without one is unknown.
    let mut declared_licenses: BTreeMap<u32, (LicenseInfo, String)> = BTreeMap::new();
    let mut release_licenses: Vec<(String, LicenseInfo, Evidence)> = Vec::new();
    let mut restrictions = Vec::new();
    let mut license_files = Vec::new();
    let mut data_statements: Vec<DataStatement> = Vec::new();
    // The folder's own name, also for `.` or `..` (which have none as written).
    let mut name = root
        .canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(root)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| root.display().to_string());
    let mut version = None;

    let mut roles: BTreeMap<String, CodeRole> = BTreeMap::new();
    let mut code_read = 0usize;
    for rel in &files {
        // What code does is read from at most MAX_CODE_READ files, so a huge tree stays quick.
        let role = if is_code_file(rel) && code_read < MAX_CODE_READ {
            code_read += 1;
            read_text(&root.join(rel))
                .ok()
                .and_then(|t| content::code_role(&t))
        } else {
            None
        };
        if let Some(r) = role {
            roles.insert(rel.clone(), r);
        }
    }
    // Training code that starts from the release itself fine-tunes it: an example of use, not
    // the code that produced the released parameters.
    let release = release_names(root, &files, &roles);
    let mut fine_tuning_examples = Vec::new();
    for (rel, role) in roles.iter_mut() {
        if *role != CodeRole::Training {
            continue;
        }
        let text = read_text(&root.join(rel)).unwrap_or_default();
        if let Some((loaded, how)) =
            content::starts_from_release(&text, rel.matches('/').count(), &release)
        {
            *role = CodeRole::FineTunesRelease;
            notes.push(format!(
                "{rel} fine-tunes this release: it starts from `{loaded}`, the release itself ({how}); a fine-tuning example, not the code that produced the released parameters, so not training code"
            ));
            fine_tuning_examples.push(rel.clone());
        }
    }
    for rel in &files {
        if let Some(id) = component_of(rel, roles.get(rel).copied()) {
            set(&mut components, id, present(rel));
        }
    }
    if !fine_tuning_examples.is_empty() {
        if let Some(c) = components
            .iter_mut()
            .find(|c| c.id == 7 && c.evidence.kind == EvidenceKind::Absent)
        {
            c.evidence = Evidence::absent(format!(
                "not found ({} fine-tunes the release itself)",
                fine_tuning_examples.join(", ")
            ));
        }
    }

    // The model card.
    let card_rel = files
        .iter()
        .find(|f| f.eq_ignore_ascii_case("README.md"))
        .cloned();
    if let Some(card_rel) = &card_rel {
        let card_path = root.join(card_rel);
        let card_text = read_text(&card_path)?;
        let (fm, body) = card::front_matter(&card_text, &card_path)?;
        // The body's first line in the file: links are reported at the file's own lines.
        let body_first_line = card_text.lines().count() - body.lines().count() + 1;
        let unfilled = body.matches("[More Information Needed]").count();
        if unfilled >= 3 {
            // The Hub's template card, not filled in: no usage information.
            notes.push(format!(
                "{card_rel} is the Hub's model-card template, unfilled ({unfilled} × \"[More Information Needed]\"): it does not count as a model card"
            ));
            set(
                &mut components,
                13,
                Evidence::absent(format!("{card_rel} is an unfilled template")),
            );
        } else {
            set(&mut components, 13, present(card_rel));
        }
        data_statements.extend(content::data_statements(card_rel, &card_text));
        for (id, detail, line) in declared_links(&body, body_first_line) {
            set(&mut components, id, declared(detail.clone()));
            if let Some(lic) = content::license_named_in(&line) {
                declared_licenses.entry(id).or_insert((
                    licenses::classify(lic),
                    format!("{detail} (stated on that line)"),
                ));
            }
        }
        if let Some(fm) = fm {
            let license_ids = strings(fm.get("license"));
            if let Some(v) = fm.get("license").filter(|_| license_ids.is_empty()) {
                if !v.is_null() {
                    let shown = serde_yaml::to_string(v).unwrap_or_default();
                    notes.push(format!(
                        "card `license` is not a licence id or a list of them (`{}`): ignored, so the card names no licence",
                        shown.trim()
                    ));
                }
            }
            let license_name = strings(fm.get("license_name")).into_iter().next();
            let license_link = strings(fm.get("license_link")).into_iter().next();
            if let Some(first) = license_ids.first() {
                let mut info = if first.eq_ignore_ascii_case("other") {
                    license_name
                        .as_deref()
                        .map(licenses::classify)
                        .unwrap_or_else(|| licenses::classify(first))
                } else if license_ids.len() > 1 {
                    licenses::classify(&license_ids.join(" AND "))
                } else {
                    licenses::classify(first)
                };
                if info.source.is_none() {
                    info.source = license_link.clone();
                }
                if !info.known() {
                    notes.push(format!(
                        "card licence `{}`{} is not a licence this tool knows: its terms are unknown",
                        first,
                        license_name.as_deref().map(|n| format!(" (license_name `{n}`)")).unwrap_or_default()
                    ));
                }
                release_licenses.push((
                    "distribution".into(),
                    info,
                    declared("README.md front matter `license`"),
                ));
            }
            let datasets = strings(fm.get("datasets"));
            if !datasets.is_empty() {
                set(
                    &mut components,
                    15,
                    declared(format!(
                        "README.md front matter `datasets`: {}",
                        datasets.join(", ")
                    )),
                );
                declared_licenses.insert(15, datasets_license(&datasets));
            }
            if fm.get("model-index").is_some() {
                set(
                    &mut components,
                    12,
                    present("README.md front matter `model-index`"),
                );
            }
            if let Some(lib) = strings(fm.get("library_name")).first() {
                set(
                    &mut components,
                    8,
                    declared(format!("README.md front matter `library_name`: {lib}")),
                );
                declared_licenses.insert(8, third_party::library_license(lib));
            }
            if let Some(base) = strings(fm.get("base_model")).first() {
                let relation = strings(fm.get("base_model_relation"))
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "derived".into());
                notes.push(format!(
                    "{relation} from base model {base}: the base model's terms may also apply"
                ));
            }
            if let Some(n) = strings(fm.get("model_name")).first() {
                name = n.clone();
            }
        }
    }
    // Data cards are read, not just found.
    for rel in files.iter().filter(|f| component_of(f, None) == Some(14)) {
        if let Ok(text) = read_text(&root.join(rel)) {
            data_statements.extend(content::data_statements(rel, &text));
        }
    }

    // Licence and terms files.
    for rel in files.iter().filter(|f| is_terms_file(f)) {
        if too_large(&root.join(rel)) {
            notes.push(format!(
                "{rel}: larger than {} MB, too large to read as a licence or terms: not read, its terms unknown",
                MAX_TEXT_BYTES >> 20
            ));
        }
        let text = read_text(&root.join(rel))?;
        let ident = licenses::identify_text(&text);
        for clause in &ident.restrictions {
            restrictions.push(Restriction {
                kind: clause.kind,
                description: clause.kind.describe(),
                source: format!("{rel}:{}", clause.line),
                quote: Some(clause.quote.clone()),
            });
        }
        license_files.push(LicenseFile::from_identification(rel, &ident));
        let Some(scope) = license_scope(rel) else {
            continue;
        };
        let pos = release_licenses.iter().position(|(s, _, _)| s == scope);
        let Some(id) = ident.id else {
            if let Some(variant) = &ident.variant_of {
                // A standard licence with terms added (or parts removed): not that licence,
                // whatever the card says; its terms are unknown.
                let info = licenses::classify(&format!("{variant} with additional terms ({rel})"));
                notes.push(format!(
                    "{rel}: the text of {variant} with changes, so not {variant}: {}; terms under it are unknown",
                    variant_summary(&ident)
                ));
                match pos {
                    Some(pos) => release_licenses[pos] = (scope.to_string(), info, present(rel)),
                    None => release_licenses.push((scope.to_string(), info, present(rel))),
                }
                continue;
            }
            match pos.map(|p| &release_licenses[p]) {
                Some((_, card, from)) if card.known() => notes.push(format!(
                    "{rel}: licence text not identified; the licence {} that {} names is used",
                    card.display(),
                    from.detail
                )),
                _ => notes.push(format!(
                    "{rel}: licence text not identified: terms under it are unknown"
                )),
            }
            continue;
        };
        let info = licenses::classify(&id);
        let Some(pos) = pos else {
            release_licenses.push((scope.to_string(), info, present(rel)));
            continue;
        };
        let (_, card, card_from) = &release_licenses[pos];
        if card.id.as_deref() == Some(id.as_str()) || !card.known() {
            if card.id.as_deref() != Some(id.as_str()) {
                notes.push(format!(
                    "the card declares {} but {rel} is the text of {id}; the file is used",
                    card.display()
                ));
            }
            release_licenses[pos] = (scope.to_string(), info, present(rel));
            continue;
        }
        // The card and the file name different licences: both are taken to apply (the more
        // restrictive reading), so the release is never open on the looser one alone.
        let card_id = card.id.clone().unwrap_or_else(|| card.written.clone());
        let both = licenses::classify(&format!("({card_id}) AND ({id})"));
        let both = if both.known() {
            both
        } else {
            licenses::classify(&format!("conflicting licences {card_id} and {id}"))
        };
        notes.push(format!(
            "licences conflict: {} says {} (`{}`) but {rel} is the text of {id}; both are taken to apply ({})",
            card_from.detail,
            card.display(),
            card.written,
            both.display()
        ));
        let evidence = present(format!("{rel} and {}", card_from.detail));
        release_licenses[pos] = (scope.to_string(), both, evidence);
    }
    // Licence files in sub-folders (a component's own terms) are listed too.
    for rel in files
        .iter()
        .filter(|f| f.contains('/') && is_license_file(f))
    {
        let ident = licenses::identify_text(&read_text(&root.join(rel))?);
        if ident.id.is_none() {
            let what = match &ident.variant_of {
                Some(v) => format!("the text of {v} with changes ({})", variant_summary(&ident)),
                None => "licence text not identified".into(),
            };
            notes.push(format!(
                "{rel}: {what}: what its folder holds has unknown terms"
            ));
        }
        license_files.push(LicenseFile::from_identification(rel, &ident));
    }

    // A MOT description shipped with the release.
    let mot_rel = files
        .iter()
        .find(|f| matches!(f.to_lowercase().as_str(), "mof.yml" | "mof.yaml"))
        .cloned();
    if let Some(mot_rel) = mot_rel {
        let mot = MotRelease::read(&root.join(&mot_rel))?;
        name = mot.name.clone();
        version = mot.version.clone();
        for comp in &mot.components {
            let ev = match &comp.component_path {
                Some(p) if p.starts_with("http://") || p.starts_with("https://") => {
                    declared(format!("{mot_rel}: {p}"))
                }
                Some(p) => {
                    let local = p.trim_start_matches("./");
                    let training_role = roles.get(local).copied();
                    if !root.join(local).exists() {
                        notes.push(format!(
                            "{mot_rel} lists {} at {p}, which is not in the directory",
                            comp.name
                        ));
                        Evidence::absent(format!("{mot_rel} lists {p}, not found"))
                    } else if comp.id == 7 && training_role == Some(CodeRole::FineTunesRelease) {
                        notes.push(format!(
                            "{mot_rel} lists {p} as training code, but it fine-tunes the release itself"
                        ));
                        Evidence::absent(format!(
                            "{p} (listed in {mot_rel}) fine-tunes the release itself"
                        ))
                    } else if comp.id == 7 && training_role != Some(CodeRole::Training) {
                        // Training code is recognised by what it does.
                        notes.push(format!(
                            "{mot_rel} lists {p} as training code, but it runs no training loop"
                        ));
                        Evidence::absent(format!("{p} (listed in {mot_rel}) runs no training loop"))
                    } else {
                        present(local)
                    }
                }
                None => declared(format!("listed in {mot_rel}")),
            };
            set(&mut components, comp.id, ev);
            match &comp.license {
                crate::mof::ComponentLicense::Id(l) => {
                    own_licenses.insert(comp.id, Some(l.clone()));
                }
                crate::mof::ComponentLicense::Unlicensed => {
                    own_licenses.insert(comp.id, None);
                }
                crate::mof::ComponentLicense::Inherit => {}
            }
        }
        for (scope, (lic, path)) in &mot.global {
            if release_licenses.iter().any(|(s, _, _)| s == scope) {
                continue;
            }
            let detail = path
                .clone()
                .unwrap_or_else(|| format!("{mot_rel} release.license.{scope}"));
            release_licenses.push((scope.clone(), licenses::classify(lic), declared(detail)));
        }
    }

    if release_licenses.is_empty() {
        notes.push("no licence found (no card `license`, no LICENSE file): by default no rights are granted".into());
    }
    let scope = LicenseScope {
        root,
        files: &files,
        declared: &release_licenses,
    };
    evidence_licenses(
        &mut components,
        &own_licenses,
        &declared_licenses,
        &scope,
        &mut notes,
    );
    Ok(Release {
        name,
        version,
        input: "directory".into(),
        components,
        release_licenses,
        restrictions,
        license_files,
        data_statements,
        exemptions: vec![],
        notes,
        mot_model: None,
    })
}

/// The Datasets component's licence from each declared dataset's own: their conjunction when
/// every one is recorded, unknown (naming the unrecorded) otherwise.
fn datasets_license(ids: &[String]) -> (LicenseInfo, String) {
    let each: Vec<(LicenseInfo, String)> = ids
        .iter()
        .map(|d| third_party::dataset_license(d))
        .collect();
    let unknown: Vec<&str> = ids
        .iter()
        .zip(&each)
        .filter(|(_, (l, _))| !l.known())
        .map(|(d, _)| d.as_str())
        .collect();
    if !unknown.is_empty() {
        return (
            licenses::classify(&format!(
                "unknown licence of dataset {}",
                unknown.join(", ")
            )),
            format!(
                "not in the dataset registry, so of unknown terms: {}",
                unknown.join(", ")
            ),
        );
    }
    let mut ids_seen: Vec<String> = Vec::new();
    for (l, _) in &each {
        let id = l.id.clone().unwrap_or_else(|| l.written.clone());
        if !ids_seen.contains(&id) {
            ids_seen.push(id);
        }
    }
    let expression = ids_seen
        .iter()
        .map(|i| {
            if i.contains(' ') {
                format!("({i})")
            } else {
                i.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let sources: Vec<String> = each.into_iter().map(|(_, s)| s).collect();
    (licenses::classify(&expression), sources.join("; "))
}

/// Each available component's licence from evidence about that component (crate docs): its
/// own statement in `mof.yml`; for a file, [`LicenseScope::of_file`]; for something declared,
/// a licence stated for it or a registry fact; otherwise unknown — never another component's.
fn evidence_licenses(
    components: &mut [ComponentEvidence],
    own: &BTreeMap<u32, Option<String>>,
    declared_licenses: &BTreeMap<u32, (LicenseInfo, String)>,
    scope: &LicenseScope,
    notes: &mut Vec<String>,
) {
    for comp in components.iter_mut() {
        comp.license = match (own.get(&comp.id), comp.evidence.kind) {
            (_, EvidenceKind::Absent) => None,
            (Some(Some(id)), _) => Some(licenses::classify(id)),
            (Some(None), _) => None,
            (None, EvidenceKind::Present) => {
                let file = comp
                    .evidence
                    .detail
                    .split(" front matter")
                    .next()
                    .unwrap_or(&comp.evidence.detail)
                    .to_string();
                scope.of_file(&file, comp.id).map(|(info, from)| {
                    if !info.known() {
                        notes.push(format!(
                            "{}: licence from {from}, which is not identified: unknown terms",
                            comp.name
                        ));
                    }
                    info
                })
            }
            (None, _) => match declared_licenses.get(&comp.id) {
                Some((info, from)) => {
                    if !info.known() {
                        notes.push(format!("{}: {from}", comp.name));
                    }
                    Some(info.clone())
                }
                None => {
                    notes.push(format!(
                        "{}: declared ({}) with no licence stated for it: unknown terms",
                        comp.name, comp.evidence.detail
                    ));
                    Some(licenses::classify(&format!(
                        "no licence stated for the declared {}",
                        comp.name
                    )))
                }
            },
        };
    }
}

/// Builds the evidence view of a standalone MOT file: everything it lists is declared.
pub fn from_mot_file(path: &Path) -> Result<Release, AuditError> {
    let mot = MotRelease::read(path)?;
    let mut components = blank_components();
    let mut own = BTreeMap::new();
    for comp in &mot.components {
        let detail = comp
            .component_path
            .clone()
            .unwrap_or_else(|| format!("listed in {}", path.display()));
        set(&mut components, comp.id, declared(detail));
        match &comp.license {
            crate::mof::ComponentLicense::Id(l) => {
                own.insert(comp.id, Some(l.clone()));
            }
            crate::mof::ComponentLicense::Unlicensed => {
                own.insert(comp.id, None);
            }
            crate::mof::ComponentLicense::Inherit => {}
        }
    }
    let release_licenses: Vec<_> = mot
        .global
        .iter()
        .map(|(scope, (lic, p))| {
            (
                scope.clone(),
                licenses::classify(lic),
                declared(
                    p.clone()
                        .unwrap_or_else(|| format!("release.license.{scope}")),
                ),
            )
        })
        .collect();
    resolve_component_licenses(&mut components, &own, &release_licenses);
    Ok(Release {
        name: mot.name.clone(),
        version: mot.version.clone(),
        input: "mot-file".into(),
        components,
        release_licenses,
        restrictions: vec![],
        license_files: vec![],
        data_statements: vec![],
        exemptions: vec![],
        notes: vec![],
        mot_model: Some(mot.mof_model()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc` files say they are empty: the bound is on what is read, not on the size the
    /// file system reports (a link to /proc/self/pagemap made the audit read 24 GB).
    #[test]
    #[cfg(target_os = "linux")]
    fn text_is_read_up_to_the_bound_whatever_size_the_file_claims() {
        let endless = Path::new("/proc/self/pagemap");
        assert_eq!(std::fs::metadata(endless).unwrap().len(), 0);
        // past the bound it is not evidence (or, read in pieces pagemap refuses, an error
        // naming the file) — either way a few megabytes, not the whole map
        let start = std::time::Instant::now();
        match read_text(endless) {
            Ok(text) => assert_eq!(text, "", "past the bound: not evidence"),
            Err(e) => assert!(e.to_string().contains("pagemap"), "{e}"),
        }
        assert!(start.elapsed().as_secs() < 5);
        let small = read_text(Path::new("/proc/self/status")).unwrap();
        assert!(small.contains("Name:"), "{small}");
    }
}
