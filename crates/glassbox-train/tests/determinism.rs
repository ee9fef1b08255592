//! The same recipe and seed give bit-identical weights — on every instruction-set path and
//! thread count; a release written by training is reproduced bit for bit from its own files,
//! and tampering is detected.

use std::path::{Path, PathBuf};

use glassbox_train::release::{self, ReleaseParts};
use glassbox_train::reproduce::{self, Options, Release, Verdict};
use glassbox_train::{corpus, eval, trainer, Recipe};

fn tiny() -> (Recipe, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny.toml");
    (
        Recipe::load(&path).unwrap(),
        std::fs::read_to_string(&path).unwrap(),
    )
}

fn weights_sha(recipe: &Recipe, steps: usize) -> String {
    trainer::set_threads(recipe.threads);
    let data = trainer::prepare_data(&recipe.data).unwrap();
    let run = trainer::train(recipe, &data, steps, &mut |_| {}).unwrap();
    let bytes = trainer::safetensors_bytes(&trainer::snapshot(&run.varmap).unwrap()).unwrap();
    corpus::sha256_hex(&bytes)
}

#[test]
fn same_recipe_gives_bit_identical_weights() {
    let (recipe, _) = tiny();
    let a = weights_sha(&recipe, 4);
    let b = weights_sha(&recipe, 4);
    assert_eq!(a, b);
    let mut other = recipe.clone();
    other.seed += 1;
    assert_ne!(
        a,
        weights_sha(&other, 4),
        "the seed must change the weights"
    );
}

#[test]
fn weights_do_not_depend_on_the_instruction_set_or_thread_count() {
    use glassbox_kernels::{with_isa, Isa};
    let (recipe, _) = tiny();
    let pool = |n: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let reference = pool(1).install(|| with_isa(Isa::Portable, || weights_sha(&recipe, 3)));
    let paths = Isa::available_paths();
    assert!(
        paths.len() > 1 || !cfg!(target_arch = "x86_64"),
        "x86-64 test machines have a SIMD path"
    );
    for isa in paths {
        for threads in [1, 2, 3] {
            let got = pool(threads).install(|| with_isa(isa, || weights_sha(&recipe, 3)));
            assert_eq!(
                got, reference,
                "training on {isa} with {threads} threads differs from portable"
            );
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn write_tiny_release(out: &Path, replace: bool) -> Result<(), glassbox_train::TrainError> {
    let (recipe, text) = tiny();
    trainer::set_threads(recipe.threads);
    let data = trainer::prepare_data(&recipe.data).unwrap();
    let run = trainer::train(&recipe, &data, recipe.training.steps, &mut |_| {}).unwrap();
    let evaluation = eval::evaluate(&run.model, &recipe.data, &data.held_out, data.row).unwrap();
    let parts = ReleaseParts {
        recipe: &recipe,
        recipe_text: &text,
        data: &data,
        run: &run,
        evaluation: &evaluation,
    };
    release::write(out, &parts, replace)
}

#[test]
fn a_release_reproduces_bit_for_bit_and_tampering_is_caught() {
    let dir = scratch("release");
    write_tiny_release(&dir, false).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "README.md",
        "LICENSE",
        "recipe.toml",
        "mof.yml",
        "training_log.jsonl",
        "training_run.json",
        "eval_results.json",
        "data/manifest.json",
        "data_card.md",
        "technical_report.md",
        "paper.md",
        "samples.txt",
        "code/model/llama.rs",
        "data/held_out.txt",
        "code/corpus.rs",
        "checkpoints/step-000003/model.safetensors",
        "checkpoints/step-000003/config.json",
    ] {
        assert!(dir.join(f).is_file(), "release lacks {f}");
    }
    let card = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(card.starts_with("---\nlicense: apache-2.0\n"), "{card}");
    assert!(std::fs::read_to_string(dir.join("LICENSE"))
        .unwrap()
        .contains("Apache License"));
    // Writing again over it without `replace` is refused, as an input error.
    let again = write_tiny_release(&dir, false).expect_err("overwrite refused");
    assert!(
        again.is_invalid_input() && again.to_string().contains("already exists"),
        "{again}"
    );

    let opts = |steps| Options { steps, threads: 1 };
    let release = Release::open(&dir).unwrap();
    let at_checkpoint = reproduce::reproduce(&release, &opts(Some(3)), &mut |_| {}).unwrap();
    assert_eq!(
        at_checkpoint.verdict,
        Verdict::BitIdentical,
        "{:?}",
        at_checkpoint.lines
    );
    let full = reproduce::reproduce(&release, &opts(None), &mut |_| {}).unwrap();
    assert_eq!(full.verdict, Verdict::BitIdentical, "{:?}", full.lines);

    // No checkpoint at step 2: an input error naming the steps that exist.
    let err = reproduce::reproduce(&release, &opts(Some(2)), &mut |_| {})
        .err()
        .unwrap();
    assert!(
        err.is_invalid_input() && err.to_string().contains("[3]"),
        "{err}"
    );

    // Tampered weights: not reproduced.
    let ck = dir.join("checkpoints/step-000003/model.safetensors");
    let mut bytes = std::fs::read(&ck).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x01;
    std::fs::write(&ck, &bytes).unwrap();
    let tampered = reproduce::reproduce(&release, &opts(Some(3)), &mut |_| {}).unwrap();
    assert_eq!(
        tampered.verdict,
        Verdict::NotReproduced,
        "{:?}",
        tampered.lines
    );

    // Tampered data manifest: not reproduced, and said so before any training.
    let manifest = dir.join("data/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let sha = &release.manifest.train.sha256_token_ids;
    std::fs::write(&manifest, text.replace(sha.as_str(), &"0".repeat(64))).unwrap();
    let release = Release::open(&dir).unwrap();
    let report = reproduce::reproduce(&release, &opts(Some(3)), &mut |_| {}).unwrap();
    assert_eq!(report.verdict, Verdict::NotReproduced);
    assert!(
        report.lines.iter().any(|l| l.contains("DIFFERS")),
        "{:?}",
        report.lines
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
