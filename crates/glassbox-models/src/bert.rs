//! BERT encoders (`BertModel`, `BertForMaskedLM`), e.g. all-MiniLM-L6-v2.
//!
//! Design: the code follows Devlin et al. (2018) and Hugging Face's `modeling_bert.py`, with
//! weight names mirroring the checkpoint (`embeddings.word_embeddings`, `encoder.layer.{i}.
//! attention.self.query`, …; a `bert.` prefix is detected, as `BertForMaskedLM` checkpoints
//! carry one). Every op is differentiable — LayerNorm and softmax come from [`crate::ops`] /
//! [`crate::layers`], not from candle-nn's fused kernels, which have no backward pass — so
//! attribution patching and training see gradients.
//!
//! BERT is post-LN: each sublayer's output is added to its input and *then* normalized. Hook
//! names follow TransformerLens's `HookedEncoder` where the two agree, adapted to post-LN:
//!
//! - `hook_embed`, `hook_pos_embed`, `hook_token_type_embed` — the three embeddings, `[b, t, d]`;
//!   their normalized sum is `blocks.0.hook_resid_pre`.
//! - `blocks.{i}.attn.hook_q/k/v/z` `[b, t, h, d_head]`, `attn.hook_attn_scores` (scaled, with
//!   the padding mask added) and `attn.hook_pattern` `[b, h, q, k]`; `hook_attn_out`.
//! - `blocks.{i}.hook_resid_mid` = `resid_pre + attn_out` (before LayerNorm);
//!   `blocks.{i}.ln1.hook_normalized` = it normalised, before the LayerNorm's weight and bias
//!   (whose output the MLP and the residual see).
//! - `mlp.hook_pre` / `mlp.hook_post` (before / after the activation), `hook_mlp_out`.
//! - `blocks.{i}.hook_resid_post` = ln1's output + mlp_out, before the second LayerNorm;
//!   `ln2.hook_normalized` = it normalised (before weight and bias);
//!   `blocks.{i}.hook_normalized_resid_post` = the LayerNorm's output, the layer's output and
//!   the next layer's `hook_resid_pre`. It equals Hugging Face's `hidden_states[i + 1]`.
//!
//! The forward pass returns MLM logits `[b, t, vocab]` when the checkpoint has the MLM head
//! (`cls.predictions.*`), otherwise the final hidden states `[b, t, d]`.
//! [`BertModel::sentence_embedding`] pools as sentence-transformers does (see
//! [`SentencePooling`]); [`SentenceEncoder`] loads a whole sentence-transformers snapshot and
//! embeds texts.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use glassbox_formats::Checkpoint;

use crate::backend::CheckpointBackend;
use crate::error::{ModelError, Result};
use crate::hooks::Hooks;
use crate::kv_cache::KvCache;
use crate::layers::{Activation, Embedding, Linear, Norm, NormKind, Weight};
use crate::model::{LoadOptions, Model, ModelInfo};
use crate::ops::softmax_last_dim;
use crate::tokenizer::Tokenizer;

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_position_type() -> String {
    "absolute".into()
}

/// The fields of a BERT `config.json` the forward pass uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

