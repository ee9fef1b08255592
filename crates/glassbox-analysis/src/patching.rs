//! Activation patching and its gradient-based approximation, attribution patching.
//!
//! Both compare a clean prompt with a corrupted one of the same token length through a
//! metric — here the logit difference `logit[answer] − logit[wrong]` at the last position —
//! reported normalised so that 0 is the corrupted run and 1 the clean run.
//!
//! *Activation patching* reruns the corrupted prompt once per site, with the clean activation
//! written in at that site only (one (layer, position) of a residual-like hook, or one head's
//! `hook_z` at every position), as TransformerLens' `get_act_patch_*` functions do.
//!
//! *Attribution patching* replaces those reruns with one backward pass: a zero
//! [`candle_core::Var`] leaf is added to every patched hook's activation on the corrupted
//! run (its gradient is the metric's gradient there), and the metric's
//! change is approximated to first order as `Σ (clean − corrupt) · ∂metric/∂activation`
//! over the site. It is exact when the metric is linear in the site's activation and a good
//! guide otherwise; it needs a correct backward pass through the whole model.

use std::cell::RefCell;
use std::ops::ControlFlow;

use candle_core::{DType, Tensor, Var};
use glassbox_models::prefix::FEW_ROWS;
use glassbox_models::{HookedModel, Hooks, Intervention, NameFilter, RecordedRun, Selection};
use serde::Serialize;

use crate::error::{AnalysisError, Result};

/// What to patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchTarget {
    /// `blocks.{l}.hook_resid_pre`, per (layer, position).
    ResidPre,
    /// `blocks.{l}.hook_attn_out`, per (layer, position).
    AttnOut,
    /// `blocks.{l}.hook_mlp_out`, per (layer, position).
    MlpOut,
    /// `blocks.{l}.attn.hook_z` of one head, at every position, per (layer, head).
    Heads,
}

impl PatchTarget {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "resid_pre" => PatchTarget::ResidPre,
            "attn_out" => PatchTarget::AttnOut,
            "mlp_out" => PatchTarget::MlpOut,
            "heads" => PatchTarget::Heads,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            PatchTarget::ResidPre => "resid_pre",
            PatchTarget::AttnOut => "attn_out",
            PatchTarget::MlpOut => "mlp_out",
            PatchTarget::Heads => "heads",
        }
    }

    /// The hook patched at `layer`.
    pub fn hook(self, layer: usize) -> String {
        match self {
            PatchTarget::ResidPre => format!("blocks.{layer}.hook_resid_pre"),
            PatchTarget::AttnOut => format!("blocks.{layer}.hook_attn_out"),
            PatchTarget::MlpOut => format!("blocks.{layer}.hook_mlp_out"),
            PatchTarget::Heads => format!("blocks.{layer}.attn.hook_z"),
        }
    }

    fn glob(self) -> &'static str {
        match self {
            PatchTarget::ResidPre => "blocks.*.hook_resid_pre",
            PatchTarget::AttnOut => "blocks.*.hook_attn_out",
            PatchTarget::MlpOut => "blocks.*.hook_mlp_out",
            PatchTarget::Heads => "blocks.*.attn.hook_z",
        }
    }

    /// The selection of one site (a position, or a head) at the patched hook.
    pub fn site(self, index: usize) -> Selection {
        match self {
            PatchTarget::Heads => Selection::Heads(vec![index]),
            _ => Selection::Positions(vec![index]),
        }
    }
}

/// The logit difference `logit[answer] − logit[wrong]` at the last position of batch 0,
/// as a differentiable scalar tensor.
pub fn logit_diff(logits: &Tensor, answer: u32, wrong: u32) -> Result<Tensor> {
    let (_, t, vocab) = logits.dims3()?;
    for id in [answer, wrong] {
        if id as usize >= vocab {
            return Err(AnalysisError::input(format!(
                "token id {id} is outside the vocabulary (size {vocab})"
            )));
        }
    }
    let last = logits.narrow(0, 0, 1)?.narrow(1, t - 1, 1)?;
    let a = last.narrow(2, answer as usize, 1)?;
    let w = last.narrow(2, wrong as usize, 1)?;
    Ok((a - w)?.flatten_all()?.squeeze(0)?.to_dtype(DType::F32)?)
}

