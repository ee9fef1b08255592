//! LoRA against PEFT itself (tests/fixtures/peft, made by `make_peft_fixtures.py` with peft +
//! transformers): PEFT's adapters applied through `--adapter`'s path give transformers + PEFT's
//! logits; merged, PEFT's `merge_and_unload` logits; and an adapter `finetune` trains is the
//! committed one bit for bit (the one PEFT loaded) and gives PEFT's logits with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use glassbox_formats::peft::{merge, LoraAdapter};
use glassbox_formats::Checkpoint;
use glassbox_models::lora::LoraSource;
use glassbox_models::{HookedModel, LoadOptions};
use glassbox_train::finetune::{finetune, read_texts, FinetuneOptions};

const TOLERANCE: f32 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/peft").join(name)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The model's logits for the fixture's ids, and PEFT's under `key`.
fn logits(model: &HookedModel, expected: &Path, key: &str) -> (Tensor, Tensor) {
    let exp = Checkpoint::open(expected.join("expected.safetensors")).unwrap();
    let ids: Vec<u32> = exp
        .tensor("input_ids", &Device::Cpu)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .iter()
        .map(|&i| i as u32)
        .collect();
    let ours = model
        .run(&model.ids_tensor(&ids).unwrap())
        .unwrap()
        .squeeze(0)
        .unwrap();
    (ours, exp.tensor_f32(key, &Device::Cpu).unwrap())
}

fn with_adapter(base: &str, adapter: &Path) -> HookedModel {
    let adapter = LoraAdapter::open(adapter).unwrap();
    let opts = LoadOptions {
        lora: Some(LoraSource::Apply(Arc::new(adapter))),
        ..LoadOptions::default()
    };
    HookedModel::load(&root().join("tests/fixtures/parity").join(base), &opts).unwrap()
}

