//! Where the tests' fixtures are: this crate's own (`tests/fixtures`, made by
//! `make_more_fixtures.py`) or the project's (`../../tests/fixtures`).

use std::path::{Path, PathBuf};

/// The fixture `rel` (`parity/gpt2`, `more/gemma`, `llamacpp/…`), in this crate's fixtures or
/// the project's.
pub fn fixture(rel: &str) -> PathBuf {
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    [own.join(rel), project.join(rel)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no fixture {rel}"))
}
