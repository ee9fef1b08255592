//! GLM-4 and DeepSeek-V3 from GGUF: the `families/glm4` and `families/deepseek-v3` fixtures,
//! written as llama.cpp's `convert_hf_to_gguf.py` writes them (`glm4` / `deepseek2`
//! architectures), reproduce transformers' logits and the safetensors run's hooks (routing
//! included).
//!
//! The layout below is this test's own reading of the converter, independent of the
//! library's name table:
//! - glm4: no Q/K permutation (its rope already rotates adjacent pairs, as llama.cpp's);
//!   `gate_up_proj` stays fused as `ffn_up`; the sandwich norms are `post_attention_norm` /
//!   `post_ffw_norm`; `rope.dimension_count = head_dim × partial_rotary_factor`.
//! - deepseek2: `head_count_kv = 1` and `key_length = kv_lora_rank + rope`, `value_length =
//!   kv_lora_rank` (MLA stored as MQA over the latent), per-head sizes in `*_length_mla`;
//!   `kv_b_proj` split per head into `attn_k_b` (transposed) and `attn_v_b` by newer
//!   converters, kept whole as `attn_kv_b` by older ones; experts stacked into
//!   `ffn_*_exps`; `e_score_correction_bias` as `exp_probs_b.bias`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use glassbox_formats::{Checkpoint, GgufValue, GgufWriter};
use glassbox_models::moe::ROUTING_HOOKS;
use glassbox_models::{HookedModel, LoadOptions, NameFilter};
use serde_json::Value;

#[path = "support/compare.rs"]
mod compare;
#[path = "support/fixtures.rs"]
mod fixtures;
use compare::values;
use fixtures::fixture;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("glassbox-{name}-{}.gguf", std::process::id()))
}

/// A fixture's config and tensors, and a GGUF being written from them.
struct Writer {
    config: Value,
    ck: Checkpoint,
    w: GgufWriter,
    arch: &'static str,
}

impl Writer {
    fn new(family: &str, arch: &'static str) -> Self {
        let dir = fixture(&format!("families/{family}"));
        let config =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let mut w = GgufWriter::new();
        w.set("general.architecture", GgufValue::String(arch.into()));
        Writer {
            config,
            ck: Checkpoint::open(&dir).unwrap(),
            w,
            arch,
        }
    }

    fn n(&self, key: &str) -> u32 {
        self.config[key].as_u64().unwrap() as u32
    }

    fn f(&self, key: &str) -> f64 {
        self.config[key].as_f64().unwrap()
    }

    fn meta(&mut self, key: &str, value: GgufValue) {
        self.w.set(&format!("{}.{key}", self.arch), value);
    }

    fn hub(&self, name: &str) -> Tensor {
        self.ck.tensor_f32(name, &Device::Cpu).unwrap()
    }

    fn add(&mut self, gguf: &str, t: &Tensor) {
        self.w.add_f32(gguf, t.dims(), &values(t)).unwrap();
    }

    /// Copies Hub tensor `hub` to GGUF tensor `gguf` unchanged.
    fn copy(&mut self, gguf: &str, hub: &str) {
        let t = self.hub(hub);
        self.add(gguf, &t);
    }

    fn common(&mut self) {
        let layers = self.n("num_hidden_layers");
        for (key, value) in [
            ("block_count", layers),
            ("embedding_length", self.n("hidden_size")),
            ("feed_forward_length", self.n("intermediate_size")),
            ("context_length", self.n("max_position_embeddings")),
            ("attention.head_count", self.n("num_attention_heads")),
        ] {
            self.meta(key, GgufValue::U32(value));
        }
        let eps = self.f("rms_norm_eps") as f32;
        let theta = self.config["rope_parameters"]["rope_theta"]
            .as_f64()
            .unwrap() as f32;
        self.meta("attention.layer_norm_rms_epsilon", GgufValue::F32(eps));
        self.meta("rope.freq_base", GgufValue::F32(theta));
        self.copy("token_embd.weight", "model.embed_tokens.weight");
        self.copy("output_norm.weight", "model.norm.weight");
        self.copy("output.weight", "lm_head.weight");
    }

    fn write(self, out: &Path) {
        self.w.write(out).unwrap();
    }
}

