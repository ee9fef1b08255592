//! Per-tensor statistics and histograms, computed in parallel streaming passes.
//!
//! Design: a tensor is never materialised. Its stored bytes (memory-mapped) are cut into
//! work items of [`CHUNK_ELEMENTS`] elements, aligned to the dtype's block so quantized blocks
//! are never split; rayon runs the work items of *all* requested tensors as one flat parallel
//! iterator, so a checkpoint of many small tensors and one of a few huge ones both keep every
//! core busy. Each work item decodes [`BATCH`] elements at a time into a small reusable f32
//! buffer (F32/F16/BF16 by fast paths, every other dtype — quantized GGUF blocks included —
//! through [`crate::to_f32`]), so peak memory is a few buffers per thread whatever the tensor
//! size. Each finished work item hands its mapped pages back to the OS ([`PageReleaser`]): they
//! stay in the page cache, but leave this process's resident set, so scanning a checkpoint
//! larger than RAM keeps peak RSS to a few work items per thread.
//!
//! Accumulation is numerically sound: each batch is summarised exactly (two passes over the
//! cached batch: the f64 sum, then the f64 sum of squared deviations from the batch mean), and
//! batch summaries are merged with Chan et al.'s pairwise update, which never subtracts two
//! large sums. NaN and ±Inf are counted and kept out of every other statistic.

use std::ops::Range;

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use serde::Serialize;

use crate::{Checkpoint, DType, FormatError, Result, TensorInfo};

/// Elements per parallel work item (a multiple of every block size).
pub(crate) const CHUNK_ELEMENTS: u64 = 1 << 20;
/// Elements decoded at once inside a work item: small enough to stay in L1/L2.
pub(crate) const BATCH: usize = 4096;

/// Summary statistics of one tensor's values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorStats {
    /// Number of elements, NaN and Inf included.
    pub elements: u64,
    /// Mean, standard deviation (population), min, max, largest |x| and L2 norm, all over the
    /// finite elements only; `None` when no element is finite.
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub abs_max: Option<f64>,
    pub l2_norm: f64,
    /// Elements exactly equal to zero, and their fraction of all elements.
    pub zeros: u64,
    pub zero_fraction: f64,
    pub nan: u64,
    pub inf: u64,
}

/// A histogram of a tensor's finite values over `bins` equal bins spanning [min, max].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// `bins + 1` bin edges; empty when the tensor has no finite value.
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    pub nan: u64,
    pub inf: u64,
}

/// Running moments of finite values, mergeable in any order (Chan et al. 1979).
#[derive(Debug, Clone, Copy)]
struct Moments {
    count: u64,
    mean: f64,
    /// Sum of squared deviations from `mean`.
    m2: f64,
    min: f32,
    max: f32,
    zeros: u64,
    nan: u64,
    inf: u64,
}

impl Moments {
    const EMPTY: Moments = Moments {
        count: 0,
        mean: 0.0,
        m2: 0.0,
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        zeros: 0,
        nan: 0,
        inf: 0,
    };

    fn merge(self, other: Moments) -> Moments {
        let count = self.count + other.count;
        let (mean, m2) = if self.count == 0 {
            (other.mean, other.m2)
        } else if other.count == 0 {
            (self.mean, self.m2)
        } else {
            let (na, nb, n) = (self.count as f64, other.count as f64, count as f64);
            let delta = other.mean - self.mean;
            (
                self.mean + delta * nb / n,
                self.m2 + other.m2 + delta * delta * na * nb / n,
            )
        };
        Moments {
            count,
            mean,
            m2,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
            zeros: self.zeros + other.zeros,
            nan: self.nan + other.nan,
            inf: self.inf + other.inf,
        }
    }

