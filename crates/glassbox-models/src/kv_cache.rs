//! [`KvCache`]: keys and values of past positions, for incremental decoding.
//!
//! Each layer keeps its keys and values concatenated along the position axis. The cache also
//! counts the positions it holds, which is the position offset of the next forward pass (for
//! rotary and learned position embeddings). Layers with another cache layout (e.g. latent
//! attention) store whatever pair of tensors they need under their layer index.

use candle_core::{Result, Tensor};

/// Per-layer cached keys and values.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    positions: usize,
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
            positions: 0,
        }
    }

    /// Number of positions cached (the offset of the next token).
    pub fn len(&self) -> usize {
        self.positions
    }

    pub fn is_empty(&self) -> bool {
        self.positions == 0
    }

    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.positions = 0;
    }

    /// The cached pair of `layer`, if any.
    pub fn get(&self, layer: usize) -> Option<&(Tensor, Tensor)> {
        self.layers.get(layer).and_then(Option::as_ref)
    }

    /// Appends `k` and `v` along `dim` to `layer`'s cache and returns the full pair.
    pub fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        dim: usize,
    ) -> Result<(Tensor, Tensor)> {
        if layer >= self.layers.len() {
            self.layers.resize(layer + 1, None);
        }
        let full = match &self.layers[layer] {
            None => (k.clone(), v.clone()),
            Some((pk, pv)) => (Tensor::cat(&[pk, k], dim)?, Tensor::cat(&[pv, v], dim)?),
        };
        self.layers[layer] = Some(full.clone());
        Ok(full)
    }

    /// Records that a forward pass added `n` positions (called once per pass by the model).
    pub fn advance(&mut self, n: usize) {
        self.positions += n;
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
    }
}