impl BertConfig {
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let cfg: BertConfig = serde_json::from_value(value.clone())
            .map_err(|e| ModelError::config(format!("BERT config: {e}")))?;
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            return Err(ModelError::config(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                cfg.hidden_size, cfg.num_attention_heads
            )));
        }
        if cfg.position_embedding_type != "absolute" {
            return Err(ModelError::config(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                cfg.position_embedding_type
            )));
        }
        cfg.activation()?;
        Ok(cfg)
    }

    /// The MLP (and MLM head) activation named by `hidden_act`.
    pub fn activation(&self) -> Result<Activation> {
        Activation::from_hf(&self.hidden_act).ok_or_else(|| {
            ModelError::config(format!("hidden_act `{}` is not supported", self.hidden_act))
        })
    }

    fn layer_norm(&self) -> NormKind {
        NormKind::LayerNorm {
            eps: self.layer_norm_eps,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: Norm,
}

impl BertEmbeddings {
    fn load(cfg: &BertConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        Ok(BertEmbeddings {
            word_embeddings: Embedding::load(vb.pp("word_embeddings"), cfg.vocab_size, d)?,
            position_embeddings: Embedding::load(
                vb.pp("position_embeddings"),
                cfg.max_position_embeddings,
                d,
            )?,
            token_type_embeddings: Embedding::load(
                vb.pp("token_type_embeddings"),
                cfg.type_vocab_size,
                d,
            )?,
            layer_norm: Norm::load(vb.pp("LayerNorm"), cfg.layer_norm(), d)?,
        })
    }

    fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        hooks: &mut Hooks,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq_len) = input_ids.dims2()?;
        let embed = hooks.point(
            || "hook_embed".into(),
            self.word_embeddings.lookup(input_ids)?,
        )?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?
            .unsqueeze(0)?
            .broadcast_as((batch, seq_len))?
            .contiguous()?;
        let pos_embed = hooks.point(
            || "hook_pos_embed".into(),
            self.position_embeddings.lookup(&positions)?,
        )?;
        let token_type_embed = hooks.point(
            || "hook_token_type_embed".into(),
            self.token_type_embeddings.lookup(token_type_ids)?,
        )?;
        // Same summation order as the reference: words + token types, then positions.
        let sum = ((embed + token_type_embed)? + pos_embed)?;
        self.layer_norm.forward(&sum)
    }
}