    /// Exact summary of one decoded batch.
    fn of_batch(values: &[f32]) -> Moments {
        const LANES: usize = 8;
        // Independent lanes let the compiler vectorise; all-finite is the common case, and
        // a batch with NaN/Inf is redone on the slow path below.
        let mut sum = [0f64; LANES];
        let mut min = [f32::INFINITY; LANES];
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut zeros = [0u32; LANES];
        let mut non_finite = [0u32; LANES];
        let lanes = values.chunks_exact(LANES);
        let tail = lanes.remainder();
        for c in lanes {
            for i in 0..LANES {
                let x = c[i];
                sum[i] += x as f64;
                min[i] = min[i].min(x);
                max[i] = max[i].max(x);
                zeros[i] += (x == 0.0) as u32;
                non_finite[i] += (!x.is_finite()) as u32;
            }
        }
        for (i, &x) in tail.iter().enumerate() {
            sum[i] += x as f64;
            min[i] = min[i].min(x);
            max[i] = max[i].max(x);
            zeros[i] += (x == 0.0) as u32;
            non_finite[i] += (!x.is_finite()) as u32;
        }
        if non_finite.iter().any(|&n| n > 0) {
            return Self::of_batch_with_non_finite(values);
        }
        let count = values.len() as u64;
        if count == 0 {
            return Moments::EMPTY;
        }
        let mean = sum.iter().sum::<f64>() / count as f64;
        let mut m2 = [0f64; LANES];
        let lanes = values.chunks_exact(LANES);
        let tail = lanes.remainder();
        for c in lanes {
            for i in 0..LANES {
                let d = c[i] as f64 - mean;
                m2[i] += d * d;
            }
        }
        for &x in tail {
            let d = x as f64 - mean;
            m2[0] += d * d;
        }
        Moments {
            count,
            mean,
            m2: m2.iter().sum(),
            min: min.iter().copied().fold(f32::INFINITY, f32::min),
            max: max.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            zeros: zeros.iter().map(|&z| z as u64).sum(),
            nan: 0,
            inf: 0,
        }
    }

    fn of_batch_with_non_finite(values: &[f32]) -> Moments {
        let mut m = Moments::EMPTY;
        let mut finite: Vec<f32> = Vec::with_capacity(values.len());
        for &x in values {
            if x.is_nan() {
                m.nan += 1;
            } else if x.is_infinite() {
                m.inf += 1;
            } else {
                finite.push(x);
            }
        }
        m.merge(Self::of_batch(&finite))
    }

    fn into_stats(self) -> TensorStats {
        let elements = self.count + self.nan + self.inf;
        let any = self.count > 0;
        let l2_sq = self.m2 + self.count as f64 * self.mean * self.mean;
        TensorStats {
            elements,
            mean: any.then_some(self.mean),
            std: any.then(|| (self.m2 / self.count as f64).sqrt()),
            min: any.then_some(self.min as f64),
            max: any.then_some(self.max as f64),
            abs_max: any.then(|| (self.min.abs().max(self.max.abs())) as f64),
            l2_norm: l2_sq.sqrt(),
            zeros: self.zeros,
            zero_fraction: if elements == 0 {
                0.0
            } else {
                self.zeros as f64 / elements as f64
            },
            nan: self.nan,
            inf: self.inf,
        }
    }
}

/// Decodes element ranges of one stored tensor to f32, a batch at a time.
#[derive(Clone, Copy)]
pub(crate) struct ElementSource<'a> {
    pub dtype: DType,
    pub bytes: &'a [u8],
    pub elements: u64,
}

impl<'a> ElementSource<'a> {
    /// The tensor `name` of `ck`, checked to be decodable.
    pub(crate) fn of(ck: &'a Checkpoint, info: &TensorInfo) -> Result<Self> {
        let bytes = ck.raw_bytes(&info.name)?;
        let source = ElementSource {
            dtype: info.dtype,
            bytes,
            elements: info.elements(),
        };
        if info.dtype.bytes_for(source.elements) != Some(bytes.len() as u64) {
            return Err(FormatError::invalid(
                &ck.path,
                format!(
                    "tensor `{}`: {} bytes do not hold {} elements of {}",
                    info.name,
                    bytes.len(),
                    source.elements,
                    info.dtype
                ),
            ));
        }
        let (_, block_bytes) = info.dtype.block();
        if crate::to_f32(info.dtype, &vec![0u8; block_bytes]).is_none() {
            return Err(FormatError::unsupported(
                &ck.path,
                format!(
                    "tensor `{}`: cannot decode {} values",
                    info.name, info.dtype
                ),
            ));
        }
        Ok(source)
    }

