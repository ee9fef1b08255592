//! Mixture-of-experts routing hooks on the family fixtures (DeepSeek-V3-style and Mixtral):
//! shapes, the recombination identity, and that every routing hook is writable.

use candle_core::{DType, Tensor, D};
use glassbox_models::moe::{expert_contribution, expert_weight, EXPERT_HOOKS};
use glassbox_models::{
    ActivationCache, HookedModel, Hooks, Intervention, LoadOptions, NameFilter, Selection,
};

#[path = "support/compare.rs"]
mod compare;
#[path = "support/fixtures.rs"]
mod fixtures;
use compare::max_abs_diff;
use fixtures::fixture;

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

/// A family fixture and what its MoE layers look like.
struct Case {
    dir: &'static str,
    moe_layers: &'static [usize],
    n_experts: usize,
    top_k: usize,
    has_shared: bool,
    /// Each token's weights sum to this (renormalised, times the routed scaling factor).
    weight_sum: f32,
}

const CASES: &[Case] = &[
    Case {
        dir: "families/deepseek-v3",
        moe_layers: &[1, 2],
        n_experts: 8,
        top_k: 2,
        has_shared: true,
        weight_sum: 2.5,
    },
    Case {
        dir: "families/mixtral",
        moe_layers: &[0, 1],
        n_experts: 4,
        top_k: 2,
        has_shared: false,
        weight_sum: 1.0,
    },
];

fn load(case: &Case) -> (HookedModel, Tensor) {
    let model = HookedModel::load(&fixture(case.dir), &LoadOptions::default()).unwrap();
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    (model, ids)
}

fn run_cached(model: &HookedModel, ids: &Tensor, hooks: &mut Hooks) -> (Tensor, ActivationCache) {
    let mut patterns: Vec<&str> = EXPERT_HOOKS.to_vec();
    patterns.extend(["blocks.*.hook_mlp_out", "blocks.*.mlp.hook_router_logits"]);
    hooks.set_cache_filter(Some(NameFilter::new(&patterns).unwrap()));
    let logits = model.run_with_hooks(ids, hooks).unwrap();
    (logits, hooks.take_cache())
}

fn indices(cache: &ActivationCache, layer: usize) -> Vec<Vec<u32>> {
    let t = &cache[format!("blocks.{layer}.mlp.hook_expert_indices").as_str()];
    t.to_dtype(DType::U32)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<u32>()
        .unwrap()
}

/// Checks routing-hook shapes and weight sums, and that the experts' weighted outputs plus
/// the shared experts recombine into `hook_mlp_out`.
fn check_routing(case: &Case) {
    let (model, ids) = load(case);
    let t = ids.dim(1).unwrap();
    let (_, cache) = run_cached(&model, &ids, &mut Hooks::none());
    for &l in case.moe_layers {
        let logits = &cache[format!("blocks.{l}.mlp.hook_router_logits").as_str()];
        assert_eq!(logits.dims(), &[1, t, case.n_experts], "{}", case.dir);
        let w = &cache[format!("blocks.{l}.mlp.hook_expert_weights").as_str()];
        assert_eq!(w.dims(), &[1, t, case.top_k]);
        let sums = w
            .sum(D::Minus1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            sums.iter().all(|s| (s - case.weight_sum).abs() < 1e-5),
            "{}: weight sums {sums:?}",
            case.dir
        );
        for row in indices(&cache, l) {
            assert_eq!(row.len(), case.top_k);
            assert!(row[0] != row[1] && row.iter().all(|&e| (e as usize) < case.n_experts));
        }
        let mut total = match cache.get(&format!("blocks.{l}.mlp.shared_experts.hook_out")) {
            Some(s) => s.clone(),
            None => {
                assert!(!case.has_shared, "{}: shared experts not hooked", case.dir);
                Tensor::zeros((1, t, model.info().d_model), DType::F32, model.device()).unwrap()
            }
        };
        for e in 0..case.n_experts {
            total = (total + expert_contribution(&cache, l, e).unwrap()).unwrap();
        }
        let mlp_out = &cache[format!("blocks.{l}.hook_mlp_out").as_str()];
        let err = max_abs_diff(&total, mlp_out);
        assert!(
            err < 1e-5,
            "{} layer {l}: recombined experts differ from hook_mlp_out by {err}",
            case.dir
        );
    }
}