struct BertSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl BertSelfAttention {
    fn load(cfg: &BertConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        let attn = vb.pp("self");
        Ok(BertSelfAttention {
            query: Linear::load(attn.pp("query"), d, d, true)?,
            key: Linear::load(attn.pp("key"), d, d, true)?,
            value: Linear::load(attn.pp("value"), d, d, true)?,
            output: Linear::load(vb.pp("output").pp("dense"), d, d, true)?,
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// `x`: `[b, t, d]`; `mask`: additive, `[b, 1, 1, t]`.
    fn forward(
        &self,
        layer: usize,
        x: &Tensor,
        mask: &Tensor,
        hooks: &mut Hooks,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq_len, d) = x.dims3()?;
        let split = |t: Tensor| t.reshape((batch, seq_len, self.num_heads, self.head_dim));
        let q = hooks.point(
            || format!("blocks.{layer}.attn.hook_q"),
            split(self.query.forward(x)?)?,
        )?;
        let k = hooks.point(
            || format!("blocks.{layer}.attn.hook_k"),
            split(self.key.forward(x)?)?,
        )?;
        let v = hooks.point(
            || format!("blocks.{layer}.attn.hook_v"),
            split(self.value.forward(x)?)?,
        )?;
        // [b, h, t, d_head]
        let q = q.transpose(1, 2)?.contiguous()?;
        let k = k.transpose(1, 2)?.contiguous()?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let scale = (self.head_dim as f64).sqrt();
        let scores = (crate::ops::matmul(&q, &k.t()?)? / scale)?.broadcast_add(mask)?;
        let scores = hooks.point(|| format!("blocks.{layer}.attn.hook_attn_scores"), scores)?;
        let pattern = hooks.point(
            || format!("blocks.{layer}.attn.hook_pattern"),
            softmax_last_dim(&scores)?,
        )?;
        let z = crate::ops::matmul(&pattern, &v)?
            .transpose(1, 2)?
            .contiguous()?;
        let z = hooks.point(|| format!("blocks.{layer}.attn.hook_z"), z)?;
        self.output.forward(&z.reshape((batch, seq_len, d))?)
    }
}

struct BertLayer {
    attention: BertSelfAttention,
    attention_layer_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_layer_norm: Norm,
    activation: Activation,
}

impl BertLayer {
    fn load(cfg: &BertConfig, activation: Activation, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        let d_mlp = cfg.intermediate_size;
        Ok(BertLayer {
            attention: BertSelfAttention::load(cfg, vb.pp("attention"))?,
            attention_layer_norm: Norm::load(
                vb.pp("attention").pp("output").pp("LayerNorm"),
                cfg.layer_norm(),
                d,
            )?,
            intermediate: Linear::load(vb.pp("intermediate").pp("dense"), d, d_mlp, true)?,
            output: Linear::load(vb.pp("output").pp("dense"), d_mlp, d, true)?,
            output_layer_norm: Norm::load(vb.pp("output").pp("LayerNorm"), cfg.layer_norm(), d)?,
            activation,
        })
    }

    fn forward(
        &self,
        i: usize,
        resid_pre: Tensor,
        mask: &Tensor,
        hooks: &mut Hooks,
    ) -> candle_core::Result<Tensor> {
        let resid_pre = hooks.point(|| format!("blocks.{i}.hook_resid_pre"), resid_pre)?;
        let attn_out = self.attention.forward(i, &resid_pre, mask, hooks)?;
        let attn_out = hooks.point(|| format!("blocks.{i}.hook_attn_out"), attn_out)?;
        let resid_mid = hooks.point(
            || format!("blocks.{i}.hook_resid_mid"),
            (&resid_pre + attn_out)?,
        )?;
        let normalized_mid = self
            .attention_layer_norm
            .forward_hooked(&resid_mid, hooks, || format!("blocks.{i}.ln1"))?;
        let pre = hooks.point(
            || format!("blocks.{i}.mlp.hook_pre"),
            self.intermediate.forward(&normalized_mid)?,
        )?;
        let post = hooks.point(
            || format!("blocks.{i}.mlp.hook_post"),
            self.activation.apply(&pre)?,
        )?;
        let mlp_out = hooks.point(
            || format!("blocks.{i}.hook_mlp_out"),
            self.output.forward(&post)?,
        )?;
        let resid_post = hooks.point(
            || format!("blocks.{i}.hook_resid_post"),
            (normalized_mid + mlp_out)?,
        )?;
        let normalized = self
            .output_layer_norm
            .forward_hooked(&resid_post, hooks, || format!("blocks.{i}.ln2"))?;
        hooks.point(
            || format!("blocks.{i}.hook_normalized_resid_post"),
            normalized,
        )
    }
}

/// The masked-language-model head: transform (dense, activation, LayerNorm), then the decoder,
/// whose weight is usually tied to the word embeddings.
struct MlmHead {
    dense: Linear,
    activation: Activation,
    layer_norm: Norm,
    decoder: Linear,
}

impl MlmHead {
    fn load(
        cfg: &BertConfig,
        activation: Activation,
        word_embeddings: &Weight,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        let transform = vb.pp("transform");
        let decoder_weight = if vb.contains_tensor("decoder.weight") {
            Weight::load(
                &vb,
                &[cfg.vocab_size, d],
                "decoder.weight",
                Default::default(),
            )?
        } else {
            word_embeddings.clone()
        };
        let bias = if vb.contains_tensor("bias") {
            vb.get(cfg.vocab_size, "bias")?
        } else {
            vb.get(cfg.vocab_size, "decoder.bias")?
        };
        Ok(MlmHead {
            dense: Linear::load(transform.pp("dense"), d, d, true)?,
            activation,
            layer_norm: Norm::load(transform.pp("LayerNorm"), cfg.layer_norm(), d)?,
            decoder: Linear {
                weight: decoder_weight,
                bias: Some(bias),
                in_out: false,
                lora: None,
            },
        })
    }

    fn forward(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.activation.apply(&self.dense.forward(hidden)?)?;
        self.decoder.forward(&self.layer_norm.forward(&x)?)
    }
}

/// A BERT encoder, with its MLM head when the checkpoint has one.
pub struct BertModel {
    pub config: BertConfig,
    info: ModelInfo,
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    mlm_head: Option<MlmHead>,
    device: Device,
}

/// The registry constructor: a `BertModel` / `BertForMaskedLM` config over its weights.
pub fn build(config: &serde_json::Value, vb: VarBuilder) -> Result<Box<dyn Model>> {
    Ok(Box::new(BertModel::load(
        BertConfig::from_json(config)?,
        vb,
    )?))
}

impl BertModel {
    /// Loads from a VarBuilder rooted at the checkpoint's top level; a `bert.` prefix
    /// (`BertForMaskedLM` checkpoints) is detected.
    pub fn load(config: BertConfig, vb: VarBuilder) -> Result<Self> {
        let body = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb.clone()
        };
        let activation = config.activation()?;
        let embeddings = BertEmbeddings::load(&config, body.pp("embeddings"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| BertLayer::load(&config, activation, body.pp(format!("encoder.layer.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mlm_head = if vb.contains_tensor("cls.predictions.transform.dense.weight") {
            Some(MlmHead::load(
                &config,
                activation,
                &embeddings.word_embeddings.weight,
                vb.pp("cls.predictions"),
            )?)
        } else {
            None
        };
        let info = ModelInfo {
            architecture: if mlm_head.is_some() {
                "BertForMaskedLM".into()
            } else {
                "BertModel".into()
            },
            n_layers: config.num_hidden_layers,
            d_model: config.hidden_size,
            n_heads: config.num_attention_heads,
            n_kv_heads: config.num_attention_heads,
            d_head: config.head_dim(),
            d_mlp: config.intermediate_size,
            d_vocab: config.vocab_size,
            n_ctx: config.max_position_embeddings,
            causal: false,
            learned_positions: true,
        };
        Ok(BertModel {
            config,
            info,
            embeddings,
            layers,
            mlm_head,
            device: vb.device().clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn has_mlm_head(&self) -> bool {
        self.mlm_head.is_some()
    }

    /// The encoder's final hidden states `[b, t, d]`. `attention_mask` (`[b, t]`, 1 for real
    /// tokens, 0 for padding) defaults to all ones; `token_type_ids` to all zeros.
    pub fn encode(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        hooks: &mut Hooks,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq_len) = input_ids.dims2()?;
        if seq_len > self.config.max_position_embeddings {
            candle_core::bail!(
                "a sequence of {seq_len} tokens is longer than the model's {} positions",
                self.config.max_position_embeddings
            );
        }
        let input_ids = input_ids.to_dtype(DType::U32)?;
        let token_types = match token_type_ids {
            Some(t) => {
                if t.dims() != [batch, seq_len] {
                    candle_core::bail!(
                        "token_type_ids shape {:?} does not match input ids [{batch}, {seq_len}]",
                        t.dims()
                    );
                }
                t.to_dtype(DType::U32)?
            }
            None => Tensor::zeros((batch, seq_len), DType::U32, &self.device)?,
        };
        let mask = additive_mask(attention_mask, batch, seq_len, &self.device)?;
        let mut hidden = self.embeddings.forward(&input_ids, &token_types, hooks)?;
        for (i, layer) in self.layers.iter().enumerate() {
            hidden = layer.forward(i, hidden, &mask, hooks)?;
        }
        Ok(hidden)
    }

    /// Sentence embeddings `[b, d]` (f32), pooled over real tokens as `pooling` says.
    pub fn sentence_embedding(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        pooling: &SentencePooling,
    ) -> candle_core::Result<Tensor> {
        let hidden = self.encode(input_ids, None, attention_mask, &mut Hooks::none())?;
        pooling.pool(&hidden, attention_mask)
    }

    fn head(&self) -> candle_core::Result<&MlmHead> {
        self.mlm_head.as_ref().ok_or_else(|| {
            candle_core::Error::Msg(
                "this BERT checkpoint has no MLM head (cls.predictions.*): it has no unembedding"
                    .into(),
            )
        })
    }
}

impl Model for BertModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// MLM logits `[b, t, vocab]` when the checkpoint has the MLM head; otherwise (a bare
    /// `BertModel`, e.g. a sentence encoder) the final hidden states `[b, t, d_model]`.
    fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        hooks: &mut Hooks,
        kv: Option<&mut KvCache>,
    ) -> candle_core::Result<Tensor> {
        if kv.is_some() {
            candle_core::bail!("BERT is a bidirectional encoder: it has no KV cache");
        }
        let hidden = self.encode(input_ids, None, attention_mask, hooks)?;
        match &self.mlm_head {
            Some(head) => head.forward(&hidden)?.to_dtype(DType::F32),
            None => hidden.to_dtype(DType::F32),
        }
    }

    /// BERT normalizes inside every layer (post-LN): the last layer's output is already
    /// normalized, so there is no final norm.
    fn final_norm(&self, resid: &Tensor) -> candle_core::Result<Tensor> {
        Ok(resid.clone())
    }

    /// The MLM head: transform (dense, activation, LayerNorm), then the decoder.
    fn unembed(&self, normed: &Tensor) -> candle_core::Result<Tensor> {
        self.head()?.forward(normed)?.to_dtype(DType::F32)
    }

    /// The MLM decoder as `[d_model, d_vocab]` (it reads the head's transformed state).
    fn has_unembedding(&self) -> bool {
        self.mlm_head.is_some()
    }

    fn w_u(&self) -> candle_core::Result<Tensor> {
        self.head()?.decoder.weight_in_out()
    }

    fn w_o(&self, layer: usize) -> candle_core::Result<Tensor> {
        let attention = &self.layer(layer)?.attention;
        attention.output.weight_in_out()?.reshape((
            attention.num_heads,
            attention.head_dim,
            self.config.hidden_size,
        ))
    }

    fn b_o(&self, layer: usize) -> candle_core::Result<Tensor> {
        match &self.layer(layer)?.attention.output.bias {
            Some(b) => Ok(b.clone()),
            None => Tensor::zeros(self.config.hidden_size, DType::F32, &self.device),
        }
    }
}

impl BertModel {
    fn layer(&self, layer: usize) -> candle_core::Result<&BertLayer> {
        self.layers.get(layer).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "layer {layer} out of range (the model has {})",
                self.layers.len()
            ))
        })
    }
}

/// A sentence-transformers model: a BERT encoder, its tokenizer and its pooling.
pub struct SentenceEncoder {
    pub model: BertModel,
    pub tokenizer: Tokenizer,
    pub pooling: SentencePooling,
    /// Longer inputs are truncated to this many tokens (`sentence_bert_config.json`'s
    /// `max_seq_length`, else the model's positions).
    pub max_seq_length: usize,
}

impl SentenceEncoder {
    /// Loads a sentence-transformers snapshot directory (`config.json`, weights,
    /// `tokenizer.json`, `modules.json`, the pooling config).
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let ck = Checkpoint::open(dir)?;
        let config_path = dir.join("config.json");
        let config = ck
            .config
            .clone()
            .ok_or_else(|| ModelError::config(format!("{}: no config.json", dir.display())))?;
        let config = BertConfig::from_json(&config)
            .map_err(|e| ModelError::config(format!("{}: {e}", config_path.display())))?;
        let tokenizer_path = ck.tokenizer_path.clone().ok_or_else(|| {
            ModelError::Tokenizer(format!("{}: no tokenizer.json", dir.display()))
        })?;
        let tokenizer = Tokenizer::from_file(&tokenizer_path)?;
        let pooling = SentencePooling::from_snapshot(dir)?;
        let mut max_seq_length = config.max_position_embeddings;
        let st_config = dir.join("sentence_bert_config.json");
        if st_config.exists() {
            use glassbox_formats::input;
            let value = input::read_json(
                &st_config,
                "sentence-transformers config",
                input::limit::CONFIG,
            )?;
            if let Some(n) = value.get("max_seq_length").and_then(|v| v.as_u64()) {
                max_seq_length = max_seq_length.min(n as usize);
            }
        }
        let backend = CheckpointBackend::new(ck);
        let source = backend.checkpoint.clone();
        let vb = VarBuilder::from_backend(Box::new(backend), opts.dtype, opts.device.clone());
        let model = crate::mapped::while_building(source, || BertModel::load(config, vb));
        let model = model.map_err(|e| match e {
            ModelError::Candle(cause) => ModelError::Weights {
                path: dir.to_path_buf(),
                cause,
            },
            other => other,
        })?;
        Ok(SentenceEncoder {
            model,
            tokenizer,
            pooling,
            max_seq_length: max_seq_length.max(2),
        })
    }

