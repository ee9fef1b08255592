//! What changed between two versions of one model: a model and its quantization, a base and
//! its fine-tune, two checkpoints of one training run.
//!
//! Both models read the same token sequences. The report compares them at every level:
//!
//! - **outputs** — KL(A‖B) of the next-token distributions, how often their top-1 agrees, and
//!   each model's perplexity on the sequences;
//! - **layers** — the residual stream after every block (cosine, relative error) and the
//!   logit lens read off it by each model's own final norm and unembedding (top-1 agreement,
//!   KL);
//! - **components** — every head, attention block, MLP, the embedding and the unembedding,
//!   measured twice. *End to end*: B's output with B's own inputs, against A's. *Local*: B's
//!   output when B is fed A's inputs — B runs with every block's `hook_resid_pre` and
//!   `hook_resid_mid` replaced by A's, so each component sees exactly what it saw in A and
//!   only its own weights differ. Local change isolates which weights changed the
//!   computation; end-to-end change also carries what arrived from upstream. Both are the
//!   root-sum-square of the change of the component's output (in the residual space) over
//!   every position, divided by that of the residual stream it writes into, so components
//!   compare on one scale. Components are ranked by local change, largest first;
//! - **direct logit attribution** — at the last position of every sequence, toward A's
//!   top prediction there, each component's contribution in A and in B;
//! - **head roles** — the previous-token, duplicate-token, induction and first-token scores
//!   of every head in both models (one probe input, one seed);
//! - **features** — with a feature dictionary (a sparse autoencoder trained on A) at one
//!   hook: features that fire in A and never in B (died), the reverse (appeared), and those
//!   whose activations moved most.
//!
//! The two models must share their shape (layers, heads, widths, vocabulary): this compares
//! versions of one model, not two models.
//!
//! A model that produces NaN or ∞ (a broken quantization or adapter) is reported as such: what
//! is measured from values that are not finite stays NaN (null in JSON), never 0, a note names
//! the model and where its values stop being finite, and a component whose change is NaN ranks
//! first.

use std::cmp::Ordering;
use std::collections::HashMap;

use candle_core::{DType, Tensor, D};
use glassbox_models::{ActivationCache, HookedModel, Hooks, Model, NameFilter};

use crate::attribution::{self, Component};
use crate::error::{AnalysisError, Result};
use crate::heads::{self, HeadScores};

mod measure;
mod report;

use measure::*;
pub use report::*;

/// Hooks both runs cache.
fn cached_hooks(features: Option<&FeatureDictionary>) -> Vec<String> {
    let mut names: Vec<String> = [
        "hook_pos_embed",
        "blocks.*.hook_resid_pre",
        "blocks.*.hook_resid_mid",
        "blocks.*.hook_resid_post",
        "blocks.*.attn.hook_z",
        "blocks.*.hook_attn_out",
        "blocks.*.hook_mlp_out",
        "blocks.*.ln1_post.hook_normalized",
        "blocks.*.ln2_post.hook_normalized",
        "blocks.*.mlp.hook_expert_indices",
        "blocks.*.mlp.hook_expert_weights",
        "blocks.*.mlp.experts.*.hook_out",
        "blocks.*.mlp.shared_experts.hook_out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(f) = features {
        names.push(f.hook.clone());
    }
    names
}

fn filter(names: &[String]) -> Result<NameFilter> {
    NameFilter::new(names).map_err(|e| AnalysisError::input(e.to_string()))
}

/// Refuses two models that are not versions of one model.
fn check_same_shape(a: &HookedModel, b: &HookedModel) -> Result<()> {
    let (ia, ib) = (a.info(), b.info());
    let fields = [
        ("layers", ia.n_layers, ib.n_layers),
        ("d_model", ia.d_model, ib.d_model),
        ("heads", ia.n_heads, ib.n_heads),
        ("d_head", ia.d_head, ib.d_head),
        ("vocabulary", ia.d_vocab, ib.d_vocab),
    ];
    for (what, x, y) in fields {
        if x != y {
            return Err(AnalysisError::input(format!(
                "the models differ in {what} ({x} against {y}): drift compares two versions of one model"
            )));
        }
    }
    for (name, info) in [("A", ia), ("B", ib)] {
        if !info.causal {
            return Err(AnalysisError::input(format!(
                "model {name} ({}) is an encoder: drift compares language models' next-token predictions",
                info.architecture
            )));
        }
    }
    Ok(())
}

