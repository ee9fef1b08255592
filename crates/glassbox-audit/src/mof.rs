//! The Model Openness Framework (MOF 1.0) and the Model Openness Tool's scoring of it.
//!
//! MOF lists 17 components; each belongs to a class (III open model, II open tooling,
//! I open science) and is required or optional. A model reaches a class when every
//! component required by that class *and every higher class* is included under an open
//! licence. The scoring here reproduces what the Model Openness Tool (MOT,
//! github.com/lfai/model_openness_tool, `ModelEvaluator`) computes, rule by rule:
//!
//! - the component list, classes and `required` flags are MOT's `mof.settings.yml`, in
//!   its order (the order matters for two PHP quirks below);
//! - a component's licence is resolved component → release-level licence for the
//!   component's content type (`code`, `data`, `document`) → release `distribution`;
//!   a component licence of `unlicensed` or an empty string stops the resolution and
//!   means "included but unlicensed"; nothing found is also "unlicensed";
//! - a licence is open when MOT's licence table marks it OSI-approved or FSF-libre, or
//!   it is on MOT's open-data list (`licenses::mot_is_open`); the id must match exactly
//!   (MOT does not parse SPDX expressions);
//! - a research paper may stand in for the technical report: when the technical report
//!   is not found among class III's included components (PHP `!array_search`, which
//!   also treats "found at index 0" as not found) and the paper is provided, the report
//!   is removed from every class's missing list and the paper counted in classes II
//!   and III;
//! - class progress is `included / required` over the class and all higher classes,
//!   but 0 when a higher class is incomplete; for class I the required count drops by
//!   one when the paper (found at an index > 0) replaces the report; capped at 100;
//! - the class is the lowest class whose progress is exactly 100 (0 = unclassified).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::licenses;

/// What a component is, which selects the release-level licence that applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    Code,
    Data,
    Document,
}

impl ContentType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Code => "code",
            ContentType::Data => "data",
            ContentType::Document => "document",
        }
    }
}

/// One of the 17 MOF components, as MOT's settings define it.
#[derive(Debug, Clone, Copy)]
pub struct ComponentDef {
    pub id: u32,
    pub name: &'static str,
    pub content_type: ContentType,
    pub class: u8,
    pub required: bool,
}

const fn def(
    id: u32,
    name: &'static str,
    content_type: ContentType,
    class: u8,
    required: bool,
) -> ComponentDef {
    ComponentDef {
        id,
        name,
        content_type,
        class,
        required,
    }
}

use ContentType::{Code, Data, Document};

/// MOT's `mof.settings.yml` component list, in file order.
pub const COMPONENTS: [ComponentDef; 17] = [
    def(15, "Datasets", Data, 1, true),
    def(16, "Data preprocessing code", Code, 1, true),
    def(9, "Model architecture", Code, 3, true),
    def(10, "Model parameters (Final)", Data, 3, true),
    def(17, "Model metadata", Data, 1, false),
    def(24, "Model parameters (Intermediate)", Data, 1, true),
    def(7, "Training code", Code, 2, true),
    def(8, "Inference code", Code, 2, true),
    def(18, "Evaluation code", Code, 2, true),
    def(19, "Evaluation data", Data, 2, true),
    def(12, "Evaluation results", Document, 3, true),
    def(22, "Supporting libraries and tools", Code, 2, false),
    def(13, "Model card", Document, 3, true),
    def(14, "Data card", Document, 3, true),
    def(11, "Technical report", Document, 3, true),
    def(21, "Research paper", Document, 1, true),
    def(20, "Sample model outputs", Document, 3, false),
];

pub const TECHNICAL_REPORT: u32 = 11;
pub const RESEARCH_PAPER: u32 = 21;

/// Looks a component up by its MOT name (exact, as MOT does).
pub fn component_by_name(name: &str) -> Option<&'static ComponentDef> {
    COMPONENTS.iter().find(|c| c.name == name)
}

pub fn component(id: u32) -> &'static ComponentDef {
    COMPONENTS
        .iter()
        .find(|c| c.id == id)
        .expect("component ids come from COMPONENTS")
}

fn required(class: u8) -> impl Iterator<Item = u32> {
    COMPONENTS
        .iter()
        .filter(move |c| c.class == class && c.required)
        .map(|c| c.id)
}

fn optional(class: u8) -> impl Iterator<Item = u32> {
    COMPONENTS
        .iter()
        .filter(move |c| c.class == class && !c.required)
        .map(|c| c.id)
}

/// A component's own licence field in a MOT file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum ComponentLicense {
    /// No `license` key: inherit from the release-level licences.
    Inherit,
    /// `unlicensed` or an empty string: included, explicitly without a licence.
    Unlicensed,
    /// A licence id, as written.
    Id(String),
}

