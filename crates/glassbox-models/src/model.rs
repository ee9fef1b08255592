//! The model interface: [`Model`] (one forward pass with hooks), [`HookedModel`] (a model with
//! its tokenizer, loaded from disk, with TransformerLens-shaped helpers), [`LoadOptions`].
//!
//! Loading goes checkpoint → [`SimpleBackend`] → [`VarBuilder`] → registry constructor, so the
//! same constructor builds a model from a Hub snapshot ([`HookedModel::load`]), from any other
//! backend that renames tensors and synthesizes a Hub `config.json`
//! ([`HookedModel::from_backend`], e.g. GGUF), or from a `VarMap` with freshly initialised,
//! trainable weights ([`HookedModel::from_config`]).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use glassbox_formats::Checkpoint;

use crate::backend::CheckpointBackend;
use crate::config::HfConfig;
use crate::error::{ModelError, Result};
use crate::generate::{sample_next, GenerateOptions};
use crate::hooks::{ActivationCache, Hooks, NameFilter};
use crate::kv_cache::KvCache;
use crate::registry;
use crate::tokenizer::Tokenizer;

/// The dimensions of a model, named as in TransformerLens' `HookedTransformerConfig`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// `architectures[0]` of the config, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    pub n_layers: usize,
    pub d_model: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (fewer than `n_heads` under grouped-query attention).
    pub n_kv_heads: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub d_vocab: usize,
    /// Maximum context (`max_position_embeddings`).
    pub n_ctx: usize,
    /// Decoder (causal attention) or encoder.
    pub causal: bool,
    /// Positions are learned embeddings (GPT-2, BERT): no position past `n_ctx` exists.
    pub learned_positions: bool,
}

