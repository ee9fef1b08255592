//! The cases: which fixture, which damage, which command. One function per kind of input.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::mutate::*;
use crate::root;

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

/// The commands a model is put through (one, picked by the case's seed).
pub(crate) fn model_commands(dir: &str, out: &Path, rng: &mut Rng) -> Vec<String> {
    let prompt = "When Mary and John went to the store, John gave a drink to";
    let trace_out = out.join("trace.safetensors");
    let steer_out = out.join("vector.gguf");
    let quantize_out = out.join("quantized.gguf");
    let text = root().join("models/reference/data/train_sample.txt");
    let text = text.to_str().unwrap().to_string();
    let all: Vec<Vec<String>> = vec![
        vec!["inspect", dir, "--json"],
        vec!["run", dir, "--prompt", prompt, "--json"],
        // The other numerics (a GGUF's quantized products widened instead of quantized).
        vec![
            "run",
            dir,
            "--prompt",
            prompt,
            "--numerics",
            "f32",
            "--json",
        ],
        vec!["generate", dir, "--prompt", "The", "--max-tokens", "3"],
        vec![
            "trace",
            dir,
            "--prompt",
            prompt,
            "--hooks",
            "blocks.*.hook_resid_post",
            "--out",
            trace_out.to_str().unwrap(),
        ],
        vec!["lens", dir, "--prompt", prompt, "--json"],
        vec!["heads", dir, "--batch", "2", "--seq-len", "8", "--json"],
        vec![
            "attribute",
            dir,
            "--prompt",
            prompt,
            "--target",
            "#5",
            "--json",
        ],
        vec![
            "patch",
            dir,
            "--clean",
            prompt,
            "--corrupt",
            "When Mary and John went to the store, Mary gave a drink to",
            "--answer",
            "#5",
            "--wrong",
            "#6",
            "--json",
        ],
        vec![
            "ablate",
            dir,
            "--text",
            prompt,
            "--target",
            "L0H0,L0MLP",
            "--method",
            "zero",
            "--json",
        ],
        vec![
            "steer",
            dir,
            "--positive",
            "Paris is big",
            "--negative",
            "Rome is big",
            "--layers",
            "1-1",
            "--out",
            steer_out.to_str().unwrap(),
        ],
        vec!["experts", dir, "--prompt", prompt, "--json"],
        vec!["diff", dir, dir, "--json"],
        // A damaged model against itself, and against the undamaged parity model.
        vec![
            "drift",
            dir,
            dir,
            "--text",
            &text,
            "--max-tokens",
            "24",
            "--context",
            "12",
            "--head-seq-len",
            "4",
            "--head-batch",
            "1",
            "--json",
        ],
        vec![
            "quantize",
            dir,
            "--to",
            "q4_k_m",
            "--out",
            quantize_out.to_str().unwrap(),
        ],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    rng.pick(&all).clone()
}

/// A release folder's model card, data card or licence, or a MOT file, damaged, then audited.
pub(crate) fn audit_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    if rng.below(3) == 0 {
        let mot_dir = root().join("tests/fixtures/mot/Test_Data");
        let src = rng.pick(&entries(&mot_dir)).clone();
        let (text, what) = mutate_text(&std::fs::read_to_string(&src).unwrap(), rng);
        let file = scratch.join("model.yml");
        std::fs::write(&file, text).unwrap();
        return Case {
            what: format!("mot: yaml {what}"),
            args: ["audit", file.to_str().unwrap(), "--json"]
                .map(String::from)
                .to_vec(),
            out_dir,
        };
    }
    let cases = root().join("tests/fixtures/audit/cases");
    let dirs: Vec<PathBuf> = entries(&cases).into_iter().filter(|p| p.is_dir()).collect();
    let src = rng.pick(&dirs).clone();
    let dir = scratch.join("release");
    copy_fixture(&src, &dir);
    let texts: Vec<PathBuf> = entries(&dir)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.ends_with(".md") || n == "LICENSE" || n.ends_with(".json")
        })
        .collect();
    let what = match texts.is_empty() {
        true => "unchanged".to_string(),
        false => {
            let file = rng.pick(&texts).clone();
            let (text, what) =
                mutate_text(&std::fs::read_to_string(&file).unwrap_or_default(), rng);
            std::fs::write(&file, text).unwrap();
            format!("{} {what}", file.file_name().unwrap().to_string_lossy())
        }
    };
    let html = out_dir.join("report.html");
    Case {
        what: format!(
            "{}: card {what}",
            src.file_name().unwrap().to_string_lossy()
        ),
        args: [
            "audit",
            dir.to_str().unwrap(),
            "--json",
            "--html",
            html.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec(),
        out_dir,
    }
}

