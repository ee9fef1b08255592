//! The logit lens of a post-LN encoder (BERT with its MLM head): its last row is the model's
//! output. There the stream the head reads is the last block's `hook_normalized_resid_post`;
//! its `hook_resid_post` is the sum before the block's last LayerNorm (HookedEncoder's names).

use std::path::PathBuf;

use glassbox_analysis::lens;
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

#[path = "../../glassbox-models/tests/support/bert_mlm.rs"]
mod bert_mlm;
#[path = "../../glassbox-models/tests/support/compare.rs"]
mod compare;

#[test]
fn the_lens_of_an_encoder_ends_at_its_logits() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("lens-bert-mlm-{}", std::process::id()));
    bert_mlm::write(&dir);
    let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
    let n = model.info().n_layers;
    let ids = model.ids_tensor(&[2, 7, 39, 11, 0]).unwrap();
    let names = lens::hook_names(n);
    let (logits, cache) = model
        .run_with_cache(&ids, &NameFilter::new(&names).unwrap())
        .unwrap();
    let lensed = lens::logit_lens(model.model.as_ref(), &cache).unwrap();
    let last = lensed.get(n).unwrap();
    let diff = compare::max_abs_diff(&last, &logits);
    assert!(
        diff < 1e-5,
        "the last lens row differs from the logits by {diff:e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
