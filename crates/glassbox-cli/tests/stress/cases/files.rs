//! Every other input a command reads, damaged: release folders, recipes, SAEs, torch files,
//! probe data, corpora, control vectors, reproductions.

use super::*;

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
