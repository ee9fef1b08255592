//! The safetensors format: an 8-byte little-endian header length, a JSON header mapping each
//! tensor name to `{dtype, shape, data_offsets}`, then the byte buffer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::Deserialize;

use crate::dtype::element_count;
use crate::{DType, FormatError, Result};

/// Headers larger than this are refused before any allocation (the reference implementation
/// uses the same bound).
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// One tensor's entry in a safetensors header, validated against the file.
#[derive(Debug, Clone)]
pub struct SafetensorsEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// A memory-mapped, validated safetensors file.
pub struct SafetensorsFile {
    pub path: PathBuf,
    mmap: Mmap,
    pub entries: Vec<SafetensorsEntry>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

fn parse_dtype(s: &str) -> Option<DType> {
    use DType::*;
    Some(match s {
        "BOOL" => Bool,
        "U8" => U8,
        "I8" => I8,
        "U16" => U16,
        "I16" => I16,
        "U32" => U32,
        "I32" => I32,
        "U64" => U64,
        "I64" => I64,
        "F16" => F16,
        "BF16" => BF16,
        "F32" => F32,
        "F64" => F64,
        "F8_E4M3" => F8E4M3,
        "F8_E5M2" => F8E5M2,
        _ => return None,
    })
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = crate::input::open(path, "safetensors")?;
        Self::from_mmap(path, crate::bytes::map_weights(path, &file)?)
    }

    pub fn from_mmap(path: &Path, mmap: Mmap) -> Result<Self> {
        let (entries, metadata) = parse_header(path, &mmap)?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            mmap,
            entries,
            metadata,
        })
    }

    /// The raw bytes of an entry (already bounds-checked at open).
    pub fn bytes(&self, entry: &SafetensorsEntry) -> &[u8] {
        &self.mmap[entry.start..entry.end]
    }
}

/// Parses and validates a safetensors header from the whole file's bytes.
pub fn parse_header(
    path: &Path,
    data: &[u8],
) -> Result<(Vec<SafetensorsEntry>, BTreeMap<String, String>)> {
    let bad = |msg: String| FormatError::invalid(path, msg);
    if data.len() < 8 {
        return Err(bad(format!(
            "file is {} bytes, too short for a safetensors header",
            data.len()
        )));
    }
    let n = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let file_len = data.len() as u64;
    if n > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    if n > file_len - 8 {
        return Err(bad(format!(
            "header length {n} runs past the end of the file ({file_len} bytes)"
        )));
    }
    let header_end = 8 + n as usize;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&data[8..header_end])
        .map_err(|e| bad(format!("malformed JSON header: {e}")))?;
    let buffer_len = file_len - header_end as u64;
    let mut metadata = BTreeMap::new();
    let mut entries = Vec::with_capacity(header.len());
    for (name, value) in header {
        if name == "__metadata__" {
            let map: BTreeMap<String, String> = serde_json::from_value(value)
                .map_err(|e| bad(format!("`__metadata__` must map strings to strings: {e}")))?;
            metadata = map;
            continue;
        }
        let raw: RawEntry = serde_json::from_value(value)
            .map_err(|e| bad(format!("tensor `{name}`: malformed entry: {e}")))?;
        let dtype = parse_dtype(&raw.dtype)
            .ok_or_else(|| bad(format!("tensor `{name}`: unknown dtype `{}`", raw.dtype)))?;
        let (begin, end) = raw.data_offsets;
        if begin > end || end > buffer_len {
            return Err(bad(format!(
                "tensor `{name}`: data offsets [{begin}, {end}) out of range of the {buffer_len}-byte buffer"
            )));
        }
        let elements = element_count(raw.shape.iter().copied())
            .ok_or_else(|| bad(format!("tensor `{name}`: shape {:?} overflows", raw.shape)))?;
        let expected = dtype
            .bytes_for(elements)
            .ok_or_else(|| bad(format!("tensor `{name}`: shape {:?} overflows", raw.shape)))?;
        if expected != end - begin {
            return Err(bad(format!(
                "tensor `{name}`: shape {:?} of {} needs {expected} bytes but offsets span {}",
                raw.shape,
                dtype,
                end - begin
            )));
        }
        entries.push(SafetensorsEntry {
            name,
            dtype,
            shape: raw.shape.iter().map(|&d| d as usize).collect(),
            start: header_end + begin as usize,
            end: header_end + end as usize,
        });
    }
    // Overlapping tensors would alias each other's bytes: the format forbids it.
    let mut spans: Vec<(usize, usize, &str)> = entries
        .iter()
        .map(|e| (e.start, e.end, e.name.as_str()))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(bad(format!(
                "tensors `{}` and `{}` overlap",
                w[0].2, w[1].2
            )));
        }
    }
    Ok((entries, metadata))
}
