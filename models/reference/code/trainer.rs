//! The training loop: seeded initialisation, seeded batch order, AdamW, cosine schedule.
//!
//! Determinism comes from three choices. Weights are initialised from [`SplitMix64`] streams
//! keyed by the recipe seed and each tensor's name, never from candle's global RNG, and in
//! sorted name order. Batches are drawn from a per-epoch Fisher–Yates shuffle of the documents,
//! also keyed by the seed. The CPU thread count is fixed from the recipe before any tensor
//! work ([`set_threads`]); candle's matmul splits work by output blocks and its reductions run
//! in a fixed order, so the same thread count gives the same bits.
//!
//! The loss is next-token cross-entropy on glassbox's kernels, with its backward (the model's
//! forward pass uses none of candle-nn's fused kernels that lack a backward pass), so
//! gradients reach every weight; `tests/gradients.rs` checks them against finite differences.
//! Every matmul, softmax, norm and activation of the forward and backward passes runs on
//! `glassbox-kernels`, whose results do not depend on the CPU's instruction set or the thread
//! count: the same recipe gives the same bits on any x86-64 CPU with FMA.
//! AdamW runs as two candle-nn optimizers over a split of the variables: matrices decay,
//! norm weights and biases do not.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use glassbox_models::{HookedModel, Hooks};
use serde::{Deserialize, Serialize};

use crate::corpus::{self, CorpusConfig, SegmentCounts};
use crate::recipe::Recipe;
use crate::rng::SplitMix64;
use crate::vocab;
use crate::TrainError;

/// Fixes the CPU thread count for this process, at most the machine's CPUs (more only
/// oversubscribe them; the weights do not depend on the count), and returns the count set.
/// Must run before the first tensor operation: candle and the kernels read
/// `RAYON_NUM_THREADS` when rayon builds its global pool.
pub fn set_threads(n: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let n = n.clamp(1, cpus);
    // Setting the variable is sound here: it happens at start-up, before any thread that
    // reads the environment exists.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    n
}

/// The thread count candle will use in this process.
pub fn current_threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// What the data manifest records about one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    pub documents: usize,
    /// Token ids including each document's `<bos>`.
    pub tokens: usize,
    /// sha256 of the split's text (one document per line, words separated by spaces).
    pub sha256_text: String,
    /// sha256 of the token ids as little-endian u32, the stream the model trains on.
    pub sha256_token_ids: String,
    pub segments: SegmentCounts,
}

/// `data/manifest.json` of a release: how to regenerate the data and what it must hash to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataManifest {
    pub generator: String,
    /// Where the generator's code lives (in the project, and copied into the release).
    pub generator_source: String,
    pub config: CorpusConfig,
    pub vocabulary_size: usize,
    /// The fact table recalled from the weights, as `key -> value` lines.
    pub fact_table: Vec<String>,
    pub train: SplitManifest,
    pub held_out: SplitManifest,
}

/// The generated data, tokenized, with its manifest.
pub struct Data {
    /// Documents of `row` ids each (`<bos>` + seq_len words), back to back.
    pub train: Vec<u32>,
    pub held_out: Vec<u32>,
    pub row: usize,
    pub manifest: DataManifest,
    pub held_out_text: String,
    /// The first documents of the training split, as text, for the data card.
    pub train_sample: String,
}

