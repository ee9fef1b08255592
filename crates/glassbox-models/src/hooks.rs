//! One hook mechanism for every architecture.
//!
//! A model calls [`Hooks::point`] at every hook point with the point's TransformerLens name and
//! the activation. With no hook set that call returns the activation untouched before even
//! formatting the name, so an unhooked forward pass pays nothing. Otherwise the registered
//! hooks whose filter matches the name run in registration order — each may replace the
//! activation — and, if the name passes the cache filter, the final value (what the rest of
//! the model sees) is stored in the [`ActivationCache`].
//!
//! Shapes are batch first, as in TransformerLens: `[batch, pos, d]` for residual-like points,
//! `[batch, pos, head, d_head]` for `attn.hook_q/k/v/z`, `[batch, head, q_pos, k_pos]` for
//! `attn.hook_attn_scores` and `attn.hook_pattern`. [`Layout::of`] derives the layout from
//! the name, so interventions can select positions or heads on any point.
//!
//! A [`Splice`] (a sparse autoencoder) replaces the activation at one hook point with its own
//! computation, whose hook points are named under that point (`{point}.hook_sae_acts_post`)
//! and go through the same hooks: they can be cached and written like the model's own.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Result, Tensor};
use globset::{Glob, GlobSet, GlobSetBuilder};

/// A set of hook names: exact names or globs (`blocks.*.hook_resid_post`, `*hook_pattern`, `*`).
#[derive(Clone, Debug)]
pub struct NameFilter {
    set: GlobSet,
    patterns: Vec<String>,
}

impl NameFilter {
    /// Parses comma-separated or listed glob patterns.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> std::result::Result<Self, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for p in patterns {
            for part in p
                .as_ref()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                builder.add(Glob::new(part)?);
                kept.push(part.to_string());
            }
        }
        Ok(NameFilter {
            set: builder.build()?,
            patterns: kept,
        })
    }

    /// Matches every hook.
    pub fn all() -> Self {
        Self::new(&["*"]).expect("`*` is a valid glob")
    }

    pub fn matches(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// How a hook point's tensor is laid out, for position and head selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Dimension indexing (query) positions, if any.
    pub pos_dim: Option<usize>,
    /// Dimension indexing heads, if any.
    pub head_dim: Option<usize>,
}

impl Layout {
    /// The layout TransformerLens gives the hook of this name.
    pub fn of(name: &str) -> Layout {
        let last = name.rsplit('.').next().unwrap_or(name);
        match last {
            "hook_q" | "hook_k" | "hook_v" | "hook_z" | "hook_result" | "hook_rot_q"
            | "hook_rot_k" => Layout {
                pos_dim: Some(1),
                head_dim: Some(2),
            },
            "hook_attn_scores" | "hook_pattern" => Layout {
                pos_dim: Some(2),
                head_dim: Some(1),
            },
            _ => Layout {
                pos_dim: Some(1),
                head_dim: None,
            },
        }
    }
}

/// Which part of an activation an intervention touches.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Selection {
    #[default]
    All,
    Positions(Vec<usize>),
    Heads(Vec<usize>),
    PositionsAndHeads {
        positions: Vec<usize>,
        heads: Vec<usize>,
    },
}

/// A write to an activation.
#[derive(Clone, Debug)]
pub enum Intervention {
    /// Replace with this tensor (broadcast to the activation's shape).
    Replace(Tensor),
    /// Add this tensor (broadcast).
    Add(Tensor),
    /// Multiply by a scalar.
    Scale(f64),
    /// Set to zero.
    Zero,
}

impl Intervention {
    /// Applies the intervention to `t` where `selection` says, under the layout of `name`.
    pub fn apply(&self, name: &str, t: &Tensor, selection: &Selection) -> Result<Tensor> {
        let edited = match self {
            Intervention::Replace(r) => r
                .to_dtype(t.dtype())?
                .broadcast_as(t.shape())?
                .contiguous()?,
            Intervention::Add(a) => t.broadcast_add(&a.to_dtype(t.dtype())?)?,
            Intervention::Scale(s) => (t * *s)?,
            Intervention::Zero => t.zeros_like()?,
        };
        match selection_mask(name, t, selection)? {
            None => Ok(edited),
            Some(mask) => mask.where_cond(&edited, t),
        }
    }
}

