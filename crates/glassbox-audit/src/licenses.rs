//! Licences: identifiers, expressions, texts and the restrictions they impose.
//!
//! An identifier is resolved in this order: the Hub licence-id table and the named
//! `LicenseRef-` catalogue of `data/licenses.yaml` (case-insensitive, including the
//! spellings cards and MOT files use), then the SPDX list (exact, then case-insensitive),
//! then an SPDX expression (`MIT OR Apache-2.0`) parsed with the `spdx` crate. Anything
//! else is kept as written with `known: false`: its openness is *unknown*, never guessed.
//!
//! Licence texts are identified by phrase sets matched on normalised text (lower case,
//! non-alphanumerics collapsed to one space, copyright lines dropped), so re-wrapped or
//! re-attributed copies still match; the SHA-256 of the normalised text is reported as
//! the text's fingerprint. Restriction clauses are found by phrase rules and quoted with
//! their line number.
//!
//! The MOF scorer uses MOT's own licence table instead (`mot_is_open`), because MOT
//! matches ids exactly against its table and the class must come out as MOT computes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::mof::ContentType;

/// A kind of use restriction found in a licence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestrictionKind {
    /// A user or MAU threshold above which a separate licence is needed.
    UserThreshold,
    /// An acceptable-use or prohibited-use policy binds the licensee.
    AcceptableUse,
    /// Field-of-use restrictions (use-based restrictions, excluded territories or users).
    FieldOfUse,
    /// Non-commercial or research-only terms.
    NonCommercial,
    /// Naming or attribution-in-name requirements for derivatives.
    Naming,
    /// Obligations on (or bans of) models trained on the outputs.
    OutputUse,
    /// The licence terminates if the licensee litigates against the licensor.
    LitigationTermination,
    /// No derivatives may be shared.
    NoDerivatives,
    /// The licensor may restrict use remotely or change the terms unilaterally.
    LicensorControl,
}

impl RestrictionKind {
    /// Whether the restriction limits who may use the model, for what, or how (so the
    /// freedom to use for any purpose, study, modify and share is not granted). Termination on
    /// litigation is a condition many OSI-approved licences share (Apache-2.0's patent clause).
    pub fn restricts_use(self) -> bool {
        !matches!(self, Self::LitigationTermination)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::UserThreshold => "user/MAU threshold",
            Self::AcceptableUse => "acceptable-use policy",
            Self::FieldOfUse => "field-of-use restrictions",
            Self::NonCommercial => "non-commercial / research only",
            Self::Naming => "naming or attribution-in-name requirement",
            Self::OutputUse => "obligations on models trained on outputs",
            Self::LitigationTermination => "termination on litigation",
            Self::NoDerivatives => "no derivatives",
            Self::LicensorControl => "licensor may restrict use or change the terms",
        }
    }
}

#[derive(Deserialize)]
struct LicenseData {
    hub_ids: BTreeMap<String, String>,
    license_refs: Vec<LicenseRef>,
    open_data: Vec<String>,
    fingerprints: Vec<Fingerprint>,
    restriction_rules: Vec<RestrictionRule>,
}

/// A licence outside the SPDX list, from the catalogue.
#[derive(Debug, Clone, Deserialize)]
pub struct LicenseRef {
    pub id: String,
    pub name: String,
    pub names: Vec<String>,
    pub source: String,
    pub restrictions: Vec<RestrictionKind>,
    /// The clauses behind `restrictions`, quoted from the licence text at `source`.
    #[serde(default)]
    pub clauses: Vec<CatalogueClause>,
    /// How the restrictions are known where they are not quoted.
    #[serde(default)]
    pub note: Option<String>,
}

/// A restriction clause of a catalogued licence, quoted.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogueClause {
    pub kind: RestrictionKind,
    /// Where in the licence: `§5b`, `Attachment A`…
    pub section: String,
    pub quote: String,
}

#[derive(Deserialize)]
struct Fingerprint {
    id: String,
    #[serde(default)]
    sha256: Vec<String>,
    all: Vec<String>,
    /// The licence's canonical text (a file of `data/license-texts/`): when set, a text is
    /// this licence only if it matches the whole template (see [`compare_to_template`]).
    #[serde(default)]
    template: Option<String>,
    /// Parts of the template a copy may leave out, as `[from, to]` phrases of the normalised
    /// template (`""`: its start or end), the phrase `to` itself not included.
    #[serde(default)]
    optional: Vec<[String; 2]>,
    /// Words of its own a copy may have in the template's optional tail (the GNU licences'
    /// "How to apply" appendix differs between the FSF's copies and SPDX's).
    #[serde(default)]
    optional_extra: usize,
}

