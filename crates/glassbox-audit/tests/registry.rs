//! The built-in registry: 30+ sourced entries, and the OSI's OSAID 1.0 validation
//! outcomes reproduced from the facts (not from the recorded outcome itself).

use glassbox_audit::audit::WeightsTerms;
use glassbox_audit::licenses::RestrictionKind;
use glassbox_audit::registry::{entries, families, family, lookup, COMPONENT_KEYS};
use glassbox_audit::{audit_target, AuditError};
use glassbox_audit::{EvidenceKind, Tier};

#[test]
fn registry_has_thirty_sourced_entries() {
    let all = entries();
    assert!(all.len() >= 30, "{} entries", all.len());
    for e in all {
        assert!(
            matches!(e.basis.as_str(), "stored-source" | "recalled"),
            "{}: basis {}",
            e.id,
            e.basis
        );
        assert!(
            e.checked.len() == 10 && e.checked.starts_with("20"),
            "{}: checked {}",
            e.id,
            e.checked
        );
        assert!(!e.version.is_empty(), "{}: version", e.id);
        assert!(e.facts.contains_key("weights"), "{}: no weights fact", e.id);
        for (key, fact) in &e.facts {
            assert!(
                COMPONENT_KEYS.iter().any(|(k, _)| k == key),
                "{}: unknown fact {key}",
                e.id
            );
            assert!(
                fact.source.starts_with("https://"),
                "{}: {key} source {}",
                e.id,
                fact.source
            );
            if let Some(l) = &fact.license {
                let info = glassbox_audit::licenses::classify(l);
                assert!(info.known(), "{}: {key} licence {l} not recognised", e.id);
            }
        }
        // Every registry fact is shown as a registry fact, never as present or declared.
        let release = e.release();
        for c in &release.components {
            assert!(
                matches!(
                    c.evidence.kind,
                    EvidenceKind::Registry | EvidenceKind::Absent
                ),
                "{}: {}",
                e.id,
                c.name
            );
        }
    }
}

fn check(id: &str, outcome: &str) {
    let entry = lookup(id).unwrap_or_else(|| panic!("{id} not in the registry"));
    assert_eq!(
        entry.osi_validation.as_deref(),
        Some(outcome),
        "{id}: recorded outcome"
    );
    let audit = entry.release().audit();
    match outcome {
        "pass" => assert_eq!(audit.tier, Tier::OpenSource, "{id}: {:#?}", audit.osaid),
        "fail" => assert_ne!(audit.tier, Tier::OpenSource, "{id}"),
        "fail-license" => {
            assert_ne!(audit.tier, Tier::OpenSource, "{id}");
            assert_eq!(
                audit.weights_terms,
                WeightsTerms::Restricted,
                "{id}: the licence is a reason"
            );
        }
        other => panic!("unknown outcome {other}"),
    }
}

#[test]
fn osi_validation_outcomes_are_reproduced() {
    for (id, outcome) in [
        ("pythia", "pass"),
        ("olmo", "pass"),
        ("amber", "pass"),
        ("crystalcoder", "pass"),
        ("t5", "pass"),
        ("llama-2", "fail"),
        ("grok-1", "fail"),
        ("phi-2", "fail"),
        ("mixtral", "fail"),
        ("bloom", "fail-license"),
        ("starcoder2", "fail-license"),
        ("tiiuae/falcon-180B", "fail-license"),
    ] {
        check(id, outcome);
    }
    let recorded = entries()
        .iter()
        .filter(|e| e.osi_validation.is_some())
        .count();
    assert_eq!(recorded, 12, "every OSI-validated model is checked above");
}

fn tier_of(id: &str) -> (Tier, WeightsTerms) {
    let a = lookup(id)
        .unwrap_or_else(|| panic!("{id}"))
        .release()
        .audit();
    (a.tier, a.weights_terms)
}

#[test]
fn families_people_ask_about() {
    use Tier::*;
    use WeightsTerms::*;
    for (id, expected) in [
        ("meta-llama/Llama-3.1-8B", (OpenWeights, Restricted)),
        ("meta-llama/Llama-3.2-1B", (OpenWeights, Restricted)),
        ("Qwen/Qwen2.5-7B", (OpenWeights, Permissive)),
        ("Qwen/Qwen2.5-3B", (OpenWeights, Restricted)),
        ("Qwen/Qwen2.5-72B-Instruct", (OpenWeights, Restricted)),
        ("Qwen/Qwen3-8B", (OpenWeights, Permissive)),
        ("deepseek-ai/DeepSeek-V3", (OpenWeights, Restricted)),
        ("deepseek-ai/DeepSeek-R1", (OpenWeights, Permissive)),
        ("google/gemma-2-9b", (OpenWeights, Restricted)),
        ("allenai/OLMo-2-1124-7B", (OpenSource, Permissive)),
        ("openai-community/gpt2", (OpenWeights, Permissive)),
        ("claude", (Closed, NotApplicable)),
        ("gpt-4o", (Closed, NotApplicable)),
        ("gemini", (Closed, NotApplicable)),
    ] {
        assert_eq!(tier_of(id), expected, "{id}");
    }
}

