//! Ablation: knock out heads, MLP layers or single neurons and measure the change in loss.
//!
//! A head is ablated at its `attn.hook_z` (its share of the attention output before `W_O`),
//! an MLP layer at `hook_mlp_out`, a neuron at `mlp.hook_post` (after the nonlinearity). The
//! ablated value is
//!
//! - **zero**: 0;
//! - **mean**: the mean activation over every position of a reference set of prompts;
//! - **resample**: the activation of a reference prompt (drawn with a seed among those at
//!   least as long as the text) at the same positions.
//!
//! The loss is the mean next-token cross-entropy over the text.

use candle_core::{DType, Tensor, D};
use glassbox_models::{ActivationCache, HookedModel, Hooks, Intervention, NameFilter, Selection};
use rand::SeedableRng;
use serde::Serialize;

use crate::error::{AnalysisError, Result};

/// What to ablate. Mixture-of-experts models add experts as a new variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AblationTarget {
    Head {
        layer: usize,
        head: usize,
    },
    Mlp {
        layer: usize,
    },
    Neuron {
        layer: usize,
        neuron: usize,
    },
    /// One routed expert of a mixture-of-experts layer (its `experts.{e}.hook_out`).
    Expert {
        layer: usize,
        expert: usize,
    },
    /// The shared experts of a mixture-of-experts layer (DeepSeek).
    SharedExperts {
        layer: usize,
    },
}

impl AblationTarget {
    /// Parses `L3H1` (head 1 of layer 3), `L3MLP` (the MLP of layer 3), `L3N42` (neuron 42
    /// of layer 3's MLP), `L3E17` (expert 17 of layer 3) or `L3SE` (layer 3's shared
    /// experts), case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim().to_ascii_uppercase();
        let rest = t.strip_prefix('L')?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let layer: usize = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail == "MLP" {
            return Some(AblationTarget::Mlp { layer });
        }
        if tail == "SE" {
            return Some(AblationTarget::SharedExperts { layer });
        }
        // by character: a byte split could fall inside one (`L0é`)
        let mut chars = tail.chars();
        let kind = chars.next()?;
        let n: usize = chars.as_str().parse().ok()?;
        match kind {
            'H' => Some(AblationTarget::Head { layer, head: n }),
            'N' => Some(AblationTarget::Neuron { layer, neuron: n }),
            'E' => Some(AblationTarget::Expert { layer, expert: n }),
            _ => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            AblationTarget::Head { layer, head } => format!("L{layer}H{head}"),
            AblationTarget::Mlp { layer } => format!("L{layer}MLP"),
            AblationTarget::Neuron { layer, neuron } => format!("L{layer}N{neuron}"),
            AblationTarget::Expert { layer, expert } => format!("L{layer}E{expert}"),
            AblationTarget::SharedExperts { layer } => format!("L{layer}SE"),
        }
    }

    pub fn layer(&self) -> usize {
        match *self {
            AblationTarget::Head { layer, .. }
            | AblationTarget::Mlp { layer }
            | AblationTarget::Neuron { layer, .. }
            | AblationTarget::Expert { layer, .. }
            | AblationTarget::SharedExperts { layer } => layer,
        }
    }

    /// The hook the ablation writes.
    pub fn hook(&self) -> String {
        match self {
            AblationTarget::Head { layer, .. } => format!("blocks.{layer}.attn.hook_z"),
            AblationTarget::Mlp { layer } => format!("blocks.{layer}.hook_mlp_out"),
            AblationTarget::Neuron { layer, .. } => format!("blocks.{layer}.mlp.hook_post"),
            AblationTarget::Expert { layer, expert } => {
                format!("blocks.{layer}.mlp.experts.{expert}.hook_out")
            }
            AblationTarget::SharedExperts { layer } => {
                format!("blocks.{layer}.mlp.shared_experts.hook_out")
            }
        }
    }
}

/// How ablated activations are replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AblationMethod {
    Zero,
    Mean,
    Resample { seed: u64 },
}