/// A model's `W_O` per layer in f32 [h, d_head, d_model], read once (dequantized, with any
/// adapter); `None` where a layer's mixer has no heads.
fn output_matrices(model: &dyn Model) -> Vec<Option<Tensor>> {
    (0..model.info().n_layers)
        .map(|layer| model.w_o(layer).and_then(|w| w.to_dtype(DType::F32)).ok())
        .collect()
}

/// The outputs components write into the residual stream, all positions of batch 0 as
/// [pos, d_model], keyed by component; heads through the model's `w_o` (one per layer).
fn component_outputs(
    w_o: &[Option<Tensor>],
    cache: &ActivationCache,
) -> Result<Vec<(Component, Tensor)>> {
    let rows = |t: &Tensor| -> Result<Tensor> { Ok(t.get(0)?.to_dtype(DType::F32)?) };
    let mut out = Vec::new();
    if let Some(embed) = cache.get("blocks.0.hook_resid_pre") {
        out.push((Component::Embed, rows(embed)?));
    }
    for (layer, w_o) in w_o.iter().enumerate() {
        let hook = |h: &str| cache.get(&format!("blocks.{layer}.{h}"));
        // hook_attn_out / hook_mlp_out are what joins the residual (after a post-norm); heads
        // split only where the attention output is z·W_O plus a bias (no post-norm)
        let attn = hook("hook_attn_out");
        let post_norm = hook("ln1_post.hook_normalized").is_some();
        if let (Some(z), false, Some(w_o)) = (hook("attn.hook_z"), post_norm, w_o) {
            let z = rows(z)?; // [pos, h, d_head]
            let per_head = z.transpose(0, 1)?.contiguous()?.matmul(w_o)?; // [h, pos, d_model]
            for head in 0..per_head.dim(0)? {
                out.push((Component::Head { layer, head }, per_head.get(head)?));
            }
        }
        if let Some(attn) = attn {
            out.push((Component::Attn { layer }, rows(attn)?));
        }
        if let Some(mlp) = hook("hook_mlp_out") {
            out.push((Component::Mlp { layer }, rows(mlp)?));
        }
    }
    Ok(out)
}

/// Whether `c` is ranked: the finest parts (heads where the attention splits into them, the
/// whole attention otherwise), so no change is counted twice.
fn ranked_part(c: &Component, has_heads: &dyn Fn(usize) -> bool) -> bool {
    match c {
        Component::Attn { layer } => !has_heads(*layer),
        _ => true,
    }
}

/// B's pass with every block's inputs replaced by A's (see the module docs), caching what
/// the components wrote.
fn local_run(
    b: &HookedModel,
    ids: &Tensor,
    cache_a: &ActivationCache,
    names: &[String],
) -> Result<ActivationCache> {
    let inputs = filter(&[
        "blocks.*.hook_resid_pre".to_string(),
        "blocks.*.hook_resid_mid".to_string(),
    ])?;
    let mut hooks = Hooks::caching(filter(names)?);
    hooks.add_fn(inputs, |name, t| match cache_a.get(name) {
        Some(a) => Ok(Some(a.to_dtype(t.dtype())?)),
        None => Ok(None),
    });
    b.run_with_hooks(ids, &mut hooks)?;
    Ok(hooks.take_cache())
}

