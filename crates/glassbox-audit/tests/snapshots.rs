//! Snapshot directories written by the tests get the right tier, restrictions and
//! evidence kinds; bad input gets a clear error or an explicit "unknown".

mod common;

use common::{apache_license, scratch, write_tree, LLAMA31_EXCERPT};
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
            ("LICENSE", &apache_license()),
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

fn note_with<'a>(a: &'a Audit, needle: &str) -> Option<&'a String> {
    a.notes.iter().find(|n| n.contains(needle))
}

/// An OSI licence with a binding acceptable-use policy beside it is not open source: the
/// policy restricts use, so the weights' terms are restricted and the OSAID line says why.
#[test]
fn use_policy_beside_an_osi_licence_rules_out_open_source() {
    let dir = scratch("aup");
    common::write_open_release(&dir);
    assert_eq!(
        audit_dir(&dir).tier,
        Tier::OpenSource,
        "the release without the policy"
    );
    write_tree(
        &dir,
        &[(
            "USE_POLICY.md",
            "# Acceptable Use Policy\n\nYou agree not to use the Model or Derivatives of the Model:\n- for military use in any way;\n",
        )],
    );
    let a = audit_dir(&dir);
    assert_eq!(a.tier, Tier::OpenWeights);
    assert_eq!(a.weights_terms, WeightsTerms::Restricted);
    assert_eq!(
        a.weights_license.as_ref().unwrap().id.as_deref(),
        Some("Apache-2.0")
    );
    let weights = &a.osaid[0];
    assert!(!weights.met);
    assert!(
        weights.why.contains("restricted") && weights.why.contains("USE_POLICY.md:"),
        "{}",
        weights.why
    );
    assert_eq!(
        a.eu_ai_act.open_source_exception_conditions_met,
        Some(false)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A card and a LICENSE naming different licences: both apply, so the non-commercial card
/// keeps the Apache-2.0 file from making the release open; both sources are quoted.
#[test]
fn card_and_licence_file_in_conflict_both_apply() {
    let dir = scratch("conflict");
    write_tree(
        &dir,
        &[
            ("README.md", "---\nlicense: cc-by-nc-4.0\n---\n# m\n"),
            ("LICENSE", &apache_license()),
            ("model.safetensors", "w"),
        ],
    );
    let a = audit_dir(&dir);
    assert_eq!(a.tier, Tier::OpenWeights);
    assert_eq!(a.weights_terms, WeightsTerms::Restricted);
    let id = a.weights_license.as_ref().unwrap().id.clone().unwrap();
    assert!(
        id.contains("CC-BY-NC-4.0") && id.contains("Apache-2.0"),
        "{id}"
    );
    let note = note_with(&a, "licences conflict").expect("noted");
    assert!(
        note.contains("cc-by-nc-4.0") && note.contains("LICENSE"),
        "{note}"
    );
    assert!(a
        .restrictions
        .iter()
        .any(|r| r.kind == RestrictionKind::NonCommercial));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A top-level LICENSE this tool cannot identify does not override the licence the card
/// names; one that is a known licence with terms added does (its terms are unknown).
#[test]
fn unidentified_licence_file_leaves_the_cards_licence() {
    let dir = scratch("unidentified");
    write_tree(
        &dir,
        &[
            ("README.md", "---\nlicense: mit\n---\n# m\n"),
            ("LICENSE", "Terms of the Example model.\nSee the card.\n"),
            ("model.safetensors", "w"),
        ],
    );
    let a = audit_dir(&dir);
    assert_eq!(
        a.weights_license.as_ref().unwrap().id.as_deref(),
        Some("MIT")
    );
    assert_eq!(a.weights_terms, WeightsTerms::Permissive);
    assert!(
        note_with(&a, "LICENSE: licence text not identified").is_some(),
        "{:?}",
        a.notes
    );

    let modified = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/audit/licence-texts/not/Kimi-K2-Modified-MIT.txt"),
    )
    .unwrap();
    write_tree(&dir, &[("LICENSE", &modified)]);
    let a = audit_dir(&dir);
    assert!(!a.weights_license.as_ref().unwrap().known());
    assert_ne!(a.weights_terms, WeightsTerms::Permissive);
    assert_eq!(a.license_files[0].variant_of.as_deref(), Some("MIT"));
    let note = note_with(&a, "the text of MIT with changes").expect("noted");
    assert!(note.contains("commercial products"), "{note}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Card links are reported at the file's own line numbers, and the words introducing a link
/// say what it is before its host does (an arXiv datasheet is a data card, not a paper).
#[test]
fn card_links_have_file_lines_and_their_introduction_decides() {
    let dir = scratch("links");
    write_tree(
        &dir,
        &[
            (
                "README.md",
                "---\nlicense: mit\ntags:\n- x\n---\n# m\nConsult [the datasheet](https://arxiv.org/abs/2201.07311).\nRead the paper: https://arxiv.org/abs/1234.56789\n",
            ),
            ("model.safetensors", "w"),
        ],
    );
    let a = audit_dir(&dir);
    let detail = |n: &str| {
        a.components
            .iter()
            .find(|c| c.name == n)
            .unwrap()
            .evidence
            .detail
            .clone()
    };
    assert_eq!(evidence(&a, "Data card"), EvidenceKind::Declared);
    assert_eq!(
        detail("Data card"),
        "README.md line 7: https://arxiv.org/abs/2201.07311"
    );
    assert_eq!(
        detail("Research paper"),
        "README.md line 8: https://arxiv.org/abs/1234.56789"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Hub's unfilled card template is not a model card; a `license` that is not a string is
/// noted, not taken as "no licence" silently; a path without a name of its own (`x/..`, `.`)
/// is named after the folder it is.
#[test]
fn template_cards_odd_licence_fields_and_folder_names() {
    let dir = scratch("template-card");
    let template = "---\nlibrary_name: transformers\nlicense: 42\n---\n# Model Card for Model ID\n\n## Model Details\n\n- **Developed by:** [More Information Needed]\n- **License:** [More Information Needed]\n\n## Uses\n\n[More Information Needed]\n\n## Training Data\n\n[More Information Needed]\n";
    write_tree(
        &dir,
        &[
            ("README.md", template),
            ("model.safetensors", "w"),
            ("sub/x.txt", "x"),
        ],
    );
    let a = audit_dir(&dir.join("sub/.."));
    assert_eq!(evidence(&a, "Model card"), EvidenceKind::Absent);
    assert!(note_with(&a, "template").is_some(), "{:?}", a.notes);
    assert!(note_with(&a, "`42`").is_some(), "{:?}", a.notes);
    assert_eq!(a.release, dir.file_name().unwrap().to_string_lossy());
    assert!(a
        .eu_ai_act
        .reasons
        .iter()
        .any(|r| r == "usage information (model card) public: no"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What the release is called comes from where it lies too: a folder named after it, a Hub
/// cache folder (`models--ORG--NAME/snapshots/REV`). Training code that starts from it fine-tunes
/// it (noted, not training code, also when `mof.yml` lists it as such); code that starts from
/// the card's `base_model` made it, even in a folder named like the base.
#[test]
fn code_that_fine_tunes_the_release_by_its_folder_or_cache_name_is_not_training_code() {
    let dir = scratch("fine-tune-names");
    let finetune = |source: &str| {
        format!("import torch\nfrom transformers import AutoModelForCausalLM\n\nmodel = AutoModelForCausalLM.from_pretrained(\"{source}\")\noptimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)\nfor batch in loader:\n    model(**batch).loss.backward()\n    optimizer.step()\n")
    };
    let release = |root: &std::path::Path, card: &str, script: &str| {
        write_tree(
            root,
            &[
                ("README.md", card),
                ("LICENSE", &apache_license()),
                ("model.safetensors", "w"),
                ("finetune.py", script),
            ],
        );
    };
    let card = "---\nlicense: apache-2.0\n---\n# A model\n";
    let training = |a: &Audit| {
        a.components
            .iter()
            .find(|c| c.name == "Training code")
            .unwrap()
            .evidence
            .clone()
    };

    let folder = dir.join("tiny-chat");
    release(&folder, card, &finetune("/data/models/tiny-chat"));
    let a = audit_dir(&folder);
    assert_eq!(
        training(&a).kind,
        EvidenceKind::Absent,
        "{:?}",
        training(&a)
    );
    assert!(
        training(&a)
            .detail
            .contains("finetune.py fine-tunes the release itself"),
        "{:?}",
        training(&a)
    );
    assert!(
        a.notes
            .iter()
            .any(|n| n.starts_with("finetune.py fine-tunes this release")
                && n.contains("the release folder's name")),
        "{:#?}",
        a.notes
    );

    let cache = dir.join("models--acme--tiny-chat/snapshots/0123456789abcdef");
    release(&cache, card, &finetune("acme/tiny-chat"));
    let a = audit_dir(&cache);
    assert_eq!(training(&a).kind, EvidenceKind::Absent);
    assert!(
        a.notes
            .iter()
            .any(|n| n.contains("the Hub cache folder models--acme--tiny-chat")),
        "{:#?}",
        a.notes
    );
    // mof.yml cannot make it training code either
    write_tree(&cache, &[("mof.yml", "framework:\n  name: Model Openness Framework\n  version: '1.0'\n  date: '2024-12-15'\nrelease:\n  name: tiny-chat\n  version: '1'\n  producer: tests\n  license:\n    distribution:\n      name: Apache-2.0\n      path: LICENSE\n  components:\n  - name: Training code\n    component_path: finetune.py\n")]);
    let a = audit_dir(&cache);
    assert_eq!(training(&a).kind, EvidenceKind::Absent);
    assert!(
        a.notes.iter().any(|n| n
            .contains("lists finetune.py as training code, but it fine-tunes the release itself")),
        "{:#?}",
        a.notes
    );

    // the card's base model is not the release, whatever the folder is called
    let base_named = dir.join("tiny-base");
    release(
        &base_named,
        "---\nlicense: apache-2.0\nbase_model: acme/tiny-base\n---\n# tiny-chat\n",
        &finetune("acme/tiny-base"),
    );
    let a = audit_dir(&base_named);
    assert_eq!(training(&a).kind, EvidenceKind::Present);
    assert_eq!(training(&a).detail, "finetune.py");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A licence file past the reading bound was listed as "not identified" with the hash of the
/// empty text, as if read: the audit says it was too large to read.
#[test]
fn a_licence_file_too_large_to_read_is_said() {
    let dir = scratch("huge-licence");
    let huge = "all rights reserved ".repeat(150_000);
    write_tree(
        &dir,
        &[
            ("README.md", "---\nlicense: apache-2.0\n---\n# A model\n"),
            ("LICENSE", &huge),
            ("config.json", "{}"),
            ("model.safetensors", "weights"),
        ],
    );
    let a = audit_dir(&dir);
    assert!(
        note_with(&a, "LICENSE: larger than 2 MB, too large to read").is_some(),
        "{:?}",
        a.notes
    );
}
