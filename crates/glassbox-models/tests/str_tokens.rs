//! Tokens shown faithfully, one at a time: special tokens by name, a word's leading space kept
//! (SentencePiece's `▁` too), and a piece that is only some of a character's bytes as those
//! bytes (`<0xE2>`), never as `�` — on a SentencePiece vocabulary with byte fallback (the Gemma
//! GGUF made by llama.cpp) and on byte-level BPE (GPT-2).

use std::path::PathBuf;

use glassbox_models::{HookedModel, LoadOptions};

fn load(rel: &str) -> HookedModel {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel);
    HookedModel::load(&path, &LoadOptions::default()).unwrap()
}

#[test]
fn sentencepiece_tokens_keep_names_spaces_and_bytes() {
    let m = load("llamacpp/gemma/model-F32.gguf");
    let toks = m.to_str_tokens("The tower €").unwrap();
    assert_eq!(toks[0], "<s>", "{toks:?}: BOS by name");
    assert!(
        toks.iter().any(|t| t.starts_with(" t")),
        "{toks:?}: leading space kept"
    );
    assert!(
        toks.iter().any(|t| t.starts_with("<0x")),
        "{toks:?}: byte pieces as bytes"
    );
    assert!(
        !toks.iter().any(|t| t.contains('\u{FFFD}') || t.is_empty()),
        "{toks:?}"
    );
}

#[test]
fn byte_level_tokens_show_partial_characters_as_bytes() {
    let m = load("parity/gpt2");
    let ids = m.to_tokens("price €5 <|endoftext|>").unwrap();
    let toks = m.ids_to_str_tokens(&ids).unwrap();
    assert!(toks.iter().any(|t| t.contains("<0xE2>")), "{toks:?}");
    assert!(
        toks.iter().any(|t| t == "<|endoftext|>"),
        "{toks:?}: special by name"
    );
    assert!(!toks.iter().any(|t| t.contains('\u{FFFD}')), "{toks:?}");
    // Whole tokens still read as text.
    assert!(toks.iter().any(|t| t == " 5" || t == "5"), "{toks:?}");
}
