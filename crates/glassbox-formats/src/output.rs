//! One output policy for every file glassbox writes: whole or not at all.
//!
//! A file is written to a temporary file beside its target, synced, and renamed over the target
//! only once complete: a failed or interrupted write never leaves a half-written file under the
//! name, and a reader of the old file (a memory map) keeps its pages. The file gets the
//! permissions any new file gets here (the umask's), and an error names the target, never the
//! temporary file.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::{FormatError, Result};

/// Writes `path` with what `write` streams into it.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| not_writable(path, e))?;
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, file);
        write(&mut buffered)?;
        let file = buffered
            .into_inner()
            .map_err(|e| FormatError::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| FormatError::io(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| not_writable(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path`.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |w| {
        w.write_all(bytes).map_err(|e| FormatError::io(path, e))
    })
}

/// Writes named tensors as a safetensors file (with `metadata` as its `__metadata__`).
///
/// Through the safetensors crate's serializer into memory, then [`write_atomically`]: its own
/// file writer goes through a private temporary file (mode 0600, and named in its errors).
pub fn write_safetensors<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a candle_core::Tensor)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes = safetensors::serialize(tensors, metadata)
        .map_err(|e| FormatError::invalid(path, format!("cannot serialize: {e}")))?;
    write_bytes(path, &bytes)
}

/// The folder `path` is in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A file that cannot be made or put in place under `path`: the folder's fault (read-only, not
/// one where files can be made, such as `/proc`), named as the folder's.
fn not_writable(path: &Path, e: std::io::Error) -> FormatError {
    let folder = folder_of(path);
    let kind = e.kind();
    FormatError::io(
        path,
        std::io::Error::new(
            kind,
            format!("no file can be written in {}: {e}", folder.display()),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("glassbox-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[cfg(unix)]
    #[test]
    fn files_get_the_umask_permissions_and_errors_name_the_target() {
        use std::os::unix::fs::PermissionsExt;
        let plain = temp("plain.bin");
        std::fs::write(&plain, b"x").unwrap();
        let expected = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        let tensor = candle_core::Tensor::new(&[1f32, 2.0], &candle_core::Device::Cpu).unwrap();
        let st = temp("t.safetensors");
        write_safetensors(&st, [("w", &tensor)], None).unwrap();
        let mode = std::fs::metadata(&st).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, expected,
            "mode {mode:o}, a new file gets {expected:o}"
        );
        let back = candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
        assert_eq!(back["w"].to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);

        let nowhere = Path::new("/proc/glassbox-output-test.bin");
        let err = write_bytes(nowhere, b"x").unwrap_err();
        let words = crate::error::describe(&err);
        assert!(
            words.starts_with("/proc/glassbox-output-test.bin: no file can be written in /proc"),
            "{words}"
        );
        assert!(!words.contains(".tmp"), "{words}");
        assert!(err.is_invalid_input(), "{words}");
    }
}
