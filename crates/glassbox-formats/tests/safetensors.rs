//! Safetensors checkpoints: single files, sharded Hub snapshots with an index, and the parity
//! fixture as transformers saved it.

use std::path::{Path, PathBuf};

use candle_core::Device;
use glassbox_formats::{Checkpoint, CheckpointKind, DType};

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "glassbox-st-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A safetensors file of F32 tensors, laid out back to back.
fn write_f32(path: &Path, tensors: &[(&str, &[usize], &[f32])]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

fn index(dir: &Path, map: &[(&str, &str)]) {
    let weight_map: serde_json::Map<String, serde_json::Value> = map
        .iter()
        .map(|(t, f)| (t.to_string(), serde_json::json!(f)))
        .collect();
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn sharded_snapshot_reads_every_shard() {
    let dir = tempdir();
    write_f32(
        &dir.join("model-00001-of-00002.safetensors"),
        &[("a", &[2], &[1.0, 2.0])],
    );
    write_f32(
        &dir.join("model-00002-of-00002.safetensors"),
        &[("b", &[1, 3], &[3.0, 4.0, 5.0])],
    );
    index(
        &dir,
        &[
            ("a", "model-00001-of-00002.safetensors"),
            ("b", "model-00002-of-00002.safetensors"),
        ],
    );
    let ck = Checkpoint::open(&dir).unwrap();
    assert_eq!(ck.kind, CheckpointKind::HubSnapshot);
    let names: Vec<&str> = ck.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
    let b = ck.tensor("b", &Device::Cpu).unwrap();
    assert_eq!(b.dims(), &[1, 3]);
    assert_eq!(
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        vec![3.0, 4.0, 5.0]
    );
    assert!(ck.tensor("missing", &Device::Cpu).is_err());

    // The index promises a tensor no shard holds.
    index(
        &dir,
        &[
            ("a", "model-00001-of-00002.safetensors"),
            ("c", "model-00002-of-00002.safetensors"),
        ],
    );
    let msg = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(
        msg.contains("`c` is listed in the index but found in no shard"),
        "{msg}"
    );
    // Two shards hold the same name.
    write_f32(
        &dir.join("model-00002-of-00002.safetensors"),
        &[("a", &[1], &[9.0])],
    );
    index(
        &dir,
        &[
            ("a", "model-00001-of-00002.safetensors"),
            ("x", "model-00002-of-00002.safetensors"),
        ],
    );
    let msg = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("`a` appears twice"), "{msg}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn parity_fixture_opens_with_config_and_tokenizer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/llama");
    let ck = Checkpoint::open(&dir).unwrap();
    assert_eq!(ck.kind, CheckpointKind::HubSnapshot);
    let config = ck.config.as_ref().unwrap();
    assert_eq!(config["model_type"], "llama");
    assert!(ck
        .tokenizer_path
        .as_ref()
        .unwrap()
        .ends_with("tokenizer.json"));
    let q = ck.info("model.layers.0.self_attn.q_proj.weight").unwrap();
    let hidden = config["hidden_size"].as_u64().unwrap() as usize;
    assert_eq!(q.shape, vec![hidden, hidden]);
    assert_eq!(q.dtype, DType::F32);
    assert_eq!(q.bytes, (hidden * hidden * 4) as u64);
    let t = ck.tensor_f32("model.norm.weight", &Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[hidden]);
}
