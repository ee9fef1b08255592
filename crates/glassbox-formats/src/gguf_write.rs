//! Writing GGUF files: metadata of every value type and F32 / F16 / BF16 / Q8_0 tensors.
//!
//! Used for llama.cpp control vectors (`general.architecture = controlvector`, one F32
//! `direction.{layer}` per layer) and by tests that build tiny GGUF models. Shapes are given
//! row-major (PyTorch order) and written innermost-first, the mirror of the reader. The file
//! is written to a temporary name beside the target and renamed into place, so a failed
//! write never leaves a half-written GGUF behind. [`write_gguf`] streams a file whose tensors
//! are made one at a time (quantizing a model larger than memory).

use std::io::Write;
use std::path::Path;

use glassbox_kernels::quant::{encode, BlockFormat};
use half::{bf16, f16};

use crate::dtype::element_count;
use crate::gguf::{ggml_id, GgufArray, GgufValue, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use crate::{DType, FormatError, Result};

struct PendingTensor {
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then writes a GGUF v3 file.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<PendingTensor>,
}

fn err(msg: impl Into<String>) -> FormatError {
    FormatError::Write(msg.into())
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a metadata key (replacing an earlier value of the same key; order is kept).
    pub fn set(&mut self, key: &str, value: GgufValue) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Adds a tensor from bytes already in `dtype`'s on-disk layout (any type the reader
    /// reads, quantized ones included).
    pub fn add_raw(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        data: Vec<u8>,
    ) -> Result<&mut Self> {
        if ggml_id(dtype).is_none() {
            return Err(err(format!("`{name}`: GGUF cannot hold {dtype}")));
        }
        if shape.len() > MAX_DIMS as usize {
            return Err(err(format!(
                "`{name}`: {} dims (at most {MAX_DIMS})",
                shape.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(err(format!("`{name}` added twice")));
        }
        let elements = element_count(shape.iter().map(|&d| d as u64));
        let expected = elements.and_then(|n| dtype.bytes_for(n));
        if expected != Some(data.len() as u64) {
            return Err(err(format!(
                "`{name}`: shape {shape:?} of {dtype} needs {expected:?} bytes, got {}",
                data.len()
            )));
        }
        if shape.last().is_some_and(|&d| d % dtype.block().0 != 0) {
            return Err(err(format!(
                "`{name}`: last dim is not a multiple of the {dtype} block"
            )));
        }
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype,
            data,
        });
        Ok(self)
    }

    pub fn add_f32(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<&mut Self> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_raw(name, shape, DType::F32, data)
    }

    pub fn add_f16(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<&mut Self> {
        let data = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        self.add_raw(name, shape, DType::F16, data)
    }

    pub fn add_bf16(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<&mut Self> {
        let data = values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect();
        self.add_raw(name, shape, DType::BF16, data)
    }

    /// Quantizes to Q8_0 as llama.cpp's quantizer does (the kernels' encoder).
    pub fn add_q8_0(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<&mut Self> {
        if !values.len().is_multiple_of(32) {
            return Err(err(format!(
                "`{name}`: {} values is not a whole number of Q8_0 blocks",
                values.len()
            )));
        }
        let mut data = vec![0u8; values.len() / 32 * 34];
        encode::quantize_row(BlockFormat::Q8_0, values, None, &mut data);
        self.add_raw(name, shape, DType::Q8_0, data)
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.stream(&mut out)?;
        Ok(out)
    }

    /// Writes the file to `path` via a temporary file renamed into place.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::output::write_atomically(path, |out| self.stream(out))
    }

    fn entries(&self) -> Vec<TensorEntry> {
        let entry = |t: &PendingTensor| TensorEntry {
            name: t.name.clone(),
            shape: t.shape.clone(),
            dtype: t.dtype,
        };
        self.tensors.iter().map(entry).collect()
    }

    fn stream(&self, out: &mut dyn Write) -> Result<()> {
        write_gguf(&self.metadata, &self.entries(), out, |i, out| {
            out.write_all(&self.tensors[i].data)
                .map_err(|e| err(e.to_string()))
        })
    }
}

/// A tensor's entry in a GGUF being written; its bytes come later, in entry order.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub name: String,
    /// Row-major (PyTorch order).
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorEntry {
    /// Bytes of the tensor's data (None when the shape is not whole blocks or overflows).
    pub fn bytes(&self) -> Option<u64> {
        element_count(self.shape.iter().map(|&d| d as u64)).and_then(|n| self.dtype.bytes_for(n))
    }
}

/// Writes a GGUF v3 file in one pass: the header (metadata in order, then every entry with
/// its offset), then each tensor's bytes from `data(i, out)` in entry order, every tensor
/// aligned (`general.alignment`, else 32) and the file padded to the alignment after the last,
/// as ggml writes them. `data` must write exactly the entry's size.
pub fn write_gguf(
    metadata: &[(String, GgufValue)],
    entries: &[TensorEntry],
    out: &mut dyn Write,
    mut data: impl FnMut(usize, &mut dyn Write) -> Result<()>,
) -> Result<()> {
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, GgufValue::U32(a))) if *a > 0 && a.is_power_of_two() => *a as u64,
        Some(_) => return Err(err("`general.alignment` must be a u32 power of two")),
    };
    let mut sizes = Vec::with_capacity(entries.len());
    for t in entries {
        if ggml_id(t.dtype).is_none() {
            return Err(err(format!("`{}`: GGUF cannot hold {}", t.name, t.dtype)));
        }
        if t.shape.len() > MAX_DIMS as usize {
            return Err(err(format!(
                "`{}`: {} dims (at most {MAX_DIMS})",
                t.name,
                t.shape.len()
            )));
        }
        let size = t.bytes().ok_or_else(|| {
            err(format!(
                "`{}`: shape {:?} is not whole {} blocks",
                t.name, t.shape, t.dtype
            ))
        })?;
        sizes.push(size);
    }
    let mut head = Vec::new();
    head.extend_from_slice(GGUF_MAGIC);
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        write_str(&mut head, key);
        head.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
        write_value(&mut head, value);
    }
    let mut offset = 0u64;
    for (t, &size) in entries.iter().zip(&sizes) {
        write_str(&mut head, &t.name);
        head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for &d in t.shape.iter().rev() {
            head.extend_from_slice(&(d as u64).to_le_bytes());
        }
        let id = ggml_id(t.dtype).unwrap_or(0);
        head.extend_from_slice(&id.to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        offset = (offset + size).div_ceil(alignment) * alignment;
    }
    pad(&mut head, alignment);
    let io = |e: std::io::Error| err(e.to_string());
    out.write_all(&head).map_err(io)?;
    let zeros = vec![0u8; alignment as usize];
    for (i, &size) in sizes.iter().enumerate() {
        let mut counted = Counted {
            inner: &mut *out,
            written: 0,
        };
        data(i, &mut counted)?;
        if counted.written != size {
            return Err(err(format!(
                "`{}`: {} bytes written, the header says {size}",
                entries[i].name, counted.written
            )));
        }
        let padding = size.div_ceil(alignment) * alignment - size;
        out.write_all(&zeros[..padding as usize]).map_err(io)?;
    }
    Ok(())
}

struct Counted<'a> {
    inner: &'a mut dyn Write,
    written: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn pad(out: &mut Vec<u8>, alignment: u64) {
    let len = (out.len() as u64).div_ceil(alignment) * alignment;
    out.resize(len as usize, 0);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.push(*x as u8),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(*x as u8),
        GgufValue::String(s) => write_str(out, s),
        GgufValue::Array(a) => write_array(out, a),
    }
}