/// One unit of work done: tells `progress`, and stops if it says so.
fn step(progress: &mut impl FnMut() -> ControlFlow<()>) -> Result<()> {
    match progress() {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(AnalysisError::Cancelled),
    }
}

fn scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

/// A patching grid: rows are layers, columns positions (or heads for [`PatchTarget::Heads`]).
#[derive(Clone, Debug, Serialize)]
pub struct PatchResult {
    pub what: PatchTarget,
    /// "activation" or "attribution".
    pub method: &'static str,
    pub clean_metric: f32,
    pub corrupt_metric: f32,
    /// The metric after each patch (for attribution patching: its linear estimate).
    pub raw: Vec<Vec<f32>>,
    /// `(raw − corrupt) / (clean − corrupt)`: 0 = corrupted, 1 = clean.
    pub normalized: Vec<Vec<f32>>,
    /// Whether the setup can support conclusions (see [`SetupCheck`]).
    pub setup: SetupCheck,
}

/// Whether a clean/corrupted pair can support a patching result: normalising by the gap
/// `clean − corrupt` turns noise into confident cells when the gap is tiny, and inverts the
/// scale's meaning when the corrupted run scores higher.
#[derive(Clone, Debug, Serialize)]
pub struct SetupCheck {
    /// `clean_metric − corrupt_metric`.
    pub gap: f32,
    /// The spread of the clean run's last-position logits (their standard deviation): the
    /// scale a logit difference is read on.
    pub logit_scale: f32,
    /// What is wrong with the setup, in words; empty when nothing is.
    pub warnings: Vec<String>,
}

/// A gap smaller than this fraction of the logits' spread is treated as no effect to explain.
pub const TINY_GAP: f32 = 0.05;

