//! Token rows to run a model over, as SAELens's activation store makes them: a text is
//! tokenized whole and cut into rows of `context` tokens, each starting with the model's BOS
//! when the SAE was trained so (`prepend_bos`); or rows read from a safetensors file.

use std::path::Path;

use candle_core::{Device, Tensor};
use glassbox_formats::input::{self, limit};
use glassbox_formats::{DType as FileDType, SafetensorsFile};
use glassbox_models::HookedModel;

use crate::error::{FeatureError, Result};

/// Token rows to read `sae` over: a tokens file's rows as they are, or a text cut into rows of
/// `context` tokens (default: the SAE's training context, else 128; at most the model's), each
/// starting with BOS when the SAE was trained so (`metadata.prepend_bos`, default true).
pub fn rows_for_sae(
    model: &HookedModel,
    sae: &crate::Sae,
    text: Option<&Path>,
    tokens: Option<&Path>,
    context: Option<usize>,
) -> Result<Tensor> {
    use serde_json::Value;
    match (text, tokens) {
        (_, Some(path)) => token_file_rows(path, model.info().d_vocab, model.info().n_ctx),
        (Some(path), None) => {
            let trained = sae.cfg.metadata.get("context_size").and_then(Value::as_u64);
            let context = context
                .or(trained.map(|c| c as usize))
                .unwrap_or(128)
                .min(model.info().n_ctx);
            let bos = sae
                .cfg
                .metadata
                .get("prepend_bos")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            text_rows(model, path, context, bos)
        }
        (None, None) => Err(FeatureError::input("give a text or a tokens file")),
    }
}

/// The model's BOS token id, if its config names one inside the vocabulary.
pub fn bos_id(model: &HookedModel) -> Option<u32> {
    let vocab = model.info().d_vocab as u32;
    glassbox_formats::hf_config::HfConfig(&model.config)
        .token_ids("bos_token_id")
        .into_iter()
        .find(|&id| id < vocab)
}

/// Rows [n, context] of the text in `path` (whole rows only; the rest is dropped).
pub fn text_rows(
    model: &HookedModel,
    path: &Path,
    context: usize,
    prepend_bos: bool,
) -> Result<Tensor> {
    if context < 2 {
        return Err(FeatureError::input("the context must be at least 2 tokens"));
    }
    let text = input::read_text(path, "text", limit::CORPUS)?;
    let bos = if prepend_bos { bos_id(model) } else { None };
    let ids = document_ids(model, &text, bos)?;
    rows_of(ids, context, bos, path)
}

/// A document's ids without a BOS the tokenizer may have put first (rows get their own).
fn document_ids(model: &HookedModel, text: &str, bos: Option<u32>) -> Result<Vec<u32>> {
    let mut ids = model.to_tokens(text)?;
    if let (Some(b), Some(&first)) = (bos, ids.first()) {
        if first == b {
            ids.remove(0);
        }
    }
    Ok(ids)
}

/// Rows [n, context] of JSON Lines documents (`{"text": ...}` per line), joined with the BOS
/// token between documents (SAELens's `sequence_separator_token`), then cut as [`text_rows`].
pub fn jsonl_rows(
    model: &HookedModel,
    path: &Path,
    context: usize,
    prepend_bos: bool,
) -> Result<Tensor> {
    if context < 2 {
        return Err(FeatureError::input("the context must be at least 2 tokens"));
    }
    let text = input::read_text(path, "JSON Lines corpus", limit::CORPUS)?;
    let bos = if prepend_bos { bos_id(model) } else { None };
    let mut ids = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| FeatureError::file(path, format!("line {}: {e}", i + 1)))?;
        let doc = value.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
            FeatureError::file(path, format!("line {}: no string field `text`", i + 1))
        })?;
        if !ids.is_empty() {
            if let Some(b) = bos {
                ids.push(b);
            }
        }
        ids.extend(document_ids(model, doc, bos)?);
    }
    rows_of(ids, context, bos, path)
}

fn rows_of(ids: Vec<u32>, context: usize, bos: Option<u32>, path: &Path) -> Result<Tensor> {
    let per_row = context - usize::from(bos.is_some());
    let n = ids.len() / per_row;
    if n == 0 {
        return Err(FeatureError::file(
            path,
            format!("{} tokens is less than one row of {context}", ids.len()),
        ));
    }
    let mut rows = Vec::with_capacity(n * context);
    for chunk in ids.chunks_exact(per_row) {
        if let Some(b) = bos {
            rows.push(b);
        }
        rows.extend_from_slice(chunk);
    }
    Ok(Tensor::from_vec(rows, (n, context), &Device::Cpu)?)
}

/// Token rows [n, pos] from a safetensors file: its tensor `tokens`, or its only tensor; an
/// integer matrix (as SAELens's pretokenized datasets and `glassbox trace`'s `input_ids`).
pub fn token_file_rows(path: &Path, vocab: usize, n_ctx: usize) -> Result<Tensor> {
    let file = SafetensorsFile::open(path)?;
    let entry = match file.entries.iter().find(|e| e.name == "tokens") {
        Some(e) => e,
        None if file.entries.len() == 1 => &file.entries[0],
        None => {
            return Err(FeatureError::file(
                path,
                "holds several tensors and none named `tokens`",
            ))
        }
    };
    let [n, pos] = entry.shape[..] else {
        return Err(FeatureError::file(
            path,
            format!(
                "`{}` has shape {:?}; token rows are [sequences, positions]",
                entry.name, entry.shape
            ),
        ));
    };
    // Rows past the model's positions ran it there without a word.
    if pos > n_ctx {
        return Err(FeatureError::file(
            path,
            format!("rows of {pos} tokens; the model has {n_ctx} positions"),
        ));
    }
    let bytes = file.bytes(entry);
    let ids: Vec<i64> = match entry.dtype {
        FileDType::I64 => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        FileDType::I32 => bytes
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
            .collect(),
        FileDType::U32 => bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as i64)
            .collect(),
        other => {
            return Err(FeatureError::file(
                path,
                format!(
                    "`{}` is {other}; token ids are integers (I64, I32 or U32)",
                    entry.name
                ),
            ))
        }
    };
    if let Some(bad) = ids.iter().find(|&&i| i < 0 || i as u64 >= vocab as u64) {
        return Err(FeatureError::file(
            path,
            format!("token id {bad} is outside the vocabulary (size {vocab})"),
        ));
    }
    let ids: Vec<u32> = ids.into_iter().map(|i| i as u32).collect();
    Ok(Tensor::from_vec(ids, (n, pos), &Device::Cpu)?)
}
