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
    fused: HashMap<String, ExpertRows>,
}

/// Rows `rows` of expert `expert` in the fused tensor `source` [experts, rows, cols].
#[derive(Clone, Debug)]
struct ExpertRows {
    source: String,
    expert: usize,
    rows: std::ops::Range<usize>,
}

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
fn fused_experts(checkpoint: &Checkpoint) -> HashMap<String, ExpertRows> {
    let mut fused = HashMap::new();
    for info in checkpoint.tensors() {
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
                    ExpertRows {
                        source: info.name.clone(),
                        expert,
                        rows: i * half..(i + 1) * half,
                    },
                );
            }
        }
    }
    fused
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
            return self.expert_rows(name, slice, dev)?.to_dtype(dtype);
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