impl SetupCheck {
    /// Checks the gap between the two runs against the clean logits' spread.
    pub fn new(clean_metric: f32, corrupt_metric: f32, clean_logits: &Tensor) -> Result<Self> {
        let gap = clean_metric - corrupt_metric;
        let (_, t, _) = clean_logits.dims3()?;
        let last = clean_logits
            .narrow(0, 0, 1)?
            .narrow(1, t - 1, 1)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let n = last.len().max(1) as f32;
        let mean = last.iter().sum::<f32>() / n;
        let logit_scale = (last.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
        let mut warnings = Vec::new();
        if gap < 0.0 {
            warnings.push(format!(
                "the corrupted run scores above the clean one (gap {gap:.4}): the normalised scale is inverted, 1 no longer means 'restores the clean behaviour'"
            ));
        }
        if gap.abs() < TINY_GAP * logit_scale {
            warnings.push(format!(
                "the clean−corrupted gap {gap:.4} is under {:.0} % of the logits' spread ({logit_scale:.3}): the normalised cells divide noise by almost nothing",
                TINY_GAP * 100.0
            ));
        }
        Ok(SetupCheck {
            gap,
            logit_scale,
            warnings,
        })
    }
}

fn check_lengths(clean: &[u32], corrupt: &[u32]) -> Result<()> {
    if clean.len() != corrupt.len() {
        return Err(AnalysisError::input(format!(
            "the clean and corrupted prompts must have the same number of tokens \
             (clean has {}, corrupted has {}); patching lines them up position by position",
            clean.len(),
            corrupt.len()
        )));
    }
    if clean.is_empty() {
        return Err(AnalysisError::input("the prompts are empty"));
    }
    Ok(())
}

fn normalize(raw: &[Vec<f32>], clean: f32, corrupt: f32) -> Vec<Vec<f32>> {
    let span = clean - corrupt;
    raw.iter()
        .map(|row| {
            row.iter()
                .map(|&m| {
                    if span != 0.0 {
                        (m - corrupt) / span
                    } else {
                        f32::NAN
                    }
                })
                .collect()
        })
        .collect()
}

fn filter(patterns: &[String]) -> Result<NameFilter> {
    NameFilter::new(patterns).map_err(|e| AnalysisError::input(e.to_string()))
}

/// Number of sites per layer: positions, or heads.
fn sites(model: &HookedModel, what: PatchTarget, len: usize) -> usize {
    match what {
        PatchTarget::Heads => model.info().n_heads,
        _ => len,
    }
}

/// The metric on the corrupted prompt with the clean activation of hook `name` written in
/// where `selection` says (`clean_act` from a run of the clean prompt).
pub fn patched_metric(
    model: &HookedModel,
    corrupt: &[u32],
    name: &str,
    clean_act: &Tensor,
    selection: Selection,
    answer: u32,
    wrong: u32,
) -> Result<f32> {
    let mut hooks = Hooks::none();
    hooks.intervene(
        filter(&[name.to_string()])?,
        Intervention::Replace(clean_act.clone()),
        selection,
    );
    let logits = model.run_with_hooks(&model.ids_tensor(corrupt)?, &mut hooks)?;
    scalar(&logit_diff(&logits, answer, wrong)?)
}

/// Rows (copies × positions) in one batched patching pass, and the most patched runs in one
/// batch: enough to amortise a pass's fixed costs, few enough that activations stay in cache
/// (on the benchmark's 217-token sweep, 2048 rows ran 20 % faster than 8192).
const PATCH_BATCH_TOKENS: usize = 2048;
const MAX_PATCH_BATCH: usize = 64;

/// The logit difference `answer − wrong` of each row of logits [n, d_vocab].
fn metrics_of_rows(logits: &Tensor, answer: u32, wrong: u32) -> Result<Vec<f32>> {
    let logits = logits.to_dtype(DType::F32)?;
    let vocab = logits.dim(1)?;
    for id in [answer, wrong] {
        if id as usize >= vocab {
            return Err(AnalysisError::input(format!(
                "token id {id} is outside the vocabulary (size {vocab})"
            )));
        }
    }
    let a = logits.narrow(1, answer as usize, 1)?;
    let w = logits.narrow(1, wrong as usize, 1)?;
    Ok((a - w)?.flatten_all()?.to_vec1::<f32>()?)
}

/// A hook writing each batch row's own site: row i of the activation (a copy of the corrupted
/// run over the last positions of the prompt) takes the clean value at `sites[i]` where it
/// holds that position, and keeps its own everywhere else.
fn patch_each_row<'a>(
    what: PatchTarget,
    clean_act: &'a Tensor,
    sites: &[usize],
) -> impl FnMut(&str, &Tensor) -> candle_core::Result<Option<Tensor>> + 'a {
    let sites = sites.to_vec();
    move |_, act| {
        let (b, t) = (sites.len(), act.dim(1)?);
        // the activation's positions: the last t of the prompt
        let first = clean_act.dim(1)? - t;
        let clean = clean_act.narrow(1, first, t)?;
        // 1 where row i holds its site, shaped to broadcast over the activation
        // (positions: [b, t, 1]; heads, hook_z: [b, 1, h, 1]).
        let mask = match what {
            PatchTarget::Heads => {
                let h = act.dim(2)?;
                let mut m = vec![0u8; b * h];
                for (i, &site) in sites.iter().enumerate() {
                    m[i * h + site] = 1;
                }
                Tensor::from_vec(m, (b, 1, h, 1), act.device())?
            }
            _ => {
                let mut m = vec![0u8; b * t];
                for (i, &site) in sites.iter().enumerate() {
                    if site >= first {
                        m[i * t + site - first] = 1;
                    }
                }
                Tensor::from_vec(m, (b, t, 1), act.device())?
            }
        };
        let clean = clean.to_dtype(act.dtype())?.broadcast_as(act.shape())?;
        Ok(Some(
            mask.broadcast_as(act.shape())?.where_cond(&clean, act)?,
        ))
    }
}

