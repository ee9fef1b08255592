//! The training recipe: one TOML file that fixes everything a run depends on.
//!
//! `[model]` is the architecture's `config.json`, verbatim in Hugging Face form (it is written
//! into the release as is); `[data]` the corpus generator's settings; `[optimizer]` AdamW;
//! `[schedule]` linear warmup then cosine decay; `[training]` batch, steps, checkpoints. The
//! top-level `seed` drives weight initialisation and data order, `threads` the CPU thread
//! count (bit-identical results are promised only for the same thread count and backend).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::corpus::{self, CorpusConfig};
use crate::TrainError;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Name of the release (the model card's title, mof.yml's release name).
    pub name: String,
    /// Seed of initialisation and data order.
    pub seed: u64,
    /// CPU threads; part of the determinism contract.
    pub threads: usize,
    /// The architecture's `config.json`; `vocab_size` must equal the tokenizer's.
    pub model: serde_json::Value,
    #[serde(default)]
    pub init: Init,
    pub data: CorpusConfig,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub training: Training,
}

/// Weight initialisation: matrices ~ N(0, std²); norm weights 1; biases 0.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Init {
    pub std: f64,
}

impl Default for Init {
    fn default() -> Self {
        Init { std: 0.02 }
    }
}

/// AdamW (Loshchilov & Hutter 2019). Weight decay applies to matrices only, not to norms or biases.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimizer {
    pub lr: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default)]
    pub weight_decay: f64,
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_eps() -> f64 {
    1e-8
}

/// Linear warmup to `optimizer.lr` over `warmup_steps`, then cosine decay to `min_lr_ratio × lr`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub warmup_steps: usize,
    #[serde(default)]
    pub min_lr_ratio: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub steps: usize,
    pub batch_size: usize,
    /// Steps after which an intermediate checkpoint is kept in the release.
    #[serde(default)]
    pub checkpoints: Vec<usize>,
}

/// The most of one line an error message quotes.
const QUOTED: usize = 160;