    /// Token ids of `text`, truncated to `max_seq_length` keeping the final special token
    /// (`[SEP]`), as the reference tokenizer's truncation does.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text)?;
        if ids.len() > self.max_seq_length {
            let last = ids[ids.len() - 1];
            ids.truncate(self.max_seq_length - 1);
            ids.push(last);
        }
        Ok(ids)
    }

    /// One embedding per text, `[n, d]` f32: the texts are right-padded into one batch and
    /// padding is masked out of attention and pooling.
    pub fn embed(&self, texts: &[&str]) -> Result<Tensor> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<_>>()?;
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        if longest == 0 {
            return Err(ModelError::Input("no text to embed".into()));
        }
        let pad = self.model.config.pad_token_id.unwrap_or(0);
        let mut flat_ids = Vec::with_capacity(ids.len() * longest);
        let mut flat_mask = Vec::with_capacity(ids.len() * longest);
        for row in &ids {
            flat_ids.extend(
                row.iter()
                    .copied()
                    .chain(std::iter::repeat(pad))
                    .take(longest),
            );
            flat_mask.extend((0..longest).map(|i| u32::from(i < row.len())));
        }
        let device = self.model.device();
        let ids = Tensor::from_vec(flat_ids, (ids.len(), longest), device)?;
        let mask = Tensor::from_vec(flat_mask, ids.dims(), device)?;
        Ok(self
            .model
            .sentence_embedding(&ids, Some(&mask), &self.pooling)?)
    }
}