/// The metric for each of `sites` (at most a batch), each patched on its own copy of the
/// corrupted run, rerunning only what a patch there can change: blocks from `layer` on, and
/// for a position the positions from it on (see [`HookedModel::rerun`]).
#[allow(clippy::too_many_arguments)]
fn rerun_metrics(
    model: &HookedModel,
    run: &RecordedRun,
    layer: usize,
    clean_act: &Tensor,
    what: PatchTarget,
    sites: &[usize],
    answer: u32,
    wrong: u32,
) -> Result<Vec<f32>> {
    let start = match what {
        PatchTarget::Heads => 0,
        _ => run.rerun_start(sites[0]),
    };
    let mut hooks = Hooks::none();
    hooks.add_fn(
        filter(&[what.hook(layer)])?,
        patch_each_row(what, clean_act, sites),
    );
    // The metric reads the last position: the last block computes only the last few (enough
    // for GEMM's summation order), from every position's keys and values.
    let resid = model.rerun(
        run,
        layer,
        start,
        sites.len(),
        &mut hooks,
        Some(FEW_ROWS + 1),
    )?;
    let last = resid.narrow(1, resid.dim(1)? - 1, 1)?.squeeze(1)?;
    metrics_of_rows(&model.unembed_rows(&last)?, answer, wrong)
}

#[allow(clippy::too_many_arguments)]
/// The metric for each of `sites`, each patched on its own copy of the whole corrupted
/// prompt, in one batched pass: for models that cannot start a pass midway.
fn full_pass_metrics(
    model: &HookedModel,
    corrupt: &[u32],
    layer: usize,
    clean_act: &Tensor,
    what: PatchTarget,
    sites: &[usize],
    answer: u32,
    wrong: u32,
) -> Result<Vec<f32>> {
    let (b, t) = (sites.len(), corrupt.len());
    let mut hooks = Hooks::none();
    hooks.add_fn(
        filter(&[what.hook(layer)])?,
        patch_each_row(what, clean_act, sites),
    );
    let ids: Vec<u32> = (0..b).flat_map(|_| corrupt.iter().copied()).collect();
    let ids = Tensor::from_vec(ids, (b, t), model.device())?;
    let logits = model.run_with_hooks(&ids, &mut hooks)?;
    metrics_of_rows(&logits.narrow(1, t - 1, 1)?.squeeze(1)?, answer, wrong)
}

/// For each site of `what`, whether the clean and corrupted activations there are the same
/// bits (positions: one position's vector; heads: one head's `hook_z` at every position).
fn same_sites(what: PatchTarget, clean: &Tensor, corrupt: &Tensor) -> Result<Vec<bool>> {
    let bits = |t: &Tensor| -> Result<Vec<u32>> {
        Ok(t.to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f32::to_bits)
            .collect())
    };
    let (a, b) = (bits(clean)?, bits(corrupt)?);
    if a.len() != b.len() {
        return Err(AnalysisError::input(format!(
            "clean and corrupted activations differ in shape ({:?} and {:?})",
            clean.dims(),
            corrupt.dims()
        )));
    }
    Ok(match what {
        // hook_z [1, pos, head, d_head]
        PatchTarget::Heads => {
            let (_, pos, heads, d) = clean.dims4()?;
            (0..heads)
                .map(|h| {
                    (0..pos).all(|p| {
                        let at = (p * heads + h) * d;
                        a[at..at + d] == b[at..at + d]
                    })
                })
                .collect()
        }
        // [1, pos, d_model]
        _ => {
            let (_, pos, d) = clean.dims3()?;
            (0..pos)
                .map(|p| a[p * d..(p + 1) * d] == b[p * d..(p + 1) * d])
                .collect()
        }
    })
}

