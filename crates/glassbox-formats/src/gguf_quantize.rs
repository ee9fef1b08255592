//! Quantizing a model into a GGUF as llama.cpp's `llama-quantize` does.
//!
//! The file we write for a mixture (`Q4_K_M`, …) is the file llama.cpp writes from the same
//! F32/F16 GGUF: the same metadata (copied in order, `general.quantization_version` and
//! `general.file_type` set last, split keys dropped), the tensors in llama.cpp's order (by
//! layer, then by name), each tensor's type chosen by llama.cpp's per-tensor rules for the
//! mixture (more bits for some value projections and down projections, the output matrix at
//! Q6_K, fallbacks where a row is not whole blocks), and each tensor's blocks from the
//! kernels' quantizers, which reproduce ggml's bit for bit. An importance matrix in
//! llama.cpp's formats ([`ImportanceMatrix`]) switches the quantizers to their weighted
//! searches, as `llama-quantize --imatrix` does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use glassbox_kernels::quant::encode;
use rayon::prelude::*;

use crate::gguf_write::{write_gguf, TensorEntry};
use crate::output::write_atomically;
use crate::quant::block_format;
use crate::{to_f32, DType, FormatError, GgufArray, GgufFile, GgufValue, Result};

/// A llama.cpp quantization mixture (`llama-quantize`'s type argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mixture {
    Q8_0,
    Q4_0,
    Q4KM,
    Q5KM,
    Q6K,
}

impl Mixture {
    pub const ALL: [Mixture; 5] = [
        Mixture::Q8_0,
        Mixture::Q4_0,
        Mixture::Q4KM,
        Mixture::Q5KM,
        Mixture::Q6K,
    ];

    /// `q8_0`, `q4_0`, `q4_k_m`, `q5_k_m`, `q6_k` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }

    /// llama.cpp's name: `Q8_0`, `Q4_K_M`, …
    pub fn name(self) -> &'static str {
        match self {
            Mixture::Q8_0 => "Q8_0",
            Mixture::Q4_0 => "Q4_0",
            Mixture::Q4KM => "Q4_K_M",
            Mixture::Q5KM => "Q5_K_M",
            Mixture::Q6K => "Q6_K",
        }
    }

    /// llama.cpp's `llama_ftype`, stored as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            Mixture::Q4_0 => 2,
            Mixture::Q8_0 => 7,
            Mixture::Q4KM => 15,
            Mixture::Q5KM => 17,
            Mixture::Q6K => 18,
        }
    }

    /// The type of a tensor no rule singles out.
    fn default_type(self) -> DType {
        match self {
            Mixture::Q8_0 => DType::Q8_0,
            Mixture::Q4_0 => DType::Q4_0,
            Mixture::Q4KM => DType::Q4K,
            Mixture::Q5KM => DType::Q5K,
            Mixture::Q6K => DType::Q6K,
        }
    }
}

/// An importance matrix as llama.cpp's quantizer uses it: per weight name, the mean squared
/// activation of each input column (per expert for stacked experts).
#[derive(Clone, Debug, Default)]
pub struct ImportanceMatrix {
    pub entries: BTreeMap<String, Vec<f32>>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
}

impl ImportanceMatrix {
    /// Reads `llama-imatrix`'s output: the GGUF format (`<name>.in_sum2` and `<name>.counts`
    /// per weight, normalised by the counts per expert) or the legacy `.dat` format.
    pub fn open(path: &Path) -> Result<Self> {
        // A few hundred MiB for the largest mixtures of experts.
        const LIMIT: u64 = 4 << 30;
        let bytes = crate::input::read_bytes(path, "importance matrix", LIMIT)?;
        if bytes.starts_with(crate::gguf::GGUF_MAGIC) {
            Self::from_gguf(&GgufFile::from_bytes(path, bytes)?)
        } else {
            Self::from_legacy(path, &bytes)
        }
    }

