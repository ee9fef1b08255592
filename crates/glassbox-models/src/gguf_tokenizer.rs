//! A `tokenizers::Tokenizer` built from the vocabulary embedded in a GGUF file, for GGUF
//! checkpoints that come without a `tokenizer.json`.
//!
//! Design: [`GgufVocab`] gathers the `tokenizer.ggml.*` metadata (validated: every id in range,
//! every per-token array as long as the token list); [`build_tokenizer`] turns it into the same
//! tokenizer pipeline Hugging Face's GGUF converters build, so ids agree with a model loaded by
//! transformers from the same file:
//!
//! - `tokenizer.ggml.model = "llama"` (SentencePiece, as in `GGUFLlamaConverter`): a BPE model
//!   with byte fallback (`<0x..>` tokens) over the pieces. GGUF stores scores, not merges, so
//!   merges are derived from them: every split of a piece into two pieces that are both in the
//!   vocabulary is a merge, ranked by the whole piece's score (ties keep vocabulary order, then
//!   the halves' scores decide). Text is normalized by prepending `▁` (unless
//!   `tokenizer.ggml.add_space_prefix` is false) and replacing spaces by `▁`; control tokens
//!   (token type 3) are special tokens; BOS is added unless `tokenizer.ggml.add_bos_token` is
//!   false.
//! - `tokenizer.ggml.model = "gpt2"` (byte-level BPE: GPT-2, Llama 3, Qwen 2…): tokens and
//!   `tokenizer.ggml.merges`, pre-tokenized with the split regex llama.cpp uses for
//!   `tokenizer.ggml.pre` (GPT-2's when absent or unknown), then bytes mapped to unicode;
//!   control tokens are special, user-defined tokens (type 4) are added tokens; BOS only when
//!   `tokenizer.ggml.add_bos_token` is true. Here llama.cpp is followed rather than
//!   transformers, whose converter splits every byte-level vocabulary with GPT-2's regex —
//!   wrong for Llama 3 and Qwen 2, which were trained with their own.

use std::collections::{HashMap, HashSet};

use glassbox_formats::gguf::{GgufArray, GgufFile};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{ModelError, Result};

/// SentencePiece's space marker.
const SPACE_MARKER: &str = "\u{2581}";

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The split regexes llama.cpp applies before byte-level BPE, by `tokenizer.ggml.pre` (GPT-2's
/// own is built into the byte-level pre-tokenizer).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Which tokenizer algorithm the vocabulary is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufTokenizerModel {
    /// `llama`: SentencePiece pieces with scores.
    SentencePiece,
    /// `gpt2`: byte-level BPE with merges.
    ByteLevelBpe,
    /// `bert`: WordPiece, stored with llama.cpp's "phantom space": a word-initial piece is
    /// `▁piece`, a continuation is the bare piece (WordPiece's `##piece`).
    WordPiece,
}

impl GgufTokenizerModel {
    /// llama.cpp's default BOS, EOS and unknown-token ids for this kind of vocabulary.
    fn default_special_ids(self) -> (Option<u32>, Option<u32>, Option<u32>) {
        match self {
            GgufTokenizerModel::SentencePiece => (Some(1), Some(2), Some(0)),
            GgufTokenizerModel::ByteLevelBpe => (Some(11), Some(11), None),
            GgufTokenizerModel::WordPiece => (Some(101), None, Some(100)),
        }
    }
}

/// The `tokenizer.ggml.*` metadata of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    pub model: GgufTokenizerModel,
    /// `tokenizer.ggml.pre`: the pre-tokenizer name of byte-level vocabularies.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f32>>,
    pub token_types: Option<Vec<i32>>,
    /// `"left right"` pairs, highest priority first.
    pub merges: Option<Vec<String>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    /// The separator a WordPiece vocabulary appends (`tokenizer.ggml.seperator_token_id`,
    /// llama.cpp's spelling).
    pub sep_id: Option<u32>,
    /// `tokenizer.ggml.normalizer.lowercase` (WordPiece; llama.cpp lowercases when absent).
    pub lowercase: Option<bool>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// Metadata llama.cpp tolerates and this reader therefore does too, each naming its key
    /// (e.g. a special-token id outside the vocabulary, which llama.cpp replaces by its default).
    pub warnings: Vec<String>,
}

fn bad(gguf: &GgufFile, msg: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(format!("{}: {msg}", gguf.path.display()))
}