/// Activation patching of `what` from `clean` into `corrupt`, one site at a time, with the
/// logit difference `answer − wrong` as the metric. `progress` is told of each site done;
/// returning `Break` stops the work ([`AnalysisError::Cancelled`]).
///
/// The patched runs share work and give the bits that patching one site per full pass gives
/// (tested): a site whose clean and corrupted activations are equal is the corrupted run, with
/// no pass; the others go through the model as batches, one copy of the corrupted run per site;
/// each rerun starts at the patched block from the corrupted run's residual stream, and for a
/// position it covers only that position and the ones after it, attending to the corrupted
/// run's keys and values before it (in a causal model nothing earlier can change). Sites of
/// one batch share the earliest start, so batches take neighbouring positions, fewer where
/// the remaining suffix is short. Prompts of at most [`FEW_ROWS`] tokens, whose products sum
/// in another order, run one site per pass.
pub fn activation_patching(
    model: &HookedModel,
    clean: &[u32],
    corrupt: &[u32],
    answer: u32,
    wrong: u32,
    what: PatchTarget,
    mut progress: impl FnMut() -> ControlFlow<()>,
) -> Result<PatchResult> {
    check_lengths(clean, corrupt)?;
    let n_layers = model.info().n_layers;
    let t = clean.len();
    let (clean_logits, clean_cache) = model.run_with_cache(
        &model.ids_tensor(clean)?,
        &filter(&[what.glob().to_string()])?,
    )?;
    let clean_metric = scalar(&logit_diff(&clean_logits, answer, wrong)?)?;
    let patched = filter(&[what.glob().to_string()])?;
    let run = if t > FEW_ROWS {
        model.record_run(corrupt, &patched)?
    } else {
        None
    };
    let (corrupt_logits, corrupt_cache) = match run {
        Some(ref run) => (run.logits.clone(), None),
        None => {
            let (logits, cache) = model.run_with_cache(&model.ids_tensor(corrupt)?, &patched)?;
            (logits, Some(cache))
        }
    };
    let corrupt_metric = scalar(&logit_diff(&corrupt_logits, answer, wrong)?)?;
    let n_sites = sites(model, what, t);
    let mut raw = Vec::with_capacity(n_layers);
    for layer in 0..n_layers {
        let name = what.hook(layer);
        // Hybrids hold a mixer or an MLP in some layers only: those rows stay empty.
        let Some(clean_act) = clean_cache.get(&name) else {
            for _ in 0..n_sites {
                step(&mut progress)?;
            }
            raw.push(Vec::new());
            continue;
        };
        let corrupt_act = match (&run, &corrupt_cache) {
            (Some(run), _) => run.cache.require(&name)?,
            (None, Some(cache)) => cache.require(&name)?,
            (None, None) => unreachable!("one of the two runs was made"),
        };
        // A site whose clean and corrupted activations are the same bits reruns the corrupted
        // run exactly: its metric is the corrupted one, with no pass. In a minimal pair that
        // is every position before the first differing token, and at the first block every
        // position whose token is shared.
        let unchanged = same_sites(what, clean_act, corrupt_act)?;
        let mut row = vec![corrupt_metric; n_sites];
        let todo: Vec<usize> = (0..n_sites).filter(|&i| !unchanged[i]).collect();
        for _ in unchanged.iter().filter(|&&u| u) {
            step(&mut progress)?;
        }
        let mut next = 0;
        while next < todo.len() {
            let first = todo[next];
            let batch: Vec<usize> = if t <= FEW_ROWS {
                vec![first]
            } else {
                // Positions per copy for a batch starting here; a batch of sites within b
                // neighbouring positions recomputes at most b/2 extra positions per copy,
                // kept to 1/32.
                let rows = match (&run, what) {
                    (
                        Some(run),
                        PatchTarget::ResidPre | PatchTarget::AttnOut | PatchTarget::MlpOut,
                    ) => t - run.rerun_start(first),
                    _ => t,
                };
                let mut b = (PATCH_BATCH_TOKENS / rows).clamp(1, MAX_PATCH_BATCH);
                let mut batch: Vec<usize> = todo[next..].iter().copied().take(b).collect();
                if run.is_some() && what != PatchTarget::Heads {
                    b = b.min((rows / 16).max(1));
                    batch.retain(|&site| site < first + b);
                }
                batch
            };
            let metrics = match &run {
                Some(run) => {
                    rerun_metrics(model, run, layer, clean_act, what, &batch, answer, wrong)?
                }
                None if t <= FEW_ROWS => vec![patched_metric(
                    model,
                    corrupt,
                    &name,
                    clean_act,
                    what.site(first),
                    answer,
                    wrong,
                )?],
                None => full_pass_metrics(
                    model, corrupt, layer, clean_act, what, &batch, answer, wrong,
                )?,
            };
            for (&site, m) in batch.iter().zip(metrics) {
                row[site] = m;
            }
            next += batch.len();
            for _ in batch.iter() {
                step(&mut progress)?;
            }
        }
        raw.push(row);
    }
    no_rows_means_no_hook(&raw, what)?;
    Ok(PatchResult {
        what,
        method: "activation",
        setup: SetupCheck::new(clean_metric, corrupt_metric, &clean_logits)?,
        clean_metric,
        corrupt_metric,
        normalized: normalize(&raw, clean_metric, corrupt_metric),
        raw,
    })
}

