//! The audit trap corpus (`tests/fixtures/audit/`, made by its `make_corpus.py`): realistic
//! release folders with phrases that look like restrictions but are not (and the reverse), code
//! whose name and text disagree, licences that belong to one component only. Each case's
//! expected verdict, with the reason a careful reader would give, is in `expected.json`; every
//! case is audited and every disagreement reported.

use std::path::PathBuf;

use glassbox_audit::audit::{Audit, WeightsTerms};
use glassbox_audit::{audit_target, EvidenceKind, Tier};
use serde_json::Value;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/audit")
}

fn tier(t: &str) -> Tier {
    match t {
        "closed" => Tier::Closed,
        "open-weights" => Tier::OpenWeights,
        "open-source" => Tier::OpenSource,
        other => panic!("unknown tier {other}"),
    }
}

fn check(name: &str, expected: &Value, a: &Audit) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut differ = |what: String| wrong.push(format!("{name}: {what}"));
    let reason = expected["reason"].as_str().unwrap_or("");
    if a.tier != tier(expected["tier"].as_str().unwrap()) {
        differ(format!(
            "tier {:?}, expected {} because: {reason}\n    OSAID: {:#?}\n    notes: {:#?}",
            a.tier, expected["tier"], a.osaid, a.notes
        ));
    }
    if let Some(terms) = expected["weights_terms"].as_str() {
        let got = match a.weights_terms {
            WeightsTerms::Permissive => "permissive",
            WeightsTerms::Restricted => "restricted",
            WeightsTerms::Unknown => "unknown",
            WeightsTerms::NotApplicable => "not-applicable",
        };
        if got != terms {
            differ(format!("weights terms {got}, expected {terms}"));
        }
    }
    let component = |n: &str| a.components.iter().find(|c| c.name == n);
    for (comp, want) in expected["licenses"].as_object().into_iter().flatten() {
        let Some(c) = component(comp) else {
            differ(format!("no component {comp}"));
            continue;
        };
        let got = match &c.license {
            Some(l) if l.known() => l.id.clone().unwrap_or_else(|| l.written.clone()),
            Some(_) => "unknown".into(),
            None => "none".into(),
        };
        if got != want.as_str().unwrap() {
            differ(format!("{comp} licence {got}, expected {want}"));
        }
    }
    for (comp, want) in expected["evidence"].as_object().into_iter().flatten() {
        let got = component(comp).map(|c| c.evidence.kind);
        let want = match want.as_str().unwrap() {
            "present" => EvidenceKind::Present,
            "declared" => EvidenceKind::Declared,
            "absent" => EvidenceKind::Absent,
            other => panic!("{name}: unknown evidence kind {other}"),
        };
        if got != Some(want) {
            differ(format!("{comp} evidence {got:?}, expected {want:?}"));
        }
    }
    for (comp, want) in expected["where"].as_object().into_iter().flatten() {
        let got = component(comp).map(|c| c.evidence.detail.as_str());
        if got != want.as_str() {
            differ(format!("{comp} evidence at {got:?}, expected {want}"));
        }
    }
    if let Some(want) = expected["data_statements"].as_array() {
        let got: Vec<&str> = a
            .data_statements
            .iter()
            .map(|s| s.source.as_str())
            .collect();
        let want: Vec<&str> = want.iter().filter_map(Value::as_str).collect();
        if got != want {
            differ(format!("data statements at {got:?}, expected {want:?}"));
        }
        if !want.is_empty()
            && a.osaid
                .iter()
                .filter(|i| !i.met)
                .all(|i| !i.why.contains(want[0]))
        {
            differ(format!("no OSAID item quotes {}", want[0]));
        }
    }
    wrong
}

#[test]
fn every_trap_case_gets_the_careful_readers_verdict() {
    let text = std::fs::read_to_string(corpus().join("expected.json")).unwrap();
    let expected: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    assert!(expected.len() >= 20, "{} cases", expected.len());
    let (mut open_source, mut open_weights) = (0, 0);
    let mut wrong = Vec::new();
    for (name, want) in &expected {
        assert!(
            want["reason"].as_str().is_some_and(|r| r.len() > 20),
            "{name}: every case states its reason"
        );
        let dir = corpus().join("cases").join(name);
        let a = audit_target(dir.to_str().unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        match a.tier {
            Tier::OpenSource => open_source += 1,
            Tier::OpenWeights => open_weights += 1,
            Tier::Closed => {}
        }
        wrong.extend(check(name, want, &a));
    }
    // Traps both ways: releases that stay open source despite alarming words, and releases
    // that look open and are not.
    assert!(
        open_source >= 5 && open_weights >= 10,
        "{open_source} / {open_weights}"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