impl GgufVocab {
    /// Reads and validates the vocabulary of `gguf`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model = match gguf.get_str("tokenizer.ggml.model") {
            Some("llama") => GgufTokenizerModel::SentencePiece,
            Some("gpt2") => GgufTokenizerModel::ByteLevelBpe,
            Some("bert") => GgufTokenizerModel::WordPiece,
            Some(other) => {
                return Err(bad(
                    gguf,
                    format!(
                        "tokenizer.ggml.model `{other}` is not supported (only `llama`, `gpt2` and `bert`)"
                    ),
                ))
            }
            None => {
                return Err(bad(
                    gguf,
                    "no tokenizer.ggml.model: the file has no vocabulary",
                ))
            }
        };
        let tokens = gguf
            .get_str_array("tokenizer.ggml.tokens")
            .ok_or_else(|| {
                bad(
                    gguf,
                    "tokenizer.ggml.tokens is missing or not a string array",
                )
            })?
            .to_vec();
        let scores = match gguf.get_array("tokenizer.ggml.scores") {
            None => None,
            Some(GgufArray::F32(v)) => Some(v.clone()),
            Some(_) => return Err(bad(gguf, "tokenizer.ggml.scores is not an f32 array")),
        };
        let token_types = match gguf.get_array("tokenizer.ggml.token_type") {
            None => None,
            Some(GgufArray::I32(v)) => Some(v.clone()),
            Some(GgufArray::U32(v)) => Some(v.iter().map(|&t| t as i32).collect()),
            Some(_) => {
                return Err(bad(
                    gguf,
                    "tokenizer.ggml.token_type is not an integer array",
                ))
            }
        };
        let merges = match gguf.get("tokenizer.ggml.merges") {
            None => None,
            Some(_) => Some(
                gguf.get_str_array("tokenizer.ggml.merges")
                    .ok_or_else(|| bad(gguf, "tokenizer.ggml.merges is not a string array"))?
                    .to_vec(),
            ),
        };
        // Special tokens as llama.cpp's `llama_vocab::load` resolves them: each type has a
        // default id (dropped when outside the vocabulary); an id in the file replaces it when
        // it is inside the vocabulary and is otherwise ignored, with a warning.
        let n = tokens.len();
        let mut warnings = Vec::new();
        let (bos, eos, unk) = model.default_special_ids();
        let mut special = |key: &str, default: Option<u32>| {
            let default = default.filter(|&id| (id as usize) < n);
            match gguf.get_u32(key) {
                Some(id) if (id as usize) < n => Some(id),
                Some(id) => {
                    warnings.push(format!(
                        "{key} {id} is outside the {n} tokens; ignored, as llama.cpp does ({})",
                        match default {
                            Some(d) => format!("it uses its default, token {d}"),
                            None => "no such token".to_string(),
                        }
                    ));
                    default
                }
                None => default,
            }
        };
        let bos_id = special("tokenizer.ggml.bos_token_id", bos);
        let eos_id = special("tokenizer.ggml.eos_token_id", eos);
        let unk_id = special("tokenizer.ggml.unknown_token_id", unk);
        let sep_id = special(
            "tokenizer.ggml.seperator_token_id",
            (model == GgufTokenizerModel::WordPiece).then_some(102),
        );
        let vocab = GgufVocab {
            model,
            pre: gguf.get_str("tokenizer.ggml.pre").map(str::to_string),
            tokens,
            scores,
            token_types,
            merges,
            bos_id,
            eos_id,
            unk_id,
            sep_id,
            lowercase: gguf.get_bool("tokenizer.ggml.normalizer.lowercase"),
            add_bos: gguf.get_bool("tokenizer.ggml.add_bos_token"),
            add_eos: gguf.get_bool("tokenizer.ggml.add_eos_token"),
            add_space_prefix: gguf.get_bool("tokenizer.ggml.add_space_prefix"),
            warnings,
        };
        vocab.validate().map_err(|m| bad(gguf, m))?;
        Ok(vocab)
    }

    /// Checks that ids and per-token arrays agree with the token list.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.tokens.len();
        if n == 0 {
            return Err("tokenizer.ggml.tokens is empty".into());
        }
        for (what, id) in [
            ("bos_token_id", self.bos_id),
            ("eos_token_id", self.eos_id),
            ("unknown_token_id", self.unk_id),
            ("seperator_token_id", self.sep_id),
        ] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(format!(
                        "tokenizer.ggml.{what} {id} is outside the {n} tokens"
                    ));
                }
            }
        }
        if let Some(s) = &self.scores {
            if s.len() != n {
                return Err(format!("{} scores for {n} tokens", s.len()));
            }
        }
        if let Some(t) = &self.token_types {
            if t.len() != n {
                return Err(format!("{} token types for {n} tokens", t.len()));
            }
        }
        match self.model {
            GgufTokenizerModel::SentencePiece if self.scores.is_none() && self.merges.is_none() => {
                Err("a `llama` vocabulary needs tokenizer.ggml.scores or merges".into())
            }
            GgufTokenizerModel::ByteLevelBpe if self.merges.is_none() => {
                Err("a `gpt2` vocabulary needs tokenizer.ggml.merges".into())
            }
            _ => Ok(()),
        }
    }

    fn parsed_merges(&self) -> Result<Vec<(String, String)>> {
        let merges = self.merges.as_deref().unwrap_or(&[]);
        merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        ModelError::Tokenizer(format!("merge `{m}` is not `left right`"))
                    })
            })
            .collect()
    }
}

