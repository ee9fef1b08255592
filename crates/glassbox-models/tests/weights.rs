//! The weights by TransformerLens' names (`glassbox_models::weights`) are the ones the forward
//! pass computes with: on every layout of the projections (one fused q|k|v matrix, GPT-NeoX's
//! per-head interleaving, separate matrices with grouped-query heads, a fused gate|up, an
//! output-gated query) each hook is recomputed from the hook before it and the named weights.

use candle_core::{DType, Tensor};
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

#[path = "support/compare.rs"]
mod compare;
#[path = "support/fixtures.rs"]
mod fixtures;
use compare::{max_abs, max_abs_diff};
use fixtures::fixture;

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

struct Checked<'a> {
    family: &'a str,
    model: &'a HookedModel,
    cache: &'a glassbox_models::ActivationCache,
    checks: usize,
}

impl Checked<'_> {
    fn weight(&self, name: &str) -> Tensor {
        self.model
            .model
            .parameter(name)
            .unwrap()
            .unwrap_or_else(|| panic!("{}: no {name}", self.family))
    }

    fn act(&self, name: &str) -> Tensor {
        self.cache[name].to_dtype(DType::F32).unwrap()
    }

    fn close(&mut self, what: &str, got: &Tensor, want: &Tensor) {
        assert_eq!(got.dims(), want.dims(), "{}: {what}", self.family);
        let scale = max_abs(want);
        let diff = max_abs_diff(got, want);
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "{}: {what} differs by {diff:e}",
            self.family
        );
        self.checks += 1;
    }

    /// A norm's output from its `hook_normalized` and its `w` and `b`.
    fn norm_out(&self, prefix: &str) -> Tensor {
        let mut y = self
            .act(&format!("{prefix}.hook_normalized"))
            .broadcast_mul(&self.weight(&format!("{prefix}.w")))
            .unwrap();
        if self.has(&format!("{prefix}.b")) {
            y = y
                .broadcast_add(&self.weight(&format!("{prefix}.b")))
                .unwrap();
        }
        y
    }

    fn has(&self, name: &str) -> bool {
        self.model.model.parameter_names().iter().any(|n| n == name)
    }
}

/// `x` [b, p, d_model] through per-head `w` [h, d_model, d_head] and `b` [h, d_head]:
/// [b, p, h, d_head].
fn heads(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let (h, d_model, d_head) = w.dims3().unwrap();
    let flat = w
        .transpose(0, 1)
        .unwrap()
        .reshape((d_model, h * d_head))
        .unwrap();
    let y = x.broadcast_matmul(&flat).unwrap();
    let (bs, p, _) = y.dims3().unwrap();
    y.reshape((bs, p, h, d_head))
        .unwrap()
        .broadcast_add(b)
        .unwrap()
}

fn linear(x: &Tensor, w: &Tensor, b: Option<Tensor>) -> Tensor {
    let y = x.broadcast_matmul(w).unwrap();
    match b {
        Some(b) => y.broadcast_add(&b).unwrap(),
        None => y,
    }
}

