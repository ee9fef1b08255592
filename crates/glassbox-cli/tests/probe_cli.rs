//! `glassbox probe` on the reference model, for a property its synthetic corpus plants: a fact
//! `kNN is vMM` whose value comes from the weights. At the `is` position the model predicts
//! the value with accuracy 1.0 (its eval_results.json), so after the last block whether the
//! value is in the first or second half of the table must be readable there; before the first
//! block that position holds only the embedding of `is`, the same in every example, so nothing
//! is. A probe on shuffled labels (the control) must stay near chance everywhere. Then
//! `steer --direction` turns the probe's direction into a control vector.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    // a real finding on 48 held-out examples: a best hook and nothing to warn about
    assert_eq!(v["warnings"], serde_json::json!([]), "{v}");
    assert!(
        v["best"].as_str().unwrap().ends_with("hook_resid_post"),
        "{}",
        v["best"]
    );
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
    let steered = run(&[
        "steer",
        model.to_str().unwrap(),
        "--direction",
        probes.to_str().unwrap(),
        "--out",
        cv.to_str().unwrap(),
    ]);
    let (said, told) = (
        String::from_utf8_lossy(&steered.stdout),
        String::from_utf8_lossy(&steered.stderr),
    );
    assert!(steered.status.success(), "{told}");
    // Named as what it is (it had read "|mean difference|"), and block 0's is said to be left out.
    assert!(
        said.contains("|probe direction| = ") && !said.contains("mean difference"),
        "{said}"
    );
    assert!(told.contains("directions at blocks [0] left out"), "{told}");
    // the file records the model it was probed on, which is this one: nothing to say
    assert!(!told.contains("probed on"), "{told}");
    let control = glassbox_analysis::steering::ControlVector::read(&cv).unwrap();
    let saved = candle_core::safetensors::load(&probes, &candle_core::Device::Cpu).unwrap();
    let want: Vec<f32> = saved["blocks.2.hook_resid_post"].to_vec1().unwrap();
    assert_eq!(control.directions[&2], want);
    assert!(
        !control.directions.contains_key(&0),
        "block 0's output cannot be steered (llama.cpp)"
    );

    // An earlier checkpoint of the same shape computes otherwise: steering it is said to
    // assume a shared basis, naming the model the directions came from.
    let early = model.join("checkpoints/step-000010");
    let steered = run(&[
        "steer",
        early.to_str().unwrap(),
        "--direction",
        probes.to_str().unwrap(),
        "--out",
        dir.join("early.gguf").to_str().unwrap(),
    ]);
    let told = String::from_utf8_lossy(&steered.stderr);
    assert!(steered.status.success(), "{told}");
    assert!(
        told.contains(&format!("probed on `{}`", model.display()))
            && told.contains("share a residual basis"),
        "{told}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .unwrap()
}