#[test]
fn routing_hooks_recombine_into_mlp_out() {
    for case in CASES {
        check_routing(case);
    }
}

/// Zeroing one expert's output removes exactly its contribution from `hook_mlp_out`.
fn check_expert_ablation(case: &Case) {
    let (model, ids) = load(case);
    let (clean_logits, clean) = run_cached(&model, &ids, &mut Hooks::none());
    let l = *case.moe_layers.last().unwrap();
    let e = indices(&clean, l)[0][0] as usize;
    let mut hooks = Hooks::none();
    hooks.intervene(
        NameFilter::new(&[format!("blocks.{l}.mlp.experts.{e}.hook_out")]).unwrap(),
        Intervention::Zero,
        Selection::All,
    );
    let (logits, ablated) = run_cached(&model, &ids, &mut hooks);
    let key = format!("blocks.{l}.hook_mlp_out");
    let expected = (&clean[key.as_str()] - expert_contribution(&clean, l, e).unwrap()).unwrap();
    let err = max_abs_diff(&ablated[key.as_str()], &expected);
    assert!(
        err < 1e-5,
        "{}: ablating expert {e} of layer {l} is off by {err}",
        case.dir
    );
    assert!(
        max_abs_diff(&logits, &clean_logits) > 1e-3,
        "{}: ablation changed nothing",
        case.dir
    );
    // Its cached output is what the model saw: zeros.
    let seen = &ablated[format!("blocks.{l}.mlp.experts.{e}.hook_out").as_str()];
    assert_eq!(
        seen.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
}

#[test]
fn zeroing_an_expert_removes_its_contribution() {
    for case in CASES {
        check_expert_ablation(case);
    }
}

/// Rewriting `hook_expert_indices` forces the routing: only the forced experts run, with the
/// weights the router gives them.
fn check_forced_routing(case: &Case) {
    let (model, ids) = load(case);
    let l = case.moe_layers[0];
    let forced: Vec<u32> = (0..case.top_k as u32).collect();
    let t = ids.dim(1).unwrap();
    let replacement = Tensor::new(forced.as_slice(), model.device())
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap();
    let mut hooks = Hooks::none();
    hooks.intervene(
        NameFilter::new(&[format!("blocks.{l}.mlp.hook_expert_indices")]).unwrap(),
        Intervention::Replace(replacement),
        Selection::All,
    );
    let (_, cache) = run_cached(&model, &ids, &mut hooks);
    for row in indices(&cache, l) {
        assert_eq!(row, forced);
    }
    for e in 0..case.n_experts {
        let ran = cache.contains(&format!("blocks.{l}.mlp.experts.{e}.hook_out"));
        assert_eq!(ran, e < case.top_k, "{}: expert {e} ran={ran}", case.dir);
    }
    let w = expert_weight(&cache, l, 0).unwrap();
    assert_eq!(w.dims(), &[1, t]);
    let sums = cache[format!("blocks.{l}.mlp.hook_expert_weights").as_str()]
        .sum(D::Minus1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(sums.iter().all(|s| (s - case.weight_sum).abs() < 1e-5));
    // An index naming no expert is an error, not a panic.
    let mut bad = Hooks::none();
    let out_of_range = Tensor::new(&[case.n_experts as u32], model.device()).unwrap();
    bad.intervene(
        NameFilter::new(&[format!("blocks.{l}.mlp.hook_expert_indices")]).unwrap(),
        Intervention::Replace(out_of_range),
        Selection::All,
    );
    assert!(model.run_with_hooks(&ids, &mut bad).is_err());
}

#[test]
fn rewriting_indices_forces_the_routing() {
    for case in CASES {
        check_forced_routing(case);
    }
}

/// Scaling the router weights by 0 leaves only the shared experts.
#[test]
fn zero_weights_leave_only_shared_experts() {
    let case = &CASES[0];
    let (model, ids) = load(case);
    let l = case.moe_layers[0];
    let mut hooks = Hooks::none();
    hooks.intervene(
        NameFilter::new(&[format!("blocks.{l}.mlp.hook_expert_weights")]).unwrap(),
        Intervention::Zero,
        Selection::All,
    );
    let (_, cache) = run_cached(&model, &ids, &mut hooks);
    let shared = &cache[format!("blocks.{l}.mlp.shared_experts.hook_out").as_str()];
    let err = max_abs_diff(&cache[format!("blocks.{l}.hook_mlp_out").as_str()], shared);
    assert!(
        err < 1e-6,
        "mlp_out differs from the shared experts by {err}"
    );
}

/// The latent-attention hooks exist with their documented shapes.
#[test]
fn latent_attention_hooks() {
    let case = &CASES[0];
    let (model, ids) = load(case);
    let t = ids.dim(1).unwrap();
    let filter = NameFilter::new(&["blocks.0.attn.*"]).unwrap();
    let (_, cache) = model.run_with_cache(&ids, &filter).unwrap();
    let shape = |name: &str| {
        cache[format!("blocks.0.attn.{name}").as_str()]
            .dims()
            .to_vec()
    };
    assert_eq!(shape("hook_q_latent"), [1, t, 48]);
    assert_eq!(shape("hook_kv_latent"), [1, t, 32]);
    assert_eq!(shape("hook_q"), [1, t, 4, 24]);
    assert_eq!(shape("hook_rot_k"), [1, t, 4, 24]);
    assert_eq!(shape("hook_v"), [1, t, 4, 16]);
    assert_eq!(shape("hook_z"), [1, t, 4, 16]);
    assert_eq!(shape("hook_pattern"), [1, 4, t, t]);
    assert_eq!(model.model.w_o(0).unwrap().dims(), &[4, 16, 64]);
}

/// A model with fresh random weights built from `config` (no checkpoint needed).
fn random_model(config: serde_json::Value) -> HookedModel {
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &candle_core::Device::Cpu);
    HookedModel::from_config(&config, vb).unwrap()
}

fn tiny_config(arch: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({
        "architectures": [arch],
        "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "rms_norm_eps": 1e-6,
        "max_position_embeddings": 64, "rope_theta": 10000.0, "tie_word_embeddings": false
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

/// The softmax of each token's router logits gathered at its chosen experts, computed here
/// from the cached logits, as the reference routers do (Mixtral, Qwen-MoE, DeepSeek-V2).
fn softmax_at_choice(cache: &ActivationCache, layer: usize) -> Vec<Vec<f32>> {
    let logits = cache[format!("blocks.{layer}.mlp.hook_router_logits").as_str()]
        .squeeze(0)
        .unwrap();
    let probs = candle_nn::ops::softmax_last_dim(&logits)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    indices(cache, layer)
        .iter()
        .zip(&probs)
        .map(|(row, p)| row.iter().map(|&e| p[e as usize]).collect())
        .collect()
}

fn weights_of(cache: &ActivationCache, layer: usize) -> Vec<Vec<f32>> {
    cache[format!("blocks.{layer}.mlp.hook_expert_weights").as_str()]
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() < 1e-6, "{what}: {a:?} vs {b:?}");
    }
}

/// Qwen3-MoE: sparse layers follow `decoder_sparse_step` and `mlp_only_layers`; weights are
/// the softmax probabilities of the chosen experts, renormalised only with `norm_topk_prob`.
#[test]
fn qwen3_moe_routes_as_configured() {
    for norm in [false, true] {
        let config = tiny_config(
            "Qwen3MoeForCausalLM",
            serde_json::json!({"num_experts": 6, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                               "decoder_sparse_step": 1, "mlp_only_layers": [1], "norm_topk_prob": norm}),
        );
        let model = random_model(config);
        let ids = model.ids_tensor(&[1, 5, 9, 3, 7]).unwrap();
        let filter = NameFilter::new(&[
            "blocks.*.mlp.*",
            "blocks.*.hook_mlp_out",
            "blocks.*.attn.hook_q",
        ])
        .unwrap();
        let (_, cache) = model.run_with_cache(&ids, &filter).unwrap();
        assert!(
            cache.contains("blocks.1.mlp.hook_pre"),
            "layer 1 is dense (mlp_only_layers)"
        );
        assert!(!cache.contains("blocks.1.mlp.hook_router_logits"));
        for layer in [0, 2] {
            let expected: Vec<Vec<f32>> = softmax_at_choice(&cache, layer)
                .into_iter()
                .map(|p| {
                    let s: f32 = if norm { p.iter().sum() } else { 1.0 };
                    p.iter().map(|v| v / s).collect()
                })
                .collect();
            assert_close(&weights_of(&cache, layer), &expected, "qwen3-moe weights");
            let mut total = Tensor::zeros((1, 5, 32), DType::F32, model.device()).unwrap();
            for e in 0..6 {
                total = (total + expert_contribution(&cache, layer, e).unwrap()).unwrap();
            }
            assert!(
                max_abs_diff(
                    &total,
                    &cache[format!("blocks.{layer}.hook_mlp_out").as_str()]
                ) < 1e-6
            );
        }
        // Qwen 3 attention: q has head_dim 8 per head.
        assert_eq!(cache["blocks.0.attn.hook_q"].dims(), &[1, 5, 4, 8]);
    }
}

/// DeepSeek-V2: softmax routing limited to the group with the best expert, weights scaled by
/// `routed_scaling_factor` and not renormalised; latent attention without a q LoRA.
#[test]
fn deepseek_v2_routes_within_the_best_group() {
    let config = tiny_config(
        "DeepseekV2ForCausalLM",
        serde_json::json!({"n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
            "n_shared_experts": 2, "first_k_dense_replace": 1, "topk_method": "group_limited_greedy",
            "n_group": 4, "topk_group": 1, "routed_scaling_factor": 2.0, "kv_lora_rank": 16,
            "q_lora_rank": null, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 6,
            "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                             "mscale": 0.707, "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1}}),
    );
    let model = random_model(config);
    let ids = model.ids_tensor(&[3, 1, 4, 1, 5, 9, 2, 6]).unwrap();
    let filter =
        NameFilter::new(&["blocks.*.mlp.*", "blocks.*.hook_mlp_out", "blocks.*.attn.*"]).unwrap();
    let (logits, cache) = model.run_with_cache(&ids, &filter).unwrap();
    assert!(logits
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite()));
    assert!(!cache.contains("blocks.0.attn.hook_q_latent"), "no q LoRA");
    assert_eq!(cache["blocks.0.attn.hook_kv_latent"].dims(), &[1, 8, 16]);
    assert_eq!(cache["blocks.0.attn.hook_z"].dims(), &[1, 8, 4, 6]);
    for layer in [1, 2] {
        let logits = cache[format!("blocks.{layer}.mlp.hook_router_logits").as_str()]
            .squeeze(0)
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&logits)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (row, p) in indices(&cache, layer).iter().zip(&probs) {
            let best = (0..8).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            // groups of 2: both choices in the best expert's group
            assert!(
                row.iter().all(|&e| e as usize / 2 == best / 2),
                "{row:?} vs best {best}"
            );
        }
        let expected: Vec<Vec<f32>> = softmax_at_choice(&cache, layer)
            .into_iter()
            .map(|p| p.iter().map(|v| v * 2.0).collect())
            .collect();
        assert_close(&weights_of(&cache, layer), &expected, "deepseek-v2 weights");
        assert!(cache.contains(&format!("blocks.{layer}.mlp.shared_experts.hook_out")));
    }
}

