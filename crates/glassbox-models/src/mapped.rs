//! Weights read in place from a checkpoint's memory map.
//!
//! candle's CPU tensors own their memory, so handing a weight to candle means copying it out of
//! the map — for GPT-2 small 475 MiB of fresh pages that the kernel must zero first, most of a
//! `glassbox run`'s start-up. The big matrices (linear layers, embeddings) need not be candle
//! tensors to be used: the kernels multiply by a mapped matrix directly
//! ([`crate::kernel_ops::matmul_mapped`]) and an embedding lookup copies only the rows it
//! needs. So while a model is built from a checkpoint ([`while_building`]), [`find`] offers each
//! layer its weight as a [`MappedWeight`] when the map can serve it as is: on the CPU, aligned,
//! little-endian, stored in the dtype asked for (f32, f16 or bf16) — or stored in f16 or bf16
//! when f32 is asked for. Such a weight stays half-precision in memory and is widened as the
//! kernels read it (exactly, so the products have the bits of a widened copy's): most
//! checkpoints are published in bf16, and converting them at load doubled their memory and
//! the bytes each decoding step streams. Anything else — a narrowing, a device, a fresh
//! trainable weight — is an owned tensor as before.
//!
//! A mapped weight is a constant: gradients flow through it to the activations (attribution,
//! patching) but not into it. Whoever needs it as a tensor (a weight-reading analysis) gets a
//! copy, made once and kept ([`MappedWeight::tensor`]).
//!
//! One exception to reading in place: an f32 weight stored [in, out] (GPT-2's `Conv1D`) that
//! is multiplied again gets a copy stored [out, in], see [`MappedWeight::out_in_copy`].

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use glassbox_formats::stats::PageReleaser;
use glassbox_formats::Checkpoint;

use crate::memory::HugePageBuffer;

thread_local! {
    /// The checkpoint a model is being built from on this thread, if its weights may be mapped.
    static SOURCE: RefCell<Option<Arc<Checkpoint>>> = const { RefCell::new(None) };
    /// The byte ranges (address, length) of the weights mapped during that build.
    static MAPPED: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
    /// Set while products on this thread make no [`MappedWeight::out_in_copy`].
    static STORED_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Reads of a weight by generation after which it is copied out of the map
/// ([`MappedWeight::owned_copy`]): a short generation does not pay for the copy.
const GENERATION_READS_BEFORE_OWNING: usize = 16;

/// Bytes copied out of the map between releases of its pages (a multiple of any page size).
const RELEASE_PIECE: usize = 8 << 20;

/// Until the guard drops, products on this thread make no new [`MappedWeight::out_in_copy`]
/// (existing ones still serve). For generation: its decoding steps are few-row products, which
/// the copy does not speed up, so a copy made by its prompt's products would only cost time.
pub fn stored_layout_only() -> impl Drop {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            STORED_ONLY.with(|s| s.set(self.0));
        }
    }
    Restore(STORED_ONLY.with(|s| s.replace(true)))
}

/// Runs `build` with `checkpoint` offered to the layers it loads (see [`find`]); then maps the
/// pages of every weight it took in place, all threads at once (see [`populate`]).
pub fn while_building<R>(checkpoint: Arc<Checkpoint>, build: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<Checkpoint>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SOURCE.with(|s| s.borrow_mut().replace(checkpoint.clone()));
    let restore = Restore(previous);
    let built = build();
    drop(restore);
    let ranges = MAPPED.with(|m| std::mem::take(&mut *m.borrow_mut()));
    {
        use rayon::prelude::*;
        // `checkpoint` (alive here) owns the mappings the ranges lie in.
        ranges
            .par_iter()
            .for_each(|&(addr, len)| populate(addr, len));
    }
    drop(checkpoint);
    built
}