fn write_glm4_gguf(out: &Path) {
    let mut g = Writer::new("glm4", "glm4");
    g.common();
    let head_dim = g.n("head_dim");
    let partial = g.config["rope_parameters"]["partial_rotary_factor"]
        .as_f64()
        .unwrap();
    g.meta(
        "attention.head_count_kv",
        GgufValue::U32(g.n("num_key_value_heads")),
    );
    g.meta("attention.key_length", GgufValue::U32(head_dim));
    g.meta("attention.value_length", GgufValue::U32(head_dim));
    g.meta(
        "rope.dimension_count",
        GgufValue::U32((head_dim as f64 * partial) as u32),
    );
    for i in 0..g.n("num_hidden_layers") {
        let hub = |part: &str| format!("model.layers.{i}.{part}");
        let blk = |part: &str| format!("blk.{i}.{part}");
        for (gguf, hub_part) in [
            ("attn_norm", "input_layernorm"),
            ("post_attention_norm", "post_self_attn_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
            ("post_ffw_norm", "post_mlp_layernorm"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_up", "mlp.gate_up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ] {
            g.copy(
                &blk(&format!("{gguf}.weight")),
                &hub(&format!("{hub_part}.weight")),
            );
        }
        for (gguf, hub_part) in [
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
        ] {
            for suffix in ["weight", "bias"] {
                g.copy(
                    &blk(&format!("{gguf}.{suffix}")),
                    &hub(&format!("{hub_part}.{suffix}")),
                );
            }
        }
    }
    g.write(out);
}

/// DeepSeek-V3 as `deepseek2`; `split_kv_b` chooses the newer converters' `attn_k_b` /
/// `attn_v_b` over the whole `attn_kv_b`.
fn write_deepseek_gguf(out: &Path, split_kv_b: bool) {
    let mut g = Writer::new("deepseek-v3", "deepseek2");
    g.common();
    let (heads, kv_lora, nope, rope, v_dim) = (
        g.n("num_attention_heads"),
        g.n("kv_lora_rank"),
        g.n("qk_nope_head_dim"),
        g.n("qk_rope_head_dim"),
        g.n("v_head_dim"),
    );
    for (key, value) in [
        ("attention.head_count_kv", 1),
        ("attention.q_lora_rank", g.n("q_lora_rank")),
        ("attention.kv_lora_rank", kv_lora),
        ("attention.key_length", kv_lora + rope),
        ("attention.value_length", kv_lora),
        ("attention.key_length_mla", nope + rope),
        ("attention.value_length_mla", v_dim),
        ("rope.dimension_count", rope),
        ("leading_dense_block_count", g.n("first_k_dense_replace")),
        ("expert_feed_forward_length", g.n("moe_intermediate_size")),
        ("expert_count", g.n("n_routed_experts")),
        ("expert_used_count", g.n("num_experts_per_tok")),
        ("expert_shared_count", g.n("n_shared_experts")),
        ("expert_group_count", g.n("n_group")),
        ("expert_group_used_count", g.n("topk_group")),
        // LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID: DeepSeek-V3's `scoring_func`.
        ("expert_gating_func", 2),
    ] {
        g.meta(key, GgufValue::U32(value));
    }
    let scale = g.f("routed_scaling_factor") as f32;
    g.meta("expert_weights_scale", GgufValue::F32(scale));
    let norm = g.config["norm_topk_prob"].as_bool().unwrap();
    g.meta("expert_weights_norm", GgufValue::Bool(norm));
    let experts = g.n("n_routed_experts");
    for i in 0..g.n("num_hidden_layers") {
        let hub = |part: &str| format!("model.layers.{i}.{part}.weight");
        let blk = |part: &str| format!("blk.{i}.{part}.weight");
        for (gguf, hub_part) in [
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
            ("attn_q_a", "self_attn.q_a_proj"),
            ("attn_q_a_norm", "self_attn.q_a_layernorm"),
            ("attn_q_b", "self_attn.q_b_proj"),
            ("attn_kv_a_mqa", "self_attn.kv_a_proj_with_mqa"),
            ("attn_kv_a_norm", "self_attn.kv_a_layernorm"),
            ("attn_output", "self_attn.o_proj"),
        ] {
            g.copy(&blk(gguf), &hub(hub_part));
        }
        let kv_b = g.hub(&hub("self_attn.kv_b_proj"));
        if split_kv_b {
            // [heads, nope + v, rank] split at nope; the key half is stored transposed.
            let per_head = kv_b
                .reshape((heads as usize, (nope + v_dim) as usize, kv_lora as usize))
                .unwrap();
            let k_b = per_head.narrow(1, 0, nope as usize).unwrap();
            let v_b = per_head.narrow(1, nope as usize, v_dim as usize).unwrap();
            g.add(
                &blk("attn_k_b"),
                &k_b.transpose(1, 2).unwrap().contiguous().unwrap(),
            );
            g.add(&blk("attn_v_b"), &v_b.contiguous().unwrap());
        } else {
            g.add(&blk("attn_kv_b"), &kv_b);
        }
        if i < g.n("first_k_dense_replace") {
            for (gguf, hub_part) in [
                ("ffn_gate", "mlp.gate_proj"),
                ("ffn_up", "mlp.up_proj"),
                ("ffn_down", "mlp.down_proj"),
            ] {
                g.copy(&blk(gguf), &hub(hub_part));
            }
            continue;
        }
        g.copy(&blk("ffn_gate_inp"), &hub("mlp.gate"));
        g.copy(
            &format!("blk.{i}.exp_probs_b.bias"),
            &format!("model.layers.{i}.mlp.gate.e_score_correction_bias"),
        );
        for (gguf, hub_part) in [
            ("ffn_gate_shexp", "mlp.shared_experts.gate_proj"),
            ("ffn_up_shexp", "mlp.shared_experts.up_proj"),
            ("ffn_down_shexp", "mlp.shared_experts.down_proj"),
        ] {
            g.copy(&blk(gguf), &hub(hub_part));
        }
        for (gguf, proj) in [
            ("ffn_gate_exps", "gate_proj"),
            ("ffn_up_exps", "up_proj"),
            ("ffn_down_exps", "down_proj"),
        ] {
            let stacked: Vec<Tensor> = (0..experts)
                .map(|e| g.hub(&hub(&format!("mlp.experts.{e}.{proj}"))))
                .collect();
            g.add(&blk(gguf), &Tensor::stack(&stacked, 0).unwrap());
        }
    }
    g.write(out);
}

/// The GGUF at `gguf` loads as `architecture`, matches the fixture's transformers logits
/// within 1e-4, and gives the safetensors run's logits and `hooks` exactly.
fn check(family: &str, gguf: &Path, architecture: &str, hooks: &[&str]) {
    let dir = fixture(&format!("families/{family}"));
    let from_gguf = HookedModel::load(gguf, &LoadOptions::default()).unwrap();
    let from_hub = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(from_gguf.info().architecture, architecture);
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let ids = expected["prompt1.input_ids"].to_dtype(DType::U32).unwrap();
    let filter = NameFilter::new(hooks).unwrap();
    let (logits, cache) = from_gguf.run_with_cache(&ids, &filter).unwrap();
    let (hub_logits, hub_cache) = from_hub.run_with_cache(&ids, &filter).unwrap();
    let err = (&logits - &expected["prompt1.logits"])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        err < 1e-4,
        "{family} GGUF logits differ from transformers by {err}"
    );
    assert_eq!(values(&logits), values(&hub_logits), "{family} logits");
    let names: Vec<&str> = hub_cache.names().collect();
    assert_eq!(
        cache.names().collect::<Vec<_>>(),
        names,
        "{family} hooks cached"
    );
    for pattern in hooks {
        let prefix = pattern.split('*').next().unwrap_or_default();
        let suffix = pattern.rsplit('*').next().unwrap_or_default();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(prefix) && n.ends_with(suffix)),
            "{family}: no `{pattern}` hook fired"
        );
    }
    for name in names {
        assert_eq!(
            values(&cache[name]),
            values(&hub_cache[name]),
            "{family} {name}"
        );
    }
    std::fs::remove_file(gguf).ok();
}

