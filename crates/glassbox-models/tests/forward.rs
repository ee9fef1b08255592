//! Behaviour of the hooked forward pass beyond parity: KV-cache decoding, hook writes,
//! padding masks, gradients, errors.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use glassbox_models::{
    GenerateOptions, HookedModel, Hooks, Intervention, KvCache, LoadOptions, ModelError,
    NameFilter, Selection,
};

#[path = "support/compare.rs"]
mod compare;
use compare::max_abs_diff;

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity")
        .join(name)
}

fn load(name: &str) -> HookedModel {
    HookedModel::load(&fixture(name), &LoadOptions::default()).unwrap()
}

/// Greedy continuation by re-running the whole sequence each step (no cache).
fn greedy_without_cache(model: &HookedModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    for _ in 0..n {
        let logits = model.run(&model.ids_tensor(&seq).unwrap()).unwrap();
        let last = logits
            .i((0, seq.len() - 1))
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        seq.push(glassbox_models::generate::argmax(&last));
    }
    seq[prompt.len()..].to_vec()
}

#[test]
fn kv_cache_greedy_generation_equals_full_forward_passes() {
    for name in ["gpt2", "pythia", "llama", "qwen2"] {
        let model = load(name);
        let prompt = model.to_tokens(PROMPT).unwrap();
        let opts = GenerateOptions {
            max_new_tokens: 12,
            stop_at_eos: false,
            ..GenerateOptions::default()
        };
        let mut streamed = Vec::new();
        let cached = model
            .generate(&prompt, &opts, &mut Hooks::none(), |t| streamed.push(t))
            .unwrap();
        assert_eq!(
            cached, streamed,
            "{name}: streamed tokens differ from returned ones"
        );
        assert_eq!(cached, greedy_without_cache(&model, &prompt, 12), "{name}");
    }
}

#[test]
fn kv_cache_logits_equal_full_forward_logits() {
    let model = load("llama");
    let ids = model.to_tokens(PROMPT).unwrap();
    let full = model.run(&model.ids_tensor(&ids).unwrap()).unwrap();
    let mut kv = KvCache::new(model.info().n_layers);
    let split = 5;
    let mut hooks = Hooks::none();
    let first = model
        .model
        .forward(
            &model.ids_tensor(&ids[..split]).unwrap(),
            None,
            &mut hooks,
            Some(&mut kv),
        )
        .unwrap();
    assert_eq!(kv.len(), split);
    let rest = model
        .model
        .forward(
            &model.ids_tensor(&ids[split..]).unwrap(),
            None,
            &mut hooks,
            Some(&mut kv),
        )
        .unwrap();
    assert_eq!(kv.len(), ids.len());
    let joined = Tensor::cat(&[first, rest], 1).unwrap();
    assert!(max_abs_diff(&joined, &full) < 1e-4);
    kv.clear();
    assert!(kv.is_empty());
}

#[test]
fn zeroing_attn_out_changes_logits() {
    let model = load("gpt2");
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    let clean = model.run(&ids).unwrap();
    let mut hooks = Hooks::none();
    hooks.intervene(
        NameFilter::new(&["blocks.0.hook_attn_out"]).unwrap(),
        Intervention::Zero,
        Selection::All,
    );
    let ablated = model.run_with_hooks(&ids, &mut hooks).unwrap();
    assert!(max_abs_diff(&clean, &ablated) > 1e-2);
}

#[test]
fn replacing_resid_pre_with_its_own_value_changes_nothing() {
    let model = load("pythia");
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    let filter = NameFilter::new(&["blocks.1.hook_resid_pre"]).unwrap();
    let (clean, cache) = model.run_with_cache(&ids, &filter).unwrap();
    let mut hooks = Hooks::none();
    hooks.intervene(
        filter,
        Intervention::Replace(cache["blocks.1.hook_resid_pre"].clone()),
        Selection::All,
    );
    let patched = model.run_with_hooks(&ids, &mut hooks).unwrap();
    assert_eq!(max_abs_diff(&clean, &patched), 0.0);
    // And replacing it with something else does change the output, so the write is live.
    let mut hooks = Hooks::none();
    hooks.intervene(
        NameFilter::new(&["blocks.1.hook_resid_pre"]).unwrap(),
        Intervention::Scale(0.5),
        Selection::All,
    );
    assert!(max_abs_diff(&clean, &model.run_with_hooks(&ids, &mut hooks).unwrap()) > 1e-3);
}

