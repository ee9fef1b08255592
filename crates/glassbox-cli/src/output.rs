//! Where commands write: one check for every output path, made before any work, so that a
//! path the user got wrong is exit code 2 with a message in words (not an OS error number
//! after a long computation), and so that no command writes over what it reads.

use std::path::{Path, PathBuf};

use anyhow::Context;
use glassbox_formats::output::folder_of;

/// `path` (given as `flag`) must name a file in a folder that exists: not an existing
/// directory, not inside a missing folder or inside a file, and not one of `inputs` (the
/// paths the command reads) nor inside one of them (see [`not_an_input`]).
pub fn check(path: &Path, flag: &str, inputs: &[&Path]) -> anyhow::Result<()> {
    if path.is_dir() {
        return Err(crate::invalid!(
            "{flag} {}: is a directory; give a file name",
            path.display()
        ));
    }
    if path.file_name().is_none() {
        return Err(crate::invalid!(
            "{flag} {}: not a file name",
            path.display()
        ));
    }
    if let Some(kind) = glassbox_formats::output::special_file(path) {
        return Err(crate::invalid!(
            "{flag} {}: is {kind}, not a regular file; give the name of a file to write",
            path.display()
        ));
    }
    let folder = folder_of(path);
    if !folder.is_dir() {
        let why = if folder.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(crate::invalid!(
            "{flag} {}: the folder {} {why}",
            path.display(),
            folder.display()
        ));
    }
    not_an_input(path, flag, inputs)
}

/// `path` must name an SVG file `check` accepts (`--plot`).
pub fn check_svg(path: &Path, flag: &str, inputs: &[&Path]) -> anyhow::Result<()> {
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(crate::invalid!(
            "{}: {flag} writes SVG; give a file name ending in .svg",
            path.display()
        ));
    }
    check(path, flag, inputs)
}

/// An output `path` (file or folder, given as `flag`) must not be any of `inputs` — the model,
/// data, recipe or other files the command reads — nor lie inside one that is a folder (a
/// model's folder): writing there would destroy the input, or change the release the command
/// was given. Paths are compared after resolving `.`, `..` and symbolic links; an input that is
/// not a path on disk (a Hub id, a registry name) cannot be written over and is skipped.
pub fn not_an_input(path: &Path, flag: &str, inputs: &[&Path]) -> anyhow::Result<()> {
    let Some(out) = resolved(path) else {
        return Ok(());
    };
    for input in inputs {
        let Ok(input) = input.canonicalize() else {
            continue;
        };
        if out == input {
            return Err(crate::invalid!(
                "{flag} {}: is {}, which this command reads; write elsewhere",
                path.display(),
                input.display()
            ));
        }
        if input.is_dir() && out.starts_with(&input) {
            return Err(crate::invalid!(
                "{flag} {}: is inside {}, which this command reads; write elsewhere",
                path.display(),
                input.display()
            ));
        }
    }
    Ok(())
}

/// Whether `a` and `b` name the same file once `.`, `..` and links are resolved.
pub fn same_file(a: &Path, b: &Path) -> bool {
    matches!((resolved(a), resolved(b)), (Some(a), Some(b)) if a == b)
}

/// No input may lie inside `folder`, an output folder the command replaces whole (`train
/// --force`): replacing it would delete what the command is reading.
pub fn no_input_inside(folder: &Path, flag: &str, inputs: &[&Path]) -> anyhow::Result<()> {
    let Some(out) = resolved(folder) else {
        return Ok(());
    };
    for input in inputs {
        if let Some(inside) = resolved(input).filter(|i| i.starts_with(&out)) {
            return Err(crate::invalid!(
                "{flag} {}: holds {}, which this command reads and would replace; write elsewhere",
                folder.display(),
                inside.display()
            ));
        }
    }
    Ok(())
}

/// `path` with `.`, `..` and links resolved: itself if it exists, else its folder's resolution
/// joined with its name (an output about to be made). `None` when neither resolves.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let name = path.file_name()?;
    Some(folder_of(path).canonicalize().ok()?.join(name))
}