/// The canonical licence texts the fingerprints' `template`s name (SPDX license-list-data
/// 3.29 as shipped in the spdx crate 0.13.6; the Apache notice is the licence's appendix).
fn template_text(name: &str) -> Option<&'static str> {
    Some(match name {
        "Apache-2.0.txt" => include_str!("../data/license-texts/Apache-2.0.txt"),
        "Apache-2.0-notice.txt" => include_str!("../data/license-texts/Apache-2.0-notice.txt"),
        "MIT.txt" => include_str!("../data/license-texts/MIT.txt"),
        "BSD-2-Clause.txt" => include_str!("../data/license-texts/BSD-2-Clause.txt"),
        "BSD-3-Clause.txt" => include_str!("../data/license-texts/BSD-3-Clause.txt"),
        "GPL-2.0-only.txt" => include_str!("../data/license-texts/GPL-2.0-only.txt"),
        "GPL-3.0-only.txt" => include_str!("../data/license-texts/GPL-3.0-only.txt"),
        "LGPL-2.1-only.txt" => include_str!("../data/license-texts/LGPL-2.1-only.txt"),
        "LGPL-3.0-only.txt" => include_str!("../data/license-texts/LGPL-3.0-only.txt"),
        "AGPL-3.0-only.txt" => include_str!("../data/license-texts/AGPL-3.0-only.txt"),
        "MPL-2.0.txt" => include_str!("../data/license-texts/MPL-2.0.txt"),
        "CC-BY-4.0.txt" => include_str!("../data/license-texts/CC-BY-4.0.txt"),
        "CC-BY-SA-4.0.txt" => include_str!("../data/license-texts/CC-BY-SA-4.0.txt"),
        "CC-BY-NC-4.0.txt" => include_str!("../data/license-texts/CC-BY-NC-4.0.txt"),
        "CC-BY-NC-SA-4.0.txt" => include_str!("../data/license-texts/CC-BY-NC-SA-4.0.txt"),
        "CC0-1.0.txt" => include_str!("../data/license-texts/CC0-1.0.txt"),
        "ODC-By-1.0.txt" => include_str!("../data/license-texts/ODC-By-1.0.txt"),
        _ => return None,
    })
}

#[derive(Deserialize)]
struct RestrictionRule {
    kind: RestrictionKind,
    any: Vec<String>,
}

#[derive(Deserialize)]
struct MotLicenseTable {
    licenses: Vec<MotLicense>,
}

#[derive(Deserialize)]
struct MotLicense {
    id: String,
    osi: bool,
    fsf: bool,
    types: Vec<String>,
}

struct Knowledge {
    data: LicenseData,
    /// Lower-cased Hub id, catalogue id or catalogue name → canonical id.
    aliases: HashMap<String, String>,
    mot: HashMap<String, MotLicense>,
}

fn knowledge() -> &'static Knowledge {
    static K: OnceLock<Knowledge> = OnceLock::new();
    K.get_or_init(|| {
        let data: LicenseData = serde_yaml::from_str(include_str!("../data/licenses.yaml"))
            .expect("data/licenses.yaml is checked by the crate's tests");
        let mut aliases = HashMap::new();
        for (hub, id) in &data.hub_ids {
            aliases.insert(hub.to_lowercase(), id.clone());
        }
        for r in &data.license_refs {
            aliases.insert(r.id.to_lowercase(), r.id.clone());
            for n in &r.names {
                aliases.insert(n.trim().to_lowercase(), r.id.clone());
            }
        }
        let table: MotLicenseTable =
            serde_json::from_str(include_str!("../data/mot-licenses.json"))
                .expect("data/mot-licenses.json is checked by the crate's tests");
        let mot = table
            .licenses
            .into_iter()
            .map(|l| (l.id.clone(), l))
            .collect();
        Knowledge { data, aliases, mot }
    })
}