/// Compares `a` and `b` on `sequences` (token ids, each read whole as one batch row).
/// `progress` is called with (sequences done, total) after each.
pub fn compare(
    a: &HookedModel,
    b: &HookedModel,
    sequences: &[Vec<u32>],
    opts: &DriftOptions,
    features: Option<&FeatureDictionary>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<DriftReport> {
    check_same_shape(a, b)?;
    if sequences.iter().all(|s| s.is_empty()) {
        return Err(AnalysisError::input("no tokens to compare the models on"));
    }
    let n_layers = a.info().n_layers;
    // The probe's settings are the caller's: wrong ones are errors, not a note.
    if opts.head_seq_len > 0 {
        let n_ctx = a.info().n_ctx.min(b.info().n_ctx);
        if opts.head_seq_len < 2 || opts.head_seq_len > n_ctx / 2 {
            return Err(AnalysisError::input(format!(
                "head-role probe length {}: give 2 to {} (half the models' context), or 0 to skip the probe",
                opts.head_seq_len,
                n_ctx / 2
            )));
        }
        a.check_size(opts.head_batch, 2 * opts.head_seq_len)?;
    }
    let names = cached_hooks(features);
    let cache_filter = filter(&names)?;
    let mut notes = Vec::new();

    let (mut kl_sum, mut kl_max, mut agree, mut positions) = (0.0f64, 0.0f64, 0usize, 0usize);
    let (mut ce_a, mut ce_b, mut predicted) = (0.0f64, 0.0f64, 0usize);
    let mut resid = vec![(0.0f64, 0.0f64, 0.0f64); n_layers]; // Σ‖Δ‖², Σ‖A‖², Σcos
    let mut lens = vec![(0.0f64, 0usize); n_layers]; // ΣKL, agreements
    let mut parts: HashMap<Component, Sums> = HashMap::new();
    let mut order: Vec<Component> = Vec::new();
    let mut unembed = Sums::default();
    let mut dla: HashMap<Component, DlaSums> = HashMap::new();
    let mut dla_failed: Option<String> = None;
    let mut feature_sums = FeatureSums::default();
    let mut heads_split = vec![false; n_layers];
    // Where each model (A, B) stops being finite: positions whose logits are not, and the
    // first hook (in the order of the pass) holding a value that is not.
    let mut nonfinite_logits = [0usize; 2];
    let mut first_nonfinite: [Option<(usize, String)>; 2] = [None, None];
    let (w_o_a, w_o_b) = (
        output_matrices(a.model.as_ref()),
        output_matrices(b.model.as_ref()),
    );

    for (done, seq) in sequences.iter().enumerate() {
        if seq.is_empty() {
            continue;
        }
        let ids = a.ids_tensor(seq)?;
        let (logits_a, cache_a) = a.run_with_cache(&ids, &cache_filter)?;
        let (logits_b, cache_b) = b.run_with_cache(&ids, &cache_filter)?;
        let local_b = local_run(b, &ids, &cache_a, &names)?;
        let n = seq.len();

        // outputs
        let (la, lb) = (logits_a.get(0)?, logits_b.get(0)?);
        let out = compare_distributions(&la, &lb)?;
        kl_sum += out.kl.iter().sum::<f64>();
        kl_max = out.kl.iter().copied().fold(kl_max, max_or_nan);
        nonfinite_logits[0] += out.nonfinite_a;
        nonfinite_logits[1] += out.nonfinite_b;
        // the stream at the embedding, then after every block: the first that is not finite
        for (side, cache) in [&cache_a, &cache_b].into_iter().enumerate() {
            let points = std::iter::once("blocks.0.hook_resid_pre".to_string())
                .chain((0..n_layers).map(|l| format!("blocks.{l}.hook_resid_post")));
            for (rank, name) in points.enumerate() {
                if first_nonfinite[side].as_ref().is_some_and(|f| f.0 <= rank) {
                    break;
                }
                let Some(t) = cache.get(&name) else { continue };
                // a sum of squares in f64 of f32 values is finite exactly when they all are
                if !sum_sq(t)?.is_finite() {
                    first_nonfinite[side] = Some((rank, name));
                    break;
                }
            }
        }
        agree += out.agree.iter().filter(|&&t| t).count();
        positions += n;
        if n > 1 {
            let next = Tensor::new(&seq[1..], la.device())?.unsqueeze(1)?;
            for (log_probs, ce) in [(&out.log_probs_a, &mut ce_a), (&out.log_probs_b, &mut ce_b)] {
                let lp = log_probs.narrow(0, 0, n - 1)?;
                let picked = lp.gather(&next, 1)?.to_dtype(DType::F64)?.sum_all()?;
                *ce -= picked.to_scalar::<f64>()?;
            }
            predicted += n - 1;
        }

        // layers: the residual stream and its lens
        for (layer, (d2, a2, cos)) in resid.iter_mut().enumerate() {
            let name = format!("blocks.{layer}.hook_resid_post");
            let (ra, rb) = (
                cache_a.require(&name)?.get(0)?,
                cache_b.require(&name)?.get(0)?,
            );
            *d2 += diff_sq(&ra, &rb)?;
            *a2 += sum_sq(&ra)?;
            let dot = (&ra * &rb)?.sum(D::Minus1)?;
            let norms = (ra.sqr()?.sum(D::Minus1)?.sqrt()? * rb.sqr()?.sum(D::Minus1)?.sqrt()?)?;
            let c: Vec<f32> = (dot / norms.clamp(1e-30, f64::INFINITY)?)?.to_vec1()?;
            *cos += c.iter().map(|&v| v as f64).sum::<f64>();
            let lens_a = a.model.unembed(&a.model.final_norm(&ra)?)?;
            let lens_b = b.model.unembed(&b.model.final_norm(&rb)?)?;
            let lens_out = compare_distributions(&lens_a, &lens_b)?;
            lens[layer].0 += lens_out.kl.iter().sum::<f64>();
            lens[layer].1 += lens_out.agree.iter().filter(|&&t| t).count();
        }

        // components, end to end and local
        // what each block's components write into: the stream at the block's input
        let stream_in = (0..n_layers)
            .map(|layer| {
                sum_sq(
                    &cache_a
                        .require(&format!("blocks.{layer}.hook_resid_pre"))?
                        .get(0)?,
                )
            })
            .collect::<Result<Vec<f64>>>()?;
        let outs_a = component_outputs(&w_o_a, &cache_a)?;
        let outs_b: HashMap<Component, Tensor> =
            component_outputs(&w_o_b, &cache_b)?.into_iter().collect();
        let mut outs_local: HashMap<Component, Tensor> =
            component_outputs(&w_o_b, &local_b)?.into_iter().collect();
        // The embedding has no inputs: its local output is its end-to-end one (the local pass
        // caches A's, having replaced it).
        if let Some(e) = outs_b.get(&Component::Embed) {
            outs_local.insert(Component::Embed, e.clone());
        }
        for (c, out_a) in &outs_a {
            let (Some(out_b), Some(out_local)) = (outs_b.get(c), outs_local.get(c)) else {
                continue;
            };
            if let Component::Head { layer, .. } = c {
                heads_split[*layer] = true;
            }
            let a2 = sum_sq(out_a)?;
            let stream = match c {
                Component::Head { layer, .. }
                | Component::Attn { layer }
                | Component::Mlp { layer } => stream_in[*layer],
                _ => a2,
            };
            if !parts.contains_key(c) {
                order.push(*c);
            }
            let s = parts.entry(*c).or_default();
            s.a += a2;
            s.local += diff_sq(out_local, out_a)?;
            s.end_to_end += diff_sq(out_b, out_a)?;
            s.stream += stream;
        }
        // the unembedding (with the final norm), on A's last residual stream
        let last = cache_a
            .require(&format!("blocks.{}.hook_resid_post", n_layers - 1))?
            .get(0)?;
        let local_logits = b.model.unembed(&b.model.final_norm(&last)?)?;
        let logits2 = sum_sq(&la)?;
        unembed.a += logits2;
        unembed.local += diff_sq(&local_logits, &la)?;
        unembed.end_to_end += diff_sq(&lb, &la)?;
        unembed.stream += logits2;

        // direct logit attribution toward A's prediction at the last position
        if dla_failed.is_none() {
            let target = la.get(n - 1)?.argmax(0)?.to_scalar::<u32>()?;
            let attribute = |m: &HookedModel, cache: &ActivationCache, logits: &Tensor| {
                attribution::direct_logit_attribution(
                    m.model.as_ref(),
                    cache,
                    logits,
                    n - 1,
                    target,
                    None,
                )
            };
            match (
                attribute(a, &cache_a, &logits_a),
                attribute(b, &cache_b, &logits_b),
            ) {
                (Ok(da), Ok(db)) => {
                    let db: HashMap<Component, f32> = db.parts.into_iter().collect();
                    for (c, va) in da.parts {
                        let Some(&vb) = db.get(&c) else { continue };
                        let s = dla.entry(c).or_default();
                        s.a += va as f64;
                        s.b += vb as f64;
                        s.change += (vb as f64 - va as f64).abs();
                        s.count += 1;
                    }
                }
                (Err(e), _) | (_, Err(e)) => dla_failed = Some(e.to_string()),
            }
        }

        if let Some(f) = features {
            let acts = |cache: &ActivationCache| -> Result<Vec<Vec<f32>>> {
                let x = cache.get(&f.hook).ok_or_else(|| {
                    AnalysisError::input(format!(
                        "the feature dictionary reads `{}`, which is not a hook of these models",
                        f.hook
                    ))
                })?;
                let x = x.get(0)?;
                let x = x.reshape((n, ()))?;
                Ok((f.encode)(&x)?.to_dtype(DType::F32)?.to_vec2()?)
            };
            feature_sums.add(&acts(&cache_a)?, &acts(&cache_b)?);
        }
        progress(done + 1, sequences.len());
    }
    for (side, name) in ["A", "B"].into_iter().enumerate() {
        let logits = nonfinite_logits[side];
        let stream = first_nonfinite[side].as_ref().map(|f| f.1.as_str());
        if logits == 0 && stream.is_none() {
            continue;
        }
        let mut note = format!("model {name}'s");
        if logits > 0 {
            note += &format!(" logits are not finite at {logits} of {positions} positions");
        }
        if let Some(hook) = stream {
            if logits > 0 {
                note += ", and its";
            }
            note += &format!(" activations are first not finite at `{hook}`");
        }
        note += ": what is measured from them is reported as not finite, not as 0";
        notes.push(note);
    }
    if let Some(e) = dla_failed {
        notes.push(format!("direct logit attribution not measured: {e}"));
        dla.clear();
    }

    let p = positions.max(1) as f64;
    let outputs = OutputDrift {
        kl_mean: kl_sum / p,
        kl_max,
        top1_agreement: agree as f64 / p,
        cross_entropy_a: ce_a / predicted.max(1) as f64,
        cross_entropy_b: ce_b / predicted.max(1) as f64,
        perplexity_a: (ce_a / predicted.max(1) as f64).exp(),
        perplexity_b: (ce_b / predicted.max(1) as f64).exp(),
        predicted_tokens: predicted,
    };
    if predicted == 0 {
        notes.push("every sequence is one token long: no perplexity".into());
    }
    let local_of = |c: Component| parts.get(&c).map(|s| ratio(s.local, s.stream));
    let layers = (0..n_layers)
        .map(|layer| LayerDrift {
            layer,
            resid_cosine: resid[layer].2 / p,
            resid_relative_error: ratio(resid[layer].0, resid[layer].1),
            lens_top1_agreement: lens[layer].1 as f64 / p,
            lens_kl: lens[layer].0 / p,
            attn_local_change: local_of(Component::Attn { layer }),
            mlp_local_change: local_of(Component::Mlp { layer }),
        })
        .collect();

    let has_heads = |layer: usize| heads_split.get(layer).copied().unwrap_or(false);
    let drift_of = |c: Component, s: &Sums| {
        let d = dla.get(&c).filter(|d| d.count > 0);
        ComponentDrift {
            component: c,
            label: c.label(),
            local_change: ratio(s.local, s.stream),
            end_to_end_change: ratio(s.end_to_end, s.stream),
            relative_error: ratio(s.local, s.a),
            dla_a: d.map(|d| d.a / d.count as f64),
            dla_b: d.map(|d| d.b / d.count as f64),
            dla_change: d.map(|d| d.change / d.count as f64),
        }
    };
    let mut components: Vec<ComponentDrift> = order
        .iter()
        .filter(|c| ranked_part(c, &has_heads))
        .map(|c| drift_of(*c, &parts[c]))
        .collect();
    components.push(drift_of(Component::Unembed, &unembed));
    // stable: ties keep model order
    components.sort_by(|x, y| larger_first(x.local_change, y.local_change));

    let head_roles = if opts.head_seq_len == 0 || opts.head_batch == 0 {
        None
    } else {
        match (
            heads::run(a, opts.head_seq_len, opts.head_batch, opts.seed),
            heads::run(b, opts.head_seq_len, opts.head_batch, opts.seed),
        ) {
            (Ok(sa), Ok(sb)) => Some(head_role_drift(sa, sb)),
            (Err(e), _) | (_, Err(e)) => {
                notes.push(format!("head roles not measured: {e}"));
                None
            }
        }
    };

    Ok(DriftReport {
        sequences: sequences.iter().filter(|s| !s.is_empty()).count(),
        tokens: positions,
        outputs,
        layers,
        components,
        head_roles,
        features: features.map(|f| {
            for (name, counts) in [
                ("A", &feature_sums.nonfinite_a),
                ("B", &feature_sums.nonfinite_b),
            ] {
                let bad = counts.iter().filter(|&&c| c > 0).count();
                if bad > 0 {
                    notes.push(format!(
                        "model {name}'s activations of {bad} of the dictionary's {} features at `{}` are not finite: they count as moved, not as died or appeared",
                        counts.len(),
                        f.hook
                    ));
                }
            }
            feature_sums.report(&f.hook, opts.top_features)
        }),
        notes,
    })
}

/// Ranks every head by the largest change of any of its role scores.
fn head_role_drift(a: HeadScores, b: HeadScores) -> HeadRoleDrift {
    let mut ranked = Vec::new();
    for (row, &layer) in a.layers.iter().enumerate() {
        for head in 0..a.n_heads {
            let mut best: Option<HeadRoleChange> = None;
            for role in heads::ROLES {
                let (Some(ga), Some(gb)) = (a.role(role), b.role(role)) else {
                    continue;
                };
                let (Some(&x), Some(&y)) =
                    (ga[row].get(head), gb.get(row).and_then(|r| r.get(head)))
                else {
                    continue;
                };
                let change = (y - x).abs();
                if best
                    .as_ref()
                    .is_none_or(|b| larger_first(change as f64, b.change as f64) == Ordering::Less)
                {
                    best = Some(HeadRoleChange {
                        layer,
                        head,
                        role: role.to_string(),
                        a: x,
                        b: y,
                        change,
                    });
                }
            }
            ranked.extend(best);
        }
    }
    ranked.sort_by(|x, y| {
        larger_first(x.change as f64, y.change as f64)
            .then((x.layer, x.head).cmp(&(y.layer, y.head)))
    });
    HeadRoleDrift { a, b, ranked }
}

/// The token sequences of `prompts` (one per non-empty line), each within both models'
/// context and tokenized the same way by B (`what` names the input in messages: a file, or
/// "the prompts").
pub fn prompt_sequences(
    a: &HookedModel,
    b: &HookedModel,
    prompts: &str,
    what: &str,
) -> Result<Vec<Vec<u32>>> {
    let n_ctx = a.info().n_ctx.min(b.info().n_ctx);
    let mut out = Vec::new();
    for (i, line) in prompts
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let ids = crate::predictions::prompt_tokens(a, line, "a prompt")?;
        if ids.len() > n_ctx {
            return Err(AnalysisError::input(format!(
                "{what} line {}: {} tokens exceed the models' context of {n_ctx}",
                i + 1,
                ids.len()
            )));
        }
        same_in_b(b, line, &ids, &format!("{what} line {}", i + 1))?;
        out.push(ids);
    }
    if out.is_empty() {
        return Err(AnalysisError::input(format!("{what}: no prompts")));
    }
    Ok(out)
}

/// Checks that B tokenizes `text` as A did (`ids`).
pub fn same_in_b(b: &HookedModel, text: &str, ids: &[u32], what: &str) -> Result<()> {
    if b.tokenizer.is_some() && b.to_tokens(text)? != ids {
        return Err(AnalysisError::input(format!(
            "A and B tokenize {what} differently: drift compares two versions of one model"
        )));
    }
    Ok(())
}

/// How one side of a drift report was opened, as the report's header gives it.
pub fn side_document(path: &str, adapter: Option<&str>, m: &HookedModel) -> serde_json::Value {
    serde_json::json!({
        "path": path,
        "adapter": adapter,
        "architecture": m.info().architecture,
        "numerics": m.numerics.name(),
        "kv_cache": m.kv_cache.name(),
    })
}

/// The document `glassbox drift --json` prints.
pub fn document(
    a: serde_json::Value,
    b: serde_json::Value,
    input: &str,
    report: &DriftReport,
) -> serde_json::Value {
    serde_json::json!({
        "a": a,
        "b": b,
        "input": input,
        "report": report,
    })
}