#[test]
fn lookup_is_case_insensitive_and_knows_aliases() {
    assert_eq!(
        lookup("META-LLAMA/llama-3.1-8b").unwrap().id,
        "meta-llama/Llama-3.1-8B"
    );
    assert_eq!(
        lookup("meta-llama/Meta-Llama-3.1-8B").unwrap().id,
        "meta-llama/Llama-3.1-8B"
    );
    assert!(lookup("nobody/nothing").is_none());
}

/// Registry releases that MOT describes carry MOT's own class and completeness, computed from
/// MOT's file (embedded), not from the registry's facts.
#[test]
fn registry_releases_carry_mots_class() {
    let mut with_mot = 0;
    for e in entries() {
        let Some(file) = &e.mot else { continue };
        let mot = e
            .mot_release()
            .unwrap_or_else(|| panic!("{}: MOT file {file} not embedded or not parsed", e.id));
        let audit = e.release().audit();
        let expected = mot.mof_model().score();
        assert_eq!(audit.mof.class, expected.class, "{}", e.id);
        assert_eq!(
            audit.mof.completeness.class_1, expected.progress[0],
            "{}",
            e.id
        );
        assert!(audit.mof.computed_from.starts_with("MOT file"), "{}", e.id);
        with_mot += 1;
    }
    assert!(with_mot >= 15, "{with_mot} entries name a MOT file");
    for id in ["EleutherAI/pythia-6.9b", "allenai/OLMo-7B"] {
        let audit = lookup(id).unwrap().release().audit();
        assert_eq!(audit.mof.class, Some(1), "{id}: MOT classifies it Class I");
    }
}

/// OSAID asks for data *information* under open terms, not for openly licensed data: BLOOM and
/// StarCoder2, whose training data keep their sources' own terms, become open source once their
/// weights (and the model card carrying the information) are relicensed, as the OSI states.
#[test]
fn relicensed_bloom_and_starcoder2_become_open_source() {
    for id in ["bigscience/bloom", "bigcode/starcoder2-15b"] {
        let mut release = lookup(id).unwrap().release();
        assert_ne!(
            release.clone().audit().tier,
            Tier::OpenSource,
            "{id} as released"
        );
        for c in release.components.iter_mut() {
            let relicensed = c
                .license
                .as_ref()
                .is_some_and(|l| !l.is_osi() && !l.is_open_content());
            if c.evidence.is_available() && relicensed {
                c.license = Some(glassbox_audit::licenses::classify("Apache-2.0"));
            }
        }
        let audit = release.audit();
        assert_eq!(audit.tier, Tier::OpenSource, "{id}: {:#?}", audit.osaid);
        // The MOF class still grades the datasets' own (unstated, per-source) licences.
        let datasets = audit
            .components
            .iter()
            .find(|c| c.name == "Datasets")
            .unwrap();
        assert!(
            datasets
                .license
                .as_ref()
                .is_none_or(|l| !l.is_open_content()),
            "{id}"
        );
    }
}

/// Every fact is checkable: a source URL, a date and a basis, said in the output; every alias
/// names exactly one release, and a family name none.
#[test]
fn every_fact_has_a_source_a_date_and_a_basis_and_aliases_are_unambiguous() {
    let mut names: std::collections::BTreeMap<String, &str> = Default::default();
    for e in entries() {
        for name in std::iter::once(&e.id).chain(&e.aliases) {
            let key = name.to_lowercase();
            if let Some(other) = names.insert(key.clone(), &e.id) {
                panic!("`{name}` names both {other} and {}", e.id);
            }
            assert!(
                family(name).is_none(),
                "`{name}` is both an alias of {} and a family",
                e.id
            );
        }
        for (key, fact) in &e.facts {
            assert!(
                fact.source.starts_with("https://"),
                "{}: {key}: source",
                e.id
            );
            let date = fact.checked.as_deref().unwrap_or(&e.checked);
            assert!(
                date.len() == 10 && date.starts_with("20"),
                "{}: {key}: date",
                e.id
            );
            let basis = e.basis_of(key, fact);
            assert!(
                basis.starts_with("verified against") || basis.starts_with("recalled"),
                "{}: {key}: {basis}",
                e.id
            );
        }
        // The basis is shown with every registry fact, never a bare date.
        for c in e.release().audit().components {
            if c.evidence.kind == EvidenceKind::Registry {
                assert!(
                    c.evidence.detail.contains("verified against")
                        || c.evidence.detail.contains("not re-verified"),
                    "{}: {}: {}",
                    e.id,
                    c.name,
                    c.evidence.detail
                );
            }
        }
    }
    for f in families() {
        assert!(f.candidates.len() >= 1, "{}", f.name);
        for c in &f.candidates {
            assert!(
                lookup(c).is_some(),
                "family {}: {c} is not a release",
                f.name
            );
        }
    }
}