/// MOT's notion of an open licence: FSF-libre or OSI-approved in its table, or on its
/// open-data list. Exact id match, as MOT does.
pub fn mot_is_open(id: &str) -> bool {
    let k = knowledge();
    k.mot.get(id).is_some_and(|l| l.osi || l.fsf) || k.data.open_data.iter().any(|d| d == id)
}

/// Whether MOT's table lists the licence for this content type.
pub fn mot_is_type_appropriate(id: &str, kind: ContentType) -> bool {
    knowledge()
        .mot
        .get(id)
        .is_some_and(|l| l.types.iter().any(|t| t == kind.as_str()))
}

/// The catalogue entry of a `LicenseRef-` id.
pub fn license_ref(id: &str) -> Option<&'static LicenseRef> {
    knowledge().data.license_refs.iter().find(|r| r.id == id)
}

/// Everything known about one licence (or licence expression) of a release.
#[derive(Debug, Clone, Serialize)]
pub struct LicenseInfo {
    /// As the source wrote it.
    pub written: String,
    /// Canonical SPDX expression or `LicenseRef-` id; `None` when unrecognised.
    pub id: Option<String>,
    pub name: Option<String>,
    /// `None` when unknown (unrecognised id, `other`, `unknown`).
    pub osi_approved: Option<bool>,
    pub fsf_libre: Option<bool>,
    /// On MOT's open-data list (CC-BY, CC0, CDLA, ODC-By, ODbL, PDDL, ...).
    pub open_data: bool,
    /// Restrictions the licence is known to impose (from the catalogue or the SPDX id).
    pub restrictions: Vec<RestrictionKind>,
    pub source: Option<String>,
}

impl LicenseInfo {
    pub fn known(&self) -> bool {
        self.osi_approved.is_some()
    }

    /// Open for code and weights in OSAID's sense: OSI-approved.
    pub fn is_osi(&self) -> bool {
        self.osi_approved == Some(true)
    }

    /// Open for documentation and data information: OSI-approved, FSF-libre or open data.
    pub fn is_open_content(&self) -> bool {
        self.is_osi() || self.fsf_libre == Some(true) || self.open_data
    }

    pub fn display(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{} (unrecognised)", self.written))
    }
}

fn spdx_lookup(token: &str) -> Option<spdx::LicenseId> {
    spdx::license_id(token).or_else(|| {
        spdx::identifiers::LICENSES
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(token.trim_end_matches('+')))
            .and_then(|l| spdx::license_id(l.name))
    })
}

fn canonical_token(token: &str) -> Option<String> {
    let k = knowledge();
    if let Some(id) = k.aliases.get(&token.trim().to_lowercase()) {
        return Some(id.clone());
    }
    spdx_lookup(token.trim()).map(|id| id.name.to_string())
}

fn spdx_restrictions(id: &str) -> Vec<RestrictionKind> {
    let mut r = Vec::new();
    if id.contains("-NC") {
        r.push(RestrictionKind::NonCommercial);
    }
    if id.contains("-ND") {
        r.push(RestrictionKind::NoDerivatives);
    }
    r
}

