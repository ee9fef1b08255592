//! Families without a transformers fixture, checked by exact equivalences with the Llama
//! fixture (which is checked against transformers) and by the invariants their papers state.
//!
//! Each case rewrites the Llama fixture's weights into the family's layout and config, in a
//! temporary Hub directory, and loads that like any checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor, D};
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

#[path = "support/compare.rs"]
mod compare;
use compare::max_abs_diff;

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

fn llama_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/llama")
}

fn llama_weights() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(llama_dir().join("model.safetensors"), &Device::Cpu).unwrap()
}

fn llama_config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(llama_dir().join("config.json")).unwrap())
        .unwrap()
}

/// Writes a Hub directory with `config` and `weights` (and the fixture's tokenizer); loads it.
fn build(name: &str, config: serde_json::Value, weights: &HashMap<String, Tensor>) -> HookedModel {
    let dir = std::env::temp_dir().join(format!("glassbox-families-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        llama_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    candle_core::safetensors::save(weights, dir.join("model.safetensors")).unwrap();
    HookedModel::load(&dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn with(mut config: serde_json::Value, arch: &str, extra: serde_json::Value) -> serde_json::Value {
    config["architectures"] = serde_json::json!([arch]);
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

fn logits(model: &HookedModel) -> Tensor {
    model
        .run(&model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap())
        .unwrap()
}

/// Root mean square over the last dimension.
fn rms(t: &Tensor) -> Vec<f32> {
    t.sqr()
        .unwrap()
        .mean(D::Minus1)
        .unwrap()
        .sqrt()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn reference() -> Tensor {
    logits(&HookedModel::load(&llama_dir(), &LoadOptions::default()).unwrap())
}

#[test]
fn phi3_fused_projections_equal_llama_split_ones() {
    let mut w = llama_weights();
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        let take = |w: &mut HashMap<String, Tensor>, n: &str| {
            w.remove(&format!("{p}.{n}.weight")).unwrap()
        };
        let (q, k, v) = (
            take(&mut w, "self_attn.q_proj"),
            take(&mut w, "self_attn.k_proj"),
            take(&mut w, "self_attn.v_proj"),
        );
        w.insert(
            format!("{p}.self_attn.qkv_proj.weight"),
            Tensor::cat(&[q, k, v], 0).unwrap(),
        );
        let (g, u) = (take(&mut w, "mlp.gate_proj"), take(&mut w, "mlp.up_proj"));
        w.insert(
            format!("{p}.mlp.gate_up_proj.weight"),
            Tensor::cat(&[g, u], 0).unwrap(),
        );
    }
    let model = build(
        "phi3",
        with(llama_config(), "Phi3ForCausalLM", serde_json::json!({})),
        &w,
    );
    assert!(max_abs_diff(&logits(&model), &reference()) < 1e-5);
}

#[test]
fn gemma_offset_norms_and_scaled_embeddings_equal_llama() {
    // Gemma scales by (1 + w) and multiplies embeddings by sqrt(64) = 8: store w - 1 and
    // embeddings / 8 (exact in binary), and the model must compute Llama's function.
    let mut w = llama_weights();
    for (name, t) in w.iter_mut() {
        if name.ends_with("norm.weight") {
            *t = (&*t - 1.0).unwrap();
        } else if name == "model.embed_tokens.weight" {
            *t = (&*t / 8.0).unwrap();
        }
    }
    let config = with(
        llama_config(),
        "GemmaForCausalLM",
        serde_json::json!({"hidden_activation": "silu", "tie_word_embeddings": false}),
    );
    let model = build("gemma", config, &w);
    assert!(max_abs_diff(&logits(&model), &reference()) < 1e-4);
}

#[test]
fn mistral_sliding_window_masks_distant_keys_only() {
    let w = llama_weights();
    let wide = build(
        "mistral-wide",
        with(
            llama_config(),
            "MistralForCausalLM",
            serde_json::json!({"sliding_window": 1000}),
        ),
        &w,
    );
    assert!(max_abs_diff(&logits(&wide), &reference()) < 1e-5);
    let narrow = build(
        "mistral-narrow",
        with(
            llama_config(),
            "MistralForCausalLM",
            serde_json::json!({"sliding_window": 4}),
        ),
        &w,
    );
    let ids = narrow
        .ids_tensor(&narrow.to_tokens(PROMPT).unwrap())
        .unwrap();
    let (out, cache) = narrow
        .run_with_cache(
            &ids,
            &NameFilter::new(&["blocks.0.attn.hook_pattern"]).unwrap(),
        )
        .unwrap();
    assert!(max_abs_diff(&out, &reference()) > 1e-3);
    let pattern = cache["blocks.0.attn.hook_pattern"]
        .i((0, 0))
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (q, row) in pattern.iter().enumerate() {
        for (k, &p) in row.iter().enumerate() {
            let visible = k <= q && q - k < 4;
            assert_eq!(p > 0.0, visible, "query {q} key {k}: {p}");
        }
    }
}

#[test]
fn qwen3_normalises_each_query_and_key_head() {
    let mut w = llama_weights();
    for i in 0..2 {
        for n in ["q_norm", "k_norm"] {
            w.insert(
                format!("model.layers.{i}.self_attn.{n}.weight"),
                Tensor::ones(16, DType::F32, &Device::Cpu).unwrap(),
            );
        }
    }
    let model = build(
        "qwen3",
        with(llama_config(), "Qwen3ForCausalLM", serde_json::json!({})),
        &w,
    );
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    let (_, cache) = model
        .run_with_cache(&ids, &NameFilter::new(&["blocks.1.attn.*"]).unwrap())
        .unwrap();
    for which in ["q", "k"] {
        // [batch, pos, head, d_head]: every head's vector has unit RMS after the norm; the
        // projection (TransformerLens' hook_q / hook_k) is hooked before it.
        let normed = &cache[&format!("blocks.1.attn.{which}_norm.hook_normalized")];
        let raw = &cache[&format!("blocks.1.attn.hook_{which}")];
        assert_eq!(normed.dims(), raw.dims());
        assert!(
            rms(normed).iter().all(|r| (r - 1.0).abs() < 1e-3),
            "{which}"
        );
        assert!(rms(raw).iter().any(|r| (r - 1.0).abs() > 1e-2), "{which}");
    }
}

#[test]
fn olmo2_normalises_whole_projections_and_block_outputs() {
    let mut w = llama_weights();
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        // OLMo 2 has no pre-norms; its post-norms take those names' places.
        let ln1 = w.remove(&format!("{p}.input_layernorm.weight")).unwrap();
        w.insert(
            format!("{p}.post_feedforward_layernorm.weight"),
            ln1.ones_like().unwrap(),
        );
        let ln2 = w
            .remove(&format!("{p}.post_attention_layernorm.weight"))
            .unwrap();
        w.insert(
            format!("{p}.post_attention_layernorm.weight"),
            ln2.ones_like().unwrap(),
        );
        w.insert(
            format!("{p}.self_attn.q_norm.weight"),
            Tensor::ones(64, DType::F32, &Device::Cpu).unwrap(),
        );
        w.insert(
            format!("{p}.self_attn.k_norm.weight"),
            Tensor::ones(32, DType::F32, &Device::Cpu).unwrap(),
        );
    }
    let model = build(
        "olmo2",
        with(llama_config(), "Olmo2ForCausalLM", serde_json::json!({})),
        &w,
    );
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    let filter = NameFilter::new(&[
        "blocks.0.attn.hook_q",
        "blocks.0.attn.q_norm.hook_normalized",
        "blocks.0.hook_attn_out",
        "blocks.0.hook_mlp_out",
        "blocks.0.hook_resid_*",
        "blocks.0.ln*_post.hook_normalized",
    ])
    .unwrap();
    let (_, cache) = model.run_with_cache(&ids, &filter).unwrap();
    // q is normalised over all heads at once, [batch, pos, heads·d_head]: unit RMS per
    // position, not per head; hook_q, per head, is the projection before it.
    let q = &cache["blocks.0.attn.q_norm.hook_normalized"];
    let (b, t, hd) = q.dims3().unwrap();
    assert!(rms(q).iter().all(|r| (r - 1.0).abs() < 1e-3));
    let per_head = q.reshape((b, t, 4, hd / 4)).unwrap();
    assert!(rms(&per_head).iter().any(|r| (r - 1.0).abs() > 1e-2));
    let raw = &cache["blocks.0.attn.hook_q"];
    assert_eq!(raw.dims(), per_head.dims());
    assert!(rms(&raw.flatten_from(2).unwrap())
        .iter()
        .any(|r| (r - 1.0).abs() > 1e-2));
    // Attention and MLP outputs are normalised (`ln1_post`, `ln2_post`) before joining the
    // residual; as in TransformerLens, `hook_attn_out` / `hook_mlp_out` are what joins it.
    for hook in [
        "blocks.0.ln1_post.hook_normalized",
        "blocks.0.ln2_post.hook_normalized",
        "blocks.0.hook_attn_out",
        "blocks.0.hook_mlp_out",
    ] {
        assert!(
            rms(&cache[hook]).iter().all(|r| (r - 1.0).abs() < 1e-3),
            "{hook}"
        );
    }
    let mid = (&cache["blocks.0.hook_resid_pre"] + &cache["blocks.0.hook_attn_out"]).unwrap();
    assert!(max_abs_diff(&mid, &cache["blocks.0.hook_resid_mid"]) < 1e-6);
    let post = (&cache["blocks.0.hook_resid_mid"] + &cache["blocks.0.hook_mlp_out"]).unwrap();
    assert!(max_abs_diff(&post, &cache["blocks.0.hook_resid_post"]) < 1e-6);
}

#[test]
fn gemma2_soft_caps_logits_and_alternates_sliding_windows() {
    let mut w = llama_weights();
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        let ln2 = w
            .remove(&format!("{p}.post_attention_layernorm.weight"))
            .unwrap();
        w.insert(format!("{p}.pre_feedforward_layernorm.weight"), ln2.clone());
        w.insert(
            format!("{p}.post_attention_layernorm.weight"),
            ln2.zeros_like().unwrap(),
        );
        w.insert(
            format!("{p}.post_feedforward_layernorm.weight"),
            ln2.zeros_like().unwrap(),
        );
    }
    let config = with(
        llama_config(),
        "Gemma2ForCausalLM",
        serde_json::json!({"tie_word_embeddings": false, "sliding_window": 3, "final_logit_softcapping": 2.0,
                           "attn_logit_softcapping": 50.0, "query_pre_attn_scalar": 16}),
    );
    let model = build("gemma2", config, &w);
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    let (out, cache) = model
        .run_with_cache(&ids, &NameFilter::new(&["*hook_pattern"]).unwrap())
        .unwrap();
    let top = out
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(top < 2.0 && top > 1.0, "soft-capped logits reach {top}");
    let t = ids.dim(1).unwrap();
    // Layer 0 slides (keys more than 2 back are masked); layer 1 is global.
    let last_row = |layer: usize| {
        cache[format!("blocks.{layer}.attn.hook_pattern").as_str()]
            .i((0, 0, t - 1))
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(last_row(0).iter().filter(|&&p| p > 0.0).count(), 3);
    assert_eq!(last_row(1).iter().filter(|&&p| p > 0.0).count(), t);
}