    fn from_gguf(file: &GgufFile) -> Result<Self> {
        let invalid = |m: String| FormatError::invalid(&file.path, m);
        let datasets = file.get_str_array("imatrix.datasets");
        let chunk_count = file.get_u32("imatrix.chunk_count");
        if datasets.is_none()
            || chunk_count.is_none()
            || file.get_u32("imatrix.chunk_size").is_none()
        {
            return Err(invalid(
                "not an importance matrix: no imatrix.datasets / chunk_count / chunk_size".into(),
            ));
        }
        let mut pairs: BTreeMap<&str, (Option<usize>, Option<usize>)> = BTreeMap::new();
        for (i, t) in file.tensors.iter().enumerate() {
            if let Some(name) = t.name.strip_suffix(".in_sum2") {
                pairs.entry(name).or_default().0 = Some(i);
            } else if let Some(name) = t.name.strip_suffix(".counts") {
                pairs.entry(name).or_default().1 = Some(i);
            }
        }
        let mut entries = BTreeMap::new();
        for (name, pair) in pairs {
            let (Some(s), Some(c)) = pair else {
                return Err(invalid(format!(
                    "`{name}`: sums without counts or counts without sums"
                )));
            };
            let (sums, counts) = (&file.tensors[s], &file.tensors[c]);
            if sums.dtype != DType::F32 || counts.dtype != DType::F32 {
                return Err(invalid(format!("`{name}`: sums and counts must be F32")));
            }
            let sums = to_f32(DType::F32, file.bytes(sums)).unwrap_or_default();
            let counts = to_f32(DType::F32, file.bytes(counts)).unwrap_or_default();
            if counts.is_empty() || !sums.len().is_multiple_of(counts.len()) {
                return Err(invalid(format!(
                    "`{name}`: {} sums do not split into {} experts",
                    sums.len(),
                    counts.len()
                )));
            }
            let per = sums.len() / counts.len();
            let mut values = vec![1.0f32; sums.len()];
            for (j, &count) in counts.iter().enumerate() {
                // llama.cpp rounds the stored count to an integer first
                let count = count.round() as i64 as f32;
                if count > 0.0 {
                    for i in j * per..(j + 1) * per {
                        values[i] = sums[i] / count;
                    }
                }
            }
            entries.insert(name.to_string(), values);
        }
        if entries.is_empty() {
            return Err(invalid("an importance matrix with no entries".into()));
        }
        Ok(ImportanceMatrix {
            entries,
            datasets: datasets.unwrap_or_default().to_vec(),
            chunk_count: chunk_count.unwrap_or(0),
        })
    }

