//! A restricted reader for PyTorch zip checkpoints (`pytorch_model.bin`, `.pt`, `.pth`).
//!
//! `torch.save` writes a zip holding `<archive>/data.pkl` — a pickle of the state dict in
//! which each tensor is a call to `torch._utils._rebuild_tensor_v2` on a *persistent id*
//! naming a storage — and `<archive>/data/<key>`, each storage's raw little-endian bytes.
//!
//! Pickle is a program for a stack machine that may import and call anything; loading one
//! with Python's `pickle` runs whatever it names. This reader is a separate, small machine
//! that knows only the opcodes a state dict uses and only the globals a state dict needs
//! (`collections.OrderedDict`, torch's tensor/parameter rebuilders and storage types). Any
//! other global (`os.system`, `builtins.eval`, …) is refused by name before anything else
//! happens, and nothing is ever executed: "calling" an allowed global only builds a
//! description of a tensor. The stack, the memo and the total work are bounded.
//!
//! Tensors map to byte ranges of their storage entry; only contiguous layouts are accepted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::bytes::{Cursor, FileBytes};
use crate::dtype::element_count;
use crate::{DType, FormatError, Result};

/// Bounds that no real state dict comes near, so a hostile pickle cannot exhaust memory.
const MAX_STACK: usize = 1 << 20;
/// Containers nested deeper than this are refused: values are built, cloned, weighed and
/// dropped recursively, so unbounded nesting would overflow the thread's stack (a state dict
/// nests about five deep).
const MAX_DEPTH: usize = 64;
const MAX_MEMO: usize = 1 << 22;
/// Total values the machine may create or copy (memo gets count their whole size).
const MAX_WORK: usize = 1 << 26;
const MAX_TENSOR_DIMS: usize = 16;

/// The globals a state dict may name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(DType),
}

fn allowed_global(module: &str, name: &str) -> Option<Global> {
    Some(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch", storage) => Global::Storage(match storage {
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "DoubleStorage" => DType::F64,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        }),
        _ => return None,
    })
}

/// A tensor as the pickle describes it: a view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct PickledTensor {
    pub storage_key: String,
    pub dtype: DType,
    /// In elements.
    pub storage_offset: u64,
    pub shape: Vec<usize>,
    pub stride: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(usize),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage { key: String, dtype: DType },
    Tensor(PickledTensor),
}

impl Value {
    /// Nesting depth (0 for a scalar), counted no further than `cap + 1`, so the recursion is
    /// at most `cap + 1` deep.
    fn depth(&self, cap: usize) -> usize {
        let deepest = |children: &mut dyn Iterator<Item = &Value>| {
            if cap == 0 {
                return 1;
            }
            1 + children.map(|c| c.depth(cap - 1)).max().unwrap_or(0)
        };
        match self {
            Value::Tuple(v) | Value::List(v) => deepest(&mut v.iter()),
            Value::Dict(v) => deepest(&mut v.iter().flat_map(|(k, v)| [k, v])),
            _ => 0,
        }
    }

    /// Refuses a value that, placed in a container, would nest deeper than [`MAX_DEPTH`].
    fn check_nested(&self, op: &str) -> VmResult<()> {
        if self.depth(MAX_DEPTH) >= MAX_DEPTH {
            return Err(format!(
                "pickle: {op} nests containers deeper than {MAX_DEPTH}"
            ));
        }
        Ok(())
    }

