//! The cases: which fixture, which damage, which command. One function per kind of input:
//! `models` puts a (damaged) model through the commands that run one, `files` damages
//! every other kind of input a command reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::mutate::*;
use crate::root;

mod files;
mod models;

use files::*;
use models::*;

/// The entries of a folder, sorted (so that a seed picks the same one on every machine).
pub(crate) fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    all.sort();
    all
}

/// A scratch copy of a fixture directory.
pub(crate) fn copy_fixture(src: &Path, dst: &Path) {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        // Expected outputs are for the parity tests, not inputs.
        if entry.path().is_file() && !entry.file_name().to_string_lossy().starts_with("expected") {
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
    }
}

pub(crate) struct Case {
    pub(crate) what: String,
    pub(crate) args: Vec<String>,
    /// Where an output may appear: nothing half-written may be left there.
    pub(crate) out_dir: PathBuf,
}

/// The intact GPT-2 fixture the SAE, probe and corpus cases run on (their SAEs were trained
/// on its hooks).
pub(crate) fn gpt2() -> String {
    root()
        .join("tests/fixtures/parity/gpt2")
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn make_case(seed: u64, scratch: &Path) -> Case {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // The parity models, and families whose configs have the most to get wrong (experts,
    // routing groups, hybrid block patterns, linear attention, sinks, chunked attention).
    let fixtures = [
        "tests/fixtures/parity/gpt2",
        "tests/fixtures/parity/llama",
        "tests/fixtures/parity/qwen2",
        "tests/fixtures/parity/pythia",
        "tests/fixtures/families/mixtral",
        "tests/fixtures/families/deepseek-v3",
        "crates/glassbox-models/tests/fixtures/more/nemotron-h",
        "crates/glassbox-models/tests/fixtures/more/qwen3-next",
        "crates/glassbox-models/tests/fixtures/more/gpt-oss",
        "crates/glassbox-models/tests/fixtures/more/llama4",
        "crates/glassbox-models/tests/fixtures/more/gemma3",
        "crates/glassbox-models/tests/fixtures/more/glm4-moe",
    ];
    let fixture = root().join(rng.pick(&fixtures));
    let dir = scratch.join("model");
    let out_dir = scratch.join("out");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    if rng.below(32) == 0 {
        return reproduce_case(&mut rng, scratch, out_dir);
    }
    match rng.below(17) {
        0 => return audit_case(&mut rng, scratch, out_dir),
        1 => return recipe_case(&mut rng, scratch, out_dir),
        2 => return sae_case(&mut rng, scratch, out_dir),
        3 => return torch_case(&mut rng, scratch, out_dir),
        4 => return probe_case(&mut rng, scratch, out_dir),
        5 => return corpus_case(&mut rng, scratch, out_dir),
        6 => return control_vector_case(&mut rng, scratch, out_dir),
        _ => {}
    }
    copy_fixture(&fixture, &dir);
    let d = dir.to_str().unwrap().to_string();
    let fixture_name = fixture.file_name().unwrap().to_string_lossy().into_owned();
    if rng.below(7) == 0 {
        let name = *rng.pick(&[
            "llama",
            "gemma3",
            "qwen3moe",
            "olmo3",
            "gpt-oss",
            "nemotron_h",
            "qwen3next",
            "deepseek2",
            "bert",
            "phi3",
            "gpt2",
            "llama4",
        ]);
        let src = root()
            .join("tests/fixtures/llamacpp")
            .join(name)
            .join("model-Q8_0.gguf");
        let file = scratch.join("model.gguf");
        let what = mutated_gguf(&src, &file, &mut rng);
        let f = file.to_str().unwrap().to_string();
        return Case {
            what: format!("{name}: gguf {what}"),
            args: model_commands(&f, &out_dir, &mut rng),
            out_dir,
        };
    }
    let (what, args) = match rng.below(6) {
        0 | 1 => {
            let path = dir.join("config.json");
            let mut config: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let what = mutate_json(&mut config, &mut rng);
            std::fs::write(&path, config.to_string()).unwrap();
            (
                format!("config.json {what}"),
                model_commands(&d, &out_dir, &mut rng),
            )
        }
        2 => {
            let path = dir.join("tokenizer.json");
            let mut tok: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let what = mutate_json(&mut tok, &mut rng);
            std::fs::write(&path, tok.to_string()).unwrap();
            (
                format!("tokenizer.json {what}"),
                model_commands(&d, &out_dir, &mut rng),
            )
        }
        3 => {
            let file = *rng.pick(&["config.json", "tokenizer.json", "model.safetensors"]);
            let path = dir.join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            let what = mutate_bytes(&mut bytes, &mut rng);
            std::fs::write(&path, bytes).unwrap();
            (
                format!("{file} {what}"),
                model_commands(&d, &out_dir, &mut rng),
            )
        }
        4 => {
            let file = *rng.pick(&["config.json", "tokenizer.json", "model.safetensors"]);
            let path = dir.join(file);
            std::fs::remove_file(&path).unwrap();
            let special = *rng.pick(&["/dev/zero", "/dev/null", "/dev/urandom", "directory"]);
            if special == "directory" {
                std::fs::create_dir(&path).unwrap();
            } else {
                #[cfg(unix)]
                std::os::unix::fs::symlink(special, &path).unwrap();
            }
            (
                format!("{file} → {special}"),
                model_commands(&d, &out_dir, &mut rng),
            )
        }
        _ => extreme_arguments(&d, &mut rng),
    };
    Case {
        what: format!("{fixture_name}: {what}"),
        args,
        out_dir,
    }
}