    /// The legacy format: i32 count, then per entry (i32 name length, name, i32 calls,
    /// i32 values, f32 values — each the mean times the calls), then optionally i32 chunks and
    /// a dataset name.
    fn from_legacy(path: &Path, bytes: &[u8]) -> Result<Self> {
        let invalid = |m: &str| {
            FormatError::invalid(
                path,
                format!("not an importance matrix (neither GGUF nor legacy imatrix): {m}"),
            )
        };
        let mut at = 0usize;
        let i32_at = |at: &mut usize| -> Option<i32> {
            let v = bytes.get(*at..*at + 4)?;
            *at += 4;
            Some(i32::from_le_bytes(v.try_into().ok()?))
        };
        let n = i32_at(&mut at)
            .filter(|&n| n >= 1)
            .ok_or_else(|| invalid("no entries"))?;
        let mut entries = BTreeMap::new();
        for _ in 0..n {
            let len = i32_at(&mut at)
                .and_then(|l| usize::try_from(l).ok())
                .filter(|&l| l <= bytes.len() - at)
                .ok_or_else(|| invalid("an entry's name runs past the end"))?;
            let name = String::from_utf8_lossy(&bytes[at..at + len]).into_owned();
            at += len;
            let calls = i32_at(&mut at).ok_or_else(|| invalid("truncated entry"))?;
            let values = i32_at(&mut at)
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v >= 1 && v <= (bytes.len() - at) / 4)
                .ok_or_else(|| invalid("an entry's values run past the end"))?;
            let raw = to_f32(DType::F32, &bytes[at..at + 4 * values]).unwrap_or_default();
            at += 4 * values;
            let values = if calls > 0 {
                raw.iter().map(|&v| v / calls as f32).collect()
            } else {
                raw
            };
            entries.insert(name, values);
        }
        let mut chunk_count = 0;
        let mut datasets = Vec::new();
        if let Some(chunks) = i32_at(&mut at) {
            chunk_count = chunks.max(0) as u32;
            if let Some(len) = i32_at(&mut at).and_then(|l| usize::try_from(l).ok()) {
                if len > 0 && len <= bytes.len() - at {
                    let name = &bytes[at..at + len];
                    let name = name.split(|&b| b == 0).next().unwrap_or_default();
                    datasets.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        Ok(ImportanceMatrix {
            entries,
            datasets,
            chunk_count,
        })
    }
}

/// A tensor of a model to quantize, as it will be named and shaped in the GGUF.
#[derive(Clone, Debug)]
pub struct SourceTensor {
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// A model to quantize: an F32/F16/BF16 GGUF as it is, or a Hub checkpoint seen through
/// llama.cpp's conversion ([`crate::gguf_convert::HubAsGguf`]).
pub trait QuantSource: Sync {
    /// The file or folder, for messages.
    fn path(&self) -> &Path;
    /// GGUF metadata in file order.
    fn metadata(&self) -> &[(String, GgufValue)];
    fn tensors(&self) -> &[SourceTensor];
    /// The tensor's bytes as a GGUF stores them in its `dtype`, where they can be copied as
    /// they are.
    fn stored(&self, index: usize) -> Option<&[u8]>;
    /// Rows `first..first + n` of the tensor (rows of its last dimension) as f32.
    fn rows(&self, index: usize, first: usize, n: usize) -> Result<Vec<f32>>;
}

/// A GGUF file as its own source.
pub struct GgufSource<'a> {
    file: &'a GgufFile,
    tensors: Vec<SourceTensor>,
}

impl<'a> GgufSource<'a> {
    pub fn new(file: &'a GgufFile) -> Self {
        let tensors = file
            .tensors
            .iter()
            .map(|t| SourceTensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype,
            })
            .collect();
        GgufSource { file, tensors }
    }
}

impl QuantSource for GgufSource<'_> {
    fn path(&self) -> &Path {
        &self.file.path
    }

    fn metadata(&self) -> &[(String, GgufValue)] {
        self.file.metadata()
    }

    fn tensors(&self) -> &[SourceTensor] {
        &self.tensors
    }

    fn stored(&self, index: usize) -> Option<&[u8]> {
        Some(self.file.bytes(&self.file.tensors[index]))
    }

    fn rows(&self, index: usize, first: usize, n: usize) -> Result<Vec<f32>> {
        let t = &self.file.tensors[index];
        let cols = t.shape.last().copied().unwrap_or(1);
        let (block, bytes) = t.dtype.block();
        let row_bytes = cols / block * bytes;
        let raw = &self.file.bytes(t)[first * row_bytes..(first + n) * row_bytes];
        to_f32(t.dtype, raw).ok_or_else(|| {
            FormatError::invalid(&self.file.path, format!("`{}`: unreadable rows", t.name))
        })
    }
}

/// One tensor of the output and where it comes from.
#[derive(Clone, Debug)]
pub struct TensorChoice {
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    pub from: DType,
    pub to: DType,
    /// Index into the source's tensors.
    source: usize,
}

/// What a quantization will write: metadata and every tensor's type, in file order.
#[derive(Clone, Debug)]
pub struct QuantizePlan {
    pub mixture: Mixture,
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<TensorChoice>,
    /// Tensors whose rows are not whole blocks of the type the rules chose (llama.cpp's
    /// "fallback quantization").
    pub fallbacks: usize,
}