/// One architecture's forward pass, with a hook at every TransformerLens point.
///
/// Implementations call [`Hooks::point`] at each hook point, so writes there take effect
/// downstream, and compute with differentiable ops only (see [`crate::ops`]).
pub trait Model: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// `input_ids` [batch, pos] U32; `attention_mask` [batch, pos] (1 = token, 0 = padding;
    /// `None` = all tokens; padding goes on the right); returns logits [batch, pos, d_vocab]
    /// in f32 (f64 for an f64 model). With `kv`, the pass continues after the cached positions and appends to them.
    fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> candle_core::Result<Tensor>;

    /// [`forward`](Self::forward) without a mask, returning the logits of the last position
    /// only, [batch, 1, d_vocab]. Architectures that can unembed that position alone do (the
    /// unembedding is a large share of a short pass); hooks from `ln_final.hook_normalized` on
    /// then see that one position.
    fn forward_last(
        &self,
        input_ids: &Tensor,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> candle_core::Result<Tensor> {
        let logits = self.forward(input_ids, None, hooks, kv)?;
        let n = logits.dim(1)?;
        logits.narrow(1, n - 1, 1)
    }

    /// Runs the blocks from `first_layer` on: `resid` [batch, pos, d_model] enters as
    /// `blocks.{first_layer}.hook_resid_pre`, continuing after `kv`'s cached positions (whose
    /// layers from `first_layer` on must be filled), and the residual stream after the last
    /// block comes back, before the final norm: TransformerLens' `start_at_layer`. With
    /// `last_rows`, the last block answers for the last that many positions only (keys and
    /// values it computes for all): what comes back has those positions, and the last block's
    /// hooks from its attention scores on see only them. Only where
    /// [`starts_midway`](Self::starts_midway) says so.
    fn forward_from_layer(
        &self,
        resid: &Tensor,
        first_layer: usize,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
        last_rows: Option<usize>,
    ) -> candle_core::Result<Tensor> {
        let _ = (resid, first_layer, hooks, kv, last_rows);
        candle_core::bail!("{} cannot start a pass midway", self.info().architecture)
    }

    /// Whether [`forward_from_layer`](Self::forward_from_layer) is implemented.
    fn starts_midway(&self) -> bool {
        false
    }

    /// How a pass ends after its last block: the final norm and the unembedding of `resid`,
    /// with their hooks (`ln_final.*`, `logits`), so that a pass started midway
    /// ([`forward_from_layer`](Self::forward_from_layer)) ends as a full one. Only where
    /// [`starts_midway`](Self::starts_midway) says so.
    fn finish(&self, resid: &Tensor, hooks: &mut Hooks) -> candle_core::Result<Tensor> {
        let _ = (resid, hooks);
        candle_core::bail!("{} cannot start a pass midway", self.info().architecture)
    }

    /// The final normalisation (`ln_final`) applied to a residual stream [.., d_model].
    fn final_norm(&self, resid: &Tensor) -> candle_core::Result<Tensor>;

    /// TransformerLens' `normalization_type` of the pre-norms (`"LN"` or `"RMS"`), where the
    /// residual stream is a sum that they normalise (`None` for post-LN encoders).
    fn normalization_type(&self) -> Option<&'static str> {
        None
    }

    /// Normalised residual [.., d_model] -> logits [.., d_vocab] (unembedding bias included,
    /// final soft-capping too where the architecture has it).
    fn unembed(&self, normed: &Tensor) -> candle_core::Result<Tensor>;

    /// The final logit soft-cap `cap · tanh(logit / cap)` [`unembed`](Self::unembed) applies,
    /// if any (Gemma 2 and 3).
    fn final_softcap(&self) -> Option<f64> {
        None
    }

    /// The unembedding matrix `W_U` [d_model, d_vocab].
    fn w_u(&self) -> candle_core::Result<Tensor>;

    /// Whether the model maps its residual stream to token logits. An encoder without a
    /// language-model head does not: its forward pass returns the last hidden states.
    fn has_unembedding(&self) -> bool {
        true
    }

    /// The attention output matrix of `layer`, per head: `W_O` [n_heads, d_head, d_model].
    fn w_o(&self, layer: usize) -> candle_core::Result<Tensor>;

    /// The attention output bias of `layer` [d_model] (zeros if the architecture has none).
    fn b_o(&self, layer: usize) -> candle_core::Result<Tensor>;

    /// TransformerLens' names of the weights [`parameter`](Self::parameter) gives, in the
    /// model's order (see [`crate::weights`]). By default the unembedding and each layer's
    /// attention output.
    fn parameter_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for layer in 0..self.info().n_layers {
            names.push(format!("blocks.{layer}.attn.W_O"));
            names.push(format!("blocks.{layer}.attn.b_O"));
        }
        if self.has_unembedding() {
            names.push("unembed.W_U".into());
        }
        names
    }

    /// The weight TransformerLens names `name` (`blocks.0.attn.W_Q`, `unembed.W_U`), in its
    /// layout, in f32; None where the model has no such weight.
    fn parameter(&self, name: &str) -> candle_core::Result<Option<Tensor>> {
        use crate::weights::WeightName;
        match WeightName::parse(name) {
            WeightName::Top("unembed.W_U") if self.has_unembedding() => self.w_u().map(Some),
            WeightName::Block {
                layer,
                part: "attn",
                field,
            } if layer < self.info().n_layers => match field {
                "W_O" => self.w_o(layer)?.to_dtype(candle_core::DType::F32).map(Some),
                "b_O" => self.b_o(layer)?.to_dtype(candle_core::DType::F32).map(Some),
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }
}

/// How to load weights.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Weights and activations are held in this dtype (F32 by default; F16/BF16 to halve memory).
    pub dtype: DType,
    pub device: Device,
    /// Whose arithmetic a GGUF model follows where llama.cpp's differs from exact f32; `None`:
    /// llama.cpp's for a file with quantized weights, else f32.
    pub numerics: Option<Numerics>,
    /// A LoRA adapter to apply (or trainable ones to create) in the linear layers.
    pub lora: Option<crate::lora::LoraSource>,
    /// How attention holds keys and values; `None`: llama.cpp's default F16 cache under
    /// [`Numerics::LlamaCpp`], else f32.
    pub kv_cache: Option<KvCacheType>,
}

/// Whose arithmetic a model loaded from a GGUF file follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Numerics {
    /// Exact float32: what the dequantized model computes (quantized weights are widened on
    /// the fly, a band of rows at a time).
    #[default]
    F32,
    /// ggml-cpu's: products with a quantized weight quantize the activations as ggml-cpu does
    /// (Q8_0, Q8_1 or Q8_K) and multiply in integers; GELU rounds to f16 through ggml's table.
    /// F16 weights are still widened (ggml also rounds their activations to f16).
    LlamaCpp,
}

