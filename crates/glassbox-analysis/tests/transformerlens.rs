//! Cross-check against TransformerLens's own results on the GPT-2 parity fixture
//! (`tests/fixtures/analyses/gpt2-transformerlens.safetensors`, made by
//! `tests/fixtures/make_analysis_fixtures.py` with weight processing off): logit lens,
//! per-head direct logit attribution, and the resid_pre activation-patching grid, at 1e-4.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use glassbox_analysis::{attribution, lens, patching};
use glassbox_formats::Checkpoint;
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn gpt2() -> HookedModel {
    HookedModel::load(&fixtures().join("parity/gpt2"), &LoadOptions::default())
        .expect("the GPT-2 parity fixture loads")
}

struct Expected {
    file: Checkpoint,
    meta: serde_json::Value,
}

impl Expected {
    fn open() -> Self {
        let path = fixtures().join("analyses/gpt2-transformerlens.safetensors");
        // the safetensors header: u64 length, then JSON whose __metadata__.meta is JSON again
        let bytes = std::fs::read(&path).expect("fixture readable");
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let meta = header["__metadata__"]["meta"]
            .as_str()
            .expect("meta present");
        Expected {
            file: Checkpoint::open(&path).expect("fixture opens"),
            meta: serde_json::from_str(meta).unwrap(),
        }
    }

    fn floats(&self, name: &str) -> Tensor {
        self.file.tensor_f32(name, &Device::Cpu).unwrap()
    }

    fn ids(&self, name: &str) -> Vec<u32> {
        let t = self.file.tensor(name, &Device::Cpu).unwrap();
        t.to_dtype(DType::I64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }
}

/// Compares element by element; the message names the worst element.
fn check(what: &str, actual: &Tensor, expected: &Tensor) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shape");
    let a = actual.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let e = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (worst, err) = a
        .iter()
        .zip(&e)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold((0, 0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
    assert!(
        err <= TOLERANCE,
        "{what}: element {worst} is {} but TransformerLens has {} (error {err:.2e})",
        a[worst],
        e[worst]
    );
}

#[test]
fn logit_lens_matches_transformerlens() {
    let model = gpt2();
    let expected = Expected::open();
    let ids = expected.ids("lens.input_ids");
    assert_eq!(
        ids,
        model.to_tokens("The Eiffel Tower is in Paris.").unwrap()
    );
    let names = lens::hook_names(model.info().n_layers);
    let (logits, cache) = model
        .run_with_cache(
            &model.ids_tensor(&ids).unwrap(),
            &NameFilter::new(&names).unwrap(),
        )
        .unwrap();
    let ours = lens::logit_lens(model.model.as_ref(), &cache)
        .unwrap()
        .squeeze(1)
        .unwrap();
    check("lens logits", &ours, &expected.floats("lens.logits"));
    // the last row is the model's own output
    let last = ours.get(ours.dim(0).unwrap() - 1).unwrap();
    check(
        "lens final row vs logits",
        &last,
        &logits.squeeze(0).unwrap(),
    );
}

#[test]
fn per_head_attribution_matches_transformerlens() {
    let model = gpt2();
    let expected = Expected::open();
    let ids = expected.ids("dla.input_ids");
    let meta = &expected.meta["dla"];
    let (target, versus) = (
        meta["target_id"].as_u64().unwrap() as u32,
        meta["versus_id"].as_u64().unwrap() as u32,
    );
    let names = attribution::hook_names(model.info().n_layers);
    let (_, cache) = model
        .run_with_cache(
            &model.ids_tensor(&ids).unwrap(),
            &NameFilter::new(&names).unwrap(),
        )
        .unwrap();
    let direction =
        attribution::logit_direction(model.model.as_ref(), target, Some(versus)).unwrap();
    let grid = attribution::head_results_on_direction(
        model.model.as_ref(),
        &cache,
        ids.len() - 1,
        &direction,
    )
    .unwrap();
    let flat: Vec<f32> = grid.concat();
    let ours = Tensor::from_vec(flat, (grid.len(), grid[0].len()), &Device::Cpu).unwrap();
    check("per-head DLA", &ours, &expected.floats("dla.heads"));
}

#[test]
fn resid_pre_patching_matches_transformerlens() {
    let model = gpt2();
    let expected = Expected::open();
    let clean = expected.ids("patch.clean_ids");
    let corrupt = expected.ids("patch.corrupt_ids");
    let meta = &expected.meta["patch"];
    let (answer, wrong) = (
        meta["answer_id"].as_u64().unwrap() as u32,
        meta["wrong_id"].as_u64().unwrap() as u32,
    );
    let result = patching::activation_patching(
        &model,
        &clean,
        &corrupt,
        answer,
        wrong,
        patching::PatchTarget::ResidPre,
        || std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    let rows = result.raw.len();
    let ours = Tensor::from_vec(result.raw.concat(), (rows, clean.len()), &Device::Cpu).unwrap();
    check(
        "resid_pre patching grid",
        &ours,
        &expected.floats("patch.resid_pre"),
    );
    let ld_clean = meta["ld_clean"].as_f64().unwrap() as f32;
    let ld_corrupt = meta["ld_corrupt"].as_f64().unwrap() as f32;
    assert!(
        (result.clean_metric - ld_clean).abs() <= TOLERANCE,
        "clean metric"
    );
    assert!(
        (result.corrupt_metric - ld_corrupt).abs() <= TOLERANCE,
        "corrupted metric"
    );
}
