//! The vocabulary half of a Hub checkpoint's conversion: the keys llama.cpp's converter writes
//! from `tokenizer.model`, `tokenizer.json` and `tokenizer_config.json`, key for key and in its
//! order.
//!
//! - A SentencePiece model (`tokenizer.model`, as Llama 2 and Mistral publish) is read first, as
//!   the converter does: `tokenizer.ggml.model = "llama"` with each piece's text, score and
//!   kind, then the added tokens of `added_tokens.json` and `tokenizer_config.json`.
//! - Otherwise a byte-level BPE `tokenizer.json` whose split regex llama.cpp knows by name:
//!   `tokenizer.ggml.model = "gpt2"`, tokens, kinds and merges.
//! - Otherwise the whole `tokenizer.json` is carried (`tokenizer.huggingface.json`, the GGUF
//!   specification's key) with `tokenizer.ggml.model = "none"`: glassbox tokenizes from it,
//!   llama.cpp runs token ids only.
//!
//! Then gguf-py's `SpecialVocab`: special token ids (tokenizer_config.json's tokens found among
//! tokenizer.json's added tokens first, then config.json's ids), whether to add BOS / EOS / SEP
//! (the tokenizer's post-processor first, then tokenizer_config.json), the chat template and the
//! normalizer's flags.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::Metadata;
use crate::input::{self, limit};
use crate::sentencepiece::{self, PieceKind};
use crate::{FormatError, GgufArray, GgufValue, Result};