#[test]
fn right_padding_with_a_mask_matches_unpadded_runs() {
    for name in ["gpt2", "pythia", "llama", "qwen2"] {
        let model = load(name);
        let a = model.to_tokens("The Eiffel Tower is in Paris.").unwrap();
        let b = model.to_tokens(PROMPT).unwrap();
        let len = a.len().max(b.len());
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        for seq in [&a, &b] {
            for p in 0..len {
                ids.push(*seq.get(p).unwrap_or(&0));
                mask.push((p < seq.len()) as u32);
            }
        }
        let ids = Tensor::from_vec(ids, (2, len), &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(mask, (2, len), &Device::Cpu).unwrap();
        let batched = model.run_masked(&ids, &mask, &mut Hooks::none()).unwrap();
        for (row, seq) in [&a, &b].into_iter().enumerate() {
            let alone = model.run(&model.ids_tensor(seq).unwrap()).unwrap();
            let real = batched
                .i(row)
                .unwrap()
                .narrow(0, 0, seq.len())
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let diff = max_abs_diff(&real, &alone);
            assert!(
                diff < 1e-4,
                "{name} row {row}: padded batch differs by {diff}"
            );
        }
    }
}

/// d logit / d resid_pre(layer 0) by backprop through the whole model, against central finite
/// differences, in f64.
#[test]
fn gradients_match_finite_differences() {
    for name in ["gpt2", "llama"] {
        let opts = LoadOptions {
            dtype: DType::F64,
            ..LoadOptions::default()
        };
        let model = HookedModel::load(&fixture(name), &opts).unwrap();
        let ids = model
            .ids_tensor(&model.to_tokens("The Eiffel Tower is in Paris.").unwrap())
            .unwrap();
        let hook = "blocks.0.hook_resid_pre";
        let (_, cache) = model
            .run_with_cache(&ids, &NameFilter::new(&[hook]).unwrap())
            .unwrap();
        let resid = cache[hook].to_dtype(DType::F64).unwrap();
        let (last, target) = (ids.dim(1).unwrap() - 1, 7usize);
        // The logit as a function of a replacement resid_pre.
        let logit_of = |replacement: &Tensor| -> Tensor {
            let mut hooks = Hooks::none();
            let r = replacement.clone();
            hooks.add_fn(NameFilter::new(&[hook]).unwrap(), move |_, _| {
                Ok(Some(r.clone()))
            });
            let logits = model.run_with_hooks(&ids, &mut hooks).unwrap();
            logits.i((0, last, target)).unwrap()
        };
        let var = Var::from_tensor(&resid).unwrap();
        let grads = logit_of(var.as_tensor()).backward().unwrap();
        let grad = grads
            .get(var.as_tensor())
            .expect("gradient reaches resid_pre")
            .flatten_all()
            .unwrap();
        let grad = grad.to_vec1::<f64>().unwrap();
        let flat = resid.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let h = 1e-5;
        let d_model = model.info().d_model;
        // Elements at the first and last positions (attention carries the first one forward).
        for idx in [0, 3, d_model + 1, last * d_model, last * d_model + 5] {
            let bump = |delta: f64| {
                let mut v = flat.clone();
                v[idx] += delta;
                let t = Tensor::from_vec(v, resid.shape(), &Device::Cpu).unwrap();
                logit_of(&t).to_scalar::<f64>().unwrap()
            };
            let numeric = (bump(h) - bump(-h)) / (2.0 * h);
            assert!(
                (numeric - grad[idx]).abs() < 1e-6 * (1.0 + numeric.abs()),
                "{name} element {idx}: backprop {} vs finite difference {numeric}",
                grad[idx]
            );
        }
        assert!(
            grad.iter().any(|g| g.abs() > 1e-3),
            "{name}: gradient is all zeros"
        );
    }
}

#[test]
fn unsupported_architecture_is_a_clear_input_error() {
    let config = serde_json::json!({"architectures": ["FancyNewForCausalLM"], "hidden_size": 8});
    let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    let err = HookedModel::from_config(&config, vb)
        .err()
        .expect("must fail");
    assert!(err.is_invalid_input());
    let msg = err.to_string();
    assert!(
        msg.contains("FancyNewForCausalLM") && msg.contains("LlamaForCausalLM"),
        "{msg}"
    );
    assert!(matches!(err, ModelError::UnsupportedArchitecture { .. }));
}

#[test]
fn out_of_vocabulary_ids_are_rejected() {
    let model = load("gpt2");
    let err = model
        .run(&model.ids_tensor(&[1, 5000]).unwrap())
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
}

#[test]
fn grouped_query_hooks_have_kv_heads_and_queries_have_all_heads() {
    let model = load("llama");
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    let (_, cache) = model
        .run_with_cache(&ids, &NameFilter::new(&["blocks.0.attn.*"]).unwrap())
        .unwrap();
    let t = ids.dim(1).unwrap();
    let info = model.info();
    assert_eq!(
        cache["blocks.0.attn.hook_q"].dims(),
        &[1, t, info.n_heads, info.d_head]
    );
    assert_eq!(
        cache["blocks.0.attn.hook_rot_k"].dims(),
        &[1, t, info.n_kv_heads, info.d_head]
    );
    assert_eq!(
        cache["blocks.0.attn.hook_v"].dims(),
        &[1, t, info.n_kv_heads, info.d_head]
    );
    assert_eq!(
        cache["blocks.0.attn.hook_z"].dims(),
        &[1, t, info.n_heads, info.d_head]
    );
    assert_eq!(
        cache["blocks.0.attn.hook_attn_scores"].dims(),
        &[1, info.n_heads, t, t]
    );
    // Pattern rows sum to one and are causal.
    let pattern = &cache["blocks.0.attn.hook_pattern"];
    let sums = pattern
        .sum(3)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
    let upper = pattern.i((0, 0, 0, 1)).unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(upper, 0.0);
}

#[test]
fn half_precision_weights_track_f32() {
    let reference = load("qwen2");
    let ids = reference
        .ids_tensor(&reference.to_tokens(PROMPT).unwrap())
        .unwrap();
    let exact = reference.run(&ids).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let opts = LoadOptions {
            dtype,
            ..LoadOptions::default()
        };
        let model = HookedModel::load(&fixture("qwen2"), &opts).unwrap();
        let logits = model.run(&ids).unwrap();
        assert_eq!(
            logits.dtype(),
            DType::F32,
            "logits are f32 whatever the weights"
        );
        let diff = max_abs_diff(&logits, &exact);
        // bf16 keeps 8 bits of mantissa: errors of a few hundredths, never a different model.
        assert!(
            diff > 0.0 && diff < 0.25,
            "{dtype:?}: logits differ by {diff}"
        );
    }
}