/// A config whose experts cannot be chosen as asked is a clear error, not a panic.
#[test]
fn impossible_routing_configs_are_rejected() {
    let config = tiny_config(
        "MixtralForCausalLM",
        serde_json::json!({"num_local_experts": 2, "num_experts_per_tok": 3}),
    );
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &candle_core::Device::Cpu);
    let err = HookedModel::from_config(&config, vb)
        .err()
        .expect("3 of 2 experts is refused");
    assert!(err.to_string().contains("experts per token"), "{err}");
}

/// Greedy decoding with the KV cache (latent attention included) picks the same tokens as
/// re-running the whole sequence each step, for every MoE/family fixture.
#[test]
fn kv_cache_decoding_matches_full_passes() {
    for rel in ["families/deepseek-v3", "families/mixtral", "families/glm4"] {
        let model = HookedModel::load(&fixture(rel), &LoadOptions::default()).unwrap();
        let prompt = model.to_tokens("The Eiffel Tower is in").unwrap();
        let opts = glassbox_models::GenerateOptions {
            max_new_tokens: 6,
            stop_at_eos: false,
            ..Default::default()
        };
        let cached = model
            .generate(&prompt, &opts, &mut Hooks::none(), |_| {})
            .unwrap();
        let mut seq = prompt.clone();
        for _ in 0..opts.max_new_tokens {
            let logits = model.run(&model.ids_tensor(&seq).unwrap()).unwrap();
            let last = logits.get(0).unwrap().get(seq.len() - 1).unwrap();
            seq.push(last.argmax(0).unwrap().to_scalar::<u32>().unwrap());
        }
        assert_eq!(cached, seq[prompt.len()..], "{rel}");
    }
}

