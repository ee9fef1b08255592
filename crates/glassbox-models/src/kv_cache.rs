//! [`KvCache`]: keys and values of past positions, for incremental decoding.
//!
//! Each layer keeps its keys and values in preallocated buffers along the position axis,
//! written in place: appending a token copies that token's keys and values only, never the
//! whole cache (capacity doubles when full, so growth costs amortised O(1) per token). The
//! cache hands out views of the filled part. It also counts the positions it holds, which is
//! the position offset of the next forward pass (for rotary and learned position
//! embeddings). Layers with another cache layout (e.g. latent attention) store whatever pair
//! of tensors they need under their layer index. Recurrent layers (linear attention, Mamba)
//! keep a fixed-size state instead ([`state`](KvCache::state)), replaced at every pass.

use candle_core::{Result, Tensor};

/// First allocation, in positions: enough for most prompts without a regrowth.
const INITIAL_CAPACITY: usize = 256;

#[derive(Clone, Debug)]
struct LayerKv {
    /// Buffers with `capacity` positions along `dim`; the first `len` are filled.
    k: Tensor,
    v: Tensor,
    dim: usize,
    len: usize,
    capacity: usize,
    /// Views of the filled part, handed out by `get` and `append`.
    filled: (Tensor, Tensor),
}

/// Per-layer cached keys and values.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    /// Per layer, the recurrent state after the cached positions (e.g. a convolution's last
    /// inputs and an SSM state).
    states: Vec<Option<Vec<Tensor>>>,
    positions: usize,
}

