//! The activation store: shards hold exactly the model's activations; the shuffled reader
//! serves every row once, in a seeded order, leaving out excluded tokens; a damaged shard is
//! detected by its hash and recomputed.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use glassbox_features::store::{self, ActivationStore, BuildOptions, ShuffleOptions};
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

const HOOK: &str = "blocks.0.hook_resid_post";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn gpt2() -> HookedModel {
    HookedModel::load(&fixtures().join("parity/gpt2"), &LoadOptions::default()).unwrap()
}

fn tokens() -> Tensor {
    let t =
        candle_core::safetensors::load(fixtures().join("saelens/tokens.safetensors"), &Device::Cpu)
            .unwrap();
    t["tokens"].to_dtype(DType::U32).unwrap()
}

fn build(model: &HookedModel, dir: &Path) -> store::BuildReport {
    let opts = BuildOptions {
        hook_patterns: vec![HOOK.into()],
        batch_size: 2,
        rows_per_shard: 3,
        model_label: "gpt2".into(),
    };
    store::build(model, &tokens(), dir, &opts, |_, _| {}).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("glassbox-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Rows of a [n, d] tensor as vectors, sorted, to compare as multisets.
fn sorted_rows(rows: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let mut rows = rows;
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows
}

fn read_all(store: &ActivationStore, seed: u64, exclude: Vec<u32>) -> Vec<Vec<f32>> {
    let mut reader = store
        .shuffled(
            HOOK,
            ShuffleOptions {
                batch_size: 5,
                buffer_rows: 20,
                seed,
                exclude_tokens: exclude,
            },
        )
        .unwrap();
    let mut rows = Vec::new();
    while let Some(batch) = reader.next_batch().unwrap() {
        assert!(batch.dim(0).unwrap() <= 5);
        rows.extend(batch.to_vec2::<f32>().unwrap());
    }
    rows
}

#[test]
fn the_store_holds_the_models_activations_and_reads_them_shuffled() {
    let model = gpt2();
    let dir = scratch("read");
    let report = build(&model, &dir);
    assert_eq!(report.manifest.shards.len(), 3); // 8 rows, 3 per shard
    assert!(report.manifest.is_complete());
    let store = ActivationStore::open(&dir).unwrap();

    let ids = tokens();
    let (_, cache) = model
        .run_with_cache(&ids, &NameFilter::new(&[HOOK]).unwrap())
        .unwrap();
    let direct: Vec<Vec<f32>> = cache[HOOK].flatten_to(1).unwrap().to_vec2().unwrap();
    let flat_ids: Vec<u32> = ids.flatten_all().unwrap().to_vec1().unwrap();

    let a = read_all(&store, 7, vec![]);
    assert_eq!(a.len(), 8 * 16, "every token's row once");
    assert_eq!(sorted_rows(a.clone()), sorted_rows(direct.clone()));
    assert_eq!(
        read_all(&store, 7, vec![]),
        a,
        "the same seed, the same order"
    );
    assert_ne!(
        read_all(&store, 8, vec![]),
        a,
        "another seed, another order"
    );
    assert_ne!(a, direct, "shuffled, not in corpus order");

    // Excluded tokens' rows are left out, the others all served.
    let kept: Vec<Vec<f32>> = direct
        .iter()
        .zip(&flat_ids)
        .filter(|(_, &t)| t != 0)
        .map(|(r, _)| r.clone())
        .collect();
    assert!(kept.len() < direct.len());
    assert_eq!(sorted_rows(read_all(&store, 7, vec![0])), sorted_rows(kept));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_shard_is_detected_and_recomputed() {
    let model = gpt2();
    let dir = scratch("damaged");
    let first = build(&model, &dir);
    let shard = dir.join(&first.manifest.shards[1].file);
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&shard, &bytes).unwrap();

    let store = ActivationStore::open(&dir).unwrap();
    let err = store.shard(1, HOOK).unwrap_err().to_string();
    assert!(err.contains("hash"), "{err}");

    let again = build(&model, &dir);
    assert_eq!((again.kept, again.computed), (2, 1));
    assert_eq!(
        again.manifest.shards, first.manifest.shards,
        "recomputed bit for bit"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
