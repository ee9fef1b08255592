//! `glassbox probe` on the reference model, for a property its synthetic corpus plants: a fact
//! `kNN is vMM` whose value comes from the weights. At the `is` position the model predicts
//! the value with accuracy 1.0 (its eval_results.json), so after the last block whether the
//! value is in the first or second half of the table must be readable there; before the first
//! block that position holds only the embedding of `is`, the same in every example, so nothing
//! is. A probe on shuffled labels (the control) must stay near chance everywhere. Then
//! `steer --direction` turns the probe's direction into a control vector.

use std::path::{Path, PathBuf};
use std::process::Command;

use glassbox_train::corpus;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn glassbox(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "glassbox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_probe_reads_a_planted_fact_where_the_model_holds_it() {
    let recipe =
        glassbox_train::recipe::Recipe::load(&root().join("models/reference/recipe.toml")).unwrap();
    let table = corpus::fact_table(&recipe.data);
    let half = recipe.data.values / 2;
    let contexts = [
        "the old fox chases a bird .",
        "a small cat sees the dog .",
        "the red king helps a child .",
        "a new bear finds the fish .",
        "the happy dog calls a cat .",
        "a quiet child likes the king .",
        "the blue bird sees a bear .",
        "a big fish chases the fox .",
    ];
    let dir = std::env::temp_dir().join(format!("glassbox-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("facts.jsonl");
    let mut lines = String::new();
    for (key, &value) in table.iter().enumerate() {
        for c in contexts {
            let label = if value < half { "low" } else { "high" };
            lines.push_str(&format!(
                "{{\"text\": \"{c} {} is\", \"label\": \"{label}\"}}\n",
                corpus::key_word(key)
            ));
        }
    }
    std::fs::write(&data, lines).unwrap();
    let model = root().join("models/reference");
    let probes = dir.join("probe.safetensors");
    let out = glassbox(&[
        "probe",
        model.to_str().unwrap(),
        "--hooks",
        "blocks.0.hook_resid_pre,blocks.*.hook_resid_post",
        "--data",
        data.to_str().unwrap(),
        "--out",
        probes.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for p in v["probes"].as_array().unwrap() {
        eprintln!(
            "{}: test {:.3} (AUC {}), control {:.3}, majority {}",
            p["hook"],
            p["test_score"],
            p["test_auc"],
            p["control_test_score"],
            p["majority_baseline"]
        );
    }
    let by_hook = |h: &str| {
        v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["hook"] == h)
            .unwrap()
            .clone()
    };
    let first = by_hook("blocks.0.hook_resid_pre");
    let last = by_hook("blocks.2.hook_resid_post");
    let score = |p: &serde_json::Value, k: &str| p[k].as_f64().unwrap();
    assert!(
        score(&last, "test_score") >= 0.9,
        "the model holds the value after its last block: {last}"
    );
    assert!(score(&last, "test_auc") >= 0.95, "{last}");
    assert!(
        score(&first, "test_score") <= score(&first, "majority_baseline").max(0.5) + 0.1,
        "nothing before the first block: {first}"
    );
    // The control is judged against what guessing the commoner class gives.
    for p in v["probes"].as_array().unwrap() {
        let chance = score(p, "majority_baseline").max(0.5);
        assert!(
            score(p, "control_test_score") <= chance + 0.1,
            "a probe on shuffled labels learnt something: {p}"
        );
    }

    // The direction steers: a control vector made from it holds it at block 2.
    let cv = dir.join("probe.gguf");
    glassbox(&[
        "steer",
        model.to_str().unwrap(),
        "--direction",
        probes.to_str().unwrap(),
        "--out",
        cv.to_str().unwrap(),
    ]);
    let control = glassbox_analysis::steering::ControlVector::read(&cv).unwrap();
    let saved = candle_core::safetensors::load(&probes, &candle_core::Device::Cpu).unwrap();
    let want: Vec<f32> = saved["blocks.2.hook_resid_post"].to_vec1().unwrap();
    assert_eq!(control.directions[&2], want);
    assert!(
        !control.directions.contains_key(&0),
        "block 0's output cannot be steered (llama.cpp)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