/// The reference recipe cut to a few steps on a small corpus, one line damaged, then trained.
pub(crate) fn recipe_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    let reference = std::fs::read_to_string(root().join("recipes/reference.toml")).unwrap();
    let small: String = reference
        .lines()
        .map(|l| {
            if l.starts_with("steps =") {
                "steps = 3".to_string()
            } else if l.starts_with("checkpoints =") {
                "checkpoints = [1]".to_string()
            } else if l.starts_with("train_documents =") {
                "train_documents = 64".to_string()
            } else if l.starts_with("held_out_documents =") {
                "held_out_documents = 8".to_string()
            } else if l.starts_with("batch_size =") {
                "batch_size = 4".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (text, what) = mutate_text(&small, rng);
    let recipe = scratch.join("recipe.toml");
    std::fs::write(&recipe, text).unwrap();
    let release = out_dir.join("release");
    Case {
        what: format!("reference: recipe {what}"),
        args: [
            "train",
            recipe.to_str().unwrap(),
            "--out",
            release.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec(),
        out_dir,
    }
}

/// The intact GPT-2 fixture the SAE, probe and corpus cases run on (their SAEs were trained
/// on its hooks).
pub(crate) fn gpt2() -> String {
    root()
        .join("tests/fixtures/parity/gpt2")
        .to_string_lossy()
        .into_owned()
}

/// A SAELens-saved SAE (or a sparsify hook folder, made by those tools), damaged, then
/// evaluated, browsed or spliced into the model it was trained on.
pub(crate) fn sae_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    let name = *rng.pick(&[
        "standard",
        "standard_bf16",
        "standard_hook_z",
        "standard_constant_norm",
        "standard_layer_norm_no_b_dec",
        "jumprelu",
        "topk",
        "topk_rescale",
        "batchtopk",
        "sparsify/layers.0",
    ]);
    // A sparsify folder is named after the module it read, and placed by that name.
    let sae = scratch.join(if name.starts_with("sparsify") {
        "layers.0"
    } else {
        "sae"
    });
    copy_fixture(&root().join("tests/fixtures/saelens").join(name), &sae);
    let file = rng.pick(&entries(&sae)).clone();
    let what = damage_file(&file, rng);
    let model = gpt2();
    let s = sae.to_str().unwrap();
    let tokens = root().join("tests/fixtures/saelens/tokens.safetensors");
    let tokens = tokens.to_str().unwrap();
    let trace = out_dir.join("trace.safetensors");
    let prompt = "When Mary and John went to the store, John gave a drink to";
    let all: Vec<Vec<&str>> = vec![
        vec![
            "sae",
            "eval",
            &model,
            "--sae",
            s,
            "--tokens",
            tokens,
            "--batch-size",
            "4",
            "--json",
        ],
        vec![
            "features", &model, "--sae", s, "--tokens", tokens, "--top", "4", "--json",
        ],
        vec!["run", &model, "--prompt", prompt, "--sae", s, "--json"],
        vec![
            "run",
            &model,
            "--prompt",
            prompt,
            "--sae",
            s,
            "--sae-error-term",
            "--json",
        ],
        vec![
            "lens",
            &model,
            "--prompt",
            prompt,
            "--sae",
            s,
            "--sae-error-term",
            "--json",
        ],
        vec![
            "trace",
            &model,
            "--prompt",
            prompt,
            "--sae",
            s,
            "--hooks",
            "*",
            "--out",
            trace.to_str().unwrap(),
        ],
    ];
    Case {
        what: format!("{name}: sae {what}"),
        args: rng.pick(&all).iter().map(|a| a.to_string()).collect(),
        out_dir,
    }
}

/// A checkpoint written by `torch.save` (tests/fixtures/torch), its pickle program or its zip
/// damaged, through the model commands. The zip records no checksum glassbox checks, so a
/// damaged pickle reaches the pickle machine.
pub(crate) fn torch_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    let name = *rng.pick(&["gpt2", "llama"]);
    let dir = scratch.join("model");
    copy_fixture(&root().join("tests/fixtures/torch").join(name), &dir);
    let path = dir.join("pytorch_model.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    let pkl = pickle_range(&bytes);
    let what = match rng.below(4) {
        0 => format!("zip {}", mutate_bytes(&mut bytes, rng)),
        1 => {
            // Pickle opcodes at random, over a short run: marks, containers, memo, globals,
            // reductions, STOP.
            let at = pkl.start + rng.below(pkl.len());
            let end = (at + 1 + rng.below(16)).min(pkl.end);
            let ops = b"(.)]}tlde\x85\x86\x87\x93qhrjRbsuQKMJ\x8a\x8cX\x94\x95N";
            for b in &mut bytes[at..end] {
                *b = ops[rng.below(ops.len())];
            }
            format!("pickle opcodes at {at}..{end}")
        }
        2 => {
            // Nesting as deep as the pickle is long: one opcode repeated.
            let op = *rng.pick(b"(]})\x85");
            let at = pkl.start + rng.below(pkl.len() - 1);
            bytes[at..pkl.end - 1].iter_mut().for_each(|b| *b = op);
            format!("pickle {op:#x} repeated from {at}")
        }
        _ => {
            let at = pkl.start + rng.below(pkl.len());
            let b = rng.next() as u8;
            bytes[at] = b;
            format!("pickle byte {at} = {b:#x}")
        }
    };
    std::fs::write(&path, bytes).unwrap();
    let d = dir.to_str().unwrap().to_string();
    Case {
        what: format!("{name}: pickle {what}"),
        args: model_commands(&d, &out_dir, rng),
        out_dir,
    }
}

/// Labelled examples for `probe`, damaged: a line's JSON, the bytes, or a special file.
pub(crate) fn probe_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    let data = scratch.join("examples.jsonl");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&data);
    let mut lines: Vec<Value> = (0..16)
        .map(|i| {
            let (animal, label) = [("cat", "small"), ("horse", "big")][i % 2];
            json!({"text": format!("The {animal} number {i} is"), "label": label})
        })
        .collect();
    let what = match rng.below(4) {
        0 | 1 => {
            let i = rng.below(lines.len());
            let what = mutate_json(&mut lines[i], rng);
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(&data, text).unwrap();
            format!("line {} {what}", i + 1)
        }
        2 => {
            let mut bytes: Vec<u8> = lines
                .iter()
                .flat_map(|l| format!("{l}\n").into_bytes())
                .collect();
            let what = mutate_bytes(&mut bytes, rng);
            std::fs::write(&data, bytes).unwrap();
            what
        }
        _ => make_special(&data, rng),
    };
    let model = gpt2();
    let out = out_dir.join("probe.safetensors");
    // Mostly a sound fraction, so that the damaged file is what gets judged.
    let fraction = *rng.pick(&[
        "0.25", "0.25", "0.25", "0.25", "0.5", "0", "1", "0.99", "-1", "nan",
    ]);
    Case {
        what: format!("gpt2: examples {what}, --test-fraction {fraction}"),
        args: [
            "probe",
            &model,
            "--hooks",
            "blocks.*.hook_resid_post",
            "--data",
            data.to_str().unwrap(),
            &format!("--test-fraction={fraction}"),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]
        .map(String::from)
        .to_vec(),
        out_dir,
    }
}

