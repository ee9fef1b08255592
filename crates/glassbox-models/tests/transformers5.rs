//! Hub checkpoints in every storage form transformers 5 writes (`tests/fixtures/transformers5/`,
//! made by `tests/fixtures/make_transformers5_fixtures.py` with transformers' own
//! `save_pretrained`): BF16 and F16 weights, experts fused into 3-D tensors
//! (`save_original_format=False`), sharded files, and the Qwen3-MoE config transformers 5 writes
//! (`num_local_experts`, which the Hub's files call `num_experts`). Each loads in f32 and its
//! logits (BERT: last hidden states) are within 1e-4 of transformers' own run of the same saved
//! folder. Data-driven; every failure is reported.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use glassbox_formats::Checkpoint;
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/transformers5")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32, String> {
    if a.dims() != b.dims() {
        return Err(format!("shape {:?}, transformers {:?}", a.dims(), b.dims()));
    }
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .map_err(|e| e.to_string())
}

fn check(name: &str) -> Result<Vec<f32>, String> {
    let dir = fixtures().join(name);
    let model = HookedModel::load(&dir, &LoadOptions::default()).map_err(|e| e.to_string())?;
    let expected = Checkpoint::open(&dir.join("expected.safetensors")).unwrap();
    let encoder = !model.info().causal;
    let mut diffs = Vec::new();
    for j in 0.. {
        let Ok(ids) = expected.tensor(&format!("prompt{j}.input_ids"), &Device::Cpu) else {
            break;
        };
        let ids = ids.to_dtype(DType::U32).unwrap();
        let got = if encoder {
            // post-LN: the layer's output is after its second norm (HookedEncoder's name)
            let last = format!(
                "blocks.{}.hook_normalized_resid_post",
                model.info().n_layers - 1
            );
            let (_, cache) = model
                .run_with_cache(&ids, &NameFilter::new(&[last.as_str()]).unwrap())
                .map_err(|e| e.to_string())?;
            cache[&last].clone()
        } else {
            model.run(&ids).map_err(|e| e.to_string())?
        };
        let key = if encoder {
            "last_hidden_state"
        } else {
            "logits"
        };
        let want = expected
            .tensor(&format!("prompt{j}.{key}"), &Device::Cpu)
            .unwrap();
        diffs.push(max_abs_diff(&got, &want)?);
    }
    if diffs.is_empty() {
        return Err("no prompts in expected.safetensors".into());
    }
    Ok(diffs)
}

#[test]
fn every_storage_form_matches_transformers() {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fixtures = manifest["fixtures"].as_object().unwrap();
    assert!(fixtures.len() >= 35, "{} fixtures", fixtures.len());
    let forms: std::collections::BTreeSet<&str> = fixtures
        .values()
        .filter_map(|f| f["form"].as_str())
        .collect();
    assert_eq!(
        forms.into_iter().collect::<Vec<_>>(),
        ["bf16", "f16", "f32", "fused", "sharded"]
    );
    let mut failures = Vec::new();
    for name in fixtures.keys() {
        match check(name) {
            Ok(diffs) if diffs.iter().all(|&d| d <= TOLERANCE) => {
                eprintln!("{name}: max |diff| {diffs:?}")
            }
            Ok(diffs) => failures.push(format!("{name}: max |diff| {diffs:?}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
