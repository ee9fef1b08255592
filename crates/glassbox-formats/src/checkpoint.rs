//! [`Checkpoint`]: one view over every supported on-disk layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::safetensors_file::SafetensorsFile;
use crate::{DType, FormatError, Result};

/// A tensor's description, available without reading its data.
#[derive(Debug, Clone, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub bytes: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// Where a tensor's bytes live.
#[derive(Debug, Clone, Copy)]
enum Location {
    Safetensors { shard: usize, entry: usize },
}

/// What kind of artifact was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointKind {
    HubSnapshot,
    Safetensors,
}

/// An opened checkpoint: headers parsed, data memory-mapped, nothing else read.
pub struct Checkpoint {
    pub path: PathBuf,
    pub kind: CheckpointKind,
    /// `config.json` of a Hub snapshot, if present.
    pub config: Option<serde_json::Value>,
    /// `generation_config.json`, if present.
    pub generation_config: Option<serde_json::Value>,
    /// `tokenizer.json` path, if present.
    pub tokenizer_path: Option<PathBuf>,
    tensors: Vec<TensorInfo>,
    locations: Vec<Location>,
    by_name: HashMap<String, usize>,
    safetensors: Vec<SafetensorsFile>,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| FormatError::invalid(path, format!("malformed JSON: {e}")))
}

impl Checkpoint {
    /// Opens a Hub snapshot directory or a single checkpoint file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
        if meta.is_dir() {
            Self::open_dir(path)
        } else {
            Self::open_file(path)
        }
    }

    fn empty(path: &Path, kind: CheckpointKind) -> Self {
        Checkpoint {
            path: path.to_path_buf(),
            kind,
            config: None,
            generation_config: None,
            tokenizer_path: None,
            tensors: Vec::new(),
            locations: Vec::new(),
            by_name: HashMap::new(),
            safetensors: Vec::new(),
        }
    }

    fn open_file(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "safetensors" => {
                let mut ck = Self::empty(path, CheckpointKind::Safetensors);
                ck.add_safetensors(SafetensorsFile::open(path)?)?;
                Ok(ck)
            }
            _ => Err(FormatError::unsupported(
                path,
                "unknown checkpoint format (expected a directory or a .safetensors file)",
            )),
        }
    }

    fn open_dir(dir: &Path) -> Result<Self> {
        let mut ck = Self::empty(dir, CheckpointKind::HubSnapshot);
        let config = dir.join("config.json");
        if config.exists() {
            ck.config = Some(read_json(&config)?);
        }
        let gen = dir.join("generation_config.json");
        if gen.exists() {
            ck.generation_config = Some(read_json(&gen)?);
        }
        let tok = dir.join("tokenizer.json");
        if tok.exists() {
            ck.tokenizer_path = Some(tok);
        }
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        if index.exists() {
            let value = read_json(&index)?;
            let map = value
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| FormatError::invalid(&index, "missing `weight_map` object"))?;
            let mut shards: Vec<String> = Vec::new();
            for (name, shard) in map {
                let shard = shard.as_str().ok_or_else(|| {
                    FormatError::invalid(&index, format!("`{name}`: shard is not a string"))
                })?;
                if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
                    return Err(FormatError::invalid(
                        &index,
                        format!("shard name `{shard}` leaves the directory"),
                    ));
                }
                if !shards.iter().any(|s| s == shard) {
                    shards.push(shard.to_string());
                }
            }
            shards.sort();
            for shard in shards {
                ck.add_safetensors(SafetensorsFile::open(&dir.join(&shard))?)?;
            }
            for name in map.keys() {
                if !ck.by_name.contains_key(name) {
                    return Err(FormatError::invalid(
                        &index,
                        format!("`{name}` is listed in the index but found in no shard"),
                    ));
                }
            }
        } else if single.exists() {
            ck.add_safetensors(SafetensorsFile::open(&single)?)?;
        }
        Ok(ck)
    }

    fn add_safetensors(&mut self, file: SafetensorsFile) -> Result<()> {
        let shard = self.safetensors.len();
        for (entry_idx, e) in file.entries.iter().enumerate() {
            if self.by_name.contains_key(&e.name) {
                return Err(FormatError::invalid(
                    &file.path,
                    format!("tensor `{}` appears in two shards", e.name),
                ));
            }
            self.by_name.insert(e.name.clone(), self.tensors.len());
            self.tensors.push(TensorInfo {
                name: e.name.clone(),
                shape: e.shape.clone(),
                dtype: e.dtype,
                bytes: (e.end - e.start) as u64,
            });
            self.locations.push(Location::Safetensors {
                shard,
                entry: entry_idx,
            });
        }
        self.safetensors.push(file);
        Ok(())
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn locate(&self, name: &str) -> Result<Location> {
        self.by_name
            .get(name)
            .map(|&i| self.locations[i])
            .ok_or_else(|| FormatError::NoSuchTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    /// The raw little-endian bytes of a tensor as stored (memory-mapped, no copy).
    pub fn raw_bytes(&self, name: &str) -> Result<&[u8]> {
        match self.locate(name)? {
            Location::Safetensors { shard, entry } => {
                let f = &self.safetensors[shard];
                Ok(f.bytes(&f.entries[entry]))
            }
        }
    }

    /// The tensor as a candle tensor on `device`, in its stored dtype where candle has it
    /// (F32, F16, BF16, F64, U8, U32, I64), otherwise converted to F32.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let info = &self.tensors[self.by_name[name]];
        let bytes = self.raw_bytes(name)?;
        let path = self.path.clone();
        let wrap = |source| FormatError::Tensor {
            path: path.clone(),
            source,
        };
        let native = match info.dtype {
            DType::F32 => Some(candle_core::DType::F32),
            DType::F16 => Some(candle_core::DType::F16),
            DType::BF16 => Some(candle_core::DType::BF16),
            DType::F64 => Some(candle_core::DType::F64),
            DType::U8 => Some(candle_core::DType::U8),
            DType::U32 => Some(candle_core::DType::U32),
            DType::I64 => Some(candle_core::DType::I64),
            _ => None,
        };
        match native {
            Some(dt) => Tensor::from_raw_buffer(bytes, dt, &info.shape, device).map_err(wrap),
            None => {
                let values = crate::convert::to_f32(info.dtype, bytes).ok_or_else(|| {
                    FormatError::unsupported(
                        &self.path,
                        format!("tensor `{name}`: cannot convert {} to f32", info.dtype),
                    )
                })?;
                Tensor::from_vec(values, info.shape.as_slice(), device).map_err(wrap)
            }
        }
    }

    /// The tensor converted to F32 on `device`.
    pub fn tensor_f32(&self, name: &str, device: &Device) -> Result<Tensor> {
        let t = self.tensor(name, device)?;
        t.to_dtype(candle_core::DType::F32)
            .map_err(|source| FormatError::Tensor {
                path: self.path.clone(),
                source,
            })
    }
}