/// The tensor `name` under `vb`'s prefix, mapped, when the checkpoint being built from can serve
/// it as `vb` asks (its dtype and device) with the expected `shape`; `None` otherwise (the
/// caller loads it through `vb`, which also reports any error).
pub fn find(vb: &VarBuilder, name: &str, shape: &[usize]) -> Option<MappedWeight> {
    if cfg!(target_endian = "big") || !vb.device().is_cpu() {
        return None;
    }
    let checkpoint = SOURCE.with(|s| s.borrow().clone())?;
    let path = full_name(vb, name);
    let info = checkpoint.info(&path)?;
    let stored = match info.dtype {
        glassbox_formats::DType::F32 => DType::F32,
        glassbox_formats::DType::F16 => DType::F16,
        glassbox_formats::DType::BF16 => DType::BF16,
        _ => return None,
    };
    // The same dtype, or half precision widened to f32 (exact); never a narrowing.
    let dtype = vb.dtype();
    if !(stored == dtype || dtype == DType::F32) || info.shape.as_slice() != shape {
        return None;
    }
    let bytes = checkpoint.raw_bytes(&path).ok()?;
    let elements: usize = shape.iter().product();
    if bytes.len() != elements * stored.size_in_bytes()
        || bytes.as_ptr() as usize % stored.size_in_bytes() != 0
    {
        return None;
    }
    MAPPED.with(|m| m.borrow_mut().push((bytes.as_ptr() as usize, bytes.len())));
    Some(MappedWeight {
        checkpoint,
        name: path,
        stored,
        dtype,
        shape: shape.to_vec(),
        copy: OnceLock::new(),
        products: AtomicUsize::new(0),
        out_in: OnceLock::new(),
        generation_reads: AtomicUsize::new(0),
        owned: OnceLock::new(),
        #[cfg(test)]
        stored_reads: AtomicUsize::new(0),
    })
}

/// `name` under `vb`'s prefix, as the checkpoint names it.
pub(crate) fn full_name(vb: &VarBuilder, name: &str) -> String {
    let prefix = vb.prefix();
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// One tensor of a memory-mapped checkpoint, checked by [`find`] to be readable in place.
pub struct MappedWeight {
    checkpoint: Arc<Checkpoint>,
    name: String,
    /// The dtype of the values in the map.
    stored: DType,
    /// The dtype the model asked for: `stored`, or f32 for a half-precision `stored`.
    dtype: DType,
    shape: Vec<usize>,
    copy: OnceLock<Tensor>,
    /// Products that asked for [`Self::out_in_copy`].
    products: AtomicUsize,
    out_in: OnceLock<Option<HugePageBuffer>>,
    /// Reads of the values while generating, until [`Self::owned_copy`] is made.
    generation_reads: AtomicUsize,
    /// The stored bytes copied out of the map (64-byte aligned at least, for any element).
    owned: OnceLock<Option<HugePageBuffer>>,
    /// Reads of the stored values, for tests that check a copy serves instead.
    #[cfg(test)]
    stored_reads: AtomicUsize,
}

impl std::fmt::Debug for MappedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MappedWeight({} {:?} as {:?} {:?})",
            self.name, self.stored, self.dtype, self.shape
        )
    }
}

/// The element types a mapped weight may hold.
pub trait MappedElement: Copy + candle_core::WithDType + glassbox_kernels::Element {}
impl MappedElement for f32 {}
impl MappedElement for half::f16 {}
impl MappedElement for half::bf16 {}

impl MappedWeight {
    pub fn dims(&self) -> &[usize] {
        &self.shape
    }

    /// The dtype it acts in: its [`Self::tensor`], [`Self::rows`] and the products' inputs.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dtype of its values in memory ([`Self::values`]).
    pub fn stored_dtype(&self) -> DType {
        self.stored
    }