/// An error when no layer has the patched hook (a row is empty where its layer lacks it).
fn no_rows_means_no_hook(raw: &[Vec<f32>], what: PatchTarget) -> Result<()> {
    if raw.iter().all(Vec::is_empty) {
        return Err(AnalysisError::input(format!(
            "the model has no hook `{}`",
            what.glob()
        )));
    }
    Ok(())
}

/// An activation on a run and the metric's gradient with respect to it.
#[derive(Clone, Debug)]
pub struct HookGradient {
    pub name: String,
    /// The activation, f32, batch first.
    pub activation: Tensor,
    /// ∂metric/∂activation, same shape.
    pub gradient: Tensor,
}

/// The logit difference `answer − wrong` on a run of `ids`, and its gradient with respect to
/// every activation at the hooks of `what`.
pub fn metric_gradients(
    model: &HookedModel,
    ids: &[u32],
    answer: u32,
    wrong: u32,
    what: PatchTarget,
) -> Result<(f32, Vec<HookGradient>)> {
    // (hook name, activation, zero leaf added to it)
    let leaves: RefCell<Vec<(String, Tensor, Var)>> = RefCell::new(Vec::new());
    let logits = {
        let mut hooks = Hooks::none();
        hooks.add_fn(filter(&[what.glob().to_string()])?, |name, t| {
            // Adding a zero leaf leaves the value and the upstream graph as they are, and its
            // gradient is the total derivative of the metric through everything downstream
            // (replacing the activation by a leaf would cut the paths through later hooks).
            let leaf = Var::zeros(t.shape(), DType::F32, t.device())?;
            let out = (t + leaf.as_tensor().to_dtype(t.dtype())?)?;
            leaves
                .borrow_mut()
                .push((name.to_string(), t.detach().to_dtype(DType::F32)?, leaf));
            Ok(Some(out))
        });
        model.run_with_hooks(&model.ids_tensor(ids)?, &mut hooks)?
    };
    let metric = logit_diff(&logits, answer, wrong)?;
    let grads = metric.backward()?;
    let mut out = Vec::new();
    for (name, activation, leaf) in leaves.into_inner() {
        let gradient = match grads.get(leaf.as_tensor()) {
            Some(g) => g.to_dtype(DType::F32)?,
            // no path from this activation to the metric: its gradient is zero
            None => activation.zeros_like()?,
        };
        out.push(HookGradient {
            name,
            activation,
            gradient,
        });
    }
    Ok((scalar(&metric)?, out))
}