    /// The stored bytes of elements `range` (block-aligned start): whole blocks.
    pub(crate) fn byte_range(&self, range: &Range<u64>) -> Range<usize> {
        let (block_elems, block_bytes) = self.dtype.block();
        let (be, bb) = (block_elems as u64, block_bytes as u64);
        debug_assert_eq!(range.start % be, 0);
        (range.start / be * bb) as usize..(range.end.div_ceil(be) * bb) as usize
    }

    /// Decodes elements `range` (block-aligned start) into `out`, replacing its contents.
    pub(crate) fn decode(&self, range: Range<u64>, out: &mut Vec<f32>) {
        let bytes = &self.bytes[self.byte_range(&range)];
        let n = (range.end - range.start) as usize;
        out.clear();
        match self.dtype {
            DType::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            DType::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)),
            ),
            DType::F16 => {
                let halves: Vec<f16> = bytes
                    .chunks_exact(2)
                    .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])))
                    .collect();
                out.resize(halves.len(), 0.0);
                halves.convert_to_f32_slice(out);
            }
            _ => {
                // Checked decodable in `of`; an empty result cannot happen for whole blocks.
                if let Some(values) = crate::to_f32(self.dtype, bytes) {
                    out.extend(values);
                }
            }
        }
        // A block-quantized range may end inside its last block.
        out.truncate(n);
    }

    /// Block-aligned work items of at most [`CHUNK_ELEMENTS`] elements.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        let step = CHUNK_ELEMENTS;
        (0..self.elements.div_ceil(step))
            .map(move |i| i * step..((i + 1) * step).min(self.elements))
    }

    /// Calls `f` on each decoded batch of `range`, in order.
    pub(crate) fn for_each_batch(&self, range: Range<u64>, mut f: impl FnMut(&[f32])) {
        let mut buffer = Vec::with_capacity(BATCH);
        let mut start = range.start;
        while start < range.end {
            let end = (start + BATCH as u64).min(range.end);
            self.decode(start..end, &mut buffer);
            f(&buffer);
            start = end;
        }
    }
}

fn moments_of(source: &ElementSource, range: Range<u64>) -> Moments {
    let mut m = Moments::EMPTY;
    source.for_each_batch(range, |batch| m = m.merge(Moments::of_batch(batch)));
    m
}

/// Statistics of one stored tensor given as raw bytes of `dtype` with `elements` elements.
/// Returns None if the dtype cannot be decoded or the byte length does not match.
pub fn stats_of_bytes(dtype: DType, bytes: &[u8], elements: u64) -> Option<TensorStats> {
    if dtype.bytes_for(elements) != Some(bytes.len() as u64) {
        return None;
    }
    crate::to_f32(dtype, &vec![0u8; dtype.block().1])?;
    let source = ElementSource {
        dtype,
        bytes,
        elements,
    };
    let ranges: Vec<Range<u64>> = source.chunks().collect();
    let m = ranges
        .into_par_iter()
        .map(|r| moments_of(&source, r))
        .reduce(|| Moments::EMPTY, Moments::merge);
    Some(m.into_stats())
}

/// Statistics of the named tensors of `ck`, in the order given. `progress` is called with the
/// number of stored bytes each finished work item covered (from any thread).
pub fn checkpoint_stats(
    ck: &Checkpoint,
    names: &[&str],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<TensorStats>> {
    let mut sources = Vec::with_capacity(names.len());
    for name in names {
        let info = ck.info(name).ok_or_else(|| FormatError::NoSuchTensor {
            path: ck.path.clone(),
            name: name.to_string(),
        })?;
        sources.push(ElementSource::of(ck, info)?);
    }
    let work: Vec<(usize, Range<u64>)> = sources
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.chunks().map(move |r| (i, r)))
        .collect();
    let releaser = PageReleaser::new();
    let partial: Vec<(usize, Moments)> = work
        .into_par_iter()
        .map(|(i, range)| {
            let source = &sources[i];
            let m = moments_of(source, range.clone());
            let bytes = source.byte_range(&range);
            progress(bytes.len() as u64);
            releaser.release(&source.bytes[bytes]);
            (i, m)
        })
        .collect();
    // Merge in work order: the result does not depend on thread scheduling.
    let mut totals = vec![Moments::EMPTY; sources.len()];
    for (i, m) in partial {
        totals[i] = totals[i].merge(m);
    }
    Ok(totals.into_iter().map(Moments::into_stats).collect())
}