    /// Bytes of its values in memory.
    pub fn bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.stored.size_in_bytes()
    }

    /// The values in place, row-major. Errors when `T` is not the stored dtype.
    pub fn values<T: MappedElement>(&self) -> Result<&[T]> {
        if T::DTYPE != self.stored {
            candle_core::bail!(
                "`{}` is {:?}, read as {:?}",
                self.name,
                self.stored,
                T::DTYPE
            );
        }
        if let Some(copy) = self.owned_copy() {
            let n = self.shape.iter().product::<usize>();
            // Safety: the copy holds the stored bytes (n values of T, checked by `find`) at a
            // 64-byte alignment at least; any bit pattern is a value of T; the borrow cannot
            // outlive self.
            return Ok(unsafe { std::slice::from_raw_parts(copy.as_ptr() as *const T, n) });
        }
        #[cfg(test)]
        self.stored_reads.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .checkpoint
            .raw_bytes(&self.name)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let n = bytes.len() / std::mem::size_of::<T>();
        // Safety: `find` checked that the bytes are n values of T's size, aligned for T, in
        // little-endian order on a little-endian machine; any bit pattern is a value of T. The
        // map lives as long as `self.checkpoint`, which the returned borrow cannot outlive.
        Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, n) })
    }

    /// The stored bytes, copied out of the map once generation has read them
    /// [`GENERATION_READS_BEFORE_OWNING`] times; the map's pages are then released, so resident
    /// memory stays as it was. Decoding streams every weight once per token at memory
    /// bandwidth, and from the file's page cache in 4 KiB pages that ran 15–26 % slower than
    /// from anonymous memory (GPT-2 small on a Zen 1-class EPYC); the copy is in huge pages
    /// where the kernel grants them ([`HugePageBuffer`]). Same layout, same values: same bits.
    /// `None` before that, outside generation, when the copy would take more than half the
    /// memory budget, or when the map is already read through 2 MiB entries ([`in_huge_pages`]).
    /// From such a map decoding streams as fast, and the copy only costs: on a 2-vCPU Zen 5 VM
    /// it stalled a Qwen2.5-0.5B generation for 1–4 s (fresh pages the host faults in), and
    /// steps ran 20–30 % slower from the fresh copy for some seconds after.
    fn owned_copy(&self) -> Option<&[u8]> {
        if let Some(copy) = self.owned.get() {
            return copy.as_deref();
        }
        if !STORED_ONLY.with(Cell::get)
            || self.generation_reads.fetch_add(1, Ordering::Relaxed) + 1
                < GENERATION_READS_BEFORE_OWNING
        {
            return None;
        }
        self.owned
            .get_or_init(|| {
                let bytes = self.checkpoint.raw_bytes(&self.name).ok()?;
                if bytes.len() as u64 > crate::memory::budget() / 2
                    || in_huge_pages(&self.checkpoint, bytes)
                {
                    return None;
                }
                // Piece by piece, each piece's map pages released once copied: the copy and
                // the mapped pages are never both resident (GPT-2's embedding is 154 MB).
                let releaser = PageReleaser::new();
                HugePageBuffer::filled(bytes.len(), |copy| {
                    for (piece, to) in bytes
                        .chunks(RELEASE_PIECE)
                        .zip(copy.chunks_mut(RELEASE_PIECE))
                    {
                        to.copy_from_slice(piece);
                        releaser.release(piece);
                    }
                })
            })
            .as_deref()
    }

    /// An owned tensor with the same values in [`Self::dtype`], copied on first use and kept
    /// (a widened weight's copy takes twice its memory). Made from a copy
    /// this weight already holds ([`Self::owned_copy`], [`Self::out_in_copy`]) when there is
    /// one: their map pages were released, and reading the map again would fault them back.
    pub fn tensor(&self) -> Result<Tensor> {
        if let Some(t) = self.copy.get() {
            return Ok(t.clone());
        }
        let t = if let Some(Some(bytes)) = self.owned.get() {
            Tensor::from_raw_buffer(bytes, self.stored, &self.shape, &Device::Cpu)?
        } else if let (Some(copy), [rows, cols]) = (self.out_in_copy_if_made(), &self.shape[..]) {
            let stored = glassbox_kernels::transposed(copy, *cols, *rows);
            Tensor::from_vec(stored, (*rows, *cols), &Device::Cpu)?
        } else {
            #[cfg(test)]
            self.stored_reads.fetch_add(1, Ordering::Relaxed);
            self.checkpoint
                .tensor(&self.name, &Device::Cpu)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?
        };
        let t = self.as_asked(t)?;
        Ok(self.copy.get_or_init(|| t).clone())
    }

    /// For an f32 weight stored [in, out] (GPT-2's `Conv1D`), multiplied again: the same
    /// matrix stored [out, in]. The kernels read that in place, while the stored form is packed
    /// into panels on every product, a pass through memory of its own (GPT-2 small's 1×128
    /// forward: 8–12 % of its time). Making the copies costs about one more pass (mostly the
    /// kernel zeroing fresh pages), so it waits for the second product that asks — a one-shot
    /// run never pays — and for the copy to take under half the memory budget. The weight's
    /// mapped pages are then released, so resident memory stays as it was: later products
    /// read the copy, few-row ones in the stored layout's order
    /// ([`glassbox_kernels::gemm_few_rows_chained`]), except few-row backward products. `None`
    /// before that, or when not made. The products' bits do not change.
    pub fn out_in_copy(&self) -> Option<&[f32]> {
        let [rows, cols] = self.shape[..] else {
            return None;
        };
        if self.stored != DType::F32 {
            return None;
        }
        if let Some(copy) = self.out_in.get() {
            return copy.as_ref().map(HugePageBuffer::as_f32);
        }
        if STORED_ONLY.with(Cell::get) || self.products.fetch_add(1, Ordering::Relaxed) == 0 {
            return None;
        }
        self.out_in
            .get_or_init(|| {
                let bytes = (rows * cols * 4) as u64;
                if bytes > crate::memory::budget() / 2 {
                    return None;
                }
                let stored = self.values::<f32>().ok()?;
                let copy = HugePageBuffer::filled_f32(stored.len(), |copy| {
                    glassbox_kernels::transpose_into(stored, rows, cols, copy)
                })?;
                if let Ok(stored) = self.checkpoint.raw_bytes(&self.name) {
                    PageReleaser::new().release(stored);
                }
                Some(copy)
            })
            .as_ref()
            .map(HugePageBuffer::as_f32)
    }

    /// The copy [`Self::out_in_copy`] made, if it made one; never makes it.
    pub fn out_in_copy_if_made(&self) -> Option<&[f32]> {
        self.out_in
            .get()
            .and_then(|copy| copy.as_ref().map(HugePageBuffer::as_f32))
    }

    /// Rows `ids` (any shape) of this [rows, d] matrix: a tensor [.., d] in [`Self::dtype`].
    pub fn rows(&self, ids: &Tensor) -> Result<Tensor> {
        let rows = match self.stored {
            DType::F32 => self.rows_of::<f32>(ids),
            DType::F16 => self.rows_of::<half::f16>(ids),
            _ => self.rows_of::<half::bf16>(ids),
        }?;
        self.as_asked(rows)
    }

    /// `t` (in the stored dtype) in [`Self::dtype`]: widened by the kernels, vectorised (a
    /// whole weight, for [`Self::tensor`]), where f32 was asked of a half-precision weight.
    fn as_asked(&self, t: Tensor) -> Result<Tensor> {
        match self.dtype {
            DType::F32 => crate::kernel_ops::to_f32(&t),
            _ => Ok(t),
        }
    }

    fn rows_of<T: MappedElement>(&self, ids: &Tensor) -> Result<Tensor> {
        let [n_rows, d] = self.shape[..] else {
            candle_core::bail!(
                "`{}`: rows of a tensor of shape {:?}",
                self.name,
                self.shape
            );
        };
        let values = self.values::<T>()?;
        let flat = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let mut out = Vec::with_capacity(flat.len() * d);
        for &id in &flat {
            let id = id as usize;
            if id >= n_rows {
                candle_core::bail!("token id {id} is outside `{}`'s {n_rows} rows", self.name);
            }
            out.extend_from_slice(&values[id * d..(id + 1) * d]);
        }
        let mut dims = ids.dims().to_vec();
        dims.push(d);
        Tensor::from_vec(out, dims, &Device::Cpu)
    }
}