/// Text to cache activations from (damaged, or a special file) through `cache`, `sae eval` and
/// `sae train`; or a built activation store damaged under `sae train --cache`.
pub(crate) fn corpus_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    let model = gpt2();
    let store = out_dir.join("store");
    let hook = "blocks.0.hook_resid_post";
    if rng.below(3) == 0 {
        // A store glassbox built, then damaged: the manifest, a shard, or a special file.
        let base = scratch.join("base-store");
        if !base.join("manifest.json").exists() {
            let corpus = scratch.join("base-corpus.txt");
            std::fs::write(
                &corpus,
                "The quick brown fox jumps over the lazy dog. ".repeat(40),
            )
            .unwrap();
            let built = Command::new(env!("CARGO_BIN_EXE_glassbox"))
                .args(["cache", &model, "--hooks", hook, "--text"])
                .arg(&corpus)
                .args(["--context", "16", "--shard-rows", "64", "--out"])
                .arg(&base)
                .output()
                .unwrap();
            assert!(
                built.status.success(),
                "{}",
                String::from_utf8_lossy(&built.stderr)
            );
        }
        let copy = scratch.join("store");
        copy_fixture(&base, &copy);
        let file = rng.pick(&entries(&copy)).clone();
        let what = damage_file(&file, rng);
        let sae = out_dir.join("sae");
        return Case {
            what: format!("gpt2: store {what}"),
            args: [
                "sae",
                "train",
                &model,
                "--hook",
                hook,
                "--arch",
                "topk",
                "--d-sae",
                "32",
                "--k",
                "4",
                "--cache",
                copy.to_str().unwrap(),
                "--training-tokens",
                "256",
                "--train-batch-size-tokens",
                "64",
                "--out",
                sae.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec(),
            out_dir,
        };
    }
    let corpus = scratch.join("corpus.txt");
    let _ = std::fs::remove_dir_all(&corpus);
    let _ = std::fs::remove_file(&corpus);
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    let what = match rng.below(4) {
        0 => make_special(&corpus, rng),
        1 => {
            std::fs::write(&corpus, "").unwrap();
            "empty".to_string()
        }
        _ => {
            let mut bytes = text.into_bytes();
            let what = mutate_bytes(&mut bytes, rng);
            std::fs::write(&corpus, bytes).unwrap();
            what
        }
    };
    let c = corpus.to_str().unwrap();
    let sae = root().join("tests/fixtures/saelens/standard");
    let trained = out_dir.join("sae");
    let all: Vec<Vec<&str>> = vec![
        vec![
            "cache",
            &model,
            "--hooks",
            hook,
            "--text",
            c,
            "--context",
            "16",
            "--shard-rows",
            "8",
            "--out",
            store.to_str().unwrap(),
        ],
        vec![
            "sae",
            "eval",
            &model,
            "--sae",
            sae.to_str().unwrap(),
            "--text",
            c,
            "--context",
            "16",
            "--json",
        ],
        vec![
            "features",
            &model,
            "--sae",
            sae.to_str().unwrap(),
            "--text",
            c,
            "--context",
            "16",
            "--top",
            "3",
            "--json",
        ],
        vec![
            "sae",
            "train",
            &model,
            "--hook",
            hook,
            "--arch",
            "batchtopk",
            "--d-sae",
            "32",
            "--k",
            "4",
            "--text",
            c,
            "--context-size",
            "16",
            "--training-tokens",
            "256",
            "--train-batch-size-tokens",
            "64",
            "--out",
            trained.to_str().unwrap(),
        ],
    ];
    Case {
        what: format!("gpt2: corpus {what}"),
        args: rng.pick(&all).iter().map(|a| a.to_string()).collect(),
        out_dir,
    }
}

