//! Known answers for `drift`: a copy of the reference model with one head's weights perturbed
//! is reported with that head first and nothing else changed locally; the reference model
//! against its Q4_0 quantization gives figures that an independent computation here (plain
//! loops over the logits and caches, one layer patched at a time) reproduces.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use glassbox_analysis::attribution::Component;
use glassbox_analysis::drift::{self, DriftOptions, DriftReport, FeatureDictionary};
use glassbox_analysis::AnalysisError;
use glassbox_formats::gguf_convert::HubAsGguf;
use glassbox_formats::gguf_quantize::{self, Mixture};
use glassbox_models::{HookedModel, Hooks, LoadOptions, NameFilter};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("models/reference").is_dir())
        .expect("the repository root")
        .to_path_buf()
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-drift-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn reference() -> HookedModel {
    HookedModel::load(&root().join("models/reference"), &LoadOptions::default()).unwrap()
}

/// Windows of the reference model's held-out text.
fn windows(model: &HookedModel, count: usize, len: usize) -> Vec<Vec<u32>> {
    let text = std::fs::read_to_string(root().join("models/reference/data/held_out.txt")).unwrap();
    let ids = model.to_tokens(&text[..20_000]).unwrap();
    ids.chunks(len).take(count).map(<[u32]>::to_vec).collect()
}

/// A copy of the reference model whose `tensor` is changed by `edit` (rows as [out][in]).
fn edited_copy(dir: &Path, tensor: &str, edit: impl Fn(usize, usize, f32) -> f32) -> PathBuf {
    let src = root().join("models/reference");
    for f in ["config.json", "tokenizer.json", "generation_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    let mut found = false;
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32);
        let mut data = view.data().to_vec();
        if name == tensor {
            found = true;
            let cols = view.shape()[1];
            for (i, chunk) in data.chunks_exact_mut(4).enumerate() {
                let v = f32::from_le_bytes(chunk.try_into().unwrap());
                chunk.copy_from_slice(&edit(i / cols, i % cols, v).to_le_bytes());
            }
        }
        owned.push((name, data, view.shape().to_vec()));
    }
    assert!(found, "no tensor {tensor}");
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    dir.to_path_buf()
}

fn compare(
    a: &HookedModel,
    b: &HookedModel,
    seqs: &[Vec<u32>],
    features: Option<&FeatureDictionary>,
) -> DriftReport {
    drift::compare(
        a,
        b,
        seqs,
        &DriftOptions::default(),
        features,
        &mut |_, _| {},
    )
    .unwrap()
}

fn component(r: &DriftReport, c: Component) -> &drift::ComponentDrift {
    r.components
        .iter()
        .find(|x| x.component == c)
        .unwrap_or_else(|| panic!("{c:?} not reported"))
}

/// A smooth, deterministic perturbation of about the weights' size.
fn bump(i: usize, j: usize) -> f32 {
    0.3 * ((i * 7 + j * 13) as f32 * 0.37).sin()
}