/// Generates and tokenizes both splits of the recipe's corpus.
pub fn prepare_data(config: &CorpusConfig) -> Result<Data, TrainError> {
    let vocab_words = corpus::vocabulary(config);
    let tok = vocab::build(&vocab_words)?;
    let row = config.seq_len + 1;
    let tokenize =
        |label: &str, n: usize| -> Result<(Vec<u32>, SplitManifest, String), TrainError> {
            let split = corpus::generate(config, label, n);
            let text = corpus::text(&split);
            let mut ids = Vec::with_capacity(n * row);
            for line in text.lines() {
                let doc = vocab::encode(&tok, line)?;
                if doc.len() != row {
                    return Err(TrainError::Internal(format!(
                        "document tokenized to {} ids, expected {row}",
                        doc.len()
                    )));
                }
                ids.extend(doc);
            }
            let manifest = SplitManifest {
                documents: n,
                tokens: ids.len(),
                sha256_text: corpus::sha256_hex(text.as_bytes()),
                sha256_token_ids: corpus::sha256_ids(&ids),
                segments: split.counts,
            };
            Ok((ids, manifest, text))
        };
    let (train, train_m, train_text) = tokenize("train", config.train_documents)?;
    let (held_out, held_m, held_out_text) = tokenize("held_out", config.held_out_documents)?;
    let table = corpus::fact_table(config);
    let manifest = DataManifest {
        generator: corpus::GENERATOR.to_string(),
        generator_source: "crates/glassbox-train/src/corpus.rs (copy: code/corpus.rs)".to_string(),
        config: config.clone(),
        vocabulary_size: vocab_words.len(),
        fact_table: table
            .iter()
            .enumerate()
            .map(|(k, v)| format!("{} -> {}", corpus::key_word(k), corpus::value_word(*v)))
            .collect(),
        train: train_m,
        held_out: held_m,
    };
    let train_sample = train_text
        .lines()
        .take(20)
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(Data {
        train,
        held_out,
        row,
        manifest,
        held_out_text,
        train_sample,
    })
}

/// One line of `training_log.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    pub tokens: usize,
    pub elapsed_s: f64,
    pub tokens_per_s: f64,
}

/// Named f32 weights in sorted name order: a model or checkpoint's contents.
pub type Weights = Vec<(String, Tensor)>;

/// A finished (or stopped) run.
pub struct Run {
    pub model: HookedModel,
    pub varmap: VarMap,
    pub log: Vec<StepRecord>,
    pub checkpoints: Vec<(usize, Weights)>,
    pub steps_done: usize,
    pub threads: usize,
    pub seconds: f64,
}

