//! LoRA fine-tuning: a base model frozen, fresh low-rank adapters on the targeted linear
//! layers trained by AdamW on next-token loss, written as a PEFT adapter.
//!
//! Deterministic like [`crate::trainer`]: the adapters are initialised from our seeded
//! generator (A as PEFT's Kaiming-uniform, B zeros, so training starts from the base model),
//! the text is packed into rows of `context + 1` tokens in file order and the rows visited in
//! a seeded order, and every product runs on the kernels, whose bits do not depend on the CPU
//! or the thread count.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use glassbox_formats::peft::{LoraAdapter, LoraConfig};
use glassbox_models::hooks::Hooks;
use glassbox_models::lora::{CreateSpec, LoraSource};
use glassbox_models::{HookedModel, LoadOptions};
use serde::Serialize;

use crate::rng::SplitMix64;
use crate::trainer::next_token_loss;
use crate::TrainError;

/// What `glassbox finetune` was asked for.
#[derive(Clone, Debug)]
pub struct FinetuneOptions {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub use_rslora: bool,
    pub steps: usize,
    pub batch: usize,
    pub context: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

/// One optimisation step, as logged.
#[derive(Clone, Debug, Serialize)]
pub struct FinetuneStep {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    pub tokens: usize,
    pub elapsed_s: f64,
}

/// What a run tells its caller while it runs.
pub enum Progress<'a> {
    /// Something about the inputs worth saying before the steps (printed as a note).
    Note(&'a str),
    Step(&'a FinetuneStep),
}

/// Share of the training tokens past which text the vocabulary does not know is said: the
/// adapter would learn to predict the unknown token.
const UNKNOWN_SHARE_NOTED: f64 = 0.05;

/// A finished run: the adapter (not yet written) and its log.
pub struct Finetuned {
    pub adapter: LoraAdapter,
    pub log: Vec<FinetuneStep>,
    pub rows: usize,
    pub modules: usize,
    /// The mean next-token loss over the same rows (the first [`EVAL_ROWS`]) before the first
    /// step and after the last: a step's loss is one batch's, and two batches differ by more
    /// than a short run changes.
    pub loss_before: f32,
    pub loss_after: f32,
    pub eval_rows: usize,
}

/// Rows the before/after loss is measured on (all of them when there are fewer).
pub const EVAL_ROWS: usize = 64;

/// The mean next-token loss of `model` over `rows` rows of `ids` (each `context + 1` tokens),
/// `batch` rows a pass.
fn mean_loss(
    model: &HookedModel,
    ids: &[u32],
    rows: usize,
    context: usize,
    batch: usize,
) -> Result<f32, TrainError> {
    let row = context + 1;
    let (mut sum, mut count) = (0f64, 0usize);
    for start in (0..rows).step_by(batch) {
        let n = batch.min(rows - start);
        let mut inputs = Vec::with_capacity(n * context);
        let mut targets = Vec::with_capacity(n * context);
        for r in start..start + n {
            let doc = &ids[r * row..(r + 1) * row];
            inputs.extend_from_slice(&doc[..context]);
            targets.extend_from_slice(&doc[1..]);
        }
        let inputs = Tensor::from_vec(inputs, (n, context), &Device::Cpu)?;
        let targets = Tensor::from_vec(targets, (n, context), &Device::Cpu)?;
        let logits = model
            .model
            .forward(&inputs, None, &mut Hooks::none(), None)?
            .detach();
        // the loss is a mean over the batch's tokens: weighed back by them
        sum +=
            next_token_loss(&logits, &targets)?.to_scalar::<f32>()? as f64 * (n * context) as f64;
        count += n * context;
    }
    Ok((sum / count as f64) as f32)
}

/// Texts of a JSONL file: one object per line with a `"text"` string.
pub fn read_texts(path: &Path) -> Result<Vec<String>, TrainError> {
    let text = glassbox_formats::input::read_text(
        path,
        "training data",
        glassbox_formats::input::limit::CORPUS,
    )?;
    let bad = |line: usize, why: &str| TrainError::Input {
        path: path.display().to_string(),
        why: format!("line {line}: {why}"),
    };
    let mut texts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(i + 1, &format!("not JSON ({e})")))?;
        let t = v
            .get("text")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad(i + 1, "no \"text\" string"))?;
        texts.push(t.to_string());
    }
    if texts.is_empty() {
        return Err(TrainError::Input {
            path: path.display().to_string(),
            why: "no texts (give one JSON object with a \"text\" string per line)".into(),
        });
    }
    Ok(texts)
}