/// A model built over a `VarMap` (as training does) starts from fresh weights and every one of
/// them receives a gradient: nothing in the forward pass stops backpropagation.
#[test]
fn models_built_over_a_varmap_train_every_weight() {
    for name in ["gpt2", "pythia", "llama", "qwen2"] {
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("config.json")).unwrap(),
        )
        .unwrap();
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = HookedModel::from_config(&config, vb).unwrap();
        let ids = Tensor::new(&[[1u32, 5, 9, 2, 7]], &Device::Cpu).unwrap();
        let logits = model.run(&ids).unwrap();
        let loss = logits.sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        let vars = varmap.all_vars();
        assert!(!vars.is_empty());
        for var in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: a weight gets no gradient"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{name}: zero or non-finite gradient"
            );
        }
    }
}

#[test]
fn sequences_longer_than_learned_positions_are_an_error_not_a_panic() {
    let model = load("gpt2"); // 128 learned positions
    let ids: Vec<u32> = (0..130).map(|i| i % 300).collect();
    let err = model.run(&model.ids_tensor(&ids).unwrap()).unwrap_err();
    assert!(err.to_string().contains("128"), "{err}");
}

/// Weights read in place from the memory map give the very bits of weights copied out of it:
/// the logits, and the gradient that flows through them back to a hook.
#[test]
fn weights_read_in_place_compute_what_copied_weights_compute() {
    for name in ["gpt2", "llama", "qwen2"] {
        let dir = fixture(name);
        let mapped = load(name);
        // Built over the backend directly, nothing is offered in place: every weight is copied.
        let ck = glassbox_formats::Checkpoint::open(&dir).unwrap();
        let config = ck.config.clone().unwrap();
        let tokenizer = ck
            .tokenizer_path
            .as_ref()
            .map(|p| glassbox_models::Tokenizer::from_file(p).unwrap());
        let copied = HookedModel::from_backend(
            config,
            Box::new(glassbox_models::CheckpointBackend::new(ck)),
            tokenizer,
            &dir,
            &LoadOptions::default(),
        )
        .unwrap();
        let ids = mapped
            .ids_tensor(&mapped.to_tokens(PROMPT).unwrap())
            .unwrap();
        let hook = "blocks.0.hook_resid_mid";
        let run = |model: &HookedModel| -> (Vec<f32>, Vec<f32>) {
            let (_, cache) = model
                .run_with_cache(&ids, &NameFilter::new(&[hook]).unwrap())
                .unwrap();
            let var = Var::from_tensor(&cache[hook]).unwrap();
            let mut hooks = Hooks::none();
            let r = var.as_tensor().clone();
            hooks.add_fn(NameFilter::new(&[hook]).unwrap(), move |_, _| {
                Ok(Some(r.clone()))
            });
            let logits = model.run_with_hooks(&ids, &mut hooks).unwrap();
            let grads = logits
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .backward()
                .unwrap();
            let grad = grads
                .get(var.as_tensor())
                .expect("gradient reaches the hook");
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (flat(&logits), flat(grad))
        };
        let (logits_m, grad_m) = run(&mapped);
        let (logits_c, grad_c) = run(&copied);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&logits_m), bits(&logits_c), "{name}: logits");
        assert_eq!(bits(&grad_m), bits(&grad_c), "{name}: gradient");
        assert!(grad_m.iter().any(|g| *g != 0.0), "{name}: zero gradient");
    }
}

