//! llama.cpp → Hugging Face tensor names, and the Q/K row permutation.

use candle_core::{Device, Tensor};
use glassbox_formats::gguf_names::{
    hub_name, permute_qk, unpermute_qk, Fixup, KNOWN_ARCHITECTURES,
};

type Expected<'a> = Option<(&'a str, Fixup)>;

fn check(arch: &str, gguf: &str, expected: Expected) {
    let got = hub_name(arch, gguf);
    let got = got.as_ref().map(|h| (h.name.as_str(), h.fixup));
    assert_eq!(got, expected, "{arch}: {gguf}");
}

#[test]
fn names_map_per_architecture() {
    use Fixup::*;
    let cases: &[(&str, &str, Expected)] = &[
        (
            "llama",
            "token_embd.weight",
            Some(("model.embed_tokens.weight", None)),
        ),
        (
            "llama",
            "output_norm.weight",
            Some(("model.norm.weight", None)),
        ),
        ("llama", "output.weight", Some(("lm_head.weight", None))),
        (
            "llama",
            "blk.3.attn_q.weight",
            Some(("model.layers.3.self_attn.q_proj.weight", UnpermuteQ)),
        ),
        (
            "llama",
            "blk.3.attn_k.weight",
            Some(("model.layers.3.self_attn.k_proj.weight", UnpermuteK)),
        ),
        (
            "llama",
            "blk.3.attn_v.weight",
            Some(("model.layers.3.self_attn.v_proj.weight", None)),
        ),
        (
            "llama",
            "blk.12.attn_output.weight",
            Some(("model.layers.12.self_attn.o_proj.weight", None)),
        ),
        (
            "llama",
            "blk.0.attn_norm.weight",
            Some(("model.layers.0.input_layernorm.weight", None)),
        ),
        (
            "llama",
            "blk.0.ffn_norm.weight",
            Some(("model.layers.0.post_attention_layernorm.weight", None)),
        ),
        (
            "llama",
            "blk.0.ffn_gate.weight",
            Some(("model.layers.0.mlp.gate_proj.weight", None)),
        ),
        (
            "llama",
            "blk.0.ffn_up.weight",
            Some(("model.layers.0.mlp.up_proj.weight", None)),
        ),
        (
            "llama",
            "blk.0.ffn_down.weight",
            Some(("model.layers.0.mlp.down_proj.weight", None)),
        ),
        ("llama", "rope_freqs.weight", Option::None),
        ("llama", "blk.x.attn_q.weight", Option::None),
        // Mixtral is arch `llama` in llama.cpp.
        (
            "llama",
            "blk.1.ffn_gate_inp.weight",
            Some(("model.layers.1.block_sparse_moe.gate.weight", None)),
        ),
        (
            "llama",
            "blk.1.ffn_gate_exps.weight",
            Some((
                "model.layers.1.block_sparse_moe.experts.{e}.w1.weight",
                SplitExperts,
            )),
        ),
        (
            "llama",
            "blk.1.ffn_down_exps.weight",
            Some((
                "model.layers.1.block_sparse_moe.experts.{e}.w2.weight",
                SplitExperts,
            )),
        ),
        (
            "llama",
            "blk.1.ffn_up_exps.weight",
            Some((
                "model.layers.1.block_sparse_moe.experts.{e}.w3.weight",
                SplitExperts,
            )),
        ),
        (
            "qwen2",
            "blk.2.attn_q.weight",
            Some(("model.layers.2.self_attn.q_proj.weight", None)),
        ),
        (
            "qwen2",
            "blk.2.attn_q.bias",
            Some(("model.layers.2.self_attn.q_proj.bias", None)),
        ),
        (
            "qwen2",
            "blk.2.attn_k.bias",
            Some(("model.layers.2.self_attn.k_proj.bias", None)),
        ),
        (
            "qwen3",
            "blk.2.attn_q_norm.weight",
            Some(("model.layers.2.self_attn.q_norm.weight", None)),
        ),
        (
            "qwen3",
            "blk.2.attn_k_norm.weight",
            Some(("model.layers.2.self_attn.k_norm.weight", None)),
        ),
        (
            "qwen3moe",
            "blk.4.ffn_gate_inp.weight",
            Some(("model.layers.4.mlp.gate.weight", None)),
        ),
        (
            "qwen3moe",
            "blk.4.ffn_up_exps.weight",
            Some((
                "model.layers.4.mlp.experts.{e}.up_proj.weight",
                SplitExperts,
            )),
        ),
        (
            "qwen2moe",
            "blk.4.ffn_gate_shexp.weight",
            Some(("model.layers.4.mlp.shared_expert.gate_proj.weight", None)),
        ),
        (
            "qwen2moe",
            "blk.4.ffn_gate_inp_shexp.weight",
            Some(("model.layers.4.mlp.shared_expert_gate.weight", Row)),
        ),
        (
            "gemma",
            "blk.0.attn_norm.weight",
            Some(("model.layers.0.input_layernorm.weight", SubtractOne)),
        ),
        (
            "gemma",
            "blk.0.ffn_norm.weight",
            Some((
                "model.layers.0.post_attention_layernorm.weight",
                SubtractOne,
            )),
        ),
        (
            "gemma",
            "output_norm.weight",
            Some(("model.norm.weight", SubtractOne)),
        ),
        (
            "gemma",
            "blk.0.attn_q.weight",
            Some(("model.layers.0.self_attn.q_proj.weight", None)),
        ),
        (
            "gemma2",
            "blk.0.ffn_norm.weight",
            Some((
                "model.layers.0.pre_feedforward_layernorm.weight",
                SubtractOne,
            )),
        ),
        (
            "gemma2",
            "blk.0.post_attention_norm.weight",
            Some((
                "model.layers.0.post_attention_layernorm.weight",
                SubtractOne,
            )),
        ),
        (
            "gemma2",
            "blk.0.post_ffw_norm.weight",
            Some((
                "model.layers.0.post_feedforward_layernorm.weight",
                SubtractOne,
            )),
        ),
        (
            "gemma3",
            "blk.0.attn_k_norm.weight",
            Some(("model.layers.0.self_attn.k_norm.weight", SubtractOne)),
        ),
        (
            "phi3",
            "blk.1.attn_qkv.weight",
            Some(("model.layers.1.self_attn.qkv_proj.weight", None)),
        ),
        (
            "phi3",
            "blk.1.ffn_up.weight",
            Some(("model.layers.1.mlp.gate_up_proj.weight", None)),
        ),
        (
            "phi3",
            "blk.1.ffn_down.weight",
            Some(("model.layers.1.mlp.down_proj.weight", None)),
        ),
        (
            "gpt2",
            "token_embd.weight",
            Some(("transformer.wte.weight", None)),
        ),
        (
            "gpt2",
            "position_embd.weight",
            Some(("transformer.wpe.weight", None)),
        ),
        (
            "gpt2",
            "output_norm.bias",
            Some(("transformer.ln_f.bias", None)),
        ),
        (
            "gpt2",
            "blk.5.attn_qkv.weight",
            Some(("transformer.h.5.attn.c_attn.weight", Transpose)),
        ),
        (
            "gpt2",
            "blk.5.attn_qkv.bias",
            Some(("transformer.h.5.attn.c_attn.bias", None)),
        ),
        (
            "gpt2",
            "blk.5.attn_output.weight",
            Some(("transformer.h.5.attn.c_proj.weight", Transpose)),
        ),
        (
            "gpt2",
            "blk.5.ffn_up.weight",
            Some(("transformer.h.5.mlp.c_fc.weight", Transpose)),
        ),
        (
            "gpt2",
            "blk.5.ffn_down.bias",
            Some(("transformer.h.5.mlp.c_proj.bias", None)),
        ),
        (
            "gpt2",
            "blk.5.attn_norm.weight",
            Some(("transformer.h.5.ln_1.weight", None)),
        ),
        (
            "gpt2",
            "blk.5.ffn_norm.bias",
            Some(("transformer.h.5.ln_2.bias", None)),
        ),
        (
            "deepseek2",
            "blk.1.attn_q_a.weight",
            Some(("model.layers.1.self_attn.q_a_proj.weight", None)),
        ),
        (
            "deepseek2",
            "blk.1.attn_q_a_norm.weight",
            Some(("model.layers.1.self_attn.q_a_layernorm.weight", None)),
        ),
        (
            "deepseek2",
            "blk.1.attn_kv_a_mqa.weight",
            Some(("model.layers.1.self_attn.kv_a_proj_with_mqa.weight", None)),
        ),
        (
            "deepseek2",
            "blk.1.attn_kv_b.weight",
            Some(("model.layers.1.self_attn.kv_b_proj.weight", None)),
        ),
        (
            "deepseek2",
            "blk.1.exp_probs_b.bias",
            Some(("model.layers.1.mlp.gate.e_score_correction_bias", None)),
        ),
        (
            "deepseek2",
            "blk.1.ffn_down_shexp.weight",
            Some(("model.layers.1.mlp.shared_experts.down_proj.weight", None)),
        ),
        (
            "deepseek2",
            "blk.1.ffn_gate_exps.weight",
            Some((
                "model.layers.1.mlp.experts.{e}.gate_proj.weight",
                SplitExperts,
            )),
        ),
        (
            "glm4",
            "blk.0.post_attention_norm.weight",
            Some(("model.layers.0.post_self_attn_layernorm.weight", None)),
        ),
        (
            "glm4",
            "blk.0.ffn_norm.weight",
            Some(("model.layers.0.post_attention_layernorm.weight", None)),
        ),
        (
            "glm4",
            "blk.0.post_ffw_norm.weight",
            Some(("model.layers.0.post_mlp_layernorm.weight", None)),
        ),
        (
            "glm4",
            "blk.0.ffn_up.weight",
            Some(("model.layers.0.mlp.gate_up_proj.weight", None)),
        ),
        (
            "bert",
            "token_types.weight",
            Some(("embeddings.token_type_embeddings.weight", None)),
        ),
        (
            "bert",
            "token_embd_norm.bias",
            Some(("embeddings.LayerNorm.bias", None)),
        ),
        (
            "bert",
            "blk.1.attn_output_norm.weight",
            Some(("encoder.layer.1.attention.output.LayerNorm.weight", None)),
        ),
        (
            "bert",
            "blk.0.ffn_up.weight",
            Some(("encoder.layer.0.intermediate.dense.weight", None)),
        ),
        (
            "bert",
            "blk.0.layer_output_norm.bias",
            Some(("encoder.layer.0.output.LayerNorm.bias", None)),
        ),
        ("bert", "blk.0.attn_norm.weight", Option::None),
        ("mamba", "token_embd.weight", Option::None),
        // Nemotron-H: A back from −exp(A_log), reshaped Mamba tensors, one `mixer` per block.
        (
            "nemotron_h",
            "token_embd.weight",
            Some(("backbone.embeddings.weight", None)),
        ),
        (
            "nemotron_h",
            "output_norm.weight",
            Some(("backbone.norm_f.weight", None)),
        ),
        (
            "nemotron_h",
            "blk.0.attn_norm.weight",
            Some(("backbone.layers.0.norm.weight", None)),
        ),
        (
            "nemotron_h",
            "blk.0.ssm_a",
            Some(("backbone.layers.0.mixer.A_log", LogOfNegated)),
        ),
        (
            "nemotron_h",
            "blk.0.ssm_d",
            Some(("backbone.layers.0.mixer.D", Flatten)),
        ),
        (
            "nemotron_h",
            "blk.0.ssm_norm.weight",
            Some(("backbone.layers.0.mixer.norm.weight", Flatten)),
        ),
        (
            "nemotron_h",
            "blk.0.ssm_conv1d.weight",
            Some(("backbone.layers.0.mixer.conv1d.weight", ConvChannels)),
        ),
        (
            "nemotron_h",
            "blk.0.ssm_dt.bias",
            Some(("backbone.layers.0.mixer.dt_bias", None)),
        ),
        (
            "nemotron_h",
            "blk.2.attn_output.weight",
            Some(("backbone.layers.2.mixer.o_proj.weight", None)),
        ),
        (
            "nemotron_h",
            "blk.1.ffn_up.weight",
            Some(("backbone.layers.1.mixer.up_proj.weight", None)),
        ),
        (
            "nemotron_h_moe",
            "blk.1.ffn_down_exps.weight",
            Some((
                "backbone.layers.1.mixer.experts.{e}.down_proj.weight",
                SplitExperts,
            )),
        ),
        (
            "nemotron_h_moe",
            "blk.1.exp_probs_b.bias",
            Some(("backbone.layers.1.mixer.gate.e_score_correction_bias", None)),
        ),
        ("nemotron_h", "blk.0.ssm_in.scale", Option::None),
        // Qwen3-Next: zero-centred norms stored w + 1, DeltaNet under `linear_attn`; the split
        // `in_proj_qkvz` is rejoined by the model's loader, not named here.
        (
            "qwen3next",
            "blk.1.post_attention_norm.weight",
            Some((
                "model.layers.1.post_attention_layernorm.weight",
                SubtractOne,
            )),
        ),
        (
            "qwen3next",
            "blk.1.attn_q_norm.weight",
            Some(("model.layers.1.self_attn.q_norm.weight", SubtractOne)),
        ),
        (
            "qwen3next",
            "output_norm.weight",
            Some(("model.norm.weight", SubtractOne)),
        ),
        (
            "qwen3next",
            "blk.0.ssm_norm.weight",
            Some(("model.layers.0.linear_attn.norm.weight", None)),
        ),
        (
            "qwen3next",
            "blk.0.ssm_a",
            Some(("model.layers.0.linear_attn.A_log", LogOfNegated)),
        ),
        (
            "qwen3next",
            "blk.0.ssm_conv1d.weight",
            Some(("model.layers.0.linear_attn.conv1d.weight", ConvChannels)),
        ),
        (
            "qwen3next",
            "blk.0.ssm_dt.bias",
            Some(("model.layers.0.linear_attn.dt_bias", None)),
        ),
        (
            "qwen3next",
            "blk.0.ssm_ba.weight",
            Some(("model.layers.0.linear_attn.in_proj_ba.weight", None)),
        ),
        ("qwen3next", "blk.0.attn_qkv.weight", Option::None),
        // Nemotron: LayerNorm1P weights stored w + 1 (biases as they are), no Q/K permutation.
        (
            "nemotron",
            "blk.0.ffn_norm.weight",
            Some((
                "model.layers.0.post_attention_layernorm.weight",
                SubtractOne,
            )),
        ),
        (
            "nemotron",
            "output_norm.bias",
            Some(("model.norm.bias", None)),
        ),
        (
            "nemotron",
            "blk.0.attn_q.weight",
            Some(("model.layers.0.self_attn.q_proj.weight", None)),
        ),
        ("qwen3next", "blk.0.attn_gate.weight", Option::None),
        (
            "qwen3next",
            "blk.0.ffn_gate_inp_shexp.weight",
            Some(("model.layers.0.mlp.shared_expert_gate.weight", Row)),
        ),
    ];
    for (arch, gguf, expected) in cases {
        check(arch, gguf, *expected);
    }
    for arch in KNOWN_ARCHITECTURES {
        assert!(hub_name(arch, "token_embd.weight").is_some(), "{arch}");
    }
}