    /// Number of values inside, for the work bound.
    fn weight(&self) -> usize {
        match self {
            Value::Tuple(v) | Value::List(v) => 1 + v.iter().map(Value::weight).sum::<usize>(),
            Value::Dict(v) => {
                1 + v
                    .iter()
                    .map(|(k, v)| k.weight() + v.weight())
                    .sum::<usize>()
            }
            _ => 1,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage { .. } => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

struct Machine<'a> {
    code: Cursor<'a>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    work: usize,
}

type VmResult<T> = std::result::Result<T, String>;

impl<'a> Machine<'a> {
    fn push(&mut self, v: Value) -> VmResult<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(format!("pickle: stack deeper than {MAX_STACK}"));
        }
        if v.depth(MAX_DEPTH) > MAX_DEPTH {
            return Err(format!("pickle: containers nested deeper than {MAX_DEPTH}"));
        }
        self.charge(1)?;
        self.stack.push(v);
        Ok(())
    }
    fn charge(&mut self, n: usize) -> VmResult<()> {
        self.work = self.work.saturating_add(n);
        if self.work > MAX_WORK {
            return Err(format!("pickle: more than {MAX_WORK} values built"));
        }
        Ok(())
    }
    fn pop(&mut self, op: &str) -> VmResult<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(format!("pickle: {op} would pop past a MARK"));
        }
        self.stack
            .pop()
            .ok_or_else(|| format!("pickle: {op} on an empty stack"))
    }
    fn top(&mut self, op: &str) -> VmResult<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| format!("pickle: {op} on an empty stack"))
    }
    /// Everything above the most recent MARK, removing the mark.
    fn pop_mark(&mut self, op: &str) -> VmResult<Vec<Value>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| format!("pickle: {op} without a MARK"))?;
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }
    fn memo_put(&mut self, key: u32) -> VmResult<()> {
        let v = self
            .stack
            .last()
            .ok_or("pickle: memo put on an empty stack")?
            .clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(format!("pickle: more than {MAX_MEMO} memo entries"));
        }
        self.charge(v.weight())?;
        self.memo.insert(key, v);
        Ok(())
    }
    fn memo_get(&mut self, key: u32) -> VmResult<()> {
        let v = self
            .memo
            .get(&key)
            .ok_or_else(|| format!("pickle: memo key {key} was never stored"))?
            .clone();
        self.charge(v.weight())?;
        self.push(v)
    }
    fn string(&mut self, len: u64, op: &str) -> VmResult<()> {
        let at = self.code.pos;
        let b = self.code.take(len, op)?;
        let s = std::str::from_utf8(b)
            .map_err(|_| format!("pickle: at byte {at}: {op} is not UTF-8"))?;
        self.push(Value::Str(s.to_string()))
    }
}

fn int_arg(v: &Value, what: &str) -> VmResult<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(format!(
            "pickle: {what} must be an int, found {}",
            other.kind()
        )),
    }
}

fn ints(v: &Value, what: &str) -> VmResult<Vec<i64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => {
            items.iter().map(|x| int_arg(x, what)).collect()
        }
        other => Err(format!(
            "pickle: {what} must be a tuple, found {}",
            other.kind()
        )),
    }
}

/// "Calls" an allowed global: builds a dict or a tensor description, never runs anything.
fn call(g: Global, args: Vec<Value>) -> VmResult<Value> {
    match g {
        Global::OrderedDict => match args.as_slice() {
            [] => Ok(Value::Dict(Vec::new())),
            _ => Err("pickle: OrderedDict called with arguments".into()),
        },
        Global::RebuildParameter => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => Err("pickle: _rebuild_parameter expects a tensor".into()),
        },
        Global::RebuildTensorV2 => {
            if args.len() < 4 {
                return Err(format!(
                    "pickle: _rebuild_tensor_v2 expects at least 4 arguments, got {}",
                    args.len()
                ));
            }
            let (key, dtype) = match &args[0] {
                Value::Storage { key, dtype } => (key.clone(), *dtype),
                other => {
                    return Err(format!(
                        "pickle: _rebuild_tensor_v2 expects a storage, found {}",
                        other.kind()
                    ))
                }
            };
            let offset = int_arg(&args[1], "storage offset")?;
            let size = ints(&args[2], "tensor size")?;
            let stride = ints(&args[3], "tensor stride")?;
            if size.len() != stride.len() || size.len() > MAX_TENSOR_DIMS {
                return Err(format!(
                    "pickle: tensor size {size:?} and stride {stride:?} do not match"
                ));
            }
            let nonneg = |v: i64| {
                u64::try_from(v).map_err(|_| "pickle: negative size, stride or offset".to_string())
            };
            Ok(Value::Tensor(PickledTensor {
                storage_key: key,
                dtype,
                storage_offset: nonneg(offset)?,
                shape: size
                    .iter()
                    .map(|&d| nonneg(d).map(|d| d as usize))
                    .collect::<VmResult<_>>()?,
                stride: stride.iter().map(|&d| nonneg(d)).collect::<VmResult<_>>()?,
            }))
        }
        Global::Storage(_) => Err("pickle: a storage type cannot be called".into()),
    }
}

