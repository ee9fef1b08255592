//! Per-tensor differences between two checkpoints, in any pair of formats.
//!
//! Design: both checkpoints are first seen through a [`HubView`]: every tensor under its Hub
//! name, in Hub row order. For safetensors and PyTorch checkpoints that is the identity; for a
//! GGUF file, names go through llama.cpp's GGUF→Hub mapping and the Q/K projection rows that
//! llama.cpp's converter permuted (for its interleaved rotary kernel) are read back in Hub
//! order — as a row index table, never by moving weights. Tensors are then paired by Hub name
//! and compared like [`crate::stats`] computes statistics: block-aligned work items over the
//! memory-mapped bytes, all pairs in one flat rayon iterator, small decoded batches, f64
//! accumulation. ‖A−B‖² is accumulated from the element differences themselves, never as
//! ‖A‖² + ‖B‖² − 2A·B, so near-identical tensors report a tiny change rather than rounding
//! noise. Pages already compared are handed back to the OS as in [`crate::stats`].

use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;
use serde::Serialize;

use candle_core::{Device, Tensor};

use crate::gguf_names::{self, Fixup, HubName};
use crate::stats::{ElementSource, PageReleaser, BATCH, CHUNK_ELEMENTS};
use crate::{Checkpoint, Result, TensorInfo};

/// How one tensor name fared in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffStatus {
    Compared,
    ShapeChanged,
    OnlyInA,
    OnlyInB,
}

/// The comparison of one tensor. Norms and metrics are over pairs where both values are
/// finite; they are `None` unless `status` is `Compared`.
#[derive(Debug, Clone, Serialize)]
pub struct TensorDiff {
    /// The Hub name (the tensor's own name outside GGUF).
    pub name: String,
    /// The names as stored in each checkpoint, when a side has the tensor.
    pub stored_name_a: Option<String>,
    pub stored_name_b: Option<String>,
    pub status: DiffStatus,
    pub shape_a: Option<Vec<usize>>,
    pub shape_b: Option<Vec<usize>>,
    pub dtype_a: Option<String>,
    pub dtype_b: Option<String>,
    /// ‖A−B‖ / ‖A‖ (0 when both are zero, `None` when only A is zero).
    pub relative_change: Option<f64>,
    /// A·B / (‖A‖ ‖B‖), `None` when either is zero.
    pub cosine: Option<f64>,
    pub max_abs_diff: Option<f64>,
    pub norm_a: Option<f64>,
    pub norm_b: Option<f64>,
    pub norm_diff: Option<f64>,
    /// Element pairs left out because either value is NaN or infinite.
    pub non_finite_pairs: u64,
    /// Of those, the pairs whose two values differ (a NaN against a number, +Inf against
    /// −Inf; two NaNs are the same). A tensor with any is changed, whatever its metrics say.
    pub non_finite_changed: u64,
}

/// One tensor as the Hub would store it, described as a view of stored bytes.
#[derive(Debug, Clone)]
pub struct ViewEntry {
    /// The stored tensor it reads.
    pub stored: String,
    pub shape: Vec<usize>,
    /// The elements of the stored tensor it covers (one expert of a stacked GGUF tensor).
    pub elements: Range<u64>,
    /// `Some(o)`: Hub row `r` is stored at row `o[r]`.
    pub row_order: Option<Vec<usize>>,
    /// Added to every stored value (GGUF Gemma norms hold `w + 1`).
    pub shift: f32,
}

/// A checkpoint's tensors under Hub names and in Hub row order.
pub struct HubView<'a> {
    pub checkpoint: &'a Checkpoint,
    entries: HashMap<String, ViewEntry>,
    /// Stored tensors that could not be mapped (kept under their stored name), with why.
    pub unmapped: Vec<(String, String)>,
}

fn plain(t: &TensorInfo) -> ViewEntry {
    ViewEntry {
        stored: t.name.clone(),
        shape: t.shape.clone(),
        elements: 0..t.elements(),
        row_order: None,
        shift: 0.0,
    }
}