/// How attention layers hold keys and values between positions (llama.cpp's `--cache-type-k`
/// and `--cache-type-v`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvCacheType {
    /// As computed.
    #[default]
    F32,
    /// Rounded to f16 as llama.cpp's default cache stores them; the products that read the
    /// cache also see their other operand rounded to f16, as ggml-cpu converts it for an f16
    /// matrix (the queries in `q·Kᵀ`, the attention weights in `pattern·V`). Flash attention
    /// off, as llama-cpp-python runs by default. Hooks see the values before rounding (the
    /// f32 tensors of llama.cpp's graph), and the rounding applies with or without a
    /// [`crate::KvCache`] (llama.cpp always attends over its cache). Only f32 models round:
    /// a half-precision model's keys and values are already half precision.
    F16,
}

impl KvCacheType {
    /// The name `--kv-cache` gives it: `f16` or `f32`.
    pub fn name(self) -> &'static str {
        match self {
            KvCacheType::F16 => "f16",
            KvCacheType::F32 => "f32",
        }
    }
}

impl Numerics {
    /// The name `--numerics` gives it: `llamacpp` or `f32`.
    pub fn name(self) -> &'static str {
        match self {
            Numerics::LlamaCpp => "llamacpp",
            Numerics::F32 => "f32",
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: DType::F32,
            device: Device::Cpu,
            numerics: None,
            lora: None,
            kv_cache: None,
        }
    }
}

/// A model with its tokenizer: the library's main entry point.
pub struct HookedModel {
    pub model: Box<dyn Model>,
    pub tokenizer: Option<Tokenizer>,
    /// The Hub `config.json` the model was built from.
    pub config: serde_json::Value,
    /// Tokens that end generation (`eos_token_id` of the generation config or config).
    pub eos_token_ids: Vec<u32>,
    /// What the loader tolerated in the files, each naming the key or tensor (metadata that
    /// llama.cpp also accepts with a warning); front ends show these.
    pub warnings: Vec<String>,
    /// The arithmetic it follows (see [`Numerics`]).
    pub numerics: Numerics,
    /// How its attention holds keys and values.
    pub kv_cache: KvCacheType,
    device: Device,
}

/// The layer index in a weight name (`model.layers.3.…`, `transformer.h.3.…`,
/// `encoder.layer.3.…`, `blocks.3.…`).
fn layer_index(name: &str) -> Option<usize> {
    let mut parts = name.split('.');
    while let Some(part) = parts.next() {
        if matches!(part, "layers" | "h" | "layer" | "blocks") {
            return parts.next()?.parse().ok();
        }
    }
    None
}

/// Refuses a config whose layer count the weights cannot back before any layer is built: a
/// count of 0, or more layers than the weights have (a count of 10⁹ would otherwise size
/// allocations). Fewer is allowed: some checkpoints carry extra layers (multi-token prediction)
/// that the forward pass does not run.
pub(crate) fn check_layer_count<'a>(
    config: &serde_json::Value,
    weight_names: impl Iterator<Item = &'a str>,
    source: &Path,
) -> Result<()> {
    let Some((key, n)) = ["num_hidden_layers", "n_layer", "num_layers", "n_layers"]
        .iter()
        .find_map(|k| config.get(*k).and_then(|v| v.as_u64()).map(|n| (*k, n)))
    else {
        return Ok(());
    };
    let stored = weight_names
        .filter_map(layer_index)
        .max()
        .map(|i| i as u64 + 1);
    let problem = match stored {
        _ if n == 0 => format!("`{key}` is 0: a model needs at least one layer"),
        Some(stored) if n > stored => format!(
            "`{key}` is {n}, but the weights hold {stored} layer{}",
            if stored == 1 { "" } else { "s" }
        ),
        _ => return Ok(()),
    };
    Err(ModelError::config(format!(
        "{}: {problem}",
        source.display()
    )))
}

