//! Where commands write: one check for every output path, made before any work, so that a
//! path the user got wrong is exit code 2 with a message in words (not an OS error number
//! after a long computation).

use std::path::Path;

use anyhow::Context;

/// `path` (given as `flag`) must name a file in a folder that exists: not an existing
/// directory, not inside a missing folder or inside a file.
pub fn check(path: &Path, flag: &str) -> anyhow::Result<()> {
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
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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
    Ok(())
}

/// `path` must name an SVG file `check` accepts (`--plot`).
pub fn check_svg(path: &Path, flag: &str) -> anyhow::Result<()> {
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(crate::invalid!(
            "{}: {flag} writes SVG; give a file name ending in .svg",
            path.display()
        ));
    }
    check(path, flag)
}

/// Writes `tensors` to a temporary file beside `out`, then renames it into place.
pub fn write_safetensors(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    crate::output::check(out, "--out")?;
    let file_name = out
        .file_name()
        .ok_or_else(|| crate::invalid!("--out {} is not a file path", out.display()))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = candle_core::safetensors::save(tensors, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|_| {
            std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_missing_folders_are_refused() {
        let dir = std::env::temp_dir().join(format!("glassbox-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let code = |r: anyhow::Result<()>| r.map_err(|e| crate::exit::code(&e));
        assert_eq!(code(check(&dir, "--plot")), Err(2));
        assert_eq!(code(check(&dir.join("no/such/x.svg"), "--plot")), Err(2));
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(code(check(&file.join("x.svg"), "--plot")), Err(2));
        assert_eq!(code(check(&dir.join("x.svg"), "--plot")), Ok(()));
        assert_eq!(code(check(Path::new("x.svg"), "--plot")), Ok(()));
    }
}
