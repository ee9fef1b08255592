//! [`CheckpointBackend`]: serves a [`Checkpoint`]'s tensors to a `candle_nn::VarBuilder`.
//!
//! Tensor names are the checkpoint's own (Hub names). Each tensor is read from the memory map
//! when a model asks for it, checked against the shape the model expects, and converted to the
//! requested dtype. Once copied, the tensor's mapped pages are handed back to the OS, so loading
//! peaks near the size of the weights rather than twice it.
//!
//! Mixture-of-experts weights come in two storage forms from transformers 5: one tensor per
//! expert (`experts.{e}.gate_proj.weight`, what `save_pretrained` writes by default, and what
//! the Hub holds), or fused 3-D tensors (`experts.gate_up_proj` [experts, 2·ff, d] with each
//! expert's gate rows before its up rows, and `experts.down_proj` [experts, d, ff]; what
//! `save_pretrained(save_original_format=False)` writes). The fused form is served under the
//! per-expert names, each expert read from its own bytes, so model code knows one form.
//!
//! Llama 4 and gpt-oss store their stacks the other way round, input first:
//! `experts.gate_up_proj` [experts, d, 2·ff] and `experts.down_proj` [experts, ff, d]; every
//! stack is therefore also served whole per expert as `experts.{e}.gate_up_proj` and
//! `experts.{e}.down_proj`, the family's shape check telling the layouts apart. gpt-oss'
//! published checkpoints hold the stacks in MXFP4 (`{name}_blocks` [experts, out, in/32, 16]
//! bytes of 4-bit E2M1 pairs, low nibble first, and `{name}_scales` [experts, out, in/32] E8M0
//! exponents, biased by 127), served under the same per-expert names as [in, out] f32,
//! dequantized from that expert's bytes only (as transformers' `convert_moe_packed_tensors`).

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use glassbox_formats::stats::PageReleaser;
use glassbox_formats::Checkpoint;

/// A [`SimpleBackend`] over an opened checkpoint.
pub struct CheckpointBackend {
    pub checkpoint: Arc<Checkpoint>,
    releaser: PageReleaser,
    /// Per-expert names served from fused expert tensors (module docs).
    fused: HashMap<String, ExpertSlice>,
}

/// Where one expert's matrix lies in a fused tensor.
#[derive(Clone, Debug)]
enum ExpertSlice {
    /// Rows `rows` of expert `expert` in `source` [experts, rows, cols].
    Rows(ExpertRows),
    /// Expert `expert` of the MXFP4 pair `{source}_blocks` / `{source}_scales`, transposed to
    /// [in, out].
    Mxfp4 { source: String, expert: usize },
}

#[derive(Clone, Debug)]
struct ExpertRows {
    source: String,
    expert: usize,
    rows: std::ops::Range<usize>,
}

/// The values of the 16 E2M1 codes.
const FP4_VALUES: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

impl CheckpointBackend {
    pub fn new(checkpoint: Checkpoint) -> Self {
        let fused = fused_experts(&checkpoint);
        // Created after the checkpoint, so that its mappings are the ones it knows.
        CheckpointBackend {
            checkpoint: Arc::new(checkpoint),
            releaser: PageReleaser::new(),
            fused,
        }
    }

    /// One expert's matrix of a fused tensor, decoded from its own bytes only.
    fn expert_slice(&self, name: &str, slice: &ExpertSlice, dev: &Device) -> Result<Tensor> {
        match slice {
            ExpertSlice::Rows(rows) => self.expert_rows(name, rows, dev),
            ExpertSlice::Mxfp4 { source, expert } => self.expert_mxfp4(name, source, *expert, dev),
        }
    }

