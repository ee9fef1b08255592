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

fn is_copyright_line(line: &str) -> bool {
    let l = line.trim_start().to_lowercase();
    l.starts_with("copyright") || l.starts_with("(c)") || l.starts_with('©')
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
}

/// Identifies a licence text and finds its restriction clauses.
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
    let id = exact_match
        .or_else(|| {
            k.data.fingerprints.iter().find(|f| {
                f.all
                    .iter()
                    .all(|p| norm.text.contains(&normalize_phrase(p)))
            })
        })
        .map(|f| f.id.clone());
    let lines: Vec<&str> = text.lines().collect();
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
                let mut quote = lines
                    .get(line - 1)
                    .map(|l| l.trim())
                    .unwrap_or("")
                    .to_string();
                if quote.chars().count() > 240 {
                    quote = quote.chars().take(237).collect::<String>() + "...";
                }
                restrictions.push(RestrictionClause {
                    kind: rule.kind,
                    line,
                    quote,
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
    }
}

/// Checks that the embedded licence data parses (used by tests).
pub fn check_embedded_data() -> usize {
    let k = knowledge();
    k.data.license_refs.len() + k.mot.len()
}