/// The additive attention mask `[b, 1, 1, t]`: 0 where attended, the most negative f32 where
/// padded (as the reference does, so a fully padded row stays finite).
fn additive_mask(
    attention_mask: Option<&Tensor>,
    batch: usize,
    seq_len: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let keep = match attention_mask {
        Some(m) => {
            if m.dims() != [batch, seq_len] {
                candle_core::bail!(
                    "attention mask shape {:?} does not match input ids [{batch}, {seq_len}]",
                    m.dims()
                );
            }
            m.to_dtype(DType::F32)?
        }
        None => Tensor::ones((batch, seq_len), DType::F32, device)?,
    };
    let blocked = (1.0 - keep)?;
    (blocked * f32::MIN as f64)?.reshape((batch, 1, 1, seq_len))
}

/// How sentence-transformers turns token states into one vector per sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// Mean over real (unmasked) tokens.
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// Elementwise max over real tokens.
    Max,
}

/// A sentence-transformers pipeline after the encoder: pooling, then optional L2 normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentencePooling {
    pub mode: PoolingMode,
    pub normalize: bool,
}

impl Default for SentencePooling {
    /// Mean pooling and L2 normalization: all-MiniLM-L6-v2 and most sentence-transformers.
    fn default() -> Self {
        SentencePooling {
            mode: PoolingMode::Mean,
            normalize: true,
        }
    }
}