/// Merges for a SentencePiece vocabulary that stores only scores: each piece contributes every
/// split into two in-vocabulary pieces, ranked by the piece's score (descending), then — among
/// one piece's splits — by the halves' scores. Sorts are stable, so ties keep vocabulary order.
pub fn merges_from_scores(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    // A repeated piece keeps its first position but its last score, like a Python dict.
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut score_of: HashMap<&str, f32> = HashMap::with_capacity(tokens.len());
    for (token, &score) in tokens.iter().zip(scores) {
        if score_of.insert(token.as_str(), score).is_none() {
            order.push(token.as_str());
        }
    }
    let known: HashSet<&str> = order.iter().copied().collect();
    let mut ranked: Vec<(&str, &str, f32)> = Vec::new();
    for piece in order {
        let piece_score = score_of[piece];
        let mut local: Vec<(&str, &str, f32)> = piece
            .char_indices()
            .skip(1)
            .map(|(at, _)| piece.split_at(at))
            .filter(|(left, right)| known.contains(left) && known.contains(right))
            .map(|(left, right)| (left, right, piece_score))
            .collect();
        local.sort_by(|a, b| {
            let key = |m: &(&str, &str, f32)| (score_of[m.0], score_of[m.1]);
            let (a0, a1) = key(a);
            let (b0, b1) = key(b);
            b0.total_cmp(&a0).then(b1.total_cmp(&a1))
        });
        ranked.extend(local);
    }
    ranked.sort_by(|a, b| b.2.total_cmp(&a.2));
    ranked
        .into_iter()
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect()
}

fn tokenizer_error(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// Reads the vocabulary of `gguf` and builds its tokenizer.
pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
    let vocab = GgufVocab::from_gguf(gguf)?;
    build_tokenizer(&vocab).map_err(|e| bad(gguf, e))
}

/// Builds the tokenizer for a validated vocabulary (see the module docs).
pub fn build_tokenizer(vocab: &GgufVocab) -> Result<Tokenizer> {
    vocab.validate().map_err(ModelError::Tokenizer)?;
    // Later duplicates win, as in a Python dict comprehension over the token list.
    let ids: Vocab = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    match vocab.model {
        GgufTokenizerModel::SentencePiece => sentencepiece_tokenizer(vocab, ids),
        GgufTokenizerModel::ByteLevelBpe => byte_level_tokenizer(vocab, ids),
        GgufTokenizerModel::WordPiece => wordpiece_tokenizer(vocab),
    }
}

