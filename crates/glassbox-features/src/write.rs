//! Files written whole or not at all: to a temporary file beside the target, then renamed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::error::{FeatureError, Result};

fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn finish(tmp: &Path, path: &Path, written: std::io::Result<()>) -> Result<()> {
    let result = written.and_then(|_| std::fs::rename(tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(tmp);
        return Err(FeatureError::io(path, e));
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary_beside(path);
    let written = std::fs::write(&tmp, bytes);
    finish(&tmp, path, written)
}

/// Writes named tensors as a safetensors file atomically.
pub fn safetensors(path: &Path, tensors: &[(&str, Tensor)]) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let tmp = temporary_beside(path);
    let written = candle_core::safetensors::save(&map, &tmp)
        .map_err(|e| std::io::Error::other(e.to_string()));
    finish(&tmp, path, written)
}