/// A zeroed buffer shaped like `t` but with `capacity` positions along `dim`.
fn buffer_like(t: &Tensor, dim: usize, capacity: usize) -> Result<Tensor> {
    let mut dims = t.dims().to_vec();
    dims[dim] = capacity;
    Tensor::zeros(dims, t.dtype(), t.device())
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
            states: vec![None; n_layers],
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
        self.states.iter_mut().for_each(|s| *s = None);
        self.positions = 0;
    }

    /// The cached pair of `layer`, if any (views of the filled positions).
    pub fn get(&self, layer: usize) -> Option<&(Tensor, Tensor)> {
        self.layers
            .get(layer)
            .and_then(Option::as_ref)
            .map(|l| &l.filled)
    }

    /// The recurrent state of `layer` after the cached positions, if any.
    pub fn state(&self, layer: usize) -> Option<&[Tensor]> {
        self.states.get(layer).and_then(Option::as_deref)
    }

    /// Replaces the recurrent state of `layer`.
    pub fn set_state(&mut self, layer: usize, state: Vec<Tensor>) {
        if layer >= self.states.len() {
            self.states.resize(layer + 1, None);
        }
        self.states[layer] = Some(state);
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
        let (k, v) = (k.contiguous()?, v.contiguous()?);
        let add = k.dim(dim)?;
        let slot = &mut self.layers[layer];
        let needs_new = match slot {
            None => true,
            Some(l) => l.dim != dim || l.len + add > l.capacity,
        };
        if needs_new {
            let old = slot.take();
            let len = old.as_ref().map_or(0, |l| l.len);
            let capacity = (2 * (len + add)).max(INITIAL_CAPACITY);
            let kb = buffer_like(&k, dim, capacity)?;
            let vb = buffer_like(&v, dim, capacity)?;
            if let Some(old) = old {
                kb.slice_set(&old.k.narrow(dim, 0, len)?.contiguous()?, dim, 0)?;
                vb.slice_set(&old.v.narrow(dim, 0, len)?.contiguous()?, dim, 0)?;
            }
            *slot = Some(LayerKv {
                filled: (kb.narrow(dim, 0, len)?, vb.narrow(dim, 0, len)?),
                k: kb,
                v: vb,
                dim,
                len,
                capacity,
            });
        }
        let l = slot.as_mut().expect("allocated above");
        // In place: positions [len, len + add) are outside every view handed out so far.
        l.k.slice_set(&k, dim, l.len)?;
        l.v.slice_set(&v, dim, l.len)?;
        l.len += add;
        l.filled = (l.k.narrow(dim, 0, l.len)?, l.v.narrow(dim, 0, l.len)?);
        Ok(l.filled.clone())
    }

    /// A new cache holding the first `positions` positions of this one's layers `first_layer..`,
    /// repeated `batch` times along the batch axis (this cache must hold batch 1), with room
    /// for the rest of this cache's positions: the shared prefix from which several runs
    /// continue side by side. Earlier layers are left empty.
    pub fn prefix(&self, positions: usize, batch: usize, first_layer: usize) -> Result<KvCache> {
        if positions > self.positions {
            candle_core::bail!(
                "a prefix of {positions} positions from a cache of {}",
                self.positions
            );
        }
        if self.states.iter().any(Option::is_some) {
            // A recurrent state is the state after all cached positions, not after a prefix.
            candle_core::bail!("a cache holding recurrent states cannot be cut to a prefix");
        }
        let mut out = KvCache::new(self.layers.len());
        out.positions = positions;
        if positions == 0 {
            return Ok(out);
        }
        for (layer, slot) in self.layers.iter().enumerate().skip(first_layer) {
            let Some(l) = slot else { continue };
            let capacity = self.positions.max(positions + 1);
            let repeat = |t: &Tensor| -> Result<Tensor> {
                let part = t.narrow(l.dim, 0, positions)?;
                if part.dim(0)? != 1 {
                    candle_core::bail!("a shared prefix needs a cache of batch 1");
                }
                let mut dims = part.dims().to_vec();
                dims[0] = batch;
                let part = part.broadcast_as(dims)?.contiguous()?;
                let buffer = buffer_like(&part, l.dim, capacity)?;
                buffer.slice_set(&part, l.dim, 0)?;
                Ok(buffer)
            };
            let (k, v) = (repeat(&l.k)?, repeat(&l.v)?);
            out.layers[layer] = Some(LayerKv {
                filled: (
                    k.narrow(l.dim, 0, positions)?,
                    v.narrow(l.dim, 0, positions)?,
                ),
                k,
                v,
                dim: l.dim,
                len: positions,
                capacity,
            });
        }
        Ok(out)
    }

    /// Records that a forward pass added `n` positions (called once per pass by the model).
    pub fn advance(&mut self, n: usize) {
        self.positions += n;
    }

    /// Bytes held by the cache's filled positions and recurrent states.
    pub fn bytes(&self) -> usize {
        let kv: usize = self
            .layers
            .iter()
            .flatten()
            .map(|l| {
                (l.filled.0.elem_count() + l.filled.1.elem_count()) * l.k.dtype().size_in_bytes()
            })
            .sum();
        let states: usize = self
            .states
            .iter()
            .flatten()
            .flatten()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum();
        kv + states
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn a_prefix_is_the_first_positions_repeated_per_batch_row() {
        let dev = Device::Cpu;
        let mut cache = KvCache::new(3);
        let k = Tensor::arange(0f32, 2.0 * 6.0 * 4.0, &dev)
            .unwrap()
            .reshape((1, 2, 6, 4))
            .unwrap();
        for layer in 0..3 {
            cache.append(layer, &k, &(&k * -1.0).unwrap(), 2).unwrap();
        }
        cache.advance(6);
        let mut p = cache.prefix(4, 3, 1).unwrap();
        assert_eq!(p.len(), 4);
        assert!(p.get(0).is_none(), "layers before the first are left empty");
        let want = k
            .i((.., .., 0..4, ..))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for layer in 1..3 {
            let (pk, pv) = p.get(layer).unwrap();
            assert_eq!(pk.dims(), &[3, 2, 4, 4]);
            for b in 0..3 {
                let got = pk
                    .i(b)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                assert_eq!(got, want);
                let neg = pv
                    .i(b)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                assert_eq!(neg, want.iter().map(|v| -v).collect::<Vec<_>>());
            }
        }
        // continuing appends after the prefix, per batch row
        let new = Tensor::ones((3, 2, 2, 4), candle_core::DType::F32, &dev).unwrap();
        let (ck, _) = p.append(1, &new, &new, 2).unwrap();
        assert_eq!(ck.dims(), &[3, 2, 6, 4]);
        assert!(cache.prefix(7, 1, 0).is_err(), "longer than the cache");
        assert!(cache.prefix(0, 2, 0).unwrap().is_empty());
    }

    #[test]
    fn appending_in_place_equals_concatenation_across_regrowth() {
        let dev = Device::Cpu;
        let mut cache = KvCache::new(1);
        let mut all_k: Vec<Tensor> = Vec::new();
        // Prompts and single tokens, past the initial capacity twice.
        let mut total = 0;
        for (step, add) in [5usize, 1, 1, 300, 1, 250, 1].into_iter().enumerate() {
            let k = Tensor::arange(0f32, (2 * 3 * add * 4) as f32, &dev)
                .unwrap()
                .affine(1.0, step as f64 * 1000.0)
                .unwrap()
                .reshape((2, 3, add, 4))
                .unwrap();
            let v = (k.clone() * -1.0).unwrap();
            // A strided source (as attention passes): transposed twice is the same values.
            let k_src = k.transpose(1, 2).unwrap().transpose(1, 2).unwrap();
            let (ck, cv) = cache.append(0, &k_src, &v, 2).unwrap();
            all_k.push(k);
            total += add;
            let want = Tensor::cat(&all_k, 2).unwrap();
            assert_eq!(ck.dims(), &[2, 3, total, 4]);
            let got = ck.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let exp = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got, exp, "after step {step}");
            let neg = (want * -1.0)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(cv.flatten_all().unwrap().to_vec1::<f32>().unwrap(), neg);
        }
        // A view handed out earlier is not disturbed by later appends.
        let early = cache
            .get(0)
            .unwrap()
            .0
            .i((.., .., 0..5, ..))
            .unwrap()
            .copy()
            .unwrap();
        let k = Tensor::ones((2, 3, 1, 4), candle_core::DType::F32, &dev).unwrap();
        cache.append(0, &k, &k, 2).unwrap();
        let again = cache.get(0).unwrap().0.i((.., .., 0..5, ..)).unwrap();
        assert_eq!(
            early.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            again.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!(cache.bytes(), 2 * 2 * 3 * (total + 1) * 4 * 4);
    }
}
