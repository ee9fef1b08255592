//! `glassbox reproduce` on the committed reference release: the CI slice (the first 10 steps,
//! bit for bit), and input errors; on a tiny release, every file the recipe determines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("glassbox runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/reference")
}

#[test]
fn reference_release_reproduces_its_first_steps_bit_for_bit() {
    let dir = reference();
    let o = glassbox(&["reproduce", dir.to_str().unwrap(), "--steps", "10"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("train sha256") && out.contains("matches"),
        "{out}"
    );
    assert!(
        out.contains("verdict: REPRODUCED bit for bit at step 10"),
        "{out}"
    );
}

/// The bits must not depend on the CPU: every instruction-set path this machine can run, forced
/// with `GLASSBOX_ISA`, and another thread count, reproduce the committed release (trained
/// on whichever machine made it) bit for bit — so an AVX2-only CPU passes as an AVX-512 one does.
#[test]
fn every_instruction_set_path_and_thread_count_reproduces_the_release_bit_for_bit() {
    let dir = reference();
    let paths: Vec<&str> = glassbox_kernels::Isa::available_paths()
        .iter()
        .map(|i| i.name())
        .collect();
    #[cfg(target_arch = "x86_64")]
    assert!(
        paths.contains(&"avx2"),
        "x86-64 test machines have AVX2 + FMA: {paths:?}"
    );
    for (isa, threads) in paths.iter().flat_map(|p| [(*p, "1"), (*p, "2")]) {
        // The portable path emulates nothing: f32::mul_add is the same FMA, only slower.
        let o = Command::new(env!("CARGO_BIN_EXE_glassbox"))
            .args([
                "reproduce",
                dir.to_str().unwrap(),
                "--steps",
                "10",
                "--threads",
                threads,
            ])
            .env("GLASSBOX_ISA", isa)
            .output()
            .expect("glassbox runs");
        let out = text(&o);
        assert!(
            o.status.success(),
            "GLASSBOX_ISA={isa}, {threads} threads: {out}"
        );
        assert!(out.contains(&format!("{isa} path")), "{out}");
        assert!(
            out.contains("verdict: REPRODUCED bit for bit at step 10"),
            "GLASSBOX_ISA={isa}, {threads} threads: {out}"
        );
    }
}

#[test]
fn a_path_the_cpu_cannot_run_is_an_input_error() {
    for bad in ["sse9", "neon"] {
        let o = Command::new(env!("CARGO_BIN_EXE_glassbox"))
            .args(["inspect", reference().to_str().unwrap()])
            .env("GLASSBOX_ISA", bad)
            .output()
            .expect("glassbox runs");
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("GLASSBOX_ISA"), "{}", text(&o));
    }
}