/// llama.cpp's WPM tokenizer as a WordPiece pipeline: text split at whitespace, punctuation,
/// ASCII symbols and CJK characters and lowercased (BERT's normalizer and pre-tokenizer), each
/// word matched longest-first, a word with an unmatched piece becoming the unknown token;
/// `[CLS] … [SEP]` (the BOS and separator ids) around every text, which llama.cpp adds for
/// this vocabulary type whatever `add_bos_token` / `add_eos_token` say.
fn wordpiece_tokenizer(vocab: &GgufVocab) -> Result<Tokenizer> {
    let is_control = |i: usize| {
        vocab
            .token_types
            .as_ref()
            .is_some_and(|t| t[i] == TOKEN_TYPE_CONTROL)
    };
    let mut pieces = Vocab::new();
    for (i, token) in vocab.tokens.iter().enumerate() {
        let piece = if is_control(i) {
            token.clone()
        } else if let Some(word_start) = token.strip_prefix(SPACE_MARKER) {
            word_start.to_string()
        } else {
            format!("##{token}")
        };
        pieces.entry(piece).or_insert(i as u32);
    }
    let unk = vocab
        .unk_id
        .map(|id| vocab.tokens[id as usize].clone())
        .ok_or_else(|| {
            ModelError::Tokenizer("a `bert` vocabulary needs an unknown token".into())
        })?;
    let model = WordPiece::builder()
        .vocab(pieces)
        .unk_token(unk)
        .continuing_subword_prefix("##".into())
        .build()
        .map_err(tokenizer_error)?;
    let mut tokenizer = Tokenizer::new(model);
    let lowercase = vocab.lowercase.unwrap_or(true);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            true,
            Some(false),
            lowercase,
        )))
        .map_err(tokenizer_error)?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    let specials: Vec<AddedToken> = (0..vocab.tokens.len())
        .filter(|&i| is_control(i))
        .map(|i| AddedToken::from(vocab.tokens[i].clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(tokenizer_error)?;
    let (Some(cls), Some(sep)) = (vocab.bos_id, vocab.sep_id) else {
        return Err(ModelError::Tokenizer(
            "a `bert` vocabulary needs BOS ([CLS]) and separator ([SEP]) ids".into(),
        ));
    };
    let name = |id: u32| vocab.tokens[id as usize].clone();
    let template = TemplateProcessing::builder()
        .try_single(format!("{}:0 $A:0 {}:0", name(cls), name(sep)))
        .map_err(tokenizer_error)?
        .try_pair(format!(
            "{}:0 $A:0 {}:0 $B:1 {}:1",
            name(cls),
            name(sep),
            name(sep)
        ))
        .map_err(tokenizer_error)?
        .special_tokens(vec![(name(cls), cls), (name(sep), sep)])
        .build()
        .map_err(tokenizer_error)?;
    tokenizer.with_post_processor(Some(template));
    Ok(tokenizer)
}

fn sentencepiece_tokenizer(vocab: &GgufVocab, ids: Vocab) -> Result<Tokenizer> {
    let merges = match (&vocab.merges, &vocab.scores) {
        (Some(_), _) => vocab.parsed_merges()?,
        (None, Some(scores)) => merges_from_scores(&vocab.tokens, scores),
        (None, None) => {
            return Err(tokenizer_error(
                "a `llama` vocabulary needs scores or merges",
            ))
        }
    };
    let mut bpe = BPE::builder()
        .vocab_and_merges(ids, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = vocab.unk_id {
        bpe = bpe.unk_token(vocab.tokens[unk as usize].clone());
    }
    let mut tokenizer = Tokenizer::new(bpe.build().map_err(tokenizer_error)?);

    let specials: Vec<AddedToken> = match &vocab.token_types {
        Some(types) => (0..vocab.tokens.len())
            .filter(|&i| types[i] == TOKEN_TYPE_CONTROL)
            .map(|i| AddedToken::from(vocab.tokens[i].clone(), true).normalized(false))
            .collect(),
        None => [vocab.unk_id, vocab.bos_id, vocab.eos_id]
            .into_iter()
            .flatten()
            .map(|i| AddedToken::from(vocab.tokens[i as usize].clone(), true).normalized(false))
            .collect(),
    };
    tokenizer
        .add_special_tokens(specials)
        .map_err(tokenizer_error)?;

    let add_space_prefix = vocab.add_space_prefix.unwrap_or(true);
    let mut normalizers = Vec::new();
    if add_space_prefix {
        normalizers.push(Prepend::new(SPACE_MARKER.into()).into());
    }
    normalizers.push(
        Replace::new(" ", SPACE_MARKER)
            .map_err(tokenizer_error)?
            .into(),
    );
    tokenizer
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(tokenizer_error)?;

    let mut decoders = vec![
        ByteFallback::new().into(),
        Fuse::new().into(),
        Replace::new(SPACE_MARKER, " ")
            .map_err(tokenizer_error)?
            .into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));

    let add_bos = vocab.add_bos.unwrap_or(true);
    let add_eos = vocab.add_eos.unwrap_or(false);
    if let Some(post) = bos_eos_template(vocab, add_bos, add_eos)? {
        tokenizer.with_post_processor(Some(post));
    }
    Ok(tokenizer)
}

fn byte_level_tokenizer(vocab: &GgufVocab, ids: Vocab) -> Result<Tokenizer> {
    let merges = vocab.parsed_merges()?;
    let bpe = BPE::builder()
        .vocab_and_merges(ids, merges)
        .build()
        .map_err(tokenizer_error)?;
    let mut tokenizer = Tokenizer::new(bpe);

    if let Some(types) = &vocab.token_types {
        let added: Vec<AddedToken> = (0..vocab.tokens.len())
            .filter_map(|i| match types[i] {
                TOKEN_TYPE_CONTROL => Some(AddedToken::from(vocab.tokens[i].clone(), true)),
                TOKEN_TYPE_USER_DEFINED => {
                    Some(AddedToken::from(vocab.tokens[i].clone(), false).normalized(false))
                }
                _ => None,
            })
            .collect();
        tokenizer
            .add_special_tokens(added)
            .map_err(tokenizer_error)?;
    }

    let split = match vocab.pre.as_deref() {
        Some("llama-bpe" | "llama3" | "smaug-bpe" | "falcon3" | "dbrx") => Some(LLAMA3_SPLIT),
        Some("qwen2" | "deepseek-r1-qwen" | "megrez") => Some(QWEN2_SPLIT),
        _ => None,
    };
    match split {
        Some(pattern) => {
            let split = Split::new(
                SplitPattern::Regex(pattern.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(tokenizer_error)?;
            tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
                split.into(),
                ByteLevel::new(false, false, false).into(),
            ])));
            if vocab.pre.as_deref().is_some_and(|p| p.starts_with("qwen2")) {
                tokenizer
                    .with_normalizer(Some(NFC))
                    .map_err(tokenizer_error)?;
            }
        }
        // GPT-2's own regex is built into the byte-level pre-tokenizer.
        None => {
            tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
    }
    tokenizer.with_decoder(Some(ByteLevel::default()));

    let add_bos = vocab.add_bos.unwrap_or(false);
    let add_eos = vocab.add_eos.unwrap_or(false);
    if let Some(post) = bos_eos_template(vocab, add_bos, add_eos)? {
        tokenizer.with_post_processor(Some(post));
    }
    Ok(tokenizer)
}

