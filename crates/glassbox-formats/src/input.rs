//! One input policy for every file glassbox reads.
//!
//! - **Regular files only.** A path is looked at (`stat`, which never blocks) before it is
//!   opened: a FIFO would block `open` until a writer comes, a device such as `/dev/zero` or
//!   `/dev/urandom` never ends, a directory is not a file. Each is refused by what it is.
//! - **Sizes capped before reading.** Text files (configs, tokenizers, recipes, cards) are read
//!   whole, so their size is checked against a limit first; weights are memory-mapped, never
//!   read whole, and need no cap.
//! - **Text is UTF-8**, and a file that is not is an input error naming the file.
//!
//! Every error is [`FormatError::Invalid`] (or an `Io` error the user caused), so the CLI exits
//! with code 2 and the message says what is wrong in words.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::{FormatError, Result};

/// Limits for files read whole (bytes).
pub mod limit {
    /// `config.json`, `generation_config.json`, index files, recipes.
    pub const CONFIG: u64 = 16 << 20;
    /// `tokenizer.json` (the largest published ones, with 256k-token vocabularies, are ~35 MB).
    pub const TOKENIZER: u64 = 128 << 20;
    /// Model cards, MOT YAML, licence texts, release manifests.
    pub const DOCUMENT: u64 = 16 << 20;
    /// Text given to run a model over (`--file`).
    pub const CORPUS: u64 = 256 << 20;
}

/// What kind of file system object `path` is, in words, when it is not a regular file.
pub(crate) fn not_a_file(meta: &std::fs::Metadata) -> Option<&'static str> {
    let ty = meta.file_type();
    if ty.is_file() {
        return None;
    }
    if ty.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if ty.is_char_device() || ty.is_block_device() {
            return Some("a device");
        }
        if ty.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// The metadata of `path` if it is a regular file (links followed), else an input error
/// naming what it is instead. `what` says what the file was expected to be.
pub fn regular_file(path: &Path, what: &str) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| FormatError::io(path, e))?;
    match not_a_file(&meta) {
        None => Ok(meta),
        Some(kind) => {
            let article = match what.chars().next() {
                Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
                _ => "a",
            };
            Err(FormatError::invalid(
                path,
                format!("is {kind}, not {article} {what} file"),
            ))
        }
    }
}

/// Whether something is at `path` (links followed). `Path::exists` answers "no" for a link
/// that loops, a link to nothing and a folder that may not be entered, and a reader that
/// asked it skipped such a file in silence (a looping `model.safetensors` became "missing
/// tensor"); here only a path where nothing is is absent, and the rest are errors naming it.
pub fn present(path: &Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::symlink_metadata(path).is_ok() {
                Err(FormatError::invalid(
                    path,
                    "a symbolic link to nothing (its target does not exist)",
                ))
            } else {
                Ok(false)
            }
        }
        Err(e) => Err(FormatError::io(path, e)),
    }
}

/// [`present`], or an error saying that nothing is at `path`.
pub fn existing(path: &Path) -> Result<()> {
    if present(path)? {
        Ok(())
    } else {
        let absent = std::io::Error::new(std::io::ErrorKind::NotFound, "does not exist");
        Err(FormatError::io(path, absent))
    }
}

/// Opens `path` for reading after checking that it is a regular file.
pub fn open(path: &Path, what: &str) -> Result<File> {
    regular_file(path, what)?;
    File::open(path).map_err(|e| FormatError::io(path, e))
}

/// Reads a whole regular file of at most `limit` bytes. The limit is checked before reading
/// and again while reading (a file that grows meanwhile stops at the limit).
pub fn read_bytes(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    let size = regular_file(path, what)?.len();
    let too_big = |size: u64| {
        FormatError::invalid(
            path,
            format!(
                "{what} file of {size} bytes is larger than the {} MiB glassbox reads",
                limit >> 20
            ),
        )
    };
    if size > limit {
        return Err(too_big(size));
    }
    let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FormatError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads a whole regular text file of at most `limit` bytes as UTF-8.
pub fn read_text(path: &Path, what: &str, limit: u64) -> Result<String> {
    let bytes = read_bytes(path, what, limit)?;
    String::from_utf8(bytes).map_err(|e| {
        FormatError::invalid(
            path,
            format!(
                "{what} file is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Reads and parses a JSON file of at most `limit` bytes.
pub fn read_json(path: &Path, what: &str, limit: u64) -> Result<serde_json::Value> {
    let text = read_text(path, what, limit)?;
    serde_json::from_str(&text)
        .map_err(|e| FormatError::invalid(path, format!("malformed JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("glassbox-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[cfg(unix)]
    #[test]
    fn links_that_loop_or_dangle_are_errors_not_absences() {
        let dir = temp("links");
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, dangling) = (dir.join("a"), dir.join("b"), dir.join("dangling"));
        for p in [&a, &b, &dangling] {
            let _ = std::fs::remove_file(p);
        }
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        std::os::unix::fs::symlink(dir.join("nothing"), &dangling).unwrap();
        let err = present(&a).unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        let words = crate::error::describe(&err);
        assert!(words.contains("loops"), "{words}");
        let err = present(&dangling).unwrap_err();
        assert!(
            err.is_invalid_input() && err.to_string().contains("to nothing"),
            "{err}"
        );
        assert!(!present(&dir.join("nothing")).unwrap());
        assert!(present(&dir).unwrap());
        let err = existing(&dir.join("nothing")).unwrap_err();
        assert!(
            err.is_invalid_input() && err.to_string().ends_with("nothing: does not exist"),
            "{err}"
        );
    }

    #[test]
    fn special_files_are_refused_by_kind_without_blocking() {
        let dir = temp("a-dir");
        std::fs::create_dir_all(&dir).unwrap();
        let err = read_text(&dir, "config", limit::CONFIG).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        assert!(err.is_invalid_input());
        #[cfg(unix)]
        {
            let err = read_text(Path::new("/dev/zero"), "config", limit::CONFIG).unwrap_err();
            assert!(err.to_string().contains("is a device"), "{err}");
            let fifo = temp("fifo");
            let _ = std::fs::remove_file(&fifo);
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            // Opening a FIFO with no writer would block forever: refused before opening.
            let err = open(&fifo, "weights").unwrap_err();
            assert!(err.to_string().contains("FIFO"), "{err}");
        }
    }

    #[test]
    fn sizes_are_capped_and_text_must_be_utf8() {
        let big = temp("big.json");
        std::fs::write(&big, vec![b' '; 2048]).unwrap();
        let err = read_text(&big, "config", 1024).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(read_text(&big, "config", 4096).is_ok());
        let latin1 = temp("latin1.json");
        std::fs::write(&latin1, b"{\"name\": \"caf\xe9\"}").unwrap();
        let err = read_json(&latin1, "config", limit::CONFIG).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert!(err.is_invalid_input());
        let missing = temp("missing.json");
        assert!(read_text(&missing, "config", limit::CONFIG)
            .unwrap_err()
            .is_invalid_input());
    }
}
