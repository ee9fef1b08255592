//! The reference model quantized by `glassbox quantize` from its safetensors (a Q8_0 GGUF that
//! carries its word-level tokenizer as `tokenizer.huggingface.json`), run here and by llama.cpp
//! (tests/fixtures/make_quantize_fixtures.py): the same logits, and the tokenizer read back.

use std::path::PathBuf;

use glassbox_formats::Checkpoint;
use glassbox_models::{gguf_model, KvCacheType, LoadOptions};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llamacpp-quantize/hub/reference")
}

#[test]
fn the_quantized_reference_model_runs_as_llama_cpp_runs_it() {
    // llama.cpp ran it with an F32 KV cache (the generator's choice), so this run has one too.
    let opts = LoadOptions {
        kv_cache: Some(KvCacheType::F32),
        ..LoadOptions::default()
    };
    let model = gguf_model::load(&fixture().join("model-Q8_0.gguf"), &opts).unwrap();
    let expected = Checkpoint::open(fixture().join("expected.safetensors")).unwrap();
    let device = candle_core::Device::Cpu;
    let ids: Vec<u32> = expected
        .tensor("input_ids", &device)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|i| i as u32)
        .collect();
    let theirs = expected.tensor_f32("logits", &device).unwrap();
    let ours = model
        .run(&model.ids_tensor(&ids).unwrap())
        .unwrap()
        .squeeze(0)
        .unwrap();
    let max = (ours - &theirs)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // llama.cpp's numerics on a Q8_0 file: exact up to one int8 rounding flip
    assert!(max <= 1e-3, "max |Δ| = {max}");
    // the word-level tokenizer came back from the file
    let tokenizer = model.tokenizer.as_ref().expect("a tokenizer");
    let words = tokenizer.encode("the cat").unwrap();
    assert!(
        !words.is_empty() && words.iter().all(|&id| id < 89),
        "{words:?}"
    );
}