/// A u8 mask broadcastable to `t` that is 1 where `selection` applies, or None for all.
fn selection_mask(name: &str, t: &Tensor, selection: &Selection) -> Result<Option<Tensor>> {
    let layout = Layout::of(name);
    let dims = t.dims();
    let axis_mask = |axis: Option<usize>, idx: &[usize], what: &str| -> Result<Tensor> {
        let axis = axis.ok_or_else(|| {
            candle_core::Error::Msg(format!("hook `{name}` has no {what} dimension to select"))
        })?;
        let n = dims[axis];
        let mut m = vec![0u8; n];
        for &i in idx {
            if i >= n {
                candle_core::bail!("hook `{name}`: {what} {i} out of range (size {n})");
            }
            m[i] = 1;
        }
        let mut shape = vec![1usize; dims.len()];
        shape[axis] = n;
        Tensor::from_vec(m, shape, t.device())
    };
    let mask = match selection {
        Selection::All => return Ok(None),
        Selection::Positions(p) => axis_mask(layout.pos_dim, p, "position")?,
        Selection::Heads(h) => axis_mask(layout.head_dim, h, "head")?,
        Selection::PositionsAndHeads { positions, heads } => {
            let a = axis_mask(layout.pos_dim, positions, "position")?;
            let b = axis_mask(layout.head_dim, heads, "head")?;
            a.broadcast_mul(&b)?
        }
    };
    Ok(Some(mask.broadcast_as(dims)?.contiguous()?))
}

/// A user hook: sees the activation and its name, may return a replacement.
pub type HookFn<'a> = Box<dyn FnMut(&str, &Tensor) -> Result<Option<Tensor>> + 'a>;

/// Activations recorded during a forward pass, indexed by hook name, in the order computed.
#[derive(Default, Clone, Debug)]
pub struct ActivationCache {
    order: Vec<String>,
    map: HashMap<String, Tensor>,
}

impl ActivationCache {
    pub fn insert(&mut self, name: String, t: Tensor) {
        if self.map.insert(name.clone(), t).is_none() {
            self.order.push(name);
        }
    }
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }
    /// Like `get`, but an error naming the missing hook.
    pub fn require(&self, name: &str) -> Result<&Tensor> {
        self.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!("activation `{name}` is not in the cache"))
        })
    }
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
    /// Hook names in the order they were computed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.order.iter().map(|n| (n.as_str(), &self.map[n]))
    }
    pub fn len(&self) -> usize {
        self.order.len()
    }
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        let t = self.map.remove(name)?;
        self.order.retain(|n| n != name);
        Some(t)
    }
    /// Total bytes held.
    pub fn bytes(&self) -> usize {
        self.map
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }
}

impl std::ops::Index<&str> for ActivationCache {
    type Output = Tensor;
    fn index(&self, name: &str) -> &Tensor {
        match self.map.get(name) {
            Some(t) => t,
            None => panic!("activation `{name}` is not in the cache"),
        }
    }
}

/// A computation spliced in at a hook point, as SAELens splices a sparse autoencoder into
/// TransformerLens' hook point: it receives the activation after the point's own hooks ran and
/// returns what the rest of the model sees. Its inner points go through `hooks` under names
/// built from `point`.
pub trait Splice: Send + Sync {
    fn splice(&self, point: &str, x: Tensor, hooks: &mut Hooks) -> Result<Tensor>;
}

/// The hooks of one forward pass: writers (interventions and user functions), splices and a
/// cache.
#[derive(Default)]
pub struct Hooks<'a> {
    writers: Vec<(NameFilter, Writer<'a>)>,
    /// Splices by the exact hook name they replace, applied in order.
    splices: Vec<(String, Arc<dyn Splice>)>,
    cache_filter: Option<NameFilter>,
    /// End the pass after this point (TransformerLens' `stop_at_layer`, by hook name).
    stop_after: Option<String>,
    stopped: bool,
    /// Cache activations detached from the autograd graph, floats converted to f32
    /// (integers, such as routed experts' indices, kept).
    pub cache: ActivationCache,
}

enum Writer<'a> {
    Fixed(Intervention, Selection),
    Func(HookFn<'a>),
}

impl<'a> Hooks<'a> {
    /// No hooks: the forward pass runs at full speed.
    pub fn none() -> Self {
        Self::default()
    }

