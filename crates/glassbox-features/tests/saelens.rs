//! Parity with SAELens on SAEs SAELens made and saved itself, spliced into TransformerLens's
//! run of the GPT-2 parity fixture (`tests/fixtures/saelens/`, written by
//! `make_saelens_fixtures.py`): for every architecture and every cfg field that changes the
//! maths, the feature activations, reconstructions, spliced logits (with and without the error
//! term, and with a feature edited through the SAE's own hook), the SAE's hook names and
//! cached values, and every evaluation metric.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use glassbox_features::eval::{self, EvalOptions};
use glassbox_features::{splice, Sae, SpliceOptions};
use glassbox_models::{HookedModel, Hooks, LoadOptions, NameFilter};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn gpt2() -> HookedModel {
    HookedModel::load(&fixtures().join("parity/gpt2"), &LoadOptions::default())
        .expect("the GPT-2 parity fixture loads")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("saelens/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn cases() -> Vec<String> {
    let m = manifest();
    let cases: Vec<String> = m["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    // Every architecture SAELens trains, and each cfg field that changes the maths.
    for needed in [
        "standard",
        "standard_layer_norm_no_b_dec",
        "standard_constant_norm",
        "standard_hook_z",
        "topk",
        "topk_rescale",
        "jumprelu",
        "batchtopk",
        "standard_bf16",
    ] {
        assert!(cases.iter().any(|c| c == needed), "no fixture `{needed}`");
    }
    cases
}

fn tokens() -> Tensor {
    let t =
        candle_core::safetensors::load(fixtures().join("saelens/tokens.safetensors"), &Device::Cpu)
            .unwrap();
    t["tokens"].to_dtype(DType::U32).unwrap()
}

struct Case {
    name: String,
    dir: PathBuf,
    expected: HashMap<String, Tensor>,
    meta: serde_json::Value,
}

impl Case {
    fn load(name: &str) -> Case {
        let dir = fixtures().join("saelens").join(name);
        let expected =
            candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
        let meta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        Case {
            name: name.to_string(),
            dir,
            expected,
            meta,
        }
    }

    fn get(&self, key: &str) -> &Tensor {
        self.expected
            .get(key)
            .unwrap_or_else(|| panic!("{}: no expected `{key}`", self.name))
    }

    fn sae(&self) -> Sae {
        Sae::load(&self.dir).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// 1e-4 in float32. A bfloat16 SAE computes in bfloat16 in both (its input cast first), where
/// one rounding step is 2⁻⁸ of the value and the two sum in different orders: its outputs are
/// held to a hundredth of the largest value compared.
fn tolerance(case: &str, theirs: &Tensor) -> f32 {
    if case.ends_with("_bf16") {
        let largest = theirs
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        1e-2 * largest.max(1.0)
    } else {
        TOLERANCE
    }
}

fn assert_close(case: &str, what: &str, ours: &Tensor, theirs: &Tensor) {
    let d = max_diff(ours, theirs);
    let tol = tolerance(case, theirs);
    assert!(
        d <= tol,
        "{case}: {what} differs from SAELens by {d} (allowed {tol})"
    );
}

#[test]
fn encode_and_decode_match_saelens() {
    for name in cases() {
        let case = Case::load(&name);
        let sae = case.sae();
        assert_eq!(sae.cfg.hook_name, case.meta["hook_name"].as_str().unwrap());
        let x = case.get("sae_in");
        let acts = sae.encode(x).unwrap();
        assert_close(
            &name,
            "feature activations",
            &acts,
            case.get("feature_acts"),
        );
        // The features that fire are SAELens's exactly (no near-ties in these fixtures).
        let ours = acts.ne(0f32).unwrap().to_dtype(DType::F32).unwrap();
        let theirs = case
            .get("feature_acts")
            .ne(0f32)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert_eq!(
            max_diff(&ours, &theirs),
            0.0,
            "{name}: different features fire"
        );
        assert_close(
            &name,
            "reconstruction",
            &sae.reconstruct(x).unwrap(),
            case.get("sae_out"),
        );
    }
}

/// The first rows of `t` (the fixture keeps logits and caches of two sequences).
fn rows(t: &Tensor, n: usize) -> Tensor {
    t.narrow(0, 0, n).unwrap()
}

#[test]
fn spliced_forward_passes_match_saelens() {
    let ids = tokens();
    for name in cases() {
        let case = Case::load(&name);
        let hook = case.meta["hook_name"].as_str().unwrap().to_string();
        let shown = case.get("logits_with_sae").dim(0).unwrap();
        let ids = rows(&ids, shown);

        // Reconstruction in place of the activation, with every SAE hook cached.
        let model = splice(gpt2(), vec![case.sae()], SpliceOptions::default()).unwrap();
        let filter = NameFilter::new(&[format!("{hook}.*")]).unwrap();
        let (logits, cache) = model.run_with_cache(&ids, &filter).unwrap();
        assert_close(
            &name,
            "logits with the SAE",
            &logits,
            case.get("logits_with_sae"),
        );
        let names: Vec<&str> = cache.names().collect();
        let expected: Vec<&str> = case.meta["hook_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(names, expected, "{name}: the SAE's hook points");
        for n in &expected {
            assert_close(&name, n, &cache[*n], case.get(&format!("cache.{n}")));
        }

        // With the error term the model's own logits come back; the error is SAELens's.
        let model = splice(gpt2(), vec![case.sae()], SpliceOptions { error_term: true }).unwrap();
        let error_name = format!("{hook}.hook_sae_error");
        let (logits, cache) = model
            .run_with_cache(&ids, &NameFilter::new(&[error_name.as_str()]).unwrap())
            .unwrap();
        assert_close(
            &name,
            "logits with the error term",
            &logits,
            case.get("logits_with_error_term"),
        );
        assert_close(
            &name,
            "hook_sae_error",
            &cache[error_name.as_str()],
            case.get(&format!("cache.{error_name}")),
        );
        assert_close(
            &name,
            "logits with the error term vs without the SAE",
            &logits,
            &rows(case.get("logits"), shown),
        );

        // An edit through the SAE's own hook reaches the output.
        let feature = case.meta["zeroed_feature"].as_u64().unwrap() as usize;
        let mut hooks = Hooks::none();
        hooks.add_fn(
            NameFilter::new(&[format!("{hook}.hook_sae_acts_post")]).unwrap(),
            move |_, a| {
                let n = a.dim(a.rank() - 1)?;
                let mut keep = vec![1f32; n];
                keep[feature] = 0.0;
                let keep = Tensor::from_vec(keep, n, a.device())?.to_dtype(a.dtype())?;
                Ok(Some(a.broadcast_mul(&keep)?))
            },
        );
        let logits = model.run_with_hooks(&ids, &mut hooks).unwrap();
        assert_close(
            &name,
            "logits with a feature zeroed",
            &logits,
            case.get("logits_feature_zeroed"),
        );
        let moved = max_diff(&logits, case.get("logits_with_error_term"));
        assert!(
            moved > 1e-3,
            "{name}: zeroing feature {feature} changed nothing ({moved})"
        );
    }
}

#[test]
fn evaluation_metrics_match_saelens() {
    let m = manifest();
    let opts = EvalOptions {
        batch_size: m["batch_size"].as_u64().unwrap() as usize,
        ignore_tokens: m["ignore_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect(),
    };
    let model = gpt2();
    // The fixture's one special token is what would be left out by default.
    assert_eq!(eval::special_tokens(&model), opts.ignore_tokens);
    let ids = tokens();
    for name in cases() {
        let case = Case::load(&name);
        let metrics = eval::evaluate(&model, &case.sae(), &ids, &opts).unwrap();
        let ours = serde_json::to_value(&metrics).unwrap();
        let theirs = &case.meta["metrics"];
        for key in [
            "l0",
            "l1",
            "mse",
            "explained_variance",
            "explained_variance_legacy",
            "cossim",
            "l2_norm_in",
            "l2_norm_out",
            "l2_ratio",
            "relative_reconstruction_bias",
            "ce_loss_without_sae",
            "ce_loss_with_sae",
            "ce_loss_with_ablation",
            "ce_loss_score",
            "kl_div_with_sae",
            "kl_div_with_ablation",
            "kl_div_score",
        ] {
            let a = ours[key].as_f64().unwrap();
            let b = theirs[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: SAELens gave no `{key}`"));
            let rel = if name.ends_with("_bf16") { 1e-2 } else { 1e-4 };
            assert!(
                (a - b).abs() <= rel * b.abs().max(1.0),
                "{name}: {key} is {a}, SAELens {b}"
            );
        }
        let density = case.get("feature_density").to_vec1::<f32>().unwrap();
        assert_eq!(density.len(), metrics.feature_density.len());
        for (j, (&a, &b)) in metrics.feature_density.iter().zip(&density).enumerate() {
            assert!(
                (a - b as f64).abs() <= 1e-6,
                "{name}: density of feature {j} is {a}, SAELens {b}"
            );
        }
        assert_eq!(
            metrics.dead_features,
            density.iter().filter(|&&d| d == 0.0).count(),
            "{name}: dead features"
        );
    }
}

#[test]
fn saved_saes_read_back_the_same() {
    let dir = std::env::temp_dir().join(format!("glassbox-sae-roundtrip-{}", std::process::id()));
    for name in cases() {
        let case = Case::load(&name);
        let sae = case.sae();
        let out = dir.join(&name);
        sae.save(&out).unwrap();
        let back = Sae::load(&out).unwrap();
        let x = case.get("sae_in");
        assert_eq!(
            max_diff(&back.reconstruct(x).unwrap(), &sae.reconstruct(x).unwrap()),
            0.0,
            "{name}"
        );
        // What SAELens needs to read it: the architecture (BatchTopK saved as the JumpReLU
        // it is at inference), the hook under metadata, and exactly the tensors it expects.
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(
            cfg["architecture"],
            if name == "batchtopk" {
                "jumprelu"
            } else {
                sae.cfg.architecture()
            }
        );
        assert_eq!(cfg["metadata"]["hook_name"], case.meta["hook_name"]);
        let saved =
            candle_core::safetensors::load(out.join("sae_weights.safetensors"), &Device::Cpu)
                .unwrap();
        let mut names: Vec<&str> = saved.keys().map(String::as_str).collect();
        names.sort();
        let mut want = vec!["W_dec", "W_enc", "b_dec", "b_enc"];
        if cfg["architecture"] == "jumprelu" {
            want.push("threshold");
        }
        assert_eq!(names, want, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An EleutherAI sparsify SAE as sparsify saved it (`make_sparsify_fixture.py`): read from its
/// hook-point folder, it encodes, decodes and splices as sparsify computes.
#[test]
fn sparsify_saes_match_sparsify() {
    let dir = fixtures().join("saelens/sparsify");
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let sae = Sae::load(&dir.join("layers.0")).unwrap();
    assert_eq!(sae.hook_name(), "blocks.0.hook_resid_post");
    let x = &expected["sae_in"];
    assert_close(
        "sparsify",
        "feature activations",
        &sae.encode(x).unwrap(),
        &expected["feature_acts"],
    );
    assert_close(
        "sparsify",
        "reconstruction",
        &sae.reconstruct(x).unwrap(),
        &expected["sae_out"],
    );
    let shown = expected["logits_with_sae"].dim(0).unwrap();
    let model = splice(gpt2(), vec![sae], SpliceOptions::default()).unwrap();
    let logits = model.run(&rows(&tokens(), shown)).unwrap();
    assert_close(
        "sparsify",
        "logits with the SAE",
        &logits,
        &expected["logits_with_sae"],
    );
}
