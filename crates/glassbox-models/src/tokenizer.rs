//! [`Tokenizer`]: text ↔ token ids for a model.
//!
//! A model's tokenizer may come from a Hub `tokenizer.json` (through the `tokenizers` crate) or
//! from elsewhere (e.g. the vocabulary inside a GGUF file); [`TextTokenizer`] is the interface
//! both implement, and [`Tokenizer`] wraps one.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// What a tokenizer must do.
pub trait TextTokenizer: Send + Sync {
    /// Token ids of `text`, with the special tokens (e.g. BOS) the tokenizer adds by default.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Token ids of `text` alone, without the special tokens the tokenizer adds around it.
    fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        self.encode(text)
    }
    /// Text of `ids` (special tokens skipped).
    fn decode(&self, ids: &[u32]) -> Result<String>;
    /// Text of `ids` with the special tokens (BOS, EOS, padding) written out.
    fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        self.decode(ids)
    }
    /// Number of entries in the vocabulary.
    fn vocab_size(&self) -> usize;
    /// One token as a reader should see it (see [`Tokenizer::str_tokens`]); by default its
    /// decoded text.
    fn display_token(&self, id: u32) -> Result<String> {
        self.decode(&[id])
    }
    /// Ids of the tokens the vocabulary marks special (added tokens with `special: true`).
    fn special_ids(&self) -> Vec<u32> {
        Vec::new()
    }
    /// The id text outside the vocabulary becomes, where the vocabulary has one.
    fn unknown_id(&self) -> Option<u32> {
        None
    }
}

/// A loaded tokenizer.
pub struct Tokenizer {
    inner: Box<dyn TextTokenizer>,
    /// The file it came from, named in the errors of encoding and decoding (a vocabulary
    /// without its unknown token fails only there, long after loading).
    origin: Option<PathBuf>,
}

impl Tokenizer {
    pub fn new(inner: Box<dyn TextTokenizer>) -> Self {
        Tokenizer {
            inner,
            origin: None,
        }
    }

    /// The same tokenizer, naming `origin` in its errors.
    pub fn with_origin(mut self, origin: &Path) -> Self {
        self.origin = Some(origin.to_path_buf());
        self
    }

    /// Prefixes a tokenizer error with the file the tokenizer came from.
    fn named<T>(&self, result: Result<T>) -> Result<T> {
        match (result, &self.origin) {
            (Err(ModelError::Tokenizer(msg)), Some(origin)) => Err(ModelError::Tokenizer(format!(
                "{}: {msg}",
                origin.display()
            ))),
            (result, _) => result,
        }
    }

    /// Loads a Hub `tokenizer.json` (read under the input policy of
    /// [`glassbox_formats::input`], checked by [`validate`] before the tokenizers crate sees
    /// it, and any panic in that crate reported as an error naming the file).
    pub fn from_file(path: &Path) -> Result<Self> {
        use glassbox_formats::input;
        let text = input::read_text(path, "tokenizer", input::limit::TOKENIZER)?;
        Self::from_json(&text, path)
    }

    /// A `tokenizer.json`'s text from elsewhere (a GGUF's `tokenizer.huggingface.json`),
    /// checked as [`Tokenizer::from_file`] checks a file; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self> {
        let path = origin;
        let bad = |msg: String| ModelError::Tokenizer(format!("{}: {msg}", path.display()));
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("malformed JSON: {e}")))?;
        validate(&json).map_err(bad)?;
        // From the parsed value: the text is not parsed twice.
        let mut t = guarded(|| serde_json::from_value::<tokenizers::Tokenizer>(json))
            .map_err(bad)?
            .map_err(|e| bad(e.to_string()))?;
        // transformers ignores the file's padding and truncation unless a call asks for them.
        t.with_padding(None);
        t.with_truncation(None)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Tokenizer::new(Box::new(HfTokenizer(t))).with_origin(path))
    }

    /// Wraps a `tokenizers` tokenizer built in memory (e.g. from a GGUF vocabulary).
    pub fn from_hf(tokenizer: tokenizers::Tokenizer) -> Self {
        Tokenizer::new(Box::new(HfTokenizer(tokenizer)))
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.named(self.inner.encode(text))
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.named(self.inner.decode(ids))
    }

    /// Text of `ids` with the special tokens written out (TransformerLens' `to_string`).
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        self.named(self.inner.decode_with_special(ids))
    }

    /// Token ids of `text` alone, without the special tokens the tokenizer adds around it.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        self.named(self.inner.encode_plain(text))
    }

    /// The special tokens the tokenizer puts before a text (its BOS, where it adds one; not
    /// those it appends): [`Tokenizer::encode`] of a text, up to where the text's own ids
    /// ([`TextTokenizer::encode_plain`]) begin.
    pub fn prefix(&self) -> Result<Vec<u32>> {
        let with = self.encode("a")?;
        let plain = self.named(self.inner.encode_plain("a"))?;
        Ok((0..=with.len().saturating_sub(plain.len()))
            .find(|&p| with[p..].starts_with(&plain))
            .map(|p| with[..p].to_vec())
            .unwrap_or_default())
    }

    /// Each token on its own, faithfully: its decoded text with its leading space kept (the
    /// SentencePiece `▁` included), a special token by its name (`<bos>`, `<|endoftext|>`),
    /// a piece that is only part of a character's bytes as those bytes (`<0xE2>`), never `�`.
    pub fn str_tokens(&self, ids: &[u32]) -> Result<Vec<String>> {
        self.named(ids.iter().map(|&id| self.inner.display_token(id)).collect())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The id text outside the vocabulary becomes (`<unk>`), where the vocabulary has one.
    pub fn unknown_id(&self) -> Option<u32> {
        self.inner.unknown_id()
    }

    /// Ids of the tokens the vocabulary marks special, ascending.
    pub fn special_ids(&self) -> Vec<u32> {
        let mut ids = self.inner.special_ids();
        ids.sort_unstable();
        ids
    }
}