/// Runs the restricted machine over a `data.pkl` and returns the tensors of the state dict,
/// flattening nested dicts with dotted keys (`{"model": {...}}` gives `model.…`).
pub fn load_state_dict(pkl: &[u8]) -> VmResult<Vec<(String, PickledTensor)>> {
    let mut m = Machine {
        code: Cursor::new(pkl),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        work: 0,
    };
    let result = loop {
        let at = m.code.pos;
        let op = m
            .code
            .u8("opcode")
            .map_err(|_| "pickle: ends without STOP".to_string())?;
        match op {
            0x80 => {
                let proto = m.code.u8("PROTO")?;
                if !(2..=5).contains(&proto) {
                    return Err(format!("pickle: protocol {proto} (expected 2 to 5)"));
                }
            }
            0x95 => {
                m.code.u64("FRAME")?;
            }
            b'.' => break m.pop("STOP")?,
            b'}' => m.push(Value::Dict(Vec::new()))?,
            b']' => m.push(Value::List(Vec::new()))?,
            b')' => m.push(Value::Tuple(Vec::new()))?,
            b'(' => {
                if m.marks.len() >= MAX_STACK {
                    return Err("pickle: too many MARKs".into());
                }
                m.marks.push(m.stack.len());
            }
            b'N' => m.push(Value::None)?,
            0x88 => m.push(Value::Bool(true))?,
            0x89 => m.push(Value::Bool(false))?,
            b'J' => {
                let v = m.code.u32("BININT")? as i32;
                m.push(Value::Int(v as i64))?
            }
            b'K' => {
                let v = m.code.u8("BININT1")?;
                m.push(Value::Int(v as i64))?
            }
            b'M' => {
                let v = m.code.u16("BININT2")?;
                m.push(Value::Int(v as i64))?
            }
            0x8a => {
                let n = m.code.u8("LONG1")? as u64;
                let b = m.code.take(n, "LONG1")?;
                if n > 8 {
                    return Err(format!("pickle: at byte {at}: integer of {n} bytes"));
                }
                // Little-endian two's complement, sign-extended from its top byte.
                let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
                let mut buf = [fill; 8];
                buf[..b.len()].copy_from_slice(b);
                m.push(Value::Int(i64::from_le_bytes(buf)))?
            }
            b'G' => {
                let v = f64::from_be_bytes(m.code.array("BINFLOAT")?);
                m.push(Value::Float(v))?
            }
            b'X' => {
                let n = m.code.u32("BINUNICODE")? as u64;
                m.string(n, "BINUNICODE")?
            }
            0x8d => {
                let n = m.code.u64("BINUNICODE8")?;
                m.string(n, "BINUNICODE8")?
            }
            0x8c => {
                let n = m.code.u8("SHORT_BINUNICODE")? as u64;
                m.string(n, "SHORT_BINUNICODE")?
            }
            b'C' => {
                let n = m.code.u8("SHORT_BINBYTES")? as u64;
                m.code.take(n, "SHORT_BINBYTES")?;
                m.push(Value::Bytes(n as usize))?
            }
            b'B' => {
                let n = m.code.u32("BINBYTES")? as u64;
                m.code.take(n, "BINBYTES")?;
                m.push(Value::Bytes(n as usize))?
            }
            b't' => {
                let items = m.pop_mark("TUPLE")?;
                m.push(Value::Tuple(items))?
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(m.pop("TUPLE")?);
                }
                items.reverse();
                m.push(Value::Tuple(items))?
            }
            b'a' => {
                let v = m.pop("APPEND")?;
                v.check_nested("APPEND")?;
                match m.top("APPEND")? {
                    Value::List(l) => l.push(v),
                    other => return Err(format!("pickle: APPEND to a {}", other.kind())),
                }
            }
            b'e' => {
                let items = m.pop_mark("APPENDS")?;
                for v in &items {
                    v.check_nested("APPENDS")?;
                }
                match m.top("APPENDS")? {
                    Value::List(l) => l.extend(items),
                    other => return Err(format!("pickle: APPENDS to a {}", other.kind())),
                }
            }
            b's' => {
                let v = m.pop("SETITEM")?;
                let k = m.pop("SETITEM")?;
                k.check_nested("SETITEM")?;
                v.check_nested("SETITEM")?;
                match m.top("SETITEM")? {
                    Value::Dict(d) => d.push((k, v)),
                    other => return Err(format!("pickle: SETITEM on a {}", other.kind())),
                }
            }
            b'u' => {
                let items = m.pop_mark("SETITEMS")?;
                if items.len() % 2 != 0 {
                    return Err("pickle: SETITEMS with an odd number of items".into());
                }
                for v in &items {
                    v.check_nested("SETITEMS")?;
                }
                match m.top("SETITEMS")? {
                    Value::Dict(d) => {
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                    other => return Err(format!("pickle: SETITEMS on a {}", other.kind())),
                }
            }
            b'q' => {
                let k = m.code.u8("BINPUT")? as u32;
                m.memo_put(k)?
            }
            b'r' => {
                let k = m.code.u32("LONG_BINPUT")?;
                m.memo_put(k)?
            }
            0x94 => {
                let k = m.memo.len() as u32;
                m.memo_put(k)?
            }
            b'h' => {
                let k = m.code.u8("BINGET")? as u32;
                m.memo_get(k)?
            }
            b'j' => {
                let k = m.code.u32("LONG_BINGET")?;
                m.memo_get(k)?
            }
            b'c' => {
                let module = read_line(&mut m.code)?;
                let name = read_line(&mut m.code)?;
                m.push(global(&module, &name)?)?
            }
            0x93 => {
                let name = m.pop("STACK_GLOBAL")?;
                let module = m.pop("STACK_GLOBAL")?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => m.push(global(&module, &name)?)?,
                    _ => return Err("pickle: STACK_GLOBAL needs two strings".into()),
                }
            }
            b'R' => {
                let args = m.pop("REDUCE")?;
                let f = m.pop("REDUCE")?;
                let args = match args {
                    Value::Tuple(a) => a,
                    other => return Err(format!("pickle: REDUCE arguments are a {}", other.kind())),
                };
                let v = match f {
                    Value::Global(g) => call(g, args)?,
                    other => return Err(format!("pickle: REDUCE calls a {}", other.kind())),
                };
                m.push(v)?
            }
            b'b' => {
                // BUILD sets an object's state; on a state dict that is only its `_metadata`
                // attribute (per-module versions), which glassbox has no use for.
                let _state = m.pop("BUILD")?;
                match m.top("BUILD")? {
                    Value::Dict(_) => {}
                    other => return Err(format!("pickle: BUILD on a {}", other.kind())),
                }
            }
            b'Q' => {
                let pid = m.pop("BINPERSID")?;
                m.push(persistent_load(pid)?)?
            }
            other => {
                return Err(format!(
                    "pickle: at byte {at}: opcode 0x{other:02x} is not used by state dicts and is refused"
                ))
            }
        }
    };
    let mut out = Vec::new();
    flatten("", result, &mut out)?;
    Ok(out)
}

