//! On a model with a known mechanism, the analyses find it.
//!
//! The model is a 2-layer, attention-only GPT-2 whose weights are written by hand (MLPs are
//! zero) so that it implements the induction circuit exactly:
//!
//! - the residual stream has four 64-dimensional blocks: the token (a row of a 64×64
//!   Hadamard matrix, zero-mean so LayerNorm only rescales), the position (another row), a
//!   "previous token" block, and a spare;
//! - head L0H0 is a previous-token head: its query maps position p's code to position
//!   p−1's, its key reads the position, its value copies the token into the previous-token
//!   block;
//! - head L1H0 is an induction head: its query reads the current token, its key the
//!   previous-token block, so it attends to the position after the earlier occurrence of the
//!   current token, and its value writes that position's token, three times over, into the
//!   token block — which the tied unembedding reads as the prediction;
//! - every other head has zero weights.
//!
//! `heads` must rank L0H0 first for previous-token and L1H0 first for induction, and ablating
//! either must raise the loss on the repeated half of a repeated random sequence, while
//! ablating a dead head changes nothing.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use glassbox_analysis::ablation::{self, AblationMethod, AblationTarget};
use glassbox_analysis::heads;
use glassbox_models::{HookedModel, LoadOptions};
use rand::seq::SliceRandom;
use rand::SeedableRng;

const BLOCK: usize = 64;
const D_MODEL: usize = 4 * BLOCK;
const N_HEADS: usize = 4;
const VOCAB: usize = BLOCK - 1; // Hadamard rows 1..64 (row 0 is all ones, not zero-mean)
const N_CTX: usize = BLOCK - 1;
const TOKEN: usize = 0;
const POSITION: usize = BLOCK;
const PREVIOUS: usize = 2 * BLOCK;

fn hadamard(i: usize, j: usize) -> f32 {
    if (i & j).count_ones().is_multiple_of(2) {
        1.0
    } else {
        -1.0
    }
}

/// The code of token or position `i`: Hadamard row i + 1.
fn code(i: usize, j: usize) -> f32 {
    hadamard(i + 1, j)
}

struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn put(&mut self, name: &str, rows: usize, cols: usize, f: impl Fn(usize, usize) -> f32) {
        let mut v = vec![0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                v[r * cols + c] = f(r, c);
            }
        }
        let t = if rows == 1 {
            Tensor::from_vec(v, cols, &Device::Cpu)
        } else {
            Tensor::from_vec(v, (rows, cols), &Device::Cpu)
        };
        self.0.insert(format!("transformer.{name}"), t.unwrap());
    }
}