/// Split regexes of the byte-level tokenizers llama.cpp knows by `tokenizer.ggml.pre` (the
/// same patterns its `llama-vocab.cpp` applies).
const PRE_TOKENIZERS: &[(&str, &str)] = &[
    (
        "llama-bpe",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    (
        "qwen2",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
];

/// llama.cpp's token types (SentencePiece's piece kinds, numbered alike).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// Scores the converter gives tokens that are not SentencePiece pieces.
const PADDING_SCORE: f32 = -10000.0;
const ADDED_SCORE: f32 = -1000.0;

/// What the vocabulary is sized by: config.json's `vocab_size` when it has one, else the
/// embedding's rows (already checked to be at least config.json's).
pub(super) struct VocabSize {
    pub config: Option<usize>,
    pub rows: usize,
}

/// Writes the tokenizer's keys into `m`, as the converter's `set_vocab` for `arch` does.
pub(super) fn tokenizer_metadata(
    dir: &Path,
    tokenizer_path: Option<&Path>,
    config: &Value,
    arch: &str,
    size: VocabSize,
    m: &mut Metadata,
) -> Result<()> {
    let tokenizer_config = optional_json(&dir.join("tokenizer_config.json"), "tokenizer config");
    if arch == "llama" {
        if let Some(add) = tokenizer_config["add_prefix_space"].as_bool() {
            m.set("tokenizer.ggml.add_space_prefix", GgufValue::Bool(add));
        }
    }
    let tokenizer = match tokenizer_path {
        Some(path) => {
            let text = input::read_text(path, "tokenizer", limit::TOKENIZER)?;
            let json: Value = serde_json::from_str(&text)
                .map_err(|e| FormatError::invalid(path, e.to_string()))?;
            Some((path, text, json))
        }
        None => None,
    };
    let sentencepiece_model = dir.join("tokenizer.model");
    if input::present(&sentencepiece_model)? {
        let n_vocab = sentencepiece_vocab(&sentencepiece_model, &tokenizer_config, &size, m)?;
        let json = tokenizer.as_ref().map(|(_, _, j)| j);
        SpecialVocab::read(
            dir,
            config,
            json,
            tokenizer_config.clone(),
            Some(n_vocab),
            false,
            SPECIAL,
        )
        .write(m);
        llama_tail(dir, config, arch, json, &tokenizer_config, m);
        return Ok(());
    }
    let Some((path, text, json)) = tokenizer else {
        return Err(FormatError::invalid(
            dir,
            "no tokenizer.json or tokenizer.model",
        ));
    };
    let n_vocab = size.config.unwrap_or(size.rows);
    match byte_level_pre(&json).filter(|_| json["model"]["type"] == "BPE") {
        Some(pre) => {
            byte_level_vocab(path, &json, pre, n_vocab, m)?;
            // the converter sizes nothing here: ids past the vocabulary are kept
            SpecialVocab::read(
                dir,
                config,
                Some(&json),
                tokenizer_config.clone(),
                None,
                true,
                SPECIAL,
            )
            .write(m);
        }
        None => {
            m.string("tokenizer.ggml.model", "none");
            m.string("tokenizer.huggingface.json", &text);
            let size = Some(n_vocab);
            SpecialVocab::read(
                dir,
                config,
                Some(&json),
                tokenizer_config.clone(),
                size,
                false,
                SPECIAL,
            )
            .write(m);
        }
    }
    llama_tail(dir, config, arch, Some(&json), &tokenizer_config, m);
    Ok(())
}

/// gguf-py's special token kinds.
const SPECIAL: &[&str] = &["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

/// What the converter's `LlamaModel.set_vocab` adds by vocabulary size: CodeLlama's infill
/// tokens (32016), no BOS for Granite's and SmolLM's small models (49152).
fn llama_tail(
    dir: &Path,
    config: &Value,
    arch: &str,
    tokenizer: Option<&Value>,
    tokenizer_config: &Value,
    m: &mut Metadata,
) {
    if arch != "llama" {
        return;
    }
    match config
        .get("vocab_size")
        .and_then(Value::as_u64)
        .unwrap_or(32000)
    {
        32016 => {
            let kinds = ["prefix", "suffix", "middle", "eot"];
            let mut infill = SpecialVocab::read(
                dir,
                config,
                tokenizer,
                tokenizer_config.clone(),
                None,
                false,
                &kinds,
            );
            for (kind, id) in kinds.iter().zip(32007..) {
                put_default(&mut infill.ids, kind, id);
            }
            infill.write(m);
        }
        49152 => m.set("tokenizer.ggml.add_bos_token", GgufValue::Bool(false)),
        _ => {}
    }
}

/// An optional JSON side file: absent or unreadable is `Null`, as the converter ignores one it
/// cannot use, but never read unbounded.
fn optional_json(path: &Path, what: &str) -> Value {
    match input::present(path) {
        Ok(true) => input::read_json(path, what, limit::CONFIG).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The converter's `_create_vocab_sentencepiece`: every id below the vocabulary size, pieces
/// first, then added tokens; ids no piece names are `[PAD<i>]`, unused. Returns the size.
fn sentencepiece_vocab(
    path: &Path,
    tokenizer_config: &Value,
    size: &VocabSize,
    m: &mut Metadata,
) -> Result<usize> {
    let pieces = sentencepiece::read_pieces(path)?;
    let n = size.config.unwrap_or(pieces.len());
    // llama.cpp sizes its vocabulary by the embedding: a larger one would not load
    if n > size.rows {
        return Err(FormatError::invalid(
            path,
            format!(
                "a vocabulary of {n} tokens is larger than the token embedding ({} rows)",
                size.rows
            ),
        ));
    }
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![PADDING_SCORE; n];
    let mut types = vec![UNUSED; n];
    for (id, piece) in pieces.into_iter().enumerate().take(n) {
        // a user-defined piece is a normal token to the converter (it asks only these four)
        types[id] = match piece.kind {
            PieceKind::Unknown => UNKNOWN,
            PieceKind::Control => CONTROL,
            PieceKind::Unused => UNUSED,
            PieceKind::Byte => BYTE,
            PieceKind::Normal | PieceKind::UserDefined => NORMAL,
        };
        tokens[id] = piece.text;
        scores[id] = piece.score;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Value::Object(added) = optional_json(&dir.join("added_tokens.json"), "added tokens") {
        for (token, id) in added {
            if let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < n) {
                tokens[id] = token;
                scores[id] = ADDED_SCORE;
                types[id] = USER_DEFINED;
            }
        }
    }
    if let Some(decoder) = tokenizer_config["added_tokens_decoder"].as_object() {
        for (id, data) in decoder {
            let (Ok(id), Some(content)) = (id.parse::<usize>(), data["content"].as_str()) else {
                continue;
            };
            if id >= n {
                continue;
            }
            let special = data["special"].as_bool().unwrap_or(false) || looks_special(content);
            (tokens[id], types[id]) = if special {
                (content.to_string(), CONTROL)
            } else {
                (content.replace('\u{2581}', " "), USER_DEFINED)
            };
            scores[id] = ADDED_SCORE;
        }
    }
    m.string("tokenizer.ggml.model", "llama");
    m.string("tokenizer.ggml.pre", "default");
    m.set(
        "tokenizer.ggml.tokens",
        GgufValue::Array(GgufArray::String(tokens)),
    );
    m.set(
        "tokenizer.ggml.scores",
        GgufValue::Array(GgufArray::F32(scores)),
    );
    m.set(
        "tokenizer.ggml.token_type",
        GgufValue::Array(GgufArray::I32(types)),
    );
    Ok(n)
}

/// The converter's `_set_vocab_gpt2` (its `get_vocab_base`): tokens in id order, added tokens
/// as control or user-defined, `[PAD<i>]` where no token has the id.
fn byte_level_vocab(
    path: &Path,
    json: &Value,
    pre: &str,
    n_vocab: usize,
    m: &mut Metadata,
) -> Result<()> {
    let vocab = json["model"]["vocab"]
        .as_object()
        .ok_or_else(|| FormatError::invalid(path, "BPE model without a vocab"))?;
    let mut by_id: HashMap<usize, (String, i32)> = HashMap::new();
    for (token, id) in vocab {
        if let Some(id) = id.as_u64() {
            by_id.insert(id as usize, (token.clone(), NORMAL));
        }
    }
    for a in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
            continue;
        };
        let special = a["special"].as_bool().unwrap_or(false) || looks_special(content);
        let token = if special {
            (content.to_string(), CONTROL)
        } else {
            (content.replace('\u{2581}', " "), USER_DEFINED)
        };
        by_id.insert(id as usize, token);
    }
    let (tokens, types): (Vec<String>, Vec<i32>) = (0..n_vocab)
        .map(|i| {
            by_id
                .remove(&i)
                .unwrap_or_else(|| (format!("[PAD{i}]"), USER_DEFINED))
        })
        .unzip();
    m.string("tokenizer.ggml.model", "gpt2");
    m.string("tokenizer.ggml.pre", pre);
    m.set(
        "tokenizer.ggml.tokens",
        GgufValue::Array(GgufArray::String(tokens)),
    );
    m.set(
        "tokenizer.ggml.token_type",
        GgufValue::Array(GgufArray::I32(types)),
    );
    Ok(())
}

/// gguf-py's `SpecialVocab`, read from the checkpoint's folder. Maps keep their first
/// insertion's place, as Python's dicts do, since the keys are written in that order.
struct SpecialVocab {
    merges: Vec<String>,
    ids: Vec<(String, u64)>,
    add: Vec<(String, bool)>,
    chat_template: Option<Value>,
    lowercase: Option<bool>,
    strip_accents: Option<bool>,
}

/// Python's truth value of a JSON value (`not x`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn put<T>(map: &mut Vec<(String, T)>, key: &str, value: T) {
    match map.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => map.push((key.to_string(), value)),
    }
}

fn put_default<T>(map: &mut Vec<(String, T)>, key: &str, value: T) {
    if !map.iter().any(|(k, _)| k == key) {
        map.push((key.to_string(), value));
    }
}

/// The id of the first special token of a template item list's entry (`{"SpecialToken": {"id"}}`).
fn special_token(item: Option<&Value>) -> Value {
    item.map(|i| i["SpecialToken"]["id"].clone())
        .unwrap_or(Value::Null)
}

impl SpecialVocab {
    fn read(
        dir: &Path,
        config: &Value,
        tokenizer: Option<&Value>,
        tokenizer_config: Value,
        n_vocab: Option<usize>,
        load_merges: bool,
        types: &[&str],
    ) -> Self {
        let mut v = SpecialVocab {
            merges: Vec::new(),
            ids: Vec::new(),
            add: Vec::new(),
            chat_template: None,
            lowercase: None,
            strip_accents: None,
        };
        let mut types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        // an empty tokenizer_config.json counts as none, as in Python
        let mut tc = match tokenizer_config {
            Value::Object(o) if !o.is_empty() => Some(o),
            _ => None,
        };
        let added = tokenizer
            .and_then(|t| t["added_tokens"].as_array().cloned())
            .unwrap_or_default();
        if let Some(tokenizer) = tokenizer {
            if load_merges {
                v.merges = merges(&tokenizer["model"]["merges"]);
            }
            v.normalizer(&tokenizer["normalizer"]);
            v.post_processor(&tokenizer["post_processor"], &mut tc, &mut types);
        }
        if let Some(tc) = &tc {
            v.chat_template = match tc.get("chat_template") {
                Some(t) => Some(t.clone()),
                None => chat_template_file(dir),
            }
            .filter(|t| t.is_string() || t.is_array());
            for typ in &types {
                if let Some(add) = tc.get(&format!("add_{typ}_token")).and_then(Value::as_bool) {
                    put_default(&mut v.add, typ, add);
                }
                let content = match tc.get(&format!("{typ}_token")) {
                    Some(Value::String(s)) => s.as_str(),
                    Some(Value::Object(o)) => match o.get("content") {
                        Some(Value::String(s)) => s.as_str(),
                        _ => continue,
                    },
                    _ => continue,
                };
                let id = added
                    .iter()
                    .find(|a| a["content"] == content)
                    .map(|a| a["id"].clone())
                    .unwrap_or(Value::Null);
                v.special_id(typ, &id, n_vocab);
            }
        }
        for typ in &types {
            let key = format!("{typ}_token_id");
            let id = match config.get(&key) {
                Some(id) if !id.is_null() => id.clone(),
                _ => config["text_config"][&key].clone(),
            };
            v.special_id(typ, &id, n_vocab);
        }
        v
    }

    /// `_set_special_token`: a non-negative integer below the vocabulary's size, first one wins.
    fn special_id(&mut self, typ: &str, id: &Value, n_vocab: Option<usize>) {
        let Some(id) = id.as_u64().filter(|&i| i <= u64::from(u32::MAX)) else {
            return;
        };
        if n_vocab.is_none_or(|n| (id as u128) < n as u128) {
            put_default(&mut self.ids, typ, id);
        }
    }

    fn normalizer(&mut self, normalizer: &Value) {
        match normalizer["type"].as_str() {
            Some("Lowercase") => self.lowercase = Some(true),
            Some("StripAccents") => self.strip_accents = Some(true),
            Some("BertNormalizer") => {
                if let Some(b) = normalizer.get("lowercase").and_then(Value::as_bool) {
                    self.lowercase = Some(b);
                }
                if let Some(b) = normalizer.get("strip_accents").and_then(Value::as_bool) {
                    self.strip_accents = Some(b);
                }
            }
            Some("Sequence") => {
                for n in normalizer["normalizers"].as_array().into_iter().flatten() {
                    self.normalizer(n);
                }
            }
            _ => {}
        }
    }

    /// Whether the tokenizer's post-processor adds BOS / EOS / SEP, and the special tokens its
    /// templates name where tokenizer_config.json names none.
    fn post_processor(
        &mut self,
        post: &Value,
        tc: &mut Option<Map<String, Value>>,
        types: &mut Vec<String>,
    ) {
        let get = |tc: &Option<Map<String, Value>>, k: &str| {
            tc.as_ref()
                .and_then(|t| t.get(k))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let set = |tc: &mut Option<Map<String, Value>>, k: &str, v: &Value| {
            if let Some(t) = tc.as_mut() {
                t.insert(k.to_string(), v.clone());
            }
        };
        let mut bos = get(tc, "bos_token");
        let mut cls = get(tc, "cls_token");
        let mut eos = get(tc, "eos_token");
        let mut sep = get(tc, "sep_token");
        if !truthy(&bos) && truthy(&cls) && tc.is_some() {
            bos = cls.clone();
            set(tc, "bos_token", &bos);
        }
        if !truthy(&eos) && truthy(&sep) && tc.is_some() {
            eos = sep.clone();
            set(tc, "eos_token", &eos);
        }
        if !truthy(post) {
            return;
        }
        let processors = match post.get("processors") {
            Some(Value::Array(list)) => list.clone(),
            _ => vec![post.clone()],
        };
        for p in &processors {
            match p["type"].as_str() {
                Some("ByteLevel") => {
                    put_default(&mut self.add, "bos", false);
                    put_default(&mut self.add, "eos", false);
                }
                Some("RobertaProcessing") => {
                    for k in ["bos", "eos", "sep"] {
                        put(&mut self.add, k, true);
                    }
                    if !truthy(&cls) && tc.is_some() {
                        cls = p["cls"].get(0).cloned().unwrap_or_else(|| bos.clone());
                        set(tc, "cls_token", &cls);
                    }
                    if !truthy(&sep) && tc.is_some() {
                        sep = p["sep"].get(0).cloned().unwrap_or_else(|| eos.clone());
                        set(tc, "sep_token", &sep);
                    }
                }
                Some("TemplateProcessing") => {
                    let single = p["single"].as_array().cloned().unwrap_or_default();
                    let pair = p["pair"].as_array().cloned().unwrap_or_default();
                    let (mut first, mut last) = (Value::Null, Value::Null);
                    if single.len() > 1 {
                        first = special_token(single.first());
                        if truthy(&first) {
                            if tc.is_none() {
                                bos = first.clone();
                            } else if first != bos && first != cls {
                                if !truthy(&bos) {
                                    bos = first.clone();
                                    set(tc, "bos_token", &bos);
                                }
                                if !truthy(&cls) {
                                    cls = first.clone();
                                    set(tc, "cls_token", &cls);
                                }
                            }
                            put(&mut self.add, "bos", first == bos || first == cls);
                        }
                        last = special_token(single.last());
                        if truthy(&last) {
                            if tc.is_none() {
                                eos = last.clone();
                            } else if last != eos {
                                // the old EOS becomes the end of turn (or of message)
                                for extra in ["eot", "eom"] {
                                    if !types.iter().any(|t| t == extra) {
                                        types.push(extra.to_string());
                                        set(tc, &format!("{extra}_token"), &eos);
                                        break;
                                    }
                                }
                                eos = last.clone();
                                set(tc, "eos_token", &eos);
                            }
                            put(&mut self.add, "eos", last == eos);
                        }
                    }
                    self.pair_template(pair, &first, &last, &eos, &sep, tc);
                }
                _ => {}
            }
        }
    }

    /// `A [sep] [eos] B`: whether a separator is added between the two sequences.
    fn pair_template(
        &mut self,
        pair: Vec<Value>,
        first: &Value,
        last: &Value,
        eos: &Value,
        sep: &Value,
        tc: &mut Option<Map<String, Value>>,
    ) {
        if pair.is_empty() {
            return;
        }
        let start = usize::from(truthy(first) && special_token(pair.first()) == *first);
        let stop = if truthy(last) && special_token(pair.last()) == *last {
            pair.len() - 1
        } else {
            pair.len()
        };
        let pair = pair.get(start..stop.max(start)).unwrap_or(&[]);
        if pair.is_empty() {
            return;
        }
        let a = &pair[0]["Sequence"]["id"];
        let b = &pair[pair.len() - 1]["Sequence"]["id"];
        if a != "A" || b != "B" || pair.len() <= 2 {
            return;
        }
        let inner = &pair[1..pair.len() - 1];
        let is_separator = |t: &Value| t == sep || t == eos;
        let mut add_sep = false;
        let entry = special_token(inner.first());
        if truthy(&entry) && is_separator(&entry) && !truthy(last) {
            add_sep = true;
        }
        if inner.len() == 2 {
            let entry = special_token(inner.get(1));
            if truthy(&entry) && is_separator(&entry) {
                add_sep = true;
            }
        }
        put(&mut self.add, "sep", add_sep);
        if add_sep && !truthy(sep) {
            if let Some(t) = tc.as_mut() {
                t.insert("sep_token".into(), eos.clone());
            }
        }
    }

    fn write(self, m: &mut Metadata) {
        if !self.merges.is_empty() {
            m.set(
                "tokenizer.ggml.merges",
                GgufValue::Array(GgufArray::String(self.merges)),
            );
        }
        for (typ, id) in &self.ids {
            // llama.cpp's names; it has none for a CLS id
            let key = match typ.as_str() {
                "unk" => "unknown",
                "sep" => "seperator",
                "pad" => "padding",
                "cls" => continue,
                other => other,
            };
            m.set(
                &format!("tokenizer.ggml.{key}_token_id"),
                GgufValue::U32(*id as u32),
            );
        }
        for (typ, add) in &self.add {
            if matches!(typ.as_str(), "bos" | "eos" | "sep") {
                m.set(
                    &format!("tokenizer.ggml.add_{typ}_token"),
                    GgufValue::Bool(*add),
                );
            }
        }
        match self.chat_template {
            Some(Value::String(t)) => m.string("tokenizer.chat_template", &t),
            Some(Value::Array(choices)) => chat_templates(&choices, m),
            _ => {}
        }
        if let Some(b) = self.lowercase {
            m.set("tokenizer.ggml.normalizer.lowercase", GgufValue::Bool(b));
        }
        if let Some(b) = self.strip_accents {
            m.set(
                "tokenizer.ggml.normalizer.strip_accents",
                GgufValue::Bool(b),
            );
        }
    }
}

/// tokenizer.json's merges as the converter writes them: `"a b"`, spaces inside a part of a
/// pair-form merge shifted by 256 (as byte-level BPE spells a space).
fn merges(merges: &Value) -> Vec<String> {
    let shift = |s: &str| {
        s.chars()
            .map(|c| if c == ' ' { '\u{120}' } else { c })
            .collect::<String>()
    };
    merges
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| match x {
            Value::String(s) => Some(s.clone()),
            Value::Array(p) => Some(
                p.iter()
                    .filter_map(Value::as_str)
                    .map(shift)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect()
}

/// A chat template kept beside tokenizer_config.json: `chat_template.jinja` (with any
/// `additional_chat_templates/*.jinja`, as named choices) or `chat_template.json`.
fn chat_template_file(dir: &Path) -> Option<Value> {
    let read = |p: &Path| input::read_text(p, "chat template", limit::CONFIG).ok();
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let default = read(&jinja)?;
        let mut extra: Vec<_> = std::fs::read_dir(dir.join("additional_chat_templates"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
            .collect();
        if extra.is_empty() {
            return Some(Value::String(default));
        }
        extra.sort();
        let mut choices = vec![serde_json::json!({"name": "default", "template": default})];
        for p in extra {
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            if let (Some(name), Some(t)) = (name, read(&p)) {
                choices.push(serde_json::json!({"name": name, "template": t}));
            }
        }
        return Some(Value::Array(choices));
    }
    let json = optional_json(&dir.join("chat_template.json"), "chat template");
    json.get("chat_template").cloned()
}

/// Named chat templates: each as `tokenizer.chat_template.<name>`, their names listed, the one
/// named `default` as the template.
fn chat_templates(choices: &[Value], m: &mut Metadata) {
    let mut default = None;
    let mut names = Vec::new();
    for c in choices {
        let name: String = c["name"]
            .as_str()
            .unwrap_or("")
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
            .collect();
        let Some(template) = c["template"].as_str() else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        if name == "default" {
            default = Some(template.to_string());
        } else {
            m.string(&format!("tokenizer.chat_template.{name}"), template);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if !names.is_empty() {
        m.set(
            "tokenizer.chat_templates",
            GgufValue::Array(GgufArray::String(names)),
        );
    }
    if let Some(t) = default {
        m.string("tokenizer.chat_template", &t);
    }
}

/// The converter's `does_token_look_special`.
fn looks_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<\u{ff5c}") && token.ends_with("\u{ff5c}>"))
}

/// llama.cpp's name for a byte-level tokenizer's split regex, when it knows it.
fn byte_level_pre(json: &Value) -> Option<&'static str> {
    let pre = &json["pre_tokenizer"];
    let mut parts: Vec<&Value> = match pre["type"].as_str()? {
        "Sequence" => pre["pretokenizers"].as_array()?.iter().collect(),
        _ => vec![pre],
    };
    let byte_level = parts.iter().position(|p| p["type"] == "ByteLevel")?;
    let uses_regex = parts[byte_level]["use_regex"].as_bool().unwrap_or(true);
    parts.remove(byte_level);
    match (parts.as_slice(), uses_regex) {
        ([], true) => Some("gpt-2"),
        ([split], false) if split["type"] == "Split" => {
            let pattern = split["pattern"]["Regex"].as_str()?;
            PRE_TOKENIZERS
                .iter()
                .find(|(_, p)| *p == pattern)
                .map(|(n, _)| *n)
        }
        _ => None,
    }
}
