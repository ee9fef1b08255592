//! Where the routed experts' weights live: one by one or stacked, loaded up front or on
//! first use within a memory budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::{GatedMlp, Glu, MlpNames};
use crate::layers::{Activation, Linear, Weight};

/// Reads expert `e` from its checkpoint.
pub type ExpertLoader = Box<dyn Fn(usize) -> Result<GatedMlp> + Send + Sync>;

/// Where the routed experts' weights live.
enum ExpertSource {
    /// Built up front (random init for training, or a checkpoint loaded eagerly).
    Loaded(Vec<Arc<GatedMlp>>),
    /// Read on first use by `load`; kept in `cache` while the total stays under `budget_bytes`.
    Lazy {
        load: ExpertLoader,
        cache: Mutex<HashMap<usize, Arc<GatedMlp>>>,
        budget_bytes: usize,
    },
}

/// The routed experts of one layer.
pub struct ExpertStore {
    source: ExpertSource,
    n_experts: usize,
    d_model: usize,
    d_ff: usize,
}

impl std::fmt::Debug for ExpertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpertStore")
            .field("n_experts", &self.n_experts)
            .field("d_model", &self.d_model)
            .field("d_ff", &self.d_ff)
            .field("lazy", &matches!(self.source, ExpertSource::Lazy { .. }))
            .finish()
    }
}