    /// Caches every hook whose name passes `filter`.
    pub fn caching(filter: NameFilter) -> Self {
        Hooks {
            cache_filter: Some(filter),
            ..Self::default()
        }
    }

    pub fn set_cache_filter(&mut self, filter: Option<NameFilter>) {
        self.cache_filter = filter;
    }

    /// Adds an intervention at every hook matching `filter`.
    pub fn intervene(
        &mut self,
        filter: NameFilter,
        what: Intervention,
        selection: Selection,
    ) -> &mut Self {
        self.writers.push((filter, Writer::Fixed(what, selection)));
        self
    }

    /// Adds a user function at every hook matching `filter`; it may return a replacement.
    pub fn add_fn(
        &mut self,
        filter: NameFilter,
        f: impl FnMut(&str, &Tensor) -> Result<Option<Tensor>> + 'a,
    ) -> &mut Self {
        self.writers.push((filter, Writer::Func(Box::new(f))));
        self
    }

    /// Splices `s` in at the hook point named exactly `point`, after the splices already
    /// there.
    pub fn push_splice(&mut self, point: impl Into<String>, s: Arc<dyn Splice>) -> &mut Self {
        self.splices.push((point.into(), s));
        self
    }

    /// Ends the pass right after the point named exactly `name` has run (its writes, cache and
    /// splices done): the rest of the model is not computed. The pass then returns an error
    /// that [`stopped`](Self::stopped) recognises; `HookedModel::run_until` hides it.
    pub fn stop_after(&mut self, name: impl Into<String>) -> &mut Self {
        self.stop_after = Some(name.into());
        self
    }

    /// Whether the pass ended at the `stop_after` point.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Removes the last `n` splices (those a wrapper pushed for one pass).
    pub fn pop_splices(&mut self, n: usize) {
        let keep = self.splices.len().saturating_sub(n);
        self.splices.truncate(keep);
    }