/// Inside each routed expert, TransformerLens' MoE expert hooks (`experts.{e}.hook_gate`,
/// `hook_pre`, `hook_post`): dense [batch, pos, d_ff], zero at tokens not routed to the
/// expert, made only when watched (the pass's bits do not change), and live — what
/// `hook_post` holds is what the down projection reads. On every family with routed experts:
/// plain and clamped SwiGLU, ungated (Nemotron-H), inputs weighted before the expert (Llama 4).
#[test]
fn experts_have_inner_hooks() {
    let dirs = [
        "families/deepseek-v3",
        "families/mixtral",
        "more/olmoe",
        "more/gpt-oss",
        "more/llama4",
        "more/nemotron-h",
        "more/glm4-moe",
        "more/qwen3-next",
    ];
    let inner = [
        "blocks.*.mlp.experts.*.hook_gate",
        "blocks.*.mlp.experts.*.hook_pre",
        "blocks.*.mlp.experts.*.hook_post",
        "blocks.*.mlp.experts.*.hook_out",
        "blocks.*.mlp.hook_expert_indices",
    ];
    for dir in dirs {
        let model = HookedModel::load(&fixture(dir), &LoadOptions::default()).unwrap();
        let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
        let t = ids.dim(1).unwrap();
        let outs = NameFilter::new(&["blocks.*.mlp.experts.*.hook_out"]).unwrap();
        let (plain_logits, plain) = model.run_with_cache(&ids, &outs).unwrap();
        let (logits, cache) = model
            .run_with_cache(&ids, &NameFilter::new(&inner).unwrap())
            .unwrap();
        assert_eq!(
            max_abs_diff(&logits, &plain_logits),
            0.0,
            "{dir}: watching changed the pass"
        );
        let mut checked = 0;
        for name in plain.names() {
            assert_eq!(
                max_abs_diff(&cache[name], &plain[name]),
                0.0,
                "{dir}: {name}"
            );
            let prefix = name.strip_suffix("hook_out").unwrap();
            let layer: usize = name.split('.').nth(1).unwrap().parse().unwrap();
            let expert: u32 = prefix
                .trim_end_matches('.')
                .rsplit('.')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let routed: Vec<bool> = indices(&cache, layer)
                .iter()
                .map(|k| k.contains(&expert))
                .collect();
            let post = &cache[format!("{prefix}hook_post").as_str()];
            let pre = &cache[format!("{prefix}hook_pre").as_str()];
            let (_, rows, d_ff) = post.dims3().unwrap();
            assert_eq!((rows, pre.dims()), (t, post.dims()), "{dir}: {name}");
            assert!(d_ff > 0);
            for (pos, &on) in routed.iter().enumerate() {
                let row = post.get(0).unwrap().get(pos).unwrap().abs().unwrap();
                let peak = row.max_all().unwrap().to_scalar::<f32>().unwrap();
                assert_eq!(
                    peak > 0.0,
                    on,
                    "{dir}: {prefix}hook_post at {pos} (routed {on})"
                );
            }
            checked += 1;
            if checked > 2 {
                continue;
            }
            // Zeroing hook_post leaves the down projection only its bias: every routed row
            // of hook_out is the same.
            let mut hooks = Hooks::caching(NameFilter::new(&[name]).unwrap());
            hooks.intervene(
                NameFilter::new(&[format!("{prefix}hook_post")]).unwrap(),
                Intervention::Zero,
                Selection::All,
            );
            let zeroed = model.run_with_hooks(&ids, &mut hooks).unwrap();
            assert!(
                max_abs_diff(&zeroed, &logits) > 1e-6,
                "{dir}: {prefix}hook_post is not read"
            );
            let out = hooks.cache[name].get(0).unwrap();
            let first = routed.iter().position(|&r| r).unwrap();
            for (pos, _) in routed.iter().enumerate().filter(|(_, &r)| r) {
                let d = max_abs_diff(&out.get(pos).unwrap(), &out.get(first).unwrap());
                assert_eq!(d, 0.0, "{dir}: {name} at {pos} after zeroing hook_post");
            }
        }
        assert!(checked > 0, "{dir}: no expert ran");
    }
}
