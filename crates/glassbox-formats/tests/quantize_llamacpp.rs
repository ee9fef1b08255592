//! Our block quantizers against llama.cpp's: every quantized tensor of the llama.cpp-made
//! fixtures (tests/fixtures/llamacpp, quantized by `llama_model_quantize` from the F32 file
//! beside it) is quantized again here from the F32 file's tensor and compared byte for byte.

use std::path::{Path, PathBuf};

use glassbox_formats::quant::block_format;
use glassbox_formats::{to_f32, GgufFile};
use glassbox_kernels::quant::encode::{can_encode, quantize_row};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llamacpp")
}

#[test]
fn every_llama_cpp_quantized_tensor_is_reproduced_byte_for_byte() {
    let mut compared = std::collections::BTreeMap::<String, (usize, usize)>::new();
    let mut mismatches = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        let f32_path = dir.join("model-F32.gguf");
        if !f32_path.exists() {
            continue;
        }
        let source = GgufFile::open(&f32_path).unwrap();
        for kind in ["Q8_0", "Q4_0", "Q4_K_M", "Q6_K"] {
            let path = dir.join(format!("model-{kind}.gguf"));
            let Ok(made) = GgufFile::open(&path) else {
                continue;
            };
            for info in &made.tensors {
                let Some(format) = block_format(info.dtype).filter(|&f| can_encode(f)) else {
                    continue;
                };
                let src = source.tensor_info(&info.name).unwrap();
                let values = to_f32(src.dtype, source.bytes(src)).unwrap();
                let cols = *info.shape.last().unwrap();
                let row_bytes = cols / format.block_elements() * format.block_bytes();
                let mut ours = vec![0u8; values.len() / cols * row_bytes];
                for (row, out) in values
                    .chunks_exact(cols)
                    .zip(ours.chunks_exact_mut(row_bytes))
                {
                    quantize_row(format, row, None, out);
                }
                let theirs = made.bytes(info);
                let blocks = ours.len() / format.block_bytes();
                let same = ours
                    .chunks_exact(format.block_bytes())
                    .zip(theirs.chunks_exact(format.block_bytes()))
                    .filter(|(a, b)| a == b)
                    .count();
                let e = compared.entry(format.name().to_string()).or_default();
                e.0 += same;
                e.1 += blocks;
                if same != blocks {
                    mismatches.push(format!(
                        "{}/{kind} {} ({}): {} of {blocks} blocks differ",
                        dir.file_name().unwrap().to_string_lossy(),
                        info.name,
                        format.name(),
                        blocks - same
                    ));
                }
            }
        }
    }
    eprintln!("{compared:?}");
    assert!(compared.len() >= 4, "formats compared: {compared:?}");
    assert!(
        mismatches.is_empty(),
        "{} tensors differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Whole files: `glassbox quantize`'s library path from each fixture's F32 file gives
/// llama.cpp's quantized file byte for byte (metadata, tensor order and types, blocks).
#[test]
fn quantized_files_equal_llama_cpps() {
    use glassbox_formats::gguf_quantize::{plan, quantize, GgufSource, Mixture};
    let tmp = std::env::temp_dir().join(format!("glassbox-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    let mut compared = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(file) = GgufFile::open(&dir.join("model-F32.gguf")) else {
            continue;
        };
        let source = GgufSource::new(&file);
        for mixture in [Mixture::Q8_0, Mixture::Q4_0, Mixture::Q4KM, Mixture::Q6K] {
            let theirs = dir.join(format!("model-{}.gguf", mixture.name()));
            let Ok(theirs) = std::fs::read(&theirs) else {
                continue;
            };
            let out = tmp.join(format!(
                "{}-{}.gguf",
                dir.file_name().unwrap().to_string_lossy(),
                mixture.name()
            ));
            let p = plan(&source, mixture, None).unwrap();
            quantize(&source, &p, None, &out, |_, _| {}).unwrap();
            let ours = std::fs::read(&out).unwrap();
            compared += 1;
            if ours != theirs {
                let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
                failures.push(format!(
                    "{} {}: {} vs {} bytes, first difference at {first:?}",
                    dir.display(),
                    mixture.name(),
                    ours.len(),
                    theirs.len()
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(compared >= 80, "only {compared} files compared");
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn quantize_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llamacpp-quantize")
}

/// Quantizes `source` as `glassbox quantize` does and compares with llama.cpp's `expected`;
/// the importance matrix is labelled as llama-quantize was given it (`imatrix.gguf`).
fn same_as_llama_cpp(
    source: &Path,
    mixture: &str,
    imatrix: Option<&Path>,
    expected: &Path,
) -> Result<(), String> {
    use glassbox_formats::gguf_quantize::{plan, quantize, GgufSource, ImportanceMatrix, Mixture};
    let file = GgufFile::open(source).unwrap();
    let source = GgufSource::new(&file);
    let matrix = imatrix.map(|p| ImportanceMatrix::open(p).unwrap());
    let labelled = matrix.as_ref().map(|m| (m, "imatrix.gguf"));
    let p = plan(&source, Mixture::parse(mixture).unwrap(), labelled).unwrap();
    let out = std::env::temp_dir().join(format!(
        "glassbox-quantize-{}-{}.gguf",
        std::process::id(),
        expected.file_name().unwrap().to_string_lossy()
    ));
    quantize(&source, &p, matrix.as_ref(), &out, |_, _| {}).unwrap();
    let ours = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let theirs = std::fs::read(expected).unwrap();
    if ours == theirs {
        return Ok(());
    }
    // name the first tensor that differs, for the message
    let made = GgufFile::from_bytes(&out, ours.clone()).map_err(|e| e.to_string())?;
    let want = GgufFile::open(expected).unwrap();
    for (a, b) in made.tensors.iter().zip(&want.tensors) {
        if a.name != b.name || a.dtype != b.dtype || made.bytes(a) != want.bytes(b) {
            return Err(format!(
                "{}: first differing tensor {} ({} vs {})",
                expected.display(),
                a.name,
                a.dtype,
                b.dtype
            ));
        }
    }
    Err(format!(
        "{}: headers differ ({} vs {} bytes)",
        expected.display(),
        ours.len(),
        theirs.len()
    ))
}

/// K-quant mixtures on rows of 256 (where llama.cpp's per-layer rules choose among Q4_K, Q5_K,
/// Q6_K) and every quantizer's weighted search under an importance matrix made by
/// `llama-imatrix`, through `llama-quantize --imatrix`: the whole files are llama.cpp's.
#[test]
fn k_quant_mixtures_and_importance_matrices_give_llama_cpps_files() {
    let deep = quantize_fixtures().join("deep");
    let source = deep.join("model-F16.gguf");
    let imatrix = deep.join("imatrix.gguf");
    let mut failures = Vec::new();
    let mut check = |r: Result<(), String>| {
        if let Err(e) = r {
            failures.push(e)
        }
    };
    check(same_as_llama_cpp(
        &source,
        "q5_k_m",
        None,
        &deep.join("model-Q5_K_M.gguf"),
    ));
    for mixture in ["Q4_0", "Q4_K_M", "Q5_K_M"] {
        let expected = deep.join(format!("model-{mixture}-imatrix.gguf"));
        check(same_as_llama_cpp(
            &source,
            mixture,
            Some(&imatrix),
            &expected,
        ));
    }
    let moe = quantize_fixtures().join("moe");
    check(same_as_llama_cpp(
        &fixtures().join("qwen3moe/model-F32.gguf"),
        "q4_k_m",
        Some(&moe.join("imatrix.gguf")),
        &moe.join("model-Q4_K_M-imatrix.gguf"),
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The rules pick what the fixtures need them to pick: several types in one file, and the
/// importance matrix's Q4_1 for the first eighth of the down projections.
#[test]
fn the_deep_fixture_exercises_the_per_layer_rules() {
    let deep = quantize_fixtures().join("deep");
    let types = |file: &str| {
        let f = GgufFile::open(&deep.join(file)).unwrap();
        f.tensors
            .iter()
            .map(|t| (t.name.clone(), t.dtype))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let q5 = types("model-Q5_K_M.gguf");
    let distinct: std::collections::BTreeSet<_> = q5.values().map(|t| t.name()).collect();
    assert!(distinct.len() >= 4, "{distinct:?}");
    assert_ne!(q5["blk.0.attn_v.weight"], q5["blk.1.attn_v.weight"]);
    let q4 = types("model-Q4_0-imatrix.gguf");
    assert_eq!(q4["blk.0.ffn_down.weight"], glassbox_formats::DType::Q4_1);
    assert_eq!(q4["blk.1.ffn_down.weight"], glassbox_formats::DType::Q4_0);
}

/// The legacy `.dat` importance matrix (llama-imatrix --output-format dat) reads as the same
/// matrix as the GGUF one from the same run.
#[test]
fn legacy_and_gguf_importance_matrices_agree() {
    use glassbox_formats::gguf_quantize::ImportanceMatrix;
    let deep = quantize_fixtures().join("deep");
    let gguf = ImportanceMatrix::open(&deep.join("imatrix.gguf")).unwrap();
    let dat = ImportanceMatrix::open(&deep.join("imatrix.dat")).unwrap();
    assert!(
        gguf.entries.len() >= 8 * 7,
        "{} entries",
        gguf.entries.len()
    );
    assert_eq!(
        gguf.entries.keys().collect::<Vec<_>>(),
        dat.entries.keys().collect::<Vec<_>>()
    );
    for (name, a) in &gguf.entries {
        let b = &dat.entries[name];
        assert_eq!(a.len(), b.len(), "{name}");
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1e-6),
                "{name}: {x} vs {y}"
            );
        }
    }
    assert_eq!(gguf.chunk_count, dat.chunk_count);
}

#[test]
fn a_file_that_is_not_an_importance_matrix_is_refused() {
    use glassbox_formats::gguf_quantize::ImportanceMatrix;
    // a model GGUF: no imatrix keys
    let err = ImportanceMatrix::open(&fixtures().join("llama/model-F32.gguf")).unwrap_err();
    assert!(
        err.to_string().contains("not an importance matrix"),
        "{err}"
    );
    // random bytes, and a legacy header whose first name runs past the end
    let dir = std::env::temp_dir().join(format!("glassbox-imatrix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, bytes) in [
        b"hello world".to_vec(),
        [1i32.to_le_bytes(), 1000i32.to_le_bytes()].concat(),
    ]
    .into_iter()
    .enumerate()
    {
        let p = dir.join(format!("{i}.dat"));
        std::fs::write(&p, bytes).unwrap();
        let err = ImportanceMatrix::open(&p).unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Straight from a Hub checkpoint: the committed safetensors checkpoints of
/// tests/fixtures/parity (and a Llama with Llama 2's SentencePiece files), seen through our
/// conversion and quantized, give the files llama.cpp's
/// converter and quantizer made of them (every key but nothing else different: the tensors,
/// llama.cpp's Q/K row permutation, the tokenizer, the metadata and its order).
#[test]
fn hub_checkpoints_quantize_to_llama_cpps_files() {
    use glassbox_formats::gguf_convert::HubAsGguf;
    use glassbox_formats::gguf_quantize::{plan, quantize, Mixture};
    let parity = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity");
    let mut failures = Vec::new();
    let mut check = |dir: &Path, mixture: &str, expected: PathBuf| {
        let source = HubAsGguf::open(dir).unwrap();
        let p = plan(&source, Mixture::parse(mixture).unwrap(), None).unwrap();
        let out = std::env::temp_dir().join(format!(
            "glassbox-hub-{}-{mixture}.gguf",
            std::process::id()
        ));
        quantize(&source, &p, None, &out, |_, _| {}).unwrap();
        let ours = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        if ours != std::fs::read(&expected).unwrap() {
            failures.push(format!("{} from {}", expected.display(), dir.display()));
        }
    };
    for name in ["llama", "qwen2"] {
        for mixture in ["Q8_0", "Q4_K_M"] {
            let expected = quantize_fixtures().join(format!("hub/{name}/model-{mixture}.gguf"));
            check(&parity.join(name), mixture, expected);
        }
    }
    // Llama 2's tokenizer files: tokenizer.model read as llama.cpp's converter reads it
    let spm = quantize_fixtures().join("hub/llama-spm");
    check(&spm.join("checkpoint"), "Q8_0", spm.join("model-Q8_0.gguf"));
    // the reference model (a word-level tokenizer, carried as tokenizer.huggingface.json): the
    // file llama.cpp ran when the fixtures were made
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/reference");
    check(
        &reference,
        "Q8_0",
        quantize_fixtures().join("hub/reference/model-Q8_0.gguf"),
    );
    assert!(failures.is_empty(), "differ:\n{}", failures.join("\n"));
}

/// The unknown token's id goes under llama.cpp's key (`tokenizer.ggml.unknown_token_id`, as in
/// the files its converter wrote), not `unk_token_id`, which neither llama.cpp nor our reader
/// reads.
#[test]
fn the_unknown_token_is_written_under_llama_cpps_key() {
    use glassbox_formats::gguf_convert::HubAsGguf;
    use glassbox_formats::gguf_quantize::QuantSource;
    let key = "tokenizer.ggml.unknown_token_id";
    let made_by_llama_cpp = GgufFile::open(&fixtures().join("nemotron/model-Q8_0.gguf")).unwrap();
    assert!(made_by_llama_cpp.metadata().iter().any(|(k, _)| k == key));

    let parity = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/llama");
    let dir = std::env::temp_dir().join(format!("glassbox-hub-unk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(parity.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"unk_token": "<|endoftext|>"}"#,
    )
    .unwrap();
    let source = HubAsGguf::open(&dir).unwrap();
    let keys: Vec<&str> = source.metadata().iter().map(|(k, _)| k.as_str()).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(keys.contains(&key), "{keys:?}");
    assert!(!keys.contains(&"tokenizer.ggml.unk_token_id"), "{keys:?}");
}

#[test]
fn checkpoints_outside_the_converted_families_are_refused_with_the_way_round() {
    use glassbox_formats::gguf_convert::HubAsGguf;
    let parity = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity");
    for name in ["gpt2", "pythia"] {
        let err = HubAsGguf::open(&parity.join(name)).err().expect("refused");
        assert!(err.is_invalid_input(), "{err}");
        assert!(err.to_string().contains("convert_hf_to_gguf.py"), "{err}");
    }
}

/// A value as the fixture generator spells it (gguf-py's reader): `[type, value]`.
fn spelled(v: &glassbox_formats::GgufValue) -> (String, serde_json::Value) {
    use glassbox_formats::{GgufArray, GgufValue};
    use serde_json::json;
    match v {
        GgufValue::U32(x) => ("u32".into(), json!(x)),
        GgufValue::I32(x) => ("i32".into(), json!(x)),
        GgufValue::F32(x) => ("f32".into(), json!(*x as f64)),
        GgufValue::Bool(x) => ("bool".into(), json!(x)),
        GgufValue::String(x) => ("str".into(), json!(x)),
        GgufValue::Array(GgufArray::String(x)) => ("arr[str]".into(), json!(x)),
        GgufValue::Array(GgufArray::I32(x)) => ("arr[i32]".into(), json!(x)),
        GgufValue::Array(GgufArray::F32(x)) => (
            "arr[f32]".into(),
            json!(x.iter().map(|&f| f as f64).collect::<Vec<_>>()),
        ),
        other => (format!("{:?}", other.value_type()), serde_json::Value::Null),
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The tokenizer keys llama.cpp's converter writes for each case of tests/fixtures/
/// llamacpp-quantize/vocab (post-processors that add BOS / EOS / SEP or name an end-of-turn
/// token, chat templates in a side file, special ids from tokenizer_config.json then
/// config.json, a SentencePiece model with added tokens and no tokenizer.json) are ours: the
/// same keys, types, values and order.
#[test]
fn tokenizer_keys_follow_the_converter_case_by_case() {
    use glassbox_formats::gguf_convert::HubAsGguf;
    use glassbox_formats::gguf_quantize::QuantSource;
    let parity = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/llama");
    let cases = quantize_fixtures().join("vocab");
    let mut names: Vec<_> = std::fs::read_dir(&cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    let mut failures = Vec::new();
    for case in names {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let dir =
            std::env::temp_dir().join(format!("glassbox-vocab-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_tree(&case, &dir);
        std::fs::remove_file(dir.join("expected.json")).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(parity.join(f), dir.join(f)).unwrap();
        }
        let source = HubAsGguf::open(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let source = source.unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours: Vec<serde_json::Value> = source
            .metadata()
            .iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .map(|(k, v)| {
                let (t, v) = spelled(v);
                serde_json::json!([k, t, v])
            })
            .collect();
        let expected: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
        if ours != expected {
            let keys = |l: &[serde_json::Value]| {
                l.iter()
                    .map(|e| e[0].to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let first = ours.iter().zip(&expected).find(|(a, b)| a != b);
            failures.push(format!(
                "{name}:\n  ours     {}\n  expected {}\n  first difference {first:?}",
                keys(&ours),
                keys(&expected)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