/// Statistics of every tensor of `ck`, in file order.
pub fn all_stats(ck: &Checkpoint, progress: &(dyn Fn(u64) + Sync)) -> Result<Vec<TensorStats>> {
    let names: Vec<&str> = ck.tensors().iter().map(|t| t.name.as_str()).collect();
    checkpoint_stats(ck, &names, progress)
}

/// A histogram of tensor `name` with `bins` equal bins over its finite range. Two streaming
/// passes: one for the range, one for the counts.
pub fn histogram(ck: &Checkpoint, name: &str, bins: usize) -> Result<Histogram> {
    if bins == 0 {
        return Err(FormatError::invalid(
            &ck.path,
            "a histogram needs at least one bin",
        ));
    }
    let stats = checkpoint_stats(ck, &[name], &|_| {})?.remove(0);
    let info = ck.info(name).ok_or_else(|| FormatError::NoSuchTensor {
        path: ck.path.clone(),
        name: name.to_string(),
    })?;
    let source = ElementSource::of(ck, info)?;
    let (Some(min), Some(max)) = (stats.min, stats.max) else {
        return Ok(Histogram {
            edges: Vec::new(),
            counts: Vec::new(),
            nan: stats.nan,
            inf: stats.inf,
        });
    };
    let width = (max - min) / bins as f64;
    let ranges: Vec<Range<u64>> = source.chunks().collect();
    let releaser = PageReleaser::new();
    let counts = ranges
        .into_par_iter()
        .map(|range| {
            let mut counts = vec![0u64; bins];
            let bytes = source.byte_range(&range);
            source.for_each_batch(range, |batch| {
                for &x in batch.iter().filter(|x| x.is_finite()) {
                    let bin = if width > 0.0 {
                        ((x as f64 - min) / width) as usize
                    } else {
                        0
                    };
                    // The maximum itself belongs to the last (closed) bin.
                    counts[bin.min(bins - 1)] += 1;
                }
            });
            releaser.release(&source.bytes[bytes]);
            counts
        })
        .reduce(
            || vec![0u64; bins],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let edges = (0..=bins)
        .map(|i| {
            if i == bins {
                max
            } else {
                min + width * i as f64
            }
        })
        .collect();
    Ok(Histogram {
        edges,
        counts,
        nan: stats.nan,
        inf: stats.inf,
    })
}

/// Hands the resident pages of memory-mapped tensor bytes back to the OS after a streaming
/// pass has read them.
///
/// Only ranges inside a read-only *shared file* mapping of this process (as listed in
/// `/proc/self/maps` when the pass starts) are released, with `MADV_DONTNEED`: for such a
/// mapping that drops nothing but this process's page-table entries — the bytes stay in the
/// page cache and the next access maps the very same file contents again. Owned buffers, or
/// any mapping that could hold data of its own, are never touched. Elsewhere than Linux this
/// does nothing.
pub struct PageReleaser {
    shared_file_mappings: Vec<Range<usize>>,
    page: usize,
}

impl Default for PageReleaser {
    fn default() -> Self {
        Self::new()
    }
}

impl PageReleaser {
    /// Notes this process's shared file mappings as they are now: create it after opening
    /// the checkpoint.
    pub fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            PageReleaser {
                shared_file_mappings: maps.lines().filter_map(shared_file_mapping).collect(),
                page: usize::try_from(page).unwrap_or(4096).max(1),
            }
        }
        #[cfg(not(target_os = "linux"))]
        PageReleaser {
            shared_file_mappings: Vec::new(),
            page: 4096,
        }
    }

    /// Releases the whole pages inside `bytes`, if they belong to a shared file mapping.
    pub fn release(&self, bytes: &[u8]) {
        let start = (bytes.as_ptr() as usize).div_ceil(self.page) * self.page;
        let end = (bytes.as_ptr() as usize + bytes.len()) / self.page * self.page;
        if end <= start
            || !self
                .shared_file_mappings
                .iter()
                .any(|m| m.start <= start && end <= m.end)
        {
            return;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: [start, end) lies in a read-only MAP_SHARED file mapping (checked above), for
        // which MADV_DONTNEED only unmaps pages that any later read maps again from the file,
        // unchanged: every live reference keeps seeing the same bytes. A failure is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// `7f..-7f.. r--s 00000000 fd:01 123  /path` → the address range, for read-only shared
/// mappings of a file.
#[cfg(target_os = "linux")]
fn shared_file_mapping(line: &str) -> Option<Range<usize>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.as_bytes();
    let path = fields.nth(3)?;
    let read_only_shared = perms.len() == 4 && perms[1] == b'-' && perms[3] == b's';
    if !read_only_shared || !path.starts_with('/') {
        return None;
    }
    Some(usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Direct two-pass reference in f64.
    fn check(values: &[f32]) {
        let got =
            stats_of_bytes(DType::F32, &f32_bytes(values), values.len() as u64).expect("decodable");
        let finite: Vec<f64> = values
            .iter()
            .filter(|x| x.is_finite())
            .map(|&x| x as f64)
            .collect();
        let n = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let var = finite.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + b.abs());
        assert!(close(got.mean.unwrap(), mean), "{got:?} mean {mean}");
        assert!(
            close(got.std.unwrap(), var.sqrt()),
            "{got:?} std {}",
            var.sqrt()
        );
        let l2 = finite.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(close(got.l2_norm, l2));
        assert_eq!(got.nan, values.iter().filter(|x| x.is_nan()).count() as u64);
        assert_eq!(
            got.inf,
            values.iter().filter(|x| x.is_infinite()).count() as u64
        );
        assert_eq!(
            got.zeros,
            values.iter().filter(|&&x| x == 0.0).count() as u64
        );
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(got.min, Some(min));
    }

    #[test]
    fn matches_a_direct_computation_across_chunk_and_batch_boundaries() {
        // Large offset relative to spread: naive sum-of-squares variance would lose it.
        let values: Vec<f32> = (0..(CHUNK_ELEMENTS as usize * 2 + 4099))
            .map(|i| 1000.0 + ((i * 7919) % 1013) as f32 * 1e-3 - 0.5)
            .collect();
        check(&values);
    }

    #[test]
    fn non_finite_values_are_counted_and_excluded() {
        let mut values: Vec<f32> = (0..10_000).map(|i| (i as f32).sin()).collect();
        values[3] = f32::NAN;
        values[5000] = f32::INFINITY;
        values[9999] = f32::NEG_INFINITY;
        values[7] = 0.0;
        check(&values);
    }

    #[test]
    fn half_precision_decodes_like_the_reference_converter() {
        let values: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.37).cos() * 3.0).collect();
        for dtype in [DType::F16, DType::BF16] {
            let bytes: Vec<u8> = match dtype {
                DType::F16 => values
                    .iter()
                    .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                    .collect(),
                _ => values
                    .iter()
                    .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
                    .collect(),
            };
            let got = stats_of_bytes(dtype, &bytes, values.len() as u64).unwrap();
            let decoded = crate::to_f32(dtype, &bytes).unwrap();
            let want = stats_of_bytes(DType::F32, &f32_bytes(&decoded), values.len() as u64);
            assert_eq!(Some(got), want);
        }
    }

    /// Resident file pages of this process, from /proc/self/status.
    #[cfg(target_os = "linux")]
    fn rss_file_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn released_pages_leave_the_resident_set_and_read_back_unchanged() {
        let path = std::env::temp_dir().join(format!("glassbox-release-{}", std::process::id()));
        let data: Vec<u8> = (0..64usize << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a private temporary file nobody else writes.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let sum = |b: &[u8]| b.iter().map(|&x| x as u64).sum::<u64>();
        let expected = sum(&data);
        drop(data);
        let releaser = PageReleaser::new();
        assert_eq!(sum(&map), expected);
        let touched = rss_file_kb();
        releaser.release(&map);
        let released = rss_file_kb();
        assert!(
            touched - released > 60 << 10,
            "RssFile {touched} kB -> {released} kB"
        );
        assert_eq!(sum(&map), expected);
        // An owned buffer is never released (it would read back as zeros).
        let owned = vec![7u8; 1 << 20];
        releaser.release(&owned);
        assert!(owned.iter().all(|&b| b == 7));
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn mismatched_lengths_are_refused() {
        assert!(stats_of_bytes(DType::F32, &[0u8; 7], 2).is_none());
    }
}
