//! The release's tokenizer: a word-level `tokenizer.json` over the corpus vocabulary.
//!
//! The synthetic corpus is whitespace-separated words from a closed vocabulary, so the honest
//! tokenizer is one id per word (Hugging Face `WordLevel` model, `WhitespaceSplit`
//! pre-tokenizer) with `<bos>` prepended by a template post-processor, as the model was
//! trained. The JSON is written directly (it is short and its schema is stable) and then
//! loaded back through the `tokenizers` crate, which both validates it and does the encoding.

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::corpus::{BOS, PAD, UNK};
use crate::TrainError;

/// The `tokenizer.json` document for `vocab` (ids are positions; specials come first).
pub fn tokenizer_json(vocab: &[String]) -> Value {
    let map: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), json!(i)))
        .collect();
    let id = |w: &str| vocab.iter().position(|v| v == w);
    let added: Vec<Value> = [BOS, UNK, PAD]
        .iter()
        .filter_map(|w| id(w).map(|i| (i, w)))
        .map(|(i, w)| {
            json!({"id": i, "content": w, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let bos_id = id(BOS).unwrap_or(0);
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [bos_id], "tokens": [BOS]}}
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": map, "unk_token": UNK}
    })
}

/// Builds the tokenizer for `vocab` through the `tokenizers` crate.
pub fn build(vocab: &[String]) -> Result<Tokenizer, TrainError> {
    let text = tokenizer_json(vocab).to_string();
    text.parse::<Tokenizer>()
        .map_err(|e| TrainError::Internal(format!("building tokenizer.json: {e}")))
}

/// Token ids of one document, `<bos>` first.
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, TrainError> {
    let enc = tok
        .encode(text, true)
        .map_err(|e| TrainError::Internal(format!("tokenizing: {e}")))?;
    Ok(enc.get_ids().to_vec())
}