impl QuantizePlan {
    /// Bytes of tensor data the file will hold.
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().filter_map(|t| entry(t).bytes()).sum()
    }
}

fn entry(t: &TensorChoice) -> TensorEntry {
    TensorEntry {
        name: t.name.clone(),
        shape: t.shape.clone(),
        dtype: t.to,
    }
}

/// The model facts llama.cpp's rules read.
struct Hparams {
    layers: usize,
    experts: usize,
    /// llama.cpp classifies a Llama with 80 layers and grouped-query attention as 70B.
    is_70b: bool,
}

impl Hparams {
    fn read(source: &dyn QuantSource) -> Result<Self> {
        let get = |key: &str| {
            source
                .metadata()
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
        };
        let arch = get("general.architecture")
            .and_then(GgufValue::as_str)
            .ok_or_else(|| FormatError::invalid(source.path(), "no general.architecture"))?;
        let key = |k: &str| format!("{arch}.{k}");
        let first = |k: &str| -> Option<u64> {
            match get(&key(k))? {
                GgufValue::Array(a) => match a {
                    GgufArray::U32(v) => v.first().map(|&x| x as u64),
                    GgufArray::I32(v) => v.first().map(|&x| x.max(0) as u64),
                    _ => None,
                },
                v => v.as_u64(),
            }
        };
        let layers = first("block_count")
            .ok_or_else(|| FormatError::invalid(source.path(), format!("no {arch}.block_count")))?
            as usize;
        let heads = first("attention.head_count").unwrap_or(0);
        let kv_heads = first("attention.head_count_kv").unwrap_or(heads);
        Ok(Hparams {
            layers,
            experts: first("expert_count").unwrap_or(0) as usize,
            is_70b: arch == "llama" && layers == 80 && heads != kv_heads,
        })
    }
}

/// llama.cpp's broad tensor categories (by name).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Category {
    Output,
    TokenEmbedding,
    AttentionQkv,
    AttentionKvB,
    AttentionV,
    AttentionK,
    AttentionQ,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

impl Category {
    fn of(name: &str) -> Self {
        match name {
            "output.weight" => return Category::Output,
            "token_embd.weight" | "per_layer_token_embd.weight" => return Category::TokenEmbedding,
            _ => {}
        }
        let table = [
            ("attn_qkv.weight", Category::AttentionQkv),
            ("attn_kv_b.weight", Category::AttentionKvB),
            ("attn_v.weight", Category::AttentionV),
            ("attn_k.weight", Category::AttentionK),
            ("attn_q.weight", Category::AttentionQ),
            ("attn_output.weight", Category::AttentionOutput),
            ("ffn_up", Category::FfnUp),
            ("ffn_gate", Category::FfnGate),
            ("ffn_down", Category::FfnDown),
        ];
        table
            .into_iter()
            .find(|(part, _)| name.contains(part))
            .map_or(Category::Other, |(_, c)| c)
    }

    /// The value-like projections llama.cpp gives more bits.
    fn is_value_like(self) -> bool {
        matches!(
            self,
            Category::AttentionV | Category::AttentionQkv | Category::AttentionKvB
        )
    }
}

/// ggml's `ggml_n_dims`: dimensions up to the last of size > 1 (innermost-first order).
fn ggml_dims(shape: &[usize]) -> usize {
    let ne: Vec<usize> = shape.iter().rev().copied().collect();
    (1..ne.len())
        .rev()
        .find(|&i| ne[i] > 1)
        .map_or(1, |i| i + 1)
}

/// Whether llama.cpp quantizes a tensor at all (its `tensor_allows_quantization`, for the
/// names the architectures we read use and the others it lists).
fn allows_quantization(name: &str, shape: &[usize]) -> bool {
    const KEEP: [&str; 16] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_",
        "attn_rel_b.weight",
        ".position_embd",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
    ];
    ggml_dims(shape) >= 2
        && name.ends_with("weight")
        && !KEEP.iter().any(|k| name.contains(k))
        && name != "position_embd.weight"
        && name != "token_types.weight"
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third
/// in between.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// Counters of the rules that depend on how many tensors of a kind came before.
#[derive(Default)]
struct Counters {
    attention_v: usize,
    ffn_down: usize,
}

