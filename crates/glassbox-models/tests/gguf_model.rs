//! GGUF models through the Hub architecture code.
//!
//! - tiny.gguf (a real llama-architecture F16 GGUF) against transformers' own GGUF loader
//!   (tests/fixtures/real/tinygguf-expected.safetensors): ids and logits within 1e-4, and the
//!   hooks of a `run_with_cache`.
//! - The parity fixtures written into GGUF files the way llama.cpp's converter writes them
//!   (its tensor names, Q/K rows permuted for `llama`, GPT-2's Conv1D weights transposed, the
//!   vocabulary embedded): their logits equal transformers' (expected.safetensors) within 1e-4.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use glassbox_formats::gguf_names::{hub_name, permute_qk, unpermute_qk, Fixup};
use glassbox_formats::{Checkpoint, GgufArray, GgufValue, GgufWriter, SafetensorsFile};
use glassbox_models::gguf_model::{self, GgufArch, GgufBackend};
use glassbox_models::{CheckpointBackend, HookedModel, LoadOptions, NameFilter, Numerics};
use rand::{rngs::StdRng, Rng, SeedableRng};

const TOLERANCE: f32 = 1e-4;

#[path = "support/artifacts.rs"]
mod artifacts;
use artifacts::{artifact, workspace};

/// A directory for files written by this test process (separate from concurrent runs).
fn scratch_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ids_of(t: Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// `text` tokenizes to `expected_ids` and its logits are within 1e-4 of `expected_logits`.
fn check(
    model: &HookedModel,
    what: &str,
    text: &str,
    expected_ids: &[u32],
    expected_logits: &Tensor,
) {
    let ids = model.to_tokens(text).unwrap();
    assert_eq!(ids, expected_ids, "{what}: ids of {text:?}");
    let logits = model.run(&model.ids_tensor(&ids).unwrap()).unwrap();
    let diff = max_abs_diff(&logits, expected_logits);
    eprintln!("{what}: {text:?}: max |logit diff| {diff:.2e}");
    assert!(
        diff <= TOLERANCE,
        "{what}: {text:?}: max |logit diff| {diff} > {TOLERANCE}"
    );
}

#[test]
fn tiny_gguf_matches_transformers() {
    let Some(path) = artifact("tiny.gguf") else {
        return;
    };
    let model = gguf_model::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(model.info().architecture, "LlamaForCausalLM");
    let fixture = workspace().join("tests/fixtures/real/tinygguf-expected.safetensors");
    let texts = SafetensorsFile::open(&fixture).unwrap().metadata["texts"].clone();
    let expected = Checkpoint::open(&fixture).unwrap();
    for (j, text) in texts.split("\n---\n").enumerate() {
        let ids = ids_of(
            expected
                .tensor(&format!("text{j}.input_ids"), &Device::Cpu)
                .unwrap(),
        );
        let logits = expected
            .tensor(&format!("text{j}.logits"), &Device::Cpu)
            .unwrap();
        check(&model, "tiny.gguf", text, &ids, &logits);
    }
}

#[test]
fn tiny_gguf_runs_with_cache() {
    let Some(path) = artifact("tiny.gguf") else {
        return;
    };
    let model = HookedModel::load(&path, &LoadOptions::default()).unwrap();
    let ids = model.to_tokens("Open weights are the model.").unwrap();
    let filter =
        NameFilter::new(&["blocks.*.hook_resid_post", "blocks.*.attn.hook_pattern"]).unwrap();
    let (logits, cache) = model
        .run_with_cache(&model.ids_tensor(&ids).unwrap(), &filter)
        .unwrap();
    let t = ids.len();
    assert_eq!(logits.dims(), &[1, t, 32000]);
    assert_eq!(cache.len(), 4);
    for layer in 0..2 {
        assert_eq!(
            cache[format!("blocks.{layer}.hook_resid_post").as_str()].dims(),
            &[1, t, 16]
        );
        let pattern = &cache[format!("blocks.{layer}.attn.hook_pattern").as_str()];
        assert_eq!(pattern.dims(), &[1, 4, t, t]);
        // Causal softmax rows: each sums to 1 and puts nothing on later positions.
        let sums = pattern
            .sum(3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
        let first_row = pattern
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(first_row[1..].iter().all(|&p| p == 0.0));
    }
}

/// llama.cpp's tensor names for the Hub names of the parity fixtures (from llama.cpp's
/// `tensor_mapping.py`), written out here rather than taken from the code under test.
fn llama_cpp_name(arch: &str, hub: &str) -> Option<String> {
    let (base, kind) = hub.rsplit_once('.')?;
    let top = [
        ("model.embed_tokens", "token_embd"),
        ("model.norm", "output_norm"),
        ("lm_head", "output"),
        ("transformer.wte", "token_embd"),
        ("transformer.wpe", "position_embd"),
        ("transformer.ln_f", "output_norm"),
    ];
    if let Some((_, g)) = top.iter().find(|(h, _)| *h == base) {
        return Some(format!("{g}.{kind}"));
    }
    let prefix = if arch == "gpt2" {
        "transformer.h."
    } else {
        "model.layers."
    };
    let (layer, part) = base.strip_prefix(prefix)?.split_once('.')?;
    let block = [
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
        ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_norm", "attn_k_norm"),
        ("self_attn.qkv_proj", "attn_qkv"),
        ("mlp.gate_up_proj", "ffn_up"),
        ("ln_1", "attn_norm"),
        ("attn.c_attn", "attn_qkv"),
        ("attn.c_proj", "attn_output"),
        ("ln_2", "ffn_norm"),
        ("mlp.c_fc", "ffn_up"),
        ("mlp.c_proj", "ffn_down"),
    ];
    let (_, g) = block.iter().find(|(h, _)| *h == part)?;
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// llama.cpp's `permute`: `w.reshape(heads, 2, rows / heads / 2, rest).swapaxes(1, 2)`.
fn llama_cpp_permute(values: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let rest = values.len() / rows;
    let half = rows / heads / 2;
    let mut out = Vec::with_capacity(values.len());
    for h in 0..heads {
        for j in 0..half {
            for s in 0..2 {
                let src = h * 2 * half + s * half + j;
                out.extend_from_slice(&values[src * rest..(src + 1) * rest]);
            }
        }
    }
    out
}

/// Writes the parity fixture `name` as llama.cpp's converter would, into `out`.
fn write_parity_gguf(name: &str, out: &Path) {
    parity_gguf(name).write(out).unwrap();
}

/// How the 2-D weights of a written parity GGUF are stored.
#[derive(Clone, Copy, PartialEq)]
enum Weights {
    F32,
    /// Quantized to Q8_0.
    Q8_0,
    /// F32 holding the values Q8_0 dequantizes to.
    Q8_0Values,
}

/// ggml's Q8_0 round trip (`quantize_row_q8_0_ref`, then dequantization): per block of 32,
/// `d = max|x| / 127` stored as f16, `q = round(x / d)`, value `d · q`.
fn q8_0_values(values: &[f32]) -> Vec<f32> {
    values
        .chunks(32)
        .flat_map(|block| {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
            let d16 = half::f16::from_f32(d).to_f32();
            block.iter().map(move |v| d16 * (v * inv).round())
        })
        .collect()
}

/// The parity fixture `name` as llama.cpp's converter would write it, in F32.
fn parity_gguf(name: &str) -> GgufWriter {
    parity_gguf_as(name, Weights::F32)
}

/// The same, with the 2-D weights stored as `weights` says.
fn parity_gguf_as(name: &str, weights: Weights) -> GgufWriter {
    let dir = workspace().join("tests/fixtures/parity").join(name);
    let ck = Checkpoint::open(&dir).unwrap();
    let cfg = ck.config.clone().unwrap();
    let arch = if name == "gpt2" { "gpt2" } else { name };
    let num = |keys: &[&str]| keys.iter().find_map(|k| cfg[*k].as_u64()).unwrap() as u32;
    let mut w = GgufWriter::new();
    let key = |k: &str| format!("{arch}.{k}");
    w.set("general.architecture", GgufValue::String(arch.into()));
    w.set(
        &key("block_count"),
        GgufValue::U32(num(&["num_hidden_layers", "n_layer"])),
    );
    w.set(
        &key("embedding_length"),
        GgufValue::U32(num(&["hidden_size", "n_embd"])),
    );
    w.set(
        &key("attention.head_count"),
        GgufValue::U32(num(&["num_attention_heads", "n_head"])),
    );
    w.set(
        &key("context_length"),
        GgufValue::U32(num(&["max_position_embeddings", "n_positions"])),
    );
    let heads = num(&["num_attention_heads", "n_head"]) as usize;
    let mut kv_heads = heads;
    if arch == "gpt2" {
        w.set(
            &key("feed_forward_length"),
            GgufValue::U32(4 * num(&["n_embd"])),
        );
        w.set(&key("attention.layer_norm_epsilon"), GgufValue::F32(1e-5));
    } else {
        kv_heads = num(&["num_key_value_heads"]) as usize;
        w.set(
            &key("feed_forward_length"),
            GgufValue::U32(num(&["intermediate_size"])),
        );
        w.set(
            &key("attention.head_count_kv"),
            GgufValue::U32(kv_heads as u32),
        );
        w.set(
            &key("attention.layer_norm_rms_epsilon"),
            GgufValue::F32(1e-6),
        );
        w.set(&key("rope.freq_base"), GgufValue::F32(10000.0));
        let head_dim = num(&["hidden_size"]) / heads as u32;
        w.set(&key("rope.dimension_count"), GgufValue::U32(head_dim));
    }
    // The vocabulary, as the converter stores a byte-level BPE tokenizer.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    let merges: Vec<String> = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            pair => format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            ),
        })
        .collect();
    w.set("tokenizer.ggml.model", GgufValue::String("gpt2".into()));
    w.set(
        "tokenizer.ggml.tokens",
        GgufValue::Array(GgufArray::String(tokens)),
    );
    w.set(
        "tokenizer.ggml.merges",
        GgufValue::Array(GgufArray::String(merges)),
    );

    for info in ck.tensors() {
        let Some(gguf_name) = llama_cpp_name(arch, &info.name) else {
            continue;
        };
        let t = ck.tensor_f32(&info.name, &Device::Cpu).unwrap();
        let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut shape = info.shape.clone();
        let part = gguf_name.rsplit('.').nth(1).unwrap();
        if arch == "llama" && (part == "attn_q" || part == "attn_k") {
            let h = if part == "attn_q" { heads } else { kv_heads };
            values = llama_cpp_permute(&values, shape[0], h);
        }
        if arch == "gpt2"
            && gguf_name.ends_with(".weight")
            && shape.len() == 2
            && part != "token_embd"
            && part != "position_embd"
        {
            values = t
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            shape.reverse();
        }
        match weights {
            Weights::Q8_0 if shape.len() == 2 => w.add_q8_0(&gguf_name, &shape, &values),
            Weights::Q8_0Values if shape.len() == 2 => {
                w.add_f32(&gguf_name, &shape, &q8_0_values(&values))
            }
            _ => w.add_f32(&gguf_name, &shape, &values),
        }
        .unwrap();
    }
    w
}

#[test]
fn parity_fixtures_written_as_gguf_match_transformers() {
    let tmp = scratch_dir();
    for name in ["llama", "qwen2", "gpt2"] {
        let path = tmp.join(format!("parity-{name}.gguf"));
        write_parity_gguf(name, &path);
        let model = HookedModel::load(&path, &LoadOptions::default()).unwrap();
        let reference = HookedModel::load(
            &workspace().join("tests/fixtures/parity").join(name),
            &LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(model.info(), &{
            let mut info = reference.info().clone();
            info.architecture = model.info().architecture.clone();
            info
        });
        let expected = Checkpoint::open(
            workspace()
                .join("tests/fixtures/parity")
                .join(name)
                .join("expected.safetensors"),
        )
        .unwrap();
        for (j, text) in [
            "The Eiffel Tower is in Paris.",
            "When Mary and John went to the store, John gave a drink to",
        ]
        .iter()
        .enumerate()
        {
            let ids = ids_of(
                expected
                    .tensor(&format!("prompt{j}.input_ids"), &Device::Cpu)
                    .unwrap(),
            );
            let logits = expected
                .tensor(&format!("prompt{j}.logits"), &Device::Cpu)
                .unwrap();
            check(&model, name, text, &ids, &logits);
        }
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn unsupported_gguf_architecture_is_a_clear_error() {
    let tmp = scratch_dir().join("mamba.gguf");
    let mut w = GgufWriter::new();
    w.set("general.architecture", GgufValue::String("mamba".into()));
    w.add_f32("token_embd.weight", &[2, 2], &[0.0; 4]).unwrap();
    w.write(&tmp).unwrap();
    let err = match gguf_model::load(&tmp, &LoadOptions::default()) {
        Ok(_) => panic!("a mamba GGUF loaded"),
        Err(e) => e,
    };
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("mamba"), "{err}");
    std::fs::remove_file(&tmp).unwrap();
}

/// llama.cpp's converter (`GemmaModel.modify_tensors` in `convert_hf_to_gguf.py`) adds 1 to
/// every Gemma tensor whose Hub name ends in `norm.weight`: `model.norm.weight` (the final
/// `output_norm`) as well as the per-layer norms.
fn llama_cpp_adds_one(arch: &str, hub: &str) -> bool {
    arch == "gemma" && hub.ends_with("norm.weight")
}

/// A small model of `config` with random weights, and the same weights written as a GGUF of
/// `arch` the way llama.cpp's converter writes them (Gemma's norms stored as `w + 1`).
fn random_model_and_gguf(
    arch: &str,
    config: serde_json::Value,
    metadata: &[(&str, u32)],
    out: &Path,
) -> HookedModel {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = HookedModel::from_config(&config, vb).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut w = GgufWriter::new();
    w.set("general.architecture", GgufValue::String(arch.into()));
    for (key, value) in metadata {
        w.set(&format!("{arch}.{key}"), GgufValue::U32(*value));
    }
    w.set(
        &format!("{arch}.attention.layer_norm_rms_epsilon"),
        GgufValue::F32(1e-6),
    );
    w.set(&format!("{arch}.rope.freq_base"), GgufValue::F32(10000.0));
    let vars = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        // Perturb the (neutral or tiny) initial values so that every weight matters.
        let init = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let values: Vec<f32> = init
            .iter()
            .map(|v| v + rng.gen_range(-0.3f32..0.3))
            .collect();
        var.set(&Tensor::from_vec(values.clone(), var.shape(), &Device::Cpu).unwrap())
            .unwrap();
        let gguf_name =
            llama_cpp_name(arch, name).unwrap_or_else(|| panic!("no GGUF name for {name}"));
        let stored: Vec<f32> = if llama_cpp_adds_one(arch, name) {
            values.iter().map(|v| v + 1.0).collect()
        } else {
            values
        };
        w.add_f32(&gguf_name, var.dims(), &stored).unwrap();
    }
    w.write(out).unwrap();
    model
}

#[test]
fn gemma_qwen3_phi3_gguf_equal_their_hub_models() {
    let tmp = scratch_dir();
    let dims = serde_json::json!({
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "vocab_size": 48, "max_position_embeddings": 64,
    });
    let with = |extra: serde_json::Value| {
        let mut c = dims.clone();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let common = [
        ("block_count", 2),
        ("embedding_length", 32),
        ("feed_forward_length", 64),
        ("attention.head_count", 4),
        ("context_length", 64),
    ];
    let cases = [
        (
            "gemma",
            with(
                serde_json::json!({"architectures": ["GemmaForCausalLM"], "head_dim": 16,
                "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": true}),
            ),
            vec![
                ("attention.head_count_kv", 2),
                ("attention.key_length", 16),
                ("attention.value_length", 16),
            ],
        ),
        (
            "qwen3",
            with(
                serde_json::json!({"architectures": ["Qwen3ForCausalLM"], "head_dim": 16,
                "tie_word_embeddings": false}),
            ),
            vec![
                ("attention.head_count_kv", 2),
                ("attention.key_length", 16),
                ("attention.value_length", 16),
            ],
        ),
        (
            "phi3",
            with(
                serde_json::json!({"architectures": ["Phi3ForCausalLM"], "num_key_value_heads": 4,
                "tie_word_embeddings": false}),
            ),
            vec![("attention.head_count_kv", 4), ("rope.dimension_count", 8)],
        ),
    ];
    let ids = Tensor::new(&[[3u32, 17, 5, 40, 9, 22, 1, 33]], &Device::Cpu).unwrap();
    for (arch, config, extra) in cases {
        let path = tmp.join(format!("random-{arch}.gguf"));
        let metadata: Vec<(&str, u32)> = common.iter().copied().chain(extra).collect();
        let hub = random_model_and_gguf(arch, config, &metadata, &path);
        let gguf = HookedModel::load(&path, &LoadOptions::default()).unwrap();
        assert_eq!(gguf.info().architecture, hub.info().architecture);
        let want = hub.run(&ids).unwrap();
        let got = gguf.run(&ids).unwrap();
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = max_abs_diff(&got, &want);
        eprintln!("{arch}: max |logit diff| {diff:.2e} (logits up to {scale:.2})");
        assert!(scale > 0.1, "{arch}: logits too small to tell models apart");
        assert!(diff <= TOLERANCE, "{arch}: max |logit diff| {diff}");
        std::fs::remove_file(&path).unwrap();
    }
}

/// llama.cpp's converter's Llama 3 rope factors (`generate_extra_tensors`), written out here.
fn llama_cpp_rope_factors(dim: usize, factor: f32, original: f32) -> Vec<f32> {
    let (low, high) = (1.0f32, 4.0f32);
    (0..dim / 2)
        .map(|i| {
            let freq = 1.0 / 10000f32.powf(2.0 * i as f32 / dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < original / high {
                1.0
            } else if wavelen > original / low {
                factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

#[test]
fn rope_freqs_divide_the_frequencies_as_llama_cpp_does() {
    let tmp = scratch_dir();
    let dir = workspace().join("tests/fixtures/parity/llama");
    // An original context of 32 puts the 8 frequencies of a 16-wide head in all three regimes.
    let mut w = parity_gguf("llama");
    w.set(
        "llama.rope.scaling.original_context_length",
        GgufValue::U32(32),
    );
    w.add_f32(
        "rope_freqs.weight",
        &[8],
        &llama_cpp_rope_factors(16, 8.0, 32.0),
    )
    .unwrap();
    let path = tmp.join("parity-llama-rope-freqs.gguf");
    w.write(&path).unwrap();
    let gguf = HookedModel::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(gguf.config["rope_scaling"]["rope_type"], "freq_factors");

    let mut config = Checkpoint::open(&dir).unwrap().config.unwrap();
    config["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32});
    let backend = CheckpointBackend::new(Checkpoint::open(&dir).unwrap());
    let hub = HookedModel::from_backend(
        config,
        Box::new(backend),
        None,
        &dir,
        &LoadOptions::default(),
    )
    .unwrap();
    let plain = HookedModel::load(&dir, &LoadOptions::default()).unwrap();

    let ids = gguf
        .ids_tensor(
            &gguf
                .to_tokens("When Mary and John went to the store")
                .unwrap(),
        )
        .unwrap();
    let got = gguf.run(&ids).unwrap();
    assert!(max_abs_diff(&got, &hub.run(&ids).unwrap()) <= TOLERANCE);
    assert!(
        max_abs_diff(&got, &plain.run(&ids).unwrap()) > 1e-3,
        "the scaling changed nothing"
    );

    // Factors that follow no rule are applied too, as llama.cpp divides by whatever it finds.
    let mut w = parity_gguf("llama");
    w.add_f32(
        "rope_freqs.weight",
        &[8],
        &[1.0, 3.0, 1.0, 2.0, 1.0, 5.0, 1.0, 1.5],
    )
    .unwrap();
    w.write(&path).unwrap();
    let any = HookedModel::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(any.config["rope_scaling"]["rope_type"], "freq_factors");
    assert!(max_abs_diff(&any.run(&ids).unwrap(), &plain.run(&ids).unwrap()) > 1e-3);
    std::fs::remove_file(&path).unwrap();
}

/// Q8_0 weights stay quantized in memory. Under f32 numerics the model computes exactly what
/// one holding the dequantized values in F32 computes (the same bits); under llama.cpp's
/// numerics, the default for a quantized file, its activations are quantized too, which moves
/// the logits; both differ from the unquantized model.
#[test]
fn q8_0_gguf_runs_quantized_under_either_numerics() {
    let tmp = scratch_dir();
    let load = |weights: Weights, file: &str, numerics: Option<Numerics>| {
        let path = tmp.join(file);
        parity_gguf_as("llama", weights).write(&path).unwrap();
        let opts = LoadOptions {
            numerics,
            ..LoadOptions::default()
        };
        let model = HookedModel::load(&path, &opts).unwrap();
        std::fs::remove_file(&path).unwrap();
        model
    };
    let quantized = load(Weights::Q8_0, "parity-llama-q8_0.gguf", None);
    assert_eq!(quantized.numerics, Numerics::LlamaCpp);
    let widened = load(Weights::Q8_0, "parity-llama-q8_0.gguf", Some(Numerics::F32));
    let dequantized = load(Weights::Q8_0Values, "parity-llama-q8_0-values.gguf", None);
    assert_eq!(dequantized.numerics, Numerics::F32);
    let full = load(Weights::F32, "parity-llama-f32.gguf", None);
    let prompt = full
        .to_tokens("When Mary and John went to the store")
        .unwrap();
    for ids in [&prompt[..], &prompt[..3]] {
        let ids = full.ids_tensor(ids).unwrap();
        let f32_bits = |m: &HookedModel| -> Vec<u32> {
            let v: Vec<f32> = m
                .run(&ids)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            v.iter().map(|x| x.to_bits()).collect()
        };
        assert_eq!(f32_bits(&widened), f32_bits(&dequantized), "f32 numerics");
        let got = quantized.run(&ids).unwrap();
        let activations = max_abs_diff(&got, &dequantized.run(&ids).unwrap());
        let quantization_error = max_abs_diff(&got, &full.run(&ids).unwrap());
        eprintln!(
            "Q8_0: llama.cpp numerics vs f32 {activations:.2e}; vs unquantized {quantization_error:.2e}"
        );
        assert!(activations > 1e-4, "the activations were not quantized");
        assert!(quantization_error > 1e-3);
    }
}

#[test]
fn unpermute_inverts_llama_cpp_permute() {
    let t = Tensor::arange(0f32, 48., &Device::Cpu)
        .unwrap()
        .reshape((8, 6))
        .unwrap();
    let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for heads in [1, 2, 4] {
        // The library's permutation is llama.cpp's (as written out in this file) ...
        let permuted = permute_qk(&t, heads).unwrap();
        assert_eq!(
            permuted.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            llama_cpp_permute(&values, 8, heads),
            "{heads} heads"
        );
        // ... and the backend's unpermutation inverts it.
        let back = unpermute_qk(&permuted, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
    }
    // One head of 4 rows: llama.cpp's order is [0, 2, 1, 3] of the Hub's.
    let rows = Tensor::new(&[0f32, 1., 2., 3.], &Device::Cpu).unwrap();
    let permuted = permute_qk(&rows, 1).unwrap();
    assert_eq!(permuted.to_vec1::<f32>().unwrap(), [0., 2., 1., 3.]);
    assert!(unpermute_qk(&rows, 3).is_err());
}

/// Every architecture glassbox runs is known to the shared name mapping under its
/// `general.architecture` name, and maps to the Hub names this file's own llama.cpp table
/// inverts.
#[test]
fn names_map_per_architecture() {
    let cases = [
        (
            GgufArch::Llama,
            "blk.3.attn_q.weight",
            Some(("model.layers.3.self_attn.q_proj.weight", Fixup::UnpermuteQ)),
        ),
        (
            GgufArch::Llama,
            "blk.3.attn_k.bias",
            Some(("model.layers.3.self_attn.k_proj.bias", Fixup::UnpermuteK)),
        ),
        (
            GgufArch::Qwen2,
            "blk.0.attn_k.bias",
            Some(("model.layers.0.self_attn.k_proj.bias", Fixup::None)),
        ),
        (
            GgufArch::Qwen3,
            "blk.1.attn_k_norm.weight",
            Some(("model.layers.1.self_attn.k_norm.weight", Fixup::None)),
        ),
        (
            GgufArch::Qwen3Moe,
            "blk.1.attn_q_norm.weight",
            Some(("model.layers.1.self_attn.q_norm.weight", Fixup::None)),
        ),
        (
            GgufArch::Phi3,
            "blk.0.attn_qkv.weight",
            Some(("model.layers.0.self_attn.qkv_proj.weight", Fixup::None)),
        ),
        (
            GgufArch::Phi3,
            "blk.0.ffn_up.weight",
            Some(("model.layers.0.mlp.gate_up_proj.weight", Fixup::None)),
        ),
        (
            GgufArch::Gpt2,
            "blk.2.attn_qkv.bias",
            Some(("transformer.h.2.attn.c_attn.bias", Fixup::None)),
        ),
        (
            GgufArch::Gpt2,
            "blk.2.attn_qkv.weight",
            Some(("transformer.h.2.attn.c_attn.weight", Fixup::Transpose)),
        ),
        (
            GgufArch::Gpt2,
            "position_embd.weight",
            Some(("transformer.wpe.weight", Fixup::None)),
        ),
        (
            GgufArch::Gemma,
            "blk.0.attn_norm.weight",
            Some(("model.layers.0.input_layernorm.weight", Fixup::SubtractOne)),
        ),
        (
            GgufArch::Gemma,
            "output_norm.weight",
            Some(("model.norm.weight", Fixup::SubtractOne)),
        ),
        (
            GgufArch::Llama,
            "output.weight",
            Some(("lm_head.weight", Fixup::None)),
        ),
        (GgufArch::Llama, "rope_freqs.weight", None),
        (GgufArch::Llama, "blk.x.attn_q.weight", None),
    ];
    for (arch, gguf, hub) in cases {
        let got = hub_name(arch.name(), gguf);
        let got = got.as_ref().map(|h| (h.name.as_str(), h.fixup));
        assert_eq!(got, hub, "{arch:?} {gguf}");
        if let Some((hub, _)) = hub {
            assert_eq!(
                llama_cpp_name(arch.name(), hub).as_deref(),
                Some(gguf),
                "{arch:?} {hub}"
            );
        }
    }
    for arch in GgufArch::ALL {
        assert!(
            hub_name(arch.name(), "token_embd.weight").is_some(),
            "{arch:?} is unknown to gguf_names"
        );
    }
}

/// Gemma's final norm: llama.cpp stores `model.norm.weight` as `w + 1` like every other Gemma
/// norm, the backend serves `w`, and the round trip is sensitive to it (a file whose
/// `output_norm` lacks the `+ 1` gives other logits).
#[test]
fn gemma_output_norm_is_stored_plus_one() {
    assert!(llama_cpp_adds_one("gemma", "model.norm.weight"));
    let tmp = scratch_dir();
    let config = serde_json::json!({
        "architectures": ["GemmaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 8, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "vocab_size": 48,
        "max_position_embeddings": 64, "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": true,
    });
    let metadata = [
        ("block_count", 1),
        ("embedding_length", 32),
        ("feed_forward_length", 64),
        ("attention.head_count", 4),
        ("attention.head_count_kv", 2),
        ("attention.key_length", 8),
        ("attention.value_length", 8),
        ("context_length", 64),
    ];
    let path = tmp.join("random-gemma-output-norm.gguf");
    let hub = random_model_and_gguf("gemma", config, &metadata, &path);

    // The backend serves the stored final norm minus one.
    let ck = Checkpoint::open(&path).unwrap();
    let stored = ck.tensor_f32("output_norm.weight", &Device::Cpu).unwrap();
    let backend = GgufBackend::new(Checkpoint::open(&path).unwrap(), GgufArch::Gemma, 4, 2);
    let served = candle_nn::var_builder::SimpleBackend::get_unchecked(
        &backend,
        "model.norm.weight",
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        served.to_vec1::<f32>().unwrap(),
        (&stored - 1.0).unwrap().to_vec1::<f32>().unwrap()
    );

    // The same file with the final norm stored without the `+ 1` is another model.
    let gguf = ck.gguf().unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in gguf.metadata() {
        w.set(k, v.clone());
    }
    for info in ck.tensors() {
        let mut t = ck.tensor_f32(&info.name, &Device::Cpu).unwrap();
        if info.name == "output_norm.weight" {
            t = (t - 1.0).unwrap();
        }
        let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        w.add_f32(&info.name, &info.shape, &values).unwrap();
    }
    drop(ck);
    let unshifted = tmp.join("random-gemma-output-norm-unshifted.gguf");
    w.write(&unshifted).unwrap();

    let ids = Tensor::new(&[[3u32, 17, 5, 40, 9, 22]], &Device::Cpu).unwrap();
    let want = hub.run(&ids).unwrap();
    let load = |p: &Path| HookedModel::load(p, &LoadOptions::default()).unwrap();
    let diff = max_abs_diff(&load(&path).run(&ids).unwrap(), &want);
    assert!(diff <= TOLERANCE, "llama.cpp's convention: {diff}");
    let diff = max_abs_diff(&load(&unshifted).run(&ids).unwrap(), &want);
    assert!(
        diff > 1e-3,
        "an unshifted output_norm changed nothing ({diff})"
    );
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&unshifted).unwrap();
}

/// Issue 19: a `block_count` of 2³² − 1 sized per-layer lists before any tensor was read (an
/// allocation failure, abort). The count is now checked against the blocks the file stores.
#[test]
fn a_block_count_the_file_does_not_store_is_refused() {
    for (arch, count) in [
        ("llama", u32::MAX),
        ("gemma3", u32::MAX),
        ("llama", 0),
        ("llama", 3),
    ] {
        let tmp = scratch_dir().join(format!("blocks-{arch}-{count}.gguf"));
        let mut w = GgufWriter::new();
        w.set("general.architecture", GgufValue::String(arch.into()));
        for (key, v) in [
            ("block_count", count),
            ("embedding_length", 4),
            ("attention.head_count", 2),
            ("feed_forward_length", 8),
            ("context_length", 16),
        ] {
            w.set(&format!("{arch}.{key}"), GgufValue::U32(v));
        }
        w.add_f32("token_embd.weight", &[8, 4], &[0.0; 32]).unwrap();
        w.add_f32("blk.0.attn_norm.weight", &[4], &[1.0; 4])
            .unwrap();
        w.write(&tmp).unwrap();
        let err = match gguf_model::load(&tmp, &LoadOptions::default()) {
            Ok(_) => panic!("{arch} with block_count {count} loaded"),
            Err(e) => e,
        };
        assert!(err.is_invalid_input(), "{err}");
        assert!(err.to_string().contains("block_count"), "{err}");
        std::fs::remove_file(&tmp).unwrap();
    }
}