/// Writes the hand-built model as a Hub snapshot and loads it.
fn induction_model() -> HookedModel {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "glassbox-induction-{}-{unique}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = Weights(HashMap::new());
    w.put("wte.weight", VOCAB, D_MODEL, |t, j| {
        if (TOKEN..TOKEN + BLOCK).contains(&j) {
            code(t, j - TOKEN)
        } else {
            0.0
        }
    });
    w.put("wpe.weight", N_CTX, D_MODEL, |p, j| {
        if (POSITION..POSITION + BLOCK).contains(&j) {
            code(p, j - POSITION)
        } else {
            0.0
        }
    });
    let in_block = |j: usize, start: usize| (start..start + BLOCK).contains(&j);
    // LayerNorm rescales the residual by 1/rms: √2 at layer 0 (two codes), √(4/3) at layer 1
    let (s0, s1) = (2f32.sqrt(), (4f32 / 3.0).sqrt());
    for layer in 0..2 {
        let h = |n: &str| format!("h.{layer}.{n}");
        for ln in ["ln_1", "ln_2"] {
            w.put(&h(&format!("{ln}.weight")), 1, D_MODEL, |_, _| 1.0);
            w.put(&h(&format!("{ln}.bias")), 1, D_MODEL, |_, _| 0.0);
        }
        // c_attn: [d_model, 3·d_model] = q | k | v, head 0 in the first 64 columns of each
        w.put(&h("attn.c_attn.weight"), D_MODEL, 3 * D_MODEL, |i, c| {
            let (part, col) = (c / D_MODEL, c % D_MODEL);
            if col >= BLOCK {
                return 0.0; // heads 1..3 are dead
            }
            match (layer, part) {
                // previous-token head: query = shift(position), key = position
                (0, 0) if in_block(i, POSITION) => {
                    (1..N_CTX)
                        .map(|p| code(p, i - POSITION) * code(p - 1, col))
                        .sum::<f32>()
                        / BLOCK as f32
                }
                (0, 1) if i == POSITION + col => 1.0,
                // induction head: query = token, key = previous token
                (1, 0) if i == TOKEN + col => 1.5,
                (1, 1) if i == PREVIOUS + col => 1.0,
                // both heads' values read the token
                (_, 2) if i == TOKEN + col => 1.0,
                _ => 0.0,
            }
        });
        w.put(&h("attn.c_attn.bias"), 1, 3 * D_MODEL, |_, _| 0.0);
        // c_proj: [z dims, d_model]; head 0's z is rows 0..64
        w.put(
            &h("attn.c_proj.weight"),
            D_MODEL,
            D_MODEL,
            |z, j| match layer {
                _ if z >= BLOCK => 0.0,
                0 if j == PREVIOUS + z => 1.0 / s0,
                1 if j == TOKEN + z => 3.0 / s1,
                _ => 0.0,
            },
        );
        w.put(&h("attn.c_proj.bias"), 1, D_MODEL, |_, _| 0.0);
        w.put(&h("mlp.c_fc.weight"), D_MODEL, 16, |_, _| 0.0);
        w.put(&h("mlp.c_fc.bias"), 1, 16, |_, _| 0.0);
        w.put(&h("mlp.c_proj.weight"), 16, D_MODEL, |_, _| 0.0);
        w.put(&h("mlp.c_proj.bias"), 1, D_MODEL, |_, _| 0.0);
    }
    w.put("ln_f.weight", 1, D_MODEL, |_, _| 1.0);
    w.put("ln_f.bias", 1, D_MODEL, |_, _| 0.0);
    candle_core::safetensors::save(&w.0, dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_embd": D_MODEL,
        "n_head": N_HEADS,
        "n_layer": 2,
        "n_inner": 16,
        "n_positions": N_CTX,
        "vocab_size": VOCAB,
        "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": true,
        "tie_word_embeddings": true,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    model
}

#[test]
fn head_scores_find_the_previous_token_and_induction_heads() {
    let model = induction_model();
    let scores = heads::run(&model, 20, 4, 0).unwrap();
    let best = |role: &str| scores.top(role, 1)[0].clone();
    let b = best("previous_token");
    assert_eq!(
        (b.layer, b.head),
        (0, 0),
        "strongest previous-token head {b:?}"
    );
    assert!(b.score > 0.9 && b.beats_chance, "previous-token {b:?}");
    let b = best("induction");
    assert_eq!((b.layer, b.head), (1, 0), "strongest induction head {b:?}");
    assert!(b.score > 0.8 && b.beats_chance, "induction {b:?}");
    // nothing else holds a role: the second-strongest induction head is not above chance
    assert!(
        !scores.top("induction", 2)[1].beats_chance,
        "{:?}",
        scores.top("induction", 2)
    );
    // the dead heads attend uniformly: no role stands out
    assert!(scores.induction[0][0] < 0.2 && scores.previous_token[1][0] < 0.2);
    for layer in 0..2 {
        for head in 1..N_HEADS {
            assert!(scores.induction[layer][head] < 0.3, "L{layer}H{head}");
        }
    }
}

#[test]
fn ablating_the_circuit_raises_the_loss_on_the_repeated_half() {
    let model = induction_model();
    let n = 20;
    // a start token, then n distinct tokens twice: each token of the second copy has exactly
    // one earlier occurrence to induct from (position 0 has no previous token, so the start
    // token, which never recurs, takes it)
    let mut tokens: Vec<u32> = (0..VOCAB as u32).collect();
    tokens.shuffle(&mut rand::rngs::StdRng::seed_from_u64(42));
    let (start, half) = (tokens[0], &tokens[1..=n]);
    let seq: Vec<u32> = std::iter::once(start)
        .chain(half.iter().copied())
        .chain(half.iter().copied())
        .collect();
    let reference = heads::repeated_random_tokens(VOCAB, n + 1, 4, 7, &[], &[]).unwrap();
    // per-token losses: index i predicts token i+1; the second copy starts at n + 1, and
    // from there on every next token is predictable
    let repeated = n + 1..2 * n;
    let run = |targets: &[AblationTarget], method| {
        ablation::run(&model, &seq, targets, method, &reference).unwrap()
    };
    let intact = run(&[], AblationMethod::Zero);
    let repeated_loss: f32 = intact.baseline_per_token[repeated.clone()]
        .iter()
        .sum::<f32>()
        / repeated.len() as f32;
    assert!(
        repeated_loss < 0.5,
        "the circuit predicts the repeated half (loss {repeated_loss})"
    );
    for target in [
        AblationTarget::Head { layer: 1, head: 0 },
        AblationTarget::Head { layer: 0, head: 0 },
    ] {
        for method in [
            AblationMethod::Zero,
            AblationMethod::Mean,
            AblationMethod::Resample { seed: 3 },
        ] {
            let r = run(&[target], method);
            let delta = r.delta_over(repeated.clone());
            assert!(
                delta > 1.0,
                "{} {method:?}: repeated-half loss rose by {delta}",
                target.label()
            );
        }
    }
    let dead = run(
        &[AblationTarget::Head { layer: 1, head: 2 }],
        AblationMethod::Zero,
    );
    assert_eq!(
        dead.ablated_per_token, dead.baseline_per_token,
        "a dead head"
    );
}
