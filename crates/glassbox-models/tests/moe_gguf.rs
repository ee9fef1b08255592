//! Mixture-of-experts models from GGUF: the Mixtral fixture written in llama.cpp's layout
//! (`llama` architecture with `expert_count`, Q/K rows permuted, experts stacked into
//! `ffn_{gate,up,down}_exps`) runs through the same code and matches the safetensors model,
//! routing hooks included.

use candle_core::{DType, Device, Tensor};
use glassbox_formats::{Checkpoint, GgufValue, GgufWriter};
use glassbox_models::moe::ROUTING_HOOKS;
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

#[path = "support/mixtral_gguf.rs"]
mod mixtral_gguf;
use mixtral_gguf::write_mixtral_gguf;

#[path = "support/compare.rs"]
mod compare;
#[path = "support/fixtures.rs"]
mod fixtures;
use compare::values;
use fixtures::fixture;

#[test]
fn mixtral_gguf_matches_safetensors() {
    let tmp = std::env::temp_dir().join(format!("glassbox-moe-gguf-{}.gguf", std::process::id()));
    write_mixtral_gguf(&tmp);
    let gguf = HookedModel::load(&tmp, &LoadOptions::default()).unwrap();
    let hub = HookedModel::load(&fixture("families/mixtral"), &LoadOptions::default()).unwrap();
    assert_eq!(gguf.info().architecture, "MixtralForCausalLM");
    let expected = candle_core::safetensors::load(
        fixture("families/mixtral/expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let ids = expected["prompt1.input_ids"].to_dtype(DType::U32).unwrap();
    let filter = NameFilter::new(&ROUTING_HOOKS).unwrap();
    let (logits, cache) = gguf.run_with_cache(&ids, &filter).unwrap();
    let (hub_logits, hub_cache) = hub.run_with_cache(&ids, &filter).unwrap();
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
        "GGUF Mixtral logits differ from transformers by {err}"
    );
    assert_eq!(values(&logits), values(&hub_logits));
    for name in [
        "blocks.0.mlp.hook_expert_indices",
        "blocks.1.mlp.hook_expert_weights",
    ] {
        assert_eq!(values(&cache[name]), values(&hub_cache[name]), "{name}");
    }
    std::fs::remove_file(&tmp).ok();
}

/// A stacked expert tensor that does not split into whole experts is a clear error.
#[test]
fn malformed_stacked_experts_are_refused() {
    let tmp =
        std::env::temp_dir().join(format!("glassbox-moe-gguf-bad-{}.gguf", std::process::id()));
    write_mixtral_gguf(&tmp);
    // Claim more experts than the stacked tensors hold.
    let ck = Checkpoint::open(&tmp).unwrap();
    let gguf = ck.gguf().unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in gguf.metadata() {
        w.set(k, v.clone());
    }
    w.set("llama.expert_count", GgufValue::U32(8));
    for info in ck.tensors() {
        let t = ck.tensor_f32(&info.name, &Device::Cpu).unwrap();
        w.add_f32(&info.name, &info.shape, &values(&t)).unwrap();
    }
    drop(ck);
    w.write(&tmp).unwrap();
    let err = HookedModel::load(&tmp, &LoadOptions::default())
        .err()
        .expect("8 experts in a file of 4");
    assert!(
        err.is_invalid_input() && err.to_string().contains("ffn_gate_inp"),
        "{err}"
    );
    std::fs::remove_file(&tmp).ok();
}

/// A random Qwen3-MoE written as a Hub snapshot and as a `qwen3moe` GGUF (experts in F32, or
/// quantized to Q8_0) loads through both paths to the same model.
#[test]
fn qwen3moe_gguf_matches_hub_and_slices_quantized_experts() {
    use candle_nn::var_builder::SimpleBackend;
    use glassbox_models::gguf_model::{GgufArch, GgufBackend};

    let (d, ff, layers, heads, kv_heads, hd, experts, vocab) = (
        64usize, 32usize, 2usize, 4usize, 2usize, 16usize, 4usize, 96usize,
    );
    let config = serde_json::json!({
        "architectures": ["Qwen3MoeForCausalLM"], "vocab_size": vocab, "hidden_size": d,
        "intermediate_size": ff, "moe_intermediate_size": ff, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": hd,
        "num_experts": experts, "num_experts_per_tok": 2, "norm_topk_prob": true,
        "decoder_sparse_step": 1, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "max_position_embeddings": 64, "tie_word_embeddings": false
    });
    let tmp = std::env::temp_dir().join(format!("glassbox-qwen3moe-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let hub_model = HookedModel::from_config(&config, vb).unwrap();
    varmap.save(tmp.join("model.safetensors")).unwrap();
    std::fs::write(tmp.join("config.json"), config.to_string()).unwrap();
    let ck = Checkpoint::open(&tmp).unwrap();
    let get = |name: &str| ck.tensor_f32(name, &Device::Cpu).unwrap();

    for quantized in [false, true] {
        let mut w = GgufWriter::new();
        w.set("general.architecture", GgufValue::String("qwen3moe".into()));
        for (key, value) in [
            ("block_count", layers),
            ("embedding_length", d),
            ("expert_feed_forward_length", ff),
            ("context_length", 64),
            ("attention.head_count", heads),
            ("attention.head_count_kv", kv_heads),
            ("attention.key_length", hd),
            ("expert_count", experts),
            ("expert_used_count", 2),
        ] {
            w.set(&format!("qwen3moe.{key}"), GgufValue::U32(value as u32));
        }
        w.set(
            "qwen3moe.attention.layer_norm_rms_epsilon",
            GgufValue::F32(1e-6),
        );
        w.set("qwen3moe.rope.freq_base", GgufValue::F32(10000.0));
        let mut add = |name: &str, t: Tensor, q8: bool| {
            if q8 {
                w.add_q8_0(name, t.dims(), &values(&t)).unwrap();
            } else {
                w.add_f32(name, t.dims(), &values(&t)).unwrap();
            }
        };
        add("token_embd.weight", get("model.embed_tokens.weight"), false);
        add("output_norm.weight", get("model.norm.weight"), false);
        add("output.weight", get("lm_head.weight"), false);
        for i in 0..layers {
            let hub = |part: &str| get(&format!("model.layers.{i}.{part}.weight"));
            let blk = |part: &str| format!("blk.{i}.{part}.weight");
            for (g, h) in [
                ("attn_norm", "input_layernorm"),
                ("ffn_norm", "post_attention_layernorm"),
                ("attn_q", "self_attn.q_proj"),
                ("attn_k", "self_attn.k_proj"),
                ("attn_v", "self_attn.v_proj"),
                ("attn_output", "self_attn.o_proj"),
                ("attn_q_norm", "self_attn.q_norm"),
                ("attn_k_norm", "self_attn.k_norm"),
                ("ffn_gate_inp", "mlp.gate"),
            ] {
                add(&blk(g), hub(h), false);
            }
            for (g, h) in [
                ("ffn_gate_exps", "gate_proj"),
                ("ffn_up_exps", "up_proj"),
                ("ffn_down_exps", "down_proj"),
            ] {
                let stacked: Vec<Tensor> = (0..experts)
                    .map(|e| hub(&format!("mlp.experts.{e}.{h}")))
                    .collect();
                add(&blk(g), Tensor::stack(&stacked, 0).unwrap(), quantized);
            }
        }
        let path = tmp.join(format!("model-{quantized}.gguf"));
        w.write(&path).unwrap();
        if quantized {
            // Each expert read alone equals its slice of the whole stacked tensor dequantized.
            let gck = Checkpoint::open(&path).unwrap();
            let whole = gck
                .tensor_f32("blk.1.ffn_down_exps.weight", &Device::Cpu)
                .unwrap();
            let backend = GgufBackend::new(
                Checkpoint::open(&path).unwrap(),
                GgufArch::Qwen3Moe,
                heads,
                kv_heads,
            );
            for e in 0..experts {
                let one = backend
                    .get_unchecked(
                        &format!("model.layers.1.mlp.experts.{e}.down_proj.weight"),
                        DType::F32,
                        &Device::Cpu,
                    )
                    .unwrap();
                assert_eq!(values(&one), values(&whole.get(e).unwrap()), "expert {e}");
            }
            let model = HookedModel::load(&path, &LoadOptions::default()).unwrap();
            let logits = model
                .run(&Tensor::new(&[[1u32, 7, 3, 9]], &Device::Cpu).unwrap())
                .unwrap();
            assert!(values(&logits).iter().all(|v| v.is_finite()));
        } else {
            let model = HookedModel::load(&path, &LoadOptions::default()).unwrap();
            assert_eq!(model.info().architecture, "Qwen3MoeForCausalLM");
            let ids = Tensor::new(&[[1u32, 7, 3, 9, 40, 2]], &Device::Cpu).unwrap();
            let a = model.run(&ids).unwrap();
            let b = hub_model.run(&ids).unwrap();
            let err = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                err < 1e-5,
                "qwen3moe GGUF differs from the Hub model by {err}"
            );
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
}