/// Classifies one licence id, name or SPDX expression.
pub fn classify(written: &str) -> LicenseInfo {
    let k = knowledge();
    let trimmed = written.trim();
    let unknown = LicenseInfo {
        written: written.to_string(),
        id: None,
        name: None,
        osi_approved: None,
        fsf_libre: None,
        open_data: false,
        restrictions: vec![],
        source: None,
    };
    if trimmed.is_empty() {
        return unknown;
    }
    // A single known id (Hub id, catalogue name, SPDX id).
    if let Some(id) = canonical_token(trimmed) {
        if let Some(r) = license_ref(&id) {
            let is_placeholder = matches!(id.as_str(), "LicenseRef-other" | "LicenseRef-unknown");
            return LicenseInfo {
                id: Some(id.clone()),
                name: Some(r.name.clone()),
                osi_approved: (!is_placeholder).then_some(false),
                fsf_libre: (!is_placeholder).then_some(false),
                restrictions: r.restrictions.clone(),
                source: (!r.source.is_empty()).then(|| r.source.clone()),
                ..unknown
            };
        }
        if id.starts_with("LicenseRef-") {
            // Named in the Hub table but deliberately vague (`other`, `unknown`, `bsd`, `gpl`).
            return LicenseInfo {
                id: Some(id),
                ..unknown
            };
        }
        if let Some(lic) = spdx::license_id(&id) {
            return LicenseInfo {
                id: Some(id.clone()),
                name: Some(lic.full_name.to_string()),
                osi_approved: Some(lic.is_osi_approved()),
                fsf_libre: Some(lic.is_fsf_free_libre()),
                open_data: k.data.open_data.contains(&id),
                restrictions: spdx_restrictions(&id),
                source: Some(format!("https://spdx.org/licenses/{id}.html")),
                ..unknown
            };
        }
        // Ids on the open-data list that the SPDX list spells differently.
        if k.data.open_data.contains(&id) {
            return LicenseInfo {
                id: Some(id),
                open_data: true,
                ..unknown
            };
        }
    }
    // An SPDX expression: canonicalise each id, then let the `spdx` crate parse it.
    let mut tokens = Vec::new();
    for raw in trimmed
        .replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
    {
        let upper = raw.to_uppercase();
        if matches!(upper.as_str(), "AND" | "OR" | "WITH" | "(" | ")") {
            tokens.push(upper);
        } else {
            match canonical_token(raw) {
                Some(id) if !id.starts_with("LicenseRef-") || license_ref(&id).is_some() => {
                    tokens.push(id)
                }
                _ => return unknown,
            }
        }
    }
    let canonical = tokens.join(" ").replace("( ", "(").replace(" )", ")");
    let Ok(expr) = spdx::Expression::parse(&canonical) else {
        return unknown;
    };
    let osi = expr.evaluate(|req| req.license.id().is_some_and(|id| id.is_osi_approved()));
    let fsf = expr.evaluate(|req| req.license.id().is_some_and(|id| id.is_fsf_free_libre()));
    let open_data = expr.evaluate(|req| {
        req.license
            .id()
            .is_some_and(|id| k.data.open_data.iter().any(|d| d == id.name))
    });
    let mut restrictions: Vec<RestrictionKind> = expr
        .requirements()
        .flat_map(|r| match &r.req.license {
            spdx::LicenseItem::Spdx { id, .. } => spdx_restrictions(id.name),
            spdx::LicenseItem::Other(other) => {
                license_ref(&format!("LicenseRef-{}", other.lic_ref))
                    .map(|r| r.restrictions.clone())
                    .unwrap_or_default()
            }
        })
        .collect();
    restrictions.sort();
    restrictions.dedup();
    LicenseInfo {
        id: Some(canonical),
        osi_approved: Some(osi),
        fsf_libre: Some(fsf),
        open_data,
        restrictions,
        ..unknown
    }
}

/// The text of a licence file, normalised for matching, with each normalised byte's line.
struct NormalizedText {
    text: String,
    line_of: Vec<usize>,
}

/// A copyright notice line ("Copyright (c) 2024 X", "(C) 2007 FSF", "© X"), not a line of
/// the licence's own text that happens to start with the word ("copyright law: that is to
/// say", "(c) You must retain").
fn is_copyright_line(line: &str) -> bool {
    let l = line.trim_start().to_lowercase();
    if l.starts_with('©') {
        return true;
    }
    let has_year = |t: &str| {
        t.as_bytes().windows(4).any(|w| {
            (w.starts_with(b"19") || w.starts_with(b"20")) && w.iter().all(u8::is_ascii_digit)
        })
    };
    let notice_start = |t: &str| {
        let t = t.trim_start();
        t.is_empty()
            || t.starts_with(|c: char| c.is_ascii_digit() || "(<[{:©".contains(c))
            || has_year(t)
    };
    if let Some(rest) = l.strip_prefix("copyright") {
        return notice_start(rest) || rest.trim_start().starts_with("the ") && rest.len() < 80;
    }
    if let Some(rest) = l.strip_prefix("(c)") {
        let rest = rest.trim_start();
        return rest.starts_with(|c: char| c.is_ascii_digit() || c == '<')
            || rest.starts_with("copyright");
    }
    false
}

fn normalize(text: &str, drop_copyright: bool) -> NormalizedText {
    let mut out = String::with_capacity(text.len());
    let mut line_of = Vec::with_capacity(text.len());
    let mut pending_space = false;
    for (n, line) in text.lines().enumerate() {
        if drop_copyright && is_copyright_line(line) {
            continue;
        }
        for ch in line.chars() {
            if ch.is_alphanumeric() {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                    line_of.push(n + 1);
                }
                pending_space = false;
                for lc in ch.to_lowercase() {
                    let mut buf = [0u8; 4];
                    for _ in 0..lc.encode_utf8(&mut buf).len() {
                        line_of.push(n + 1);
                    }
                    out.push(lc);
                }
            } else {
                pending_space = true;
            }
        }
        pending_space = true;
    }
    NormalizedText { text: out, line_of }
}

