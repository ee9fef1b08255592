//! A small random `BertForMaskedLM` checkpoint (`bert.` prefix, tied decoder, 2 layers), written
//! as a Hub folder: for tests of what an encoder with an MLM head computes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

pub const D_MODEL: usize = 16;
pub const VOCAB: usize = 40;
const LAYERS: usize = 2;

/// Writes `config.json` and `model.safetensors` into `dir`; returns the weights.
pub fn write(dir: &Path) -> HashMap<String, Tensor> {
    let (d, vocab) = (D_MODEL, VOCAB);
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": vocab,
        "hidden_size": d, "num_hidden_layers": LAYERS, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 24, "type_vocab_size": 2,
        "hidden_act": "gelu", "layer_norm_eps": 1e-12,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let dev = Device::Cpu;
    let randn = |shape: &[usize]| Tensor::randn(0f32, 0.5, shape, &dev).unwrap();
    let mut weights = HashMap::new();
    let mut add = |name: String, shape: &[usize]| {
        weights.insert(name, randn(shape));
    };
    for (name, rows) in [("word", vocab), ("position", 24), ("token_type", 2)] {
        add(
            format!("bert.embeddings.{name}_embeddings.weight"),
            &[rows, d],
        );
    }
    let layer_norm = |add: &mut dyn FnMut(String, &[usize]), prefix: &str| {
        add(format!("{prefix}.LayerNorm.weight"), &[d]);
        add(format!("{prefix}.LayerNorm.bias"), &[d]);
    };
    layer_norm(&mut add, "bert.embeddings");
    for i in 0..LAYERS {
        let p = format!("bert.encoder.layer.{i}");
        for (name, out, inp) in [
            ("attention.self.query", d, d),
            ("attention.self.key", d, d),
            ("attention.self.value", d, d),
            ("attention.output.dense", d, d),
            ("intermediate.dense", 32, d),
            ("output.dense", d, 32),
        ] {
            add(format!("{p}.{name}.weight"), &[out, inp]);
            add(format!("{p}.{name}.bias"), &[out]);
        }
        layer_norm(&mut add, &format!("{p}.attention.output"));
        layer_norm(&mut add, &format!("{p}.output"));
    }
    add("cls.predictions.transform.dense.weight".into(), &[d, d]);
    add("cls.predictions.transform.dense.bias".into(), &[d]);
    layer_norm(&mut add, "cls.predictions.transform");
    add("cls.predictions.bias".into(), &[vocab]);
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
    weights
}