/// A control vector written by llama.cpp's GGUF writer or repeng's layout
/// (crates/glassbox-analysis/tests/fixtures), its metadata or bytes damaged, applied while
/// generating; or a probe's direction file damaged, turned into one by `steer --direction`.
pub(crate) fn control_vector_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    let model = gpt2();
    let fixtures = root().join("crates/glassbox-analysis/tests/fixtures");
    if rng.below(3) == 0 {
        // A probe's directions (a safetensors file of one vector per hook), damaged.
        let file = scratch.join("directions.safetensors");
        let _ = std::fs::remove_dir_all(&file);
        let mut tensors = std::collections::HashMap::new();
        for layer in 0..2 {
            let v: Vec<f32> = (0..64)
                .map(|i| ((i * 7 + layer) % 13) as f32 - 6.0)
                .collect();
            let t = candle_core::Tensor::from_vec(v, 64, &candle_core::Device::Cpu).unwrap();
            tensors.insert(format!("blocks.{layer}.hook_resid_post"), t);
        }
        candle_core::safetensors::save(&tensors, &file).unwrap();
        let what = damage_file(&file, rng);
        let out = out_dir.join("vector.gguf");
        return Case {
            what: format!("gpt2: directions {what}"),
            args: [
                "steer",
                &model,
                "--direction",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec(),
            out_dir,
        };
    }
    let name = *rng.pick(&["llamacpp-cvector.gguf", "repeng-cvector.gguf"]);
    let file = scratch.join("vector.gguf");
    let _ = std::fs::remove_dir_all(&file);
    let what = if rng.below(2) == 0 {
        mutated_gguf(&fixtures.join(name), &file, rng)
    } else {
        std::fs::copy(fixtures.join(name), &file).unwrap();
        damage_file(&file, rng)
    };
    let scale = *rng.pick(&["", ":0.8", ":-2", ":1e30", ":nan", ":x"]);
    Case {
        what: format!("{name}: vector {what} (scale {scale:?})"),
        args: [
            "generate",
            &model,
            "--prompt",
            "The",
            "--max-tokens",
            "2",
            "--control-vector",
            &format!("{}{scale}", file.display()),
        ]
        .map(String::from)
        .to_vec(),
        out_dir,
    }
}

