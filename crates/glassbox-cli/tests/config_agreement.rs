//! `glassbox inspect` and the model built from the same files agree on every dimension both
//! report — for every fixture: the transformers-saved parity sets, the transformers-5 storage
//! forms, and the GGUF files llama.cpp made. Both read `config.json` through the one reader
//! (`glassbox_formats::hf_config`), so an alias one knows the other knows.

use std::path::{Path, PathBuf};
use std::process::Command;

use glassbox_models::{HookedModel, LoadOptions, NameFilter};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every model fixture: Hub folders (a `config.json` inside) and llama.cpp-made GGUF files.
fn fixtures() -> Vec<PathBuf> {
    let mut all = Vec::new();
    for set in [
        "tests/fixtures/parity",
        "tests/fixtures/families",
        "tests/fixtures/transformers5",
        "crates/glassbox-models/tests/fixtures/more",
    ] {
        let Ok(entries) = std::fs::read_dir(root().join(set)) else {
            panic!("{set} is missing");
        };
        for e in entries.flatten() {
            if e.path().join("config.json").is_file() {
                all.push(e.path());
            }
        }
    }
    let gguf = root().join("tests/fixtures/llamacpp");
    for e in std::fs::read_dir(&gguf).unwrap().flatten() {
        for t in ["F32", "Q4_K_M"] {
            let f = e.path().join(format!("model-{t}.gguf"));
            if f.is_file() {
                all.push(f);
            }
        }
    }
    all.sort();
    all
}

#[test]
fn inspect_and_the_model_agree_on_every_fixture() {
    let mut disagreements = Vec::new();
    let all = fixtures();
    assert!(all.len() >= 80, "{} fixtures", all.len());
    for path in &all {
        let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
            .args(["inspect", path.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "inspect {}", path.display());
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let arch = &json["architecture"];
        let model = HookedModel::load(path, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let info = model.info();
        let pairs = [
            ("layers", info.n_layers),
            ("d_model", info.d_model),
            ("heads", info.n_heads),
            ("kv_heads", info.n_kv_heads),
            ("head_dim", info.d_head),
            ("vocab", info.d_vocab),
            ("context_length", info.n_ctx),
        ];
        for (field, from_model) in pairs {
            let from_inspect = arch[field].as_u64();
            if from_inspect != Some(from_model as u64) {
                disagreements.push(format!(
                    "{}: {field}: inspect {from_inspect:?}, model {from_model}",
                    path.display()
                ));
            }
        }
        // Whether the model routes to experts: its routing hooks fire.
        let ids = model.ids_tensor(&[1, 2, 3]).unwrap();
        let filter = NameFilter::new(&["blocks.*.mlp.hook_expert_indices"]).unwrap();
        let (_, cache) = model.run_with_cache(&ids, &filter).unwrap();
        let moe = cache.len();
        if moe > 0 && arch["experts"].is_null() {
            disagreements.push(format!(
                "{}: the model routes {moe} layers to experts, inspect reports none",
                path.display()
            ));
        }
        if moe == 0 && !arch["experts"].is_null() {
            disagreements.push(format!(
                "{}: inspect reports {} experts, the model is dense",
                path.display(),
                arch["experts"]
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
