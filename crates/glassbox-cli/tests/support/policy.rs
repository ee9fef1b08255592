//! What the input-policy tests share: the binary run under a time limit and a fixed memory
//! budget, refusals checked for their words, scratch copies of fixtures to break.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("glassbox-input-policy-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the GPT-2 parity fixture to break.
pub fn gpt2_copy(name: &str) -> PathBuf {
    let dir = scratch(name);
    let src = root().join("tests/fixtures/parity/gpt2");
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// Exit code and stderr of the binary, killed (and reported) after 30 s. The memory budget is
/// fixed at 2 GiB, so what is refused does not depend on the machine.
pub fn glassbox(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .env("GLASSBOX_MEMORY", "2G")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("glassbox {args:?} hung (killed after 30 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exit 2, the message contains `expect`, and no panic or errno text.
pub fn refused(args: &[&str], expect: &str) {
    let (code, err) = glassbox(args);
    assert_eq!(code, Some(2), "glassbox {args:?}: exit {code:?}: {err}");
    assert!(err.contains(expect), "glassbox {args:?}: {err}");
    for bad in ["panicked", "os error", "RUST_BACKTRACE"] {
        assert!(!err.contains(bad), "glassbox {args:?}: {err}");
    }
}

#[cfg(unix)]
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// A copy of `src` (a folder, recursively) under the scratch folder `name`.
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes, to show that nothing there changed.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            files.extend(snapshot(&entry.path()));
        } else {
            files.push((entry.path(), std::fs::read(entry.path()).unwrap()));
        }
    }
    files.sort();
    files
}

/// A copy of the Llama parity fixture in `dir`/model whose activations are NaN from layer 0 on:
/// its first norm's scale set to NaN in the weights file.
pub fn nan_llama(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    copy_tree(&root().join("tests/fixtures/parity/llama"), &model);
    super::set_nan(&model, "model.layers.0.input_layernorm.weight");
    model
}

/// A copy of the Llama parity fixture in the scratch folder `name`, its config's `key` set to
/// `value`.
pub fn llama_with(name: &str, key: &str, value: serde_json::Value) -> PathBuf {
    let dir = scratch(name);
    copy_tree(&root().join("tests/fixtures/parity/llama"), &dir);
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(&path, config.to_string()).unwrap();
    dir
}