fn write_array(out: &mut Vec<u8>, a: &GgufArray) {
    out.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    fn each<T: Copy, const N: usize>(out: &mut Vec<u8>, v: &[T], f: impl Fn(T) -> [u8; N]) {
        for &x in v {
            out.extend_from_slice(&f(x));
        }
    }
    match a {
        GgufArray::U8(v) => out.extend_from_slice(v),
        GgufArray::I8(v) => each(out, v, |x| x.to_le_bytes()),
        GgufArray::U16(v) => each(out, v, |x| x.to_le_bytes()),
        GgufArray::I16(v) => each(out, v, |x| x.to_le_bytes()),
        GgufArray::U32(v) => each(out, v, |x| x.to_le_bytes()),
        GgufArray::I32(v) => each(out, v, |x| x.to_le_bytes()),
        GgufArray::U64(v) => each(out, v, |x| x.to_le_bytes()),
        GgufArray::I64(v) => each(out, v, |x| x.to_le_bytes()),
        GgufArray::F32(v) => each(out, v, |x| x.to_le_bytes()),
        GgufArray::F64(v) => each(out, v, |x| x.to_le_bytes()),
        GgufArray::Bool(v) => each(out, v, |x| [x as u8]),
        GgufArray::String(v) => v.iter().for_each(|s| write_str(out, s)),
        GgufArray::Array(v) => v.iter().for_each(|a| write_array(out, a)),
    }
}

/// Writes a llama.cpp control vector: one F32 `direction.{layer}` of length d_model per layer
/// (llama.cpp adds `direction.{il}` to the output of layer `il`).
pub fn write_control_vector(
    path: &Path,
    model_hint: &str,
    directions: &[(usize, Vec<f32>)],
) -> Result<()> {
    let mut w = GgufWriter::new();
    w.set(
        "general.architecture",
        GgufValue::String("controlvector".into()),
    );
    w.set(
        "controlvector.model_hint",
        GgufValue::String(model_hint.into()),
    );
    w.set(
        "controlvector.layer_count",
        GgufValue::U32(directions.len() as u32),
    );
    for (layer, v) in directions {
        w.add_f32(&format!("direction.{layer}"), &[v.len()], v)?;
    }
    w.write(path)
}