/// The MOF view of a release: which components it includes and their licences.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MofModel {
    /// Release-level licences by key (`distribution`, `code`, `data`, `document`).
    pub global: BTreeMap<String, String>,
    /// Included components by MOT component id.
    pub components: BTreeMap<u32, ComponentLicense>,
}

/// Where a component stands in one class's evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    Included,
    Missing,
    Unlicensed,
    Invalid,
    Optional,
}

#[derive(Debug, Clone, Default)]
struct ClassEval {
    included: Vec<u32>,
    missing: Vec<u32>,
    invalid: Vec<u32>,
    unlicensed: Vec<u32>,
    optional: Vec<u32>,
}

/// MOT's result for a release.
#[derive(Debug, Clone, Serialize)]
pub struct MofResult {
    /// 1, 2 or 3; `None` when no class is complete.
    pub class: Option<u8>,
    /// Progress of classes I, II and III in percent, as MOT reports it.
    pub progress: [f64; 3],
    /// Each component's resolved licence (or `unlicensed`) and whether it counts as open.
    pub components: Vec<ComponentScore>,
    /// Components with an open licence that is not meant for their content type
    /// (MOT accepts them, with a warning).
    pub not_type_appropriate: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentScore {
    pub id: u32,
    pub name: &'static str,
    pub class: u8,
    pub required: bool,
    pub content_type: ContentType,
    pub license: Option<String>,
    pub standing: Standing,
}

impl MofModel {
    /// MOT's licence resolution: component → type-specific release licence → distribution.
    /// `None` means unlicensed.
    pub fn resolve_license(&self, id: u32) -> Option<String> {
        match self.components.get(&id) {
            Some(ComponentLicense::Id(l)) => return Some(l.clone()),
            Some(ComponentLicense::Unlicensed) => return None,
            _ => {}
        }
        let kind = component(id).content_type.as_str();
        [kind, "distribution"]
            .iter()
            .find_map(|k| self.global.get(*k).filter(|l| !l.is_empty()).cloned())
    }

    fn evaluate(&self) -> ([ClassEval; 3], Vec<u32>) {
        let mut evals: [ClassEval; 3] = Default::default();
        let mut not_type_appropriate = Vec::new();
        let mut required_ids = Vec::new();
        let mut optional_ids = Vec::new();
        for class in (1..=3u8).rev() {
            required_ids.extend(required(class));
            optional_ids.extend(optional(class));
            let eval = &mut evals[class as usize - 1];
            for (ids, is_required) in [(&required_ids, true), (&optional_ids, false)] {
                for &cid in ids.iter() {
                    if !self.components.contains_key(&cid) {
                        if is_required {
                            eval.missing.push(cid);
                        }
                        continue;
                    }
                    match self.resolve_license(cid) {
                        Some(l) if licenses::mot_is_open(&l) => {
                            if is_required {
                                eval.included.push(cid);
                            } else {
                                eval.optional.push(cid);
                            }
                            if !licenses::mot_is_type_appropriate(&l, component(cid).content_type)
                                && !not_type_appropriate.contains(&cid)
                            {
                                not_type_appropriate.push(cid);
                            }
                        }
                        None => eval.unlicensed.push(cid),
                        Some(_) => eval.invalid.push(cid),
                    }
                }
            }
        }
        // The research paper may replace the technical report (PHP truthiness kept:
        // a report found at index 0 reads as "not found").
        let report_found = php_array_search_truthy(&evals[2].included, TECHNICAL_REPORT);
        if !report_found {
            let class1 = &evals[0];
            let paper = if class1.included.contains(&RESEARCH_PAPER) {
                Some(Standing::Included)
            } else if class1.invalid.contains(&RESEARCH_PAPER) {
                Some(Standing::Invalid)
            } else if class1.unlicensed.contains(&RESEARCH_PAPER) {
                Some(Standing::Unlicensed)
            } else {
                None
            };
            if let Some(standing) = paper {
                for eval in evals.iter_mut() {
                    if let Some(pos) = eval.missing.iter().position(|&c| c == TECHNICAL_REPORT) {
                        eval.missing.remove(pos);
                    }
                }
                for eval in evals[1..].iter_mut() {
                    let list = match standing {
                        Standing::Included => &mut eval.included,
                        Standing::Invalid => &mut eval.invalid,
                        _ => &mut eval.unlicensed,
                    };
                    list.push(RESEARCH_PAPER);
                }
            }
        }
        (evals, not_type_appropriate)
    }