    /// True when nothing will be read or written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
            && self.cache_filter.is_none()
            && self.splices.is_empty()
            && self.stop_after.is_none()
    }

    /// Whether a hook reads or writes `name` (built only when some hook is set): a model may
    /// then skip materialising an activation no one sees.
    pub fn watches(&self, name: impl FnOnce() -> String) -> bool {
        if self.is_empty() {
            return false;
        }
        let name = name();
        self.writes_name(&name)
            || self.cache_filter.as_ref().is_some_and(|f| f.matches(&name))
            || self.stop_after.as_deref() == Some(name.as_str())
    }

    /// Whether a hook may change `name`'s value (a writer or splice there; a hook function may
    /// edit the tensor in place without returning it): a model that keeps a fast path for an
    /// unchanged value must then take the slow one.
    pub fn writes(&self, name: impl FnOnce() -> String) -> bool {
        if self.writers.is_empty() && self.splices.is_empty() {
            return false;
        }
        self.writes_name(&name())
    }

    fn writes_name(&self, name: &str) -> bool {
        self.writers.iter().any(|(f, _)| f.matches(name))
            || self.splices.iter().any(|(p, _)| p == name)
    }

    /// Called by models at each hook point. The name is built only when some hook is set.
    /// A computation asked to stop ([`crate::stop`]) fails here.
    #[inline]
    pub fn point(&mut self, name: impl FnOnce() -> String, t: Tensor) -> Result<Tensor> {
        crate::stop::check()?;
        if self.is_empty() {
            return Ok(t);
        }
        self.point_slow(name(), t)
    }

    fn point_slow(&mut self, name: String, mut t: Tensor) -> Result<Tensor> {
        for (filter, writer) in self.writers.iter_mut() {
            if !filter.matches(&name) {
                continue;
            }
            match writer {
                Writer::Fixed(what, sel) => t = what.apply(&name, &t, sel)?,
                Writer::Func(f) => {
                    if let Some(new) = f(&name, &t)? {
                        if new.dims() != t.dims() {
                            candle_core::bail!(
                                "hook `{name}` returned shape {:?}, expected {:?}",
                                new.dims(),
                                t.dims()
                            );
                        }
                        t = new;
                    }
                }
            }
        }
        if let Some(filter) = &self.cache_filter {
            if filter.matches(&name) {
                // floats cached as f32; integers (routed experts' indices) stay integers
                let kept = if t.dtype().is_float() {
                    t.detach().to_dtype(DType::F32)?
                } else {
                    t.detach()
                };
                self.cache.insert(name.clone(), kept);
            }
        }
        // Splices run last, each on what the one before returned; the `Arc` is cloned so
        // that the splice can call back into these hooks for its own points.
        let mut i = 0;
        while i < self.splices.len() {
            if self.splices[i].0 == name {
                let s = Arc::clone(&self.splices[i].1);
                t = s.splice(&name, t, self)?;
            }
            i += 1;
        }
        if self.stop_after.as_deref() == Some(name.as_str()) {
            self.stopped = true;
            candle_core::bail!("the pass stops after `{name}`");
        }
        Ok(t)
    }

    /// Takes the cache out, leaving an empty one.
    pub fn take_cache(&mut self) -> ActivationCache {
        std::mem::take(&mut self.cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn check(name: &str, sel: Selection, what: Intervention, expected: &[f32]) {
        let t = Tensor::arange(1f32, 9., &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 2, 2))
            .unwrap();
        let out = what.apply(name, &t, &sel).unwrap();
        assert_eq!(
            out.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            expected
        );
    }

    #[test]
    fn interventions_select_positions_and_heads() {
        // hook_z is [batch, pos, head, d_head]
        check(
            "blocks.0.attn.hook_z",
            Selection::All,
            Intervention::Zero,
            &[0.; 8],
        );
        check(
            "blocks.0.attn.hook_z",
            Selection::Positions(vec![1]),
            Intervention::Zero,
            &[1., 2., 3., 4., 0., 0., 0., 0.],
        );
        check(
            "blocks.0.attn.hook_z",
            Selection::Heads(vec![0]),
            Intervention::Scale(2.),
            &[2., 4., 3., 4., 10., 12., 7., 8.],
        );
        // hook_pattern is [batch, head, q, k]: heads are dim 1
        check(
            "blocks.0.attn.hook_pattern",
            Selection::Heads(vec![1]),
            Intervention::Zero,
            &[1., 2., 3., 4., 0., 0., 0., 0.],
        );
        check(
            "blocks.0.attn.hook_pattern",
            Selection::Positions(vec![0]),
            Intervention::Zero,
            &[0., 0., 3., 4., 0., 0., 7., 8.],
        );
        let ten = Tensor::new(&[10f32], &Device::Cpu).unwrap();
        check(
            "blocks.0.attn.hook_z",
            Selection::PositionsAndHeads {
                positions: vec![0],
                heads: vec![1],
            },
            Intervention::Add(ten),
            &[1., 2., 13., 14., 5., 6., 7., 8.],
        );
    }

    #[test]
    fn selection_out_of_range_is_an_error() {
        let t = Tensor::zeros((1, 2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(Intervention::Zero
            .apply(
                "blocks.0.hook_resid_pre",
                &t,
                &Selection::Positions(vec![2])
            )
            .is_err());
        assert!(Intervention::Zero
            .apply("blocks.0.hook_resid_pre", &t, &Selection::Heads(vec![0]))
            .is_err());
    }

    #[test]
    fn hooks_cache_after_writes_and_filter_names() {
        let mut hooks = Hooks::caching(NameFilter::new(&["blocks.*.hook_resid_pre"]).unwrap());
        hooks.intervene(
            NameFilter::new(&["blocks.1.*"]).unwrap(),
            Intervention::Scale(3.),
            Selection::All,
        );
        let t = Tensor::ones((1, 1, 2), DType::F32, &Device::Cpu).unwrap();
        for i in 0..2 {
            hooks
                .point(|| format!("blocks.{i}.hook_resid_pre"), t.clone())
                .unwrap();
            hooks
                .point(|| format!("blocks.{i}.hook_resid_post"), t.clone())
                .unwrap();
        }
        let names: Vec<_> = hooks.cache.names().collect();
        assert_eq!(
            names,
            ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
        );
        assert_eq!(
            hooks.cache["blocks.1.hook_resid_pre"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            [3., 3.]
        );
    }

    #[test]
    fn no_hooks_never_builds_a_name() {
        let mut hooks = Hooks::none();
        let t = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
        hooks
            .point(|| panic!("name built with no hook set"), t)
            .unwrap();
    }
}
