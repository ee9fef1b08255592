//! Gradients of the training loss reach every weight and match finite differences.
//!
//! The model is built the way training builds it (from a config over a `VarMap`), in f64 so
//! that central differences are accurate; the loss is the trainer's next-token loss.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use glassbox_models::{HookedModel, Hooks};
use glassbox_train::rng::SplitMix64;
use glassbox_train::trainer::{initialise, next_token_loss};

fn tiny_config(arch: &str) -> serde_json::Value {
    let mut c = serde_json::json!({
        "architectures": [arch], "vocab_size": 23, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8,
        "hidden_act": "silu", "max_position_embeddings": 32, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "tie_word_embeddings": false
    });
    if arch == "GPT2LMHeadModel" {
        c = serde_json::json!({
            "architectures": [arch], "model_type": "gpt2", "vocab_size": 23, "n_embd": 16,
            "n_layer": 2, "n_head": 2, "n_positions": 32, "n_inner": 32,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5
        });
    }
    c
}

fn check_gradients(arch: &str) {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &device);
    let model = HookedModel::from_config(&tiny_config(arch), vb).unwrap();
    initialise(&varmap, 1, 0.3).unwrap();
    // Perturb norm weights and biases too, so their gradients are generic.
    let mut rng = SplitMix64::new(9);
    let vars: Vec<(String, candle_core::Var)> = {
        let data = varmap.data().lock().unwrap();
        let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    for (_, var) in &vars {
        let t = var.as_tensor();
        let noise: Vec<f64> = (0..t.elem_count()).map(|_| 0.1 * rng.normal()).collect();
        let noise = Tensor::from_vec(noise, t.shape(), &device).unwrap();
        var.set(&(t + noise).unwrap()).unwrap();
    }
    let ids: Vec<u32> = (0..2 * 9).map(|_| rng.below(23) as u32).collect();
    let ids = Tensor::from_vec(ids, (2, 9), &device).unwrap();
    let inputs = ids.narrow(1, 0, 8).unwrap();
    let targets = ids.narrow(1, 1, 8).unwrap().contiguous().unwrap();
    let loss = |m: &HookedModel| -> Tensor {
        let logits = m
            .model
            .forward(&inputs, None, &mut Hooks::none(), None)
            .unwrap();
        next_token_loss(&logits, &targets).unwrap()
    };
    let grads = loss(&model).backward().unwrap();
    let h = 1e-5;
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{arch}: no gradient reaches `{name}`"));
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert!(
            g.iter().any(|x| x.abs() > 1e-9),
            "{arch}: gradient of `{name}` is zero"
        );
        // Three elements of each tensor.
        for _ in 0..3 {
            let i = rng.below(g.len());
            let base = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let at = |delta: f64| -> f64 {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &device).unwrap())
                    .unwrap();
                loss(&model).to_scalar::<f64>().unwrap()
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            var.set(&Tensor::from_vec(base, var.shape(), &device).unwrap())
                .unwrap();
            let err = (numeric - g[i]).abs();
            assert!(
                err <= 1e-6 + 1e-4 * numeric.abs().max(g[i].abs()),
                "{arch}: `{name}`[{i}]: autograd {} vs finite difference {numeric}",
                g[i]
            );
        }
    }
}

#[test]
fn llama_gradients_match_finite_differences() {
    check_gradients("LlamaForCausalLM");
}

#[test]
fn gpt2_gradients_match_finite_differences() {
    check_gradients("GPT2LMHeadModel");
}