/// `message` with each line cut to [`QUOTED`] characters.
fn clipped(message: &str) -> String {
    message
        .lines()
        .map(|l| match l.char_indices().nth(QUOTED) {
            Some((at, _)) => format!(
                "{}… ({} more characters)",
                &l[..at],
                l[at..].chars().count()
            ),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Recipe {
    /// Reads and validates a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, TrainError> {
        use glassbox_formats::input;
        let text = input::read_text(path, "recipe", input::limit::CONFIG)?;
        Recipe::parse(&text).map_err(|why| TrainError::Recipe {
            path: path.display().to_string(),
            why,
        })
    }

    /// Parses and validates recipe text; the error says what is wrong (the offending line
    /// quoted at most [`QUOTED`] characters: a 200 KB line was printed whole).
    pub fn parse(text: &str) -> Result<Recipe, String> {
        let recipe: Recipe = toml::from_str(text).map_err(|e| clipped(&e.to_string()))?;
        recipe.validate()?;
        Ok(recipe)
    }

    fn validate(&self) -> Result<(), String> {
        corpus::validate(&self.data).map_err(|e| format!("[data]: {e}"))?;
        let o = &self.optimizer;
        let s = &self.schedule;
        let t = &self.training;
        let checks = [
            (!self.name.trim().is_empty(), "`name` is empty"),
            (self.threads >= 1 && self.threads <= 256, "`threads` must be in 1..=256"),
            (self.model.is_object(), "[model] must be a table (the config.json)"),
            (o.lr.is_finite() && o.lr > 0.0 && o.lr < 1.0, "[optimizer] lr must be in (0, 1)"),
            ((0.0..1.0).contains(&o.beta1), "[optimizer] beta1 must be in [0, 1)"),
            ((0.0..1.0).contains(&o.beta2), "[optimizer] beta2 must be in [0, 1)"),
            (o.eps.is_finite() && o.eps > 0.0, "[optimizer] eps must be positive"),
            ((0.0..1.0).contains(&o.weight_decay), "[optimizer] weight_decay must be in [0, 1)"),
            ((0.0..=1.0).contains(&s.min_lr_ratio), "[schedule] min_lr_ratio must be in [0, 1]"),
            (t.steps >= 1 && t.steps <= 10_000_000, "[training] steps must be in 1..=10 000 000"),
            (
                s.warmup_steps <= 10_000_000,
                "[schedule] warmup_steps must be in 0..=10 000 000",
            ),
            (t.batch_size >= 1 && t.batch_size <= 4096, "[training] batch_size must be in 1..=4096"),
            (
                t.checkpoints.iter().all(|&c| c >= 1 && c < t.steps),
                "[training] checkpoints must be steps in 1..steps (the final step is the model itself)",
            ),
            (
                self.init.std.is_finite() && self.init.std > 0.0 && self.init.std <= 1.0,
                "[init] std must be in (0, 1] (weights drawn wider saturate every softmax, and nothing trains)",
            ),
        ];
        if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(why.to_string());
        }
        self.check_model_size()?;
        self.check_model_type()?;
        let vocab = corpus::vocabulary(&self.data).len() as u64;
        match self.model.get("vocab_size").and_then(|v| v.as_u64()) {
            Some(v) if v == vocab => Ok(()),
            Some(v) => Err(format!(
                "[model] vocab_size is {v} but the corpus vocabulary has {vocab} words"
            )),
            None => Err(format!(
                "[model] needs vocab_size = {vocab} (the corpus vocabulary)"
            )),
        }
    }

    /// `model_type` names the same architecture as `architectures`: transformers builds the
    /// model `model_type` names, glassbox the one `architectures` names, so a release that
    /// disagrees would be two different models.
    fn check_model_type(&self) -> Result<(), String> {
        let arch = self.model["architectures"][0].as_str();
        let model_type = self.model.get("model_type").and_then(|v| v.as_str());
        let (Some(arch), Some(model_type)) = (arch, model_type) else {
            return Ok(());
        };
        match glassbox_models::registry::MODEL_TYPES
            .iter()
            .find(|(t, _)| *t == model_type)
        {
            Some((_, named)) if *named != arch => Err(format!(
                "[model] model_type `{model_type}` is {named}'s, but architectures names {arch} (transformers would build a {named})"
            )),
            _ => Ok(()),
        }
    }

    /// The [model] sizes, checked before anything is built from them: head counts a model can
    /// have (at least one, no more than the hidden size; 65,536 heads of a 64-wide model made
    /// a run that never ended), and a parameter count whose training state (weights,
    /// gradients and two Adam moments, 16 bytes a parameter) fits the memory budget
    /// ([`glassbox_models::memory::budget`]; sizes of 10⁹ were allocation failures).
    fn check_model_size(&self) -> Result<(), String> {
        let get = |key: &str| self.model.get(key).and_then(|v| v.as_u64());
        let (Some(d), Some(layers)) = (get("hidden_size"), get("num_hidden_layers")) else {
            return Ok(());
        };
        let heads = get("num_attention_heads").unwrap_or(1);
        let kv_heads = get("num_key_value_heads").unwrap_or(heads);
        if d == 0 || layers == 0 {
            return Err("[model] hidden_size and num_hidden_layers must be at least 1".into());
        }
        if heads == 0 || heads > d {
            return Err(format!(
                "[model] num_attention_heads is {heads}: give 1..={d} (at most hidden_size)"
            ));
        }
        if kv_heads == 0 || kv_heads > heads {
            return Err(format!(
                "[model] num_key_value_heads is {kv_heads}: give 1..={heads} (at most num_attention_heads)"
            ));
        }
        // Sizes that would build a model with empty weights, and a context shorter than the
        // training sequences (a run that trained, then failed at its evaluation).
        for key in ["head_dim", "intermediate_size"] {
            if get(key) == Some(0) {
                return Err(format!("[model] {key} is 0: give at least 1"));
            }
        }
        // The model reads `<bos>` and the first `seq_len - 1` words of a document.
        let longest = self.data.seq_len as u64;
        if let Some(n_ctx) = get("max_position_embeddings").filter(|&n| n < longest) {
            return Err(format!(
                "[model] max_position_embeddings is {n_ctx}, shorter than the {longest} positions of a training sequence ([data] seq_len)"
            ));
        }
        // In f64: products of arbitrary sizes overflow any integer.
        let head_dim = get("head_dim").unwrap_or(d / heads) as f64;
        let ff = get("intermediate_size").map_or(4.0 * d as f64, |f| f as f64);
        let vocab = get("vocab_size").unwrap_or(0) as f64;
        let (d, layers, heads, kv_heads) = (d as f64, layers as f64, heads as f64, kv_heads as f64);
        let per_layer = d * head_dim * 2.0 * (heads + kv_heads) + 3.0 * d * ff + 2.0 * d;
        let params = layers * per_layer + 2.0 * vocab * d + d;
        let needed = 16.0 * params;
        let budget = glassbox_models::memory::budget();
        let describe =
            |bytes: f64| glassbox_models::memory::describe(bytes.min(u64::MAX as f64) as u64);
        if needed > budget as f64 {
            return Err(format!(
                "[model] has about {params:.3e} parameters: training them needs about {}, {} is available (GLASSBOX_MEMORY sets the budget)",
                describe(needed),
                glassbox_models::memory::describe(budget)
            ));
        }
        // The run also holds the corpus (a word is a 16-byte reference and a 4-byte id) and one
        // batch's activations for the backward pass (per token and layer about 20 vectors of
        // the hidden size, the attention weights with their gradients, the MLP's hidden units;
        // the logits three times): a corpus or batch of millions passed the check above and
        // aborted in the allocator.
        let t = self.data.seq_len as f64;
        let documents = (self.data.train_documents + self.data.held_out_documents) as f64;
        let corpus = 20.0 * documents * t;
        let batch = self.training.batch_size as f64;
        let activations =
            4.0 * batch * t * (layers * (20.0 * d + 3.0 * heads * t + 4.0 * ff) + 3.0 * vocab);
        let total = needed + corpus + activations;
        if total > budget as f64 {
            return Err(format!(
                "training needs about {}: the weights with their optimizer state {}, the corpus ([data]) {}, a batch's activations ([training] batch_size × [data] seq_len) {}; {} is available (GLASSBOX_MEMORY sets the budget)",
                describe(total),
                describe(needed),
                describe(corpus),
                describe(activations),
                glassbox_models::memory::describe(budget)
            ));
        }
        Ok(())
    }

    /// Learning rate at `step` (1-based).
    pub fn learning_rate(&self, step: usize) -> f64 {
        let lr = self.optimizer.lr;
        let warm = self.schedule.warmup_steps;
        if step <= warm {
            return lr * step as f64 / warm.max(1) as f64;
        }
        let span = (self.training.steps - warm).max(1) as f64;
        let progress = ((step - warm) as f64 / span).min(1.0);
        let floor = lr * self.schedule.min_lr_ratio;
        floor + (lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// A note when the warmup outlasts the run: the learning rate then peaks at
    /// `lr × steps / warmup_steps`, never reaching `lr` (a short trial of a long recipe does
    /// this on purpose; a recipe meant for release should not).
    pub fn warmup_note(&self) -> Option<String> {
        let (warm, steps) = (self.schedule.warmup_steps, self.training.steps);
        (warm > steps).then(|| {
            format!(
                "[schedule] warmup_steps {warm} outlasts the {steps} steps: the learning rate peaks at {:.3e}, not [optimizer] lr {:.3e}",
                self.learning_rate(steps),
                self.optimizer.lr
            )
        })
    }

    /// Tokens seen per step (inputs, not counting `<bos>` targets).
    pub fn tokens_per_step(&self) -> usize {
        self.training.batch_size * self.data.seq_len
    }
}