/// `run_last` unembeds only the last position: the same logits as `run`'s last position
/// (within a one-row product's rounding), for every row of a batch.
#[test]
fn run_last_is_the_last_position_of_run() {
    for name in ["gpt2", "llama", "qwen2"] {
        let model = load(name);
        let a = model.to_tokens(PROMPT).unwrap();
        let b: Vec<u32> = a.iter().rev().cloned().collect();
        let ids = Tensor::new(vec![a.clone(), b], &Device::Cpu).unwrap();
        let full = model.run(&ids).unwrap();
        let last = model.run_last(&ids).unwrap();
        let n = a.len();
        assert_eq!(last.dims(), &[2, model.info().d_vocab], "{name}");
        let expected = full.narrow(1, n - 1, 1).unwrap().squeeze(1).unwrap();
        let diff = max_abs_diff(&last, &expected);
        assert!(diff < 1e-4, "{name}: run_last differs by {diff}");
    }
}

/// Attention's one-pass scale, mask and softmax (taken when no hook reads the scores) gives
/// the bits of the step-by-step path a hook on `hook_attn_scores` takes — logits and the
/// gradient reaching the embeddings — on learned positions, rotary attention with grouped
/// queries, and a parallel residual.
#[test]
fn fused_attention_softmax_equals_the_hooked_steps() {
    for name in ["gpt2", "llama", "qwen2", "pythia"] {
        let model = load(name);
        let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
        let run = |watch: bool| {
            let leaf = Var::zeros(
                (1, ids.dim(1).unwrap(), model.info().d_model),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
            let mut hooks = if watch {
                Hooks::caching(NameFilter::new(&["blocks.*.attn.hook_attn_scores"]).unwrap())
            } else {
                Hooks::none()
            };
            hooks.add_fn(NameFilter::new(&["hook_embed"]).unwrap(), |_, t| {
                Ok(Some((t + leaf.as_tensor())?))
            });
            let logits = model.run_with_hooks(&ids, &mut hooks).unwrap();
            let grads = logits.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let g = grads
                .get(leaf.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let l = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (
                l.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            )
        };
        let (fused, stepwise) = (run(false), run(true));
        assert!(fused.0 == stepwise.0, "{name}: logits");
        assert!(fused.1 == stepwise.1, "{name}: gradients");
    }
}

/// The families of this crate's own fixture set (`tests/fixtures/more`, made by transformers):
/// decoding with a KV cache gives the full pass's logits, and a model built over a `VarMap`
/// from the same config sends a gradient to every weight.
#[test]
fn every_added_family_decodes_incrementally_and_trains_every_weight() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/more");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    let names: Vec<&String> = manifest["models"].as_object().unwrap().keys().collect();
    assert!(names.iter().any(|n| *n == "nemotron"));
    for name in names {
        let dir = root.join(name);
        let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
        let ids = model.to_tokens(PROMPT).unwrap();
        let full = model.run(&model.ids_tensor(&ids).unwrap()).unwrap();
        let mut kv = KvCache::new(model.info().n_layers);
        let mut hooks = Hooks::none();
        let mut parts = Vec::new();
        // a prompt, then one token at a time
        for chunk in std::iter::once(&ids[..5]).chain(ids[5..].chunks(1)) {
            let ids = model.ids_tensor(chunk).unwrap();
            parts.push(
                model
                    .model
                    .forward(&ids, None, &mut hooks, Some(&mut kv))
                    .unwrap(),
            );
        }
        let joined = Tensor::cat(&parts, 1).unwrap();
        let diff = max_abs_diff(&joined, &full);
        assert!(diff < 1e-4, "{name}: decoding differs by {diff}");

        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = HookedModel::from_config(&config, vb).unwrap();
        let logits = model
            .run(&Tensor::new(&[[1u32, 5, 9, 2, 7]], &Device::Cpu).unwrap())
            .unwrap();
        let grads = logits
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .backward()
            .unwrap();
        // An expert no token was routed to takes no part, and gets no gradient; every other
        // weight must get one, and so must some expert of every layer.
        let data = varmap.data().lock().unwrap();
        let mut experts_reached = std::collections::BTreeMap::<String, bool>::new();
        for (weight, var) in data.iter() {
            let norm = grads.get(var.as_tensor()).map(|g| {
                g.sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            });
            if let Some(at) = weight.find(".experts.") {
                let reached = experts_reached.entry(weight[..at].to_string()).or_default();
                *reached |= norm.is_some_and(|n| n > 0.0 && n.is_finite());
                continue;
            }
            let norm = norm.unwrap_or_else(|| panic!("{name}: {weight} gets no gradient"));
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{name}: {weight}: zero or non-finite gradient"
            );
        }
        for (layer, reached) in experts_reached {
            assert!(reached, "{name}: no expert of {layer} gets a gradient");
        }
    }
}