/// Fine-tunes adapters on `model_path` over `texts`; `on_progress` sees notes on the inputs,
/// then each logged step.
pub fn finetune(
    model_path: &Path,
    base: LoadOptions,
    texts: &[String],
    opts: &FinetuneOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Finetuned, TrainError> {
    let invalid = |why: String| TrainError::Input {
        path: model_path.display().to_string(),
        why,
    };
    if opts.rank == 0 || opts.batch == 0 || opts.context < 1 || opts.steps == 0 {
        return Err(TrainError::Setting(
            "rank, batch, context and steps must be positive".into(),
        ));
    }
    // Not-a-number or infinite settings trained to a NaN adapter, which was then written.
    for (name, value, least) in [
        ("--lora-alpha", opts.alpha, f64::MIN_POSITIVE),
        ("--lr", opts.lr, f64::MIN_POSITIVE),
        ("--weight-decay", opts.weight_decay, 0.0),
    ] {
        // Finite as the f32 the optimizer computes in, too (1e39 is an f32 infinity).
        if !(value.is_finite() && value >= least && value <= f32::MAX as f64) {
            return Err(TrainError::Setting(format!(
                "{name} {value}: give a finite number{}",
                if least > 0.0 {
                    " above 0"
                } else {
                    " of at least 0"
                }
            )));
        }
    }
    let config = LoraConfig {
        r: opts.rank,
        lora_alpha: opts.alpha,
        target_modules: opts.targets.clone(),
        lora_dropout: 0.0,
        use_rslora: opts.use_rslora,
        fan_in_fan_out: false,
        base_model_name_or_path: Some(model_path.display().to_string()),
        rank_pattern: Default::default(),
        alpha_pattern: Default::default(),
    };
    let spec = CreateSpec {
        config,
        seed: opts.seed,
        made: Arc::new(Mutex::new(Default::default())),
    };
    let load = LoadOptions {
        lora: Some(LoraSource::Create(spec.clone())),
        ..base
    };
    let model = HookedModel::load(model_path, &load)?;
    // Training keeps every layer's activations for the backward pass: refused here, with the
    // estimate and the budget, rather than aborting in the allocator.
    let layers = model.info().n_layers.max(1);
    // Past the positions it was trained on a rotary model extrapolates: tuning it there
    // teaches it positions it never serves.
    let n_ctx = model.info().n_ctx;
    if opts.context > n_ctx {
        return Err(TrainError::Setting(format!(
            "--context {}: the model has {n_ctx} positions; give at most {n_ctx}",
            opts.context
        )));
    }
    model.check_size(opts.batch.saturating_mul(layers), opts.context)?;
    let mut spec = spec;
    // GPT-2's Conv1D layers are [in, out]: PEFT marks their adapters fan_in_fan_out.
    spec.config.fan_in_fan_out = model.config["model_type"].as_str() == Some("gpt2");

    let tokenizer = model
        .tokenizer
        .as_ref()
        .ok_or_else(|| invalid("the model has no tokenizer".into()))?;
    let mut ids = Vec::new();
    for t in texts {
        ids.extend(tokenizer.encode(t)?);
    }
    if let Some(unk) = tokenizer.unknown_id() {
        let unknown = ids.iter().filter(|&&i| i == unk).count();
        if !ids.is_empty() && unknown as f64 >= UNKNOWN_SHARE_NOTED * ids.len() as f64 {
            let name = tokenizer.str_tokens(&[unk])?.concat();
            on_progress(Progress::Note(&format!(
                "{unknown} of the {} training tokens ({:.0} %) are the unknown token `{name}` (text outside the model's vocabulary): the adapter learns to predict `{name}` there",
                ids.len(),
                100.0 * unknown as f64 / ids.len() as f64
            )));
        }
    }
    let row = opts.context + 1;
    let rows = ids.len() / row;
    if rows == 0 {
        return Err(invalid(format!(
            "{} tokens of text do not fill one row of {row} (lower --context)",
            ids.len()
        )));
    }

    let made = spec
        .made
        .lock()
        .map_err(|_| TrainError::Internal("adapter lock".into()))?
        .clone();
    let vars: Vec<candle_core::Var> = made
        .values()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let modules = made.len();
    let mut optimizer = AdamW::new(
        vars,
        ParamsAdamW {
            lr: opts.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: opts.weight_decay,
        },
    )?;
    let device = Device::Cpu;
    let eval_rows = rows.min(EVAL_ROWS);
    let loss_before = mean_loss(&model, &ids, eval_rows, opts.context, opts.batch)?;
    let mut order = Order::new(opts.seed, rows);
    let mut log = Vec::new();
    let start = Instant::now();
    for step in 1..=opts.steps {
        let chosen: Vec<usize> = (0..opts.batch).map(|_| order.next()).collect();
        let mut inputs = Vec::with_capacity(opts.batch * opts.context);
        let mut targets = Vec::with_capacity(opts.batch * opts.context);
        for &r in &chosen {
            let doc = &ids[r * row..(r + 1) * row];
            inputs.extend_from_slice(&doc[..opts.context]);
            targets.extend_from_slice(&doc[1..]);
        }
        let inputs = Tensor::from_vec(inputs, (opts.batch, opts.context), &device)?;
        let targets = Tensor::from_vec(targets, (opts.batch, opts.context), &device)?;
        let logits = model
            .model
            .forward(&inputs, None, &mut Hooks::none(), None)?;
        let loss = next_token_loss(&logits, &targets)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(TrainError::Diverged {
                step,
                loss: value,
                hint: "lower --lr",
            });
        }
        optimizer.backward_step(&loss)?;
        let record = FinetuneStep {
            step,
            loss: value,
            lr: opts.lr,
            tokens: step * opts.batch * opts.context,
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        on_progress(Progress::Step(&record));
        log.push(record);
    }
    // The last update may have made the weights non-finite after the last finite loss.
    for var in made.values().flat_map(|(a, b)| [a, b]) {
        if !glassbox_models::ops::all_finite(var.as_tensor())? {
            return Err(TrainError::Diverged {
                step: opts.steps,
                loss: f32::NAN,
                hint: "the adapter's weights are not finite; lower --lr",
            });
        }
    }
    let loss_after = mean_loss(&model, &ids, eval_rows, opts.context, opts.batch)?;
    let adapter = glassbox_models::lora::trained_adapter(&spec, &PathBuf::new())?;
    Ok(Finetuned {
        adapter,
        log,
        rows,
        modules,
        loss_before,
        loss_after,
        eval_rows,
    })
}

/// Rows in a fresh seeded shuffle each pass.
struct Order {
    seed: u64,
    pass: usize,
    perm: Vec<usize>,
    at: usize,
}

impl Order {
    fn new(seed: u64, n: usize) -> Self {
        let mut o = Order {
            seed,
            pass: 0,
            perm: (0..n).collect(),
            at: 0,
        };
        o.shuffle();
        o
    }

    fn shuffle(&mut self) {
        self.perm.sort_unstable();
        SplitMix64::keyed(self.seed, &format!("finetune-pass-{}", self.pass))
            .shuffle(&mut self.perm);
    }

    fn next(&mut self) -> usize {
        if self.at == self.perm.len() {
            self.pass += 1;
            self.at = 0;
            self.shuffle();
        }
        self.at += 1;
        self.perm[self.at - 1]
    }
}
