//! `glassbox train`: a tiny recipe trains into a complete release that audits as open-source,
//! MOF Class I; bad input exits 2 with a message naming the file, and never leaves a partial
//! release behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../glassbox-train/tests/fixtures")
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("glassbox-cli-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn train_writes_a_release_that_audits_as_open_source_class_one() {
    let out = scratch("release");
    let recipe = fixtures().join("tiny.toml");
    let o = glassbox(&[
        "train",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("release written to"), "{}", text(&o));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "mof.yml",
        "checkpoints/step-000003/model.safetensors",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let log = std::fs::read_to_string(out.join("training_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 6, "one log line per step");

    // Its card offers the examples the bundled release's card does (the workbench's
    // defaults): the committed card is what `train` writes.
    let widget = |card: &str| -> String {
        let start = card.find("\nwidget:\n").expect("a widget list");
        let end = start
            + card[start..]
                .find("\n---\n")
                .expect("the front matter's end");
        card[start..end].to_string()
    };
    let written = std::fs::read_to_string(out.join("README.md")).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/reference/README.md");
    let bundled = std::fs::read_to_string(bundled).unwrap();
    assert_eq!(widget(&written), widget(&bundled));

    // The release is loadable by the analysis commands.
    let o = glassbox(&["run", out.to_str().unwrap(), "--prompt", "k01 is"]);
    assert!(o.status.success(), "{}", text(&o));

    // And it audits as fully open from its own files.
    let o = glassbox(&["audit", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let audit: serde_json::Value = serde_json::from_slice(&o.stdout).expect("audit JSON");
    assert_eq!(
        audit["tier"],
        "open-source",
        "{}",
        serde_json::to_string_pretty(&audit).unwrap()
    );
    assert_eq!(
        audit["mof"]["class"],
        1,
        "{}",
        serde_json::to_string_pretty(&audit["mof"]).unwrap()
    );

    // Training again into the same directory is refused without --force.
    let o = glassbox(&[
        "train",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_recipes_exit_2_naming_the_file_and_write_nothing() {
    let out = scratch("bad");
    for name in [
        "vocab-mismatch.toml",
        "unknown-key.toml",
        "no-such-recipe.toml",
    ] {
        let recipe = fixtures().join("bad-recipes").join(name);
        let o = glassbox(&[
            "train",
            recipe.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        assert!(
            text(&o).contains(name),
            "{name}: error does not name the file: {}",
            text(&o)
        );
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
        assert!(!out.exists(), "{name}: a release directory was created");
    }
}

/// `--force` replaces the output folder whole: a recipe inside it would be deleted while read.
#[test]
fn force_refuses_an_output_folder_that_holds_the_recipe() {
    let out = scratch("holds-recipe");
    std::fs::create_dir_all(&out).unwrap();
    let recipe = out.join("my.toml");
    std::fs::copy(fixtures().join("tiny.toml"), &recipe).unwrap();
    let o = glassbox(&[
        "train",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("my.toml, which this command reads"),
        "{}",
        text(&o)
    );
    assert!(recipe.is_file(), "the recipe was deleted");
    std::fs::remove_dir_all(&out).unwrap();
}