#[test]
fn family_names_list_their_candidates_and_exit_2() {
    for name in ["falcon", "nemotron", "mistral", "glm-4", "qwen2.5"] {
        let err = audit_target(name)
            .err()
            .unwrap_or_else(|| panic!("{name} picked one"));
        assert!(matches!(err, AuditError::Ambiguous { .. }), "{name}: {err}");
        assert!(err.is_invalid_input());
        assert!(err.to_string().contains("audit one of"), "{err}");
    }
    // gpt-4 is GPT-4, not GPT-4o.
    assert_eq!(lookup("gpt-4").unwrap().id, "openai/gpt-4");
    assert_eq!(lookup("gpt-4o").unwrap().id, "openai/gpt-4o");
}

fn fact<'a>(id: &str, key: &str) -> &'a glassbox_audit::registry::Fact {
    lookup(id)
        .unwrap()
        .facts
        .get(key)
        .unwrap_or_else(|| panic!("{id}: no {key} fact"))
}

#[test]
fn llama_3_2_eu_exclusion_binds_the_vision_models_only() {
    let text = lookup("meta-llama/Llama-3.2-1B").unwrap().release().audit();
    assert!(
        !text
            .restrictions
            .iter()
            .any(|r| r.kind == RestrictionKind::FieldOfUse),
        "{:?}",
        text.restrictions
    );
    assert!(text.notes.iter().any(|n| n.contains("USE_POLICY.md")));
    assert!(lookup("meta-llama/Llama-3.2-11B-Vision")
        .is_some_and(|e| e.id != "meta-llama/Llama-3.2-1B"));
    let vision = lookup("meta-llama/Llama-3.2-11B-Vision")
        .unwrap()
        .release()
        .audit();
    assert!(vision
        .restrictions
        .iter()
        .any(|r| r.kind == RestrictionKind::FieldOfUse));
}

#[test]
fn corrected_facts_carry_their_sources() {
    let starcoder = fact("bigcode/starcoder2-15b", "training_code");
    assert!(
        starcoder.source.contains("NVIDIA/NeMo")
            && starcoder.note.as_deref().unwrap().contains("nanotron")
    );
    let nemotron = fact("nvidia/Nemotron-4-340B-Base", "training_code");
    assert!(
        !nemotron.available
            && nemotron
                .note
                .as_deref()
                .unwrap()
                .contains("alignment code only")
    );
    let qwen = fact("Qwen/Qwen2.5-7B", "inference_code");
    assert!(!qwen.source.contains("QwenLM/Qwen2.5"), "{}", qwen.source);
    let pile = fact("EleutherAI/pythia-6.9b", "datasets");
    assert_ne!(pile.license.as_deref(), Some("MIT"));
    let gpt2 = fact("openai-community/gpt2", "architecture");
    assert_eq!(gpt2.license.as_deref(), Some("openai-gpt-2-modified-mit"));
    let gpt2_code = glassbox_audit::licenses::classify("openai-gpt-2-modified-mit");
    assert!(gpt2_code.known() && !gpt2_code.is_osi());
    // Falcon-180B: the public RefinedWeb extract is not the training mix.
    let falcon = lookup("tiiuae/falcon-180B").unwrap().release().audit();
    let data_items: Vec<_> = falcon
        .osaid
        .iter()
        .filter(|i| i.requirement.starts_with("Data information"))
        .collect();
    assert!(data_items.iter().all(|i| !i.met), "{data_items:#?}");
    // Architecture and inference code are public for these: the EU reading says so.
    for id in ["Qwen/Qwen2.5-3B", "Qwen/Qwen2.5-72B", "THUDM/glm-4-9b"] {
        let a = lookup(id).unwrap().release().audit();
        assert!(
            a.eu_ai_act
                .reasons
                .iter()
                .any(|r| r == "architecture information public: yes"),
            "{id}: {:?}",
            a.eu_ai_act.reasons
        );
    }
}

/// The README's count of registry releases is the registry's.
#[test]
fn readme_counts_the_registry_releases() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let (_, rest) = readme
        .split_once("the registry: ")
        .expect("the README counts the registry's releases");
    let n: usize = rest.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(n, glassbox_audit::registry::entries().len());
}