struct Rules<'a> {
    mixture: Mixture,
    hp: &'a Hparams,
    tied_embeddings: bool,
    n_attention_v: usize,
    has_imatrix: bool,
}

impl Rules<'_> {
    /// `llama_tensor_get_type_impl` for our mixtures (before the fallback for rows that are not
    /// whole blocks).
    fn choose(
        &self,
        name: &str,
        cols: usize,
        category: Category,
        n: &mut Counters,
    ) -> Result<DType> {
        let m = self.mixture;
        let mut t = m.default_type();
        let hp = self.hp;
        if category == Category::Output
            || (self.tied_embeddings && category == Category::TokenEmbedding)
        {
            if !cols.is_multiple_of(t.block().0) {
                t = DType::Q8_0;
            } else if t != DType::Q8_0 {
                t = DType::Q6K;
            }
        } else if category == Category::TokenEmbedding {
            // the mixture's default
        } else if category.is_value_like() {
            if matches!(m, Mixture::Q4KM | Mixture::Q5KM)
                && use_more_bits(n.attention_v, self.n_attention_v)
            {
                t = DType::Q6K;
            }
            if hp.is_70b && t == DType::Q4K {
                t = DType::Q5K;
            }
            if hp.experts == 8 {
                t = DType::Q8_0;
            }
            n.attention_v += 1;
        } else if category == Category::AttentionK {
            if hp.experts == 8 {
                t = DType::Q8_0;
            }
        } else if category == Category::FfnDown {
            let (layer, layers) = if hp.experts > 1 {
                let layer = layer_of(name).filter(|&l| l < hp.layers).ok_or_else(|| {
                    FormatError::Write(format!(
                        "`{name}`: no layer in [0, {}) in its name",
                        hp.layers
                    ))
                })?;
                (layer, hp.layers)
            } else {
                (n.ffn_down, hp.layers)
            };
            match m {
                Mixture::Q4KM | Mixture::Q5KM if use_more_bits(layer, layers) => t = DType::Q6K,
                Mixture::Q4_0 if self.has_imatrix && layer < layers / 8 => t = DType::Q4_1,
                _ => {}
            }
            n.ffn_down += 1;
        } else if category == Category::AttentionOutput && hp.experts == 8 && m == Mixture::Q4KM {
            t = DType::Q5K;
        }
        // (llama.cpp's own rule for fused QKV projections follows its value-like branch, which
        // already takes them: it is never reached.)
        Ok(t)
    }
}

/// llama.cpp's `tensor_type_fallback`: a type whose block does not divide the row becomes a
/// 32-element type, else F16.
fn fallback(t: DType, cols: usize) -> DType {
    if cols.is_multiple_of(t.block().0) {
        return t;
    }
    let smaller = match t {
        DType::Q4K => DType::Q5_0,
        DType::Q5K => DType::Q5_1,
        DType::Q6K => DType::Q8_0,
        other => other,
    };
    if cols.is_multiple_of(smaller.block().0) {
        smaller
    } else {
        DType::F16
    }
}

/// The layer number of a `blk.N.` name.
fn layer_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("blk.")?;
    let digits = rest.split('.').next()?;
    digits.parse().ok()
}

