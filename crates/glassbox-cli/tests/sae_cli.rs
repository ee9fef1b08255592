//! `--sae` on the commands that run a model, and `glassbox sae eval`, through the binary, on
//! SAELens-made SAEs (`tests/fixtures/saelens/`): the metrics are SAELens's, the SAE changes
//! what the commands show (and with the error term does not), and bad SAEs are input errors
//! (exit 2) that name the file and the problem.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(rel: &str) -> String {
    root()
        .join("tests/fixtures")
        .join(rel)
        .display()
        .to_string()
}

fn glassbox(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = glassbox(args);
    assert_eq!(code, 0, "glassbox {args:?} failed: {err}");
    out
}

#[test]
fn sae_eval_reports_saelens_metrics() {
    let model = fixture("parity/gpt2");
    let tokens = fixture("saelens/tokens.safetensors");
    for case in ["standard", "jumprelu", "batchtopk"] {
        let sae = fixture(&format!("saelens/{case}"));
        let out = ok(&[
            "sae",
            "eval",
            &model,
            "--sae",
            &sae,
            "--tokens",
            &tokens,
            "--batch-size",
            "4",
            "--json",
        ]);
        let ours: serde_json::Value = serde_json::from_str(&out).unwrap();
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                root().join(format!("tests/fixtures/saelens/{case}/expected.json")),
            )
            .unwrap(),
        )
        .unwrap();
        for key in [
            "l0",
            "explained_variance",
            "ce_loss_score",
            "kl_div_score",
            "relative_reconstruction_bias",
        ] {
            let (a, b) = (
                ours[key].as_f64().unwrap(),
                expected["metrics"][key].as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{case}: {key} {a} vs SAELens {b}"
            );
        }
        assert_eq!(ours["feature_density"].as_array().unwrap().len(), 256);
        // The terminal view names each metric as SAELens does.
        let text = ok(&[
            "sae",
            "eval",
            &model,
            "--sae",
            &sae,
            "--tokens",
            &tokens,
            "--batch-size",
            "4",
        ]);
        for name in [
            "l0",
            "explained_variance",
            "ce_loss_with_sae",
            "kl_div_score",
            "dead (never fired)",
        ] {
            assert!(text.contains(name), "{case}: no `{name}` in\n{text}");
        }
    }
}