/// Whether the file mapping of `checkpoint` holding `bytes` is read mostly (≥ 90 % of its
/// resident bytes) through 2 MiB page-table entries. Asked of `/proc/self/smaps` once per
/// mapping, whose verdict is kept while its checkpoint lives (every weight asks at about the
/// same decoding step, and reading smaps walks the whole map's page tables); false where
/// smaps cannot be read.
fn in_huge_pages(checkpoint: &Arc<Checkpoint>, bytes: &[u8]) -> bool {
    #[cfg(test)]
    if let Some(huge) = tests::MAP_IN_HUGE_PAGES.with(Cell::get) {
        return huge;
    }
    type Verdict = (std::sync::Weak<Checkpoint>, std::ops::Range<usize>, bool);
    static VERDICTS: std::sync::Mutex<Vec<Verdict>> = std::sync::Mutex::new(Vec::new());
    let at = bytes.as_ptr() as usize;
    let mut verdicts = VERDICTS.lock().unwrap_or_else(|e| e.into_inner());
    verdicts.retain(|(owner, _, _)| owner.strong_count() > 0);
    let mine =
        |owner: &std::sync::Weak<Checkpoint>| std::ptr::eq(owner.as_ptr(), Arc::as_ptr(checkpoint));
    if let Some((_, _, huge)) = verdicts
        .iter()
        .find(|(owner, range, _)| mine(owner) && range.contains(&at))
    {
        return *huge;
    }
    let Some(map) = glassbox_formats::file_map_backing()
        .into_iter()
        .find(|m| m.range.contains(&at))
    else {
        return false;
    };
    let huge = map.huge_share >= 0.9;
    verdicts.push((Arc::downgrade(checkpoint), map.range, huge));
    huge
}