    fn progress(evals: &[ClassEval; 3], class: u8) -> f64 {
        let mut total = 0usize;
        let mut included = 0usize;
        let mut level = 3u8;
        while level >= class {
            total += required(level).count();
            included = evals[level as usize - 1].included.len();
            if included < total {
                break;
            }
            level -= 1;
        }
        if level > class {
            return 0.0;
        }
        let class1 = &evals[0].included;
        if class == 1
            && !php_array_search_truthy(class1, TECHNICAL_REPORT)
            && php_array_search_truthy(class1, RESEARCH_PAPER)
        {
            total -= 1;
        }
        let progress = included as f64 / total as f64 * 100.0;
        progress.min(100.0)
    }

    /// Scores the release as MOT does.
    pub fn score(&self) -> MofResult {
        let (evals, nta) = self.evaluate();
        let progress = [
            Self::progress(&evals, 1),
            Self::progress(&evals, 2),
            Self::progress(&evals, 3),
        ];
        let class = (1..=3u8).find(|&c| progress[c as usize - 1] == 100.0);
        let class1 = &evals[0];
        let components = COMPONENTS
            .iter()
            .map(|c| {
                let standing = if class1.included.contains(&c.id) {
                    Standing::Included
                } else if class1.optional.contains(&c.id) {
                    Standing::Optional
                } else if class1.invalid.contains(&c.id) {
                    Standing::Invalid
                } else if class1.unlicensed.contains(&c.id) {
                    Standing::Unlicensed
                } else {
                    Standing::Missing
                };
                ComponentScore {
                    id: c.id,
                    name: c.name,
                    class: c.class,
                    required: c.required,
                    content_type: c.content_type,
                    license: self
                        .components
                        .get(&c.id)
                        .and_then(|_| self.resolve_license(c.id)),
                    standing,
                }
            })
            .collect();
        MofResult {
            class,
            progress,
            components,
            not_type_appropriate: nta
                .iter()
                .map(|&id| component(id).name.to_string())
                .collect(),
        }
    }
}

/// PHP's `if (array_search($needle, $list))`: true only when found at an index above 0.
fn php_array_search_truthy(list: &[u32], needle: u32) -> bool {
    matches!(list.iter().position(|&c| c == needle), Some(i) if i > 0)
}

/// Rounds half away from zero, as PHP's `round()` and MOT's own test script do.
pub fn round_percent(p: f64) -> i64 {
    p.round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(components: &[(u32, &str)]) -> MofModel {
        let mut m = MofModel::default();
        for (id, lic) in components {
            m.components
                .insert(*id, ComponentLicense::Id(lic.to_string()));
        }
        m
    }

    /// MOT's `if (!array_search(11, ...))` treats a technical report at index 0 of class
    /// III's included list as missing, so a research paper is counted as well: with only
    /// the two documents, class III shows 2 of 6 rather than 1 of 6.
    #[test]
    fn report_at_index_zero_lets_the_paper_count_too() {
        let r = model(&[
            (TECHNICAL_REPORT, "CC-BY-4.0"),
            (RESEARCH_PAPER, "CC-BY-4.0"),
        ])
        .score();
        assert_eq!(r.progress[2], 2.0 / 6.0 * 100.0);
        // With the architecture included first, the report is found and the paper is not added.
        let r = model(&[
            (9, "MIT"),
            (TECHNICAL_REPORT, "CC-BY-4.0"),
            (RESEARCH_PAPER, "CC-BY-4.0"),
        ])
        .score();
        assert_eq!(r.progress[2], 2.0 / 6.0 * 100.0);
    }

    #[test]
    fn unlicensed_and_invalid_components_do_not_count() {
        let mut m = model(&[(9, "MIT"), (10, "Proprietary")]);
        m.components.insert(13, ComponentLicense::Unlicensed);
        let r = m.score();
        assert_eq!(r.progress[2], 1.0 / 6.0 * 100.0);
        let standing = |id| r.components.iter().find(|c| c.id == id).unwrap().standing;
        assert_eq!(standing(10), Standing::Invalid);
        assert_eq!(standing(13), Standing::Unlicensed);
        assert_eq!(standing(12), Standing::Missing);
    }

    #[test]
    fn release_licences_resolve_by_type_then_distribution() {
        let mut m = MofModel::default();
        m.global.insert("distribution".into(), "Apache-2.0".into());
        m.global.insert("data".into(), "CC-BY-4.0".into());
        m.components.insert(9, ComponentLicense::Inherit);
        m.components.insert(10, ComponentLicense::Inherit);
        m.components.insert(13, ComponentLicense::Unlicensed);
        assert_eq!(m.resolve_license(9).as_deref(), Some("Apache-2.0"));
        assert_eq!(m.resolve_license(10).as_deref(), Some("CC-BY-4.0"));
        assert_eq!(m.resolve_license(13), None);
    }
}