/// Mean next-token cross-entropy of each position predicting the next: [len − 1] values
/// for logits [1, len, vocab] and the `ids` that were run.
pub fn per_token_loss(logits: &Tensor, ids: &[u32]) -> Result<Vec<f32>> {
    let (_, t, _) = logits.dims3()?;
    if t < 2 || ids.len() != t {
        return Err(AnalysisError::input(
            "the loss needs at least two tokens of text",
        ));
    }
    let lg = logits.get(0)?.narrow(0, 0, t - 1)?.to_dtype(DType::F32)?; // [t-1, V]
    let max = lg.max_keepdim(D::Minus1)?;
    let lse = (lg
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + &max)?;
    let next = Tensor::new(&ids[1..], lg.device())?.unsqueeze(1)?;
    let picked = lg.gather(&next, 1)?;
    Ok((lse - picked)?.squeeze(1)?.to_vec1::<f32>()?)
}

fn mean(v: &[f32]) -> f32 {
    if v.is_empty() {
        f32::NAN
    } else {
        v.iter().sum::<f32>() / v.len() as f32
    }
}

/// The result of an ablation: loss per predicted token, before and after.
#[derive(Clone, Debug, Serialize)]
pub struct AblationResult {
    pub targets: Vec<AblationTarget>,
    pub method: AblationMethod,
    pub baseline_loss: f32,
    /// For resample ablation, the mean over the resamples.
    pub ablated_loss: f32,
    pub baseline_per_token: Vec<f32>,
    pub ablated_per_token: Vec<f32>,
    /// Resample ablation: the reference prompts (indices) the values were taken from, one run
    /// each, and each run's ablated loss; references shorter than the text are left out.
    pub resampled_from: Vec<usize>,
    pub ablated_loss_each: Vec<f32>,
}

/// Most resamples a resample ablation averages over (drawn by its seed past this).
pub const MAX_RESAMPLES: usize = 16;

/// The reference prompts a resample ablation of a `len`-token text takes values from: every
/// one at least as long as the text, or [`MAX_RESAMPLES`] of them drawn by `seed`; ascending.
pub fn resample_sources(reference: &[Vec<u32>], len: usize, seed: u64) -> Result<Vec<usize>> {
    let mut long: Vec<usize> = (0..reference.len())
        .filter(|&i| reference[i].len() >= len)
        .collect();
    if long.is_empty() {
        return Err(AnalysisError::input(format!(
            "resample ablation needs a reference prompt at least as long as the text ({len} tokens)"
        )));
    }
    if long.len() > MAX_RESAMPLES {
        use rand::seq::SliceRandom;
        long.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        long.truncate(MAX_RESAMPLES);
        long.sort_unstable();
    }
    Ok(long)
}

impl AblationResult {
    /// Mean loss change over predicted positions `range` (indices into the per-token losses).
    pub fn delta_over(&self, range: std::ops::Range<usize>) -> f32 {
        mean(&self.ablated_per_token[range.clone()]) - mean(&self.baseline_per_token[range])
    }
}

/// Whether `t` exists in `model` (its layer, head, neuron), with what is wrong in words.
pub fn check_target(model: &HookedModel, t: &AblationTarget) -> Result<()> {
    let info = model.info();
    let bad = |what: String| Err(AnalysisError::input(format!("{}: {what}", t.label())));
    if t.layer() >= info.n_layers {
        return bad(format!("the model has {} layers", info.n_layers));
    }
    match *t {
        AblationTarget::Head { head, .. } if head >= info.n_heads => {
            bad(format!("the model has {} heads per layer", info.n_heads))
        }
        AblationTarget::Neuron { neuron, .. } if neuron >= info.d_mlp => {
            bad(format!("the MLP has {} neurons", info.d_mlp))
        }
        AblationTarget::Expert { expert, .. } => {
            match glassbox_models::moe::n_routed_experts(&model.config) {
                None => bad("the model has no experts".into()),
                Some(n) if expert >= n => bad(format!("the model has {n} experts per layer")),
                Some(_) => Ok(()),
            }
        }
        AblationTarget::SharedExperts { .. }
            if !glassbox_models::moe::has_shared_experts(&model.config) =>
        {
            bad("the model has no shared experts".into())
        }
        _ => Ok(()),
    }
}