impl<'a> HubView<'a> {
    /// Every tensor under its own name, rows as stored.
    pub fn identity(checkpoint: &'a Checkpoint) -> Self {
        let entries = checkpoint
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), plain(t)))
            .collect();
        HubView {
            checkpoint,
            entries,
            unmapped: Vec::new(),
        }
    }

    /// The checkpoint under Hub names: a GGUF file's tensors renamed through
    /// [`gguf_names::hub_name`], Q/K rows unpermuted, stacked experts split, Gemma norms
    /// shifted back; other formats as they are. A GGUF tensor with no Hub counterpart, or one
    /// whose fix-up is a transpose (GPT-2's Conv1D weights), keeps its GGUF name.
    pub fn hub(checkpoint: &'a Checkpoint) -> Result<Self> {
        let Some(gguf) = checkpoint.gguf() else {
            return Ok(Self::identity(checkpoint));
        };
        let arch = gguf.architecture().unwrap_or("").to_string();
        let head_count = |key: &str| {
            gguf.get(&format!("{arch}.attention.{key}"))
                .and_then(|v| v.as_u64())
                .map(|n| n as usize)
        };
        let mut view = HubView {
            checkpoint,
            entries: HashMap::new(),
            unmapped: Vec::new(),
        };
        for t in checkpoint.tensors() {
            let mut keep = |why: &str| {
                view.unmapped.push((t.name.clone(), why.to_string()));
                (t.name.clone(), plain(t))
            };
            let mapped: Vec<(String, ViewEntry)> = match gguf_names::hub_name(&arch, &t.name) {
                None => vec![keep("no Hugging Face counterpart known")],
                Some(HubName { name, fixup }) => match fixup {
                    Fixup::None => vec![(name, plain(t))],
                    Fixup::SubtractOne => vec![(
                        name,
                        ViewEntry {
                            shift: -1.0,
                            ..plain(t)
                        },
                    )],
                    Fixup::UnpermuteQ | Fixup::UnpermuteK => {
                        let heads = if fixup == Fixup::UnpermuteQ {
                            head_count("head_count")
                        } else {
                            head_count("head_count_kv").or_else(|| head_count("head_count"))
                        };
                        match heads.and_then(|h| unpermuted_row_order(t, h)) {
                            Some(order) => vec![(
                                name,
                                ViewEntry {
                                    row_order: Some(order),
                                    ..plain(t)
                                },
                            )],
                            None => vec![keep("cannot undo the Q/K row permutation")],
                        }
                    }
                    Fixup::SplitExperts if t.shape.len() >= 2 && t.shape[0] > 0 => {
                        let per_expert = t.elements() / t.shape[0] as u64;
                        (0..t.shape[0])
                            .map(|e| {
                                let start = e as u64 * per_expert;
                                let entry = ViewEntry {
                                    shape: t.shape[1..].to_vec(),
                                    elements: start..start + per_expert,
                                    ..plain(t)
                                };
                                (name.replace("{e}", &e.to_string()), entry)
                            })
                            .collect()
                    }
                    // Reshapes only: the same values in the same order.
                    Fixup::Flatten => vec![(
                        name,
                        ViewEntry {
                            shape: vec![t.elements() as usize],
                            ..plain(t)
                        },
                    )],
                    Fixup::Row => vec![(
                        name,
                        ViewEntry {
                            shape: vec![1, t.elements() as usize],
                            ..plain(t)
                        },
                    )],
                    Fixup::ConvChannels if t.shape.len() == 2 => vec![(
                        name,
                        ViewEntry {
                            shape: vec![t.shape[0], 1, t.shape[1]],
                            ..plain(t)
                        },
                    )],
                    Fixup::LogOfNegated => {
                        vec![keep("stored as −exp(A_log); compared under its GGUF name")]
                    }
                    Fixup::ConvChannels => vec![keep("not a [channels, kernel] convolution")],
                    Fixup::SplitExperts | Fixup::Transpose => {
                        vec![keep("stored transposed; compared under its GGUF name")]
                    }
                },
            };
            view.entries.extend(mapped);
        }
        Ok(view)
    }
}

