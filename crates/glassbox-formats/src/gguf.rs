//! The GGUF format (llama.cpp), versions 2 and 3.
//!
//! Layout: magic `GGUF`, u32 version, u64 tensor count, u64 metadata count, the metadata
//! key/value pairs, the tensor infos (name, dims innermost-first, ggml type, offset into the
//! data section), padding to `general.alignment` (default 32), then the data section.
//!
//! Design: the header is parsed from a memory map; tensor bytes are sliced on demand. Every
//! count and length read from the file is checked against the bytes that remain *before*
//! anything is allocated: a string length or array count that cannot fit in the rest of the
//! file is an error, so a hostile header can never make us allocate more than a small
//! multiple of the file's own size. Arrays are stored typed ([`GgufArray`]) for the same
//! reason: a 30 MB u8 array stays 30 MB in memory.
//!
//! Shapes are reported row-major (PyTorch order): GGUF stores dims innermost-first, so they
//! are reversed, as llama.cpp's converter wrote them and as Hugging Face's loader reads them.

use std::path::{Path, PathBuf};

use crate::bytes::{Cursor, FileBytes};
use crate::dtype::element_count;
use crate::{DType, FormatError, Result};

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml itself stops at 4 dims; 8 leaves room without letting a header ask for millions.
pub const MAX_DIMS: u32 = 8;
/// Counts already checked against the file size still only *hint* capacity up to this many
/// items: a multi-gigabyte file could otherwise justify a multi-gigabyte reservation that its
/// contents never fill.
const CAPACITY_HINT: usize = 1 << 16;
/// Nested arrays deeper than this are refused (recursion would otherwise follow the file).
const MAX_ARRAY_DEPTH: usize = 8;

