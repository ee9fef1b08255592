//! Feature dashboards agree with the SAE computed directly: the top context is where the
//! feature's activation is largest in the corpus, with that activation and the tokens around
//! it; density counts the tokens it fires on; the logit effect ranks `W_dec[f]` through the
//! final LayerNorm's centring and gain (`ln_f.weight`, read from the checkpoint), then `W_U`,
//! as TransformerLens's fold_ln does.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use glassbox_features::dashboard::{dashboards, DashboardOptions};
use glassbox_features::Sae;
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[test]
fn dashboards_match_the_sae_computed_directly() {
    let model =
        HookedModel::load(&fixtures().join("parity/gpt2"), &LoadOptions::default()).unwrap();
    let sae = Sae::load(&fixtures().join("saelens/topk")).unwrap();
    let tokens =
        candle_core::safetensors::load(fixtures().join("saelens/tokens.safetensors"), &Device::Cpu)
            .unwrap()["tokens"]
            .to_dtype(DType::U32)
            .unwrap();
    let opts = DashboardOptions {
        top: 5,
        contexts: 3,
        window: 2,
        batch_size: 3,
        ..DashboardOptions::default()
    };
    let d = dashboards(&model, &sae, &tokens, &opts).unwrap();
    assert_eq!(d.features.len(), 5);
    assert!(d.logit_effects);

    // Directly: every token's feature activations.
    let (_, cache) = model
        .run_with_cache(&tokens, &NameFilter::new(&[sae.hook_name()]).unwrap())
        .unwrap();
    let acts = sae.encode(&cache[sae.hook_name()]).unwrap(); // [8, 16, d_sae]
    let (n, pos, m) = acts.dims3().unwrap();
    let flat: Vec<f32> = acts.flatten_all().unwrap().to_vec1().unwrap();
    let ids: Vec<Vec<u32>> = tokens.to_vec2().unwrap();
    let w_u = model.model.w_u().unwrap();
    let gain = candle_core::safetensors::load(
        fixtures().join("parity/gpt2/model.safetensors"),
        &Device::Cpu,
    )
    .unwrap()["transformer.ln_f.weight"]
        .to_dtype(DType::F32)
        .unwrap();
    let mut densities = Vec::new();
    for f in &d.features {
        let column: Vec<f32> = (0..n * pos).map(|i| flat[i * m + f.feature]).collect();
        let fired = column.iter().filter(|&&v| v != 0.0).count();
        assert!((f.density - fired as f64 / (n * pos) as f64).abs() < 1e-12);
        densities.push(f.density);
        // top contexts leave out each row's first position (where the row was cut)
        let (best, &max) = column
            .iter()
            .enumerate()
            .filter(|(i, _)| i % pos != 0)
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .unwrap();
        let top = &f.top_contexts[0];
        assert_eq!(top.activation, max);
        assert_eq!((top.row, top.position), (best / pos, best % pos));
        assert_eq!(top.tokens[top.marked], ids[top.row][top.position]);
        assert_eq!(top.activations[top.marked], max);
        assert!(f
            .top_contexts
            .windows(2)
            .all(|w| w[0].activation >= w[1].activation));
        assert!(f.top_contexts.iter().all(|c| c.position > 0));
        assert_eq!(f.histogram.iter().map(|h| h.1).sum::<usize>(), fired);
        let direction = sae.w_dec.get(f.feature).unwrap();
        let centred = direction
            .broadcast_sub(&direction.mean_keepdim(0).unwrap())
            .unwrap();
        let effect: Vec<f32> = (centred * &gain)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .matmul(&w_u)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let argmax = effect
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(f.logit_top[0].0 as usize, argmax);
        assert!((f.logit_top[0].1 - effect[argmax]).abs() < 1e-4);
    }
    // By default, the features that fire most often, most often first.
    assert!(densities.windows(2).all(|w| w[0] >= w[1]), "{densities:?}");
}
