//! GGUF matrices kept as stored — a block format (Q4_0 … Q6_K), F16 or BF16 — and multiplied
//! where they lie.
//!
//! A quantized GGUF is not widened to f32 at load: while a model is built from it
//! ([`while_building`]), each linear layer and embedding whose stored tensor is such a matrix
//! (and needs at most a row permutation or a transpose to become the Hub tensor, or is one
//! expert of a stack) gets a [`QuantWeight`] over the file's memory map. Products follow the
//! model's [`QuantNumerics`]: ggml-cpu's, whose matmuls convert the activations to the weight
//! type's companion first (Q8_0 / Q8_1 / Q8_K blocks multiplied in integers by
//! `glassbox_kernels::quant::quantized_matmul`; F16 / BF16 activations for F16 / BF16
//! weights), or the dequantized weight's (f32). An embedding lookup widens only its rows.
//!
//! Gradients flow through a quantized weight to the activations, as through the dequantized
//! weight (attribution, patching); they do not reach it. Whoever needs it as a tensor gets an
//! f32 copy, made once and kept ([`QuantWeight::tensor`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use glassbox_formats::gguf_names::Fixup;
use glassbox_formats::quant::block_format;
use glassbox_formats::Checkpoint;
use glassbox_kernels::quant::{quantized_matmul, BlockFormat, QuantMatrix, QuantNumerics};
use glassbox_kernels::{gemm, MatRef};

/// The quantized tensors of a GGUF that may serve Hub weights in place.
pub struct QuantSource {
    checkpoint: Arc<Checkpoint>,
    /// Hub name → (GGUF tensor name, row map: Hub row j is stored row `map[j]`; transposed:
    /// the Hub tensor is the stored one's transpose).
    tensors: HashMap<String, Stored>,
    numerics: QuantNumerics,
}

/// How a matrix's values are stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Storage {
    Blocks(BlockFormat),
    F16,
    BF16,
}

impl Storage {
    fn of(dtype: glassbox_formats::DType) -> Option<Storage> {
        match dtype {
            glassbox_formats::DType::F16 => Some(Storage::F16),
            glassbox_formats::DType::BF16 => Some(Storage::BF16),
            d => block_format(d).map(Storage::Blocks),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Storage::Blocks(f) => f.name(),
            Storage::F16 => "F16",
            Storage::BF16 => "BF16",
        }
    }
}

#[derive(Clone)]
struct Stored {
    gguf_name: String,
    /// Which bytes of the tensor: all, or one expert's slice of a stacked tensor.
    bytes: std::ops::Range<usize>,
    format: Storage,
    rows: usize,
    cols: usize,
    row_map: Option<Arc<Vec<u32>>>,
    transposed: bool,
}

thread_local! {
    static SOURCE: RefCell<Option<Arc<QuantSource>>> = const { RefCell::new(None) };
}

impl QuantSource {
    /// `hub_names`: the Hub names served by whole stored tensors or by one expert of a
    /// stacked one. The quantized matrices among them whose fix-up is none, a Q/K row
    /// permutation (for `heads` / `kv_heads` heads) or a transpose are kept.
    pub fn new(
        checkpoint: Arc<Checkpoint>,
        hub_names: impl IntoIterator<Item = HubSource>,
        heads: usize,
        kv_heads: usize,
        numerics: QuantNumerics,
    ) -> Self {
        let mut tensors = HashMap::new();
        for HubSource {
            hub,
            gguf_name,
            fixup,
            expert,
        } in hub_names
        {
            let Some(info) = checkpoint.info(&gguf_name) else {
                continue;
            };
            let Some(format) = Storage::of(info.dtype) else {
                continue;
            };
            let (rows, cols, bytes) = match (expert, info.shape.as_slice()) {
                (None, &[rows, cols]) => (rows, cols, 0..info.bytes as usize),
                (Some(e), &[experts, rows, cols]) if e < experts => {
                    let each = info.bytes as usize / experts;
                    (rows, cols, e * each..(e + 1) * each)
                }
                _ => continue,
            };
            let row_map = match fixup {
                Fixup::None | Fixup::Transpose => None,
                Fixup::UnpermuteQ => match unpermute_rows(rows, heads) {
                    Some(map) => Some(Arc::new(map)),
                    None => continue,
                },
                Fixup::UnpermuteK => match unpermute_rows(rows, kv_heads) {
                    Some(map) => Some(Arc::new(map)),
                    None => continue,
                },
                _ => continue,
            };
            tensors.insert(
                hub,
                Stored {
                    gguf_name,
                    bytes,
                    format,
                    rows,
                    cols,
                    row_map,
                    transposed: fixup == Fixup::Transpose,
                },
            );
        }
        QuantSource {
            checkpoint,
            tensors,
            numerics,
        }
    }

