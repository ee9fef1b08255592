//! Evaluation of a trained model against the corpus's known mechanisms.
//!
//! - **Held-out loss**: next-token cross-entropy on the held-out split.
//! - **Head roles**: glassbox-analysis' scores on random tokens repeated twice, each head's
//!   *induction score* (mean attention from a token in the repeat to the token after its
//!   first occurrence) and *previous-token score* (mean attention to the position before),
//!   as TransformerLens defines them. A head scoring ≥ [`ROLE_THRESHOLD`] has that role.
//! - **Ablation**: on `<bos>` + T random tokens repeated, the loss on the repeated half with
//!   the induction heads' outputs (`hook_z`) zeroed, against the clean loss and against
//!   zeroing as many other heads of the same layers.
//! - **Fact recall**: accuracy of `kNN is` → the table's value, from the weights alone.
//!
//! The same figures drive `reproduce`'s comparability verdict.

use candle_core::{Device, Tensor, D};
use glassbox_models::{HookedModel, Hooks, Intervention, NameFilter, Selection};
use serde::{Deserialize, Serialize};

use crate::corpus::{self, CorpusConfig, SPECIALS};
use crate::rng::SplitMix64;
use crate::TrainError;

/// Score at which a head is said to have a role.
pub const ROLE_THRESHOLD: f32 = 0.4;
/// Length of the random sequence that is repeated for head scores.
pub const REPEAT_LEN: usize = 10;
/// Number of repeated random sequences for the ablation loss.
pub const REPEAT_BATCH: usize = 16;
/// `glassbox heads` defaults: random half length and batch of its probe.
pub const HEADS_SEQ_LEN: usize = 10;
pub const HEADS_BATCH: usize = 16;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HeadScore {
    pub layer: usize,
    pub head: usize,
    pub induction: f32,
    pub previous_token: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    pub held_out_loss: f32,
    pub heads: Vec<HeadScore>,
    /// `(layer, head)` of heads with induction score ≥ the threshold.
    pub induction_heads: Vec<(usize, usize)>,
    pub previous_token_heads: Vec<(usize, usize)>,
    /// Loss on the repeated half of repeated random tokens.
    pub repeat_loss_clean: f32,
    pub repeat_loss_induction_ablated: f32,
    /// The same number of the other heads in the same layers, zeroed instead.
    pub repeat_loss_other_heads_ablated: f32,
    pub fact_recall_accuracy: f32,
    /// Greedy continuations of [`SAMPLE_PROMPTS`]: (prompt, continuation).
    pub samples: Vec<(String, String)>,
}

/// Prompts continued in the release's `samples.txt`, one per planted mechanism.
pub const SAMPLE_PROMPTS: &[&str] = &[
    "the old",
    "k07 is",
    "x3 = v05 , x7 = v11 . the cat sees a dog . x3 =",
    "fox v02 sees x1 k11 red . a bird likes the king . fox v02",
];
/// Tokens generated per sample.
pub const SAMPLE_TOKENS: usize = 8;

impl Evaluation {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s += &format!("- held-out loss: {:.3}\n", self.held_out_loss);
        s += &format!(
            "- induction heads (score ≥ {ROLE_THRESHOLD}): {}; previous-token heads: {}\n",
            fmt_heads(&self.induction_heads),
            fmt_heads(&self.previous_token_heads)
        );
        let best = self
            .heads
            .iter()
            .max_by(|a, b| a.induction.total_cmp(&b.induction));
        if let Some(h) = best {
            s += &format!(
                "- best induction score: {:.3} (L{}H{}), `glassbox heads` (seed 0: {HEADS_BATCH} sequences of {HEADS_SEQ_LEN} random tokens, repeated)\n",
                h.induction, h.layer, h.head
            );
        }
        s += &format!(
            "- loss on the repeated half: {:.3} clean, {:.3} with the induction heads zero-ablated, {:.3} with other heads of those layers ablated instead\n",
            self.repeat_loss_clean, self.repeat_loss_induction_ablated, self.repeat_loss_other_heads_ablated
        );
        s += &format!(
            "- fact recall (`kNN is` → value, from the weights): {:.1} %\n",
            100.0 * self.fact_recall_accuracy
        );
        s
    }
}