/// Reference activations at the hooks of `targets`, one cache per prompt (none for zero
/// ablation).
fn reference_caches(
    model: &HookedModel,
    targets: &[AblationTarget],
    method: AblationMethod,
    reference: &[Vec<u32>],
) -> Result<Vec<ActivationCache>> {
    let names: Vec<String> = targets.iter().map(|t| t.hook()).collect();
    Ok(match method {
        AblationMethod::Zero => Vec::new(),
        _ => {
            if reference.is_empty() {
                return Err(AnalysisError::input(
                    "mean and resample ablation need reference prompts",
                ));
            }
            let f = NameFilter::new(&names).map_err(|e| AnalysisError::input(e.to_string()))?;
            reference
                .iter()
                .map(|ids| Ok(model.run_with_cache(&model.ids_tensor(ids)?, &f)?.1))
                .collect::<Result<_>>()?
        }
    })
}

/// Hooks that ablate `targets` by `method` for a text of `len` tokens, from the reference
/// prompts' caches ([`reference_caches`]: mean values over all, resampled ones from `source`).
fn hooks_from(
    model: &HookedModel,
    targets: &[AblationTarget],
    method: AblationMethod,
    caches: &[ActivationCache],
    source: Option<usize>,
    len: usize,
) -> Result<Hooks<'static>> {
    for t in targets {
        check_target(model, t)?;
    }
    let filter_of = |name: &str| -> Result<NameFilter> {
        NameFilter::new(&[name]).map_err(|e| AnalysisError::input(e.to_string()))
    };
    let mut hooks = Hooks::none();
    for t in targets {
        let name = t.hook();
        // The replacement, broadcastable to the activation [1, len, ...].
        let replacement = match method {
            AblationMethod::Zero => None,
            AblationMethod::Mean => {
                let all = caches
                    .iter()
                    .map(|c| Ok(c.require(&name)?.get(0)?))
                    .collect::<Result<Vec<_>>>()?;
                // mean over every position of every prompt, kept [1, 1, ...]
                Some(Tensor::cat(&all, 0)?.mean_keepdim(0)?.unsqueeze(0)?)
            }
            AblationMethod::Resample { .. } => {
                let i = source.unwrap_or(0);
                Some(caches[i].require(&name)?.narrow(1, 0, len)?)
            }
        };
        match *t {
            AblationTarget::Head { head, .. } => {
                let what = match replacement {
                    None => Intervention::Zero,
                    Some(r) => Intervention::Replace(r),
                };
                hooks.intervene(filter_of(&name)?, what, Selection::Heads(vec![head]));
            }
            AblationTarget::Mlp { .. }
            | AblationTarget::Expert { .. }
            | AblationTarget::SharedExperts { .. } => {
                let what = match replacement {
                    None => Intervention::Zero,
                    Some(r) => Intervention::Replace(r),
                };
                hooks.intervene(filter_of(&name)?, what, Selection::All);
            }
            AblationTarget::Neuron { neuron, .. } => {
                hooks.add_fn(filter_of(&name)?, move |_, act| {
                    let d = act.dim(D::Minus1)?;
                    let mut m = vec![0u8; d];
                    m[neuron] = 1;
                    let mask = Tensor::from_vec(m, d, act.device())?.broadcast_as(act.shape())?;
                    let value = match &replacement {
                        None => act.zeros_like()?,
                        Some(r) => r
                            .to_dtype(act.dtype())?
                            .broadcast_as(act.shape())?
                            .contiguous()?,
                    };
                    Ok(Some(mask.where_cond(&value, act)?))
                });
            }
        }
    }
    Ok(hooks)
}

/// Runs `text` with and without the ablation of `targets` and reports the loss. A resample
/// ablation is one run per reference prompt it takes values from ([`resample_sources`]), the
/// losses averaged: a single draw made the effect depend on which prompt the seed picked.
pub fn run(
    model: &HookedModel,
    text: &[u32],
    targets: &[AblationTarget],
    method: AblationMethod,
    reference: &[Vec<u32>],
) -> Result<AblationResult> {
    let baseline = per_token_loss(&model.run(&model.ids_tensor(text)?)?, text)?;
    for t in targets {
        check_target(model, t)?;
    }
    let caches = reference_caches(model, targets, method, reference)?;
    run_from(model, text, &baseline, targets, method, reference, &caches)
}