#[test]
fn sae_eval_on_text() {
    let dir = std::env::temp_dir().join(format!("glassbox-sae-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("corpus.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    let out = ok(&[
        "sae",
        "eval",
        &fixture("parity/gpt2"),
        "--sae",
        &fixture("saelens/topk"),
        "--text",
        text.to_str().unwrap(),
        "--context",
        "16",
        "--json",
    ]);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        m["l0"].as_f64().unwrap(),
        8.0,
        "a TopK SAE with k = 8 fires 8 features per token"
    );
    assert!(m["sequences"].as_u64().unwrap() >= 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The top token lines of `glassbox run` (the header names the model only).
fn predictions(out: &str) -> String {
    out.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_spliced_sae_changes_what_commands_show() {
    let model = fixture("parity/gpt2");
    let sae = fixture("saelens/topk");
    let prompt = "The Eiffel Tower is in Paris.";
    let plain = ok(&["run", &model, "--prompt", prompt]);
    let spliced = ok(&["run", &model, "--prompt", prompt, "--sae", &sae]);
    let with_error = ok(&[
        "run",
        &model,
        "--prompt",
        prompt,
        "--sae",
        &sae,
        "--sae-error-term",
    ]);
    assert_ne!(
        predictions(&plain),
        predictions(&spliced),
        "the reconstruction changes the predictions"
    );
    assert_eq!(
        predictions(&plain),
        predictions(&with_error),
        "with the error term the model is unchanged"
    );

    // Every command that runs a model takes --sae.
    let runs: Vec<Vec<&str>> = vec![
        vec!["lens", &model, "--prompt", prompt, "--json"],
        vec!["heads", &model, "--seq-len", "8", "--batch", "2", "--json"],
        vec![
            "generate",
            &model,
            "--prompt",
            prompt,
            "--max-tokens",
            "6",
            "--temperature",
            "0",
        ],
    ];
    for args in runs {
        let a = ok(&args);
        let mut with = args.clone();
        with.extend(["--sae", &sae]);
        let b = ok(&with);
        assert_ne!(a, b, "{}: the SAE made no difference", args[0]);
    }
    // Direct attribution needs the residual stream to be the sum of its parts: a
    // reconstruction in its place is not, and the command says so; with the error term it is.
    let attribute = [
        "attribute",
        &model,
        "--prompt",
        prompt,
        "--target",
        "#38",
        "--json",
        "--sae",
        &sae,
    ];
    let (code, _, err) = glassbox(&attribute);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not the sum"), "{err}");
    let mut with_error = attribute.to_vec();
    with_error.push("--sae-error-term");
    ok(&with_error);
    let out = std::env::temp_dir().join(format!(
        "glassbox-sae-trace-{}.safetensors",
        std::process::id()
    ));
    ok(&[
        "trace",
        &model,
        "--prompt",
        prompt,
        "--sae",
        &sae,
        "--hooks",
        "*hook_sae_acts_post",
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap();
    assert!(
        t.contains_key("blocks.0.hook_resid_post.hook_sae_acts_post"),
        "{:?}",
        t.keys()
    );
    let _ = std::fs::remove_file(&out);
}

/// A copy of a fixture SAE with its cfg.json edited by `edit`, or a tensor file replaced.
fn broken_sae(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("glassbox-sae-broken-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = root().join("tests/fixtures/saelens/standard");
    std::fs::copy(
        src.join("sae_weights.safetensors"),
        dir.join("sae_weights.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("cfg.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("cfg.json"), cfg.to_string()).unwrap();
    dir
}

/// An SAE whose weights are not finite is evaluated as given (worth looking at), but said:
/// its metrics were NaN and its dashboards "all dead" without a word.
#[test]
fn an_sae_with_weights_that_are_not_finite_is_said_to_be() {
    let dir = broken_sae("nan-weights", |_| {});
    let path = dir.join("sae_weights.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let w = &tensors["W_enc"];
    let nan = (w.ones_like().unwrap() * f64::NAN).unwrap();
    tensors.insert("W_enc".into(), nan);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let (code, _, err) = glassbox(&[
        "sae",
        "eval",
        &fixture("parity/gpt2"),
        "--sae",
        dir.to_str().unwrap(),
        "--tokens",
        &fixture("saelens/tokens.safetensors"),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the SAE's W_enc holds values that are not finite"),
        "{err}"
    );
}

#[test]
fn bad_saes_are_input_errors_naming_the_problem() {
    let model = fixture("parity/gpt2");
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            broken_sae("no-hook", |c| {
                c["metadata"]["hook_name"] = "blocks.7.hook_resid_post".into()
            }),
            "not a hook point",
        ),
        (
            broken_sae("wrong-width", |c| {
                c["metadata"]["hook_name"] = "blocks.0.mlp.hook_post".into()
            }),
            "values per token",
        ),
        (
            broken_sae("arch", |c| c["architecture"] = "gated".into()),
            "architecture `gated`",
        ),
        (broken_sae("dims", |c| c["d_sae"] = 100.into()), "shape"),
        (
            broken_sae("dtype", |c| {
                c.as_object_mut()
                    .unwrap()
                    .remove("dtype")
                    .map(|_| ())
                    .unwrap()
            }),
            "`dtype`",
        ),
        (
            broken_sae("k", |c| {
                c["architecture"] = "topk".into();
                c["k"] = 0.into();
            }),
            "`k`",
        ),
        (
            root().join("tests/fixtures/saelens/nonexistent"),
            "no such SAE folder",
        ),
        (
            root().join("tests/fixtures/saelens"),
            "no sae_weights.safetensors",
        ),
    ];
    for (sae, expected) in cases {
        let (code, _, err) = glassbox(&[
            "run",
            &model,
            "--prompt",
            "hello",
            "--sae",
            sae.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{}: exit {code}: {err}", sae.display());
        assert!(
            err.contains(expected),
            "{}: `{expected}` not in: {err}",
            sae.display()
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let broken = broken_sae("garbage", |_| {});
    std::fs::write(broken.join("sae_weights.safetensors"), b"not safetensors").unwrap();
    let (code, _, err) = glassbox(&[
        "sae",
        "eval",
        &model,
        "--sae",
        broken.to_str().unwrap(),
        "--tokens",
        &fixture("saelens/tokens.safetensors"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sae_weights.safetensors"), "{err}");
    let _ = std::fs::remove_dir_all(broken.parent().unwrap());
}

#[test]
fn sae_train_is_deterministic_and_its_sae_runs() {
    let dir = std::env::temp_dir().join(format!("glassbox-sae-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("corpus.txt");
    std::fs::write(
        &text,
        "the cat sat on the mat and the dog ate the log. ".repeat(300),
    )
    .unwrap();
    let model = fixture("parity/gpt2");
    let train = |out: &str| {
        ok(&[
            "sae",
            "train",
            &model,
            "--hook",
            "blocks.1.hook_resid_post",
            "--arch",
            "batchtopk",
            "--k",
            "4",
            "--d-sae",
            "128",
            "--text",
            text.to_str().unwrap(),
            "--context-size",
            "32",
            "--train-batch-size-tokens",
            "256",
            "--training-tokens",
            "25600",
            "--lr",
            "1e-2",
            "--dead-feature-window",
            "20",
            "--n-checkpoints",
            "1",
            "--out",
            out,
        ]);
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    train(a.to_str().unwrap());
    train(b.to_str().unwrap());
    for file in [
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
        "training_log.jsonl",
    ] {
        let (x, y) = (
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
        );
        assert!(x == y, "{file} differs between two runs with the same seed");
    }
    let log = std::fs::read_to_string(a.join("training_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 100, "one line per step (25600 / 256)");
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    for key in [
        "loss",
        "mse_loss",
        "aux_loss",
        "l0",
        "explained_variance",
        "dead_features",
        "lr",
    ] {
        assert!(last.get(key).is_some(), "no `{key}` in the log");
    }
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(
        last["mse_loss"].as_f64().unwrap() < first["mse_loss"].as_f64().unwrap() / 2.0,
        "training did not lower the loss"
    );
    assert!(a.join("checkpoints/step-50/cfg.json").exists());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["architecture"], "jumprelu",
        "BatchTopK is saved as the JumpReLU SAE it is at inference"
    );
    // It evaluates and splices.
    let out = ok(&[
        "sae",
        "eval",
        &model,
        "--sae",
        a.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--context",
        "32",
        "--json",
    ]);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(m["explained_variance"].as_f64().unwrap() > 0.3, "{m}");
    ok(&[
        "run",
        &model,
        "--prompt",
        "the cat",
        "--sae",
        a.to_str().unwrap(),
    ]);
    // A size that no machine holds is refused before anything is allocated.
    let store = a.join("activations");
    let (code, _, err) = glassbox(&[
        "sae",
        "train",
        &model,
        "--hook",
        "blocks.1.hook_resid_post",
        "--arch",
        "topk",
        "--k",
        "4",
        "--d-sae",
        "1000000000",
        "--cache",
        store.to_str().unwrap(),
        "--out",
        dir.join("c").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs about"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Settings outside their domain are refused, and a run that diverges anyway writes nothing:
/// each of these wrote an SAE of NaN weights with exit 0 and a normal summary.
#[test]
fn sae_train_refuses_settings_that_train_to_nan_and_writes_nothing_on_divergence() {
    let dir = std::env::temp_dir().join(format!("glassbox-sae-nan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("corpus.txt");
    std::fs::write(
        &text,
        "the cat sat on the mat and the dog ate the log. ".repeat(60),
    )
    .unwrap();
    let model = fixture("parity/gpt2");
    let store = dir.join("store");
    ok(&[
        "cache",
        &model,
        "--hooks",
        "blocks.1.hook_resid_post",
        "--text",
        text.to_str().unwrap(),
        "--context",
        "32",
        "--out",
        store.to_str().unwrap(),
    ]);
    let out = dir.join("sae");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--arch", "standard", "--l1-coefficient", "NaN"],
            "l1_coefficient NaN",
        ),
        (&["--arch", "standard", "--lp-norm", "0"], "lp_norm 0"),
        (
            &["--arch", "jumprelu", "--jumprelu-bandwidth", "0"],
            "jumprelu_bandwidth 0",
        ),
        (&["--arch", "standard", "--adam-beta1", "1"], "adam_beta1 1"),
        (
            &["--arch", "batchtopk", "--k", "4", "--topk-threshold-lr=-5"],
            "topk_threshold_lr -5",
        ),
        (&["--arch", "standard", "--lr-end", "NaN"], "lr_end NaN"),
        (
            &["--arch", "standard", "--lr", "1e30"],
            "training diverged at step",
        ),
        (
            &["--arch", "standard", "--decoder-init-norm", "1e30"],
            "training diverged at step",
        ),
    ];
    for (extra, said) in cases {
        let mut args = vec![
            "sae",
            "train",
            &model,
            "--hook",
            "blocks.1.hook_resid_post",
            "--d-sae",
            "32",
            "--training-tokens",
            "2048",
            "--train-batch-size-tokens",
            "256",
            "--cache",
            store.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (code, _, err) = glassbox(&args);
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(err.contains(said), "{extra:?}: {err}");
        assert!(!out.exists(), "{extra:?}: something was written");
    }

    // An SAE already in --out is not replaced.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("cfg.json"), "{}").unwrap();
    let (code, _, err) = glassbox(&[
        "sae",
        "train",
        &model,
        "--hook",
        "blocks.1.hook_resid_post",
        "--arch",
        "standard",
        "--d-sae",
        "32",
        "--training-tokens",
        "2048",
        "--train-batch-size-tokens",
        "256",
        "--cache",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds an SAE already"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("cfg.json")).unwrap(), "{}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C while training leaves no half-written SAE folder (the log and the activations it
/// had written stayed, next to any older files).
#[cfg(unix)]
#[test]
fn an_interrupted_sae_train_leaves_nothing() {
    let dir = std::env::temp_dir().join(format!("glassbox-sae-int-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("corpus.txt");
    std::fs::write(
        &text,
        "the cat sat on the mat and the dog ate the log. ".repeat(400),
    )
    .unwrap();
    let out = dir.join("sae");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args([
            "sae",
            "train",
            &fixture("parity/gpt2"),
            "--hook",
            "blocks.1.hook_resid_post",
            "--arch",
            "topk",
            "--k",
            "4",
            "--d-sae",
            "64",
            "--context-size",
            "32",
            "--train-batch-size-tokens",
            "256",
            "--training-tokens",
            "1000000000",
            "--text",
            text.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = out.join("training_log.jsonl");
    let start = std::time::Instant::now();
    while !log.exists() && start.elapsed() < std::time::Duration::from_secs(120) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(log.exists(), "training never started");
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(
        !out.exists(),
        "the interrupted run left {:?}",
        std::fs::read_dir(&out).map(|d| d.count())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn features_shows_dashboards_in_the_terminal_json_and_html() {
    let model = fixture("parity/gpt2");
    let sae = fixture("saelens/jumprelu");
    let tokens = fixture("saelens/tokens.safetensors");
    let html = std::env::temp_dir().join(format!("glassbox-features-{}.html", std::process::id()));
    let text = ok(&[
        "features",
        &model,
        "--sae",
        &sae,
        "--tokens",
        &tokens,
        "--features",
        "3,17",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(
        text.contains("feature 3:") && text.contains("feature 17:"),
        "{text}"
    );
    assert!(text.contains("[[") && text.contains("raises:"), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<h2>Feature 3</h2>") && page.contains("class=\"tok mark\""),
        "{page}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "features", &model, "--sae", &sae, "--tokens", &tokens, "--top", "4", "--json",
    ]))
    .unwrap();
    assert_eq!(json["features"].as_array().unwrap().len(), 4);
    let (code, _, err) = glassbox(&[
        "features",
        &model,
        "--sae",
        &sae,
        "--tokens",
        &tokens,
        "--features",
        "999",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("feature 999"), "{err}");
    let _ = std::fs::remove_file(&html);
}