thread_local! {
    /// Set while this thread runs a [`guarded`] call: its panics are reported as errors.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a call into the tokenizers crate, turning a panic (which a malformed tokenizer.json
/// can still cause there) into an error message. The panic is not printed — the user gets
/// the error naming the file instead: a panic hook installed once stays silent for the
/// thread inside such a call and hands every other panic to the hook it replaced.
fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        format!("the tokenizer failed on this input ({msg})")
    })
}

/// Checks what the tokenizers crate takes on trust and panics on (issue 19's reproductions):
/// every special token a `TemplateProcessing` template names is in its `special_tokens`;
/// `Replace` patterns are not empty; a `Precompiled` normalizer's charsmap is well-formed
/// base64 whose trie fits in it. Components nest (`Sequence`), so each is walked whole; the
/// model (vocabulary, merges) holds none of them and is not.
pub fn validate(json: &serde_json::Value) -> std::result::Result<(), String> {
    use serde_json::Value;
    let mut pending: Vec<&Value> = ["normalizer", "pre_tokenizer", "post_processor", "decoder"]
        .iter()
        .filter_map(|k| json.get(*k))
        .collect();
    while let Some(v) = pending.pop() {
        match v {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => {
                match map.get("type").and_then(Value::as_str) {
                    Some("TemplateProcessing") => check_template(map)?,
                    Some("Replace") => {
                        let pattern = map.get("pattern");
                        let text = pattern
                            .and_then(|p| p.get("String").or_else(|| p.get("Regex")))
                            .and_then(Value::as_str);
                        if text.is_some_and(str::is_empty) {
                            return Err("a `Replace` with an empty pattern".into());
                        }
                    }
                    Some("Precompiled") => check_charsmap(map.get("precompiled_charsmap"))?,
                    _ => {}
                }
                pending.extend(map.values());
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_template(
    map: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<(), String> {
    use serde_json::Value;
    let known = map.get("special_tokens").and_then(Value::as_object);
    for template in ["single", "pair"] {
        let Some(pieces) = map.get(template).and_then(Value::as_array) else {
            continue;
        };
        for piece in pieces {
            let Some(id) = piece
                .get("SpecialToken")
                .and_then(|s| s.get("id"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let entry = known.and_then(|k| k.get(id));
            let ids_ok = entry
                .and_then(|e| e.get("ids"))
                .and_then(Value::as_array)
                .is_some_and(|ids| !ids.is_empty());
            if !ids_ok {
                return Err(format!(
                    "the `TemplateProcessing` {template} template uses special token `{id}`, which its `special_tokens` does not define"
                ));
            }
        }
    }
    Ok(())
}

/// SentencePiece's precompiled charsmap: base64 of a little-endian u32 trie size, the trie
/// (whole u32 units) and the normalised strings after it.
fn check_charsmap(charsmap: Option<&serde_json::Value>) -> std::result::Result<(), String> {
    let Some(text) = charsmap.and_then(serde_json::Value::as_str) else {
        return Ok(());
    };
    let bytes = base64_decode(text).ok_or("a `Precompiled` charsmap that is not base64")?;
    let trie = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("a `Precompiled` charsmap shorter than its header")?;
    if trie == 0 || trie % 4 != 0 || trie > bytes.len() - 4 {
        return Err(format!(
            "a `Precompiled` charsmap whose trie ({trie} bytes) does not fit its {} bytes",
            bytes.len()
        ));
    }
    Ok(())
}

/// Standard base64 (padding optional), None on any other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

/// A `tokenizer.json` tokenizer.
struct HfTokenizer(tokenizers::Tokenizer);

impl TextTokenizer for HfTokenizer {
    fn unknown_id(&self) -> Option<u32> {
        use tokenizers::models::ModelWrapper;
        let token = match self.0.get_model() {
            ModelWrapper::WordLevel(m) => Some(m.unk_token.clone()),
            ModelWrapper::WordPiece(m) => Some(m.unk_token.clone()),
            ModelWrapper::BPE(m) => m.unk_token.clone(),
            // the crate keeps a unigram model's unknown id to itself
            ModelWrapper::Unigram(_) => None,
        }?;
        self.0.token_to_id(&token)
    }

    fn special_ids(&self) -> Vec<u32> {
        self.0
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = guarded(|| self.0.encode(text, true))
            .map_err(ModelError::Tokenizer)?
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = guarded(|| self.0.encode(text, false))
            .map_err(ModelError::Tokenizer)?
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        guarded(|| self.0.decode(ids, true))
            .map_err(ModelError::Tokenizer)?
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        guarded(|| self.0.decode(ids, false))
            .map_err(ModelError::Tokenizer)?
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
        let text = guarded(|| self.0.decode(&[id], false))
            .map_err(ModelError::Tokenizer)?
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