/// Writes `tensors` (and the header's `metadata`) to `out`, whole or not at all
/// ([`glassbox_formats::output`]).
pub fn write_safetensors(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    // The command checked `out` against its inputs before any work.
    crate::output::check(out, "--out", &[])?;
    let named = tensors.iter().map(|(n, t)| (n.as_str(), t));
    Ok(glassbox_formats::output::write_safetensors(
        out, named, metadata,
    )?)
}

/// An output folder a command fills over time (training logs, checkpoints, an SAE): if the
/// command fails or is interrupted (Ctrl-C, SIGTERM), what it wrote there goes — the whole
/// folder if the command made it, else the entries it added — so that a refused or stopped run
/// leaves nothing half-written behind. `keep` ends the guard on success.
pub struct OutputDir {
    id: u64,
    kept: bool,
}

/// What an [`OutputDir`] undoes: its folder, and the entries it held before (`None`: the
/// command made it).
struct Pending {
    id: u64,
    path: PathBuf,
    before: Option<std::collections::BTreeSet<std::ffi::OsString>>,
}

/// The folders being filled now; an interruption tidies them (`Drop` does not run then).
static PENDING: std::sync::Mutex<Vec<Pending>> = std::sync::Mutex::new(Vec::new());

impl Pending {
    fn undo(&self) {
        match &self.before {
            None => {
                let _ = std::fs::remove_dir_all(&self.path);
            }
            Some(before) => {
                for entry in std::fs::read_dir(&self.path)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if !before.contains(&entry.file_name()) {
                        let p = entry.path();
                        let _ = if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                    }
                }
            }
        }
    }
}

impl OutputDir {
    /// Creates `path` (given as `flag`) if needed, in a folder that exists (as for output
    /// files, see [`check`]). A path that is a file, one of `inputs` or inside one is the
    /// user's error.
    pub fn create(path: &Path, flag: &str, inputs: &[&Path]) -> anyhow::Result<Self> {
        not_an_input(path, flag, inputs)?;
        let before = if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .with_context(|| format!("{flag} {}: reading the folder", path.display()))?;
            Some(entries.flatten().map(|e| e.file_name()).collect())
        } else {
            if path.exists() {
                return Err(crate::invalid!("{flag} {}: not a folder", path.display()));
            }
            check(path, flag, inputs)?;
            std::fs::create_dir(path)
                .with_context(|| format!("{flag} {}: creating the folder", path.display()))?;
            None
        };
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        interrupt::tidy_on_interrupt();
        pending().push(Pending {
            id,
            path: path.to_path_buf(),
            before,
        });
        Ok(OutputDir { id, kept: false })
    }

    /// The command succeeded: what it wrote stays.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

fn pending() -> std::sync::MutexGuard<'static, Vec<Pending>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        let mut all = pending();
        let Some(at) = all.iter().position(|p| p.id == self.id) else {
            return;
        };
        let this = all.remove(at);
        drop(all);
        if !self.kept {
            this.undo();
        }
    }
}

/// Ctrl-C and SIGTERM while an [`OutputDir`] is being filled: its writes are undone, then the
/// process exits as the signal would have ended it (128 + the signal).
mod interrupt {
    #[cfg(unix)]
    pub fn tidy_on_interrupt() {
        use std::sync::atomic::{AtomicI32, Ordering};
        static WRITE_END: AtomicI32 = AtomicI32::new(-1);
        // Only what is safe in a signal handler: one byte down a pipe to the tidying thread.
        extern "C" fn on_signal(signal: libc::c_int) {
            let fd = WRITE_END.load(Ordering::Relaxed);
            if fd >= 0 {
                let byte = signal as u8;
                // SAFETY: write(2) is async-signal-safe; the buffer is one live byte.
                unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
            }
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: pipe(2) fills the two descriptors of the array it is given.
            if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
                return;
            }
            let read_end = fds[0];
            WRITE_END.store(fds[1], Ordering::Relaxed);
            std::thread::spawn(move || {
                let mut byte = 0u8;
                // SAFETY: reads one byte into a live local.
                let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
                let signal = if n == 1 { byte as i32 } else { libc::SIGINT };
                for p in super::pending().iter() {
                    p.undo();
                }
                eprintln!("interrupted: what this run had written is removed");
                std::process::exit(128 + signal);
            });
            let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            for signal in [libc::SIGINT, libc::SIGTERM] {
                // SAFETY: installs a handler that only writes to a pipe.
                unsafe { libc::signal(signal, handler) };
            }
        });
    }

    #[cfg(not(unix))]
    pub fn tidy_on_interrupt() {}
}