/// `n` examples of the reference model's sentence shapes whose labels are coin flips (a fixed
/// SplitMix64 stream): nothing about them is readable from any activation.
fn noise(path: &Path, n: usize) {
    let contexts = [
        "the old fox chases a bird .",
        "a small cat sees the dog .",
        "the red king helps a child .",
        "a new bear finds the fish .",
    ];
    let mut state = 0x5eed_u64;
    let mut lines = String::new();
    for i in 0..n {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let label = if z & 1 == 1 { "yes" } else { "no" };
        lines.push_str(&format!(
            "{{\"text\": \"{} {} is\", \"label\": \"{label}\"}}\n",
            contexts[i % contexts.len()],
            corpus::key_word(i / contexts.len())
        ));
    }
    std::fs::write(path, lines).unwrap();
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// 8 examples hold out 2, and so does `--test-fraction 0.01` of 200: a warning says so, with
/// the interval of the accuracy shown, and no hook is named best on two coin flips. On 200
/// coin flips (50 held out) no hook beats chance, and none is named best either.
#[test]
fn held_out_noise_is_not_presented_as_a_finding() {
    let dir = support::scratch("probe-cli", "noise");
    let model = root().join("models/reference");
    let model = model.to_str().unwrap();
    let (few, many) = (dir.join("few.jsonl"), dir.join("many.jsonl"));
    noise(&few, 8);
    noise(&many, 200);
    let hooks = "blocks.0.hook_resid_pre,blocks.*.hook_resid_post";
    let probe = |data: &Path, extra: &[&str]| {
        let mut args = vec![
            "probe",
            model,
            "--hooks",
            hooks,
            "--data",
            data.to_str().unwrap(),
        ];
        args.extend(extra);
        run(&args)
    };
    for (data, extra) in [(&few, &[][..]), (&many, &["--test-fraction", "0.01"][..])] {
        let mut json = extra.to_vec();
        json.push("--json");
        let v = json_of(&probe(data, &json));
        assert_eq!(v["probes"][0]["test_examples"], 2, "{v}");
        let warnings = v["warnings"].as_array().expect("a list of warnings");
        assert!(
            warnings.iter().any(|w| {
                let w = w.as_str().unwrap();
                w.contains("2 held-out examples (fewer than 10)") && w.contains("95 % interval")
            }),
            "{warnings:?}"
        );
        assert!(v.as_object().unwrap().contains_key("best"), "{v}");
        assert!(v["best"].is_null(), "{v}");
        let out = probe(data, extra);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("warning: 2 held-out examples"), "{stderr}");
        assert!(stdout.contains("best held-out: none"), "{stdout}");
    }
    let v = json_of(&probe(&many, &["--json"]));
    assert_eq!(v["probes"][0]["test_examples"], 50);
    for p in v["probes"].as_array().unwrap() {
        let score = p["test_score"].as_f64().unwrap();
        let [lo, hi] = [0, 1].map(|i| p["test_interval"][i].as_f64().unwrap());
        assert!(lo < score && score < hi, "{p}");
        assert!(p["chance"].as_f64().unwrap() >= 0.5, "{p}");
    }
    assert!(v["best"].is_null(), "{v}");
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("no best hook")),
        "{v}"
    );
    let out = probe(&many, &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("best held-out: none"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Thirty texts with random labels, each written five times: split by rows, copies of the
/// held-out texts sat in training and the probe scored 1.000 with a named best hook. Copies
/// stay on one side, and the file's repeats are said.
#[test]
fn repeated_texts_do_not_leak_into_the_held_out_set() {
    let dir = support::scratch("probe-cli", "repeats");
    let model = root().join("models/reference");
    let (once, repeated) = (dir.join("once.jsonl"), dir.join("repeated.jsonl"));
    noise(&once, 30);
    std::fs::write(&repeated, std::fs::read_to_string(&once).unwrap().repeat(5)).unwrap();
    let out = run(&[
        "probe",
        model.to_str().unwrap(),
        "--hooks",
        "blocks.*.hook_resid_post",
        "--data",
        repeated.to_str().unwrap(),
        "--json",
    ]);
    let v = json_of(&out);
    assert!(v["best"].is_null(), "{v}");
    for p in v["probes"].as_array().unwrap() {
        assert!(p["test_score"].as_f64().unwrap() < 0.9, "{p}");
    }
    assert!(
        v["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("120 of the 150 examples repeat")),
        "{v}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A penalty that is NaN, infinite or negative is refused before anything runs; a direction
/// that is not finite (a model whose activations are NaN) is never written; a null label is
/// called null.
#[test]
fn bad_inputs_are_exit_2_and_write_nothing() {
    let dir = support::scratch("probe-cli", "bad");
    let model = root().join("models/reference");
    let model = model.to_str().unwrap();
    let data = dir.join("noise.jsonl");
    noise(&data, 40);
    let data = data.to_str().unwrap();
    let out_file = dir.join("directions.safetensors");
    let out = out_file.to_str().unwrap();
    let refused = |args: &[&str], wanted: &[&str]| {
        let o = run(args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        for w in wanted {
            assert!(stderr.contains(w), "{args:?}: {stderr}");
        }
        assert!(!out_file.exists(), "{args:?} wrote {out}");
    };
    for l2 in ["--l2=NaN", "--l2=inf", "--l2=-1"] {
        refused(
            &[
                "probe",
                model,
                "--hooks",
                "blocks.2.hook_resid_post",
                "--data",
                data,
                l2,
                "--out",
                out,
            ],
            &["--l2"],
        );
    }

    // labels whose squares pass f64's range: their variance was NaN, blamed on the activations
    let huge = dir.join("huge.jsonl");
    let lines: String = (0..8)
        .map(|i| {
            format!(
                "{{\"text\": \"x{i} =\", \"label\": {}1e308}}\n",
                if i % 2 == 0 { "" } else { "-" }
            )
        })
        .collect();
    std::fs::write(&huge, lines).unwrap();
    refused(
        &[
            "probe",
            model,
            "--hooks",
            "blocks.2.hook_resid_post",
            "--data",
            huge.to_str().unwrap(),
            "--out",
            out,
        ],
        &["huge.jsonl: line 1", "too large to regress on"],
    );

    // the Llama fixture with its first norm's scale NaN: every activation after it is NaN
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let llama = root().join("tests/fixtures/parity/llama");
    for entry in std::fs::read_dir(&llama).unwrap().flatten() {
        std::fs::copy(entry.path(), broken.join(entry.file_name())).unwrap();
    }
    support::set_nan(&broken, "model.layers.0.input_layernorm.weight");
    refused(
        &[
            "probe",
            broken.to_str().unwrap(),
            "--hooks",
            "blocks.1.hook_resid_post",
            "--data",
            data,
            "--out",
            out,
        ],
        &["blocks.1.hook_resid_post", "not finite", "nothing written"],
    );
    // without --out: its scores are not numbers (an argmax over NaN would make them look so)
    let v = json_of(&run(&[
        "probe",
        broken.to_str().unwrap(),
        "--hooks",
        "blocks.1.hook_resid_post",
        "--data",
        data,
        "--json",
    ]));
    let p = &v["probes"][0];
    for field in [
        "train_score",
        "test_score",
        "control_test_score",
        "test_interval",
    ] {
        assert!(p[field].is_null(), "{field}: {p}");
    }
    assert!(v["best"].is_null(), "{v}");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("activations of 40 of 40 examples are not finite"),
        "{v}"
    );

    let null = dir.join("null.jsonl");
    std::fs::write(
        &null,
        "{\"text\": \"a b\", \"label\": \"x\"}\n{\"text\": \"c d\", \"label\": null}\n",
    )
    .unwrap();
    refused(
        &[
            "probe",
            model,
            "--hooks",
            "blocks.2.hook_resid_post",
            "--data",
            null.to_str().unwrap(),
        ],
        &["line 2: the label is null"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}
