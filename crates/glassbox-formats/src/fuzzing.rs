//! Entry points for fuzzing: each parses arbitrary bytes the way opening a file would, then
//! reads every tensor the parser accepted. They must return (with any error) for every input;
//! a panic is a bug. Shared by the libFuzzer targets in `fuzz/` and the stable smoke fuzzer
//! (`examples/fuzz_smoke.rs`, run by `scripts/fuzz-smoke.sh`).

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{to_f32, DType};

/// Decodes a tensor the way [`crate::Checkpoint::tensor`] does and checks its element count.
fn read_tensor(dtype: DType, shape: &[usize], bytes: &[u8]) {
    if let Some(values) = to_f32(dtype, bytes) {
        let elements: usize = shape.iter().product();
        assert_eq!(
            values.len(),
            elements,
            "decoded element count disagrees with the shape"
        );
        let _ = Tensor::from_vec(values, shape, &Device::Cpu);
    }
}

pub fn safetensors(data: &[u8]) {
    if let Ok((entries, _)) =
        crate::safetensors_file::parse_header(Path::new("fuzz.safetensors"), data)
    {
        for e in entries {
            read_tensor(e.dtype, &e.shape, &data[e.start..e.end]);
        }
    }
}

pub fn gguf(data: &[u8]) {
    if let Ok(file) = crate::GgufFile::from_bytes(Path::new("fuzz.gguf"), data.to_vec()) {
        for t in &file.tensors {
            read_tensor(t.dtype, &t.shape, file.bytes(t));
        }
        for (key, _) in file.metadata() {
            let _ = file.get(key);
        }
    }
}

/// Both layers: the bare pickle machine, and the whole zip checkpoint.
pub fn pickle(data: &[u8]) {
    let _ = crate::pickle::load_state_dict(data);
    if let Ok(file) = crate::TorchFile::from_bytes(Path::new("fuzz.bin"), data.to_vec()) {
        for e in &file.entries {
            read_tensor(e.dtype, &e.shape, file.bytes(e));
        }
    }
}

/// A SentencePiece model's pieces (`tokenizer.model`, read when quantizing a Hub folder).
pub fn sentencepiece(data: &[u8]) {
    if let Ok(pieces) = crate::sentencepiece::parse_pieces(data) {
        assert!(!pieces.is_empty(), "a model without pieces was accepted");
    }
}