/// Normalises a phrase the same way texts are.
fn normalize_phrase(p: &str) -> String {
    normalize(p, false).text
}

/// A restriction clause found in a licence text.
#[derive(Debug, Clone, Serialize)]
pub struct RestrictionClause {
    pub kind: RestrictionKind,
    /// 1-based line in the file.
    pub line: usize,
    /// The line, trimmed (shortened when very long).
    pub quote: String,
}

/// What a licence file turned out to be.
#[derive(Debug, Clone, Serialize)]
pub struct TextIdentification {
    /// The licence it was identified as, or `None`.
    pub id: Option<String>,
    /// SHA-256 of the normalised text (copyright lines dropped).
    pub fingerprint: String,
    /// True when the fingerprint is that of the canonical text (not only its phrases).
    pub exact: bool,
    pub restrictions: Vec<RestrictionClause>,
    /// When the text is not identified but carries a licence's phrases: that licence, whose
    /// text this one departs from (terms added, or parts of it missing).
    pub variant_of: Option<String>,
    /// For a variant: the text it has beyond the licence's own, quoted line by line.
    pub additional_text: Vec<TextLine>,
    /// For a variant: how many words of the licence's text it lacks.
    pub missing_words: usize,
}

/// A line of a text, quoted.
#[derive(Debug, Clone, Serialize)]
pub struct TextLine {
    /// 1-based line in the file.
    pub line: usize,
    pub quote: String,
}

/// How much a copy may depart from a licence's template and still be that licence: words of
/// its own (a title, a holder's name in a variable part, a renumbered list) and words of the
/// template it lacks. An added sentence — a use restriction, an advertising clause, "Good, not
/// Evil" — is more than this.
const MIN_EXTRA_WORDS: usize = 4;
/// Longer texts may differ by one word in this many (a repeated heading, a revised address).
const EXTRA_WORDS_PER: usize = 300;
const MAX_EXTRA_RUN: usize = 6;
const MAX_MISSING_WORDS: usize = 12;
/// Words per shingle: a word of one text is matched when a run of this many words around it
/// occurs in the other.
const SHINGLE: usize = 5;

/// How a text compares with a licence's template, word by word (both normalised).
struct Comparison {
    /// Runs of the text's words that the template does not have: (first word, word count).
    extra_runs: Vec<(usize, usize)>,
    /// Words in those runs, the text's title and optional tail aside.
    extra: usize,
    /// Whether some run (title and optional tail aside) is longer than an edit of a variable part.
    long_run: bool,
    /// Words of its own the text has in the template's optional tail.
    tail_extra: usize,
    /// Template words (outside its optional parts) the text does not have.
    missing: usize,
    template_words: usize,
}

impl Comparison {
    fn matches(&self, optional_extra: usize) -> bool {
        self.extra <= MIN_EXTRA_WORDS.max(self.template_words / EXTRA_WORDS_PER)
            && !self.long_run
            && self.tail_extra <= optional_extra
            && self.missing <= MAX_MISSING_WORDS
    }
}

fn shingles(words: &[&str], n: usize) -> std::collections::HashSet<u64> {
    use std::hash::{Hash, Hasher};
    words
        .windows(n)
        .map(|w| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            w.hash(&mut h);
            h.finish()
        })
        .collect()
}

/// Which of `words` lie in some `n`-word window that `other` also has.
fn covered(words: &[&str], other: &std::collections::HashSet<u64>, n: usize) -> Vec<bool> {
    use std::hash::{Hash, Hasher};
    let mut out = vec![false; words.len()];
    for (i, w) in words.windows(n).enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        w.hash(&mut h);
        if other.contains(&h.finish()) {
            out[i..i + n].iter_mut().for_each(|c| *c = true);
        }
    }
    out
}

