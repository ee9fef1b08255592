//! `glassbox audit` end to end: the three kinds of input, every output format, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .arg("audit")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("glassbox-audit-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mot_test_file(name_prefix: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mot/Test_Data");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(name_prefix)
        })
        .unwrap()
}

#[test]
fn list_shows_the_registry() {
    let o = glassbox(&["--list"]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.contains("meta-llama/Llama-3.1-8B") && text.contains("EleutherAI/pythia-6.9b"),
        "{text}"
    );
    let o = glassbox(&["--list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(rows.as_array().unwrap().len() >= 30);
}

#[test]
fn registry_id_as_json() {
    let o = glassbox(&["meta-llama/Llama-3.1-8B", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["tier"], "open-weights");
    assert_eq!(j["weights_terms"], "restricted");
    assert!(j["mof"]["class"].is_null());
    assert!(j["mof"]["completeness"]["I"].is_number());
    let params = j["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Model parameters (Final)")
        .unwrap();
    assert_eq!(params["evidence"]["kind"], "registry");
    assert_eq!(params["evidence"]["checked"], "2026-11-26");
}

#[test]
fn mot_file_as_markdown_with_mot_class() {
    let file = mot_test_file("Class2RTestFile");
    let o = glassbox(&[file.to_str().unwrap(), "--markdown"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = stdout(&o);
    assert!(
        md.contains("Class II (open tooling) — I 77%, II 100%, III 100%"),
        "{md}"
    );
    assert!(
        md.contains("| Model architecture | III | declared |"),
        "{md}"
    );
    let o = glassbox(&[file.to_str().unwrap(), "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["mof"]["class"], 2);
}

#[test]
fn directory_with_html_and_badge() {
    let dir = scratch("dir");
    std::fs::write(
        dir.join("README.md"),
        "---\nlicense: apache-2.0\n---\n# m\n",
    )
    .unwrap();
    std::fs::write(dir.join("model.safetensors"), "w").unwrap();
    let out = scratch("out");
    let html = out.join("report.html");
    let badge = out.join("badge.svg");
    let o = glassbox(&[
        dir.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--badge",
        badge.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("Tier:    open-weights"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("open-weights"));
    assert!(
        !page.contains("<script") && !page.contains("<link") && !page.contains("src="),
        "self-contained"
    );
    let svg = std::fs::read_to_string(&badge).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains(">open-weights<"),
        "{svg}"
    );
    // Only the two reports: no temporary files left behind.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_input_exits_2_with_the_file_named() {
    let o = glassbox(&["/nonexistent/glassbox/model-dir"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/glassbox/model-dir"));
    let o = glassbox(&["not-an-org/not-a-model"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--list"));
    let dir = scratch("bad");
    let bad = dir.join("broken.yml");
    std::fs::write(&bad, "release:\n  name: x\n  components: {oops\n").unwrap();
    let o = glassbox(&[bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("broken.yml") && err.contains("YAML"), "{err}");
    assert!(!err.contains("panicked"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reader that stops early (`glassbox audit --list | head -1`) ends the output quietly:
/// no panic message, no exit code 101.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(["audit", "--list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before the first line
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(status.code(), Some(101), "{stderr}");
}