/// Maps the pages of `len` bytes at `addr` now, in one call, rather than by a page fault per
/// 64 KiB during the first forward pass (the bytes are the page cache's; nothing is read or
/// copied). Only for ranges inside a live read-only file mapping.
#[cfg(target_os = "linux")]
fn populate(addr: usize, len: usize) {
    const PAGE: usize = 4096;
    let start = addr / PAGE * PAGE;
    // Safety: the range covers whole pages of a live read-only file mapping (the caller keeps
    // the checkpoint alive); the advice only fills page tables. An old kernel without
    // MADV_POPULATE_READ returns an error, which changes nothing.
    unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            addr + len - start,
            libc::MADV_POPULATE_READ,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn populate(_addr: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::backend::CheckpointBackend;
    use crate::layers::{Linear, Weight};

    fn gpt2_fixture() -> Checkpoint {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/gpt2");
        Checkpoint::open(dir).unwrap()
    }

    fn load_c_attn(dtype: DType, offered: bool) -> Linear {
        let backend = CheckpointBackend::new(gpt2_fixture());
        let source = backend.checkpoint.clone();
        let vb = VarBuilder::from_backend(Box::new(backend), dtype, Device::Cpu);
        let load = || Linear::load_conv1d(vb.pp("transformer.h.0.attn.c_attn"), 64, 192).unwrap();
        if offered {
            while_building(source, load)
        } else {
            load()
        }
    }

    #[test]
    fn weights_are_read_in_place_only_while_offered_and_in_their_stored_dtype() {
        let linear = load_c_attn(DType::F32, true);
        let Weight::Mapped(m) = &linear.weight else {
            panic!("an f32 weight of an f32 checkpoint is copied");
        };
        assert_eq!(m.dims(), &[64, 192]);
        assert!(matches!(
            load_c_attn(DType::F32, false).weight,
            Weight::Tensor(_)
        ));
        // f16 asked of an f32 file: converted, so owned.
        assert!(matches!(
            load_c_attn(DType::F16, true).weight,
            Weight::Tensor(_)
        ));
        // Nothing stays offered after the build.
        assert!(SOURCE.with(|s| s.borrow().is_none()));
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// `n` rows of inputs to c_attn (in = 64).
    fn inputs(n: usize) -> Tensor {
        let values: Vec<f32> = (0..n * 64)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        Tensor::from_vec(values, (n, 64), &Device::Cpu).unwrap()
    }

    /// The gradient of sum(linear(x)) with respect to x.
    fn input_gradient(linear: &Linear, x: &Tensor) -> Tensor {
        use candle_core::Module;
        let x = candle_core::Var::from_tensor(x).unwrap();
        let grads = linear
            .forward(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        grads.get(x.as_tensor()).unwrap().clone()
    }

    #[test]
    fn a_conv1d_weight_multiplied_again_is_read_from_a_transposed_copy_with_the_same_bits() {
        use candle_core::Module;
        let linear = load_c_attn(DType::F32, true);
        let Weight::Mapped(m) = &linear.weight else {
            panic!("not mapped");
        };
        let copied = || m.out_in.get().is_some_and(|c| c.is_some());
        let (x, few) = (inputs(glassbox_kernels::FEW_ROWS + 5), inputs(1));
        let first = bits(&linear.forward(&x).unwrap());
        let few_first = bits(&linear.forward(&few).unwrap());
        assert!(!copied(), "copied on first use");
        {
            let _generating = stored_layout_only();
            linear.forward(&x).unwrap();
        }
        assert!(!copied(), "copied while generating");
        let second = bits(&linear.forward(&x).unwrap());
        assert!(copied(), "not copied on the second product");
        let copy = m.out_in_copy().unwrap();
        let stored = m.values::<f32>().unwrap();
        assert!((0..64 * 192).all(|i| copy[i] == stored[(i % 64) * 192 + i / 64]));
        assert_eq!(second, first);
        assert_eq!(bits(&linear.forward(&x).unwrap()), first);
        // Few rows keep the stored layout's order, read from the copy: the released pages
        // of the stored weight stay released.
        let reads = m.stored_reads.load(Ordering::Relaxed);
        assert_eq!(bits(&linear.forward(&few).unwrap()), few_first);
        {
            let _generating = stored_layout_only();
            assert_eq!(bits(&linear.forward(&few).unwrap()), few_first);
        }
        // So does a weight-reading analysis: the tensor comes from the copy.
        let stored_values = gpt2_fixture()
            .tensor("transformer.h.0.attn.c_attn.weight", &Device::Cpu)
            .unwrap();
        assert_eq!(bits(&m.tensor().unwrap()), bits(&stored_values));
        assert_eq!(m.tensor().unwrap().dims(), &[64, 192]);
        assert_eq!(
            m.stored_reads.load(Ordering::Relaxed),
            reads,
            "stored pages read"
        );
        // The backward through the copy gives the stored layout's gradient.
        let uncopied = load_c_attn(DType::F32, true);
        let expected = {
            let _stored = stored_layout_only();
            input_gradient(&uncopied, &x)
        };
        assert_eq!(bits(&input_gradient(&linear, &x)), bits(&expected));
        let Weight::Mapped(u) = &uncopied.weight else {
            panic!("not mapped");
        };
        assert!(u.out_in.get().is_none());
    }

    thread_local! {
        /// What [`in_huge_pages`] answers on this thread, when set (smaps is the machine's).
        pub(super) static MAP_IN_HUGE_PAGES: Cell<Option<bool>> = const { Cell::new(None) };
    }

    /// A map already read through 2 MiB entries is not copied, however long the generation:
    /// every read stays in the map, with the same bits.
    #[test]
    fn a_map_in_huge_pages_is_not_copied_for_generation() {
        use candle_core::Module;
        MAP_IN_HUGE_PAGES.with(|h| h.set(Some(true)));
        let linear = load_c_attn(DType::F32, true);
        let Weight::Mapped(m) = &linear.weight else {
            panic!("not mapped");
        };
        let x = inputs(1);
        let expected = bits(&linear.forward(&x).unwrap());
        let _generating = stored_layout_only();
        let reads = m.stored_reads.load(Ordering::Relaxed);
        for step in 0..2 * GENERATION_READS_BEFORE_OWNING {
            assert_eq!(bits(&linear.forward(&x).unwrap()), expected, "step {step}");
        }
        assert!(m.owned.get().is_some_and(|o| o.is_none()), "copied");
        assert_eq!(
            m.stored_reads.load(Ordering::Relaxed) - reads,
            2 * GENERATION_READS_BEFORE_OWNING,
            "a read did not come from the map"
        );
        MAP_IN_HUGE_PAGES.with(|h| h.set(None));
    }

    #[test]
    fn a_weight_read_through_a_long_generation_is_copied_out_of_the_map_with_the_same_bits() {
        MAP_IN_HUGE_PAGES.with(|h| h.set(Some(false)));
        use candle_core::Module;
        // The fixture is f32, so only an f32 load maps it.
        for dtype in [DType::F32] {
            let linear = load_c_attn(dtype, true);
            let Weight::Mapped(m) = &linear.weight else {
                panic!("not mapped");
            };
            let owned = || m.owned.get().is_some_and(|o| o.is_some());
            let x = inputs(1).to_dtype(dtype).unwrap();
            let expected = bits(&linear.forward(&x).unwrap().to_dtype(DType::F32).unwrap());
            for _ in 0..2 * GENERATION_READS_BEFORE_OWNING {
                linear.forward(&x).unwrap();
            }
            assert!(!owned(), "{dtype:?}: copied outside generation");
            let _generating = stored_layout_only();
            for step in 0..GENERATION_READS_BEFORE_OWNING + 2 {
                let got = linear.forward(&x).unwrap().to_dtype(DType::F32).unwrap();
                assert_eq!(bits(&got), expected, "{dtype:?}: step {step}");
            }
            assert!(owned(), "{dtype:?}: not copied during generation");
            let reads = m.stored_reads.load(Ordering::Relaxed);
            linear.forward(&x).unwrap();
            let stored_values = gpt2_fixture()
                .tensor("transformer.h.0.attn.c_attn.weight", &Device::Cpu)
                .unwrap();
            let as_tensor = m.tensor().unwrap();
            assert_eq!((as_tensor.dims(), as_tensor.dtype()), (m.dims(), dtype));
            assert_eq!(bits(&as_tensor), bits(&stored_values));
            assert_eq!(
                m.stored_reads.load(Ordering::Relaxed),
                reads,
                "{dtype:?}: map read"
            );
        }
    }

    /// A half-precision checkpoint (written by transformers 5) loaded in f32: its weights stay
    /// in the map in their stored dtype and act as f32 — products (few rows and many, forward
    /// and backward), embedding rows and the weight as a tensor all have the bits of the weight
    /// converted to f32 at load.
    #[test]
    fn a_half_precision_weight_asked_for_in_f32_is_mapped_and_widened_as_read() {
        use crate::layers::Embedding;
        use candle_core::Module;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/transformers5");
        for (fixture, stored) in [("gpt2-f16", DType::F16), ("gpt2-bf16", DType::BF16)] {
            let checkpoint = Checkpoint::open(root.join(fixture)).unwrap();
            let load = |offered: bool| {
                let backend = CheckpointBackend::new(Checkpoint::open(root.join(fixture)).unwrap());
                let source = backend.checkpoint.clone();
                let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
                let build = || {
                    let linear =
                        Linear::load_conv1d(vb.pp("transformer.h.0.attn.c_attn"), 32, 96).unwrap();
                    let wte = Embedding::load(vb.pp("transformer.wte"), 384, 32).unwrap();
                    (linear, wte)
                };
                if offered {
                    while_building(source, build)
                } else {
                    build()
                }
            };
            let ((mapped, mapped_wte), (owned, owned_wte)) = (load(true), load(false));
            let Weight::Mapped(m) = &mapped.weight else {
                panic!("{fixture}: not mapped");
            };
            assert!(matches!(owned.weight, Weight::Tensor(_)), "{fixture}");
            assert_eq!(
                (m.stored_dtype(), m.dtype()),
                (stored, DType::F32),
                "{fixture}"
            );
            assert_eq!(
                mapped.weight.bytes(),
                32 * 96 * 2,
                "{fixture}: bytes in memory"
            );
            assert_eq!(owned.weight.dtype(), DType::F32, "{fixture}");
            let as_f32 = checkpoint
                .tensor("transformer.h.0.attn.c_attn.weight", &Device::Cpu)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let tensor = m.tensor().unwrap();
            assert_eq!(tensor.dtype(), DType::F32, "{fixture}");
            assert_eq!(bits(&tensor), bits(&as_f32), "{fixture}: tensor");
            for n in [1, glassbox_kernels::FEW_ROWS + 5] {
                let x = inputs(n).narrow(1, 0, 32).unwrap().contiguous().unwrap();
                let y = mapped.forward(&x).unwrap();
                assert_eq!(y.dtype(), DType::F32);
                assert_eq!(
                    bits(&y),
                    bits(&owned.forward(&x).unwrap()),
                    "{fixture}: {n} rows"
                );
                assert_eq!(
                    bits(&input_gradient(&mapped, &x)),
                    bits(&input_gradient(&owned, &x)),
                    "{fixture}: {n} rows, gradient"
                );
            }
            let ids = Tensor::new(&[[0u32, 383, 7], [5, 5, 1]], &Device::Cpu).unwrap();
            let rows = mapped_wte.lookup(&ids).unwrap();
            assert_eq!((rows.dims(), rows.dtype()), (&[2, 3, 32][..], DType::F32));
            assert_eq!(
                bits(&rows),
                bits(&owned_wte.lookup(&ids).unwrap()),
                "{fixture}: rows"
            );
        }
    }

    #[test]
    fn a_mapped_weight_holds_the_checkpoint_values() {
        let linear = load_c_attn(DType::F32, true);
        let Weight::Mapped(m) = &linear.weight else {
            panic!("not mapped");
        };
        let copied = gpt2_fixture()
            .tensor("transformer.h.0.attn.c_attn.weight", &Device::Cpu)
            .unwrap();
        let copied: Vec<f32> = copied.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(m.values::<f32>().unwrap(), copied.as_slice());
        let as_tensor: Vec<f32> = m
            .tensor()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(as_tensor, copied);
        assert!(m.values::<half::f16>().is_err(), "read as the wrong dtype");
    }
}