/// For a GGUF Q/K tensor, the stored row of each Hub row: [`gguf_names::unpermute_qk`]
/// applied to the row indices themselves, so this module never re-derives the permutation.
fn unpermuted_row_order(t: &TensorInfo, heads: usize) -> Option<Vec<usize>> {
    let rows = *t.shape.first()?;
    // Row indices are exact in f32 up to 2^24 rows.
    if rows > 1 << 24 {
        return None;
    }
    let index = Tensor::from_vec(
        (0..rows).map(|r| r as f32).collect::<Vec<f32>>(),
        rows,
        &Device::Cpu,
    )
    .ok()?;
    let order = gguf_names::unpermute_qk(&index, heads)
        .ok()?
        .to_vec1::<f32>()
        .ok()?;
    Some(order.into_iter().map(|r| r as usize).collect())
}

/// One side of a compared pair: a decodable tensor, optionally read in another row order.
struct Side<'a> {
    source: ElementSource<'a>,
    /// Where the view starts in the stored tensor.
    offset: u64,
    /// (row length, stored row of each Hub row).
    rows: Option<(u64, &'a [usize])>,
    shift: f32,
}

impl Side<'_> {
    fn decode(&self, range: Range<u64>, out: &mut Vec<f32>, row_buffer: &mut Vec<f32>) {
        let stored = range.start + self.offset..range.end + self.offset;
        match self.rows {
            None => self.source.decode(stored, out),
            Some((cols, order)) => {
                // Ranges are row-aligned here (see `work_items`).
                out.clear();
                for row in range.start / cols..range.end.div_ceil(cols) {
                    let at = self.offset + order[row as usize] as u64 * cols;
                    self.source.decode(at..at + cols, row_buffer);
                    out.extend_from_slice(row_buffer);
                }
            }
        }
        if self.shift != 0.0 {
            out.iter_mut().for_each(|x| *x += self.shift);
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct PairSums {
    aa: f64,
    bb: f64,
    ab: f64,
    dd: f64,
    max_abs: f64,
    non_finite: u64,
    non_finite_changed: u64,
}

impl PairSums {
    fn merge(self, o: PairSums) -> PairSums {
        PairSums {
            aa: self.aa + o.aa,
            bb: self.bb + o.bb,
            ab: self.ab + o.ab,
            dd: self.dd + o.dd,
            max_abs: self.max_abs.max(o.max_abs),
            non_finite: self.non_finite + o.non_finite,
            non_finite_changed: self.non_finite_changed + o.non_finite_changed,
        }
    }

    /// Sums over one decoded batch. Independent lanes let the compiler vectorise the common,
    /// all-finite case; a batch holding NaN or Inf is redone pair by pair.
    fn of_batch(a: &[f32], b: &[f32]) -> PairSums {
        const LANES: usize = 8;
        let [mut aa, mut bb, mut ab, mut dd, mut max_abs] = [[0f64; LANES]; 5];
        let mut non_finite = [0u32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (ta, tb) = (ca.remainder(), cb.remainder());
        for (xa, xb) in ca.zip(cb) {
            for i in 0..LANES {
                let (x, y) = (xa[i] as f64, xb[i] as f64);
                let d = x - y;
                aa[i] += x * x;
                bb[i] += y * y;
                ab[i] += x * y;
                dd[i] += d * d;
                max_abs[i] = max_abs[i].max(d.abs());
                non_finite[i] += (!(xa[i].is_finite() && xb[i].is_finite())) as u32;
            }
        }
        if non_finite.iter().any(|&n| n > 0) || ta.iter().chain(tb).any(|x| !x.is_finite()) {
            return Self::of_batch_with_non_finite(a, b);
        }
        let mut s = PairSums {
            aa: aa.iter().sum(),
            bb: bb.iter().sum(),
            ab: ab.iter().sum(),
            dd: dd.iter().sum(),
            max_abs: max_abs.iter().copied().fold(0.0, f64::max),
            non_finite: 0,
            non_finite_changed: 0,
        };
        s.add_pairs(ta, tb);
        s
    }

    fn of_batch_with_non_finite(a: &[f32], b: &[f32]) -> PairSums {
        let mut s = PairSums::default();
        s.add_pairs(a, b);
        s
    }

    fn add_pairs(&mut self, a: &[f32], b: &[f32]) {
        for (&x, &y) in a.iter().zip(b) {
            if !(x.is_finite() && y.is_finite()) {
                self.non_finite += 1;
                let same = x == y || (x.is_nan() && y.is_nan());
                self.non_finite_changed += (!same) as u64;
                continue;
            }
            let (x, y) = (x as f64, y as f64);
            let d = x - y;
            self.aa += x * x;
            self.bb += y * y;
            self.ab += x * y;
            self.dd += d * d;
            self.max_abs = self.max_abs.max(d.abs());
        }
    }
}

/// Element ranges aligned to both sides' blocks and, where a side is row-permuted, to rows.
fn work_items(elements: u64, align: u64) -> (Vec<Range<u64>>, u64) {
    let chunk = (CHUNK_ELEMENTS / align).max(1) * align;
    let batch = (BATCH as u64 / align).max(1) * align;
    let ranges = (0..elements.div_ceil(chunk))
        .map(|i| i * chunk..((i + 1) * chunk).min(elements))
        .collect();
    (ranges, batch)
}

fn lcm(a: u64, b: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    a / gcd(a, b) * b
}

/// Compares every tensor of `a` with the tensor of the same Hub name in `b`. The result is
/// sorted most-changed first (largest relative change, then shape changes, then tensors only
/// in A, then only in B). `progress` receives the stored bytes of A each work item covered.
pub fn diff<'a>(
    a: &'a HubView,
    b: &'a HubView,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<TensorDiff>> {
    let mut names: Vec<&String> = a.entries.keys().chain(b.entries.keys()).collect();
    names.sort();
    names.dedup();

    let mut results: Vec<TensorDiff> = Vec::with_capacity(names.len());
    let mut pairs: Vec<(usize, Side, Side, u64, u64)> = Vec::new();
    for name in names {
        let ea = a.entries.get(name);
        let eb = b.entries.get(name);
        let ia = ea.and_then(|e| a.checkpoint.info(&e.stored));
        let ib = eb.and_then(|e| b.checkpoint.info(&e.stored));
        let status = match (ea, eb) {
            (Some(x), Some(y)) if x.shape == y.shape => DiffStatus::Compared,
            (Some(_), Some(_)) => DiffStatus::ShapeChanged,
            (Some(_), None) => DiffStatus::OnlyInA,
            _ => DiffStatus::OnlyInB,
        };
        results.push(TensorDiff {
            name: name.clone(),
            stored_name_a: ea.map(|e| e.stored.clone()),
            stored_name_b: eb.map(|e| e.stored.clone()),
            status,
            shape_a: ea.map(|e| e.shape.clone()),
            shape_b: eb.map(|e| e.shape.clone()),
            dtype_a: ia.map(|t| t.dtype.to_string()),
            dtype_b: ib.map(|t| t.dtype.to_string()),
            relative_change: None,
            cosine: None,
            max_abs_diff: None,
            norm_a: None,
            norm_b: None,
            norm_diff: None,
            non_finite_pairs: 0,
            non_finite_changed: 0,
        });
        if let (DiffStatus::Compared, Some(ea), Some(eb), Some(ia), Some(ib)) =
            (status, ea, eb, ia, ib)
        {
            let elements = ea.elements.end - ea.elements.start;
            let cols = ea.shape.last().copied().unwrap_or(1).max(1) as u64;
            let side =
                |view: &'a HubView, entry: &'a ViewEntry, info: &TensorInfo| -> Result<Side<'a>> {
                    let source = ElementSource::of(view.checkpoint, info)?;
                    let rows = elements / cols;
                    let in_range = entry.elements.end <= source.elements
                        && entry.elements.end - entry.elements.start == elements;
                    let order_ok = entry.row_order.as_ref().is_none_or(|o| {
                        o.len() as u64 == rows && o.iter().all(|&r| (r as u64) < rows)
                    });
                    if !in_range || !order_ok {
                        return Err(crate::FormatError::invalid(
                            &view.checkpoint.path,
                            format!(
                                "tensor `{}`: its Hub view does not fit its {rows} rows",
                                info.name
                            ),
                        ));
                    }
                    Ok(Side {
                        source,
                        offset: entry.elements.start,
                        rows: entry.row_order.as_deref().map(|o| (cols, o)),
                        shift: entry.shift,
                    })
                };
            let (sa, sb) = (side(a, ea, ia)?, side(b, eb, ib)?);
            let (block_a, block_b) = (
                sa.source.dtype.block().0 as u64,
                sb.source.dtype.block().0 as u64,
            );
            let mut align = lcm(block_a, block_b);
            if sa.rows.is_some() || sb.rows.is_some() {
                align = lcm(align, cols);
            }
            pairs.push((results.len() - 1, sa, sb, align, elements));
        }
    }

    let mut work: Vec<(usize, Range<u64>, u64)> = Vec::new();
    for (p, (.., align, elements)) in pairs.iter().enumerate() {
        let (ranges, batch) = work_items(*elements, *align);
        work.extend(ranges.into_iter().map(|r| (p, r, batch)));
    }
    let releaser = PageReleaser::new();
    let partial: Vec<(usize, PairSums)> = work
        .into_par_iter()
        .map(|(p, range, batch)| {
            let (_, sa, sb, ..) = &pairs[p];
            let (mut buf_a, mut buf_b, mut row) = (Vec::new(), Vec::new(), Vec::new());
            let mut sums = PairSums::default();
            let mut start = range.start;
            while start < range.end {
                let end = (start + batch).min(range.end);
                sa.decode(start..end, &mut buf_a, &mut row);
                sb.decode(start..end, &mut buf_b, &mut row);
                sums = sums.merge(PairSums::of_batch(&buf_a, &buf_b));
                start = end;
            }
            for side in [sa, sb] {
                // Row-permuted sides read scattered rows: left to the OS.
                if side.rows.is_none() {
                    let stored = range.start + side.offset..range.end + side.offset;
                    releaser.release(&side.source.bytes[side.source.byte_range(&stored)]);
                }
            }
            progress(
                sa.source
                    .dtype
                    .bytes_for(range.end - range.start)
                    .unwrap_or(0),
            );
            (p, sums)
        })
        .collect();
    let mut totals = vec![PairSums::default(); pairs.len()];
    for (p, s) in partial {
        totals[p] = totals[p].merge(s);
    }
    for ((index, ..), sums) in pairs.iter().zip(totals) {
        let r = &mut results[*index];
        let (na, nb, nd) = (sums.aa.sqrt(), sums.bb.sqrt(), sums.dd.sqrt());
        r.norm_a = Some(na);
        r.norm_b = Some(nb);
        r.norm_diff = Some(nd);
        r.max_abs_diff = Some(sums.max_abs);
        r.non_finite_pairs = sums.non_finite;
        r.non_finite_changed = sums.non_finite_changed;
        r.relative_change = if na > 0.0 {
            Some(nd / na)
        } else if nd == 0.0 {
            Some(0.0)
        } else {
            None
        };
        r.cosine = (na > 0.0 && nb > 0.0).then(|| (sums.ab / (na * nb)).clamp(-1.0, 1.0));
    }
    results.sort_by(|x, y| {
        order_key(x)
            .total_cmp(&order_key(y))
            .then_with(|| x.name.cmp(&y.name))
    });
    Ok(results)
}

/// Sort key, smallest first: compared tensors by decreasing change (an infinite change —
/// A zero, B not, or a NaN or infinity on one side only — first), then shape changes, then
/// tensors on one side only.
fn order_key(d: &TensorDiff) -> f64 {
    match d.status {
        DiffStatus::Compared if d.non_finite_changed > 0 => f64::NEG_INFINITY,
        DiffStatus::Compared => -d.relative_change.unwrap_or(f64::INFINITY),
        DiffStatus::ShapeChanged => 1.0,
        DiffStatus::OnlyInA => 2.0,
        DiffStatus::OnlyInB => 3.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_sums_are_exact_for_near_identical_tensors() {
        let a: Vec<f32> = (0..1000).map(|i| 1.0e3 + i as f32).collect();
        let mut b = a.clone();
        b[10] += 0.5;
        let s = PairSums::of_batch(&a, &b);
        assert_eq!(s.dd.sqrt(), 0.5);
        assert_eq!(s.max_abs, 0.5);
    }

    #[test]
    fn non_finite_pairs_are_counted_and_left_out() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let mut b = a.clone();
        b[3] = f32::NAN;
        b[20] = f32::INFINITY;
        b[36] += 2.0;
        let s = PairSums::of_batch(&a, &b);
        assert_eq!((s.non_finite, s.dd, s.max_abs), (2, 4.0, 2.0));
        assert_eq!(s.non_finite_changed, 2);
        // The same non-finite values on both sides are no change; opposite infinities are.
        let mut c = b.clone();
        c[20] = f32::NEG_INFINITY;
        let same = PairSums::of_batch(&b, &b);
        assert_eq!(
            (same.non_finite, same.non_finite_changed, same.dd),
            (2, 0, 0.0)
        );
        assert_eq!(PairSums::of_batch(&b, &c).non_finite_changed, 1);
        let finite_sq: f64 = (0..37)
            .filter(|&i| i != 3 && i != 20)
            .map(|i| (i * i) as f64)
            .sum();
        assert_eq!(s.aa, finite_sq);
    }

    #[test]
    fn alignment_respects_blocks_and_rows() {
        assert_eq!(lcm(256, 32), 256);
        assert_eq!(lcm(1, 48), 48);
        let (ranges, batch) = work_items(10 * 48, 48);
        assert!(ranges.iter().all(|r| r.start % 48 == 0));
        assert_eq!(batch % 48, 0);
    }
}

/// The counts of a diff (taken before any `--top` cut).
#[derive(Clone, Debug, Serialize)]
pub struct DiffSummary {
    pub compared: usize,
    /// Compared with zero difference (and the same NaNs and infinities, if any).
    pub identical: usize,
    pub shape_changed: usize,
    pub only_in_a: usize,
    pub only_in_b: usize,
    pub max_relative_change: Option<f64>,
}

impl DiffSummary {
    pub fn of(diffs: &[TensorDiff]) -> DiffSummary {
        let count = |s: DiffStatus| diffs.iter().filter(|d| d.status == s).count();
        DiffSummary {
            compared: count(DiffStatus::Compared),
            identical: diffs
                .iter()
                .filter(|d| {
                    d.status == DiffStatus::Compared
                        && d.norm_diff == Some(0.0)
                        && d.non_finite_changed == 0
                })
                .count(),
            shape_changed: count(DiffStatus::ShapeChanged),
            only_in_a: count(DiffStatus::OnlyInA),
            only_in_b: count(DiffStatus::OnlyInB),
            max_relative_change: diffs
                .iter()
                .filter(|d| d.status == DiffStatus::Compared)
                .filter_map(|d| d.relative_change)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
        }
    }
}

/// The document `glassbox diff A B --json` prints (`diffs` already cut to `--top`).
pub fn document(
    a: &str,
    b: &str,
    view_a: &HubView,
    view_b: &HubView,
    summary: &DiffSummary,
    diffs: &[TensorDiff],
) -> serde_json::Value {
    serde_json::json!({
        "a": a,
        "b": b,
        "summary": summary,
        "tensors": diffs,
        "unmapped": {
            "a": view_a.unmapped.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "b": view_b.unmapped.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        },
    })
}
