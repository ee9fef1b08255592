//! A real Hub snapshot (sentence-transformers/all-MiniLM-L6-v2, fetched into `.artifacts/`
//! by `scripts/fetch-artifacts.sh`): Apache-2.0 weights, datasets listed in the card, no
//! training code or data card in the snapshot.

use std::path::Path;

use glassbox_audit::audit::WeightsTerms;
use glassbox_audit::{audit_target, EvidenceKind, Tier};

#[test]
fn all_minilm_snapshot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.artifacts/all-minilm-l6-v2");
    if !dir.is_dir() {
        assert!(
            std::env::var_os("GLASSBOX_REQUIRE_ARTIFACTS").is_none(),
            "{} is missing (run scripts/fetch-artifacts.sh)",
            dir.display()
        );
        eprintln!("notice: {} not fetched; test not run", dir.display());
        return;
    }
    let a = audit_target(dir.to_str().unwrap()).unwrap();
    assert_eq!(a.tier, Tier::OpenWeights);
    assert_eq!(a.weights_terms, WeightsTerms::Permissive);
    let kind = |name: &str| {
        a.components
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .evidence
            .kind
    };
    assert_eq!(kind("Model parameters (Final)"), EvidenceKind::Present);
    assert_eq!(kind("Model card"), EvidenceKind::Present);
    assert_eq!(kind("Datasets"), EvidenceKind::Declared);
    assert_eq!(kind("Inference code"), EvidenceKind::Declared);
    assert_eq!(kind("Training code"), EvidenceKind::Absent);
    assert_eq!(kind("Data card"), EvidenceKind::Absent);
    assert!(
        a.release_licenses
            .iter()
            .all(|l| l.evidence.kind == EvidenceKind::Declared),
        "no LICENSE file: the card's claim"
    );
}