impl HookedModel {
    /// Loads any checkpoint [`Checkpoint::open`] reads that carries a `config.json`
    /// (a Hub snapshot directory).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let ck = Checkpoint::open(path)?;
        if ck.kind == glassbox_formats::CheckpointKind::Gguf {
            return crate::gguf_model::load_checkpoint(ck, opts);
        }
        let config = ck.config.clone().ok_or_else(|| {
            ModelError::config(format!(
                "{}: no config.json (pass a Hub snapshot directory holding config.json and the weights)",
                path.display()
            ))
        })?;
        let tokenizer = match &ck.tokenizer_path {
            Some(p) => Some(Tokenizer::from_file(p)?),
            None => None,
        };
        let mut eos = Vec::new();
        if let Some(g) = &ck.generation_config {
            eos = HfConfig(g).token_ids("eos_token_id");
        }
        check_layer_count(&config, ck.tensors().iter().map(|t| t.name.as_str()), path)?;
        let backend = CheckpointBackend::new(ck);
        let source = backend.checkpoint.clone();
        let mut model = crate::mapped::while_building(source, || {
            Self::from_backend(config, Box::new(backend), tokenizer, path, opts)
        })?;
        if !eos.is_empty() {
            model.eos_token_ids = eos;
        }
        Ok(model)
    }

    /// Builds a model from a Hub-style `config` and any backend serving tensors under Hub
    /// names; `source` names the file in error messages.
    pub fn from_backend(
        config: serde_json::Value,
        backend: Box<dyn SimpleBackend>,
        tokenizer: Option<Tokenizer>,
        source: &Path,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let vb = VarBuilder::from_backend(backend, opts.dtype, opts.device.clone());
        let kv_cache = opts.kv_cache.unwrap_or_default();
        let model = crate::attention::while_building(kv_cache, || {
            crate::lora::while_building(opts.lora.as_ref(), &opts.device, || {
                registry::build(&config, vb)
            })
        })
        .map_err(|e| match e {
            ModelError::Candle(source_err) => ModelError::Weights {
                path: source.to_path_buf(),
                cause: source_err,
            },
            ModelError::Config(msg) => {
                ModelError::Config(format!("{}: {msg}", source.join("config.json").display()))
            }
            other => other,
        })?;
        let mut model = Self::assemble(model, config, tokenizer, opts.device.clone());
        model.kv_cache = kv_cache;
        Ok(model)
    }

    /// Builds a model from a Hub-style `config` over any [`VarBuilder`]; with
    /// `VarBuilder::from_varmap` the weights are freshly initialised and trainable.
    pub fn from_config(config: &serde_json::Value, vb: VarBuilder<'static>) -> Result<Self> {
        let device = vb.device().clone();
        let model = registry::build(config, vb)?;
        Ok(Self::assemble(model, config.clone(), None, device))
    }

    fn assemble(
        model: Box<dyn Model>,
        config: serde_json::Value,
        tokenizer: Option<Tokenizer>,
        device: Device,
    ) -> Self {
        let eos_token_ids = HfConfig(&config).token_ids("eos_token_id");
        HookedModel {
            model,
            tokenizer,
            config,
            eos_token_ids,
            warnings: Vec::new(),
            numerics: Numerics::F32,
            kv_cache: KvCacheType::F32,
            device,
        }
    }

    pub fn info(&self) -> &ModelInfo {
        self.model.info()
    }

    /// Replaces the forward pass with a wrapper around it (e.g. one that splices sparse
    /// autoencoders in), keeping the tokenizer and everything else.
    pub fn map_model(self, wrap: impl FnOnce(Box<dyn Model>) -> Box<dyn Model>) -> Self {
        let HookedModel {
            model,
            tokenizer,
            config,
            eos_token_ids,
            warnings,
            numerics,
            kv_cache,
            device,
        } = self;
        HookedModel {
            model: wrap(model),
            tokenizer,
            config,
            eos_token_ids,
            warnings,
            numerics,
            kv_cache,
            device,
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            ModelError::Tokenizer("this model has no tokenizer (no tokenizer.json)".into())
        })
    }

    /// Token ids of `text`, as the model's tokenizer produces them (special tokens included
    /// where the tokenizer adds them, e.g. a BOS).
    pub fn to_tokens(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer()?.encode(text)
    }

    /// The special tokens the tokenizer puts before any text (its BOS, where it adds one; not
    /// those it appends): what a window cut from a longer text needs in front to be seen as
    /// the model sees a text. Empty without a tokenizer.
    pub fn text_prefix(&self) -> Result<Vec<u32>> {
        match &self.tokenizer {
            Some(t) => t.prefix(),
            None => Ok(Vec::new()),
        }
    }

    /// Each token of `text` as a string.
    pub fn to_str_tokens(&self, text: &str) -> Result<Vec<String>> {
        let ids = self.to_tokens(text)?;
        self.tokenizer()?.str_tokens(&ids)
    }

    /// Each of `ids` decoded on its own.
    pub fn ids_to_str_tokens(&self, ids: &[u32]) -> Result<Vec<String>> {
        self.tokenizer()?.str_tokens(ids)
    }

    /// The positions of `ids` holding the tokenizer's unknown token (text its vocabulary
    /// could not represent), and that token's text; none without a tokenizer or an unknown
    /// token.
    pub fn unknown_tokens(&self, ids: &[u32]) -> Option<(Vec<usize>, String)> {
        let t = self.tokenizer.as_ref()?;
        let unk = t.unknown_id()?;
        let at: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == unk).collect();
        let text = t
            .str_tokens(&[unk])
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or_else(|| format!("#{unk}"));
        Some((at, text))
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer()?.decode(ids)
    }

    /// Text of `ids` with the special tokens (BOS, EOS, padding) written out.
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer()?.decode_with_special(ids)
    }

    /// A [1, pos] U32 tensor of `ids` on the model's device.
    pub fn ids_tensor(&self, ids: &[u32]) -> Result<Tensor> {
        Ok(Tensor::new(ids, &self.device)?.unsqueeze(0)?)
    }

    /// Checks ids are in the vocabulary and shapes them [batch, pos].
    pub(crate) fn check_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = match ids.rank() {
            1 => ids.unsqueeze(0)?,
            2 => ids.clone(),
            r => {
                return Err(ModelError::Input(format!(
                    "token ids must be [batch, pos], got rank {r}"
                )))
            }
        };
        let ids = ids.to_dtype(DType::U32)?;
        if ids.dim(1)? == 0 {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        let (batch, tokens) = ids.dims2()?;
        self.check_size(batch, tokens)?;
        let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()? as usize;
        let vocab = self.info().d_vocab;
        if max >= vocab {
            return Err(ModelError::Input(format!(
                "token id {max} is outside the vocabulary (size {vocab})"
            )));
        }
        Ok(ids)
    }

    /// Refuses a forward pass of `batch` sequences of `tokens` that the model or the machine
    /// cannot hold: more tokens than learned position embeddings, or one layer's activations
    /// past the memory budget ([`crate::memory::budget`]). Callers that build inputs check
    /// first, before allocating them.
    pub fn check_size(&self, batch: usize, tokens: usize) -> Result<()> {
        self.check_size_caching(batch, tokens, 0.0)
    }

    /// [`HookedModel::check_size`] for a pass that also keeps `cached_per_layer` f32 values of
    /// every layer (a cache of each layer's attention pattern: batch × heads × tokens²), which
    /// outlive the layer that made them.
    pub fn check_size_caching(
        &self,
        batch: usize,
        tokens: usize,
        cached_per_layer: f64,
    ) -> Result<()> {
        let info = self.info();
        if info.learned_positions && tokens > info.n_ctx {
            return Err(ModelError::Input(format!(
                "{tokens} tokens is more than the {} positions {} has learned embeddings for",
                info.n_ctx, info.architecture
            )));
        }
        // What one layer holds at once: attention scores and their softmax for every head,
        // the MLP's hidden activations and the logits, in f32. A request far past the memory
        // budget is refused here rather than aborting in the allocator.
        // (In f64: the product of two arbitrary counts overflows any integer.)
        let (b, t) = (batch as f64, tokens as f64);
        let per_layer = 2.0 * b * info.n_heads as f64 * t * t
            + b * t * (4 * info.d_mlp + info.d_vocab + 8 * info.d_model) as f64;
        let needed = 4.0 * (per_layer + info.n_layers as f64 * cached_per_layer);
        let budget = crate::memory::budget();
        if needed > budget as f64 {
            let what = if cached_per_layer > 0.0 {
                "one layer's activations and every layer's cached ones"
            } else {
                "one layer's activations"
            };
            return Err(ModelError::Input(format!(
                "{batch} × {tokens} tokens would need about {} for {what}; {} is available (GLASSBOX_MEMORY sets the budget)",
                crate::memory::describe(needed.min(u64::MAX as f64) as u64),
                crate::memory::describe(budget)
            )));
        }
        Ok(())
    }

    /// Logits [batch, pos, d_vocab] of `ids` ([pos] or [batch, pos]).
    pub fn run(&self, ids: &Tensor) -> Result<Tensor> {
        self.run_with_hooks(ids, &mut Hooks::none())
    }

    /// Logits of the last position only, [batch, d_vocab]: the residual stream is cut to that
    /// position before the final norm and the unembedding, which on GPT-2 small at 128 tokens
    /// are a third of the pass. Equal to the last position of [`run`](Self::run) within
    /// rounding (a one-row product sums in another order than the many-row one).
    pub fn run_last(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = self.check_ids(ids)?;
        let logits = self.model.forward_last(&ids, &mut Hooks::none(), None)?;
        Ok(logits.squeeze(1)?)
    }

    /// Logits and every activation whose hook name passes `filter`, as TransformerLens'
    /// `run_with_cache(names_filter=...)`.
    ///
    /// ```
    /// use glassbox_models::{HookedModel, LoadOptions, NameFilter};
    /// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/parity/gpt2");
    /// let model = HookedModel::load(dir.as_ref(), &LoadOptions::default())?;
    /// let ids = model.ids_tensor(&model.to_tokens("The Eiffel Tower is in Paris.")?)?;
    /// let filter = NameFilter::new(&["blocks.*.hook_resid_post", "blocks.0.attn.hook_pattern"])?;
    /// let (logits, cache) = model.run_with_cache(&ids, &filter)?;
    /// let n = ids.dim(1)?;
    /// assert_eq!(logits.dims(), &[1, n, model.info().d_vocab]);
    /// assert_eq!(cache["blocks.1.hook_resid_post"].dims(), &[1, n, model.info().d_model]);
    /// assert_eq!(cache["blocks.0.attn.hook_pattern"].dims(), &[1, model.info().n_heads, n, n]);
    /// assert_eq!(cache.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_with_cache(
        &self,
        ids: &Tensor,
        filter: &NameFilter,
    ) -> Result<(Tensor, ActivationCache)> {
        let mut hooks = Hooks::caching(filter.clone());
        let logits = self.run_with_hooks(ids, &mut hooks)?;
        Ok((logits, hooks.take_cache()))
    }

    /// Logits with `hooks` applied (interventions, user functions, caching), as
    /// TransformerLens' `run_with_hooks`.
    ///
    /// ```
    /// use glassbox_models::{HookedModel, Hooks, Intervention, LoadOptions, NameFilter, Selection};
    /// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/parity/llama");
    /// let model = HookedModel::load(dir.as_ref(), &LoadOptions::default())?;
    /// let ids = model.ids_tensor(&model.to_tokens("When Mary and John went to the store")?)?;
    /// let clean = model.run(&ids)?;
    /// // Zero-ablate head 1 of layer 0 at every position.
    /// let mut hooks = Hooks::none();
    /// hooks.intervene(NameFilter::new(&["blocks.0.attn.hook_z"])?, Intervention::Zero, Selection::Heads(vec![1]));
    /// let ablated = model.run_with_hooks(&ids, &mut hooks)?;
    /// let change = (clean - ablated)?.abs()?.max_all()?.to_scalar::<f32>()?;
    /// assert!(change > 1e-3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_with_hooks(&self, ids: &Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        let ids = self.check_ids(ids)?;
        Ok(self.model.forward(&ids, None, hooks, None)?)
    }

    /// Runs `ids` only as far as `hooks` need: with [`Hooks::stop_after`] set, the pass ends
    /// after that point (TransformerLens' `stop_at_layer`), so caching an early hook does not
    /// pay for the rest of the model. Read the activations from `hooks.cache`.
    pub fn run_until(&self, ids: &Tensor, hooks: &mut Hooks) -> Result<()> {
        let ids = self.check_ids(ids)?;
        match self.model.forward(&ids, None, hooks, None) {
            Ok(_) => Ok(()),
            Err(_) if hooks.stopped() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Logits of a pass that starts at block `layer` with `resid` [batch, pos, d_model] as its
    /// `blocks.{layer}.hook_resid_pre` (`layer` = n_layers: straight to the final norm), with
    /// `hooks` applied from there on: TransformerLens' `start_at_layer`. Causal, unpadded
    /// rows; models whose blocks carry state besides the residual stream (Mamba, linear
    /// attention) cannot start midway and say so.
    pub fn run_from_layer(
        &self,
        resid: &Tensor,
        layer: usize,
        hooks: &mut Hooks,
    ) -> Result<Tensor> {
        let info = self.info();
        if !info.causal {
            return Err(ModelError::Input(format!(
                "{} is an encoder: a pass starting midway is for decoders",
                info.architecture
            )));
        }
        if !self.model.starts_midway() {
            return Err(ModelError::Input(format!(
                "{} cannot start a pass midway: its layers carry state besides the residual stream",
                info.architecture
            )));
        }
        if layer > info.n_layers {
            return Err(ModelError::Input(format!(
                "start at layer {layer}: the model has {} layers",
                info.n_layers
            )));
        }
        match resid.dims() {
            [b, t, d] if *b > 0 && *t > 0 && *d == info.d_model => {}
            dims => {
                return Err(ModelError::Input(format!(
                    "a residual stream to start from is [batch, pos, d_model = {}]; got {dims:?}",
                    info.d_model
                )))
            }
        }
        if info.learned_positions && resid.dim(1)? > info.n_ctx {
            return Err(ModelError::Input(format!(
                "{} positions: the model has learned positions for {}",
                resid.dim(1)?,
                info.n_ctx
            )));
        }
        let out = self
            .model
            .forward_from_layer(resid, layer, hooks, None, None)?;
        Ok(self.model.finish(&out, hooks)?)
    }

    /// Like [`run_with_hooks`](Self::run_with_hooks) for a right-padded batch with its
    /// attention mask [batch, pos] (1 = token, 0 = padding).
    pub fn run_masked(&self, ids: &Tensor, mask: &Tensor, hooks: &mut Hooks) -> Result<Tensor> {
        let ids = self.check_ids(ids)?;
        if mask.dims() != ids.dims() {
            return Err(ModelError::Input(format!(
                "attention mask shape {:?} differs from the ids' {:?}",
                mask.dims(),
                ids.dims()
            )));
        }
        Ok(self.model.forward(&ids, Some(mask), hooks, None)?)
    }

    /// Continues `prompt` by up to `opts.max_new_tokens` tokens with a KV cache, calling
    /// `on_token` with each new token as it is chosen; returns the new tokens. `hooks` apply
    /// at every step (e.g. an `Intervention::Add` on `hook_resid_post` steers generation).
    pub fn generate(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        hooks: &mut Hooks,
        mut on_token: impl FnMut(u32),
    ) -> Result<Vec<u32>> {
        self.generate_until(prompt, opts, hooks, |t| {
            on_token(t);
            std::ops::ControlFlow::Continue(())
        })
    }

    /// [`generate`](Self::generate) whose `on_token` may end generation early (a caller that
    /// was interrupted): the tokens chosen so far are returned.
    pub fn generate_until(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        hooks: &mut Hooks,
        mut on_token: impl FnMut(u32) -> std::ops::ControlFlow<()>,
    ) -> Result<Vec<u32>> {
        let info = self.info();
        if !info.causal {
            return Err(ModelError::Input(format!(
                "{} is an encoder: it does not generate text",
                info.architecture
            )));
        }
        let mut input = self.check_ids(&Tensor::new(prompt, &self.device)?)?;
        let mut kv = KvCache::new(info.n_layers);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(opts.seed);
        // No more tokens than the context holds, whatever was asked.
        let mut new_tokens = Vec::with_capacity(opts.max_new_tokens.min(info.n_ctx));
        let eos: &[u32] = if opts.stop_at_eos {
            &self.eos_token_ids
        } else {
            &[]
        };
        // Each step is many small parallel calls: workers spin between them, not sleep.
        let _awake = glassbox_kernels::pool::keep_workers_awake();
        let _stored = crate::mapped::stored_layout_only();
        for _ in 0..opts.max_new_tokens {
            if kv.len() + input.dim(1)? > info.n_ctx {
                break;
            }
            let logits = self.model.forward_last(&input, hooks, Some(&mut kv))?;
            let last = logits.get(0)?.get(0)?.to_vec1::<f32>()?;
            // NaN logits pick token 0 (often a stop token): the run ended with no word and no
            // reason. Say why instead.
            if last.iter().any(|x| !x.is_finite()) {
                return Err(ModelError::Input(format!(
                    "the logits for new token {} are not finite (NaN or infinite): an intervention (a control vector's scale, a hook) or the weights overflowed float32",
                    new_tokens.len() + 1
                )));
            }
            let next = sample_next(&last, opts, &mut rng);
            new_tokens.push(next);
            if on_token(next).is_break() || eos.contains(&next) {
                break;
            }
            input = Tensor::new(&[[next]], &self.device)?;
        }
        Ok(new_tokens)
    }
}