#[test]
fn peft_adapters_give_peft_logits_unmerged_and_merged() {
    for (name, base) in [
        ("llama-peft", "llama"),
        ("llama-rslora", "llama"),
        ("gpt2-peft", "gpt2"),
        // with lm_head's own weight saved beside its LoRA matrices (PEFT's defaults)
        ("llama-lm-head", "llama"),
    ] {
        let dir = fixture(name);
        let model = with_adapter(base, &dir);
        let (ours, theirs) = logits(&model, &dir, "logits");
        let d = max_diff(&ours, &theirs);
        eprintln!("{name}: unmerged max |Δ| {d:.2e}");
        assert!(d <= TOLERANCE, "{name}: unmerged max |Δ| {d}");
        // the adapter really moves the logits (so the comparison above tests it)
        let plain = HookedModel::load(
            &root().join("tests/fixtures/parity").join(base),
            &LoadOptions::default(),
        )
        .unwrap();
        let (base_logits, _) = logits(&plain, &dir, "logits");
        assert!(
            max_diff(&base_logits, &theirs) > 100.0 * TOLERANCE,
            "{name}: the adapter changes nothing"
        );

        let out =
            std::env::temp_dir().join(format!("glassbox-merged-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let ck = Checkpoint::open(root().join("tests/fixtures/parity").join(base)).unwrap();
        let report = merge(&ck, &LoraAdapter::open(&dir).unwrap(), &out).unwrap();
        assert!(report.merged > 0);
        let merged = HookedModel::load(&out, &LoadOptions::default()).unwrap();
        let (ours, theirs) = logits(&merged, &dir, "merged_logits");
        let _ = std::fs::remove_dir_all(&out);
        let d = max_diff(&ours, &theirs);
        eprintln!("{name}: merged max |Δ| {d:.2e}");
        assert!(d <= TOLERANCE, "{name}: merged max |Δ| {d}");
    }
}

#[test]
fn an_adapter_for_another_model_is_refused() {
    let adapter = LoraAdapter::open(&fixture("gpt2-peft")).unwrap();
    let opts = LoadOptions {
        lora: Some(LoraSource::Apply(Arc::new(adapter))),
        ..LoadOptions::default()
    };
    let err = HookedModel::load(&root().join("tests/fixtures/parity/llama"), &opts)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("no linear layer"), "{err}");
}

/// `finetune` with the generator's options retrains the committed adapter bit for bit (on any
/// CPU: the kernels' bits do not depend on it), and PEFT's logits with that adapter are ours.
#[test]
fn finetune_is_deterministic_and_peft_runs_its_adapter_as_we_do() {
    let dir = fixture("llama-ours");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/peft/manifest.json")).unwrap(),
    )
    .unwrap();
    let args: Vec<String> = manifest["finetune_args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let arg = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
    let opts = FinetuneOptions {
        rank: arg("--lora-r").parse().unwrap(),
        alpha: arg("--lora-alpha").parse().unwrap(),
        targets: arg("--target").split(',').map(String::from).collect(),
        use_rslora: false,
        steps: arg("--steps").parse().unwrap(),
        batch: arg("--batch").parse().unwrap(),
        context: arg("--context").parse().unwrap(),
        lr: arg("--lr").parse().unwrap(),
        weight_decay: 0.0,
        seed: arg("--seed").parse().unwrap(),
    };
    let texts = read_texts(&root().join("tests/fixtures/peft/train.jsonl")).unwrap();
    // the generator ran from the repository root with this relative path
    let base = Path::new("tests/fixtures/parity/llama");
    std::env::set_current_dir(root()).unwrap();
    let done = finetune(base, LoadOptions::default(), &texts, &opts, &mut |_| {}).unwrap();
    let out = std::env::temp_dir().join(format!("glassbox-finetune-{}", std::process::id()));
    done.adapter.write(&out).unwrap();
    let ours = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    let committed = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let config = std::fs::read_to_string(out.join("adapter_config.json")).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        ours == committed,
        "the retrained adapter differs from the committed one"
    );
    assert_eq!(
        config,
        std::fs::read_to_string(dir.join("adapter_config.json")).unwrap()
    );
    assert!(
        done.log.last().unwrap().loss < done.log.first().unwrap().loss,
        "training lowered no loss"
    );

    let model = with_adapter("llama", &dir);
    let (ours, theirs) = logits(&model, &dir, "logits");
    let d = max_diff(&ours, &theirs);
    eprintln!("our adapter in PEFT: max |Δ| {d:.2e}");
    assert!(d <= TOLERANCE, "max |Δ| {d}");
}

/// PEFT's `save_embedding_layers` saves lm_head's own weight with its adapter and loads it over
/// the model's. Applied to the model's own weight the adapter computes the same only when the
/// copy is the model's weight: one that differs is refused (by `--adapter` and by `merge`).
#[test]
fn a_saved_copy_of_a_weight_that_differs_from_the_models_is_refused() {
    let dir = std::env::temp_dir().join(format!("glassbox-peft-copy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("llama-lm-head");
    std::fs::copy(
        src.join("adapter_config.json"),
        dir.join("adapter_config.json"),
    )
    .unwrap();
    let mut tensors =
        candle_core::safetensors::load(src.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    let name = "base_model.model.lm_head.base_layer.weight";
    let w = &tensors[name];
    let changed = (w.clone() + 0.01).unwrap();
    tensors.insert(name.to_string(), changed);
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors")).unwrap();
    let adapter = LoraAdapter::open(&dir).unwrap();
    let opts = LoadOptions {
        lora: Some(LoraSource::Apply(Arc::new(adapter))),
        ..LoadOptions::default()
    };
    let llama = root().join("tests/fixtures/parity/llama");
    let e = HookedModel::load(&llama, &opts).err().expect("refused");
    assert!(e.to_string().contains("differs from the model's"), "{e}");
    let ck = Checkpoint::open(&llama).unwrap();
    let out = dir.join("merged");
    let e = merge(&ck, &LoraAdapter::open(&dir).unwrap(), &out).unwrap_err();
    assert!(e.to_string().contains("differs from the model's"), "{e}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