    /// Expert `expert` of the MXFP4 tensor `source`, as [in, out] f32.
    fn expert_mxfp4(
        &self,
        name: &str,
        source: &str,
        expert: usize,
        dev: &Device,
    ) -> Result<Tensor> {
        let msg = |m: String| candle_core::Error::Msg(format!("`{source}_blocks` ({name}): {m}"));
        let (blocks_name, scales_name) = (format!("{source}_blocks"), format!("{source}_scales"));
        let (Some(blocks), Some(scales)) = (
            self.checkpoint.info(&blocks_name),
            self.checkpoint.info(&scales_name),
        ) else {
            return Err(msg("missing blocks or scales".into()));
        };
        let (experts, out, groups) = match (&blocks.shape[..], &scales.shape[..]) {
            ([e, o, g, 16], [e2, o2, g2]) if (e, o, g) == (e2, o2, g2) => (*e, *o, *g),
            _ => {
                return Err(msg(format!(
                    "shapes {:?} and {:?} are not [experts, out, groups, 16] and [experts, out, groups]",
                    blocks.shape, scales.shape
                )))
            }
        };
        if blocks.dtype != glassbox_formats::DType::U8
            || scales.dtype != glassbox_formats::DType::U8
        {
            return Err(msg("blocks and scales must be U8".into()));
        }
        let per_expert = out * groups;
        let block_bytes = self
            .checkpoint
            .raw_bytes(&blocks_name)
            .map_err(|e| msg(e.to_string()))?;
        let scale_bytes = self
            .checkpoint
            .raw_bytes(&scales_name)
            .map_err(|e| msg(e.to_string()))?;
        if expert >= experts
            || block_bytes.len() < experts * per_expert * 16
            || scale_bytes.len() < experts * per_expert
        {
            return Err(msg("expert outside the tensor".into()));
        }
        let blocks = &block_bytes[expert * per_expert * 16..(expert + 1) * per_expert * 16];
        let scales = &scale_bytes[expert * per_expert..(expert + 1) * per_expert];
        let d_in = groups * 32;
        // Written transposed, [in, out], the layout the model multiplies with.
        let mut values = vec![0f32; d_in * out];
        for (block, (codes, &scale)) in blocks.chunks_exact(16).zip(scales).enumerate() {
            let (row, group) = (block / groups, block % groups);
            let factor = 2f32.powi(scale as i32 - 127);
            for (j, &byte) in codes.iter().enumerate() {
                let col = group * 32 + 2 * j;
                values[col * out + row] = FP4_VALUES[(byte & 0x0F) as usize] * factor;
                values[(col + 1) * out + row] = FP4_VALUES[(byte >> 4) as usize] * factor;
            }
        }
        Tensor::from_vec(values, (d_in, out), dev)
    }

    /// One expert's rows of a fused tensor, decoded from their own bytes only.
    fn expert_rows(&self, name: &str, slice: &ExpertRows, dev: &Device) -> Result<Tensor> {
        let msg = |m: String| candle_core::Error::Msg(format!("`{}` ({name}): {m}", slice.source));
        let info = self
            .checkpoint
            .info(&slice.source)
            .ok_or_else(|| msg("missing".into()))?;
        let bytes = self
            .checkpoint
            .raw_bytes(&slice.source)
            .map_err(|e| msg(e.to_string()))?;
        let (experts, rows, cols) = match info.shape[..] {
            [e, r, c] => (e, r, c),
            _ => {
                return Err(msg(format!(
                    "shape {:?} is not [experts, rows, cols]",
                    info.shape
                )))
            }
        };
        // Rows are whole blocks for every type a Hub checkpoint stores (one element each).
        let row_bytes = info.dtype.bytes_for(cols as u64).ok_or_else(|| {
            msg(format!(
                "a row of {cols} is not whole {} blocks",
                info.dtype
            ))
        })? as usize;
        let start = (slice.expert * rows + slice.rows.start) * row_bytes;
        let end = (slice.expert * rows + slice.rows.end) * row_bytes;
        if slice.expert >= experts || slice.rows.end > rows || end > bytes.len() {
            return Err(msg("expert rows outside the tensor".into()));
        }
        let values = glassbox_formats::to_f32(info.dtype, &bytes[start..end])
            .ok_or_else(|| msg(format!("dtype {} cannot be read as numbers", info.dtype)))?;
        Tensor::from_vec(values, (slice.rows.len(), cols), dev)
    }
}

/// More experts in one layer than any released model has (DeepSeek-V3: 256, Qwen3-Next: 512).
const MAX_EXPERTS: usize = 4096;