/// Trains `recipe` on `data` for `steps` steps (≤ the recipe's), calling `on_step` after each.
pub fn train(
    recipe: &Recipe,
    data: &Data,
    steps: usize,
    on_step: &mut dyn FnMut(&StepRecord),
) -> Result<Run, TrainError> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = HookedModel::from_config(&recipe.model, vb)?;
    initialise(&varmap, recipe.seed, recipe.init.std)?;

    let (decay, no_decay) = split_for_decay(&varmap);
    let params = |wd: f64| ParamsAdamW {
        lr: recipe.optimizer.lr,
        beta1: recipe.optimizer.beta1,
        beta2: recipe.optimizer.beta2,
        eps: recipe.optimizer.eps,
        weight_decay: wd,
    };
    let mut opt_decay = AdamW::new(decay, params(recipe.optimizer.weight_decay))?;
    let mut opt_plain = AdamW::new(no_decay, params(0.0))?;

    let batch = recipe.training.batch_size;
    let n_docs = data.train.len() / data.row;
    let mut order = BatchOrder::new(recipe.seed, n_docs);
    let mut log = Vec::with_capacity(steps);
    let mut checkpoints = Vec::new();
    let start = Instant::now();
    let steps = steps.min(recipe.training.steps);
    for step in 1..=steps {
        let docs: Vec<usize> = (0..batch).map(|_| order.next()).collect();
        let (inputs, targets) = batch_tensors(&data.train, data.row, &docs, &device)?;
        let logits = model
            .model
            .forward(&inputs, None, &mut Hooks::none(), None)?;
        let loss = next_token_loss(&logits, &targets)?;
        let grads = loss.backward()?;
        let lr = recipe.learning_rate(step);
        opt_decay.set_learning_rate(lr);
        opt_plain.set_learning_rate(lr);
        opt_decay.step(&grads)?;
        opt_plain.step(&grads)?;

        let elapsed = start.elapsed().as_secs_f64();
        let tokens = step * recipe.tokens_per_step();
        let record = StepRecord {
            step,
            loss: loss.to_scalar::<f32>()?,
            lr,
            tokens,
            elapsed_s: elapsed,
            tokens_per_s: tokens as f64 / elapsed.max(1e-9),
        };
        on_step(&record);
        log.push(record);
        if recipe.training.checkpoints.contains(&step) {
            checkpoints.push((step, snapshot(&varmap)?));
        }
    }
    Ok(Run {
        model,
        varmap,
        log,
        checkpoints,
        steps_done: steps,
        threads: current_threads(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Mean next-token cross-entropy of logits [b, t, v] against targets [b, t] (u32).
pub fn next_token_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor, TrainError> {
    let (b, t, v) = logits.dims3()?;
    let flat = logits.reshape((b * t, v))?;
    let per_token =
        glassbox_models::kernel_ops::cross_entropy_rows(&flat, &targets.reshape(b * t)?)?;
    Ok(per_token.mean(0)?)
}

/// Inputs (first `row-1` ids) and targets (last `row-1`) of the chosen documents.
pub fn batch_tensors(
    ids: &[u32],
    row: usize,
    docs: &[usize],
    device: &Device,
) -> Result<(Tensor, Tensor), TrainError> {
    let t = row - 1;
    let mut inputs = Vec::with_capacity(docs.len() * t);
    let mut targets = Vec::with_capacity(docs.len() * t);
    for &d in docs {
        let doc = &ids[d * row..(d + 1) * row];
        inputs.extend_from_slice(&doc[..t]);
        targets.extend_from_slice(&doc[1..]);
    }
    Ok((
        Tensor::from_vec(inputs, (docs.len(), t), device)?,
        Tensor::from_vec(targets, (docs.len(), t), device)?,
    ))
}

/// Documents in a fresh seeded shuffle each epoch.
struct BatchOrder {
    seed: u64,
    epoch: usize,
    perm: Vec<usize>,
    at: usize,
}

impl BatchOrder {
    fn new(seed: u64, n: usize) -> Self {
        let mut o = BatchOrder {
            seed,
            epoch: 0,
            perm: (0..n).collect(),
            at: 0,
        };
        o.reshuffle();
        o
    }

    fn reshuffle(&mut self) {
        self.perm.sort_unstable();
        SplitMix64::keyed(self.seed, &format!("order-epoch-{}", self.epoch))
            .shuffle(&mut self.perm);
        self.at = 0;
    }

    fn next(&mut self) -> usize {
        if self.at == self.perm.len() {
            self.epoch += 1;
            self.reshuffle();
        }
        self.at += 1;
        self.perm[self.at - 1]
    }
}

/// True for parameters that are scales or offsets (norm weights, biases): no weight decay,
/// initialised to 1 (norm weights) or 0 (biases).
fn is_norm_or_bias(name: &str, rank: usize) -> bool {
    rank == 1 || name.ends_with(".bias")
}

/// Overwrites every variable from seeded streams: matrices ~ N(0, std²), norms 1, biases 0.
pub fn initialise(varmap: &VarMap, seed: u64, std: f64) -> Result<(), TrainError> {
    let vars = sorted_vars(varmap);
    for (name, var) in vars {
        let shape = var.shape().clone();
        let n = shape.elem_count();
        let values: Vec<f32> = if name.ends_with(".bias") {
            vec![0.0; n]
        } else if shape.rank() == 1 {
            vec![1.0; n]
        } else {
            let mut rng = SplitMix64::keyed(seed, &name);
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        };
        var.set(&Tensor::from_vec(values, shape, var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn split_for_decay(varmap: &VarMap) -> (Vec<Var>, Vec<Var>) {
    let (plain, decay): (Vec<_>, Vec<_>) = sorted_vars(varmap)
        .into_iter()
        .partition(|(name, var)| is_norm_or_bias(name, var.rank()));
    (
        decay.into_iter().map(|(_, v)| v).collect(),
        plain.into_iter().map(|(_, v)| v).collect(),
    )
}

/// A copy of the current weights, sorted by name.
pub fn snapshot(varmap: &VarMap) -> Result<Weights, TrainError> {
    sorted_vars(varmap)
        .into_iter()
        .map(|(n, v)| Ok((n, v.as_tensor().copy()?)))
        .collect()
}

/// safetensors bytes of `weights` (f32, with `format: pt` metadata as the Hub expects).
pub fn safetensors_bytes(weights: &Weights) -> Result<Vec<u8>, TrainError> {
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize(weights.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .map_err(|e| TrainError::Internal(format!("serializing weights: {e}")))
}