fn read_line(c: &mut Cursor) -> VmResult<String> {
    let mut s = Vec::new();
    loop {
        let b = c.u8("GLOBAL")?;
        if b == b'\n' {
            break;
        }
        if s.len() >= 256 {
            return Err("pickle: GLOBAL name longer than 256 bytes".into());
        }
        s.push(b);
    }
    Ok(String::from_utf8_lossy(&s).into_owned())
}

fn global(module: &str, name: &str) -> VmResult<Value> {
    allowed_global(module, name)
        .map(Value::Global)
        .ok_or_else(|| {
            format!(
            "pickle: refusing global `{module}.{name}`: a state dict needs only torch's tensor \
             rebuilders and storages and collections.OrderedDict, and this one names something \
             else (loading it with torch.load could run code)"
        )
        })
}

/// torch's persistent ids: `('storage', <StorageType>, key, location, numel)`.
fn persistent_load(pid: Value) -> VmResult<Value> {
    let items = match pid {
        Value::Tuple(items) => items,
        other => return Err(format!("pickle: persistent id is a {}", other.kind())),
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), ..]
            if tag == "storage" =>
        {
            Ok(Value::Storage {
                key: key.clone(),
                dtype: *dtype,
            })
        }
        _ => Err("pickle: persistent id is not ('storage', <type>, key, ...)".into()),
    }
}

fn flatten(prefix: &str, v: Value, out: &mut Vec<(String, PickledTensor)>) -> VmResult<()> {
    match v {
        Value::Dict(items) => {
            for (k, v) in items {
                let key = match k {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, v, out)?;
            }
            Ok(())
        }
        Value::Tensor(t) if !prefix.is_empty() => {
            out.push((prefix.to_string(), t));
            Ok(())
        }
        Value::Tensor(_) => Err("pickle: the file holds a single tensor, not a state dict".into()),
        // Training checkpoints also hold step counts, strings, lists: not weights.
        _ if !prefix.is_empty() => Ok(()),
        other => Err(format!(
            "pickle: top-level value is a {}, not a state dict",
            other.kind()
        )),
    }
}

/// A tensor of a PyTorch checkpoint, resolved to a byte range of the file.
#[derive(Debug, Clone)]
pub struct TorchEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