#[test]
fn glm4_gguf_matches_transformers_and_safetensors() {
    let path = temp("glm4");
    write_glm4_gguf(&path);
    check(
        "glm4",
        &path,
        "Glm4ForCausalLM",
        &[
            "blocks.*.attn.hook_rot_q",
            "blocks.*.attn.hook_rot_k",
            "blocks.*.hook_resid_post",
        ],
    );
}

#[test]
fn deepseek2_gguf_with_split_kv_b_matches_transformers_and_safetensors() {
    let path = temp("deepseek2-split");
    write_deepseek_gguf(&path, true);
    let mut hooks = ROUTING_HOOKS.to_vec();
    hooks.extend(["blocks.*.attn.hook_rot_q", "blocks.*.hook_resid_post"]);
    check("deepseek-v3", &path, "DeepseekV3ForCausalLM", &hooks);
}

#[test]
fn deepseek2_gguf_with_whole_kv_b_matches_transformers_and_safetensors() {
    let path = temp("deepseek2-whole");
    write_deepseek_gguf(&path, false);
    check(
        "deepseek-v3",
        &path,
        "DeepseekV3ForCausalLM",
        &ROUTING_HOOKS,
    );
}

/// A router gating function llama.cpp has but DeepSeek does not is refused by name.
#[test]
fn unknown_deepseek2_gating_is_refused() {
    let path = temp("deepseek2-gating");
    write_deepseek_gguf(&path, true);
    let ck = Checkpoint::open(&path).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in ck.gguf().unwrap().metadata() {
        w.set(k, v.clone());
    }
    w.set("deepseek2.expert_gating_func", GgufValue::U32(3));
    for info in ck.tensors() {
        let t = ck.tensor_f32(&info.name, &Device::Cpu).unwrap();
        w.add_f32(&info.name, &info.shape, &values(&t)).unwrap();
    }
    drop(ck);
    w.write(&path).unwrap();
    let err = HookedModel::load(&path, &LoadOptions::default())
        .err()
        .expect("gating function 3");
    assert!(
        err.is_invalid_input() && err.to_string().contains("expert_gating_func"),
        "{err}"
    );
    std::fs::remove_file(&path).ok();
}
