//! [`Checkpoint`]: one view over every supported on-disk layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::gguf::GgufFile;
use crate::input;
use crate::pickle::TorchFile;
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
    Gguf { entry: usize },
    Torch { shard: usize, entry: usize },
}

/// What kind of artifact was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointKind {
    HubSnapshot,
    Safetensors,
    Gguf,
    /// A PyTorch zip checkpoint (`.bin`, `.pt`, `.pth`), read by the restricted unpickler.
    PyTorch,
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
    gguf: Option<GgufFile>,
    torch: Vec<TorchFile>,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    crate::input::read_json(path, "JSON", crate::input::limit::CONFIG)
}

/// The first bytes of a file (fewer if it is shorter), to recognise its format.
fn read_magic(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    // An empty file holds no checkpoint; files under /proc and /sys say they are empty too,
    // and reading some of them (`/proc/self/mem`) fails with an I/O error.
    if crate::input::regular_file(path, "checkpoint")?.len() == 0 {
        return Err(FormatError::invalid(path, "the file is empty (0 bytes)"));
    }
    let mut file = crate::input::open(path, "checkpoint")?;
    let mut magic = Vec::with_capacity(8);
    file.by_ref()
        .take(8)
        .read_to_end(&mut magic)
        .map_err(|e| FormatError::io(path, e))?;
    Ok(magic)
}