/// A Mamba chunk longer than the prompt is the prompt: a config's chunk size sizes no
/// allocation beyond it (a chunk of 10⁹ once asked for a 10¹⁸-element mask; the largest
/// count a config may now give, 2²⁸, would ask for 2⁵⁶), and the result is the same
/// computation.
#[test]
fn a_mamba_chunk_longer_than_the_prompt_is_the_prompt() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/more/nemotron-h");
    let dir = std::env::temp_dir().join(format!("glassbox-long-chunk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["chunk_size"] = serde_json::json!(glassbox_formats::hf_config::MAX_COUNT);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let run = |d: &Path| {
        let model = HookedModel::load(d, &LoadOptions::default()).unwrap();
        let ids = model.to_tokens(PROMPT).unwrap();
        model.run(&model.ids_tensor(&ids).unwrap()).unwrap()
    };
    let diff = max_abs_diff(&run(&src), &run(&dir));
    std::fs::remove_dir_all(&dir).ok();
    assert!(diff < 1e-4, "logits differ by {diff}");
}

/// `Hooks::stop_after` ends a pass after a point: what was cached up to it is the full pass's,
/// and no later point runs (TransformerLens' `stop_at_layer`).
#[test]
fn a_pass_can_stop_after_a_point() {
    use glassbox_models::{Hooks, NameFilter};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/gpt2");
    let model =
        glassbox_models::HookedModel::load(&dir, &glassbox_models::LoadOptions::default()).unwrap();
    let ids = model
        .ids_tensor(&model.to_tokens("The Eiffel Tower is in Paris.").unwrap())
        .unwrap();
    let (_, full) = model.run_with_cache(&ids, &NameFilter::all()).unwrap();
    let mut hooks = Hooks::caching(NameFilter::all());
    hooks.stop_after("blocks.0.hook_resid_post");
    model.run_until(&ids, &mut hooks).unwrap();
    assert!(hooks.stopped());
    let names: Vec<&str> = hooks.cache.names().collect();
    assert_eq!(names.last(), Some(&"blocks.0.hook_resid_post"));
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("blocks.1") || n.starts_with("ln_final")),
        "{names:?}"
    );
    for n in &names {
        let d = (&hooks.cache[*n] - &full[*n])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0, "{n}");
    }
    // A real error still is one.
    let mut hooks = Hooks::none();
    hooks.stop_after("blocks.0.hook_resid_post");
    assert!(model
        .run_until(&model.ids_tensor(&[100_000]).unwrap(), &mut hooks)
        .is_err());
}