/// The reference release (its first checkpoint only), one file damaged, reproduced for ten
/// steps. Rarer than the others: a reproduction that is allowed to run takes seconds.
pub(crate) fn reproduce_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    let src = root().join("models/reference");
    let dir = scratch.join("release");
    copy_fixture(&src, &dir);
    let step = "checkpoints/step-000010";
    copy_fixture(&src.join(step), &dir.join(step));
    copy_fixture(&src.join("data"), &dir.join("data"));
    let mut files: Vec<PathBuf> = [dir.clone(), dir.join(step), dir.join("data")]
        .iter()
        .flat_map(|d| entries(d))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            // Documents and the licence are the audit cases' inputs.
            p.is_file() && !(n.ends_with(".md") || n == "LICENSE" || n == "samples.txt")
        })
        .collect();
    files.sort();
    let file = rng.pick(&files).clone();
    let what = if file
        .extension()
        .is_some_and(|e| e == "toml" || e == "jsonl")
        && rng.below(2) == 0
    {
        let (text, what) = mutate_text(&std::fs::read_to_string(&file).unwrap(), rng);
        std::fs::write(&file, text).unwrap();
        format!("{} {what}", file.file_name().unwrap().to_string_lossy())
    } else {
        damage_file(&file, rng)
    };
    Case {
        what: format!("reference: release {what}"),
        args: ["reproduce", dir.to_str().unwrap(), "--steps", "10"]
            .map(String::from)
            .to_vec(),
        out_dir,
    }
}

/// Extreme arguments on an intact model.
pub(crate) fn extreme_arguments(dir: &str, rng: &mut Rng) -> (String, Vec<String>) {
    let n = rng
        .pick(&[
            "0",
            "-1",
            "1",
            "4294967296",
            "18446744073709551615",
            "99999999999999999999",
            "1e9",
            "nan",
            "x",
            "",
        ])
        .to_string();
    let gpt2 = gpt2();
    let tokens = root().join("tests/fixtures/saelens/tokens.safetensors");
    let tokens = tokens.to_str().unwrap();
    let sae = root().join("tests/fixtures/saelens/topk");
    let sae = sae.to_str().unwrap();
    let reference = root().join("models/reference");
    let reference = reference.to_str().unwrap();
    let text = root().join("models/reference/data/train_sample.txt");
    let text = text.to_str().unwrap();
    let args: Vec<&str> = match rng.below(15) {
        12 => vec![
            "drift",
            reference,
            reference,
            "--text",
            text,
            "--context",
            &n,
            "--json",
        ],
        13 => vec![
            "drift",
            reference,
            reference,
            "--text",
            text,
            "--max-tokens",
            &n,
            "--json",
        ],
        14 => vec![
            "drift",
            reference,
            reference,
            "--text",
            text,
            "--max-tokens",
            "64",
            "--head-seq-len",
            &n,
            "--json",
        ],
        6 => vec![
            "features", &gpt2, "--sae", sae, "--tokens", tokens, "--top", &n, "--json",
        ],
        7 => vec![
            "features",
            &gpt2,
            "--sae",
            sae,
            "--tokens",
            tokens,
            "--contexts",
            &n,
            "--json",
        ],
        8 => vec![
            "sae",
            "eval",
            &gpt2,
            "--sae",
            sae,
            "--tokens",
            tokens,
            "--batch-size",
            &n,
            "--json",
        ],
        9 => vec![
            "sae",
            "train",
            &gpt2,
            "--hook",
            "blocks.0.hook_resid_post",
            "--arch",
            "topk",
            "--d-sae",
            &n,
            "--k",
            "4",
            "--cache",
            "/nonexistent",
            "--out",
            "/nonexistent/out",
        ],
        10 => vec![
            "lens",
            dir,
            "--prompt",
            "The Eiffel Tower",
            "--sae",
            sae,
            "--top",
            &n,
        ],
        11 => vec![
            "generate",
            dir,
            "--prompt",
            "The",
            "--max-tokens",
            "2",
            "--top-k",
            &n,
        ],
        0 => vec!["heads", dir, "--batch", &n],
        1 => vec!["heads", dir, "--seq-len", &n],
        2 => vec!["generate", dir, "--prompt", "The", "--max-tokens", &n],
        3 => vec![
            "generate",
            dir,
            "--prompt",
            "The",
            "--max-tokens",
            "2",
            "--temperature",
            &n,
        ],
        4 => vec!["lens", dir, "--prompt", "The Eiffel Tower", "--top", &n],
        _ => vec!["run", dir, "--tokens", &n],
    };
    (
        format!("argument {n}"),
        args.into_iter().map(String::from).collect(),
    )
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