#[cfg(test)]
mod output_dir_tests {
    use super::OutputDir;

    #[test]
    fn a_failed_command_leaves_the_folder_as_it_found_it() {
        let root = std::env::temp_dir().join(format!("glassbox-outdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Made by the command: removed whole.
        std::fs::create_dir_all(root.join("new")).unwrap();
        let made = root.join("new/sae");
        let out = OutputDir::create(&made, "--out", &[]).unwrap();
        std::fs::write(made.join("log.jsonl"), "x").unwrap();
        drop(out);
        assert!(!made.exists());
        // The user's folder: only what the command added goes.
        let theirs = root.join("theirs");
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::write(theirs.join("notes.txt"), "mine").unwrap();
        let out = OutputDir::create(&theirs, "--out", &[]).unwrap();
        std::fs::create_dir_all(theirs.join("checkpoints/step-1")).unwrap();
        std::fs::write(theirs.join("cfg.json"), "{}").unwrap();
        drop(out);
        let left: Vec<_> = std::fs::read_dir(&theirs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("notes.txt")]);
        // Kept on success.
        let out = OutputDir::create(&made, "--out", &[]).unwrap();
        std::fs::write(made.join("cfg.json"), "{}").unwrap();
        out.keep();
        assert!(made.join("cfg.json").exists());
        // Inside a missing folder: refused, nothing made.
        assert!(OutputDir::create(&root.join("no/such/sae"), "--out", &[]).is_err());
        assert!(!root.join("no").exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_missing_folders_are_refused() {
        let dir = std::env::temp_dir().join(format!("glassbox-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let code = |r: anyhow::Result<()>| r.map_err(|e| crate::exit::code(&e));
        assert_eq!(code(check(&dir, "--plot", &[])), Err(2));
        assert_eq!(
            code(check(&dir.join("no/such/x.svg"), "--plot", &[])),
            Err(2)
        );
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(code(check(&file.join("x.svg"), "--plot", &[])), Err(2));
        assert_eq!(code(check(&dir.join("x.svg"), "--plot", &[])), Ok(()));
        assert_eq!(code(check(Path::new("x.svg"), "--plot", &[])), Ok(()));
    }

    #[test]
    fn an_output_is_never_an_input_or_inside_one() {
        let root = std::env::temp_dir().join(format!("glassbox-in-out-{}", std::process::id()));
        let model = root.join("model");
        std::fs::create_dir_all(&model).unwrap();
        let weights = model.join("model.safetensors");
        std::fs::write(&weights, b"weights").unwrap();
        let data = root.join("data.jsonl");
        std::fs::write(&data, b"{}").unwrap();
        let inputs: [&Path; 3] = [&model, &data, Path::new("org/not-a-path")];
        let code = |r: anyhow::Result<()>| r.map_err(|e| crate::exit::code(&e));
        // The input file itself, also by another spelling and through a link.
        assert_eq!(code(check(&data, "--out", &inputs)), Err(2));
        let dotted = root.join("model/../data.jsonl");
        assert_eq!(code(check(&dotted, "--out", &inputs)), Err(2));
        let link = root.join("link.jsonl");
        let _ = std::fs::remove_file(&link);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&data, &link).unwrap();
            assert_eq!(code(check(&link, "--out", &inputs)), Err(2));
        }
        // Inside the model's folder: an existing file, a new one, the folder itself.
        assert_eq!(code(check(&weights, "--out", &inputs)), Err(2));
        assert_eq!(
            code(check(&model.join("new.gguf"), "--out", &inputs)),
            Err(2)
        );
        assert_eq!(code(not_an_input(&model, "--out", &inputs)), Err(2));
        assert!(OutputDir::create(&model.join("adapter"), "--out", &inputs).is_err());
        assert!(!model.join("adapter").exists());
        // Beside them: fine.
        assert_eq!(
            code(check(&root.join("out.gguf"), "--out", &inputs)),
            Ok(())
        );
        assert_eq!(
            code(check(&root.join("modelx.gguf"), "--out", &inputs)),
            Ok(())
        );
        assert_eq!(
            weights.metadata().unwrap().len(),
            7,
            "the input was written"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