/// llama.cpp's permute, written index by index from its definition
/// (`w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2)`): GGUF row h*hd + 2j + i is HF row
/// h*hd + i*hd/2 + j.
#[test]
fn unpermute_inverts_llama_cpp_row_order() {
    let (n_head, hd, cols) = (3usize, 8usize, 2usize);
    let rows = n_head * hd;
    let hf: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let mut gguf = vec![0f32; rows * cols];
    for h in 0..n_head {
        for j in 0..hd / 2 {
            for i in 0..2 {
                let src = h * hd + i * hd / 2 + j;
                let dst = h * hd + 2 * j + i;
                gguf[dst * cols..dst * cols + cols]
                    .copy_from_slice(&hf[src * cols..src * cols + cols]);
            }
        }
    }
    let hf_t = Tensor::from_vec(hf.clone(), (rows, cols), &Device::Cpu).unwrap();
    let gguf_t = Tensor::from_vec(gguf.clone(), (rows, cols), &Device::Cpu).unwrap();
    let back = unpermute_qk(&gguf_t, n_head).unwrap();
    assert_eq!(back.dims(), &[rows, cols]);
    assert_eq!(back.flatten_all().unwrap().to_vec1::<f32>().unwrap(), hf);
    let forward = permute_qk(&hf_t, n_head).unwrap();
    assert_eq!(
        forward.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        gguf
    );
    // Biases (1-D) permute the same way.
    let bias: Vec<f32> = (0..rows).map(|i| i as f32).collect();
    let b = Tensor::from_vec(bias.clone(), rows, &Device::Cpu).unwrap();
    let round = unpermute_qk(&permute_qk(&b, n_head).unwrap(), n_head).unwrap();
    assert_eq!(round.to_vec1::<f32>().unwrap(), bias);
    // Rows that do not split into heads of even size are an error, not a panic.
    assert!(unpermute_qk(
        &Tensor::zeros((9, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
        2
    )
    .is_err());
    assert!(unpermute_qk(&hf_t, 0).is_err());
}