#[test]
fn reproduce_input_errors_exit_2() {
    let dir = reference();
    // No checkpoint at step 7.
    let o = glassbox(&["reproduce", dir.to_str().unwrap(), "--steps", "7"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no weights for step 7"), "{}", text(&o));
    // Not a release.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/gpt2");
    let o = glassbox(&["reproduce", fixtures.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("recipe.toml"), "{}", text(&o));
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
}

/// The reference release with only its step-10 checkpoint, in a scratch folder.
fn release_copy(name: &str) -> PathBuf {
    let src = reference();
    let dir = std::env::temp_dir().join(format!("glassbox-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["", "data", "checkpoints/step-000010"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    dir
}

/// A truncated checkpoint was read by candle's loader after training: exit 1 with "incomplete
/// metadata", no file named (found by the stress harness). It is read by glassbox's reader
/// before training: exit 2, the file and the fault named.
#[test]
fn a_damaged_checkpoint_is_refused_before_training() {
    let dir = release_copy("damaged-checkpoint");
    let ck = dir.join("checkpoints/step-000010/model.safetensors");
    let len = std::fs::metadata(&ck).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&ck)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let o = glassbox(&["reproduce", dir.to_str().unwrap(), "--steps", "10"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("step-000010/model.safetensors"),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("steps on"),
        "trained first: {}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A release whose checkpoint is not what its recipe trains is a fault in the release: exit 2
/// with the verdict (found by the stress harness as exit 1).
#[test]
fn a_release_that_does_not_reproduce_is_exit_2() {
    let dir = release_copy("not-reproduced");
    // One weight of the step-10 checkpoint changed: the file still reads, the bits differ.
    let ck = dir.join("checkpoints/step-000010/model.safetensors");
    let mut bytes = std::fs::read(&ck).unwrap();
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&1.5f32.to_le_bytes());
    std::fs::write(&ck, bytes).unwrap();
    let o = glassbox(&["reproduce", dir.to_str().unwrap(), "--steps", "10"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("was not reproduced"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// 10 vocabulary words in a fixed random order, as the corpus's repeated spans are (4–12 words,
/// never the relation words `is` and `=`).
const REPEATED: &str = "fox v11 k03 . sees x4 red k17 the v02";

fn json(args: &[&str]) -> serde_json::Value {
    let o = glassbox(args);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

#[test]
fn reference_model_has_an_induction_head_whose_ablation_hurts_the_repeat() {
    let dir = reference();
    let dir = dir.to_str().unwrap();
    // The analysis command's own probe: 10 random tokens repeated, default seed.
    let heads = json(&["heads", dir, "--seq-len", "10", "--batch", "16", "--json"]);
    let induction = heads["scores"]["induction"]
        .as_array()
        .expect("induction scores");
    let mut best = (0, 0, f64::MIN);
    let mut strong = Vec::new();
    for (l, row) in induction.iter().enumerate() {
        for (h, s) in row.as_array().unwrap().iter().enumerate() {
            let s = s.as_f64().unwrap();
            if s > best.2 {
                best = (l, h, s);
            }
            if s >= 0.4 {
                strong.push(format!("L{l}H{h}"));
            }
        }
    }
    assert!(best.2 >= 0.5, "best induction score {best:?} is below 0.5");
    // The release's figures are the ones the command prints for it: the evaluation at
    // training time (a model in memory, without a tokenizer) made the same sequences.
    let evaluation: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(dir).join("eval_results.json")).unwrap())
            .unwrap();
    for e in evaluation["heads"].as_array().unwrap() {
        let (l, h) = (
            e["layer"].as_u64().unwrap() as usize,
            e["head"].as_u64().unwrap() as usize,
        );
        for role in ["induction", "previous_token"] {
            // the same f32, written at f64 width by one and shortest by the other
            let f32_of = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
            assert_eq!(
                f32_of(&heads["scores"][role][l][h]),
                f32_of(&e[role]),
                "L{l}H{h} {role}: `glassbox heads` and eval_results.json"
            );
        }
    }

    // Zero-ablating the induction heads raises the loss on the repeated half clearly.
    let text = format!("{REPEATED} {REPEATED}");
    let targets = strong.join(",");
    let ablated = json(&[
        "ablate", dir, "--text", &text, "--target", &targets, "--json",
    ]);
    let r = &ablated["results"][0];
    let per = |k: &str| -> Vec<f64> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (base, abl) = (per("baseline_per_token"), per("ablated_per_token"));
    // Token 0 is <bos>; loss i predicts token i+1; the repeat's tokens 12..=20 are predicted at 11..20.
    let mean = |v: &[f64]| v[11..20].iter().sum::<f64>() / 9.0;
    let (b, a) = (mean(&base), mean(&abl));
    assert!(b < 1.0, "the model does not copy the repeat: loss {b}");
    assert!(
        a - b > 1.0,
        "ablating {targets} raised the repeat's loss only from {b:.3} to {a:.3}"
    );
}

/// The train fixture `tiny.toml` (6 steps, a checkpoint at 3; under a second), trained once
/// per test run; each case below edits a copy.
fn tiny_release() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("tiny");
        let recipe = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../glassbox-train/tests/fixtures/tiny.toml");
        let o = glassbox(&[
            "train",
            recipe.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        dir
    })
}

/// `name` in this process's scratch folder under `target/tmp` (emptied). The shared release
/// outlives the tests, so the folders of runs over an hour old are removed here.
fn scratch(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reproduce-cli");
    let mine = format!("{}", std::process::id());
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if old && e.file_name() != mine.as_str() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let dir = root.join(mine).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of the tiny release with `edit` applied to it.
fn tiny_copy(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = scratch(name);
    copy_dir(tiny_release(), &dir);
    edit(&dir);
    dir
}

/// Rewrites the JSON file `rel` of `dir` with `edit`.
fn edit_json(dir: &Path, rel: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(rel);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// `run`'s predictions for a prompt, without the first line (which names the folder).
fn predictions(dir: &Path) -> String {
    let o = glassbox(&["run", dir.to_str().unwrap(), "--prompt", "the cat sees"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.lines().skip(1).collect::<Vec<_>>().join("\n")
}

/// `reproduce` of an edited release: exit 2, NOT REPRODUCED before any training, every
/// `expected` text in the output, and the error's cause `cause`.
fn assert_not_reproduced(dir: &Path, args: &[&str], expected: &[&str], cause: &str) {
    let mut all = vec!["reproduce", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = glassbox(&all);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("verdict: NOT REPRODUCED"), "{out}");
    assert!(!out.contains("bit for bit"), "{out}");
    assert!(
        !out.contains("steps on"),
        "trained although a file differs: {out}"
    );
    for e in expected {
        assert!(out.contains(e), "no {e:?} in: {out}");
    }
    assert!(
        out.contains(&format!("was not reproduced: {cause}")),
        "the cause is not {cause:?}: {out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The premise of the cases below: the tiny release as written reproduces bit for bit.
#[test]
fn the_tiny_release_as_written_reproduces_bit_for_bit() {
    let dir = tiny_copy("untouched", |_| {});
    for steps in ["3", "6"] {
        let o = glassbox(&["reproduce", dir.to_str().unwrap(), "--steps", steps]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains(&format!("verdict: REPRODUCED bit for bit at step {steps}")),
            "{}",
            text(&o)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Same weights, another norm epsilon and RoPE base: `run` predicts otherwise, so the release
/// is not what its recipe makes (found by review: "REPRODUCED bit for bit").
#[test]
fn a_config_that_is_not_the_recipes_is_not_reproduced() {
    let dir = tiny_copy("config", |d| {
        edit_json(d, "config.json", |c| {
            c["rms_norm_eps"] = 0.5.into();
            c["rope_theta"] = 77.into();
        })
    });
    assert_ne!(predictions(&dir), predictions(tiny_release()));
    assert_not_reproduced(
        &dir,
        &[],
        &[
            "config.json: not what the recipe makes",
            "rms_norm_eps 0.5",
            "rope_theta 77",
        ],
        "config.json is not what its recipe makes",
    );
    // A checkpoint's config.json too: it is what `run` loads for that checkpoint.
    let dir = tiny_copy("checkpoint-config", |d| {
        edit_json(d, "checkpoints/step-000003/config.json", |c| {
            c["hidden_act"] = "gelu".into()
        })
    });
    assert_not_reproduced(
        &dir,
        &["--steps", "3"],
        &[
            "checkpoints/step-000003/config.json: not what the recipe makes",
            "hidden_act \"gelu\"",
        ],
        "checkpoints/step-000003/config.json is not what its recipe makes",
    );
    // The generation config: its end-of-sequence ids decide where `generate` stops.
    let dir = tiny_copy("generation", |d| {
        edit_json(d, "generation_config.json", |c| {
            c["eos_token_id"] = 5.into()
        })
    });
    assert_not_reproduced(
        &dir,
        &[],
        &[
            "generation_config.json: not what the recipe makes",
            "eos_token_id 5",
        ],
        "generation_config.json is not what its recipe makes",
    );
}

#[test]
fn a_tokenizer_that_is_not_the_recipes_is_not_reproduced() {
    let dir = tiny_copy("tokenizer", |d| {
        edit_json(d, "tokenizer.json", |t| {
            let vocab = &mut t["model"]["vocab"];
            let (cat, dog) = (vocab["cat"].clone(), vocab["dog"].clone());
            vocab["cat"] = dog;
            vocab["dog"] = cat;
        })
    });
    assert_ne!(predictions(&dir), predictions(tiny_release()));
    assert_not_reproduced(
        &dir,
        &[],
        &[
            "tokenizer.json: not what the recipe makes",
            "model.vocab.cat",
            "model.vocab.dog",
        ],
        "tokenizer.json is not what its recipe makes",
    );
}

/// The shipped data files are the data: one changed line of the held-out text (which the
/// manifest hashes), or of the training sample, is data that differ.
#[test]
fn shipped_data_that_are_not_the_manifests_are_not_reproduced() {
    let edit_line = |rel: &'static str| {
        move |d: &Path| {
            let path = d.join(rel);
            let text = std::fs::read_to_string(&path).unwrap();
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            lines[1] = lines[1].replacen("the", "a", 1) + " cat";
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        }
    };
    let dir = tiny_copy("held-out", edit_line("data/held_out.txt"));
    assert_not_reproduced(
        &dir,
        &[],
        &[
            "data/held_out.txt: sha256",
            "the data differ (line 2 differs)",
        ],
        "its data differ from what its recipe generates (data/held_out.txt)",
    );
    let dir = tiny_copy("train-sample", edit_line("data/train_sample.txt"));
    assert_not_reproduced(
        &dir,
        &[],
        &[
            "data/train_sample.txt: not the regenerated training documents",
            "line 2 differs",
        ],
        "its data differ from what its recipe generates (data/train_sample.txt)",
    );
}

/// The manifest is compared whole: its fact table, and its hashes, whose mismatch is data that
/// differ, not weights (the error said "its weights are not what its recipe trains").
#[test]
fn a_manifest_that_is_not_the_regenerated_datas_is_not_reproduced() {
    let dir = tiny_copy("fact-table", |d| {
        edit_json(d, "data/manifest.json", |m| {
            m["fact_table"][0] = "k00 -> v99".into()
        })
    });
    assert_not_reproduced(
        &dir,
        &[],
        &[
            "data/manifest.json: differs from the regenerated data's",
            "fact_table[0] \"k00 -> v99\"",
        ],
        "its data differ from what its recipe generates (data/manifest.json)",
    );
    let dir = tiny_copy("train-hash", |d| {
        edit_json(d, "data/manifest.json", |m| {
            m["train"]["sha256_token_ids"] = "0".repeat(64).into()
        })
    });
    assert_not_reproduced(
        &dir,
        &[],
        &["train sha256", "(DIFFERS)", "train.sha256_token_ids \"0000"],
        "its data differ from what its recipe generates (data/manifest.json)",
    );
}

/// A release that records other numerics is promised no bit identity: the bits may still be
/// equal, but the verdict never says "bit for bit" (it said "bits cannot match", then
/// "REPRODUCED bit for bit").
#[test]
fn a_release_recording_other_numerics_is_comparable_never_bit_for_bit() {
    let dir = tiny_copy("numerics", |d| {
        edit_json(d, "training_run.json", |r| {
            r["numerics"] = "glassbox-kernels/2".into()
        })
    });
    for (steps, verdict) in [
        ("3", "verdict: COMPARABLE at step 3"),
        ("6", "verdict: COMPARABLE —"),
    ] {
        let o = glassbox(&["reproduce", dir.to_str().unwrap(), "--steps", steps]);
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains(verdict), "{out}");
        assert!(!out.contains("bit for bit"), "{out}");
        assert!(out.contains("glassbox-kernels/2"), "{out}");
        assert!(out.contains("bit identity is not promised"), "{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
