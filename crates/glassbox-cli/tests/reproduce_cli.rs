//! `glassbox reproduce` on the committed reference release: the CI slice (the first 10 steps,
//! bit for bit), and input errors.

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

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/reference")
}

#[test]
fn reference_release_reproduces_its_first_steps_bit_for_bit() {
    let dir = reference();
    let o = glassbox(&["reproduce", dir.to_str().unwrap(), "--steps", "10"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("train sha256") && out.contains("matches"), "{out}");
    assert!(out.contains("verdict: REPRODUCED bit for bit at step 10"), "{out}");
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