/// llama.cpp's tensor order: non-layer tensors first, then by layer, by name within each.
fn llama_cpp_order(a: &str, b: &str) -> std::cmp::Ordering {
    let layer = |n: &str| layer_of(n).map_or(-1, |l| l as i64);
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

/// Plans quantizing `source` (an F32/F16/BF16 GGUF, or a converted Hub checkpoint) to
/// `mixture`.
pub fn plan(
    source: &dyn QuantSource,
    mixture: Mixture,
    imatrix: Option<(&ImportanceMatrix, &str)>,
) -> Result<QuantizePlan> {
    let hp = Hparams::read(source)?;
    let all = source.tensors();
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by(|&a, &b| llama_cpp_order(&all[a].name, &all[b].name));
    let categories: Vec<Category> = order.iter().map(|&i| Category::of(&all[i].name)).collect();
    let rules = Rules {
        mixture,
        hp: &hp,
        tied_embeddings: !categories.contains(&Category::Output),
        n_attention_v: categories.iter().filter(|c| c.is_value_like()).count(),
        has_imatrix: imatrix.is_some(),
    };
    let mut counters = Counters::default();
    let mut tensors = Vec::with_capacity(order.len());
    let mut fallbacks = 0;
    for (&i, &category) in order.iter().zip(&categories) {
        let t = &all[i];
        let cols = t.shape.last().copied().unwrap_or(1);
        let to = if allows_quantization(&t.name, &t.shape) {
            let chosen = rules.choose(&t.name, cols, category, &mut counters)?;
            let to = fallback(chosen, cols);
            fallbacks += usize::from(to != chosen);
            to
        } else {
            t.dtype
        };
        if to != t.dtype && !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(FormatError::unsupported(
                source.path(),
                format!(
                    "`{}` is {}: quantize from an F32, F16 or BF16 file",
                    t.name, t.dtype
                ),
            ));
        }
        if to != t.dtype && t.shape.len() > 3 {
            return Err(FormatError::unsupported(
                source.path(),
                format!("`{}`: a 4-D weight", t.name),
            ));
        }
        if let Some((m, label)) = imatrix {
            check_importance(m, label, &t.name, &t.shape, to)?;
        }
        tensors.push(TensorChoice {
            name: t.name.clone(),
            // ggml writes a tensor's dims up to its last of size > 1 ([64, 1] becomes [64])
            shape: t.shape[t.shape.len().saturating_sub(ggml_dims(&t.shape))..].to_vec(),
            from: t.dtype,
            to,
            source: i,
        });
    }
    let mut metadata: Vec<(String, GgufValue)> = source.metadata().to_vec();
    let mut set = |key: &str, value: GgufValue| {
        metadata.retain(|(k, _)| k != key);
        metadata.push((key.to_string(), value));
    };
    set("general.quantization_version", GgufValue::U32(2));
    set("general.file_type", GgufValue::U32(mixture.file_type()));
    metadata.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "split.no" | "split.count" | "split.tensors.count"
        )
    });
    if let Some((m, label)) = imatrix {
        let mut set = |key: &str, value: GgufValue| {
            metadata.retain(|(k, _)| k != key);
            metadata.push((key.to_string(), value));
        };
        set(
            "quantize.imatrix.file",
            GgufValue::String(truncate(label, 127)),
        );
        if let Some(first) = m.datasets.first() {
            set(
                "quantize.imatrix.dataset",
                GgufValue::String(truncate(first, 127)),
            );
        }
        set(
            "quantize.imatrix.entries_count",
            GgufValue::U32(m.entries.len() as u32),
        );
        if m.chunk_count > 0 {
            set(
                "quantize.imatrix.chunks_count",
                GgufValue::U32(m.chunk_count),
            );
        }
    }
    Ok(QuantizePlan {
        mixture,
        metadata,
        tensors,
        fallbacks,
    })
}

/// llama.cpp's check of an importance matrix entry against the tensor it weighs: one value
/// per input column and expert (a token embedding's entry, always of another size, is
/// ignored).
fn check_importance(
    m: &ImportanceMatrix,
    label: &str,
    name: &str,
    shape: &[usize],
    to: DType,
) -> Result<()> {
    let Some(values) = m.entries.get(name) else {
        return Ok(());
    };
    if block_format(to).is_none()
        || name == "token_embd.weight"
        || name == "per_layer_token_embd.weight"
    {
        return Ok(());
    }
    let needed = importance_len(shape);
    if values.len() != needed {
        return Err(FormatError::invalid(
            Path::new(label),
            format!("`{name}`: {} importance values, the tensor needs {needed} (one per input column and expert)", values.len()),
        ));
    }
    Ok(())
}