/// A PyTorch zip checkpoint, memory-mapped, its pickle run by the restricted machine.
pub struct TorchFile {
    pub path: PathBuf,
    pub entries: Vec<TorchEntry>,
    bytes: FileBytes,
}

/// The error for a pre-1.6 (non-zip) torch pickle, which carries no zip directory to bound it.
pub fn legacy_pickle_error(path: &Path) -> FormatError {
    FormatError::unsupported(
        path,
        format!(
            "legacy (non-zip) PyTorch pickle; convert it to safetensors in a trusted environment: \
             python -c \"import torch, safetensors.torch as st; st.save_file(torch.load('{}'), 'model.safetensors')\"",
            path.display()
        ),
    )
}

impl TorchFile {
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_file_bytes(path, FileBytes::map(path)?)
    }

    /// Parses a checkpoint held in memory; `path` is only used in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::from_file_bytes(path, FileBytes::Owned(bytes))
    }

    fn from_file_bytes(path: &Path, bytes: FileBytes) -> Result<Self> {
        if !bytes.starts_with(crate::zip::LOCAL_HEADER_MAGIC) {
            if bytes.first() == Some(&0x80) {
                return Err(legacy_pickle_error(path));
            }
            return Err(FormatError::invalid(path, "not a PyTorch zip checkpoint"));
        }
        let entries = resolve(&bytes).map_err(|m| {
            if m.starts_with("pickle: refusing") || m.contains("is compressed") {
                FormatError::unsupported(path, m)
            } else {
                FormatError::invalid(path, m)
            }
        })?;
        Ok(TorchFile {
            path: path.to_path_buf(),
            entries,
            bytes,
        })
    }

    pub fn bytes(&self, entry: &TorchEntry) -> &[u8] {
        &self.bytes[entry.start..entry.end]
    }
}

/// Finds `data.pkl`, runs it, and maps each tensor to its storage bytes.
fn resolve(data: &[u8]) -> VmResult<Vec<TorchEntry>> {
    let zip = crate::zip::read_entries(data)?;
    let pkls: Vec<&crate::zip::ZipEntry> = zip
        .iter()
        .filter(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
        .collect();
    let pkl = match pkls.as_slice() {
        [one] => *one,
        [] => return Err("zip holds no `data.pkl`: not a torch.save checkpoint".into()),
        _ => return Err("zip holds more than one `data.pkl`".into()),
    };
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    if let Some(order) = zip.iter().find(|e| e.name == format!("{prefix}byteorder")) {
        if &data[order.start..order.end] != b"little" {
            return Err("big-endian torch checkpoint (byteorder is not `little`)".into());
        }
    }
    let tensors = load_state_dict(&data[pkl.start..pkl.end])?;
    let by_name: HashMap<&str, &crate::zip::ZipEntry> =
        zip.iter().map(|e| (e.name.as_str(), e)).collect();
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let storage_name = format!("{prefix}data/{}", t.storage_key);
        let storage = by_name.get(storage_name.as_str()).ok_or_else(|| {
            format!("tensor `{name}`: storage `{storage_name}` is not in the zip")
        })?;
        // Contiguous: each stride is the product of the sizes after it (size-1 dims are free).
        let mut expected = 1u64;
        for (i, (&size, &stride)) in t.shape.iter().zip(&t.stride).enumerate().rev() {
            if size > 1 && stride != expected {
                return Err(format!(
                    "tensor `{name}`: non-contiguous layout (size {:?}, stride {:?} at dim {i}); \
                     save it with .contiguous()",
                    t.shape, t.stride
                ));
            }
            expected = expected.saturating_mul(size as u64);
        }
        let elements = element_count(t.shape.iter().map(|&d| d as u64))
            .ok_or_else(|| format!("tensor `{name}`: shape {:?} overflows", t.shape))?;
        let elem = t.dtype.block().1 as u64;
        let range = t
            .storage_offset
            .checked_mul(elem)
            .and_then(|s| Some((s, s.checked_add(elements.checked_mul(elem)?)?)));
        let storage_len = (storage.end - storage.start) as u64;
        let (begin, end) = match range {
            Some((b, e)) if e <= storage_len => (b, e),
            _ => {
                return Err(format!(
                    "tensor `{name}`: {elements} elements at offset {} run past its {storage_len}-byte storage",
                    t.storage_offset
                ))
            }
        };
        out.push(TorchEntry {
            name,
            dtype: t.dtype,
            shape: t.shape,
            start: storage.start + begin as usize,
            end: storage.start + end as usize,
        });
    }
    Ok(out)
}