/// The type tag of a metadata value, as numbered in the GGUF spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl GgufType {
    pub fn from_u32(v: u32) -> Option<Self> {
        use GgufType::*;
        Some(match v {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The fewest bytes one value of this type occupies in a file (a string is at least its
    /// u64 length, an array at least its type and count): the bound for count validation.
    fn min_encoded_size(self) -> u64 {
        use GgufType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(GgufArray),
}

/// A metadata array, stored with its element type.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<GgufArray>),
}

impl GgufValue {
    pub fn value_type(&self) -> GgufType {
        match self {
            GgufValue::U8(_) => GgufType::U8,
            GgufValue::I8(_) => GgufType::I8,
            GgufValue::U16(_) => GgufType::U16,
            GgufValue::I16(_) => GgufType::I16,
            GgufValue::U32(_) => GgufType::U32,
            GgufValue::I32(_) => GgufType::I32,
            GgufValue::U64(_) => GgufType::U64,
            GgufValue::I64(_) => GgufType::I64,
            GgufValue::F32(_) => GgufType::F32,
            GgufValue::F64(_) => GgufType::F64,
            GgufValue::Bool(_) => GgufType::Bool,
            GgufValue::String(_) => GgufType::String,
            GgufValue::Array(_) => GgufType::Array,
        }
    }

    /// Any integer type that fits in u64 (files disagree on which width they use).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any numeric type as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64).or(match *self {
                GgufValue::I8(v) => Some(v as f64),
                GgufValue::I16(v) => Some(v as f64),
                GgufValue::I32(v) => Some(v as f64),
                GgufValue::I64(v) => Some(v as f64),
                _ => None,
            }),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl GgufArray {
    pub fn elem_type(&self) -> GgufType {
        match self {
            GgufArray::U8(_) => GgufType::U8,
            GgufArray::I8(_) => GgufType::I8,
            GgufArray::U16(_) => GgufType::U16,
            GgufArray::I16(_) => GgufType::I16,
            GgufArray::U32(_) => GgufType::U32,
            GgufArray::I32(_) => GgufType::I32,
            GgufArray::U64(_) => GgufType::U64,
            GgufArray::I64(_) => GgufType::I64,
            GgufArray::F32(_) => GgufType::F32,
            GgufArray::F64(_) => GgufType::F64,
            GgufArray::Bool(_) => GgufType::Bool,
            GgufArray::String(_) => GgufType::String,
            GgufArray::Array(_) => GgufType::Array,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            GgufArray::U8(v) => v.len(),
            GgufArray::I8(v) => v.len(),
            GgufArray::U16(v) => v.len(),
            GgufArray::I16(v) => v.len(),
            GgufArray::U32(v) => v.len(),
            GgufArray::I32(v) => v.len(),
            GgufArray::U64(v) => v.len(),
            GgufArray::I64(v) => v.len(),
            GgufArray::F32(v) => v.len(),
            GgufArray::F64(v) => v.len(),
            GgufArray::Bool(v) => v.len(),
            GgufArray::String(v) => v.len(),
            GgufArray::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Maps a ggml tensor type id to a [`DType`]; None for types glassbox cannot decode (the
/// IQ* codebook quantizations, TQ*, NVFP4).
pub fn dtype_from_ggml(id: u32) -> Option<DType> {
    use DType::*;
    Some(match id {
        0 => F32,
        1 => F16,
        2 => Q4_0,
        3 => Q4_1,
        6 => Q5_0,
        7 => Q5_1,
        8 => Q8_0,
        9 => Q8_1,
        10 => Q2K,
        11 => Q3K,
        12 => Q4K,
        13 => Q5K,
        14 => Q6K,
        15 => Q8K,
        24 => I8,
        25 => I16,
        26 => I32,
        27 => I64,
        28 => F64,
        30 => BF16,
        39 => Mxfp4,
        _ => return None,
    })
}

/// The ggml type id of a [`DType`], None for dtypes GGUF cannot hold.
pub fn ggml_id(dtype: DType) -> Option<u32> {
    (0..=39).find(|&id| dtype_from_ggml(id) == Some(dtype))
}

/// One tensor's entry in a GGUF header, validated against the file.
#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Row-major (PyTorch order): the file's dims reversed.
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// Offset relative to the start of the data section, as stored.
    pub offset: u64,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// A parsed GGUF file: metadata, tensor infos, and the (mapped) bytes.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_start: usize,
    metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<GgufTensorInfo>,
    bytes: FileBytes,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_file_bytes(path, FileBytes::map(path)?)
    }

    /// Parses a GGUF held in memory; `path` is only used in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::from_file_bytes(path, FileBytes::Owned(bytes))
    }

    fn from_file_bytes(path: &Path, bytes: FileBytes) -> Result<Self> {
        let header = parse(&bytes).map_err(|msg| match msg {
            ParseError::Invalid(m) => FormatError::invalid(path, m),
            ParseError::Unsupported(m) => FormatError::unsupported(path, m),
        })?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version: header.version,
            alignment: header.alignment,
            data_start: header.data_start,
            metadata: header.metadata,
            tensors: header.tensors,
            bytes,
        })
    }

    /// Every metadata pair, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// An integer value of any width that fits in u32.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)?.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f64().map(|v| v as f32)
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            GgufValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    pub fn get_array(&self, key: &str) -> Option<&GgufArray> {
        self.get(key)?.as_array()
    }

    pub fn get_str_array(&self, key: &str) -> Option<&[String]> {
        match self.get_array(key)? {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }

    pub fn get_f32_array(&self, key: &str) -> Option<&[f32]> {
        match self.get_array(key)? {
            GgufArray::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn get_i32_array(&self, key: &str) -> Option<&[i32]> {
        match self.get_array(key)? {
            GgufArray::I32(v) => Some(v),
            _ => None,
        }
    }

    /// `general.architecture`, e.g. `llama`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// The raw bytes of a tensor (already bounds-checked at open).
    pub fn bytes(&self, info: &GgufTensorInfo) -> &[u8] {
        &self.bytes[info.start..info.end]
    }

    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

enum ParseError {
    Invalid(String),
    Unsupported(String),
}

impl From<String> for ParseError {
    fn from(m: String) -> Self {
        ParseError::Invalid(m)
    }
}

struct Header {
    version: u32,
    alignment: u64,
    data_start: usize,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensorInfo>,
}

/// Checks that `count` items of at least `min_size` bytes each can fit in what is left.
fn check_count(
    c: &Cursor,
    count: u64,
    min_size: u64,
    what: &str,
) -> std::result::Result<(), String> {
    let left = c.remaining() as u64;
    if count.checked_mul(min_size).is_none_or(|need| need > left) {
        return Err(format!(
            "at byte {}: {what} count {count} cannot fit in the {left} bytes left in the file",
            c.pos
        ));
    }
    Ok(())
}

fn read_string(c: &mut Cursor, what: &str) -> std::result::Result<String, String> {
    let at = c.pos;
    let len = c.u64(what)?;
    let bytes = c.take(len, what)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("at byte {at}: {what} is not UTF-8"))
}

fn read_value(
    c: &mut Cursor,
    ty: GgufType,
    depth: usize,
) -> std::result::Result<GgufValue, String> {
    Ok(match ty {
        GgufType::U8 => GgufValue::U8(c.u8("u8 value")?),
        GgufType::I8 => GgufValue::I8(c.u8("i8 value")? as i8),
        GgufType::U16 => GgufValue::U16(c.u16("u16 value")?),
        GgufType::I16 => GgufValue::I16(c.u16("i16 value")? as i16),
        GgufType::U32 => GgufValue::U32(c.u32("u32 value")?),
        GgufType::I32 => GgufValue::I32(c.u32("i32 value")? as i32),
        GgufType::U64 => GgufValue::U64(c.u64("u64 value")?),
        GgufType::I64 => GgufValue::I64(c.u64("i64 value")? as i64),
        GgufType::F32 => GgufValue::F32(f32::from_bits(c.u32("f32 value")?)),
        GgufType::F64 => GgufValue::F64(f64::from_bits(c.u64("f64 value")?)),
        GgufType::Bool => GgufValue::Bool(read_bool(c)?),
        GgufType::String => GgufValue::String(read_string(c, "string value")?),
        GgufType::Array => GgufValue::Array(read_array(c, depth + 1)?),
    })
}

fn read_bool(c: &mut Cursor) -> std::result::Result<bool, String> {
    let at = c.pos;
    match c.u8("bool value")? {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(format!("at byte {at}: bool value {b} is neither 0 nor 1")),
    }
}

fn read_array(c: &mut Cursor, depth: usize) -> std::result::Result<GgufArray, String> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(format!(
            "at byte {}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels",
            c.pos
        ));
    }
    let at = c.pos;
    let raw_type = c.u32("array element type")?;
    let ty = GgufType::from_u32(raw_type)
        .ok_or_else(|| format!("at byte {at}: unknown array element type {raw_type}"))?;
    let n = c.u64("array length")?;
    check_count(c, n, ty.min_encoded_size(), "array element")?;
    let n = n as usize;
    // Fixed-width elements: decode straight from the (already bounds-checked) slice.
    fn fixed<const N: usize, T>(
        c: &mut Cursor,
        n: usize,
        f: impl Fn([u8; N]) -> T,
    ) -> std::result::Result<Vec<T>, String> {
        let bytes = c.take((n * N) as u64, "array data")?;
        Ok(bytes
            .chunks_exact(N)
            .map(|b| {
                let mut a = [0u8; N];
                a.copy_from_slice(b);
                f(a)
            })
            .collect())
    }
    Ok(match ty {
        GgufType::U8 => GgufArray::U8(fixed::<1, _>(c, n, |b| b[0])?),
        GgufType::I8 => GgufArray::I8(fixed::<1, _>(c, n, |b| b[0] as i8)?),
        GgufType::U16 => GgufArray::U16(fixed(c, n, u16::from_le_bytes)?),
        GgufType::I16 => GgufArray::I16(fixed(c, n, i16::from_le_bytes)?),
        GgufType::U32 => GgufArray::U32(fixed(c, n, u32::from_le_bytes)?),
        GgufType::I32 => GgufArray::I32(fixed(c, n, i32::from_le_bytes)?),
        GgufType::U64 => GgufArray::U64(fixed(c, n, u64::from_le_bytes)?),
        GgufType::I64 => GgufArray::I64(fixed(c, n, i64::from_le_bytes)?),
        GgufType::F32 => GgufArray::F32(fixed(c, n, f32::from_le_bytes)?),
        GgufType::F64 => GgufArray::F64(fixed(c, n, f64::from_le_bytes)?),
        GgufType::Bool => {
            let mut v = Vec::with_capacity(n.min(CAPACITY_HINT));
            for _ in 0..n {
                v.push(read_bool(c)?);
            }
            GgufArray::Bool(v)
        }
        GgufType::String => {
            let mut v = Vec::with_capacity(n.min(CAPACITY_HINT));
            for _ in 0..n {
                v.push(read_string(c, "array string")?);
            }
            GgufArray::String(v)
        }
        GgufType::Array => {
            let mut v = Vec::with_capacity(n.min(CAPACITY_HINT));
            for _ in 0..n {
                v.push(read_array(c, depth + 1)?);
            }
            GgufArray::Array(v)
        }
    })
}

fn parse(data: &[u8]) -> std::result::Result<Header, ParseError> {
    let mut c = Cursor::new(data);
    let magic = c
        .array::<4>("magic")
        .map_err(|_| format!("file is {} bytes, too short for a GGUF header", data.len()))?;
    if &magic != GGUF_MAGIC {
        return Err(ParseError::Invalid(format!(
            "not a GGUF file (magic {magic:02x?}, expected \"GGUF\")"
        )));
    }
    let version = c.u32("version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(ParseError::Unsupported(
                "GGUF version 1 (2023, 32-bit counts) is not read; re-convert the model with a current llama.cpp".into(),
            ))
        }
        v if v.swap_bytes() <= 3 => {
            return Err(ParseError::Unsupported(
                "big-endian GGUF is not read; convert it to little-endian first".into(),
            ))
        }
        v => {
            return Err(ParseError::Unsupported(format!(
                "GGUF version {v} (this reader knows versions 2 and 3)"
            )))
        }
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    // A key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at
    // least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    check_count(&c, n_kv, 13, "metadata")?;
    check_count(&c, n_tensors, 24, "tensor")?;

    // Sets, not scans: a crafted file may hold millions of entries.
    let mut seen_keys = std::collections::HashSet::new();
    let mut metadata: Vec<(String, GgufValue)> =
        Vec::with_capacity((n_kv as usize).min(CAPACITY_HINT));
    for _ in 0..n_kv {
        let key = read_string(&mut c, "metadata key")?;
        let at = c.pos;
        let raw_type = c.u32("value type")?;
        let ty = GgufType::from_u32(raw_type).ok_or_else(|| {
            format!("at byte {at}: key `{key}` has unknown value type {raw_type}")
        })?;
        let value = read_value(&mut c, ty, 0).map_err(|m| format!("key `{key}`: {m}"))?;
        if !seen_keys.insert(key.clone()) {
            return Err(format!("metadata key `{key}` appears twice").into());
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, GgufValue::U32(a))) if *a > 0 && a.is_power_of_two() => *a as u64,
        Some((_, v)) => {
            return Err(
                format!("`general.alignment` must be a u32 power of two, found {v:?}").into(),
            )
        }
    };

    struct RawInfo {
        name: String,
        dims: Vec<u64>,
        dtype: DType,
        offset: u64,
    }
    let mut seen_names = std::collections::HashSet::new();
    let mut raw: Vec<RawInfo> = Vec::with_capacity((n_tensors as usize).min(CAPACITY_HINT));
    for i in 0..n_tensors {
        let name = read_string(&mut c, "tensor name")?;
        let at = c.pos;
        let n_dims = c.u32("tensor n_dims")?;
        if n_dims > MAX_DIMS {
            return Err(format!(
                "at byte {at}: tensor `{name}` has {n_dims} dims (at most {MAX_DIMS} are allowed)"
            )
            .into());
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64("tensor dim")?);
        }
        let at = c.pos;
        let type_id = c.u32("tensor type")?;
        let dtype = dtype_from_ggml(type_id).ok_or_else(|| {
            ParseError::Unsupported(format!(
                "at byte {at}: tensor `{name}` has ggml type {type_id}, which glassbox cannot decode \
                 (it reads F32, F16, BF16, F64, I8-I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K-Q6_K, Q8_K)"
            ))
        })?;
        let offset = c.u64("tensor offset")?;
        if !seen_names.insert(name.clone()) {
            return Err(format!("tensor #{i} `{name}` appears twice").into());
        }
        raw.push(RawInfo {
            name,
            dims,
            dtype,
            offset,
        });
    }

    // The data section begins at the next multiple of the alignment.
    let header_end = c.pos as u64;
    let data_start = header_end.div_ceil(alignment) * alignment;
    let file_len = data.len() as u64;
    if data_start > file_len && !raw.is_empty() {
        return Err(format!(
            "data section would start at byte {data_start}, past the end of the file ({file_len} bytes)"
        )
        .into());
    }
    let data_len = file_len.saturating_sub(data_start);

    let mut tensors = Vec::with_capacity(raw.len());
    for r in raw {
        let name = &r.name;
        let elements = element_count(r.dims.iter().copied())
            .ok_or_else(|| format!("tensor `{name}`: dims {:?} overflow", r.dims))?;
        let (block, _) = r.dtype.block();
        let innermost = r.dims.first().copied().unwrap_or(1);
        if innermost % block as u64 != 0 {
            return Err(format!(
                "tensor `{name}`: innermost dim {innermost} is not a multiple of the {} block size {block}",
                r.dtype
            )
            .into());
        }
        let nbytes = r
            .dtype
            .bytes_for(elements)
            .ok_or_else(|| format!("tensor `{name}`: dims {:?} overflow", r.dims))?;
        if r.offset % alignment != 0 {
            return Err(format!(
                "tensor `{name}`: offset {} is not a multiple of the alignment {alignment}",
                r.offset
            )
            .into());
        }
        if r.offset
            .checked_add(nbytes)
            .is_none_or(|end| end > data_len)
        {
            return Err(format!(
                "tensor `{name}`: bytes [{}, {}+{nbytes}) run past the {data_len}-byte data section",
                r.offset, r.offset
            )
            .into());
        }
        let shape: Vec<usize> = r.dims.iter().rev().map(|&d| d as usize).collect();
        let start = (data_start + r.offset) as usize;
        tensors.push(GgufTensorInfo {
            name: r.name,
            shape,
            dtype: r.dtype,
            offset: r.offset,
            start,
            end: start + nbytes as usize,
        });
    }
    // Overlapping tensors would alias each other's bytes.
    let mut spans: Vec<(usize, usize, &str)> = tensors
        .iter()
        .filter(|t| t.end > t.start)
        .map(|t| (t.start, t.end, t.name.as_str()))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(format!("tensors `{}` and `{}` overlap", w[0].2, w[1].2).into());
        }
    }
    Ok(Header {
        version,
        alignment,
        data_start: data_start.min(file_len) as usize,
        metadata,
        tensors,
    })
}