    /// How many Hub tensors it can serve quantized.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// A Hub tensor and the stored tensor it comes from.
pub struct HubSource {
    pub hub: String,
    pub gguf_name: String,
    pub fixup: Fixup,
    /// Expert `e` of a stacked `[experts, rows, cols]` tensor.
    pub expert: Option<usize>,
}

/// Hub row `j` of a Q or K projection is stored row `map[j]`: llama.cpp's converter stores a
/// head's rows as `[half, 2]` where the Hub has `[2, half]` (see `gguf_names::unpermute_qk`).
/// `None` when the rows do not split into `heads` heads of even size (a head count read from
/// the file may be anything: the backend then reports it).
fn unpermute_rows(rows: usize, heads: usize) -> Option<Vec<u32>> {
    let pair = heads.checked_mul(2)?;
    if heads == 0 || !rows.is_multiple_of(pair) || rows > u32::MAX as usize {
        return None;
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    Some(
        (0..rows)
            .map(|r| {
                let (h, rem) = (r / head_dim, r % head_dim);
                let (i, j) = (rem / half, rem % half);
                (h * head_dim + 2 * j + i) as u32
            })
            .collect(),
    )
}

/// The source offered to layers loaded on this thread now, for a loader that runs later
/// (lazily read experts) to offer it again ([`while_offering`]).
pub fn offered() -> Option<Arc<QuantSource>> {
    SOURCE.with(|s| s.borrow().clone())
}

/// Runs `load` with `source` (if any) offered, as it was when the loader was made.
pub fn while_offering<R>(source: Option<Arc<QuantSource>>, load: impl FnOnce() -> R) -> R {
    match source {
        Some(source) => while_building(source, load),
        None => load(),
    }
}

/// Runs `build` with `source`'s quantized tensors offered to the layers it loads.
pub fn while_building<R>(source: Arc<QuantSource>, build: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<QuantSource>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SOURCE.with(|s| s.borrow_mut().replace(source));
    let _restore = Restore(previous);
    build()
}

/// The quantized weight `name` under `vb`'s prefix when the GGUF being built from stores it
/// in a block format and the Hub shape `shape` is the stored `[rows, cols]` (or, when
/// `may_transpose`, its transpose: the caller then multiplies by it as `[out, in]`).
pub fn find(
    vb: &VarBuilder,
    name: &str,
    shape: &[usize],
    may_transpose: bool,
) -> Option<QuantWeight> {
    if !vb.device().is_cpu() {
        return None;
    }
    let source = SOURCE.with(|s| s.borrow().clone())?;
    let path = crate::mapped::full_name(vb, name);
    let stored = source.tensors.get(&path)?.clone();
    let hub_shape = if stored.transposed {
        if !may_transpose {
            return None;
        }
        [stored.cols, stored.rows]
    } else {
        [stored.rows, stored.cols]
    };
    if shape != hub_shape {
        return None;
    }
    // The bytes were checked against the shape when the file was opened; checked again here
    // as the kernels read them as rows.
    let bytes = source.checkpoint.raw_bytes(&stored.gguf_name).ok()?;
    let bytes = bytes.get(stored.bytes.clone())?;
    match stored.format {
        Storage::Blocks(format) => {
            QuantMatrix::new(format, bytes, stored.rows, stored.cols).ok()?;
        }
        // Read as u16s in place: whole, aligned.
        Storage::F16 | Storage::BF16 => {
            if bytes.len() != stored.rows * stored.cols * 2
                || !(bytes.as_ptr() as usize).is_multiple_of(2)
            {
                return None;
            }
        }
    }
    Some(QuantWeight {
        shape: [stored.rows, stored.cols],
        numerics: source.numerics,
        checkpoint: source.checkpoint.clone(),
        stored,
        copy: OnceLock::new(),
        widened: OnceLock::new(),
    })
}

/// A matrix `[out, in]` as a GGUF stores it (a block format, F16 or BF16), read in place from
/// the file's memory map.
pub struct QuantWeight {
    checkpoint: Arc<Checkpoint>,
    stored: Stored,
    shape: [usize; 2],
    numerics: QuantNumerics,
    copy: OnceLock<Tensor>,
    widened: OnceLock<Vec<f32>>,
}

impl std::fmt::Debug for QuantWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QuantWeight({} {} [{}, {}])",
            self.stored.gguf_name,
            self.stored.format.name(),
            self.stored.rows,
            self.stored.cols
        )
    }
}

