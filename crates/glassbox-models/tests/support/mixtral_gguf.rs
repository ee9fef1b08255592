//! Test support shared by the models and CLI tests (included with `#[path]`): the Mixtral
//! parity fixture written as a GGUF the way llama.cpp's converter writes it.

use std::path::Path;

use candle_core::{Device, Tensor};
use glassbox_formats::gguf_names::permute_qk;
use glassbox_formats::{Checkpoint, GgufValue, GgufWriter};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Writes the Mixtral fixture as llama.cpp's converter would (F32 tensors).
pub fn write_mixtral_gguf(out: &Path) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/families/mixtral");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let get = |name: &str| ck.tensor_f32(name, &Device::Cpu).unwrap();
    let n = |k: &str| config[k].as_u64().unwrap() as u32;
    let (layers, heads, kv_heads, experts) = (
        n("num_hidden_layers"),
        n("num_attention_heads"),
        n("num_key_value_heads"),
        n("num_local_experts"),
    );
    let mut w = GgufWriter::new();
    w.set("general.architecture", GgufValue::String("llama".into()));
    for (key, value) in [
        ("block_count", GgufValue::U32(layers)),
        ("embedding_length", GgufValue::U32(n("hidden_size"))),
        (
            "feed_forward_length",
            GgufValue::U32(n("intermediate_size")),
        ),
        (
            "context_length",
            GgufValue::U32(n("max_position_embeddings")),
        ),
        ("attention.head_count", GgufValue::U32(heads)),
        ("attention.head_count_kv", GgufValue::U32(kv_heads)),
        (
            "attention.layer_norm_rms_epsilon",
            GgufValue::F32(config["rms_norm_eps"].as_f64().unwrap() as f32),
        ),
        (
            "rope.freq_base",
            GgufValue::F32(config["rope_parameters"]["rope_theta"].as_f64().unwrap() as f32),
        ),
        ("expert_count", GgufValue::U32(experts)),
        (
            "expert_used_count",
            GgufValue::U32(n("num_experts_per_tok")),
        ),
    ] {
        w.set(&format!("llama.{key}"), value);
    }
    let mut add = |name: &str, t: Tensor| {
        w.add_f32(name, t.dims(), &values(&t)).unwrap();
    };
    add("token_embd.weight", get("model.embed_tokens.weight"));
    add("output_norm.weight", get("model.norm.weight"));
    add("output.weight", get("lm_head.weight"));
    for i in 0..layers {
        let hub = |part: &str| get(&format!("model.layers.{i}.{part}.weight"));
        let blk = |part: &str| format!("blk.{i}.{part}.weight");
        add(&blk("attn_norm"), hub("input_layernorm"));
        add(&blk("ffn_norm"), hub("post_attention_layernorm"));
        add(
            &blk("attn_q"),
            permute_qk(&hub("self_attn.q_proj"), heads as usize).unwrap(),
        );
        add(
            &blk("attn_k"),
            permute_qk(&hub("self_attn.k_proj"), kv_heads as usize).unwrap(),
        );
        add(&blk("attn_v"), hub("self_attn.v_proj"));
        add(&blk("attn_output"), hub("self_attn.o_proj"));
        add(&blk("ffn_gate_inp"), hub("block_sparse_moe.gate"));
        for (gguf, hub_part) in [
            ("ffn_gate_exps", "w1"),
            ("ffn_up_exps", "w3"),
            ("ffn_down_exps", "w2"),
        ] {
            let stacked: Vec<Tensor> = (0..experts)
                .map(|e| hub(&format!("block_sparse_moe.experts.{e}.{hub_part}")))
                .collect();
            add(&blk(gguf), Tensor::stack(&stacked, 0).unwrap());
        }
    }
    w.write(out).unwrap();
}