/// `BOS $A EOS` as asked, or None when neither is added.
fn bos_eos_template(
    vocab: &GgufVocab,
    add_bos: bool,
    add_eos: bool,
) -> Result<Option<TemplateProcessing>> {
    let bos = vocab.bos_id.filter(|_| add_bos);
    let eos = vocab.eos_id.filter(|_| add_eos);
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let name = |id: u32| vocab.tokens[id as usize].clone();
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Vec::new();
    if let Some(b) = bos {
        single.push(format!("{}:0", name(b)));
        specials.push((name(b), b));
    }
    single.push("$A:0".to_string());
    if let Some(e) = eos {
        single.push(format!("{}:0", name(e)));
        if bos != Some(e) {
            specials.push((name(e), e));
        }
    }
    pair.extend(single.iter().cloned());
    if let Some(b) = bos {
        pair.push(format!("{}:1", name(b)));
    }
    pair.push("$B:1".to_string());
    if let Some(e) = eos {
        pair.push(format!("{}:1", name(e)));
    }
    let template = TemplateProcessing::builder()
        .try_single(single)
        .map_err(tokenizer_error)?
        .try_pair(pair)
        .map_err(tokenizer_error)?
        .special_tokens(specials)
        .build()
        .map_err(tokenizer_error)?;
    Ok(Some(template))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merges_rank_by_piece_score_then_halves() {
        let tokens = strings(&["a", "b", "c", "ab", "bc", "abc"]);
        let scores = [0.0, -1.0, -2.0, -3.0, -0.5, -4.0];
        let merges = merges_from_scores(&tokens, &scores);
        let pairs: Vec<(&str, &str)> = merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        // bc (-0.5) before ab (-3) before abc (-4); abc's splits: a|bc (0, -0.5) before ab|c.
        assert_eq!(pairs, [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]);
    }
}
