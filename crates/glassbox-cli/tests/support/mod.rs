//! What the command-line tests share: the repository root, running the binary, a scratch
//! folder per test.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where `models/` and `tests/fixtures/` are).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tests/fixtures/parity").is_dir())
        .expect("the repository's tests/fixtures")
        .to_path_buf()
}

/// Runs the `glassbox` binary this crate built.
pub fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("run glassbox")
}

/// A fresh, empty folder for one test of one test file, unique to this process.
pub fn scratch(file: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-{file}-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `out`, after checking that the command succeeded (its stderr shown if not).
pub fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Sets every value of the f32 tensor `name` in `dir/model.safetensors` to NaN, in place (a
/// broken weight, to see what the commands make of non-finite numbers).
pub fn set_nan(dir: &Path, name: &str) {
    let weights = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header[name]["dtype"], "F32", "{name}");
    let offsets = &header[name]["data_offsets"];
    let (start, end) = (
        8 + header_len + offsets[0].as_u64().unwrap() as usize,
        8 + header_len + offsets[1].as_u64().unwrap() as usize,
    );
    for value in bytes[start..end].chunks_exact_mut(4) {
        value.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&weights, bytes).unwrap();
}

pub mod browser;
pub mod policy;
/// Runs `glassbox trace MODEL ARGS… --hooks HOOK` into a scratch file and reads that hook's
/// f32 tensor back: its shape and values.
pub fn traced(model: &str, args: &[&str], hook: &str) -> (Vec<usize>, Vec<f32>) {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = scratch("support", &format!("trace-{call}"));
    let file = dir.join("trace.safetensors");
    let mut all = vec!["trace", model];
    all.extend(args);
    all.extend(["--hooks", hook, "--out", file.to_str().unwrap()]);
    ok(&glassbox(&all));
    let bytes = std::fs::read(&file).unwrap();
    let traced = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = traced.tensor(hook).unwrap();
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let shape = t.shape().to_vec();
    let _ = std::fs::remove_dir_all(dir);
    (shape, values)
}

pub mod serve;