/// Compares a normalised text with a template (normalised, copyright lines dropped); the
/// text's first `title` words are its title line, not counted as its own words.
fn compare_to_template(
    text: &[&str],
    title: usize,
    template: &str,
    optional: &[[String; 2]],
) -> Comparison {
    let tmpl_norm = normalize(template, true).text;
    let tmpl: Vec<&str> = tmpl_norm.split(' ').filter(|w| !w.is_empty()).collect();
    // Word index of a normalised phrase in the template.
    let word_at = |phrase: &str, from: usize| -> Option<usize> {
        let p: Vec<&str> = phrase.split(' ').collect();
        (from..tmpl.len().saturating_sub(p.len() - 1)).find(|&i| tmpl[i..i + p.len()] == p[..])
    };
    let mut is_optional = vec![false; tmpl.len()];
    for [from, to] in optional {
        let from = normalize_phrase(from);
        let to = normalize_phrase(to);
        let start = if from.is_empty() {
            Some(0)
        } else {
            word_at(&from, 0)
        };
        if let Some(start) = start {
            let end = if to.is_empty() {
                tmpl.len()
            } else {
                word_at(&to, start).unwrap_or(start)
            };
            is_optional[start..end].iter_mut().for_each(|o| *o = true);
        }
    }
    let n = SHINGLE.min(text.len()).min(tmpl.len()).max(1);
    let text_cov = covered(text, &shingles(&tmpl, n), n);
    let tmpl_cov = covered(&tmpl, &shingles(text, n), n);
    let mut extra_runs = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text_cov[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && !text_cov[i] {
            i += 1;
        }
        extra_runs.push((start, i - start));
    }
    // Where the text's copy of the template's optional tail starts, if it has one.
    let tail_start = optional
        .iter()
        .filter(|[from, to]| !from.is_empty() && to.is_empty())
        .filter_map(|[from, _]| {
            let p: Vec<String> = normalize_phrase(from)
                .split(' ')
                .map(String::from)
                .collect();
            (0..text.len().saturating_sub(p.len() - 1)).find(|&i| text[i..i + p.len()] == p[..])
        })
        .min()
        .unwrap_or(text.len());
    let (mut extra, mut tail_extra, mut long_run) = (0, 0, false);
    for &(start, n) in &extra_runs {
        if start + n <= title {
            continue;
        }
        if start >= tail_start {
            tail_extra += n;
        } else {
            extra += n;
            long_run |= n > MAX_EXTRA_RUN;
        }
    }
    let missing = tmpl_cov
        .iter()
        .zip(&is_optional)
        .filter(|(c, o)| !**c && !**o)
        .count();
    Comparison {
        extra_runs,
        extra,
        long_run,
        tail_extra,
        missing,
        template_words: tmpl.len(),
    }
}

