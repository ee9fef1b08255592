//! The identities every analysis must satisfy, on every parity and family fixture:
//!
//! - direct logit attribution: the parts sum to the logit difference the model produced;
//! - logit lens: the last row is the model's logits;
//! - patching: writing every clean position into the corrupted run gives 1, writing nothing
//!   gives 0, and a position where the two prompts agree gives 0 at the first layer;
//! - ablation: ablating nothing, or resampling from the text itself, changes nothing;
//! - steering: scale 0 changes nothing, and a direction lands exactly on
//!   `blocks.N.hook_resid_post`, leaving `blocks.N.hook_resid_pre` untouched;
//! - attribution patching's gradient agrees with finite differences (the backward pass is
//!   correct through the whole model).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use glassbox_analysis::ablation::{self, AblationMethod, AblationTarget};
use glassbox_analysis::patching::{self, PatchTarget};
use glassbox_analysis::steering::ControlVector;
use glassbox_analysis::{attribution, lens};
use glassbox_models::{HookedModel, Hooks, Intervention, LoadOptions, NameFilter, Selection};
use rand::{Rng, SeedableRng};

#[path = "../../glassbox-models/tests/support/compare.rs"]
mod compare;
use compare::max_abs_diff;

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPT: &str = "When Mary and John went to the store, Mary gave a drink to";
/// As many tokens as CLEAN on every fixture's tokenizer, differing from the third on.
const REORDERED: &str = "When the store went to John and Mary, John gave a drink to";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn single(model: &HookedModel, text: &str) -> u32 {
    let ids = model.to_tokens(text).unwrap();
    assert_eq!(ids.len(), 1, "{text:?} is one token");
    ids[0]
}