impl SentencePooling {
    /// Reads `modules.json` and the pooling module's `config.json` of a sentence-transformers
    /// snapshot. Without `modules.json` the default (mean, normalized) is used.
    pub fn from_snapshot(dir: &Path) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        if !modules_path.exists() {
            return Ok(Self::default());
        }
        let bad =
            |path: &Path, msg: String| ModelError::Config(format!("{}: {msg}", path.display()));
        let read = |path: &Path| -> Result<serde_json::Value> {
            use glassbox_formats::input;
            Ok(input::read_json(
                path,
                "sentence-transformers modules",
                input::limit::CONFIG,
            )?)
        };
        let modules = read(&modules_path)?;
        let modules = modules
            .as_array()
            .ok_or_else(|| bad(&modules_path, "expected a list of modules".into()))?;
        let mut pooling = SentencePooling {
            mode: PoolingMode::Mean,
            normalize: false,
        };
        for module in modules {
            let kind = module.get("type").and_then(|t| t.as_str()).unwrap_or("");
            let sub = module.get("path").and_then(|p| p.as_str()).unwrap_or("");
            if kind.ends_with(".Normalize") {
                pooling.normalize = true;
            } else if kind.ends_with(".Pooling") {
                if sub.contains("..") || sub.starts_with('/') {
                    return Err(bad(
                        &modules_path,
                        format!("module path `{sub}` leaves the snapshot"),
                    ));
                }
                let config_path = dir.join(sub).join("config.json");
                let config = read(&config_path)?;
                let flag = |key: &str| config.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
                pooling.mode = if flag("pooling_mode_mean_tokens") {
                    PoolingMode::Mean
                } else if flag("pooling_mode_cls_token") {
                    PoolingMode::Cls
                } else if flag("pooling_mode_max_tokens") {
                    PoolingMode::Max
                } else {
                    return Err(bad(
                        &config_path,
                        "no supported pooling mode (mean, cls or max) is enabled".into(),
                    ));
                };
            }
        }
        Ok(pooling)
    }

    /// Pools `hidden` `[b, t, d]` to `[b, d]`.
    pub fn pool(
        &self,
        hidden: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq_len, _) = hidden.dims3()?;
        let hidden = hidden.to_dtype(DType::F32)?;
        let mask = match attention_mask {
            Some(m) => m.to_dtype(DType::F32)?,
            None => Tensor::ones((batch, seq_len), DType::F32, hidden.device())?,
        }
        .unsqueeze(2)?;
        let pooled = match self.mode {
            PoolingMode::Mean => {
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                // sentence-transformers clamps the token count at 1e-9.
                let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
            PoolingMode::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            PoolingMode::Max => {
                // Padding positions are pushed far down so they never win the max.
                let penalty = ((1.0 - &mask)? * -1e9)?;
                hidden.broadcast_add(&penalty)?.max(1)?
            }
        };
        if !self.normalize {
            return Ok(pooled);
        }
        // torch.nn.functional.normalize: x / max(‖x‖₂, 1e-12).
        let norm = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        pooled.broadcast_div(&norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pools `[[1, 2], [3, -4], [100, 100]]` (the third token is padding) with `pooling`.
    fn check(pooling: SentencePooling, expected: &[f32]) {
        let hidden = Tensor::new(&[[[1f32, 2.], [3., -4.], [100., 100.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu).unwrap();
        let pooled = pooling.pool(&hidden, Some(&mask)).unwrap();
        let got = pooled.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (g, e) in got.iter().zip(expected) {
            assert!(
                (g - e).abs() < 1e-6,
                "{pooling:?}: got {got:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn pooling_skips_padding() {
        let raw = |mode| SentencePooling {
            mode,
            normalize: false,
        };
        check(raw(PoolingMode::Mean), &[2., -1.]);
        check(raw(PoolingMode::Cls), &[1., 2.]);
        check(raw(PoolingMode::Max), &[3., 2.]);
        let norm = (5f32).sqrt();
        check(
            SentencePooling {
                mode: PoolingMode::Mean,
                normalize: true,
            },
            &[2. / norm, -1. / norm],
        );
    }
}
