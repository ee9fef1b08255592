//! Files written whole or not at all ([`glassbox_formats::output`]).

use std::path::Path;

use candle_core::Tensor;

use crate::error::Result;

/// Writes `bytes` to `path` atomically.
pub fn atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(glassbox_formats::output::write_bytes(path, bytes)?)
}

/// Writes named tensors as a safetensors file atomically.
pub fn safetensors(path: &Path, tensors: &[(&str, Tensor)]) -> Result<()> {
    let named = tensors.iter().map(|(n, t)| (*n, t));
    Ok(glassbox_formats::output::write_safetensors(
        path, named, None,
    )?)
}
