//! Test support (included with `#[path]`): the real artifacts `scripts/fetch-artifacts.sh`
//! puts in `.artifacts/`. A missing one fails the test under `GLASSBOX_REQUIRE_ARTIFACTS=1`
//! (the test script, CI) and is a printed notice otherwise.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The artifact directory, or None (after a notice) when it is absent and not required.
pub fn artifact(name: &str) -> Option<PathBuf> {
    let path = workspace().join(".artifacts").join(name);
    if path.exists() {
        return Some(path);
    }
    let required = std::env::var("GLASSBOX_REQUIRE_ARTIFACTS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{} is missing (run scripts/fetch-artifacts.sh)",
        path.display()
    );
    eprintln!(
        "notice: {} is missing; run scripts/fetch-artifacts.sh to run this test",
        path.display()
    );
    None
}
