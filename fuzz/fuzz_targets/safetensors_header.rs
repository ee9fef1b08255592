#![no_main]
//! Arbitrary bytes into glassbox's safetensors parser; see glassbox_formats::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    glassbox_formats::fuzzing::safetensors(data);
});