impl ExpertStore {
    /// Experts stored one by one (`{vb}.{e}.{gate|up|down}.weight`): lazily when the backend
    /// already holds expert 0's weights (a checkpoint), eagerly otherwise (e.g. a fresh
    /// `VarMap`, where loading creates the trainable weights).
    pub fn load(
        vb: VarBuilder<'static>,
        names: MlpNames,
        n_experts: usize,
        d_model: usize,
        d_ff: usize,
        act: Activation,
        budget_bytes: usize,
    ) -> Result<Self> {
        let one =
            move |vb: &VarBuilder, e: usize| GatedMlp::load(vb.pp(e), names, d_model, d_ff, act);
        if !vb.contains_tensor(&format!("0.{}.weight", names.gate)) {
            let experts = (0..n_experts)
                .map(|e| one(&vb, e))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Self::loaded(experts, d_model, d_ff));
        }
        // Every expert's weights must exist, so a truncated checkpoint fails at load time.
        for e in 0..n_experts {
            for part in [names.gate, names.up, names.down] {
                let name = format!("{e}.{part}.weight");
                if !vb.contains_tensor(&name) {
                    candle_core::bail!("missing expert weight `{}.{name}`", vb.prefix());
                }
            }
        }
        let load: ExpertLoader = Box::new(move |e| one(&vb, e));
        Ok(Self::lazy(load, n_experts, d_model, d_ff, budget_bytes))
    }

    /// Experts built up front.
    pub fn loaded(experts: Vec<GatedMlp>, d_model: usize, d_ff: usize) -> Self {
        ExpertStore {
            n_experts: experts.len(),
            source: ExpertSource::Loaded(experts.into_iter().map(Arc::new).collect()),
            d_model,
            d_ff,
        }
    }

    /// Experts read by `load` when a token is first routed to them, kept while their total
    /// stays under `budget_bytes` and read afresh on each use after that.
    pub fn lazy(
        load: ExpertLoader,
        n_experts: usize,
        d_model: usize,
        d_ff: usize,
        budget_bytes: usize,
    ) -> Self {
        // An expert read later is read as it would be now: quantized in place where the
        // GGUF being built from offers it.
        let offered = crate::quantized::offered();
        let load: ExpertLoader =
            Box::new(move |e| crate::quantized::while_offering(offered.clone(), || load(e)));
        ExpertStore {
            source: ExpertSource::Lazy {
                load,
                cache: Mutex::new(HashMap::new()),
                budget_bytes,
            },
            n_experts,
            d_model,
            d_ff,
        }
    }

    pub fn len(&self) -> usize {
        self.n_experts
    }

    pub fn is_empty(&self) -> bool {
        self.n_experts == 0
    }

    /// Bytes one expert's weights take in `dtype`.
    pub fn expert_bytes(&self, dtype: DType) -> usize {
        3 * self.d_model * self.d_ff * dtype.size_in_bytes()
    }

    /// Expert `e`, reading it from the checkpoint if it is not held.
    pub fn get(&self, e: usize) -> Result<Arc<GatedMlp>> {
        if e >= self.n_experts {
            candle_core::bail!("expert {e} out of range ({} experts)", self.n_experts);
        }
        match &self.source {
            ExpertSource::Loaded(v) => Ok(v[e].clone()),
            ExpertSource::Lazy {
                load,
                cache,
                budget_bytes,
            } => {
                let held = |c: &HashMap<usize, Arc<GatedMlp>>| c.get(&e).cloned();
                if let Some(m) = held(&lock(cache)) {
                    return Ok(m);
                }
                // A weight read now that contradicts the config is the input's fault, as it
                // would have been at load time.
                let mlp = Arc::new(load(e).map_err(|err| {
                    // The message without the backtrace candle may have attached.
                    let msg = match &err {
                        candle_core::Error::WithBacktrace { inner, .. } => inner.to_string(),
                        other => other.to_string(),
                    };
                    candle_core::Error::WrappedContext {
                        wrapped: Box::new(crate::error::LazyWeights(format!("expert {e}: {msg}"))),
                        context: "reading an expert's weights on first use".into(),
                    }
                })?);
                let mut c = lock(cache);
                let used: usize = c.values().map(|m| m.bytes()).sum();
                if used + mlp.bytes() <= *budget_bytes {
                    c.insert(e, mlp.clone());
                }
                Ok(mlp)
            }
        }
    }

    /// Number of experts currently held in memory (all of them when loaded eagerly).
    pub fn resident(&self) -> usize {
        match &self.source {
            ExpertSource::Loaded(v) => v.len(),
            ExpertSource::Lazy { cache, .. } => lock(cache).len(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map inconsistent (inserts are atomic).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the gate and up columns share a stacked `gate_up_proj` [experts, d, 2·ff].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateUpColumns {
    /// Gate in the first half, up in the second (Llama 4).
    Halves,
    /// Gate in even columns, up in odd ones (gpt-oss).
    Interleaved,
}

/// Experts stored as stacks with the input dimension first: `gate_up_proj` [experts, d, 2·ff]
/// and `down_proj` [experts, ff, d], with `gate_up_proj_bias` and `down_proj_bias` where
/// `biases` (Llama 4, gpt-oss).
#[derive(Clone, Copy, Debug)]
pub struct StackedExperts {
    pub n_experts: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub columns: GateUpColumns,
    pub biases: bool,
    pub act: Activation,
    pub glu: Glu,
}

impl StackedExperts {
    /// The experts under `vb`: from a checkpoint, each read on first use (the backend serves
    /// `{e}.gate_up_proj` and `{e}.down_proj` per expert, or a GGUF's per-expert
    /// `{e}.{gate,up,down}_proj` projections); when building fresh weights, the
    /// stacks are created whole as trainable variables and each expert is a view of them.
    pub fn load(&self, vb: VarBuilder<'static>, budget: usize) -> Result<ExpertStore> {
        let (n, d, ff) = (self.n_experts, self.d_model, self.d_ff);
        let this = *self;
        // GGUF files: the stacks split per expert and projection (`{e}.gate_proj.weight`
        // [ff, d], …, with `{e}.gate_proj.bias` … where the stacks had biases). Only where no
        // stack is served: a checkpoint backend also unfolds stacks under these names, in the
        // other layout.
        if !vb.contains_tensor("0.gate_up_proj") && vb.contains_tensor("0.gate_proj.weight") {
            let load: ExpertLoader = Box::new(move |e| {
                let vb_e = vb.pp(e);
                Ok(GatedMlp {
                    gate: Some(Linear::load(vb_e.pp("gate_proj"), d, ff, this.biases)?),
                    up: Linear::load(vb_e.pp("up_proj"), d, ff, this.biases)?,
                    down: Linear::load(vb_e.pp("down_proj"), ff, d, this.biases)?,
                    act: this.act,
                    glu: this.glu,
                })
            });
            return Ok(ExpertStore::lazy(load, n, d, ff, budget));
        }
        let biases = if self.biases {
            // Small: read whole, sliced per expert.
            let zero = candle_nn::Init::Const(0.0);
            Some((
                vb.get_with_hints((n, 2 * ff), "gate_up_proj_bias", zero)?,
                vb.get_with_hints((n, d), "down_proj_bias", zero)?,
            ))
        } else {
            None
        };
        let bias_of =
            move |b: &Option<(Tensor, Tensor)>, e: usize| -> Result<Option<(Tensor, Tensor)>> {
                b.as_ref()
                    .map(|(g, dn)| Ok((g.get(e)?, dn.get(e)?)))
                    .transpose()
            };
        if vb.contains_tensor("0.gate_up_proj") {
            let load: ExpertLoader = Box::new(move |e| {
                let gate_up = vb.get((d, 2 * ff), &format!("{e}.gate_up_proj"))?;
                let down = vb.get((ff, d), &format!("{e}.down_proj"))?;
                this.expert(&gate_up, &down, bias_of(&biases, e)?)
            });
            return Ok(ExpertStore::lazy(load, n, d, ff, budget));
        }
        let gate_up =
            vb.get_with_hints((n, d, 2 * ff), "gate_up_proj", crate::layers::WEIGHT_INIT)?;
        let down = vb.get_with_hints((n, ff, d), "down_proj", crate::layers::WEIGHT_INIT)?;
        let experts = (0..n)
            .map(|e| self.expert(&gate_up.get(e)?, &down.get(e)?, bias_of(&biases, e)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(ExpertStore::loaded(experts, d, ff))
    }

    /// One expert from its `gate_up` [d, 2·ff] and `down` [ff, d] and their biases.
    fn expert(
        &self,
        gate_up: &Tensor,
        down: &Tensor,
        biases: Option<(Tensor, Tensor)>,
    ) -> Result<GatedMlp> {
        let (d, ff) = (self.d_model, self.d_ff);
        let (gate_up_bias, down_bias) = match biases {
            Some((g, dn)) => (Some(g), Some(dn)),
            None => (None, None),
        };
        // Column j of the gate (part 0) or up (part 1) projection.
        let part = |part: usize| -> Result<Linear> {
            let (weight, bias) = match self.columns {
                GateUpColumns::Halves => (
                    gate_up.narrow(1, part * ff, ff)?,
                    gate_up_bias
                        .as_ref()
                        .map(|b| b.narrow(0, part * ff, ff))
                        .transpose()?,
                ),
                GateUpColumns::Interleaved => (
                    gate_up
                        .reshape((d, ff, 2))?
                        .narrow(2, part, 1)?
                        .squeeze(2)?,
                    gate_up_bias
                        .as_ref()
                        .map(|b| b.reshape((ff, 2))?.narrow(1, part, 1)?.squeeze(1))
                        .transpose()?,
                ),
            };
            Ok(Linear {
                weight: Weight::Tensor(weight.contiguous()?),
                bias: bias.map(|b| b.contiguous()).transpose()?,
                in_out: true,
                lora: None,
            })
        };
        Ok(GatedMlp {
            gate: Some(part(0)?),
            up: part(1)?,
            down: Linear {
                weight: Weight::Tensor(down.clone()),
                bias: down_bias,
                in_out: true,
                lora: None,
            },
            act: self.act,
            glu: self.glu,
        })
    }
}

/// How much memory lazily loaded experts may keep: half of the memory budget
/// ([`crate::memory::budget`]: available memory, or `GLASSBOX_MEMORY`).
pub fn default_expert_budget() -> usize {
    usize::try_from(crate::memory::budget() / 2).unwrap_or(usize::MAX)
}