/// Identifies a licence text and finds its restriction clauses.
///
/// A licence with a canonical template is identified only when the text *is* that licence:
/// its phrases occur, and the text has at most a few words beyond the template's (a title,
/// the holder's name in a variable part) and lacks at most a few of them (optional parts such
/// as the "How to apply" appendix aside). A text with the phrases but more added — "MIT with
/// additional terms" — is not identified; `variant_of` names the licence it departs from and
/// `additional_text` quotes what was added. Licences without a template are recognised by
/// their phrases.
pub fn identify_text(text: &str) -> TextIdentification {
    let k = knowledge();
    let norm = normalize(text, true);
    let fingerprint = format!("{:x}", Sha256::digest(norm.text.as_bytes()));
    let exact_match = k
        .data
        .fingerprints
        .iter()
        .find(|f| f.sha256.contains(&fingerprint));
    let exact = exact_match.is_some();
    // The text's words, each with the byte offset it starts at (for its line).
    let mut words: Vec<&str> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    let mut at = 0;
    for w in norm.text.split(' ') {
        if !w.is_empty() {
            words.push(w);
            starts.push(at);
        }
        at += w.len() + 1;
    }
    let lines: Vec<&str> = text.lines().collect();
    // A short first line naming the licence ("The MIT License (MIT)", "BSD 3-Clause License")
    // is a title, not terms.
    let title = words
        .first()
        .map(|_| norm.line_of[starts[0]])
        .filter(|&l| {
            let line = lines.get(l - 1).copied().unwrap_or("").to_lowercase();
            (line.contains("license") || line.contains("licence"))
                && line.split_whitespace().count() <= 8
        })
        .map(|l| starts.iter().take_while(|&&s| norm.line_of[s] == l).count())
        .unwrap_or(0);
    let quote_line = |line: usize| -> String {
        let mut quote = lines
            .get(line.wrapping_sub(1))
            .map(|l| l.trim())
            .unwrap_or("")
            .to_string();
        if quote.chars().count() > 240 {
            quote = quote.chars().take(237).collect::<String>() + "...";
        }
        quote
    };
    let mut id = exact_match.map(|f| f.id.clone());
    // The closest licence whose phrases occur but whose template the text departs from.
    let mut variant: Option<(&Fingerprint, Comparison)> = None;
    if id.is_none() {
        for f in &k.data.fingerprints {
            if !f
                .all
                .iter()
                .all(|p| norm.text.contains(&normalize_phrase(p)))
            {
                continue;
            }
            let Some(template) = f.template.as_deref().and_then(template_text) else {
                id = Some(f.id.clone());
                break;
            };
            let cmp = compare_to_template(&words, title, template, &f.optional);
            if cmp.matches(f.optional_extra) {
                id = Some(f.id.clone());
                break;
            }
            let worse = |c: &Comparison| c.extra + c.tail_extra + c.missing;
            if variant.as_ref().is_none_or(|(_, v)| worse(&cmp) < worse(v)) {
                variant = Some((f, cmp));
            }
        }
    }
    let (variant_of, additional_text, missing_words) = match (&id, variant) {
        (None, Some((f, cmp))) => {
            let mut quoted: Vec<TextLine> = Vec::new();
            for &(start, n) in &cmp.extra_runs {
                for &at in &starts[start..start + n] {
                    let line = norm.line_of[at];
                    if !quoted.iter().any(|q| q.line == line) {
                        quoted.push(TextLine {
                            line,
                            quote: quote_line(line),
                        });
                    }
                }
            }
            (Some(f.id.clone()), quoted, cmp.missing)
        }
        _ => (None, Vec::new(), 0),
    };
    let mut restrictions = Vec::new();
    for rule in &k.data.restriction_rules {
        let mut seen_lines = Vec::new();
        for phrase in &rule.any {
            let p = normalize_phrase(phrase);
            for (at, _) in norm.text.match_indices(&p) {
                let line = norm.line_of[at];
                if seen_lines.contains(&line) {
                    continue;
                }
                seen_lines.push(line);
                restrictions.push(RestrictionClause {
                    kind: rule.kind,
                    line,
                    quote: quote_line(line),
                });
            }
        }
    }
    restrictions.sort_by_key(|r| (r.line, r.kind));
    TextIdentification {
        id,
        fingerprint,
        exact,
        restrictions,
        variant_of,
        additional_text,
        missing_words,
    }
}

/// Checks that the embedded licence data parses (used by tests).
pub fn check_embedded_data() -> usize {
    let k = knowledge();
    k.data.license_refs.len() + k.mot.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each template's own normalised text has the hash its fingerprint lists as canonical,
    /// and the template is identified as its licence.
    #[test]
    fn templates_are_their_licences() {
        for f in &knowledge().data.fingerprints {
            let Some(name) = &f.template else { continue };
            let text = template_text(name).unwrap_or_else(|| panic!("{name} not embedded"));
            let hash = format!(
                "{:x}",
                Sha256::digest(normalize(text, true).text.as_bytes())
            );
            if !f.sha256.is_empty() {
                assert!(f.sha256.contains(&hash), "{name}: {hash}");
            }
            assert_eq!(
                identify_text(text).id.as_deref(),
                Some(f.id.as_str()),
                "{name}"
            );
        }
    }

    #[test]
    fn copyright_notices_are_told_from_licence_lines() {
        for notice in [
            "Copyright (c) 2024 Glassbox Authors",
            "Copyright 2026 The Example Authors",
            "(C) 2007 Free Software Foundation",
            "© Moonshot AI",
            "Copyright [yyyy] [name of copyright owner]",
            "Copyright (c) <year> <owner>. All rights reserved.",
        ] {
            assert!(is_copyright_line(notice), "{notice}");
        }
        for clause in [
            "(c) You must retain, in the Source form of any Derivative Works",
            "copyright law: that is to say, a work containing the Library or a",
            "copyright on the Program, and are irrevocable provided the stated",
        ] {
            assert!(!is_copyright_line(clause), "{clause}");
        }
    }
}
