//! `ln*.hook_scale` and `ln*.hook_normalized` are what TransformerLens hooks there: the scale
//! √(mean(x²) + ε) and the normalised input x / scale before the norm's weight and bias
//! (centred first for LayerNorm), for LayerNorm (GPT-2), RMSNorm (Llama) and Gemma's (1 + w)
//! RMSNorm alike; the weight and bias come after it.

use candle_core::{Tensor, D};
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

#[path = "support/compare.rs"]
mod compare;
#[path = "support/fixtures.rs"]
mod fixtures;
use compare::max_abs_diff;
use fixtures::fixture;

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

/// (x / scale, scale) with scale = sqrt(mean(x²) + eps) over the last axis, x centred first
/// when `centre`.
fn normalised(x: &Tensor, eps: f64, centre: bool) -> (Tensor, Tensor) {
    let x = if centre {
        x.broadcast_sub(&x.mean_keepdim(D::Minus1).unwrap())
            .unwrap()
    } else {
        x.clone()
    };
    let scale = (x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + eps)
        .unwrap()
        .sqrt()
        .unwrap();
    (x.broadcast_div(&scale).unwrap(), scale)
}

#[test]
fn hook_normalized_is_before_the_weight_and_bias() {
    for (name, eps_key, centre) in [
        ("parity/gpt2", "layer_norm_epsilon", true),
        ("parity/llama", "rms_norm_eps", false),
        ("more/gemma", "rms_norm_eps", false),
    ] {
        let dir = fixture(name);
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let eps = config[eps_key].as_f64().unwrap();
        let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
        let last = model.info().n_layers - 1;
        let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
        let (_, cache) = model.run_with_cache(&ids, &NameFilter::all()).unwrap();
        for (input, hook) in [
            (
                "blocks.0.hook_resid_pre".to_string(),
                "blocks.0.ln1.hook_normalized".to_string(),
            ),
            (
                "blocks.0.hook_resid_mid".to_string(),
                "blocks.0.ln2.hook_normalized".to_string(),
            ),
            (
                format!("blocks.{last}.hook_resid_post"),
                "ln_final.hook_normalized".to_string(),
            ),
        ] {
            let (want, scale) = normalised(&cache[input.as_str()], eps, centre);
            let diff = max_abs_diff(&cache[hook.as_str()], &want);
            assert!(
                diff < 1e-4,
                "{name}: {hook} is not the normalised {input} ({diff:e})"
            );
            let scale_hook = hook.replace("hook_normalized", "hook_scale");
            let diff = max_abs_diff(&cache[scale_hook.as_str()], &scale);
            assert!(diff < 1e-4, "{name}: {scale_hook} ({diff:e})");
        }
    }
}

/// An edit at `hook_normalized` goes through the weight and bias: doubling GPT-2's final
/// normalised stream moves the logits to unembed(2·w·n + b), not to 2·(w·n + b)'s unembedding.
#[test]
fn an_edit_at_hook_normalized_goes_through_the_weight_and_bias() {
    let dir = fixture("parity/gpt2");
    let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    let (_, cache) = model
        .run_with_cache(
            &ids,
            &NameFilter::new(&["ln_final.hook_normalized"]).unwrap(),
        )
        .unwrap();
    let n = &cache["ln_final.hook_normalized"];
    let mut hooks = glassbox_models::Hooks::default();
    hooks.add_fn(
        NameFilter::new(&["ln_final.hook_normalized"]).unwrap(),
        |_, x| Ok(Some((x * 2.0)?)),
    );
    let edited = model.run_with_hooks(&ids, &mut hooks).unwrap();
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let (w, b) = (
        &weights["transformer.ln_f.weight"],
        &weights["transformer.ln_f.bias"],
    );
    let wte = &weights["transformer.wte.weight"];
    let normed = (n * 2.0)
        .unwrap()
        .broadcast_mul(w)
        .unwrap()
        .broadcast_add(b)
        .unwrap();
    let want = normed.broadcast_matmul(&wte.t().unwrap()).unwrap();
    let diff = max_abs_diff(&edited, &want);
    assert!(diff < 1e-3, "{diff:e}");
}

/// Caching the scale changes nothing (the fused norm runs as without it); a write to it
/// divides by the written scale, as TransformerLens' `x / hook_scale(scale)` does.
#[test]
fn hook_scale_is_read_without_cost_and_written_through() {
    let dir = fixture("parity/llama");
    let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    let plain = model.run(&ids).unwrap();
    let (cached, cache) = model
        .run_with_cache(
            &ids,
            &NameFilter::new(&["*hook_scale", "*hook_normalized"]).unwrap(),
        )
        .unwrap();
    assert_eq!(max_abs_diff(&plain, &cached), 0.0);
    let mut hooks = glassbox_models::Hooks::caching(
        NameFilter::new(&["blocks.0.ln1.hook_normalized"]).unwrap(),
    );
    hooks.add_fn(
        NameFilter::new(&["blocks.0.ln1.hook_scale"]).unwrap(),
        |_, s| Ok(Some((s * 2.0)?)),
    );
    model.run_with_hooks(&ids, &mut hooks).unwrap();
    let halved = (&cache["blocks.0.ln1.hook_normalized"] * 0.5).unwrap();
    let diff = max_abs_diff(&hooks.cache["blocks.0.ln1.hook_normalized"], &halved);
    assert!(diff < 1e-5, "{diff:e}");
}