/// [`run`] from the text's unablated losses and the reference caches at the targets' hooks,
/// which one-at-a-time ablations of targets at the same hook share.
fn run_from(
    model: &HookedModel,
    text: &[u32],
    baseline: &[f32],
    targets: &[AblationTarget],
    method: AblationMethod,
    reference: &[Vec<u32>],
    caches: &[ActivationCache],
) -> Result<AblationResult> {
    let ids = model.ids_tensor(text)?;
    let baseline = baseline.to_vec();
    let sources: Vec<Option<usize>> = match method {
        AblationMethod::Resample { seed } => resample_sources(reference, text.len(), seed)?
            .into_iter()
            .map(Some)
            .collect(),
        _ => vec![None],
    };
    // Cache the written hooks too, to prove each target was reached: a hook this
    // architecture does not have (a neuron of a mixture-of-experts layer) must not be a
    // silent no-op.
    let names: Vec<String> = targets.iter().map(|t| t.hook()).collect();
    let mut runs: Vec<Vec<f32>> = Vec::with_capacity(sources.len());
    for &source in &sources {
        let mut hooks = hooks_from(model, targets, method, caches, source, text.len())?;
        if !names.is_empty() {
            hooks.set_cache_filter(Some(
                NameFilter::new(&names).map_err(|e| AnalysisError::input(e.to_string()))?,
            ));
        }
        runs.push(per_token_loss(
            &model.run_with_hooks(&ids, &mut hooks)?,
            text,
        )?);
        for (t, name) in targets.iter().zip(&names) {
            if !hooks.cache.contains(name) {
                return Err(AnalysisError::input(format!(
                    "{}: {} has no hook `{name}` to ablate",
                    t.label(),
                    model.info().architecture
                )));
            }
        }
    }
    let ablated: Vec<f32> = (0..baseline.len())
        .map(|i| runs.iter().map(|r| r[i]).sum::<f32>() / runs.len() as f32)
        .collect();
    let resampled = matches!(method, AblationMethod::Resample { .. });
    Ok(AblationResult {
        targets: targets.to_vec(),
        method,
        baseline_loss: mean(&baseline),
        ablated_loss: mean(&ablated),
        baseline_per_token: baseline,
        ablated_per_token: ablated,
        resampled_from: sources.into_iter().flatten().collect(),
        ablated_loss_each: if resampled {
            runs.iter().map(|r| mean(r)).collect()
        } else {
            Vec::new()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            AblationTarget::parse("L3H1"),
            Some(AblationTarget::Head { layer: 3, head: 1 })
        );
        assert_eq!(
            AblationTarget::parse("l0mlp"),
            Some(AblationTarget::Mlp { layer: 0 })
        );
        assert_eq!(
            AblationTarget::parse("L2N40"),
            Some(AblationTarget::Neuron {
                layer: 2,
                neuron: 40
            })
        );
        for bad in [
            "", "L", "H1", "L1X2", "L1H", "Lx H1", "L0é", "L0é1", "L0ÉMLP", "L٣H1",
        ] {
            assert_eq!(AblationTarget::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_target_cap_is_checked_before_groups_expand() {
        let heads = vec!["heads".to_string(); 3];
        let e = parse_targets(&heads, 80, 64, 4096).unwrap_err().to_string();
        assert!(e.contains("more than 4096"), "{e}");
        assert_eq!(parse_targets(&heads, 4, 4, 48).unwrap().len(), 48);
        assert!(parse_targets(&heads, 4, 4, 47).is_err());
    }

    #[test]
    fn forward_passes_count_shared_reference_caches() {
        let head = |layer, head| AblationTarget::Head { layer, head };
        let inputs = AblationInputs {
            ids: vec![1, 2, 3],
            targets: vec![head(0, 0), head(0, 1), head(0, 2), head(1, 0)],
            reference: vec![vec![1, 2, 3]; 5],
        };
        let resample = AblationMethod::Resample { seed: 0 };
        // the text, then per target one pass (zero, mean) or one per reference (resample);
        // the references are cached once per hook: layer 0's, then layer 1's
        assert_eq!(inputs.forward_passes(AblationMethod::Zero, true), 1 + 4);
        assert_eq!(
            inputs.forward_passes(AblationMethod::Mean, true),
            1 + 2 * 5 + 4
        );
        assert_eq!(inputs.forward_passes(resample, true), 1 + 2 * 5 + 4 * 5);
        assert_eq!(inputs.forward_passes(resample, false), 1 + 5 + 5);
        // a resample draws from the references as long as the text, at most MAX_RESAMPLES
        let mut many = inputs;
        many.reference = vec![vec![1, 2, 3]; 40];
        many.reference.push(vec![1]);
        let draws = MAX_RESAMPLES;
        assert_eq!(many.forward_passes(resample, true), 1 + 2 * 41 + 4 * draws);
        many.reference = vec![vec![1, 2, 3], vec![1], vec![2]];
        assert_eq!(many.forward_passes(resample, true), 1 + 2 * 3 + 4);
    }

    #[test]
    fn loss_is_cross_entropy_of_the_next_token() {
        // two positions, vocab 2: uniform then certain
        let logits = Tensor::new(&[[[0f32, 0.0], [0.0, 0.0]]], &candle_core::Device::Cpu).unwrap();
        let l = per_token_loss(&logits, &[0, 1]).unwrap();
        assert_eq!(l.len(), 1);
        assert!((l[0] - std::f32::consts::LN_2).abs() < 1e-6);
    }
}

/// Targets from their names: `L3H1`, `L3MLP`, `L3N42`, and `heads` / `mlps` for all of them;
/// more than `max` targets is refused as soon as it is counted (before a group is expanded:
/// a list of `heads` on a large model would otherwise build millions first).
pub fn parse_targets(
    specs: &[String],
    n_layers: usize,
    n_heads: usize,
    max: usize,
) -> Result<Vec<AblationTarget>> {
    let mut out = Vec::new();
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let lower = spec.to_ascii_lowercase();
        let adds = match lower.as_str() {
            "heads" => n_layers.saturating_mul(n_heads),
            "mlps" => n_layers,
            _ => 1,
        };
        if out.len().saturating_add(adds) > max {
            return Err(AnalysisError::input(format!(
                "the targets name more than {max} components; at most {max} at once"
            )));
        }
        match lower.as_str() {
            "heads" => {
                for layer in 0..n_layers {
                    out.extend((0..n_heads).map(|head| AblationTarget::Head { layer, head }));
                }
            }
            "mlps" => out.extend((0..n_layers).map(|layer| AblationTarget::Mlp { layer })),
            _ => out.push(AblationTarget::parse(spec).ok_or_else(|| {
                AnalysisError::input(format!(
                    "target {spec}: expected L<layer>H<head>, L<layer>MLP, L<layer>N<neuron>, heads or mlps"
                ))
            })?),
        }
    }
    if out.is_empty() {
        return Err(AnalysisError::input("no targets to ablate"));
    }
    Ok(out)
}

/// `zero`, `mean` or `resample` (with its seed).
pub fn parse_method(name: &str, seed: u64) -> Result<AblationMethod> {
    Ok(match name {
        "zero" => AblationMethod::Zero,
        "mean" => AblationMethod::Mean,
        "resample" => AblationMethod::Resample { seed },
        m => {
            return Err(AnalysisError::input(format!(
                "method {m}: expected zero, mean or resample"
            )))
        }
    })
}

/// What `glassbox ablate --json` reports: the text's tokens and one result per run.
#[derive(Clone, Debug, Serialize)]
pub struct AblationReport {
    pub input_ids: Vec<u32>,
    pub results: Vec<AblationResult>,
}

/// An ablation request, checked against the model before any run: everything [`ablate_text`]
/// would refuse only after some runs (or a server after answering 200) is refused here.
pub struct AblationInputs {
    /// The text's token ids (at least two: the loss needs a next token).
    pub ids: Vec<u32>,
    /// The targets, groups (`heads`, `L3`) expanded.
    pub targets: Vec<AblationTarget>,
    /// The reference prompts' token ids.
    pub reference: Vec<Vec<u32>>,
}

impl AblationInputs {
    /// `max_targets` bounds the targets after groups are expanded ([`parse_targets`]).
    pub fn check(
        model: &HookedModel,
        text: &str,
        targets: &[String],
        method: AblationMethod,
        reference: &[String],
        max_targets: usize,
    ) -> Result<AblationInputs> {
        if method != AblationMethod::Zero && reference.is_empty() {
            return Err(AnalysisError::input(
                "mean and resample ablation need reference prompts",
            ));
        }
        let info = model.info();
        let targets = parse_targets(targets, info.n_layers, info.n_heads, max_targets)?;
        for t in &targets {
            check_target(model, t)?;
        }
        let ids = crate::predictions::prompt_tokens(model, text, "the text")?;
        if ids.len() < 2 {
            return Err(AnalysisError::input(
                "the text must have at least two tokens to have a loss",
            ));
        }
        let reference = reference
            .iter()
            .map(|r| crate::predictions::prompt_tokens(model, r, "a reference prompt"))
            .collect::<Result<Vec<_>>>()?;
        if matches!(method, AblationMethod::Resample { .. })
            && reference.iter().all(|r| r.len() < ids.len())
        {
            return Err(AnalysisError::input(format!(
                "resample ablation needs a reference prompt at least as long as the text ({} tokens)",
                ids.len()
            )));
        }
        Ok(AblationInputs {
            ids,
            targets,
            reference,
        })
    }

    /// The forward passes [`AblationInputs::ablate`] makes: the text once, each reference
    /// prompt once per run of targets at other hooks (mean and resample), and per group one
    /// ablated pass, or one per reference prompt a resample draws from (at most all of them).
    pub fn forward_passes(&self, method: AblationMethod, each: bool) -> usize {
        let groups = if each { self.targets.len() } else { 1 };
        let refs = self.reference.len();
        // a resample draws from the references at least as long as the text, at most
        // MAX_RESAMPLES of them (resample_sources)
        let long = self
            .reference
            .iter()
            .filter(|r| r.len() >= self.ids.len())
            .count()
            .min(MAX_RESAMPLES);
        let (cache_runs, per_group) = match method {
            AblationMethod::Zero => (0, 1),
            AblationMethod::Mean => (refs, 1),
            AblationMethod::Resample { .. } => (refs, long.max(1)),
        };
        let hook_changes = if each {
            1 + self
                .targets
                .windows(2)
                .filter(|w| w[0].hook() != w[1].hook())
                .count()
        } else {
            1
        };
        1usize
            .saturating_add(hook_changes.saturating_mul(cache_runs))
            .saturating_add(groups.saturating_mul(per_group))
    }

    /// Ablates the targets with `method`, all together or (`each`) one at a time; `progress`
    /// is told of each run done and can stop the work ([`AnalysisError::Cancelled`]).
    pub fn ablate(
        self,
        model: &HookedModel,
        method: AblationMethod,
        each: bool,
        mut progress: impl FnMut() -> std::ops::ControlFlow<()>,
    ) -> Result<AblationReport> {
        let groups: Vec<&[AblationTarget]> = if each {
            self.targets.iter().map(std::slice::from_ref).collect()
        } else {
            vec![&self.targets[..]]
        };
        let text = model.ids_tensor(&self.ids)?;
        let baseline = per_token_loss(&model.run(&text)?, &self.ids)?;
        // The reference prompts' caches of the hooks a group writes, kept while the next group
        // writes the same ones (`heads` one at a time: every head of a layer shares hook_z).
        let mut cached: Option<(Vec<String>, Vec<ActivationCache>)> = None;
        let mut results = Vec::with_capacity(groups.len());
        for group in groups {
            let hooks: Vec<String> = group.iter().map(|t| t.hook()).collect();
            if cached.as_ref().is_none_or(|(names, _)| *names != hooks) {
                let caches = reference_caches(model, group, method, &self.reference)?;
                cached = Some((hooks, caches));
            }
            let caches = cached.as_ref().map(|(_, c)| &c[..]).unwrap_or(&[]);
            results.push(run_from(
                model,
                &self.ids,
                &baseline,
                group,
                method,
                &self.reference,
                caches,
            )?);
            if progress().is_break() {
                return Err(AnalysisError::Cancelled);
            }
        }
        Ok(AblationReport {
            input_ids: self.ids,
            results,
        })
    }
}

/// Ablates `targets` (names as [`parse_targets`] reads them) on `text` with `method`, all
/// together or (`each`) one at a time; `reference` texts for mean and resample ablation.
/// `progress` is told of each run done and can stop the work ([`AnalysisError::Cancelled`]).
#[allow(clippy::too_many_arguments)]
pub fn ablate_text(
    model: &HookedModel,
    text: &str,
    targets: &[String],
    method: AblationMethod,
    reference: &[String],
    each: bool,
    progress: impl FnMut() -> std::ops::ControlFlow<()>,
) -> Result<AblationReport> {
    AblationInputs::check(model, text, targets, method, reference, usize::MAX)?
        .ablate(model, method, each, progress)
}

/// The document `glassbox ablate --json` prints.
pub fn document(model: &str, text: &str, each: bool, report: &AblationReport) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "text": text,
        "input_ids": report.input_ids,
        "each": each,
        "results": report.results,
    })
}
