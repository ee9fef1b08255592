//! [`Tokenizer`]: text ↔ token ids for a model.
//!
//! A model's tokenizer may come from a Hub `tokenizer.json` (through the `tokenizers` crate) or
//! from elsewhere (e.g. the vocabulary inside a GGUF file); [`TextTokenizer`] is the interface
//! both implement, and [`Tokenizer`] wraps one.

use std::path::Path;

use crate::error::{ModelError, Result};

/// What a tokenizer must do.
pub trait TextTokenizer: Send + Sync {
    /// Token ids of `text`, with the special tokens (e.g. BOS) the tokenizer adds by default.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Text of `ids` (special tokens skipped).
    fn decode(&self, ids: &[u32]) -> Result<String>;
    /// Number of entries in the vocabulary.
    fn vocab_size(&self) -> usize;
}

/// A loaded tokenizer.
pub struct Tokenizer {
    inner: Box<dyn TextTokenizer>,
}

impl Tokenizer {
    pub fn new(inner: Box<dyn TextTokenizer>) -> Self {
        Tokenizer { inner }
    }

    /// Loads a Hub `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut t = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        // transformers ignores the file's padding and truncation unless a call asks for them.
        t.with_padding(None);
        t.with_truncation(None)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Tokenizer::new(Box::new(HfTokenizer(t))))
    }

    /// Wraps a `tokenizers` tokenizer built in memory (e.g. from a GGUF vocabulary).
    pub fn from_hf(tokenizer: tokenizers::Tokenizer) -> Self {
        Tokenizer::new(Box::new(HfTokenizer(tokenizer)))
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode(text)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids)
    }

    /// Each token decoded on its own, as TransformerLens' `to_str_tokens` shows them.
    pub fn str_tokens(&self, ids: &[u32]) -> Result<Vec<String>> {
        ids.iter().map(|&id| self.inner.decode(&[id])).collect()
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
}

/// A `tokenizer.json` tokenizer.
struct HfTokenizer(tokenizers::Tokenizer);

impl TextTokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .0
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.0
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    fn vocab_size(&self) -> usize {
        self.0.get_vocab_size(true)
    }
}