/// A Hub `*.index.json`: its distinct shard file names, sorted (refusing any that would leave
/// the snapshot directory), and the tensor names it lists.
fn read_index(index: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let value = read_json(index)?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| FormatError::invalid(index, "missing `weight_map` object"))?;
    let mut shards: Vec<String> = Vec::new();
    for (name, shard) in map {
        let shard = shard.as_str().ok_or_else(|| {
            FormatError::invalid(index, format!("`{name}`: shard is not a string"))
        })?;
        if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
            return Err(FormatError::invalid(
                index,
                format!("shard name `{shard}` leaves the directory"),
            ));
        }
        if !shards.iter().any(|s| s == shard) {
            shards.push(shard.to_string());
        }
    }
    shards.sort();
    Ok((shards, map.keys().cloned().collect()))
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
            gguf: None,
            torch: Vec::new(),
        }
    }

    /// Dispatches on the file's magic bytes first (a `.bin` may be anything), then on its
    /// extension.
    fn open_file(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let magic = read_magic(path)?;
        if magic.starts_with(crate::gguf::GGUF_MAGIC) || ext == "gguf" {
            let mut ck = Self::empty(path, CheckpointKind::Gguf);
            ck.set_gguf(GgufFile::open(path)?)?;
            return Ok(ck);
        }
        if magic.starts_with(crate::zip::LOCAL_HEADER_MAGIC) {
            let mut ck = Self::empty(path, CheckpointKind::PyTorch);
            ck.add_torch(TorchFile::open(path)?)?;
            return Ok(ck);
        }
        match ext {
            "safetensors" => Self::open_safetensors(path),
            "bin" | "pt" | "pth" | "ckpt" if magic.first() == Some(&0x80) => {
                Err(crate::pickle::legacy_pickle_error(path))
            }
            "bin" | "pt" | "pth" | "ckpt" => Err(FormatError::invalid(
                path,
                "not a PyTorch zip checkpoint (no zip signature)",
            )),
            _ => Err(FormatError::unsupported(
                path,
                "unknown checkpoint format (expected a directory, .safetensors, .gguf, or a PyTorch .bin/.pt/.pth)",
            )),
        }
    }

    /// A safetensors file, whatever its name ends with (files glassbox writes for itself:
    /// probe directions, checkpoints inside a release).
    pub fn open_safetensors(path: &Path) -> Result<Self> {
        let mut ck = Self::empty(path, CheckpointKind::Safetensors);
        ck.add_safetensors(SafetensorsFile::open(path)?)?;
        Ok(ck)
    }

    fn open_dir(dir: &Path) -> Result<Self> {
        let mut ck = Self::empty(dir, CheckpointKind::HubSnapshot);
        let config = dir.join("config.json");
        if input::present(&config)? {
            ck.config = Some(read_json(&config)?);
        }
        let gen = dir.join("generation_config.json");
        if input::present(&gen)? {
            ck.generation_config = Some(read_json(&gen)?);
        }
        let tok = dir.join("tokenizer.json");
        if input::present(&tok)? {
            ck.tokenizer_path = Some(tok);
        }
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        if input::present(&index)? {
            let (shards, names) = read_index(&index)?;
            for shard in shards {
                ck.add_safetensors(SafetensorsFile::open(&dir.join(&shard))?)?;
            }
            ck.check_index_complete(&index, &names)?;
        } else if input::present(&single)? {
            ck.add_safetensors(SafetensorsFile::open(&single)?)?;
        } else {
            ck.open_torch_shards(dir)?;
        }
        Ok(ck)
    }

    fn add_safetensors(&mut self, file: SafetensorsFile) -> Result<()> {
        let shard = self.safetensors.len();
        for (entry, e) in file.entries.iter().enumerate() {
            let info = TensorInfo {
                name: e.name.clone(),
                shape: e.shape.clone(),
                dtype: e.dtype,
                bytes: (e.end - e.start) as u64,
            };
            self.add_entry(&file.path, info, Location::Safetensors { shard, entry })?;
        }
        self.safetensors.push(file);
        Ok(())
    }

    /// Every tensor an index lists must be in one of its shards.
    fn check_index_complete(&self, index: &Path, names: &[String]) -> Result<()> {
        match names
            .iter()
            .find(|n| !self.by_name.contains_key(n.as_str()))
        {
            Some(name) => Err(FormatError::invalid(
                index,
                format!("`{name}` is listed in the index but found in no shard"),
            )),
            None => Ok(()),
        }
    }

    /// `pytorch_model.bin` or its sharded form, read only when a snapshot has no safetensors.
    fn open_torch_shards(&mut self, dir: &Path) -> Result<()> {
        let index = dir.join("pytorch_model.bin.index.json");
        let single = dir.join("pytorch_model.bin");
        if input::present(&index)? {
            let (shards, names) = read_index(&index)?;
            for shard in shards {
                self.add_torch(TorchFile::open(&dir.join(&shard))?)?;
            }
            self.check_index_complete(&index, &names)?;
        } else if input::present(&single)? {
            self.add_torch(TorchFile::open(&single)?)?;
        }
        Ok(())
    }

    fn add_entry(&mut self, file: &Path, info: TensorInfo, location: Location) -> Result<()> {
        if self.by_name.contains_key(&info.name) {
            return Err(FormatError::invalid(
                file,
                format!("tensor `{}` appears twice (in two shards?)", info.name),
            ));
        }
        self.by_name.insert(info.name.clone(), self.tensors.len());
        self.tensors.push(info);
        self.locations.push(location);
        Ok(())
    }

    fn set_gguf(&mut self, file: GgufFile) -> Result<()> {
        for (entry, t) in file.tensors.iter().enumerate() {
            let info = TensorInfo {
                name: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype,
                bytes: (t.end - t.start) as u64,
            };
            self.add_entry(&file.path, info, Location::Gguf { entry })?;
        }
        self.gguf = Some(file);
        Ok(())
    }

    fn add_torch(&mut self, file: TorchFile) -> Result<()> {
        let shard = self.torch.len();
        for (entry, t) in file.entries.iter().enumerate() {
            let info = TensorInfo {
                name: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype,
                bytes: (t.end - t.start) as u64,
            };
            self.add_entry(&file.path, info, Location::Torch { shard, entry })?;
        }
        self.torch.push(file);
        Ok(())
    }

    /// The parsed GGUF (metadata, version, tensor infos) when this checkpoint is one.
    pub fn gguf(&self) -> Option<&GgufFile> {
        self.gguf.as_ref()
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
            Location::Gguf { entry } => match &self.gguf {
                Some(f) => Ok(f.bytes(&f.tensors[entry])),
                None => Err(FormatError::NoSuchTensor {
                    path: self.path.clone(),
                    name: name.to_string(),
                }),
            },
            Location::Torch { shard, entry } => {
                let f = &self.torch[shard];
                Ok(f.bytes(&f.entries[entry]))
            }
        }
    }

    /// The tensor as a candle tensor on `device`, in its stored dtype where candle has it
    /// (F32, F16, BF16, F64, U8, U32, I64), otherwise converted to F32 (quantized GGUF types
    /// are dequantized).
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let bytes = self.raw_bytes(name)?;
        let info = self.info(name).ok_or_else(|| FormatError::NoSuchTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
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
            Some(candle_core::DType::F32) if device.is_cpu() => {
                Tensor::from_vec(owned_copy::<f32>(bytes), info.shape.as_slice(), device)
                    .map_err(wrap)
            }
            Some(candle_core::DType::F16) if device.is_cpu() => Tensor::from_vec(
                owned_copy::<half::f16>(bytes),
                info.shape.as_slice(),
                device,
            )
            .map_err(wrap),
            Some(candle_core::DType::BF16) if device.is_cpu() => Tensor::from_vec(
                owned_copy::<half::bf16>(bytes),
                info.shape.as_slice(),
                device,
            )
            .map_err(wrap),
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

    /// Every tensor, by name, as [`Checkpoint::tensor`] gives it: what `safetensors::load`
    /// gives, but through this crate's validating reader, so that a damaged file is an input
    /// error naming it.
    pub fn all_tensors(
        &self,
        device: &Device,
    ) -> Result<std::collections::HashMap<String, Tensor>> {
        self.tensors()
            .iter()
            .map(|t| Ok((t.name.clone(), self.tensor(&t.name, device)?)))
            .collect()
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

/// The little-endian values in `bytes` as an owned vector. Large buffers are asked for
/// transparent huge pages before the first write: copying a checkpoint out of its memory map
/// then costs one page fault per 2 MiB instead of one per 4 KiB, which is most of start-up.
fn owned_copy<T: Copy>(bytes: &[u8]) -> Vec<T> {
    let size = std::mem::size_of::<T>();
    let n = bytes.len() / size;
    let mut values: Vec<T> = Vec::with_capacity(n);
    advise_huge_pages(values.as_mut_ptr() as *mut u8, n * size);
    // Safety: the capacity holds n values; every byte of them is written before set_len, and
    // T is a plain number type for which any bit pattern is a value. Like candle's
    // `from_raw_buffer`, this reads the file's little-endian bytes as native values.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), values.as_mut_ptr() as *mut u8, n * size);
        values.set_len(n);
    }
    values
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) / HUGE * HUGE;
    if end > start {
        // Safety: the range lies inside an allocation we own; the advice changes no contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _len: usize) {}
