#![no_main]
//! Arbitrary bytes into glassbox's SentencePiece model reader; see glassbox_formats::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    glassbox_formats::fuzzing::sentencepiece(data);
});
