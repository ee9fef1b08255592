//! The verdict: tier, OSAID items, restrictions, MOF class and EU AI Act reading, each
//! tied to the evidence of the components it rests on.

use serde::Serialize;

use crate::licenses::{self, LicenseInfo, RestrictionKind};
use crate::mof::{self, ComponentLicense, MofModel, MofResult};

/// How a component's existence is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceKind {
    /// A file in the audited directory.
    Present,
    /// Claimed by the model card or a MOT file (a link or a statement); not verifiable offline.
    Declared,
    /// A fact in the built-in registry, with its source and the date it was recorded.
    Registry,
    /// Nothing shows it exists.
    Absent,
}

impl EvidenceKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Declared => "declared",
            Self::Registry => "registry",
            Self::Absent => "absent",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub kind: EvidenceKind,
    /// Path, link, field or source URL.
    pub detail: String,
    /// For registry facts: the date the fact was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked: Option<String>,
}

impl Evidence {
    pub fn absent(detail: impl Into<String>) -> Self {
        Evidence {
            kind: EvidenceKind::Absent,
            detail: detail.into(),
            checked: None,
        }
    }
    pub fn is_available(&self) -> bool {
        self.kind != EvidenceKind::Absent
    }
}

/// One MOF component of the audited release.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentEvidence {
    pub id: u32,
    pub name: &'static str,
    pub evidence: Evidence,
    /// The licence that applies (component → type → distribution); `None` if none found.
    pub license: Option<LicenseInfo>,
}

/// A restriction of the weights' terms, with where it was found.
#[derive(Debug, Clone, Serialize)]
pub struct Restriction {
    pub kind: RestrictionKind,
    pub description: &'static str,
    /// `file:line` for a quoted clause, or the licence's published terms.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
}

/// What the auditor gathered about a release, before any verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub name: String,
    pub version: Option<String>,
    /// `directory`, `mot-file` or `registry`.
    pub input: String,
    pub components: Vec<ComponentEvidence>,
    /// Release-level licences by MOT key (`distribution`, `code`, `data`, `document`).
    pub release_licenses: Vec<(String, LicenseInfo, Evidence)>,
    pub restrictions: Vec<Restriction>,
    /// Licence files found and what they are.
    pub license_files: Vec<LicenseFile>,
    /// Statements in the cards that part of the training data is withheld (proprietary,
    /// licensed, internal, undisclosed, unobtainable): evidence against data information.
    pub data_statements: Vec<crate::content::DataStatement>,
    /// Restrictions of the weights' licence that do not bind this release (registry facts).
    pub exemptions: Vec<crate::registry::Exemption>,
    pub notes: Vec<String>,
    /// When set, the MOF class is computed from this MOT model exactly as written
    /// (a MOT file); otherwise from the evidence, with canonical licence ids.
    #[serde(skip)]
    pub mot_model: Option<MofModel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LicenseFile {
    pub path: String,
    pub identified_as: Option<String>,
    /// SHA-256 of the normalised text.
    pub fingerprint: String,
    /// The text is the canonical text exactly (modulo whitespace, punctuation, copyright
    /// lines), not only recognised by its phrases.
    pub exact: bool,
    /// When not identified but a standard licence with changes: that licence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_of: Option<String>,
    /// For such a variant: the lines it adds to the licence's text, quoted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_text: Vec<licenses::TextLine>,
}

impl LicenseFile {
    pub fn from_identification(path: &str, ident: &licenses::TextIdentification) -> Self {
        LicenseFile {
            path: path.to_string(),
            identified_as: ident.id.clone(),
            fingerprint: ident.fingerprint.clone(),
            exact: ident.exact,
            variant_of: ident.variant_of.clone(),
            additional_text: ident.additional_text.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    Closed,
    OpenWeights,
    OpenSource,
}

impl Tier {
    pub fn label(self) -> &'static str {
        match self {
            Tier::Closed => "closed",
            Tier::OpenWeights => "open-weights",
            Tier::OpenSource => "open-source",
        }
    }
}

/// Whether the weights' licence is OSI-approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightsTerms {
    Permissive,
    Restricted,
    Unknown,
    NotApplicable,
}

