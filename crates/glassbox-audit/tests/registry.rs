//! The built-in registry: 30+ sourced entries, and the OSI's OSAID 1.0 validation
//! outcomes reproduced from the facts (not from the recorded outcome itself).

use glassbox_audit::audit::WeightsTerms;
use glassbox_audit::registry::{entries, lookup, COMPONENT_KEYS};
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
        ("falcon", "fail-license"),
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
