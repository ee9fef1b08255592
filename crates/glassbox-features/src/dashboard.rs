//! Feature dashboards, as SAELens's and Neuronpedia's: for each feature of an SAE over a
//! corpus, where it fires (its top-activating contexts, the activating token marked, with the
//! feature's activation on every token around it), how often (density and a histogram of its
//! non-zero activations), and what it does to the next-token prediction when it is added to
//! the residual stream (the top and bottom tokens of `W_dec[f] · W_U`; only for SAEs that read a
//! residual-width point).

use candle_core::{DType, Tensor};
use glassbox_models::{HookedModel, Hooks, NameFilter};
use serde::Serialize;

use crate::error::{FeatureError, Result};
use crate::sae::Sae;

#[derive(Clone, Debug)]
pub struct DashboardOptions {
    /// Features to show; None: the `top` that fire most often.
    pub features: Option<Vec<usize>>,
    pub top: usize,
    /// Contexts per feature, and tokens shown either side of the activating one.
    pub contexts: usize,
    pub window: usize,
    /// Rows per forward pass.
    pub batch_size: usize,
    /// Tokens in the logit effect lists.
    pub logit_tokens: usize,
    /// Bins of the activation histogram.
    pub bins: usize,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            features: None,
            top: 10,
            contexts: 8,
            window: 8,
            batch_size: 8,
            logit_tokens: 10,
            bins: 20,
        }
    }
}

/// One top-activating context (never a row's first position: see [`dashboards`]).
#[derive(Clone, Debug, Serialize)]
pub struct Context {
    pub activation: f32,
    /// Row of the corpus and position in it of the activating token.
    pub row: usize,
    pub position: usize,
    /// The tokens around it and the feature's activation on each.
    pub tokens: Vec<u32>,
    pub activations: Vec<f32>,
    /// Index in `tokens` of the activating token.
    pub marked: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct FeatureDashboard {
    pub feature: usize,
    /// Share of tokens it fires on.
    pub density: f64,
    pub max_activation: f32,
    /// Non-zero activations in equal bins from 0 to the maximum: (bin's upper edge, count).
    pub histogram: Vec<(f32, usize)>,
    pub top_contexts: Vec<Context>,
    /// (token, logit change per unit activation through the final norm's centring and gain),
    /// most raised and most lowered.
    pub logit_top: Vec<(u32, f32)>,
    pub logit_bottom: Vec<(u32, f32)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Dashboards {
    pub hook_name: String,
    pub tokens: usize,
    pub d_sae: usize,
    /// Features firing on no token of the corpus.
    pub dead_features: usize,
    /// Whether logit effects were computed (the SAE reads a residual-width point).
    pub logit_effects: bool,
    pub features: Vec<FeatureDashboard>,
}

/// The SAE's activations on a batch of rows [b, pos], as [b, pos, d_sae] values.
fn batch_acts(
    model: &HookedModel,
    sae: &Sae,
    ids: &Tensor,
    filter: &NameFilter,
) -> Result<Vec<f32>> {
    let mut hooks = Hooks::caching(filter.clone());
    hooks.stop_after(sae.hook_name());
    model.run_until(ids, &mut hooks)?;
    let a = hooks.cache.require(sae.hook_name())?.clone();
    let x = match sae.cfg.hook_head_index {
        Some(h) => a.narrow(2, h, 1)?.squeeze(2)?,
        None => a,
    };
    Ok(sae
        .encode(&x)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?)
}

/// Dashboards of the SAE's features over `rows` [n, pos] of token ids.
pub fn dashboards(
    model: &HookedModel,
    sae: &Sae,
    rows: &Tensor,
    opts: &DashboardOptions,
) -> Result<Dashboards> {
    crate::splice::check_fits(model, std::slice::from_ref(sae))?;
    let (n, pos) = rows.dims2()?;
    if n == 0 || opts.batch_size == 0 {
        return Err(FeatureError::input("no rows to read features over"));
    }
    model.check_size(opts.batch_size.min(n), pos)?;
    let m = sae.cfg.d_sae;
    if let Some(bad) = opts.features.iter().flatten().find(|&&f| f >= m) {
        return Err(FeatureError::input(format!(
            "feature {bad}: the SAE has {m} (0 … {})",
            m - 1
        )));
    }
    let filter = NameFilter::new(&[sae.hook_name()])
        .map_err(|e| FeatureError::input(format!("hook `{}`: {e}", sae.hook_name())))?;
    let rows = rows.to_dtype(DType::U32)?;
    let batches = || {
        (0..n)
            .step_by(opts.batch_size)
            .map(move |s| (s, opts.batch_size.min(n - s)))
    };

    // Pass 1: how often each feature fires.
    let mut fired = vec![0usize; m];
    for (start, b) in batches() {
        let acts = batch_acts(model, sae, &rows.narrow(0, start, b)?, &filter)?;
        for (i, &v) in acts.iter().enumerate() {
            if v != 0.0 {
                fired[i % m] += 1;
            }
        }
    }
    let tokens = n * pos;
    let chosen: Vec<usize> = match &opts.features {
        Some(f) => f.clone(),
        None => {
            let mut order: Vec<usize> = (0..m).filter(|&f| fired[f] > 0).collect();
            order.sort_by(|&a, &b| fired[b].cmp(&fired[a]).then(a.cmp(&b)));
            order.truncate(opts.top);
            order
        }
    };

    // Pass 2: the chosen features' contexts and activation values.
    let mut tops: Vec<Vec<Context>> = vec![Vec::new(); chosen.len()];
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); chosen.len()];
    for (start, b) in batches() {
        let ids = rows.narrow(0, start, b)?;
        let acts = batch_acts(model, sae, &ids, &filter)?;
        let ids: Vec<Vec<u32>> = ids.to_vec2()?;
        for (c, &f) in chosen.iter().enumerate() {
            for r in 0..b {
                for p in 0..pos {
                    let v = acts[(r * pos + p) * m + f];
                    if v == 0.0 {
                        continue;
                    }
                    values[c].push(v);
                    // A row's first token is its BOS or a token cut from what came before
                    // it: its activation is an artifact of where the row starts (every row
                    // gives the same), not a context.
                    if p == 0 {
                        continue;
                    }
                    let top = &mut tops[c];
                    let weakest = top
                        .last()
                        .map(|t| t.activation)
                        .unwrap_or(f32::NEG_INFINITY);
                    if top.len() < opts.contexts || v > weakest {
                        let lo = p.saturating_sub(opts.window);
                        let hi = (p + opts.window + 1).min(pos);
                        top.push(Context {
                            activation: v,
                            row: start + r,
                            position: p,
                            tokens: ids[r][lo..hi].to_vec(),
                            activations: (lo..hi).map(|q| acts[(r * pos + q) * m + f]).collect(),
                            marked: p - lo,
                        });
                        // Strongest first; ties keep corpus order.
                        top.sort_by(|a, b| {
                            b.activation
                                .total_cmp(&a.activation)
                                .then((a.row, a.position).cmp(&(b.row, b.position)))
                        });
                        top.truncate(opts.contexts);
                    }
                }
            }
        }
    }

