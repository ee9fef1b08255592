//! `glassbox inspect` on every fixture checkpoint and the two real artifacts: parameter counts
//! against the tensor table, architecture against each `config.json` / GGUF, statistics and
//! histograms against a direct computation, bad input → exit 2 naming the file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use glassbox_formats::{to_f32, Checkpoint};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tests/fixtures/parity").is_dir())
        .expect("the repository's tests/fixtures")
        .to_path_buf()
}

fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("run glassbox")
}

fn inspect_json(path: &Path, extra: &[&str]) -> Value {
    let path = path.to_str().expect("utf-8 path");
    let mut args = vec!["inspect", path, "--json"];
    args.extend_from_slice(extra);
    let out = glassbox(&args);
    assert!(
        out.status.success(),
        "inspect {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// A real artifact, or None (with a notice) when it is absent and not required.
fn artifact(name: &str) -> Option<PathBuf> {
    let path = root().join(".artifacts").join(name);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("GLASSBOX_REQUIRE_ARTIFACTS").as_deref() == Ok("1") {
        panic!(
            "{} is missing: run scripts/fetch-artifacts.sh",
            path.display()
        );
    }
    eprintln!(
        "notice: {} absent, test skipped (run scripts/fetch-artifacts.sh)",
        path.display()
    );
    None
}

/// Every Hub fixture checkpoint, plus the real artifacts that are present.
fn checkpoints() -> Vec<PathBuf> {
    let mut all = Vec::new();
    for group in ["parity", "families"] {
        let dir = root().join("tests/fixtures").join(group);
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("fixture dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.join("config.json").exists())
            .collect();
        found.sort();
        all.extend(found);
    }
    all.extend(artifact("all-minilm-l6-v2"));
    all.extend(artifact("tiny.gguf"));
    all
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Layer indices named in the tensor table (`layers.N.`, `h.N.`, `layer.N.`, `blk.N.`).
fn layer_indices(tensors: &[Value]) -> BTreeSet<u64> {
    let mut layers = BTreeSet::new();
    for t in tensors {
        let parts: Vec<&str> = t["name"].as_str().unwrap_or("").split('.').collect();
        for w in parts.windows(2) {
            if matches!(w[0], "layers" | "h" | "layer" | "blk") {
                if let Ok(i) = w[1].parse() {
                    layers.insert(i);
                }
            }
        }
    }
    layers
}

fn check_checkpoint(path: &Path) {
    let report = inspect_json(path, &[]);
    let tensors = report["tensors"].as_array().expect("tensors list");
    assert!(!tensors.is_empty(), "{}: no tensors", path.display());

    // The tensor table is what the file holds (read here through the library directly).
    let ck = Checkpoint::open(path).expect("open");
    assert_eq!(tensors.len(), ck.tensors().len());
    for (row, info) in tensors.iter().zip(ck.tensors()) {
        assert_eq!(row["name"], info.name.as_str());
        let shape: Vec<usize> = serde_json::from_value(row["shape"].clone()).expect("shape");
        assert_eq!(shape, info.shape, "{}", info.name);
        assert_eq!(u(&row["bytes"]), info.bytes);
        assert_eq!(row["dtype"], info.dtype.to_string().as_str());
    }

    // Parameters are the sum of element counts, and the components partition them.
    let elements: u64 = tensors
        .iter()
        .map(|t| {
            t["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(u)
                .product::<u64>()
        })
        .sum();
    assert_eq!(u(&report["parameters"]), elements, "{}", path.display());
    let by_component: u64 = report["parameters_by_component"]
        .as_object()
        .expect("components")
        .values()
        .map(u)
        .sum();
    assert_eq!(by_component, elements);
    let bytes: u64 = tensors.iter().map(|t| u(&t["bytes"])).sum();
    assert_eq!(u(&report["bytes"]), bytes);

    // The architecture agrees with the metadata it came from and with the tensor table.
    let arch = &report["architecture"];
    let layers = layer_indices(tensors);
    assert_eq!(
        u(&arch["layers"]),
        layers.len() as u64,
        "{}",
        path.display()
    );
    if let Ok(text) = std::fs::read_to_string(path.join("config.json")) {
        let config: Value = serde_json::from_str(&text).expect("config.json");
        let key = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| config.get(*k).and_then(Value::as_u64))
        };
        assert_eq!(
            arch["layers"].as_u64(),
            key(&["num_hidden_layers", "n_layer"])
        );
        assert_eq!(arch["d_model"].as_u64(), key(&["hidden_size", "n_embd"]));
        assert_eq!(
            arch["heads"].as_u64(),
            key(&["num_attention_heads", "n_head"])
        );
        assert_eq!(arch["vocab"].as_u64(), key(&["vocab_size"]));
        assert_eq!(arch["family"], config["model_type"]);
    } else {
        let gguf = ck.gguf().expect("a GGUF file");
        let arch_name = gguf.architecture().expect("general.architecture");
        assert_eq!(arch["family"], arch_name);
        let meta = |k: &str| {
            gguf.get(&format!("{arch_name}.{k}"))
                .and_then(|v| v.as_u64())
        };
        assert_eq!(arch["d_model"].as_u64(), meta("embedding_length"));
        assert_eq!(arch["context_length"].as_u64(), meta("context_length"));
        let vocab = gguf
            .get_array("tokenizer.ggml.tokens")
            .map(|a| a.len() as u64);
        assert_eq!(arch["vocab"].as_u64(), vocab);
        // Long arrays are summarised, not dumped.
        assert_eq!(
            report["metadata"]["tokenizer.ggml.tokens"]["len"].as_u64(),
            vocab
        );
    }
}

#[test]
fn parameters_tensors_and_architecture_of_every_checkpoint() {
    let all = checkpoints();
    assert!(
        all.len() >= 7,
        "expected the 7 Hub fixtures, found {}",
        all.len()
    );
    for path in all {
        check_checkpoint(&path);
    }
}

#[test]
fn gpt2_architecture_details() {
    let report = inspect_json(&root().join("tests/fixtures/parity/gpt2"), &[]);
    let arch = &report["architecture"];
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/parity/gpt2/config.json")).unwrap(),
    )
    .unwrap();
    let d = config["n_embd"].as_u64().unwrap();
    // `n_inner: null` means 4 × d_model; GPT-2 has learned positions and LayerNorm.
    assert_eq!(arch["d_mlp"].as_u64(), Some(4 * d));
    assert_eq!(
        arch["head_dim"].as_u64(),
        Some(d / config["n_head"].as_u64().unwrap())
    );
    assert_eq!(arch["context_length"], config["n_positions"]);
    assert_eq!(arch["positions"], "learned");
    assert_eq!(arch["norm"], "LayerNorm");
    assert_eq!(arch["tied_embeddings"], config["tie_word_embeddings"]);
    assert_eq!(u(&report["parameters_by_component"]["unembedding"]), 0);
}

/// Mean, std, min, max, |max|, L2, zeros, NaN, Inf, computed plainly from the decoded tensor.
fn direct_stats(values: &[f32]) -> [f64; 9] {
    let finite: Vec<f64> = values
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| x as f64)
        .collect();
    let n = finite.len() as f64;
    let mean = finite.iter().sum::<f64>() / n;
    let std = (finite.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let l2 = finite.iter().map(|x| x * x).sum::<f64>().sqrt();
    let count = |f: fn(&f32) -> bool| values.iter().filter(|x| f(x)).count() as f64;
    [
        mean,
        std,
        min,
        max,
        min.abs().max(max.abs()),
        l2,
        count(|x| *x == 0.0),
        count(|x| x.is_nan()),
        count(|x| x.is_infinite()),
    ]
}

fn check_stats(path: &Path) {
    let report = inspect_json(path, &["--stats"]);
    let stats = &report["stats"]["tensors"];
    let ck = Checkpoint::open(path).expect("open");
    let mut total = 0u64;
    for info in ck.tensors() {
        let values = to_f32(info.dtype, ck.raw_bytes(&info.name).unwrap()).expect("decodable");
        let want = direct_stats(&values);
        let s = &stats[info.name.as_str()];
        let got = [
            "mean", "std", "min", "max", "abs_max", "l2_norm", "zeros", "nan", "inf",
        ]
        .map(|k| {
            s[k].as_f64()
                .unwrap_or_else(|| panic!("{}: {k} missing", info.name))
        });
        for (k, (g, w)) in [
            "mean", "std", "min", "max", "abs_max", "l2", "zeros", "nan", "inf",
        ]
        .iter()
        .zip(got.iter().zip(want))
        {
            assert!(
                (g - w).abs() <= 1e-9 * (1.0 + w.abs()),
                "{} {}: {k} = {g}, direct {w}",
                path.display(),
                info.name
            );
        }
        assert_eq!(u(&s["elements"]), values.len() as u64);
        total += info.bytes;
    }
    assert_eq!(u(&report["stats"]["bytes"]), total);
}

#[test]
fn stats_match_a_direct_computation() {
    check_stats(&root().join("tests/fixtures/parity/gpt2"));
    check_stats(&root().join("tests/fixtures/families/mixtral"));
    if let Some(p) = artifact("tiny.gguf") {
        check_stats(&p); // F16 and F32 tensors
    }
}

/// Quantized tensors spanning several work items: statistics over the dequantized values,
/// streamed block-aligned, equal the whole tensor dequantized at once.
#[test]
fn stats_of_quantized_gguf_tensors() {
    use glassbox_formats::{DType, GgufValue, GgufWriter};
    let dir = std::env::temp_dir().join(format!("glassbox-inspect-q-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("quantized.gguf");
    let (rows, cols) = (1100, 2048); // 2.25 M elements: three work items
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32 * 0.618).sin() * 0.05) * if i % 97 == 0 { 8.0 } else { 1.0 })
        .collect();
    // Q4_K blocks (144 bytes / 256 values): sane f16 scales, pseudo-random quants.
    let blocks = rows * cols / 256;
    let mut q4k = Vec::with_capacity(blocks * 144);
    let mut state = 0x2545_f491_u32;
    for _ in 0..blocks {
        // d = 0.01, dmin = 0.004 as little-endian f16.
        q4k.extend_from_slice(&[0x1f, 0x21, 0x19, 0x1c]);
        for _ in 0..140 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            q4k.push(state as u8);
        }
    }
    let mut writer = GgufWriter::new();
    writer.set("general.architecture", GgufValue::String("llama".into()));
    writer
        .add_q8_0("blk.0.ffn_up.weight", &[rows, cols], &values)
        .unwrap();
    writer
        .add_raw("blk.0.ffn_down.weight", &[rows, cols], DType::Q4K, q4k)
        .unwrap();
    writer.write(&path).unwrap();
    check_stats(&path);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn histogram_counts_every_value_once() {
    let path = root().join("tests/fixtures/parity/llama");
    let name = "model.layers.0.mlp.down_proj.weight";
    let report = inspect_json(&path, &["--tensor", name, "--hist", "7"]);
    let h = &report["histogram"];
    let edges: Vec<f64> = serde_json::from_value(h["edges"].clone()).unwrap();
    let counts: Vec<u64> = serde_json::from_value(h["counts"].clone()).unwrap();
    assert_eq!((edges.len(), counts.len()), (8, 7));
    assert_eq!(report["tensors"].as_array().unwrap().len(), 1);

    let ck = Checkpoint::open(&path).unwrap();
    let values = to_f32(ck.info(name).unwrap().dtype, ck.raw_bytes(name).unwrap()).unwrap();
    let [_, _, min, max, ..] = direct_stats(&values);
    assert_eq!((edges[0], edges[7]), (min, max));
    let mut want = vec![0u64; 7];
    for &x in &values {
        let i = (((x as f64 - min) / ((max - min) / 7.0)) as usize).min(6);
        want[i] += 1;
    }
    assert_eq!(counts, want);

    let text = glassbox(&[
        "inspect",
        path.to_str().unwrap(),
        "--tensor",
        name,
        "--hist",
        "7",
    ]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("histogram of"));
}

#[test]
fn text_output_lists_every_tensor() {
    let path = root().join("tests/fixtures/parity/qwen2");
    let out = glassbox(&["inspect", path.to_str().unwrap(), "--stats"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for info in Checkpoint::open(&path).unwrap().tensors() {
        assert!(text.contains(&info.name), "{} missing", info.name);
    }
    assert!(text.contains("GB/s"));
}

/// Exit code 2 and the file's name in the message.
fn check_bad_input(args: &[&str], file: &str) {
    let out = glassbox(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(file), "{args:?}: `{file}` not in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_input_exits_2_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("glassbox-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header").unwrap();
    let g = garbage.to_str().unwrap();
    check_bad_input(&["inspect", g], g);
    let missing = dir.join("missing.safetensors");
    check_bad_input(
        &["inspect", missing.to_str().unwrap()],
        missing.to_str().unwrap(),
    );
    let llama = root().join("tests/fixtures/parity/llama");
    check_bad_input(
        &[
            "inspect",
            llama.to_str().unwrap(),
            "--tensor",
            "no.such.tensor",
        ],
        "no.such.tensor",
    );
    if let Some(gguf) = artifact("tiny.gguf") {
        let truncated = dir.join("truncated.gguf");
        std::fs::write(&truncated, &std::fs::read(gguf).unwrap()[..4096]).unwrap();
        let t = truncated.to_str().unwrap();
        check_bad_input(&["inspect", t], t);
    }
    std::fs::remove_dir_all(&dir).ok();
}