/// Attribution patching: the first-order estimate of every activation-patching cell from one
/// forward and one backward pass on the corrupted prompt.
pub fn attribution_patching(
    model: &HookedModel,
    clean: &[u32],
    corrupt: &[u32],
    answer: u32,
    wrong: u32,
    what: PatchTarget,
) -> Result<PatchResult> {
    check_lengths(clean, corrupt)?;
    let n_layers = model.info().n_layers;
    let (clean_logits, clean_cache) = model.run_with_cache(
        &model.ids_tensor(clean)?,
        &filter(&[what.glob().to_string()])?,
    )?;
    let clean_metric = scalar(&logit_diff(&clean_logits, answer, wrong)?)?;
    let (corrupt_metric, grads) = metric_gradients(model, corrupt, answer, wrong, what)?;
    let mut raw = Vec::with_capacity(n_layers);
    for layer in 0..n_layers {
        let name = what.hook(layer);
        let Some(site) = grads.iter().find(|g| g.name == name) else {
            raw.push(Vec::new());
            continue;
        };
        let delta = (clean_cache.require(&name)? - &site.activation)?;
        let product = (delta * &site.gradient)?.get(0)?; // drop the batch
        let per_site = match what {
            // [pos, head, d_head] -> per head
            PatchTarget::Heads => product.sum(2)?.sum(0)?,
            // [pos, d_model] -> per position
            _ => product.sum(1)?,
        };
        let row: Vec<f32> = per_site
            .to_vec1::<f32>()?
            .into_iter()
            .map(|d| corrupt_metric + d)
            .collect();
        raw.push(row);
    }
    no_rows_means_no_hook(&raw, what)?;
    Ok(PatchResult {
        what,
        method: "attribution",
        setup: SetupCheck::new(clean_metric, corrupt_metric, &clean_logits)?,
        clean_metric,
        corrupt_metric,
        normalized: normalize(&raw, clean_metric, corrupt_metric),
        raw,
    })
}

#[cfg(test)]
mod setup_tests {
    use super::*;
    use candle_core::Device;

    fn logits(values: &[f32]) -> Tensor {
        Tensor::from_slice(values, (1, 1, values.len()), &Device::Cpu).unwrap()
    }

    #[test]
    fn tiny_and_inverted_gaps_are_named() {
        // Logits spread by 2: a gap of 3 is clear, 0.05 is tiny, −1 is inverted.
        let l = logits(&[-2.0, 2.0, -2.0, 2.0]);
        assert!(SetupCheck::new(4.0, 1.0, &l).unwrap().warnings.is_empty());
        let tiny = SetupCheck::new(1.05, 1.0, &l).unwrap();
        assert_eq!(tiny.warnings.len(), 1, "{:?}", tiny.warnings);
        assert!(tiny.warnings[0].contains("gap 0.0500"));
        let inverted = SetupCheck::new(0.0, 1.0, &l).unwrap();
        assert!(inverted.warnings[0].contains("corrupted run scores above"));
        assert_eq!(inverted.gap, -1.0);
        assert!((inverted.logit_scale - 2.0).abs() < 1e-6);
    }
}

/// Which patching methods a report runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Methods {
    Activation,
    Attribution,
    Both,
}

impl Methods {
    pub fn parse(s: &str) -> Option<Methods> {
        Some(match s {
            "activation" => Methods::Activation,
            "attribution" => Methods::Attribution,
            "both" => Methods::Both,
            _ => return None,
        })
    }
}

