//! [`CheckpointBackend`]: serves a [`Checkpoint`]'s tensors to a `candle_nn::VarBuilder`.
//!
//! Tensor names are the checkpoint's own (Hub names). Each tensor is read from the memory map
//! when a model asks for it, checked against the shape the model expects, and converted to the
//! requested dtype. Once copied, the tensor's mapped pages are handed back to the OS, so loading
//! peaks near the size of the weights rather than twice it.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use glassbox_formats::stats::PageReleaser;
use glassbox_formats::Checkpoint;

/// A [`SimpleBackend`] over an opened checkpoint.
pub struct CheckpointBackend {
    pub checkpoint: Arc<Checkpoint>,
    releaser: PageReleaser,
}

impl CheckpointBackend {
    pub fn new(checkpoint: Checkpoint) -> Self {
        // Created after the checkpoint, so that its mappings are the ones it knows.
        CheckpointBackend {
            checkpoint: Arc::new(checkpoint),
            releaser: PageReleaser::new(),
        }
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
        self.checkpoint.contains(name)
    }
}
