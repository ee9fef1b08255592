//! Every MOT model description parses, or fails with an error naming the file and the
//! field. The 273 files are MOT's own (MIT, `data/mot/LICENSE`), copied into the crate.

use std::path::Path;

use glassbox_audit::mot::MotRelease;
use glassbox_audit::AuditError;

#[test]
fn every_mot_model_file_parses_or_names_the_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mot/models");
    let (mut parsed, mut failed) = (0, Vec::new());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            continue;
        }
        match MotRelease::read(&path) {
            Ok(release) => {
                let _ = release.mof_model().score();
                parsed += 1;
            }
            Err(e) => {
                let message = e.to_string();
                assert!(
                    matches!(e, AuditError::Field { .. } | AuditError::Yaml { .. }),
                    "{message}"
                );
                assert!(
                    message.contains(&*path.file_name().unwrap().to_string_lossy()),
                    "{message}"
                );
                failed.push(message);
            }
        }
    }
    eprintln!(
        "MOT models: {parsed} parsed, {} rejected with a named field",
        failed.len()
    );
    for f in &failed {
        eprintln!("  {f}");
    }
    assert!(
        parsed + failed.len() >= 273,
        "expected the 273 MOT model files"
    );
}