/// What `glassbox patch --json` reports for a clean/corrupted pair (the front ends add the
/// model and the two prompts as given).
#[derive(Clone, Debug, Serialize)]
pub struct PatchReport {
    pub clean_ids: Vec<u32>,
    pub corrupt_ids: Vec<u32>,
    /// Each id as a string (the grids' column labels).
    pub clean_tokens: Vec<String>,
    pub corrupt_tokens: Vec<String>,
    pub answer: u32,
    pub wrong: u32,
    pub metric: &'static str,
    pub answer_token: String,
    pub wrong_token: String,
    pub gap: f32,
    pub warnings: Vec<String>,
    pub results: Vec<PatchResult>,
}

impl PatchReport {
    /// Sites activation patching visits (what `progress` counts to).
    pub fn sites(model: &HookedModel, what: PatchTarget, tokens: usize) -> usize {
        let info = model.info();
        let per_layer = match what {
            PatchTarget::Heads => info.n_heads,
            _ => tokens,
        };
        per_layer * info.n_layers
    }
}

/// Patches `what` from the `clean` prompt into the `corrupt` one (equal token lengths) with
/// the chosen methods, the metric `logit[answer] − logit[wrong]` at the last position
/// (`answer` and `wrong` single tokens as text or `#id`). `progress` as for
/// [`activation_patching`].
#[allow(clippy::too_many_arguments)]
pub fn patch_prompts(
    model: &HookedModel,
    clean: &str,
    corrupt: &str,
    answer: &str,
    wrong: &str,
    what: PatchTarget,
    methods: Methods,
    progress: impl FnMut() -> ControlFlow<()>,
) -> Result<PatchReport> {
    use crate::predictions::{describe_token, prompt_tokens, single_token};
    let clean_ids = prompt_tokens(model, clean, "the clean prompt")?;
    let corrupt_ids = prompt_tokens(model, corrupt, "the corrupted prompt")?;
    if clean_ids.len() != corrupt_ids.len() {
        return Err(AnalysisError::input(format!(
            "the clean prompt is {} tokens and the corrupted one {}: patching needs prompts of equal token length",
            clean_ids.len(),
            corrupt_ids.len()
        )));
    }
    let answer_id = single_token(model, answer, "the answer")?;
    let wrong_id = single_token(model, wrong, "the wrong answer")?;
    let mut results = Vec::new();
    if methods != Methods::Attribution {
        results.push(activation_patching(
            model,
            &clean_ids,
            &corrupt_ids,
            answer_id,
            wrong_id,
            what,
            progress,
        )?);
    }
    if methods != Methods::Activation {
        results.push(attribution_patching(
            model,
            &clean_ids,
            &corrupt_ids,
            answer_id,
            wrong_id,
            what,
        )?);
    }
    let setup = results[0].setup.clone();
    Ok(PatchReport {
        clean_tokens: model.ids_to_str_tokens(&clean_ids)?,
        corrupt_tokens: model.ids_to_str_tokens(&corrupt_ids)?,
        clean_ids,
        corrupt_ids,
        answer: answer_id,
        wrong: wrong_id,
        metric: "logit[answer] - logit[wrong] at the last position",
        answer_token: describe_token(model, answer_id),
        wrong_token: describe_token(model, wrong_id),
        gap: setup.gap,
        warnings: setup.warnings,
        results,
    })
}

/// The JSON document of a report as `glassbox patch --json` prints it: the report's fields,
/// with the model and the two prompts as given.
pub fn patch_document(
    model: &str,
    clean: &str,
    corrupt: &str,
    report: &PatchReport,
) -> Result<serde_json::Value> {
    let mut doc = serde_json::to_value(report)
        .map_err(|e| AnalysisError::input(format!("patching report: {e}")))?;
    doc["model"] = serde_json::json!(model);
    doc["clean"] = serde_json::json!(clean);
    doc["corrupt"] = serde_json::json!(corrupt);
    Ok(doc)
}