/// The per-expert names the fused expert tensors of `checkpoint` stand for.
fn fused_experts(checkpoint: &Checkpoint) -> HashMap<String, ExpertSlice> {
    let mut fused = HashMap::new();
    for info in checkpoint.tensors() {
        if let Some(source) = info.name.strip_suffix("_blocks") {
            gpt_oss_mxfp4(checkpoint, source, &mut fused);
            continue;
        }
        stacked_slabs(checkpoint, &info.name, &mut fused);
        let [experts, rows, cols] = info.shape[..] else {
            continue;
        };
        // A header may claim any shape: only plausible expert stacks are expanded into names
        // (no model has thousands of experts per layer, and an empty tensor has none).
        if experts == 0 || experts > MAX_EXPERTS || rows == 0 || cols == 0 {
            continue;
        }
        let (prefix, parts): (&str, &[(&str, bool)]) =
            if let Some(p) = info.name.strip_suffix(".experts.gate_up_proj") {
                (p, &[("gate_proj", true), ("up_proj", false)])
            } else if let Some(p) = info.name.strip_suffix(".experts.down_proj") {
                (p, &[("down_proj", true)])
            } else if let Some(p) = info.name.strip_suffix(".experts.up_proj") {
                // Nemotron-H's ungated experts [experts, ff, d]
                (p, &[("up_proj", true)])
            } else {
                continue;
            };
        let half = if parts.len() == 2 { rows / 2 } else { rows };
        if parts.len() == 2 && rows % 2 != 0 {
            continue; // not a gate/up pair; the model's shape check names the tensor
        }
        for expert in 0..experts {
            for (i, (part, _)) in parts.iter().enumerate() {
                fused.insert(
                    format!("{prefix}.experts.{expert}.{part}.weight"),
                    ExpertSlice::Rows(ExpertRows {
                        source: info.name.clone(),
                        expert,
                        rows: i * half..(i + 1) * half,
                    }),
                );
            }
        }
    }
    fused
}

/// `{prefix}.experts.gate_up_proj` or `.down_proj` if `name` is one, else None.
fn expert_stack(name: &str) -> Option<(&str, &str)> {
    ["gate_up_proj", "down_proj"].into_iter().find_map(|part| {
        name.strip_suffix(part)
            .and_then(|p| p.strip_suffix(".experts."))
            .map(|prefix| (prefix, part))
    })
}

/// Every expert's whole matrix of a stack `name` as `{prefix}.experts.{e}.{part}`, for
/// families that store them [experts, in, out] (gpt-oss, Llama 4); the model's shape check
/// tells the layouts apart.
fn stacked_slabs(checkpoint: &Checkpoint, name: &str, fused: &mut HashMap<String, ExpertSlice>) {
    let Some((prefix, part)) = expert_stack(name) else {
        return;
    };
    let Some(info) = checkpoint.info(name) else {
        return;
    };
    let [experts, rows, cols] = info.shape[..] else {
        return;
    };
    if experts == 0 || experts > MAX_EXPERTS || rows == 0 || cols == 0 {
        return;
    }
    for expert in 0..experts {
        fused.insert(
            format!("{prefix}.experts.{expert}.{part}"),
            ExpertSlice::Rows(ExpertRows {
                source: name.to_string(),
                expert,
                rows: 0..rows,
            }),
        );
    }
}

/// gpt-oss' MXFP4 expert stack `{source}_blocks` / `{source}_scales`, served per expert.
fn gpt_oss_mxfp4(checkpoint: &Checkpoint, source: &str, fused: &mut HashMap<String, ExpertSlice>) {
    let Some((prefix, part)) = expert_stack(source) else {
        return;
    };
    let Some(info) = checkpoint.info(&format!("{source}_blocks")) else {
        return;
    };
    let experts = info.shape.first().copied().unwrap_or(0);
    if experts == 0 || experts > MAX_EXPERTS || !checkpoint.contains(&format!("{source}_scales")) {
        return;
    }
    for expert in 0..experts {
        fused.insert(
            format!("{prefix}.experts.{expert}.{part}"),
            ExpertSlice::Mxfp4 {
                source: source.to_string(),
                expert,
            },
        );
    }
}

impl SimpleBackend for CheckpointBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &shape {
            candle_core::bail!(
                "tensor `{name}` has shape {:?}, the config implies {:?}",
                t.dims(),
                shape.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Some(slice) = self.fused.get(name) {
            return self.expert_slice(name, slice, dev)?.to_dtype(dtype);
        }
        if !self.checkpoint.contains(name) {
            candle_core::bail!("missing tensor `{name}`");
        }
        let t = self
            .checkpoint
            .tensor(name, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        // The tensor owns a copy now: the mapped bytes need not stay resident.
        if let Ok(bytes) = self.checkpoint.raw_bytes(name) {
            self.releaser.release(bytes);
        }
        t.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.checkpoint.contains(name) || self.fused.contains_key(name)
    }
}