/// Runs every identity on the fixture `name` (a path under tests/fixtures).
fn check(name: &str) {
    let model = HookedModel::load(&fixture(name), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let clean = model.to_tokens(CLEAN).unwrap();
    let corrupt = model.to_tokens(CORRUPT).unwrap();
    assert_eq!(clean.len(), corrupt.len());
    let (mary, john) = (single(&model, " Mary"), single(&model, " John"));
    let n_layers = model.info().n_layers;

    // attribution: the parts sum to the logit difference
    let a = attribution::run(&model, &clean, None, mary, Some(john)).unwrap();
    let tol = 1e-4 * a.total.abs().max(1.0);
    assert!(
        (a.sum() - a.total).abs() <= tol,
        "{name}: attribution parts sum to {} but the logit difference is {}",
        a.sum(),
        a.total
    );
    assert!(
        a.parts.len() > 2 * n_layers,
        "{name}: parts {:?}",
        a.parts.len()
    );
    // and a single logit too
    let single_logit = attribution::run(&model, &clean, Some(3), mary, None).unwrap();
    assert!(
        (single_logit.sum() - single_logit.total).abs() <= 1e-4 * single_logit.total.abs().max(1.0)
    );

    // lens: the last row is the model's output
    let names = lens::hook_names(n_layers);
    let ids = model.ids_tensor(&clean).unwrap();
    let (logits, cache) = model
        .run_with_cache(&ids, &NameFilter::new(&names).unwrap())
        .unwrap();
    let lensed = lens::logit_lens(model.model.as_ref(), &cache).unwrap();
    let last = lensed.get(n_layers).unwrap();
    assert!(
        max_abs_diff(&last, &logits) <= 1e-4,
        "{name}: lens final row"
    );

    // patching: all clean → 1, nothing → 0, an agreeing position at layer 0 → 0
    let hook = "blocks.0.hook_resid_pre";
    let (clean_logits, clean_cache) = model
        .run_with_cache(&ids, &NameFilter::new(&[hook]).unwrap())
        .unwrap();
    let m_clean = patching::logit_diff(&clean_logits, mary, john)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let m_corrupt = patching::logit_diff(
        &model.run(&model.ids_tensor(&corrupt).unwrap()).unwrap(),
        mary,
        john,
    )
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    let act = clean_cache.require(hook).unwrap();
    let all =
        patching::patched_metric(&model, &corrupt, hook, act, Selection::All, mary, john).unwrap();
    let none = patching::patched_metric(
        &model,
        &corrupt,
        hook,
        act,
        Selection::Positions(vec![]),
        mary,
        john,
    )
    .unwrap();
    assert!(
        (all - m_clean).abs() <= 1e-4,
        "{name}: patching everything gives {all}, clean is {m_clean}"
    );
    assert!(
        (none - m_corrupt).abs() <= 1e-5,
        "{name}: patching nothing gives {none}, corrupted is {m_corrupt}"
    );
    let grid = patching::activation_patching(
        &model,
        &clean,
        &corrupt,
        mary,
        john,
        PatchTarget::ResidPre,
        || std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    for (p, (c, r)) in clean.iter().zip(&corrupt).enumerate() {
        if c == r {
            assert!(
                grid.normalized[0][p].abs() <= 1e-4,
                "{name}: agreeing position {p} at layer 0"
            );
        }
    }
    // A progress callback that says stop ends the work there: a cancelled request.
    let mut told = 0;
    let stopped = patching::activation_patching(
        &model,
        &clean,
        &corrupt,
        mary,
        john,
        PatchTarget::ResidPre,
        || {
            told += 1;
            if told == 3 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        },
    );
    assert!(
        matches!(stopped, Err(glassbox_analysis::AnalysisError::Cancelled)),
        "{name}: {:?}",
        stopped.map(|_| ())
    );
    assert_eq!(told, 3, "{name}: progress after the stop");

    // ablation: nothing, or resampling the text itself, changes nothing
    let none = ablation::run(&model, &clean, &[], AblationMethod::Zero, &[]).unwrap();
    assert_eq!(
        none.baseline_per_token, none.ablated_per_token,
        "{name}: empty ablation"
    );
    // Hybrids hold heads and MLPs in some layers only: take the first layer with heads, the
    // last with an MLP, and a neuron of the first MLP.
    let (_, parts) = model
        .run_with_cache(
            &ids,
            &NameFilter::new(&["blocks.*.attn.hook_z", "blocks.*.hook_mlp_out"]).unwrap(),
        )
        .unwrap();
    let with = |hook: &str| -> Vec<usize> {
        (0..n_layers)
            .filter(|l| parts.contains(&format!("blocks.{l}.{hook}")))
            .collect()
    };
    let (head_layers, mlp_layers) = (with("attn.hook_z"), with("hook_mlp_out"));
    let mut targets = vec![
        AblationTarget::Head {
            layer: head_layers[0],
            head: 1,
        },
        AblationTarget::Mlp {
            layer: *mlp_layers.last().unwrap(),
        },
    ];
    let neuron = AblationTarget::Neuron {
        layer: mlp_layers[0],
        neuron: 3,
    };
    match ablation::run(&model, &clean, &[neuron], AblationMethod::Zero, &[]) {
        Ok(r) => {
            assert!(
                r.ablated_loss != r.baseline_loss,
                "{name}: a neuron's ablation reaches the output"
            );
            targets.push(neuron);
        }
        // mixture-of-experts layers have no single MLP to take a neuron of: refused, not ignored
        Err(e) => assert!(e.to_string().contains("has no hook"), "{name}: {e}"),
    }
    let itself = ablation::run(
        &model,
        &clean,
        &targets,
        AblationMethod::Resample { seed: 1 },
        std::slice::from_ref(&clean),
    )
    .unwrap();
    assert!(
        (itself.ablated_loss - itself.baseline_loss).abs() <= 1e-5,
        "{name}: resampling itself"
    );
    // Resampling from two references is the mean of resampling from each, and one shorter
    // than the text is left out (it was a seeded single draw among them).
    let other: Vec<u32> = clean.iter().rev().copied().collect();
    let short = clean[..1].to_vec();
    let resample = |refs: &[Vec<u32>]| {
        ablation::run(
            &model,
            &clean,
            &targets,
            AblationMethod::Resample { seed: 3 },
            refs,
        )
        .unwrap()
    };
    let both = resample(&[clean.clone(), short, other.clone()]);
    assert_eq!(both.resampled_from, vec![0, 2], "{name}");
    let (first, second) = (
        resample(std::slice::from_ref(&clean)),
        resample(std::slice::from_ref(&other)),
    );
    for (i, &v) in both.ablated_per_token.iter().enumerate() {
        let want = (first.ablated_per_token[i] + second.ablated_per_token[i]) / 2.0;
        assert!(
            (v - want).abs() <= 1e-6,
            "{name}: position {i}: {v} vs {want}"
        );
    }
    assert_eq!(
        both.ablated_loss_each,
        vec![first.ablated_loss, second.ablated_loss]
    );
    let zeroed = ablation::run(&model, &clean, &targets, AblationMethod::Zero, &[]).unwrap();
    assert!(
        (zeroed.ablated_loss - zeroed.baseline_loss).abs() > 1e-4,
        "{name}: zero ablation does something"
    );
    // One at a time, the targets share the text's losses and the reference caches of their
    // hook: the same numbers as ablating each on its own.
    let references = vec![clean.clone(), other];
    for method in [AblationMethod::Mean, AblationMethod::Resample { seed: 5 }] {
        let inputs = ablation::AblationInputs {
            ids: clean.clone(),
            targets: targets.clone(),
            reference: references.clone(),
        };
        let report = inputs
            .ablate(&model, method, true, || std::ops::ControlFlow::Continue(()))
            .unwrap();
        for (t, got) in targets.iter().zip(&report.results) {
            let alone = ablation::run(&model, &clean, &[*t], method, &references).unwrap();
            assert_eq!(got.baseline_per_token, alone.baseline_per_token, "{name}");
            assert_eq!(
                got.ablated_per_token,
                alone.ablated_per_token,
                "{name}: {} by {method:?}",
                t.label()
            );
        }
    }

    // steering: scale 0 changes nothing; a direction lands on resid_post of its block only
    let d = model.info().d_model;
    let layer = n_layers - 1;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let dir: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let cv = ControlVector {
        model_hint: "test".into(),
        d_model: d,
        directions: BTreeMap::from([(layer, dir.clone())]),
    };
    let base = model.run(&ids).unwrap();
    let mut hooks = Hooks::none();
    cv.apply(&mut hooks, &model, 0.0).unwrap();
    assert_eq!(
        max_abs_diff(&model.run_with_hooks(&ids, &mut hooks).unwrap(), &base),
        0.0,
        "{name}: scale 0"
    );
    let watched = [
        format!("blocks.{layer}.hook_resid_pre"),
        format!("blocks.{layer}.hook_resid_post"),
    ];
    let (_, plain) = model
        .run_with_cache(&ids, &NameFilter::new(&watched).unwrap())
        .unwrap();
    let mut hooks = Hooks::caching(NameFilter::new(&watched).unwrap());
    cv.apply(&mut hooks, &model, 2.5).unwrap();
    let steered_logits = model.run_with_hooks(&ids, &mut hooks).unwrap();
    assert!(
        max_abs_diff(&steered_logits, &base) > 1e-3,
        "{name}: steering changes the output"
    );
    let steered = hooks.take_cache();
    assert_eq!(
        max_abs_diff(&steered[&watched[0]], &plain[&watched[0]]),
        0.0,
        "{name}: resid_pre untouched"
    );
    let added = (&steered[&watched[1]] - &plain[&watched[1]]).unwrap();
    let expected = (Tensor::new(dir.as_slice(), added.device()).unwrap() * 2.5)
        .unwrap()
        .broadcast_as(added.shape())
        .unwrap();
    assert!(
        max_abs_diff(&added, &expected) <= 1e-4,
        "{name}: the direction is added to resid_post"
    );

    // attribution patching's gradient against central finite differences at resid_pre 0,
    // upstream of every op of the model
    let (metric, grads) =
        patching::metric_gradients(&model, &corrupt, mary, john, PatchTarget::ResidPre).unwrap();
    assert!((metric - m_corrupt).abs() <= 1e-4);
    let g0 = &grads.iter().find(|g| g.name == hook).unwrap().gradient;
    let noise: Vec<f32> = (0..g0.elem_count())
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let delta = Tensor::from_vec(noise, g0.shape(), g0.device()).unwrap();
    let predicted = (g0 * &delta)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // a step small against the activation (the embeddings are small, the model is not)
    let act = &grads.iter().find(|g| g.name == hook).unwrap().activation;
    let rms = act
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .sqrt()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let shifted = |eps: f64, sign: f64| -> f32 {
        let mut hooks = Hooks::none();
        hooks.intervene(
            NameFilter::new(&[hook]).unwrap(),
            Intervention::Add((&delta * (sign * eps)).unwrap()),
            Selection::All,
        );
        let logits = model
            .run_with_hooks(&model.ids_tensor(&corrupt).unwrap(), &mut hooks)
            .unwrap();
        patching::logit_diff(&logits, mary, john)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    // Central differences hold where the function is smooth over the step: a routing choice
    // (mixture of experts) may flip within the larger step, so smaller ones are tried too.
    let finite: Vec<f32> = [5e-3, 1e-3, 5e-4]
        .iter()
        .map(|scale| {
            let eps = scale * rms as f64;
            (shifted(eps, 1.0) - shifted(eps, -1.0)) / (2.0 * eps as f32)
        })
        .collect();
    assert!(
        finite
            .iter()
            .any(|f| (f - predicted).abs() <= 2e-2 * predicted.abs().max(f.abs()).max(0.1)),
        "{name}: gradient · δ = {predicted}, finite differences give {finite:?}"
    );
    // every layer's gradient is there and non-zero (the metric depends on each)
    for l in 0..n_layers {
        let g = &grads
            .iter()
            .find(|g| g.name == format!("blocks.{l}.hook_resid_pre"))
            .unwrap()
            .gradient;
        assert!(
            g.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0,
            "{name}: layer {l} gradient"
        );
        assert_eq!(g.dtype(), DType::F32);
    }
}

#[test]
fn gpt2() {
    check("parity/gpt2");
}

#[test]
fn pythia() {
    check("parity/pythia");
}

#[test]
fn llama() {
    check("parity/llama");
}

#[test]
fn qwen2() {
    check("parity/qwen2");
}

#[test]
fn glm4() {
    check("families/glm4");
}

#[test]
fn deepseek_v3() {
    check("families/deepseek-v3");
}

#[test]
fn mixtral() {
    check("families/mixtral");
}

/// Activation patching — batched, rerunning only from the patched block and position on,
/// skipping sites where the two runs agree — gives the bits that patching one site per full
/// pass gives: every target, every layer, on
/// learned positions (GPT-2), rotary grouped-query attention (Llama), a mixture of experts
/// (Mixtral), latent attention (DeepSeek-V3) and post-norms (GLM-4); and on a prompt short
/// enough for the few-row products.
#[test]
fn batched_patching_equals_one_site_at_a_time() {
    let cases = [
        ("parity/gpt2", CLEAN, CORRUPT),
        ("parity/llama", CLEAN, CORRUPT),
        ("families/mixtral", CLEAN, CORRUPT),
        ("families/deepseek-v3", CLEAN, CORRUPT),
        ("families/glm4", CLEAN, CORRUPT),
        ("parity/gpt2", "Mary gave", "John gave"),
        // a pair that differs at many positions: more sites to rerun, fewer left equal
        ("parity/gpt2", CLEAN, REORDERED),
        ("parity/llama", CLEAN, REORDERED),
        ("families/mixtral", CLEAN, REORDERED),
    ];
    for (name, clean, corrupt) in cases {
        let model = HookedModel::load(&fixture(name), &LoadOptions::default()).unwrap();
        let clean = model.to_tokens(clean).unwrap();
        let corrupt = model.to_tokens(corrupt).unwrap();
        assert_eq!(clean.len(), corrupt.len(), "{name}");
        // The tokens where the prompts differ: a metric that moves with every patch.
        let differ = (0..clean.len()).find(|&i| clean[i] != corrupt[i]).unwrap();
        let (answer, wrong) = (clean[differ], corrupt[differ]);
        let corrupt_run = model.run(&model.ids_tensor(&corrupt).unwrap()).unwrap();
        let corrupt_metric = patching::logit_diff(&corrupt_run, answer, wrong)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        for what in [
            PatchTarget::ResidPre,
            PatchTarget::AttnOut,
            PatchTarget::MlpOut,
            PatchTarget::Heads,
        ] {
            let batched = patching::activation_patching(
                &model,
                &clean,
                &corrupt,
                answer,
                wrong,
                what,
                || std::ops::ControlFlow::Continue(()),
            )
            .unwrap();
            assert_eq!(batched.corrupt_metric.to_bits(), corrupt_metric.to_bits());
            let (_, cache) = model
                .run_with_cache(
                    &model.ids_tensor(&clean).unwrap(),
                    &NameFilter::new(&["blocks.*"]).unwrap(),
                )
                .unwrap();
            for (layer, row) in batched.raw.iter().enumerate() {
                let clean_act = cache.require(&what.hook(layer)).unwrap();
                for (site, &got) in row.iter().enumerate() {
                    let one = patching::patched_metric(
                        &model,
                        &corrupt,
                        &what.hook(layer),
                        clean_act,
                        what.site(site),
                        answer,
                        wrong,
                    )
                    .unwrap();
                    assert_eq!(
                        got.to_bits(),
                        one.to_bits(),
                        "{name} {what:?} layer {layer} site {site} ({} tokens): {got} vs {one}",
                        clean.len()
                    );
                }
            }
        }
    }
}

#[test]
fn nemotron() {
    check("../../crates/glassbox-models/tests/fixtures/more/nemotron");
}

#[test]
fn olmoe() {
    check("../../crates/glassbox-models/tests/fixtures/more/olmoe");
}

#[test]
fn olmo3() {
    check("../../crates/glassbox-models/tests/fixtures/more/olmo3");
}

#[test]
fn gemma3() {
    check("../../crates/glassbox-models/tests/fixtures/more/gemma3");
}

#[test]
fn glm4_moe() {
    check("../../crates/glassbox-models/tests/fixtures/more/glm4-moe");
}

#[test]
fn gpt_oss() {
    check("../../crates/glassbox-models/tests/fixtures/more/gpt-oss");
}

#[test]
fn llama4() {
    check("../../crates/glassbox-models/tests/fixtures/more/llama4");
}

#[test]
fn qwen3_next() {
    check("../../crates/glassbox-models/tests/fixtures/more/qwen3-next");
}

#[test]
fn nemotron_h() {
    check("../../crates/glassbox-models/tests/fixtures/more/nemotron-h");
}