#[test]
fn a_perturbed_head_is_reported_first_and_alone() {
    let a = reference();
    let seqs = windows(&a, 3, 64);
    let (layer, head, d_head) = (1usize, 2usize, 16usize);
    let heads_rows = head * d_head..(head + 1) * d_head;
    // once through the head's values (W_V rows), once through its output (W_O columns)
    type Edit = Box<dyn Fn(usize, usize, f32) -> f32>;
    let cases: [(&str, Edit); 2] = [
        (
            "model.layers.1.self_attn.v_proj.weight",
            Box::new(move |r, c, v| {
                if heads_rows.contains(&r) {
                    v + bump(r, c)
                } else {
                    v
                }
            }),
        ),
        (
            "model.layers.1.self_attn.o_proj.weight",
            Box::new(move |r, c, v| {
                if (head * d_head..(head + 1) * d_head).contains(&c) {
                    v + bump(r, c)
                } else {
                    v
                }
            }),
        ),
    ];
    for (tensor, edit) in cases {
        let dir = scratch(&format!("head-{}", tensor.len()));
        let b =
            HookedModel::load(&edited_copy(&dir, tensor, edit), &LoadOptions::default()).unwrap();
        let r = compare(&a, &b, &seqs, None);
        assert_eq!(
            r.components[0].component,
            Component::Head { layer, head },
            "{tensor}: {:?}",
            &r.components[..3]
        );
        assert!(r.components[0].local_change > 0.01, "{tensor}");
        // every other component computes exactly what it did, given the same inputs
        for c in &r.components[1..] {
            assert_eq!(c.local_change, 0.0, "{tensor}: {} moved", c.label);
        }
        // end to end, what comes after the head moves; what comes before does not
        assert_eq!(r.layers[0].resid_relative_error, 0.0);
        assert!(r.layers[1].resid_relative_error > 0.0 && r.layers[2].resid_relative_error > 0.0);
        assert!(component(&r, Component::Mlp { layer: 2 }).end_to_end_change > 0.0);
        assert_eq!(
            component(&r, Component::Head { layer: 0, head: 0 }).end_to_end_change,
            0.0
        );
        assert!(r.outputs.kl_mean > 0.0);
        // the head's own attribution moved (the others' too, by the final norm's new scale)
        let moved = component(&r, Component::Head { layer, head });
        assert!(moved.dla_change.unwrap() > 0.0);
        // head roles: layer 0 is untouched
        let roles = r.head_roles.as_ref().unwrap();
        assert_eq!(roles.a.previous_token[0], roles.b.previous_token[0]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// log-softmax of one row, in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    row.iter().map(|&x| x as f64 - lse).collect()
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(lp, lq)| lp.exp() * (lp - lq)).sum()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1e-3),
        "{what}: report {got}, independent {want}"
    );
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.get(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn norm2(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64 * x as f64).sum()
}

