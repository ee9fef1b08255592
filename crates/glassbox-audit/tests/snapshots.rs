//! Snapshot directories written by the tests get the right tier, restrictions and
//! evidence kinds; bad input gets a clear error or an explicit "unknown".

mod common;

use common::{scratch, write_tree, APACHE_EXCERPT, LLAMA31_EXCERPT};
use glassbox_audit::audit::{Audit, WeightsTerms};
use glassbox_audit::licenses::RestrictionKind;
use glassbox_audit::{audit_target, AuditError, EvidenceKind, Tier};

fn audit_dir(dir: &std::path::Path) -> Audit {
    audit_target(dir.to_str().unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

fn evidence(a: &Audit, component: &str) -> EvidenceKind {
    a.components
        .iter()
        .find(|c| c.name == component)
        .unwrap()
        .evidence
        .kind
}

#[test]
fn apache_model_without_data_information_is_permissive_open_weights() {
    let dir = scratch("apache");
    write_tree(
        &dir,
        &[
            ("README.md", "---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# A model\nSee the paper: https://arxiv.org/abs/0000.00000\n"),
            ("LICENSE", APACHE_EXCERPT),
            ("config.json", "{}"),
            ("model.safetensors", "weights"),
        ],
    );
    let a = audit_dir(&dir);
    assert_eq!(a.tier, Tier::OpenWeights);
    assert_eq!(a.weights_terms, WeightsTerms::Permissive);
    assert_eq!(
        a.weights_license.as_ref().unwrap().id.as_deref(),
        Some("Apache-2.0")
    );
    assert!(
        a.restrictions.is_empty(),
        "Apache's patent clause is not a restriction: {:?}",
        a.restrictions
    );
    assert_eq!(
        a.license_files[0].identified_as.as_deref(),
        Some("Apache-2.0")
    );
    assert_eq!(
        evidence(&a, "Model parameters (Final)"),
        EvidenceKind::Present
    );
    assert_eq!(evidence(&a, "Model card"), EvidenceKind::Present);
    assert_eq!(evidence(&a, "Inference code"), EvidenceKind::Declared);
    assert_eq!(evidence(&a, "Research paper"), EvidenceKind::Declared);
    assert_eq!(evidence(&a, "Datasets"), EvidenceKind::Absent);
    assert_eq!(evidence(&a, "Data card"), EvidenceKind::Absent);
    assert_eq!(evidence(&a, "Training code"), EvidenceKind::Absent);
    assert!(a
        .missing_for_next_tier
        .iter()
        .any(|m| m.starts_with("Training code")));
    assert!(a
        .missing_for_next_tier
        .iter()
        .any(|m| m.contains("description of all training data")));
    assert_eq!(
        a.release_licenses[0].evidence.kind,
        EvidenceKind::Present,
        "the LICENSE file beats the card"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn llama_licensed_model_is_restricted_with_quoted_clauses() {
    let dir = scratch("llama31");
    write_tree(
        &dir,
        &[
            ("README.md", "---\nlicense: llama3.1\nbase_model: meta-llama/Llama-3.1-8B\nbase_model_relation: finetune\n---\n# A fine-tune\n"),
            ("LICENSE", LLAMA31_EXCERPT),
            ("USE_POLICY.md", "# Llama 3.1 Acceptable Use Policy\nYou agree you will not use Llama 3.1 to violate the law.\n"),
            ("model-00001-of-00002.safetensors", "w"),
            ("model-00002-of-00002.safetensors", "w"),
        ],
    );
    let a = audit_dir(&dir);
    assert_eq!(a.tier, Tier::OpenWeights);
    assert_eq!(a.weights_terms, WeightsTerms::Restricted);
    assert_eq!(
        a.weights_license.as_ref().unwrap().id.as_deref(),
        Some("LicenseRef-Llama-3.1-Community-License")
    );
    let quoted = |kind: RestrictionKind, line: usize| {
        assert!(
            a.restrictions.iter().any(|r| r.kind == kind
                && r.source == format!("LICENSE:{line}")
                && r.quote.is_some()),
            "{kind:?} at LICENSE:{line} in {:#?}",
            a.restrictions
        )
    };
    quoted(RestrictionKind::Naming, 5);
    quoted(RestrictionKind::OutputUse, 6);
    quoted(RestrictionKind::Naming, 6);
    quoted(RestrictionKind::AcceptableUse, 7);
    quoted(RestrictionKind::UserThreshold, 8);
    quoted(RestrictionKind::LitigationTermination, 9);
    assert!(a
        .restrictions
        .iter()
        .any(|r| r.kind == RestrictionKind::AcceptableUse && r.source == "USE_POLICY.md:1"));
    assert!(a
        .notes
        .iter()
        .any(|n| n.contains("base model meta-llama/Llama-3.1-8B")));
    assert_eq!(
        a.eu_ai_act.open_source_exception_conditions_met,
        Some(false)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fully_documented_open_release_is_open_source_and_mof_class_one() {
    let dir = scratch("open");
    common::write_open_release(&dir);
    let a = audit_dir(&dir);
    assert_eq!(a.tier, Tier::OpenSource, "{:#?}", a.osaid);
    assert_eq!(a.weights_terms, WeightsTerms::Permissive);
    assert_eq!(a.mof.class, Some(1), "{:?}", a.mof.completeness);
    assert_eq!(a.mof.completeness.class_1, 100.0);
    for c in &a.components {
        assert_eq!(
            c.evidence.kind,
            EvidenceKind::Present,
            "{}: {:?}",
            c.name,
            c.evidence
        );
    }
    let datasets = a.components.iter().find(|c| c.name == "Datasets").unwrap();
    assert_eq!(
        datasets.license.as_ref().unwrap().id.as_deref(),
        Some("CDLA-Permissive-2.0")
    );
    assert_eq!(a.eu_ai_act.open_source_exception_conditions_met, Some(true));
    assert!(a.missing_for_next_tier.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mof_yml_paths_that_do_not_exist_are_absent_not_trusted() {
    let dir = scratch("open-missing");
    common::write_open_release(&dir);
    std::fs::remove_file(dir.join("train.py")).unwrap();
    let a = audit_dir(&dir);
    // A recipe configures a trainer; it is not the training code.
    assert_eq!(evidence(&a, "Training code"), EvidenceKind::Absent);
    assert!(a.notes.iter().any(|n| n.contains("train.py")));
    std::fs::remove_file(dir.join("data_gen.py")).unwrap();
    let a = audit_dir(&dir);
    assert_eq!(
        evidence(&a, "Data preprocessing code"),
        EvidenceKind::Absent
    );
    assert_eq!(a.tier, Tier::OpenWeights);
    assert!(a.notes.iter().any(|n| n.contains("data_gen.py")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn directory_without_any_licence_has_unknown_terms() {
    let dir = scratch("nolicence");
    write_tree(
        &dir,
        &[
            ("README.md", "# Weights, no licence\n"),
            ("model.safetensors", "w"),
        ],
    );
    let a = audit_dir(&dir);
    assert_eq!(a.tier, Tier::OpenWeights);
    assert_eq!(a.weights_terms, WeightsTerms::Unknown);
    assert!(a.weights_license.is_none());
    assert!(a.notes.iter().any(|n| n.contains("no licence found")));
    assert_eq!(
        a.eu_ai_act.open_source_exception_conditions_met,
        Some(false)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn directory_without_weights_is_closed() {
    let dir = scratch("noweights");
    write_tree(
        &dir,
        &[("README.md", "---\nlicense: mit\n---\n# API only\n")],
    );
    let a = audit_dir(&dir);
    assert_eq!(a.tier, Tier::Closed);
    assert_eq!(a.weights_terms, WeightsTerms::NotApplicable);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_licence_id_is_reported_as_unknown() {
    let dir = scratch("unknown-licence");
    write_tree(
        &dir,
        &[
            ("README.md", "---\nlicense: frobnicate-1.0\n---\n"),
            ("model.gguf", "w"),
        ],
    );
    let a = audit_dir(&dir);
    assert_eq!(a.weights_terms, WeightsTerms::Unknown);
    assert_eq!(a.weights_license.as_ref().unwrap().osi_approved, None);
    assert!(a
        .notes
        .iter()
        .any(|n| n.contains("frobnicate-1.0") && n.contains("unknown")));
    assert_eq!(
        a.eu_ai_act.open_source_exception_conditions_met,
        Some(false)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn expect_error(dir_files: &[(&str, &str)], name: &str, needle: &str) -> AuditError {
    let dir = scratch(name);
    write_tree(&dir, dir_files);
    let err = audit_target(dir.to_str().unwrap()).expect_err("bad input must fail");
    let message = err.to_string();
    assert!(message.contains(needle), "{message}");
    assert!(err.is_invalid_input());
    std::fs::remove_dir_all(&dir).unwrap();
    err
}

#[test]
fn malformed_front_matter_is_an_error_naming_the_card() {
    let e = expect_error(
        &[("README.md", "---\nlicense: [apache-2.0\n---\n")],
        "bad-fm",
        "README.md",
    );
    assert!(matches!(e, AuditError::FrontMatter { .. }));
    let e = expect_error(
        &[("README.md", "---\nlicense: mit\n# never closed\n")],
        "open-fm",
        "closing",
    );
    assert!(matches!(e, AuditError::FrontMatter { .. }));
}

#[test]
fn malformed_mof_yml_is_an_error_naming_the_file_and_field() {
    let e = expect_error(
        &[("mof.yml", "release: [unclosed\n")],
        "bad-yaml",
        "mof.yml",
    );
    assert!(matches!(e, AuditError::Yaml { .. }));
    let e = expect_error(
        &[(
            "mof.yml",
            "release:\n  name: x\n  components:\n  - name: Model weights\n",
        )],
        "bad-component",
        "release.components[0].name",
    );
    assert!(matches!(e, AuditError::Field { .. }));
    let e = expect_error(
        &[("mof.yml", "release:\n  version: '1'\n")],
        "no-name",
        "release.name",
    );
    assert!(matches!(e, AuditError::Field { .. }));
}

#[test]
fn missing_directory_and_unknown_ids_are_errors() {
    let missing = std::env::temp_dir().join("glassbox-audit-definitely-missing/dir");
    let e = audit_target(missing.to_str().unwrap()).unwrap_err();
    assert!(
        e.to_string().contains("definitely-missing") && e.is_invalid_input(),
        "{e}"
    );
    let e = audit_target("no-such-org/no-such-model").unwrap_err();
    assert!(matches!(e, AuditError::UnknownTarget(_)), "{e}");
    assert!(e.to_string().contains("--list"));
}

/// An evaluation split under data/ is evaluation data, never offered as the training data.
#[test]
fn evaluation_splits_are_not_datasets() {
    let dir = scratch("eval-split");
    write_tree(
        &dir,
        &[
            ("README.md", "---\nlicense: apache-2.0\n---\n# m\n"),
            ("model.safetensors", "weights"),
            ("data/held_out.txt", "held-out text\n"),
            ("data/test.jsonl", "{}\n"),
        ],
    );
    let a = audit_dir(&dir);
    assert_eq!(evidence(&a, "Evaluation data"), EvidenceKind::Present);
    assert_eq!(evidence(&a, "Datasets"), EvidenceKind::Absent);
    write_tree(&dir, &[("data/train.jsonl", "{}\n")]);
    let a = audit_dir(&dir);
    assert_eq!(evidence(&a, "Datasets"), EvidenceKind::Present);
    std::fs::remove_dir_all(&dir).unwrap();
}