    // Logit effects, for SAEs on a residual-width point: W_dec[f] through the final norm's
    // centring and gain, then W_U — TransformerLens's fold_ln, which SAE dashboards read
    // (the gain reorders tokens; the run's own scale, one number a position, does not).
    let residual = sae.cfg.d_in == model.info().d_model
        && !sae.cfg.reshape_hook_z
        && sae.cfg.hook_head_index.is_none()
        && model.model.has_unembedding();
    let effects: Option<Vec<Vec<f32>>> = if residual && !chosen.is_empty() {
        let w_u = model.model.w_u()?.to_dtype(DType::F32)?;
        let ids = Tensor::new(
            chosen.iter().map(|&f| f as u32).collect::<Vec<_>>(),
            w_u.device(),
        )?;
        let dirs = sae.w_dec.to_dtype(DType::F32)?.index_select(&ids, 0)?;
        let norm = glassbox_analysis::norm::FinalNorm::probe(model.model.as_ref())
            .map_err(|e| FeatureError::input(format!("the final norm: {e}")))?;
        let dirs = norm
            .center(&dirs)
            .map_err(|e| FeatureError::input(format!("the final norm: {e}")))?
            .broadcast_mul(&norm.gain.to_dtype(DType::F32)?)?;
        Some(glassbox_models::kernel_ops::matmul(&dirs, &w_u)?.to_vec2()?)
    } else {
        None
    };

    let features = chosen
        .iter()
        .enumerate()
        .map(|(c, &f)| {
            let max = values[c].iter().cloned().fold(0f32, f32::max);
            let bins = opts.bins.max(1);
            let mut histogram: Vec<(f32, usize)> = (1..=bins)
                .map(|i| (max * i as f32 / bins as f32, 0))
                .collect();
            if max > 0.0 {
                for &v in &values[c] {
                    let i = ((v.max(0.0) / max * bins as f32) as usize).min(bins - 1);
                    histogram[i].1 += 1;
                }
            }
            let (logit_top, logit_bottom) = match &effects {
                Some(e) => {
                    let row = &e[c];
                    let mut order: Vec<usize> = (0..row.len()).collect();
                    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                    let k = opts.logit_tokens.min(order.len());
                    let top = order[..k].iter().map(|&t| (t as u32, row[t])).collect();
                    let bottom = order[order.len() - k..]
                        .iter()
                        .rev()
                        .map(|&t| (t as u32, row[t]))
                        .collect();
                    (top, bottom)
                }
                None => (Vec::new(), Vec::new()),
            };
            FeatureDashboard {
                feature: f,
                density: fired[f] as f64 / tokens as f64,
                max_activation: max,
                histogram,
                top_contexts: std::mem::take(&mut tops[c]),
                logit_top,
                logit_bottom,
            }
        })
        .collect();
    Ok(Dashboards {
        hook_name: sae.hook_name().to_string(),
        tokens,
        d_sae: m,
        dead_features: fired.iter().filter(|&&c| c == 0).count(),
        logit_effects: effects.is_some(),
        features,
    })
}

/// One feature active at a position.
#[derive(Clone, Debug, Serialize)]
pub struct ActiveFeature {
    pub feature: usize,
    pub activation: f32,
}

/// The features active on a prompt: for each position of `ids`, the `k` with the largest
/// activation (ties by id), zeros left out — the SAE's `hook_sae_acts_post` at that position.
pub fn active_features(
    model: &HookedModel,
    sae: &Sae,
    ids: &[u32],
    k: usize,
) -> Result<Vec<Vec<ActiveFeature>>> {
    crate::splice::check_fits(model, std::slice::from_ref(sae))?;
    let filter = NameFilter::new(&[sae.hook_name()])
        .map_err(|e| FeatureError::input(format!("hook `{}`: {e}", sae.hook_name())))?;
    let acts = batch_acts(model, sae, &model.ids_tensor(ids)?, &filter)?;
    let m = sae.cfg.d_sae;
    Ok(acts
        .chunks_exact(m)
        .map(|row| {
            let mut order: Vec<usize> = (0..m).filter(|&f| row[f] != 0.0).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            order
                .into_iter()
                .take(k)
                .map(|f| ActiveFeature {
                    feature: f,
                    activation: row[f],
                })
                .collect()
        })
        .collect())
}