fn check(family: &str) -> usize {
    let dir = fixture(family);
    let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
    let ids = model.ids_tensor(&model.to_tokens(PROMPT).unwrap()).unwrap();
    let (logits, cache) = model.run_with_cache(&ids, &NameFilter::all()).unwrap();
    let mut c = Checked {
        family,
        model: &model,
        cache: &cache,
        checks: 0,
    };
    let info = model.info().clone();
    let names = model.model.parameter_names();
    for name in &names {
        let w = c.weight(name);
        let field = name.rsplit('.').next().unwrap();
        let expected: Option<Vec<usize>> = match field {
            "W_Q" | "W_K" | "W_V" => Some(vec![info.n_heads, info.d_model, info.d_head]),
            "b_Q" | "b_K" | "b_V" => Some(vec![info.n_heads, info.d_head]),
            "w" | "b" if name.contains("_norm.") => {
                let per_head = w.dims() == [info.d_head];
                let full = w.dims() == [info.n_heads * info.d_head]
                    || w.dims() == [info.n_kv_heads * info.d_head];
                assert!(per_head || full, "{family}: {name} is {:?}", w.dims());
                None
            }
            "b_O" | "b_out" | "w" | "b" => Some(vec![info.d_model]),
            "W_in" | "W_gate" => Some(vec![info.d_model, w.dim(1).unwrap()]),
            "W_U" => Some(vec![info.d_model, info.d_vocab]),
            "W_E" => Some(vec![w.dim(0).unwrap(), info.d_model]),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(w.dims(), expected.as_slice(), "{family}: {name}");
        }
    }

    // embeddings (with Gemma's √d_model folded in, as the pass applies it)
    let embed = c.weight("embed.W_E");
    let rows = embed
        .index_select(&ids.flatten_all().unwrap(), 0)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    c.close("hook_embed", &c.act("hook_embed"), &rows);
    if c.has("pos_embed.W_pos") {
        let t = ids.dim(1).unwrap();
        let rows = c
            .weight("pos_embed.W_pos")
            .narrow(0, 0, t)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        c.close("hook_pos_embed", &c.act("hook_pos_embed"), &rows);
    }

    for l in 0..info.n_layers {
        let p = |s: &str| format!("blocks.{l}.{s}");
        if c.has(&p("attn.W_Q")) {
            let x = c.norm_out(&p("ln1"));
            let group = info.n_heads / info.n_kv_heads;
            for (which, hook) in [("Q", "hook_q"), ("K", "hook_k"), ("V", "hook_v")] {
                let mut want = heads(
                    &x,
                    &c.weight(&p(&format!("attn.W_{which}"))),
                    &c.weight(&p(&format!("attn.b_{which}"))),
                );
                if which != "Q" && group > 1 {
                    // the repeated heads: one of each group is the stored kv head
                    let first: Vec<u32> = (0..info.n_kv_heads as u32)
                        .map(|j| j * group as u32)
                        .collect();
                    let first = Tensor::new(first.as_slice(), want.device()).unwrap();
                    want = want.index_select(&first, 2).unwrap();
                }
                c.close(
                    &p(&format!("attn.{hook}")),
                    &c.act(&p(&format!("attn.{hook}"))),
                    &want,
                );
            }
        }
        if c.has(&p("attn.W_O")) && !c.has(&p("ln1_post.w")) {
            let z = c.act(&p("attn.hook_z"));
            let (b, t, h, d_head) = z.dims4().unwrap();
            let w_o = c.weight(&p("attn.W_O"));
            let flat = w_o.reshape((h * d_head, info.d_model)).unwrap();
            let z = z.reshape((b, t, h * d_head)).unwrap();
            let want = linear(&z, &flat, Some(c.weight(&p("attn.b_O"))));
            c.close(&p("hook_attn_out"), &c.act(&p("hook_attn_out")), &want);
        }
        if c.has(&p("mlp.W_in")) {
            let x = c.norm_out(&p("ln2"));
            let lin = linear(
                &x,
                &c.weight(&p("mlp.W_in")),
                Some(c.weight(&p("mlp.b_in"))),
            );
            if c.has(&p("mlp.W_gate")) {
                let gate = linear(&x, &c.weight(&p("mlp.W_gate")), None);
                c.close(&p("mlp.hook_pre"), &c.act(&p("mlp.hook_pre")), &gate);
                c.close(
                    &p("mlp.hook_pre_linear"),
                    &c.act(&p("mlp.hook_pre_linear")),
                    &lin,
                );
            } else {
                c.close(&p("mlp.hook_pre"), &c.act(&p("mlp.hook_pre")), &lin);
            }
            if !c.has(&p("ln2_post.w")) {
                let out = linear(
                    &c.act(&p("mlp.hook_post")),
                    &c.weight(&p("mlp.W_out")),
                    Some(c.weight(&p("mlp.b_out"))),
                );
                c.close(&p("hook_mlp_out"), &c.act(&p("hook_mlp_out")), &out);
            }
        }
    }
    if model.model.final_softcap().is_none() {
        let x = c.norm_out("ln_final");
        let want = linear(&x, &c.weight("unembed.W_U"), Some(c.weight("unembed.b_U")));
        c.close("logits", &logits.to_dtype(DType::F32).unwrap(), &want);
    }
    // q / k norms are the checkpoint's own weights
    if c.has("blocks.0.attn.q_norm.w") {
        let stored = candle_core::safetensors::load(
            dir.join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        for which in ["q", "k"] {
            let want = stored[&format!("model.layers.0.self_attn.{which}_norm.weight")]
                .to_dtype(DType::F32)
                .unwrap();
            let got = c.weight(&format!("blocks.0.attn.{which}_norm.w"));
            c.close(&format!("attn.{which}_norm.w"), &got, &want);
        }
    }
    // a name the model lacks is None, not an error
    assert!(model
        .model
        .parameter(&format!("blocks.{}.attn.W_Q", info.n_layers))
        .unwrap()
        .is_none());
    assert!(model
        .model
        .parameter("blocks.0.attn.W_nothing")
        .unwrap()
        .is_none());
    c.checks
}

#[test]
fn named_weights_recompute_the_hooks_on_every_projection_layout() {
    for (family, at_least) in [
        ("parity/gpt2", 10),    // fused q|k|v (Conv1D), learned positions
        ("parity/pythia", 10),  // per-head interleaved q|k|v, parallel residual
        ("parity/llama", 10),   // separate q, k, v; grouped-query heads
        ("parity/qwen2", 10),   // q, k, v biases
        ("more/phi3", 10),      // fused gate|up
        ("more/gemma", 10),     // (1 + w) norms
        ("more/qwen3-next", 3), // output-gated query; linear attention; experts
        ("more/nemotron", 10),  // LayerNorm1P, plain relu² MLP
        ("more/gpt-oss", 3),    // biases everywhere, sinks, experts
    ] {
        let checks = check(family);
        assert!(checks >= at_least, "{family}: only {checks} checks ran");
    }
}