#[test]
fn q4_0_drift_matches_an_independent_computation() {
    let dir = scratch("q4");
    let gguf = dir.join("reference-Q4_0.gguf");
    let hub = HubAsGguf::open(&root().join("models/reference")).unwrap();
    let plan = gguf_quantize::plan(&hub, Mixture::Q4_0, None).unwrap();
    gguf_quantize::quantize(&hub, &plan, None, &gguf, |_, _| {}).unwrap();
    let a = reference();
    let b = HookedModel::load(&gguf, &LoadOptions::default()).unwrap(); // llama.cpp's numerics
    let seqs = windows(&a, 3, 48);
    // a feature dictionary at layer 1's output: ReLU of fixed random directions
    let d = a.info().d_model;
    let dirs: Vec<f32> = (0..d * 32).map(|i| ((i as f32) * 0.61).sin()).collect();
    let dirs = Tensor::from_vec(dirs, (d, 32), &candle_core::Device::Cpu).unwrap();
    let encode = |x: &Tensor| -> Result<Tensor, AnalysisError> { Ok(x.matmul(&dirs)?.relu()?) };
    let dictionary = FeatureDictionary {
        hook: "blocks.1.hook_resid_post".into(),
        encode: Box::new(encode),
    };
    let r = compare(&a, &b, &seqs, Some(&dictionary));

    let n_layers = a.info().n_layers;
    let names: Vec<String> = (0..n_layers)
        .flat_map(|l| {
            [
                format!("blocks.{l}.hook_resid_pre"),
                format!("blocks.{l}.hook_resid_mid"),
                format!("blocks.{l}.hook_resid_post"),
            ]
        })
        .collect();
    let filter = NameFilter::new(&names).unwrap();
    let (mut kl_sum, mut kl_max, mut agree, mut n) = (0.0, 0.0f64, 0usize, 0usize);
    let (mut ce_a, mut ce_b, mut predicted) = (0.0, 0.0, 0usize);
    let mut resid = vec![(0.0f64, 0.0f64, 0.0f64); n_layers];
    let mut lens_agree = vec![0usize; n_layers];
    let (l, h) = (2usize, 0usize); // one head's local change, patched one layer at a time
    let (mut head_delta, mut head_stream) = (0.0f64, 0.0f64);
    let mut fired = (vec![0usize; 32], vec![0usize; 32]);
    for seq in &seqs {
        let ids = a.ids_tensor(seq).unwrap();
        let (la, ca) = a.run_with_cache(&ids, &filter).unwrap();
        let (lb, cb) = b.run_with_cache(&ids, &filter).unwrap();
        let (la, lb) = (rows(&la), rows(&lb));
        for p in 0..seq.len() {
            let (pa, pb) = (log_softmax(&la[p]), log_softmax(&lb[p]));
            let k = kl(&pa, &pb).max(0.0);
            kl_sum += k;
            kl_max = kl_max.max(k);
            agree += (argmax(&la[p]) == argmax(&lb[p])) as usize;
            n += 1;
            if p + 1 < seq.len() {
                ce_a -= pa[seq[p + 1] as usize];
                ce_b -= pb[seq[p + 1] as usize];
                predicted += 1;
            }
        }
        for (layer, acc) in resid.iter_mut().enumerate() {
            let name = format!("blocks.{layer}.hook_resid_post");
            let (ra, rb) = (rows(&ca[name.as_str()]), rows(&cb[name.as_str()]));
            for (x, y) in ra.iter().zip(&rb) {
                let diff: Vec<f32> = x.iter().zip(y).map(|(p, q)| q - p).collect();
                acc.0 += norm2(&diff);
                acc.1 += norm2(x);
                let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
                acc.2 += dot / (norm2(x).sqrt() * norm2(y).sqrt());
            }
            // the lens, through each model's own final norm and unembedding
            let lens = |m: &HookedModel, cache: &glassbox_models::ActivationCache| {
                let x = cache[name.as_str()].get(0).unwrap();
                m.model
                    .unembed(&m.model.final_norm(&x).unwrap())
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap()
            };
            let (xa, xb) = (lens(&a, &ca), lens(&b, &cb));
            lens_agree[layer] += xa
                .iter()
                .zip(&xb)
                .filter(|(p, q)| argmax(p) == argmax(q))
                .count();
        }
        // head (l, h) of B on A's inputs: only layer l's inputs replaced
        let mut hooks =
            Hooks::caching(NameFilter::new(&[format!("blocks.{l}.attn.hook_z")]).unwrap());
        let inputs = NameFilter::new(&[
            format!("blocks.{l}.hook_resid_pre"),
            format!("blocks.{l}.hook_resid_mid"),
        ])
        .unwrap();
        hooks.add_fn(inputs, |name, _| Ok(Some(ca[name].clone())));
        b.run_with_hooks(&ids, &mut hooks).unwrap();
        let zb = hooks.take_cache();
        let (_, za) = a
            .run_with_cache(
                &ids,
                &NameFilter::new(&[format!("blocks.{l}.attn.hook_z")]).unwrap(),
            )
            .unwrap();
        let out = |z: &Tensor, m: &HookedModel| -> Vec<Vec<f64>> {
            let z: Vec<Vec<Vec<f32>>> = z.get(0).unwrap().to_vec3().unwrap(); // [pos][head][d_head]
            let w: Vec<Vec<Vec<f32>>> = m.model.w_o(l).unwrap().to_vec3().unwrap(); // [head][d_head][d_model]
            z.iter()
                .map(|zp| {
                    (0..d)
                        .map(|j| {
                            (0..zp[h].len())
                                .map(|k| zp[h][k] as f64 * w[h][k][j] as f64)
                                .sum()
                        })
                        .collect()
                })
                .collect()
        };
        let name = format!("blocks.{l}.attn.hook_z");
        let (oa, ob) = (out(&za[name.as_str()], &a), out(&zb[name.as_str()], &b));
        for (x, y) in oa.iter().zip(&ob) {
            head_delta += x.iter().zip(y).map(|(p, q)| (q - p) * (q - p)).sum::<f64>();
        }
        head_stream += rows(&ca[format!("blocks.{l}.hook_resid_pre").as_str()])
            .iter()
            .map(|r| norm2(r))
            .sum::<f64>();
        // features: fired counts from the activations
        let name = "blocks.1.hook_resid_post";
        for (cache, counts) in [(&ca, &mut fired.0), (&cb, &mut fired.1)] {
            let acts: Vec<Vec<f32>> = cache[name]
                .get(0)
                .unwrap()
                .matmul(&dirs)
                .unwrap()
                .relu()
                .unwrap()
                .to_vec2()
                .unwrap();
            for row in acts {
                for (f, v) in row.iter().enumerate() {
                    counts[f] += (*v > 0.0) as usize;
                }
            }
        }
    }
    let o = &r.outputs;
    assert_eq!(r.tokens, n);
    assert_eq!(o.predicted_tokens, predicted);
    close("KL mean", o.kl_mean, kl_sum / n as f64, 1e-4);
    close("KL max", o.kl_max, kl_max, 1e-4);
    close(
        "top-1 agreement",
        o.top1_agreement,
        agree as f64 / n as f64,
        1e-12,
    );
    close(
        "perplexity A",
        o.perplexity_a,
        (ce_a / predicted as f64).exp(),
        1e-5,
    );
    close(
        "perplexity B",
        o.perplexity_b,
        (ce_b / predicted as f64).exp(),
        1e-5,
    );
    assert!(o.kl_mean > 1e-3, "Q4_0 should move the outputs: {o:?}");
    for (layer, (d2, a2, cos)) in resid.iter().enumerate() {
        let got = &r.layers[layer];
        close(
            "resid relative error",
            got.resid_relative_error,
            (d2 / a2).sqrt(),
            1e-5,
        );
        close("resid cosine", got.resid_cosine, cos / n as f64, 1e-6);
        close(
            "lens agreement",
            got.lens_top1_agreement,
            lens_agree[layer] as f64 / n as f64,
            1e-12,
        );
        assert!(got.resid_relative_error > 0.0);
    }
    close(
        "head local change",
        component(&r, Component::Head { layer: l, head: h }).local_change,
        (head_delta / head_stream).sqrt(),
        1e-4,
    );
    // every weight was quantized: every component moved on its own
    assert!(
        r.components.iter().all(|c| c.local_change > 0.0),
        "{:?}",
        r.components
    );
    assert!(r
        .components
        .windows(2)
        .all(|w| w[0].local_change >= w[1].local_change));
    let f = r.features.as_ref().unwrap();
    assert_eq!(f.positions, n);
    let alive = |c: &[usize]| c.iter().filter(|&&x| x > 0).count();
    assert_eq!((f.alive_a, f.alive_b), (alive(&fired.0), alive(&fired.1)));
    let died = (0..32)
        .filter(|&i| fired.0[i] > 0 && fired.1[i] == 0)
        .count();
    assert_eq!(f.died_count, died);
    for c in &f.moved {
        close(
            "feature frequency A",
            c.frequency_a,
            fired.0[c.feature] as f64 / n as f64,
            1e-12,
        );
        close(
            "feature frequency B",
            c.frequency_b,
            fired.1[c.feature] as f64 / n as f64,
            1e-12,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn models_of_different_shapes_are_refused() {
    let a = reference();
    let other = HookedModel::load(
        &root().join("tests/fixtures/parity/llama"),
        &LoadOptions::default(),
    )
    .unwrap();
    let seqs = vec![vec![0u32, 1, 2]];
    let err = drift::compare(
        &a,
        &other,
        &seqs,
        &DriftOptions::default(),
        None,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("versions of one model"), "{err}");
}