/// A pass started at block L from the residual stream a full pass had there gives the full
/// pass's logits and the activations from L on, bit for bit (TransformerLens'
/// `start_at_layer`), on every parity and family fixture; at L = n_layers it is the final norm
/// and unembedding alone. Models whose layers carry other state (Mamba, linear attention) say
/// they cannot.
#[test]
fn a_pass_started_at_a_layer_continues_the_full_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let more = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/more");
    let mut dirs: Vec<PathBuf> = [
        "parity/gpt2",
        "parity/llama",
        "parity/pythia",
        "parity/qwen2",
    ]
    .iter()
    .chain(&["families/deepseek-v3", "families/glm4", "families/mixtral"])
    .map(|d| root.join(d))
    .collect();
    dirs.extend(
        std::fs::read_dir(&more)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("config.json").exists()),
    );
    dirs.sort();
    let (mut started_midway, mut refused) = (0, 0);
    for dir in dirs {
        let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
        let n = model.info().n_layers;
        let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
        let (logits, full) = model.run_with_cache(&ids, &NameFilter::all()).unwrap();
        let first = full["blocks.0.hook_resid_pre"].clone();
        if !model.model.starts_midway() {
            let err = model
                .run_from_layer(&first, 1, &mut Hooks::none())
                .unwrap_err();
            assert!(
                err.to_string().contains("cannot start a pass midway"),
                "{err}"
            );
            refused += 1;
            continue;
        }
        for layer in [0, n / 2, n] {
            let resid = if layer == n {
                full[&format!("blocks.{}.hook_resid_post", n - 1)].clone()
            } else {
                full[&format!("blocks.{layer}.hook_resid_pre")].clone()
            };
            let mut hooks = Hooks::caching(NameFilter::all());
            let started = model.run_from_layer(&resid, layer, &mut hooks).unwrap();
            let what = format!("{} from layer {layer}", dir.display());
            assert_eq!(max_abs_diff(&started, &logits), 0.0, "{what}: logits");
            let names: Vec<&str> = hooks.cache.names().collect();
            assert!(
                names.contains(&"logits") || names.iter().any(|n| n.starts_with("ln_final")),
                "{what}: {names:?}"
            );
            for name in names {
                let before = name
                    .strip_prefix("blocks.")
                    .and_then(|r| r.split('.').next()?.parse::<usize>().ok())
                    .is_some_and(|l| l < layer);
                assert!(!before && !name.starts_with("hook_"), "{what}: {name} ran");
                assert_eq!(
                    max_abs_diff(&hooks.cache[name], &full[name]),
                    0.0,
                    "{what}: {name}"
                );
            }
        }
        let bad =
            Tensor::zeros((1, 3, model.info().d_model + 1), DType::F32, &Device::Cpu).unwrap();
        let err = model
            .run_from_layer(&bad, 0, &mut Hooks::none())
            .unwrap_err();
        assert!(
            matches!(err, ModelError::Input(_)) && err.to_string().contains("d_model"),
            "{err}"
        );
        let err = model
            .run_from_layer(&first, n + 1, &mut Hooks::none())
            .unwrap_err();
        assert!(err.to_string().contains("layers"), "{err}");
        started_midway += 1;
    }
    assert!(
        started_midway >= 20 && refused >= 2,
        "{started_midway} started midway, {refused} refused"
    );
}