/// One OSAID 1.0 requirement and whether the evidence meets it.
#[derive(Debug, Clone, Serialize)]
pub struct OsaidItem {
    pub requirement: &'static str,
    pub met: bool,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EuAiAct {
    /// `Some(true)` when the Art. 53(2) conditions appear met, `None` when unknown.
    pub open_source_exception_conditions_met: Option<bool>,
    pub reasons: Vec<String>,
    pub caveats: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Completeness {
    #[serde(rename = "I")]
    pub class_1: f64,
    #[serde(rename = "II")]
    pub class_2: f64,
    #[serde(rename = "III")]
    pub class_3: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MofSummary {
    pub class: Option<u8>,
    pub completeness: Completeness,
    pub computed_from: &'static str,
    pub not_type_appropriate: Vec<String>,
    #[serde(skip)]
    pub detail: MofResult,
}

/// The audit of one release.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub release: String,
    pub version: Option<String>,
    pub input: String,
    pub tier: Tier,
    pub weights_terms: WeightsTerms,
    pub weights_license: Option<LicenseInfo>,
    pub restrictions: Vec<Restriction>,
    pub osaid: Vec<OsaidItem>,
    pub missing_for_next_tier: Vec<String>,
    pub mof: MofSummary,
    pub eu_ai_act: EuAiAct,
    pub components: Vec<ComponentEvidence>,
    pub release_licenses: Vec<ReleaseLicense>,
    pub license_files: Vec<LicenseFile>,
    /// The cards' statements that part of the training data is withheld, quoted.
    pub data_statements: Vec<crate::content::DataStatement>,
    pub notes: Vec<String>,
    pub disclaimer: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseLicense {
    pub scope: String,
    pub license: LicenseInfo,
    pub evidence: Evidence,
}

pub const DISCLAIMER: &str = "Information, not legal advice: read the licence texts and consult counsel before relying on this.";

fn find(components: &[ComponentEvidence], id: u32) -> &ComponentEvidence {
    components
        .iter()
        .find(|c| c.id == id)
        .expect("every release lists all 17 components")
}

fn license_text(c: &ComponentEvidence) -> String {
    c.license
        .as_ref()
        .map(|l| l.display())
        .unwrap_or_else(|| "no licence found".into())
}

fn code_item(requirement: &'static str, c: &[&ComponentEvidence]) -> OsaidItem {
    let avail: Vec<_> = c.iter().filter(|c| c.evidence.is_available()).collect();
    let Some(best) = avail
        .iter()
        .find(|c| c.license.as_ref().is_some_and(|l| l.is_osi()))
        .or(avail.first())
    else {
        let names: Vec<_> = c.iter().map(|c| c.name).collect();
        return OsaidItem {
            requirement,
            met: false,
            why: format!("{}: absent", names.join(" / ")),
        };
    };
    let osi = best.license.as_ref().is_some_and(|l| l.is_osi());
    let unknown = best.license.as_ref().is_none_or(|l| !l.known());
    OsaidItem {
        requirement,
        met: osi,
        why: format!(
            "{} {} ({}) under {}{}",
            best.name,
            best.evidence.kind.label(),
            best.evidence.detail,
            license_text(best),
            if osi {
                ""
            } else if unknown {
                ": its licence is unknown, so OSI-approved terms are not shown"
            } else {
                ": not an OSI-approved licence"
            }
        ),
    }
}

/// An OSAID data-information item: the information must exist, be complete (no card says part
/// of the data is withheld), and be under open terms *itself* — `info` is the document that
/// carries it (the data card, or for the list of datasets the data card or model card). The
/// data's own licences are not OSAID's concern; the MOF class grades them (see `audit`).
fn data_item(
    requirement: &'static str,
    c: &ComponentEvidence,
    info: Option<&ComponentEvidence>,
    withheld: &[crate::content::DataStatement],
) -> OsaidItem {
    if !c.evidence.is_available() {
        return OsaidItem {
            requirement,
            met: false,
            why: format!("{}: absent", c.name),
        };
    }
    if let Some(first) = withheld.first() {
        let more = withheld.len() - 1;
        return OsaidItem {
            requirement,
            met: false,
            why: format!(
                "the cards say part of the training data is {} ({}: \"{}\"{}): the information is not complete",
                first.kind,
                first.source,
                first.quote,
                if more > 0 {
                    format!("; {more} more such statement(s)")
                } else {
                    String::new()
                }
            ),
        };
    }
    let Some(info) = info.filter(|i| i.evidence.is_available()) else {
        return OsaidItem {
            requirement,
            met: false,
            why: format!(
                "{} {} ({}), but no card carries the information",
                c.name,
                c.evidence.kind.label(),
                c.evidence.detail
            ),
        };
    };
    let open = info.license.as_ref().is_some_and(|l| l.is_open_content());
    let carrier = if info.id == c.id {
        String::new()
    } else {
        format!(", described in the {}", info.name.to_lowercase())
    };
    OsaidItem {
        requirement,
        met: open,
        why: format!(
            "{} {} ({}){carrier}; the information is under {}{}",
            c.name,
            c.evidence.kind.label(),
            c.evidence.detail,
            license_text(info),
            if open { "" } else { ": not under open terms" }
        ),
    }
}

impl Release {
    /// The MOF model implied by the evidence: available components with canonical ids.
    fn evidence_mof_model(&self) -> MofModel {
        let mut model = MofModel::default();
        for c in self.components.iter().filter(|c| c.evidence.is_available()) {
            let lic = match &c.license {
                Some(l) => ComponentLicense::Id(l.id.clone().unwrap_or_else(|| l.written.clone())),
                None => ComponentLicense::Unlicensed,
            };
            model.components.insert(c.id, lic);
        }
        model
    }

    /// The restrictions on the weights: the clauses found in the release's terms files, and
    /// those the weights' licence is known to impose (quoted from the catalogue where it
    /// can), less the registry's exemptions.
    fn weights_restrictions(&self, weights_license: &Option<LicenseInfo>) -> Vec<Restriction> {
        let mut restrictions = self.restrictions.clone();
        if let Some(l) = &weights_license {
            for kind in &l.restrictions {
                if self.exemptions.iter().any(|e| e.kind == *kind) {
                    continue;
                }
                if !restrictions.iter().any(|r| r.kind == *kind) {
                    // The catalogue's quoted clause, where it has one; else how it is known.
                    let entry = l.id.as_deref().and_then(licenses::license_ref);
                    let clause = entry.and_then(|r| r.clauses.iter().find(|c| c.kind == *kind));
                    let basis = match (clause, entry.and_then(|r| r.note.as_deref())) {
                        (Some(c), _) => format!(", {}", c.section),
                        (None, Some(note)) => {
                            format!(", {}", note.split(':').next().unwrap_or(note))
                        }
                        (None, None) => String::new(),
                    };
                    restrictions.push(Restriction {
                        kind: *kind,
                        description: kind.describe(),
                        source: format!(
                            "terms of {}{basis} ({})",
                            l.name.clone().unwrap_or_else(|| l.display()),
                            l.source
                                .clone()
                                .unwrap_or_else(|| "licence catalogue".into())
                        ),
                        quote: clause.map(|c| c.quote.clone()),
                    });
                }
            }
        }
        restrictions
    }

    /// Decides the tier and everything else.
    pub fn audit(self) -> Audit {
        let c = &self.components;
        let params = find(c, 10);
        let weights_license = params.license.clone();
        let weights_available = params.evidence.is_available();
        let restrictions = self.weights_restrictions(&weights_license);
        // Use restrictions that bind the weights (a use policy, non-commercial terms, a user
        // threshold): OSAID's freedom to use for any purpose is not granted, whatever licence
        // the weights are under.
        let binding: Vec<Restriction> = restrictions
            .iter()
            .filter(|r| r.kind.restricts_use())
            .filter(|r| !self.exemptions.iter().any(|e| e.kind == r.kind))
            .cloned()
            .collect();
        let weights_terms = match (&weights_license, weights_available) {
            (_, false) => WeightsTerms::NotApplicable,
            _ if !binding.is_empty() => WeightsTerms::Restricted,
            (Some(l), true) if l.is_osi() => WeightsTerms::Permissive,
            (Some(l), true) if l.known() => WeightsTerms::Restricted,
            _ => WeightsTerms::Unknown,
        };
        let mut weights_item =
            code_item("Parameters (weights) under OSI-approved terms", &[params]);
        if weights_available && !binding.is_empty() {
            weights_item.met = false;
            weights_item.why = format!(
                "{}; but their use is restricted ({}): the freedom to use for any purpose is not granted",
                weights_item.why,
                describe_restrictions(&binding)
            );
        }
        let osaid = vec![
            weights_item,
            code_item("Training code", &[find(c, 7)]),
            code_item("Data-processing code", &[find(c, 16)]),
            code_item("Code to run the model (architecture or inference code)", &[find(c, 9), find(c, 8)]),
            data_item(
                "Data information: a complete description of all training data",
                find(c, 14),
                Some(find(c, 14)),
                &self.data_statements,
            ),
            data_item(
                "Data information: the list of public and third-party training data and where to get it",
                find(c, 15),
                [find(c, 14), find(c, 13)]
                    .into_iter()
                    .find(|d| d.evidence.is_available()),
                &self.data_statements,
            ),
        ];
        let tier = if !weights_available {
            Tier::Closed
        } else if osaid.iter().all(|i| i.met) {
            Tier::OpenSource
        } else {
            Tier::OpenWeights
        };
        let missing_for_next_tier = match tier {
            Tier::Closed => vec!["Downloadable parameters (weights)".to_string()],
            Tier::OpenWeights => osaid
                .iter()
                .filter(|i| !i.met)
                .map(|i| format!("{} — {}", i.requirement, i.why))
                .collect(),
            Tier::OpenSource => vec![],
        };
        let (mof_result, computed_from) = match &self.mot_model {
            Some(m) => (
                m.score(),
                "MOT file, licence ids as written (as MOT scores it)",
            ),
            None => (
                self.evidence_mof_model().score(),
                "evidence (present, declared or registry), canonical licence ids",
            ),
        };
        let mof = MofSummary {
            class: mof_result.class,
            completeness: Completeness {
                class_1: mof_result.progress[0],
                class_2: mof_result.progress[1],
                class_3: mof_result.progress[2],
            },
            computed_from,
            not_type_appropriate: mof_result.not_type_appropriate.clone(),
            detail: mof_result,
        };
        let eu_ai_act = eu_ai_act(c, weights_available, &weights_license, &binding);
        let mut notes = self.notes.clone();
        for e in &self.exemptions {
            notes.push(format!(
                "the licence's {} does not bind this release: {} ({})",
                e.kind.describe(),
                e.why,
                e.source
            ));
        }
        Audit {
            release: self.name,
            version: self.version,
            input: self.input,
            tier,
            weights_terms,
            weights_license,
            restrictions,
            osaid,
            missing_for_next_tier,
            mof,
            eu_ai_act,
            components: self.components,
            release_licenses: self
                .release_licenses
                .into_iter()
                .map(|(scope, license, evidence)| ReleaseLicense {
                    scope,
                    license,
                    evidence,
                })
                .collect(),
            license_files: self.license_files,
            data_statements: self.data_statements,
            notes,
            disclaimer: DISCLAIMER,
        }
    }
}

/// The first binding restriction, quoted, and how many more there are.
fn describe_restrictions(binding: &[Restriction]) -> String {
    let first = &binding[0];
    format!(
        "{}: {}{}{}",
        first.description,
        first.source,
        first
            .quote
            .as_deref()
            .map(|q| format!(", \"{q}\""))
            .unwrap_or_default(),
        if binding.len() > 1 {
            format!("; and {} more restriction(s)", binding.len() - 1)
        } else {
            String::new()
        }
    )
}

fn eu_ai_act(
    c: &[ComponentEvidence],
    weights_available: bool,
    weights: &Option<LicenseInfo>,
    binding: &[Restriction],
) -> EuAiAct {
    let mut reasons = Vec::new();
    let licence_ok = match weights {
        Some(_) if !binding.is_empty() => {
            reasons.push(format!(
                "the weights' use is restricted ({}): not a free and open-source licence",
                describe_restrictions(binding)
            ));
            Some(false)
        }
        Some(l) if l.is_osi() => {
            reasons.push(format!(
                "weights licence {} is free and open-source",
                l.display()
            ));
            Some(true)
        }
        Some(l) if l.known() => {
            reasons.push(format!(
                "weights licence {} is not a free and open-source licence",
                l.display()
            ));
            Some(false)
        }
        _ => {
            reasons.push("weights licence unknown".to_string());
            None
        }
    };
    let public = |id: u32| find(c, id).evidence.is_available();
    let weights_ok = weights_available;
    reasons.push(format!(
        "weights public: {}",
        if weights_ok { "yes" } else { "no" }
    ));
    let arch_ok = public(9) || public(8);
    reasons.push(format!(
        "architecture information public: {}",
        if arch_ok { "yes" } else { "no" }
    ));
    let usage_ok = public(13);
    reasons.push(format!(
        "usage information (model card) public: {}",
        if usage_ok { "yes" } else { "no" }
    ));
    let met = match licence_ok {
        Some(false) => Some(false),
        _ if !(weights_ok && arch_ok && usage_ok) => Some(false),
        other => other,
    };
    EuAiAct {
        open_source_exception_conditions_met: met,
        reasons,
        caveats: vec![
            "The Art. 53(2) exception never applies to general-purpose AI models with systemic risk (Art. 51).",
            "Art. 53(1)(c) (copyright policy) and 53(1)(d) (public summary of training content) apply regardless.",
            "Information, not legal advice.",
        ],
    }
}

/// All 17 components, in MOT's order, each absent until evidence says otherwise.
pub fn blank_components() -> Vec<ComponentEvidence> {
    mof::COMPONENTS
        .iter()
        .map(|d| ComponentEvidence {
            id: d.id,
            name: d.name,
            evidence: Evidence::absent("not found"),
            license: None,
        })
        .collect()
}

/// Applies MOT's licence resolution to the evidence: component → type → distribution.
pub fn resolve_component_licenses(
    components: &mut [ComponentEvidence],
    own: &std::collections::BTreeMap<u32, Option<String>>,
    release: &[(String, LicenseInfo, Evidence)],
) {
    for comp in components.iter_mut() {
        if !comp.evidence.is_available() {
            continue;
        }
        comp.license = match own.get(&comp.id) {
            Some(Some(id)) => Some(licenses::classify(id)),
            Some(None) => None,
            None => {
                let kind = mof::component(comp.id).content_type.as_str();
                [kind, "distribution"].iter().find_map(|k| {
                    release
                        .iter()
                        .find(|(scope, _, _)| scope == k)
                        .map(|(_, l, _)| l.clone())
                })
            }
        };
    }
}