/// `L0H1, L1H3` or `none`.
pub fn fmt_heads(heads: &[(usize, usize)]) -> String {
    if heads.is_empty() {
        return "none".into();
    }
    heads
        .iter()
        .map(|(l, h)| format!("L{l}H{h}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs every evaluation.
pub fn evaluate(
    model: &HookedModel,
    data: &CorpusConfig,
    held_out: &[u32],
    row: usize,
) -> Result<Evaluation, TrainError> {
    let held_out_loss = held_out_loss(model, held_out, row)?;
    let repeated = repeated_tokens(data, model.device())?;
    let heads = head_scores(model)?;
    let role = |f: fn(&HeadScore) -> f32| -> Vec<(usize, usize)> {
        heads
            .iter()
            .filter(|h| f(h) >= ROLE_THRESHOLD)
            .map(|h| (h.layer, h.head))
            .collect()
    };
    let induction_heads = role(|h| h.induction);
    let previous_token_heads = role(|h| h.previous_token);
    let clean = repeat_loss(model, &repeated, &[])?;
    let ablated = repeat_loss(model, &repeated, &induction_heads)?;
    let others = other_heads(model, &induction_heads, &heads);
    let other_ablated = repeat_loss(model, &repeated, &others)?;
    Ok(Evaluation {
        held_out_loss,
        heads,
        induction_heads,
        previous_token_heads,
        repeat_loss_clean: clean,
        repeat_loss_induction_ablated: ablated,
        repeat_loss_other_heads_ablated: other_ablated,
        fact_recall_accuracy: fact_recall(model, data)?,
        samples: samples(model, data)?,
    })
}

/// Mean next-token loss over the held-out documents (rows of `row` ids).
pub fn held_out_loss(model: &HookedModel, ids: &[u32], row: usize) -> Result<f32, TrainError> {
    let mut total = 0f64;
    let mut n = 0usize;
    for chunk in ids.chunks(row * 32) {
        let docs = chunk.len() / row;
        let (inputs, targets) = crate::trainer::batch_tensors(
            chunk,
            row,
            &(0..docs).collect::<Vec<_>>(),
            model.device(),
        )?;
        let logits = model.run(&inputs)?;
        let loss = crate::trainer::next_token_loss(&logits, &targets)?.to_scalar::<f32>()?;
        total += loss as f64 * docs as f64;
        n += docs;
    }
    Ok((total / n.max(1) as f64) as f32)
}

/// [`REPEAT_BATCH`] × (`<bos>` + r + r) with r = [`REPEAT_LEN`] random ordinary tokens.
pub fn repeated_tokens(data: &CorpusConfig, device: &Device) -> Result<Tensor, TrainError> {
    let vocab = corpus::vocabulary(data).len();
    let mut rng = SplitMix64::keyed(data.seed, "eval-repeated-tokens");
    let mut ids = Vec::with_capacity(REPEAT_BATCH * (2 * REPEAT_LEN + 1));
    for _ in 0..REPEAT_BATCH {
        let r: Vec<u32> = (0..REPEAT_LEN)
            .map(|_| (SPECIALS + rng.below(vocab - SPECIALS)) as u32)
            .collect();
        ids.push(0);
        ids.extend(&r);
        ids.extend(&r);
    }
    Ok(Tensor::from_vec(
        ids,
        (REPEAT_BATCH, 2 * REPEAT_LEN + 1),
        device,
    )?)
}

/// Induction and previous-token score of every head, by glassbox-analysis' probe with the
/// settings the card names ([`HEADS_SEQ_LEN`], [`HEADS_BATCH`], seed 0) on the sequences the
/// release's tokenizer makes (`<bos>` first; `<bos>`, `<unk>`, `<pad>` never drawn), so that
/// the release's figures are the ones `glassbox heads` prints for it — whether or not the
/// model in hand carries that tokenizer (one trained in memory does not).
pub fn head_scores(model: &HookedModel) -> Result<Vec<HeadScore>, TrainError> {
    let sequences = glassbox_analysis::heads::Sequences {
        prefix: vec![0],
        exclude: (0..SPECIALS as u32).collect(),
    };
    let s = glassbox_analysis::heads::run_on(model, HEADS_SEQ_LEN, HEADS_BATCH, 0, &sequences)?;
    let mut scores = Vec::new();
    for (row, &layer) in s.layers.iter().enumerate() {
        for head in 0..s.n_heads {
            scores.push(HeadScore {
                layer,
                head,
                induction: s.induction[row][head],
                previous_token: s.previous_token[row][head],
            });
        }
    }
    Ok(scores)
}

/// Loss of predicting the repeated half, with `ablate` heads' `hook_z` zeroed.
pub fn repeat_loss(
    model: &HookedModel,
    repeated: &Tensor,
    ablate: &[(usize, usize)],
) -> Result<f32, TrainError> {
    let mut hooks = Hooks::none();
    for layer in ablate
        .iter()
        .map(|(l, _)| *l)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let heads = ablate
            .iter()
            .filter(|(l, _)| *l == layer)
            .map(|(_, h)| *h)
            .collect();
        let filter = NameFilter::new(&[format!("blocks.{layer}.attn.hook_z")])
            .map_err(|e| TrainError::Internal(e.to_string()))?;
        hooks.intervene(filter, Intervention::Zero, Selection::Heads(heads));
    }
    let logits = model.run_with_hooks(repeated, &mut hooks)?;
    let t = REPEAT_LEN;
    // Positions t+1 .. 2t-1 predict tokens t+2 .. 2t: the repeat, after its first token.
    let pred = logits.narrow(1, t + 1, t - 1)?;
    let target = repeated.narrow(1, t + 2, t - 1)?;
    Ok(
        crate::trainer::next_token_loss(&pred.contiguous()?, &target.contiguous()?)?
            .to_scalar::<f32>()?,
    )
}

/// As many heads as `chosen`, from the same layers but not chosen, least induction-like first.
fn other_heads(
    model: &HookedModel,
    chosen: &[(usize, usize)],
    scores: &[HeadScore],
) -> Vec<(usize, usize)> {
    let _ = model;
    let layers: std::collections::BTreeSet<usize> = chosen.iter().map(|(l, _)| *l).collect();
    let mut pool: Vec<&HeadScore> = scores
        .iter()
        .filter(|h| layers.contains(&h.layer) && !chosen.contains(&(h.layer, h.head)))
        .collect();
    pool.sort_by(|a, b| a.induction.total_cmp(&b.induction));
    pool.iter()
        .take(chosen.len())
        .map(|h| (h.layer, h.head))
        .collect()
}

/// Fraction of fact keys for which `<bos> kNN is` predicts the table's value.
pub fn fact_recall(model: &HookedModel, data: &CorpusConfig) -> Result<f32, TrainError> {
    let vocab = corpus::vocabulary(data);
    let id = |w: &str| vocab.iter().position(|v| v == w).map(|i| i as u32);
    let is = id("is").ok_or_else(|| TrainError::Internal("no `is` in the vocabulary".into()))?;
    let table = corpus::fact_table(data);
    let mut ids = Vec::new();
    let mut expected = Vec::new();
    for (k, v) in table.iter().enumerate() {
        let key = id(&corpus::key_word(k)).unwrap_or(1);
        ids.extend([0, key, is]);
        expected.push(id(&corpus::value_word(*v)).unwrap_or(1));
    }
    let n = table.len();
    let inputs = Tensor::from_vec(ids, (n, 3), model.device())?;
    let logits = model.run(&inputs)?;
    let predicted = logits
        .narrow(1, 2, 1)?
        .squeeze(1)?
        .argmax(D::Minus1)?
        .to_vec1::<u32>()?;
    let correct = predicted
        .iter()
        .zip(&expected)
        .filter(|(p, e)| p == e)
        .count();
    Ok(correct as f32 / n as f32)
}

/// Mean KL(p ‖ q) between two models' next-token distributions over the held-out documents.
pub fn mean_kl(
    p_model: &HookedModel,
    q_model: &HookedModel,
    ids: &[u32],
    row: usize,
) -> Result<f32, TrainError> {
    let mut total = 0f64;
    let mut n = 0usize;
    for chunk in ids.chunks(row * 32) {
        let docs = chunk.len() / row;
        let (inputs, _) = crate::trainer::batch_tensors(
            chunk,
            row,
            &(0..docs).collect::<Vec<_>>(),
            p_model.device(),
        )?;
        let lp = candle_nn::ops::log_softmax(&p_model.run(&inputs)?, D::Minus1)?;
        let lq = candle_nn::ops::log_softmax(&q_model.run(&inputs)?, D::Minus1)?;
        let kl = (lp.exp()? * (&lp - &lq)?)?.sum(D::Minus1)?; // [b, t]
        total += kl.sum_all()?.to_scalar::<f32>()? as f64;
        n += kl.elem_count();
    }
    Ok((total / n.max(1) as f64) as f32)
}

/// Greedy continuations of [`SAMPLE_PROMPTS`] (words split on spaces, `<bos>` first).
pub fn samples(
    model: &HookedModel,
    data: &CorpusConfig,
) -> Result<Vec<(String, String)>, TrainError> {
    let vocab = corpus::vocabulary(data);
    let mut out = Vec::new();
    for prompt in SAMPLE_PROMPTS {
        let mut ids: Vec<u32> = vec![0];
        for w in prompt.split_whitespace() {
            let id = vocab.iter().position(|v| v == w).ok_or_else(|| {
                TrainError::Internal(format!("sample prompt word `{w}` is not in the vocabulary"))
            })?;
            ids.push(id as u32);
        }
        let mut words = Vec::new();
        for _ in 0..SAMPLE_TOKENS {
            let logits = model.run(&Tensor::new(ids.as_slice(), model.device())?.unsqueeze(0)?)?;
            let last = logits.squeeze(0)?.get(ids.len() - 1)?;
            let next = last.argmax(D::Minus1)?.to_scalar::<u32>()?;
            ids.push(next);
            words.push(vocab.get(next as usize).cloned().unwrap_or_default());
        }
        out.push((prompt.to_string(), words.join(" ")));
    }
    Ok(out)
}
