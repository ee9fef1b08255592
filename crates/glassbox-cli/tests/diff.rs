//! `glassbox diff`: a model against itself, against a perturbed copy, and a GGUF file against
//! its own conversion to a Hub-named safetensors file; bad input → exit 2 naming the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use glassbox_formats::gguf_names::{hub_name, unpermute_qk, Fixup};
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

fn diff_json(a: &Path, b: &Path) -> Value {
    let out = glassbox(&["diff", a.to_str().unwrap(), b.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "diff failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-diff-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes F32 tensors with the reference `safetensors` crate.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .expect("view");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}

fn all_f32(ck: &Checkpoint) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    ck.tensors()
        .iter()
        .map(|t| {
            let values = to_f32(t.dtype, ck.raw_bytes(&t.name).unwrap()).unwrap();
            (t.name.clone(), t.shape.clone(), values)
        })
        .collect()
}

#[test]
fn a_model_against_itself_is_all_zero() {
    for name in ["parity/gpt2", "families/deepseek-v3"] {
        let path = root().join("tests/fixtures").join(name);
        let report = diff_json(&path, &path);
        let n = Checkpoint::open(&path).unwrap().tensors().len() as u64;
        assert_eq!(report["summary"]["compared"].as_u64(), Some(n));
        assert_eq!(report["summary"]["identical"].as_u64(), Some(n));
        for t in report["tensors"].as_array().unwrap() {
            assert_eq!(t["status"], "compared");
            assert_eq!(t["relative_change"].as_f64(), Some(0.0), "{}", t["name"]);
            assert_eq!(t["max_abs_diff"].as_f64(), Some(0.0));
        }
    }
}

#[test]
fn a_perturbed_copy_puts_the_perturbed_tensor_first() {
    let original = root().join("tests/fixtures/parity/llama/model.safetensors");
    let ck = Checkpoint::open(&original).unwrap();
    let mut tensors = all_f32(&ck);
    let perturbed = "model.layers.1.mlp.down_proj.weight";
    let removed = "model.layers.0.self_attn.o_proj.weight";
    let (norm_a, delta) = {
        let (_, _, values) = tensors.iter_mut().find(|t| t.0 == perturbed).unwrap();
        let norm: f64 = values
            .iter()
            .map(|&x| (x as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        values[17] += 0.25;
        values[300] -= 0.125;
        (norm, (0.25f64.powi(2) + 0.125f64.powi(2)).sqrt())
    };
    // A slightly changed tensor too, so the ordering is tested, not just "the only change".
    tensors
        .iter_mut()
        .find(|t| t.0 == "model.embed_tokens.weight")
        .unwrap()
        .2[0] += 1e-3;
    tensors.retain(|t| t.0 != removed);
    tensors.push(("extra.weight".into(), vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    let dir = scratch("perturbed");
    let copy = dir.join("copy.safetensors");
    write_safetensors(&copy, &tensors);

    let report = diff_json(&original, &copy);
    let rows = report["tensors"].as_array().unwrap();
    assert_eq!(rows[0]["name"], perturbed);
    assert_eq!(rows[1]["name"], "model.embed_tokens.weight");
    let rel = rows[0]["relative_change"].as_f64().unwrap();
    // The stored values are f32, so the perturbation itself carries f32 rounding.
    assert!(
        (rel - delta / norm_a).abs() < 1e-6 * rel,
        "{rel} vs {}",
        delta / norm_a
    );
    assert!((rows[0]["max_abs_diff"].as_f64().unwrap() - 0.25).abs() < 1e-6);
    let status: HashMap<&str, &str> = rows
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status[removed], "only-in-a");
    assert_eq!(status["extra.weight"], "only-in-b");
    assert_eq!(
        report["summary"]["identical"].as_u64(),
        Some(ck.tensors().len() as u64 - 3)
    );

    let top = glassbox(&[
        "diff",
        original.to_str().unwrap(),
        copy.to_str().unwrap(),
        "--top",
        "1",
    ]);
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success() && text.contains(perturbed) && !text.contains(removed));
    std::fs::remove_dir_all(&dir).ok();
}

/// A NaN or an infinity on one side only is a change, though the metrics leave such pairs out:
/// the tensor is not counted identical and comes first (it read "identical", sorted last).
/// NaNs at the same places on both sides are no change.
#[test]
fn non_finite_values_on_one_side_are_a_change() {
    let original = root().join("tests/fixtures/parity/llama/model.safetensors");
    let ck = Checkpoint::open(&original).unwrap();
    let mut tensors = all_f32(&ck);
    let broken = "model.layers.0.mlp.down_proj.weight";
    let values = &mut tensors.iter_mut().find(|t| t.0 == broken).unwrap().2;
    values[5] = f32::NAN;
    values[9] = f32::INFINITY;
    tensors
        .iter_mut()
        .find(|t| t.0 == "model.embed_tokens.weight")
        .unwrap()
        .2[0] += 1e-3;
    let dir = scratch("non-finite");
    let copy = dir.join("copy.safetensors");
    write_safetensors(&copy, &tensors);
    let report = diff_json(&original, &copy);
    let rows = report["tensors"].as_array().unwrap();
    assert_eq!(rows[0]["name"], broken, "{report}");
    assert_eq!(rows[0]["non_finite_changed"], 2);
    assert_eq!(
        report["summary"]["identical"].as_u64(),
        Some(ck.tensors().len() as u64 - 2)
    );
    let text = glassbox(&["diff", original.to_str().unwrap(), copy.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("2 NaN/infinite values differ"), "{text}");
    // The copy against itself: the same NaN and infinity, no change.
    let same = diff_json(&copy, &copy);
    assert_eq!(
        same["summary"]["identical"].as_u64(),
        Some(ck.tensors().len() as u64)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Converts a GGUF to a Hub-named F32 safetensors file: dequantize, rename, and undo the Q/K
/// row permutation (or deliberately not, to prove the diff does it).
fn convert_gguf(gguf: &Path, out: &Path, unpermute: bool) {
    let ck = Checkpoint::open(gguf).unwrap();
    let meta = ck.gguf().unwrap();
    let arch = meta.architecture().unwrap().to_string();
    let heads = |k: &str| {
        meta.get(&format!("{arch}.attention.{k}"))
            .and_then(|v| v.as_u64())
            .unwrap() as usize
    };
    let mut tensors = Vec::new();
    for (name, shape, values) in all_f32(&ck) {
        let hub = hub_name(&arch, &name).unwrap_or_else(|| panic!("{name} has no Hub name"));
        let n_head = match hub.fixup {
            Fixup::None => None,
            Fixup::UnpermuteQ => Some(heads("head_count")),
            Fixup::UnpermuteK => Some(heads("head_count_kv")),
            other => panic!("{name}: fix-up {other:?} not expected in a llama GGUF"),
        };
        let values = match n_head {
            Some(h) if unpermute => {
                let t = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).unwrap();
                unpermute_qk(&t, h)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            }
            _ => values,
        };
        tensors.push((hub.name, shape, values));
    }
    write_safetensors(out, &tensors);
}

#[test]
fn gguf_against_its_safetensors_conversion_is_zero() {
    let gguf = root().join(".artifacts/tiny.gguf");
    if !gguf.exists() {
        assert_ne!(
            std::env::var("GLASSBOX_REQUIRE_ARTIFACTS").as_deref(),
            Ok("1"),
            "{} is missing: run scripts/fetch-artifacts.sh",
            gguf.display()
        );
        eprintln!("notice: {} absent, test skipped", gguf.display());
        return;
    }
    let dir = scratch("gguf");
    let converted = dir.join("converted.safetensors");
    convert_gguf(&gguf, &converted, true);
    let report = diff_json(&gguf, &converted);
    let n = Checkpoint::open(&gguf).unwrap().tensors().len() as u64;
    assert_eq!(
        report["summary"]["compared"].as_u64(),
        Some(n),
        "{:#}",
        report["summary"]
    );
    assert_eq!(report["summary"]["identical"].as_u64(), Some(n));
    for t in report["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        assert!(
            name.starts_with("model.") || name == "lm_head.weight",
            "{name}"
        );
    }

    // Without the unpermutation exactly the Q and K projections differ.
    let raw = dir.join("permuted.safetensors");
    convert_gguf(&gguf, &raw, false);
    let report = diff_json(&gguf, &raw);
    let changed: Vec<&str> = report["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["relative_change"].as_f64() != Some(0.0))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!changed.is_empty());
    assert!(
        changed
            .iter()
            .all(|n| n.ends_with("q_proj.weight") || n.ends_with("k_proj.weight")),
        "{changed:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_exits_2_naming_the_file() {
    let dir = scratch("bad");
    let good = root().join("tests/fixtures/parity/gpt2");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}").unwrap();
    let missing = dir.join("nope");
    for (b, file) in [(&garbage, &garbage), (&missing, &missing)] {
        let out = glassbox(&["diff", good.to_str().unwrap(), b.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
    std::fs::remove_dir_all(&dir).ok();
}