/// Values an importance matrix holds for a weight: columns × experts.
fn importance_len(shape: &[usize]) -> usize {
    let cols = shape.last().copied().unwrap_or(1);
    cols * if shape.len() == 3 { shape[0] } else { 1 }
}

/// The first `max` bytes of `s` (llama.cpp's fixed 128-byte override buffers).
fn truncate(s: &str, max: usize) -> String {
    let bytes = &s.as_bytes()[..s.len().min(max)];
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes the planned file to `out` (atomically). `progress(done, total)` is called after
/// each tensor.
pub fn quantize(
    source: &dyn QuantSource,
    plan: &QuantizePlan,
    imatrix: Option<&ImportanceMatrix>,
    out: &Path,
    progress: impl Fn(usize, usize),
) -> Result<()> {
    let entries: Vec<TensorEntry> = plan.tensors.iter().map(entry).collect();
    write_atomically(out, |file| {
        write_gguf(&plan.metadata, &entries, file, |i, w| {
            let choice = &plan.tensors[i];
            write_tensor(source, choice, imatrix, w)?;
            progress(i + 1, plan.tensors.len());
            Ok(())
        })
    })
}

/// Rows converted at once: bounds the f32 copy of a large tensor (64 MiB).
const SLAB_ELEMENTS: usize = 16 << 20;

fn write_tensor(
    source: &dyn QuantSource,
    t: &TensorChoice,
    imatrix: Option<&ImportanceMatrix>,
    w: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| FormatError::Write(format!("`{}`: {e}", t.name));
    if t.from == t.to {
        if let Some(bytes) = source.stored(t.source) {
            return w.write_all(bytes).map_err(io);
        }
    }
    let cols = t.shape.last().copied().unwrap_or(1);
    let rows = t.shape.iter().rev().skip(1).product::<usize>();
    if cols == 0 || rows == 0 {
        return Ok(()); // an empty tensor: no bytes
    }
    let rows_per_expert = if t.shape.len() >= 2 {
        t.shape[t.shape.len() - 2].max(1)
    } else {
        1
    };
    // (sizes were checked by `plan`; a token embedding's entry of another size is ignored)
    let importance = imatrix
        .and_then(|m| m.entries.get(&t.name))
        .filter(|v| v.len() == importance_len(&t.shape))
        .map(Vec::as_slice);
    let slab_rows = (SLAB_ELEMENTS / cols.max(1)).max(1);
    let out_row = t.to.bytes_for(cols as u64).unwrap_or(0) as usize;
    let mut done = 0;
    while done < rows {
        let n = slab_rows.min(rows - done);
        let values = source.rows(t.source, done, n)?;
        let mut encoded = vec![0u8; n * out_row];
        match block_format(t.to) {
            Some(format) => encoded
                .par_chunks_exact_mut(out_row)
                .zip(values.par_chunks_exact(cols))
                .enumerate()
                .for_each(|(r, (dst, row))| {
                    let expert = (done + r) / rows_per_expert;
                    let weights = importance.map(|v| &v[expert * cols..(expert + 1) * cols]);
                    encode::quantize_row(format, row, weights, dst);
                }),
            None if t.to == DType::F16 => {
                for (dst, &v) in encoded.chunks_exact_mut(2).zip(&values) {
                    dst.copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                }
            }
            None if t.to == DType::F32 => {
                for (dst, &v) in encoded.chunks_exact_mut(4).zip(&values) {
                    dst.copy_from_slice(&v.to_le_bytes());
                }
            }
            None => {
                return Err(FormatError::Write(format!(
                    "`{}`: cannot write {}",
                    t.name, t.to
                )))
            }
        }
        w.write_all(&encoded).map_err(io)?;
        done += n;
    }
    Ok(())
}
