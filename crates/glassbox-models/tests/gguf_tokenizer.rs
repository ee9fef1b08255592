//! Tokenizers built from GGUF vocabularies.
//!
//! - SentencePiece (`tokenizer.ggml.model = llama`): tiny.gguf's ids equal those of the
//!   tokenizer transformers builds from the same file (tests/fixtures/real/
//!   tinygguf-expected.safetensors, BOS included), and decoding gives the text back.
//! - Byte-level BPE (`gpt2`): the parity fixtures' `tokenizer.json` vocabulary, written into a
//!   GGUF the way llama.cpp's converter stores it, tokenizes exactly like the `tokenizer.json`.

use std::path::Path;

use candle_core::{DType, Device};
use glassbox_formats::{Checkpoint, GgufArray, GgufFile, GgufValue, GgufWriter, SafetensorsFile};
use glassbox_models::gguf_tokenizer::{self, GgufTokenizerModel, GgufVocab};
use tokenizers::Tokenizer;

#[path = "support/artifacts.rs"]
mod artifacts;
use artifacts::{artifact, workspace};

/// `text` encodes to `expected` ids, which decode (special tokens skipped) to `decoded`.
fn check(tokenizer: &Tokenizer, text: &str, expected: &[u32], decoded: &str) {
    let encoding = tokenizer.encode(text, true).unwrap();
    assert_eq!(encoding.get_ids(), expected, "ids of {text:?}");
    let round_trip = tokenizer.decode(encoding.get_ids(), true).unwrap();
    assert_eq!(round_trip, decoded, "decoding the ids of {text:?}");
}

#[test]
fn tiny_gguf_sentencepiece_matches_transformers() {
    let Some(path) = artifact("tiny.gguf") else {
        return;
    };
    let ck = Checkpoint::open(&path).unwrap();
    let gguf = ck.gguf().unwrap();
    let vocab = GgufVocab::from_gguf(gguf).unwrap();
    assert_eq!(vocab.model, GgufTokenizerModel::SentencePiece);
    let tokenizer = gguf_tokenizer::from_gguf(gguf).unwrap();

    let fixture = workspace().join("tests/fixtures/real/tinygguf-expected.safetensors");
    let texts = SafetensorsFile::open(&fixture).unwrap().metadata["texts"].clone();
    let expected = Checkpoint::open(&fixture).unwrap();
    let texts: Vec<&str> = texts.split("\n---\n").collect();
    assert_eq!(texts.len(), 2);
    for (j, text) in texts.iter().enumerate() {
        let ids: Vec<u32> = expected
            .tensor(&format!("text{j}.input_ids"), &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_dtype(DType::U32)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(ids[0], 1, "the reference adds BOS");
        check(&tokenizer, text, &ids, text);
    }
}

/// llama.cpp's converter's SentencePiece vocabulary (`tokenizer.ggml.model = llama`: pieces,
/// scores, kinds) of a Llama with Llama 2's tokenizer files tokenizes as that checkpoint's
/// `tokenizer.json` does: merges by score, byte fallback, the leading space, BOS.
#[test]
fn llama_cpps_sentencepiece_vocabulary_tokenizes_as_the_checkpoints_tokenizer_json() {
    let hub = workspace().join("tests/fixtures/llamacpp-quantize/hub/llama-spm");
    let ck = Checkpoint::open(&hub.join("model-Q8_0.gguf")).unwrap();
    let gguf = ck.gguf().unwrap();
    assert_eq!(
        GgufVocab::from_gguf(gguf).unwrap().model,
        GgufTokenizerModel::SentencePiece
    );
    let ours = gguf_tokenizer::from_gguf(gguf).unwrap();
    let theirs = Tokenizer::from_file(hub.join("checkpoint/tokenizer.json")).unwrap();
    for text in [
        "The cat sat on the mat.",
        "  two spaces,\nnew lines\n\nand tabs\t.",
        "digits 12345 and bytes: \u{e9}\u{4e16}\u{1f600}",
        "",
    ] {
        let expected = theirs.encode(text, true).unwrap();
        assert_eq!(expected.get_ids().first(), Some(&1), "BOS first");
        check(&ours, text, expected.get_ids(), text);
    }
}

/// A GGUF holding `tokenizer.json`'s byte-level vocabulary, as llama.cpp's converter writes it:
/// tokens by id, merges as `"left right"`, added special tokens as control tokens.
fn byte_level_gguf(tokenizer_json: &Path) -> GgufFile {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tokenizer_json).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (token, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = token.clone();
    }
    let mut token_types = vec![1i32; tokens.len()];
    for added in json["added_tokens"].as_array().unwrap() {
        if added["special"].as_bool().unwrap() {
            token_types[added["id"].as_u64().unwrap() as usize] = 3;
        }
    }
    let merges: Vec<String> = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            pair => format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            ),
        })
        .collect();
    let mut writer = GgufWriter::new();
    writer
        .set("general.architecture", GgufValue::String("gpt2".into()))
        .set("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .set("tokenizer.ggml.pre", GgufValue::String("gpt-2".into()))
        .set(
            "tokenizer.ggml.tokens",
            GgufValue::Array(GgufArray::String(tokens)),
        )
        .set(
            "tokenizer.ggml.token_type",
            GgufValue::Array(GgufArray::I32(token_types)),
        )
        .set(
            "tokenizer.ggml.merges",
            GgufValue::Array(GgufArray::String(merges)),
        )
        .set("tokenizer.ggml.eos_token_id", GgufValue::U32(0));
    GgufFile::from_bytes(Path::new("vocab.gguf"), writer.to_bytes().unwrap()).unwrap()
}