impl QuantWeight {
    /// `[out, in]`: the stored rows (permuted back where the converter permuted them).
    pub fn dims(&self) -> &[usize] {
        &self.shape
    }

    pub fn storage(&self) -> Storage {
        self.stored.format
    }

    pub fn numerics(&self) -> QuantNumerics {
        self.numerics
    }

    /// Bytes it occupies in the file.
    pub fn bytes(&self) -> usize {
        self.stored.bytes.len()
    }

    fn stored_bytes(&self) -> Result<&[u8]> {
        let bytes = self
            .checkpoint
            .raw_bytes(&self.stored.gguf_name)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        bytes.get(self.stored.bytes.clone()).ok_or_else(|| {
            candle_core::Error::Msg(format!("`{}`: bytes out of range", self.stored.gguf_name))
        })
    }

    /// The values as 16-bit words in place (F16 / BF16 storage).
    fn words(&self) -> Result<&[u16]> {
        let bytes = self.stored_bytes()?;
        // Safety: `find` checked the length (rows·cols words) and the alignment; any bit
        // pattern is a u16; the map lives as long as `self.checkpoint`.
        Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const u16, bytes.len() / 2) })
    }

    /// Stored rows `rows` widened to f32, `rows.len() × cols`.
    fn widen_rows(&self, rows: impl Iterator<Item = usize>, out: &mut [f32]) -> Result<()> {
        let cols = self.stored.cols;
        match self.stored.format {
            Storage::Blocks(format) => {
                let w = QuantMatrix::new(format, self.stored_bytes()?, self.stored.rows, cols)
                    .map_err(candle_core::Error::Msg)?;
                w.dequantize_rows(rows, out);
            }
            Storage::F16 | Storage::BF16 => {
                let words = self.words()?;
                let f16 = self.stored.format == Storage::F16;
                for (r, out) in rows.zip(out.chunks_exact_mut(cols)) {
                    for (o, &w) in out.iter_mut().zip(&words[r * cols..(r + 1) * cols]) {
                        *o = if f16 {
                            half::f16::from_bits(w).to_f32()
                        } else {
                            half::bf16::from_bits(w).to_f32()
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// The Hub row index → stored row.
    fn stored_row(&self, j: usize) -> usize {
        self.stored.row_map.as_ref().map_or(j, |m| m[j] as usize)
    }

    /// The values widened to f32 in Hub row order, made on first use and kept (F16 / BF16
    /// storage, whose products read them).
    fn widened(&self) -> Result<&[f32]> {
        if let Some(w) = self.widened.get() {
            return Ok(w);
        }
        let [rows, cols] = self.shape;
        let mut values = vec![0f32; rows * cols];
        self.widen_rows((0..rows).map(|j| self.stored_row(j)), &mut values)?;
        Ok(self.widened.get_or_init(|| values))
    }

    /// An f32 `[out, in]` tensor with the dequantized values, made on first use and kept.
    pub fn tensor(&self) -> Result<Tensor> {
        if let Some(t) = self.copy.get() {
            return Ok(t.clone());
        }
        let [rows, cols] = self.shape;
        let mut values = vec![0f32; rows * cols];
        self.widen_rows((0..rows).map(|j| self.stored_row(j)), &mut values)?;
        let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu)?;
        Ok(self.copy.get_or_init(|| t).clone())
    }

    /// Rows `ids` (any shape) widened to f32: a tensor [.., in].
    pub fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        let [rows, cols] = self.shape;
        let flat = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        if let Some(&bad) = flat.iter().find(|&&id| id as usize >= rows) {
            candle_core::bail!(
                "token id {bad} is outside `{}`'s {rows} rows",
                self.stored.gguf_name
            );
        }
        let mut out = vec![0f32; flat.len() * cols];
        self.widen_rows(
            flat.iter().map(|&id| self.stored_row(id as usize)),
            &mut out,
        )?;
        let mut dims = ids.dims().to_vec();
        dims.push(cols);
        Tensor::from_vec(out, dims, &Device::Cpu)
    }

    /// `x·Wᵀ` for `x` `m × in` row-major: `m × out`.
    fn product(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let [n, k] = self.shape;
        let map = self.stored.row_map.as_ref().map(|m| m.as_slice());
        let mut out = vec![0f32; m * n];
        match self.stored.format {
            Storage::Blocks(format) => {
                let w = QuantMatrix::new(format, self.stored_bytes()?, n, k)
                    .map_err(candle_core::Error::Msg)?;
                quantized_matmul(x, m, &w, map, self.numerics, &mut out);
            }
            Storage::F16 | Storage::BF16 => {
                // ggml-cpu converts the activations to the weight's type first.
                let rounded: Vec<f32>;
                let x = match (self.numerics, self.stored.format) {
                    (QuantNumerics::LlamaCpp, Storage::F16) => {
                        rounded = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
                        &rounded
                    }
                    (QuantNumerics::LlamaCpp, _) => {
                        rounded = x
                            .iter()
                            .map(|&v| half::bf16::from_f32(v).to_f32())
                            .collect();
                        &rounded
                    }
                    _ => x,
                };
                // Widened once (kept): the kernels' few-row products, which decoding runs
                // on, read f32 weights; the rows are already in Hub order.
                let w = self.widened()?;
                gemm(
                    MatRef::row_major(x, m, k),
                    transposed(w, n, k),
                    &mut out,
                    false,
                );
            }
        }
        Ok(out)
    }
}

/// `[n, k]` row-major values viewed as the `[k, n]` right operand of a GEMM.
fn transposed<T: glassbox_kernels::Element>(w: &[T], n: usize, k: usize) -> MatRef<'_, T> {
    MatRef {
        data: w,
        rows: k,
        cols: n,
        row_stride: 1,
        col_stride: k,
    }
}

/// `x·Wᵀ` for `x` [rows, in] (f32, CPU) and a quantized `w` [out, in]: [rows, out].
pub fn matmul(x: &Tensor, w: &Arc<QuantWeight>) -> Result<Tensor> {
    x.apply_op1_arc(Arc::new(Box::new(QuantMatMul { w: w.clone() })))
}

struct QuantMatMul {
    w: Arc<QuantWeight>,
}

impl CustomOp1 for QuantMatMul {
    fn name(&self) -> &'static str {
        "glassbox-matmul-quantized"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let [m, k] = l.dims()[..] else {
            candle_core::bail!("glassbox-matmul-quantized: input of shape {:?}", l.dims());
        };
        let [n, cols] = self.w.shape;
        if k != cols {
            candle_core::bail!(
                "glassbox-matmul-quantized: {k} inputs for `{}` of {cols} columns",
                self.w.stored.gguf_name
            );
        }
        let x = s.as_slice::<f32>()?;
        let x = match l.contiguous_offsets() {
            Some((a, b)) => std::borrow::Cow::Borrowed(&x[a..b]),
            None => {
                let mut copy = Vec::with_capacity(m * k);
                for i in 0..m {
                    for p in 0..k {
                        copy.push(x[l.start_offset() + i * l.stride()[0] + p * l.stride()[1]]);
                    }
                }
                std::borrow::Cow::Owned(copy)
            }
        };
        let out = self.w.product(&x, m)?;
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // The gradient of the dequantized product (llama.cpp's rounding of the activations
        // passes gradients straight through): grad·W.
        let w = self.w.tensor()?;
        Ok(Some(crate::kernel_ops::matmul(&grad.contiguous()?, &w)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row map is llama.cpp's inverse permutation, and a head count that cannot split the
    /// rows (zero, odd halves, or one so large that twice it overflows) gives none.
    #[test]
    fn row_maps_undo_the_converters_permutation_or_refuse() {
        // 2 heads of 4 rows: GGUF row h·4 + 2j + i holds Hub row h·4 + 2i + j.
        assert_eq!(unpermute_rows(8, 2).unwrap(), vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(unpermute_rows(8, 0), None);
        assert_eq!(unpermute_rows(6, 2), None);
        assert_eq!(unpermute_rows(8, usize::MAX), None);
    }
}
