//! `glassbox drift` from the command line: a quantization against its source (JSON, SVG and
//! HTML written), a base model against its fine-tune with an SAE's features, and the inputs
//! it refuses with exit 2.

mod support;

use support::{glassbox, ok, root, scratch};

use std::path::Path;

use serde_json::Value;

#[test]
fn a_q4_0_quantization_against_its_source() {
    let dir = scratch("drift-cli", "q4");
    let reference = root().join("models/reference");
    let held_out = root().join("models/reference/data/held_out.txt");
    let gguf = dir.join("q4_0.gguf");
    let (svg, html) = (dir.join("drift.svg"), dir.join("drift.html"));
    ok(&glassbox(&[
        "quantize",
        reference.to_str().unwrap(),
        "--to",
        "q4_0",
        "--out",
        gguf.to_str().unwrap(),
    ]));
    let base = [
        "drift",
        reference.to_str().unwrap(),
        gguf.to_str().unwrap(),
        "--text",
        held_out.to_str().unwrap(),
        "--max-tokens",
        "256",
        "--context",
        "64",
    ];
    let mut args = base.to_vec();
    args.extend([
        "--json",
        "--plot",
        svg.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let out = glassbox(&args);
    let v: Value = serde_json::from_slice(&ok(&out).stdout).unwrap();
    assert_eq!(v["b"]["numerics"], "llamacpp");
    let r = &v["report"];
    assert_eq!(r["sequences"], 4);
    assert_eq!(r["tokens"], 256);
    assert!(r["outputs"]["kl_mean"].as_f64().unwrap() > 0.0);
    assert_eq!(r["layers"].as_array().unwrap().len(), 3);
    let components = r["components"].as_array().unwrap();
    // 3 × (4 heads + MLP) + embedding + unembedding
    assert_eq!(components.len(), 17);
    let local: Vec<f64> = components
        .iter()
        .map(|c| c["local_change"].as_f64().unwrap())
        .collect();
    assert!(
        local.windows(2).all(|w| w[0] >= w[1]),
        "not ranked: {local:?}"
    );
    assert_eq!(r["head_roles"]["ranked"].as_array().unwrap().len(), 12);
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
    assert!(svg.contains("Components that moved most"));
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("<svg") && html.contains(components[0]["label"].as_str().unwrap()));
    // the terminal view names the same top component
    let text = String::from_utf8(ok(&glassbox(&base)).stdout.clone()).unwrap();
    let first = text
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(
        first.contains(components[0]["label"].as_str().unwrap()),
        "{first}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fine_tune_with_an_sae() {
    let dir = scratch("drift-cli", "sae");
    let gpt2 = root().join("tests/fixtures/parity/gpt2");
    let prompts = dir.join("prompts.txt");
    std::fs::write(
        &prompts,
        "When Mary and John went to the store\n\nThe cat sat on the mat\n",
    )
    .unwrap();
    let adapter = root().join("tests/fixtures/peft/gpt2-peft");
    let sae = root().join("tests/fixtures/saelens/standard");
    let out = glassbox(&[
        "drift",
        gpt2.to_str().unwrap(),
        gpt2.to_str().unwrap(),
        "--b-adapter",
        adapter.to_str().unwrap(),
        "--sae",
        sae.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&ok(&out).stdout).unwrap();
    assert!(v["b"]["adapter"].as_str().unwrap().ends_with("gpt2-peft"));
    let r = &v["report"];
    assert_eq!(r["sequences"], 2);
    let f = &r["features"];
    assert_eq!(f["hook"], "blocks.0.hook_resid_post");
    assert_eq!(f["d_features"], 256);
    assert_eq!(f["positions"], r["tokens"]);
    assert!(!f["moved"].as_array().unwrap().is_empty());
    // the same model on both sides: nothing moved at all
    let out = glassbox(&[
        "drift",
        gpt2.to_str().unwrap(),
        gpt2.to_str().unwrap(),
        "--sae",
        sae.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&ok(&out).stdout).unwrap();
    let r = &v["report"];
    assert_eq!(r["outputs"]["kl_mean"], 0.0);
    assert!(r["components"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["local_change"] == 0.0 && c["end_to_end_change"] == 0.0));
    assert_eq!(r["features"]["died_count"], 0);
    assert_eq!(r["features"]["moved"].as_array().unwrap().len(), 0);
    assert_eq!(r["notes"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_are_exit_2() {
    let dir = scratch("drift-cli", "bad");
    let reference = root().join("models/reference");
    let reference = reference.to_str().unwrap();
    let llama = root().join("tests/fixtures/parity/llama");
    let text = root().join("models/reference/data/train_sample.txt");
    let text = text.to_str().unwrap();
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let html = dir.join("missing/report.html");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["drift", reference, llama.to_str().unwrap(), "--text", text],
            "versions of one model",
        ),
        (vec!["drift", reference, reference], "--text"),
        (
            vec![
                "drift",
                reference,
                reference,
                "--text",
                text,
                "--prompts",
                text,
            ],
            "cannot be used with",
        ),
        (
            vec![
                "drift",
                reference,
                reference,
                "--prompts",
                empty.to_str().unwrap(),
            ],
            "no prompts",
        ),
        (
            vec!["drift", reference, reference, "--text", "/nonexistent.txt"],
            "no such file",
        ),
        (
            vec![
                "drift",
                reference,
                reference,
                "--text",
                text,
                "--context",
                "1",
            ],
            "--context 1",
        ),
        (
            vec![
                "drift",
                reference,
                reference,
                "--text",
                text,
                "--head-seq-len",
                "1",
            ],
            "probe length",
        ),
        (
            vec![
                "drift",
                reference,
                reference,
                "--text",
                text,
                "--html",
                html.to_str().unwrap(),
            ],
            "does not exist",
        ),
        (
            vec![
                "drift", reference, reference, "--text", text, "--plot", "x.png",
            ],
            "SVG",
        ),
        (
            vec![
                "--adapter",
                "/tmp",
                "drift",
                reference,
                reference,
                "--text",
                text,
            ],
            "--b-adapter",
        ),
        (
            vec![
                "drift",
                reference,
                reference,
                "--text",
                text,
                "--b-adapter",
                "/nonexistent",
            ],
            "no such folder",
        ),
    ];
    for (args, message) in cases {
        let out = glassbox(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(!html.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sets every value of the f32 tensor `name` in `dir/model.safetensors` to the NaN with its
/// sign bit set (x86's default NaN, the one arithmetic on infinities makes), which
/// `f64::total_cmp` orders below every number.
fn set_negative_nan(dir: &Path, name: &str) {
    let weights = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header[name]["dtype"], "F32", "{name}");
    let offsets = &header[name]["data_offsets"];
    let start = 8 + header_len + offsets[0].as_u64().unwrap() as usize;
    let end = 8 + header_len + offsets[1].as_u64().unwrap() as usize;
    let nan = f32::from_bits(0xffc0_0000);
    assert!(nan.is_nan() && nan.is_sign_negative());
    for value in bytes[start..end].chunks_exact_mut(4) {
        value.copy_from_slice(&nan.to_le_bytes());
    }
    std::fs::write(&weights, bytes).unwrap();
}

/// B is A with one weight NaN (block 1's attention output projection): its logits are NaN,
/// which must read as "not finite" (null in JSON, NaN on the terminal, a note naming B and
/// where it broke), never as a KL of 0, and its heads of block 1 must rank first.
#[test]
fn a_model_that_makes_nan_is_not_reported_as_unchanged() {
    let dir = scratch("drift-cli", "nan");
    let a = root().join("tests/fixtures/parity/llama");
    let b = dir.join("broken");
    std::fs::create_dir_all(&b).unwrap();
    for entry in std::fs::read_dir(&a).unwrap().flatten() {
        std::fs::copy(entry.path(), b.join(entry.file_name())).unwrap();
    }
    set_negative_nan(&b, "model.layers.1.self_attn.o_proj.weight");
    let prompts = dir.join("prompts.txt");
    std::fs::write(
        &prompts,
        "When Mary and John went to the store\nThe cat sat on the mat\n",
    )
    .unwrap();
    let args = [
        "drift",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let v: Value = serde_json::from_slice(&ok(&glassbox(&json_args)).stdout).unwrap();
    let r = &v["report"];
    let o = &r["outputs"];
    for field in ["kl_mean", "kl_max", "perplexity_b", "cross_entropy_b"] {
        assert!(o[field].is_null(), "{field}: {o}");
    }
    assert!(o["perplexity_a"].as_f64().unwrap().is_finite(), "{o}");
    assert_eq!(o["top1_agreement"], 0.0, "NaN agrees with nothing: {o}");
    // block 0 is untouched; the lens after block 1 reads NaN
    assert_eq!(r["layers"][0]["lens_kl"], 0.0, "{}", r["layers"]);
    assert!(r["layers"][1]["lens_kl"].is_null(), "{}", r["layers"]);
    let notes: Vec<&str> = r["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes.iter().any(|n| n.starts_with("model B")
            && n.contains("logits are not finite")
            && n.contains("blocks.1.hook_resid_post")),
        "{notes:?}"
    );
    assert!(!notes.iter().any(|n| n.contains("model A")), "{notes:?}");
    // the NaN heads first, then everything that did not change
    let components = r["components"].as_array().unwrap();
    let labels: Vec<&str> = components
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(&labels[..4], ["L1H0", "L1H1", "L1H2", "L1H3"], "{labels:?}");
    assert!(components[..4].iter().all(|c| c["local_change"].is_null()));
    assert!(
        components[4..].iter().all(|c| c["local_change"] == 0.0),
        "{components:?}"
    );

    let text = String::from_utf8(ok(&glassbox(&args)).stdout.clone()).unwrap();
    assert!(text.contains("KL(A‖B) mean NaN nats, max NaN"), "{text}");
    let first = text
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(first.contains("L1H0") && first.contains("NaN"), "{first}");
    assert!(
        text.contains("note: model B's logits are not finite"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