#[test]
fn byte_level_vocab_tokenizes_like_its_tokenizer_json() {
    let json = workspace().join("tests/fixtures/parity/gpt2/tokenizer.json");
    let reference = Tokenizer::from_file(&json).unwrap();
    let gguf = byte_level_gguf(&json);
    let vocab = GgufVocab::from_gguf(&gguf).unwrap();
    assert_eq!(vocab.model, GgufTokenizerModel::ByteLevelBpe);
    let tokenizer = gguf_tokenizer::from_gguf(&gguf).unwrap();
    for (text, decoded) in [
        (
            "The Eiffel Tower is in Paris.",
            "The Eiffel Tower is in Paris.",
        ),
        (
            "When Mary and John went to the store, John gave a drink to",
            "When Mary and John went to the store, John gave a drink to",
        ),
        (
            "  spaces,\ttabs\nand newlines — and ünïcödé 123456!",
            "  spaces,\ttabs\nand newlines — and ünïcödé 123456!",
        ),
        ("<|endoftext|>special token", "special token"),
    ] {
        let expected = reference.encode(text, true).unwrap();
        assert_eq!(reference.decode(expected.get_ids(), true).unwrap(), decoded);
        check(&tokenizer, text, expected.get_ids(), decoded);
    }
}

#[test]
fn inconsistent_vocabularies_are_errors() {
    let base = GgufVocab {
        model: GgufTokenizerModel::SentencePiece,
        pre: None,
        tokens: vec!["<unk>".into(), "<s>".into(), "a".into()],
        scores: Some(vec![0.0, 0.0, -1.0]),
        token_types: Some(vec![2, 3, 1]),
        merges: None,
        bos_id: Some(1),
        eos_id: None,
        unk_id: Some(0),
        sep_id: None,
        lowercase: None,
        add_bos: None,
        add_eos: None,
        add_space_prefix: None,
        warnings: vec![],
    };
    assert!(gguf_tokenizer::build_tokenizer(&base).is_ok());
    let cases = [
        GgufVocab {
            bos_id: Some(3),
            ..base.clone()
        },
        GgufVocab {
            scores: Some(vec![0.0]),
            ..base.clone()
        },
        GgufVocab {
            token_types: Some(vec![1; 4]),
            ..base.clone()
        },
        GgufVocab {
            scores: None,
            ..base.clone()
        },
        GgufVocab {
            tokens: vec![],
            scores: Some(vec![]),
            token_types: None,
            bos_id: None,
            unk_id: None,
            ..base.clone()
        },
        GgufVocab {
            model: GgufTokenizerModel::ByteLevelBpe,
            ..base.clone()
        },
        GgufVocab {
            merges: Some(vec!["nospace".into()]),
            ..base.clone()
        },
    ];
    for (i, vocab) in cases.iter().enumerate() {
        assert!(
            gguf_tokenizer::build_tokenizer(vocab).is_err(),
            "case {i} was accepted"
        );
    }
}
