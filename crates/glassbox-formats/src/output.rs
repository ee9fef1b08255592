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
    // The rename below would put a regular file where a device, a pipe or a socket was
    // (`--out /dev/null` as root replaced the device for the whole system).
    if let Some(kind) = special_file(path) {
        return Err(FormatError::invalid(
            path,
            format!("is {kind}, not a regular file: give the name of a file to write"),
        ));
    }
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

/// What `path` is when it exists and is neither a regular file nor a folder (links followed):
/// a device, a FIFO, a socket.
pub fn special_file(path: &Path) -> Option<&'static str> {
    let meta = std::fs::metadata(path).ok()?;
    crate::input::not_a_file(&meta).filter(|kind| *kind != "a directory")
}

/// Writes `bytes` to `path`.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |w| {
        w.write_all(bytes).map_err(|e| FormatError::io(path, e))
    })
}

/// Writes named tensors as a safetensors file (with `metadata` as its `__metadata__`), streamed:
/// the header, then one tensor's bytes at a time, through [`write_atomically`].
///
/// The safetensors crate lays the file out (the header, the order of the data); it is asked
/// for the header alone by serialising views that carry no bytes, and the order its serialiser
/// asks for their bytes is the order they take in the file. Its own writers either hold the
/// whole file in memory or go through a private temporary file (mode 0600, named in its errors).
pub fn write_safetensors<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a candle_core::Tensor)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let tensors: Vec<(&str, &candle_core::Tensor)> = tensors.into_iter().collect();
    let order = std::cell::RefCell::new(Vec::with_capacity(tensors.len()));
    let hollow = tensors.iter().enumerate().map(|(index, (name, tensor))| {
        (
            *name,
            Hollow {
                tensor,
                index,
                order: &order,
            },
        )
    });
    let header = safetensors::serialize(hollow, metadata)
        .map_err(|e| FormatError::invalid(path, format!("cannot serialize: {e}")))?;
    let order = order.into_inner();
    write_atomically(path, |w| {
        w.write_all(&header).map_err(|e| FormatError::io(path, e))?;
        for &index in &order {
            let bytes = safetensors::View::data(&tensors[index].1);
            w.write_all(&bytes).map_err(|e| FormatError::io(path, e))?;
        }
        Ok(())
    })
}

/// A tensor as the safetensors serialiser sees it, without its bytes: it notes when they are
/// asked for, which is where they go in the file.
struct Hollow<'a> {
    tensor: &'a candle_core::Tensor,
    index: usize,
    order: &'a std::cell::RefCell<Vec<usize>>,
}

impl safetensors::View for Hollow<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::View::dtype(&self.tensor)
    }
    fn shape(&self) -> &[usize] {
        self.tensor.dims()
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        self.order.borrow_mut().push(self.index);
        std::borrow::Cow::Borrowed(&[])
    }
    fn data_len(&self) -> usize {
        safetensors::View::data_len(&self.tensor)
    }
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

    /// The streamed file is byte for byte the safetensors crate's own serialisation, for tensors
    /// of several dtypes and names whose order in the file differs from the order given.
    #[test]
    fn streamed_safetensors_are_the_crates_serialisation() {
        use candle_core::{DType, Device, Tensor};
        let device = Device::Cpu;
        let a = Tensor::arange(0f32, 12.0, &device)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let b = Tensor::arange(0f32, 5.0, &device)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let c = Tensor::arange(0i64, 3, &device).unwrap();
        let d = Tensor::arange(0u8, 7, &device).unwrap();
        let e = a.t().unwrap(); // not contiguous
        let tensors = [
            ("zeta", &a),
            ("alpha", &b),
            ("mid", &c),
            ("bytes", &d),
            ("t", &e),
        ];
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let path = temp("streamed.safetensors");
        write_safetensors(&path, tensors, Some(metadata.clone())).unwrap();
        let expected = safetensors::serialize(tensors, Some(metadata)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        let back = candle_core::safetensors::load(&path, &device).unwrap();
        assert_eq!(
            back["t"].to_vec2::<f32>().unwrap(),
            e.to_vec2::<f32>().unwrap()
        );
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("glassbox-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    #[cfg(unix)]
    fn a_device_or_a_pipe_is_not_replaced_by_a_file() {
        use std::os::unix::fs::FileTypeExt;
        let dir = std::env::temp_dir().join(format!("glassbox-special-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/null"), "a device"),
        ] {
            let err = write_bytes(path, b"x").unwrap_err();
            assert!(
                err.is_invalid_input() && err.to_string().contains(kind),
                "{err}"
            );
        }
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let _ = std::fs::remove_dir_all(&dir);
    }

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
