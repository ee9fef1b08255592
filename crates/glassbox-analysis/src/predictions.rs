//! The most likely next tokens at each position of a prompt: what `glassbox run` prints and
//! the workbench's prompt explorer shows.

use candle_core::{DType, IndexOp};
use glassbox_models::HookedModel;

use crate::Result;

/// One candidate next token.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Candidate {
    pub id: u32,
    pub token: String,
    pub logit: f32,
    /// Its softmax probability over the whole vocabulary.
    pub prob: f32,
}

/// The `k` most likely tokens after one position.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Position {
    pub position: usize,
    pub token_id: u32,
    pub token: String,
    pub top: Vec<Candidate>,
}

/// The `k` most likely next tokens after each position of `ids` (`all_positions`) or after
/// the last only, by logit (ties by id).
pub fn top_next(
    model: &HookedModel,
    ids: &[u32],
    k: usize,
    all_positions: bool,
) -> Result<Vec<Position>> {
    if ids.is_empty() || k == 0 {
        return Err(crate::AnalysisError::Input(
            "top tokens need a prompt and k ≥ 1".into(),
        ));
    }
    let input = model.ids_tensor(ids)?;
    // Logits [positions shown, vocab]: only the last position's unless all are asked for.
    let (positions, logits): (Vec<usize>, _) = if all_positions {
        ((0..ids.len()).collect(), model.run(&input)?.i(0)?)
    } else {
        (vec![ids.len() - 1], model.run_last(&input)?)
    };
    let logits = logits.to_dtype(DType::F32)?;
    let mut out = Vec::with_capacity(positions.len());
    for (row_index, &p) in positions.iter().enumerate() {
        let row = logits.i(row_index)?.to_vec1::<f32>()?;
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let norm: f64 = row.iter().map(|&l| ((l - max) as f64).exp()).sum();
        // The k largest, then only those sorted (a full sort of the vocabulary per position
        // cost more than the forward pass at every position).
        let by_logit = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
        let mut order: Vec<usize> = (0..row.len()).collect();
        let k = k.min(order.len());
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, by_logit);
            order.truncate(k);
        }
        order.sort_by(by_logit);
        let top = order
            .iter()
            .map(|&i| Candidate {
                id: i as u32,
                token: token_text(model, i as u32),
                logit: row[i],
                prob: (((row[i] - max) as f64).exp() / norm) as f32,
            })
            .collect();
        out.push(Position {
            position: p,
            token_id: ids[p],
            token: token_text(model, ids[p]),
            top,
        });
    }
    Ok(out)
}

/// A token for display: its decoded text if there is a tokenizer, else `#id`.
pub fn token_text(model: &HookedModel, id: u32) -> String {
    match model.ids_to_str_tokens(&[id]) {
        Ok(mut v) if !v.is_empty() => v.remove(0),
        _ => format!("#{id}"),
    }
}

/// The id of a single token given as text (`" Paris"`) or as `#123`; `what` names it in
/// messages (`--target`). Special tokens the tokenizer adds to every text (a BOS) are not
/// counted.
pub fn single_token(model: &HookedModel, spec: &str, what: &str) -> Result<u32> {
    let vocab = model.info().d_vocab;
    // `#` and a number is an id, whatever the number (a negative or huge one is an error,
    // not the text "#-1", which a word-level tokenizer turns into its unknown token).
    let numeric = |n: &str| {
        let digits = n.strip_prefix(['-', '+']).unwrap_or(n);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if let Some(num) = spec.strip_prefix('#').filter(|n| numeric(n)) {
        return match num.parse::<u32>() {
            Ok(id) if (id as usize) < vocab => Ok(id),
            _ => Err(crate::AnalysisError::Input(format!(
                "{what} #{num} is outside the vocabulary (size {vocab})"
            ))),
        };
    }
    let prefix = model.to_tokens("").unwrap_or_default();
    let ids = model.to_tokens(spec)?;
    let ids: &[u32] = ids.strip_prefix(prefix.as_slice()).unwrap_or(&ids);
    match ids {
        [id] => {
            // A word the vocabulary does not hold comes back as a special token (the unknown
            // token): a target that is not what was asked for. A special token named by its
            // own text (`<|endoftext|>`) is fine.
            let special = model
                .tokenizer
                .as_ref()
                .is_some_and(|t| t.special_ids().contains(id));
            let piece = model.ids_to_str_tokens(&[*id]).unwrap_or_default();
            if special && piece.first().map(String::as_str) != Some(spec) {
                return Err(crate::AnalysisError::Input(format!(
                    "{what} {spec:?} is not in the vocabulary: the tokenizer reads it as the special token {:?} (#{id}); pass a token of the vocabulary or an id as #ID",
                    piece.first().map(String::as_str).unwrap_or("?")
                )));
            }
            Ok(*id)
        }
        _ => {
            let pieces = model.ids_to_str_tokens(ids).unwrap_or_default();
            Err(crate::AnalysisError::Input(format!(
                "{what} {spec:?} is {} tokens ({pieces:?}), not one; pass a single token \
                 (mind the leading space) or an id as #ID",
                ids.len()
            )))
        }
    }
}

/// The token the model itself predicts after the last position of `ids`.
pub fn predicted_next(model: &HookedModel, ids: &[u32]) -> Result<u32> {
    let logits = model.run_last(&model.ids_tensor(ids)?)?;
    Ok(logits.i(0)?.argmax(0)?.to_scalar::<u32>()?)
}

/// A token id as a readable string for messages: `" Paris" (#314)`.
pub fn describe_token(model: &HookedModel, id: u32) -> String {
    let text = model
        .ids_to_str_tokens(&[id])
        .ok()
        .and_then(|v| v.into_iter().next())
        .unwrap_or_default();
    format!("{text:?} (#{id})")
}

/// The token ids of `text` (with the special tokens the tokenizer adds); `what` names it in
/// the message when it has none.
pub fn prompt_tokens(model: &HookedModel, text: &str, what: &str) -> Result<Vec<u32>> {
    let ids = model.to_tokens(text)?;
    if ids.is_empty() {
        return Err(crate::AnalysisError::Input(format!(
            "{what} {text:?} has no tokens"
        )));
    }
    Ok(ids)
}

/// The document `glassbox run --json` prints.
pub fn document(
    model: &HookedModel,
    model_path: &str,
    ids: &[u32],
    positions: &[Position],
) -> serde_json::Value {
    let (unknown_at, unknown_token) = model.unknown_tokens(ids).unzip();
    serde_json::json!({
        "model": model_path,
        "architecture": model.info().architecture,
        "numerics": model.numerics.name(),
        "kv_cache": model.kv_cache.name(),
        "input_ids": ids,
        "positions": positions,
        // text the tokenizer could not represent: how many tokens, and the token's text
        "unknown_tokens": unknown_at.map_or(0, |at| at.len()),
        "unknown_token": unknown_token,
    })
}
