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
    /// One token as a reader should see it (see [`Tokenizer::str_tokens`]); by default its
    /// decoded text.
    fn display_token(&self, id: u32) -> Result<String> {
        self.decode(&[id])
    }
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

    /// Each token on its own, faithfully: its decoded text with its leading space kept (the
    /// SentencePiece `▁` included), a special token by its name (`<bos>`, `<|endoftext|>`),
    /// a piece that is only part of a character's bytes as those bytes (`<0xE2>`), never `�`.
    pub fn str_tokens(&self, ids: &[u32]) -> Result<Vec<String>> {
        ids.iter().map(|&id| self.inner.display_token(id)).collect()
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

    fn display_token(&self, id: u32) -> Result<String> {
        let piece = self.0.id_to_token(id);
        let special = self
            .0
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special);
        if special {
            if let Some(name) = piece {
                return Ok(name);
            }
        }
        let text = self
            .0
            .decode(&[id], false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let Some(piece) = piece else {
            return Ok(text);
        };
        if text.contains('\u{FFFD}') {
            return Ok(byte_pieces(&piece));
        }
        // SentencePiece decoders strip a word's leading space when the token stands alone.
        if piece.starts_with('\u{2581}') && !text.starts_with(' ') {
            return Ok(format!(" {text}"));
        }
        Ok(text)
    }
}

/// The bytes a piece stands for, written `<0xE2>`: a SentencePiece byte token is already
/// spelled that way; a byte-level BPE piece maps each character to one byte (GPT-2's table).
fn byte_pieces(piece: &str) -> String {
    if piece.starts_with("<0x") && piece.ends_with('>') {
        return piece.to_string();
    }
    piece
        .chars()
        .map(|c| match byte_level_byte(c) {
            Some(b) => format!("<0x{b:02X}>"),
            None => c.to_string(),
        })
        .collect()
}

/// GPT-2's byte-to-unicode table, inverted: printable Latin-1 bytes stand for themselves, the
/// other bytes for U+0100 onwards in order.
fn byte_level_byte(c: char) -> Option<u8> {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let cp = c as u32;
    if cp < 0x100 {
        return printable(cp).then_some(cp as u8);
    }
    let n = cp.checked_sub(0x100)?;
    (0u32..=255)
        .filter(|&b| !printable(b))
        .nth(n as usize)
        .map(|b| b as u8)
}
