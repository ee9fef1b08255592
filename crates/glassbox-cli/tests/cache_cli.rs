//! `glassbox cache` survives `kill -9`: a build killed mid-run and run again keeps the shards
//! it had finished (not rewritten), computes the rest, and ends with exactly the store an
//! uninterrupted build makes — no token lost or duplicated.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("glassbox-cache-cli-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

/// A corpus of random words, long enough for a few hundred shards.
fn corpus() -> PathBuf {
    let path = scratch("corpus.txt");
    let words = [
        "the", "a", "of", "to", "in", "and", "is", "was", "for", "on", "that", "with", "his", "her",
    ];
    let mut state = 12345u64;
    let mut text = String::new();
    for _ in 0..100_000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.push_str(words[(state >> 33) as usize % words.len()]);
        text.push(' ');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn args<'a>(corpus: &'a str, out: &'a str, model: &'a str) -> Vec<&'a str> {
    vec![
        "cache",
        model,
        "--hooks",
        "blocks.*.hook_resid_post",
        "--text",
        corpus,
        "--context",
        "64",
        "--shard-rows",
        "8",
        "--batch-size",
        "2",
        "--out",
        out,
    ]
}

fn manifest(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn shards(m: &serde_json::Value) -> Vec<(String, String)> {
    m["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["file"].as_str().unwrap().to_string(),
                s["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_killed_build_resumes_without_redoing_or_losing_shards() {
    let model = root()
        .join("tests/fixtures/parity/gpt2")
        .display()
        .to_string();
    let corpus = corpus();
    let corpus = corpus.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_glassbox");

    // Uninterrupted, for reference.
    let whole = scratch("whole");
    let status = Command::new(bin)
        .args(args(corpus, whole.to_str().unwrap(), &model))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let reference = manifest(&whole).unwrap();
    let all = shards(&reference);
    assert!(all.len() > 100, "{} shards", all.len());

    // Killed once a few shards are done.
    let killed = scratch("killed");
    let mut child = Command::new(bin)
        .args(args(corpus, killed.to_str().unwrap(), &model))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(m) = manifest(&killed) {
            if m["shards"].as_array().unwrap().len() >= 3 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no shard finished in 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = manifest(&killed).unwrap();
    let finished = shards(&partial);
    assert!(
        finished.len() < all.len(),
        "the build finished before it could be killed; make the corpus longer"
    );
    let stamps: Vec<(String, std::time::SystemTime)> = finished
        .iter()
        .map(|(f, _)| {
            (
                f.clone(),
                std::fs::metadata(killed.join(f))
                    .unwrap()
                    .modified()
                    .unwrap(),
            )
        })
        .collect();

    // Run again: finished shards kept as they are, the rest computed.
    let out = Command::new(bin)
        .args(args(corpus, killed.to_str().unwrap(), &model))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("{} kept", finished.len())),
        "expected {} shards kept: {said}",
        finished.len()
    );
    for (file, stamp) in stamps {
        let now = std::fs::metadata(killed.join(&file))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(now, stamp, "{file} was rewritten");
    }
    let resumed = manifest(&killed).unwrap();
    assert_eq!(
        shards(&resumed),
        all,
        "the resumed store differs from an uninterrupted one"
    );
    assert_eq!(resumed["rows"], reference["rows"]);
    let leftovers: Vec<String> = std::fs::read_dir(&killed)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Another plan in the same folder is refused, not mixed in.
    let mut other = args(corpus, killed.to_str().unwrap(), &model);
    other[7] = "32"; // --context
    let out = Command::new(bin).args(&other).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("another plan"));

    // So is the same plan run by another model — an adapter, another dtype — whose
    // activations differ (a config hash called them the same model, and a resumed store mixed
    // the two); and `sae train` refuses the store for a model with that adapter.
    let adapter = root().join("tests/fixtures/peft/gpt2-peft");
    let adapter = adapter.to_str().unwrap();
    let whole_dir = whole.to_str().unwrap();
    let mut with_adapter = vec!["--adapter", adapter];
    with_adapter.extend(args(corpus, whole_dir, &model));
    let mut in_bf16 = args(corpus, whole_dir, &model);
    in_bf16.extend(["--dtype", "bf16"]);
    for run in [with_adapter, in_bf16] {
        let out = Command::new(bin).args(&run).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{run:?}: {said}");
        assert!(said.contains("another model"), "{said}");
    }
    assert_eq!(
        manifest(&whole).unwrap(),
        reference,
        "the store was changed"
    );
    let sae_out = scratch("sae-with-adapter");
    let out = Command::new(bin)
        .args([
            "--adapter",
            adapter,
            "sae",
            "train",
            &model,
            "--cache",
            whole_dir,
            "--hook",
            "blocks.0.hook_resid_post",
            "--arch",
            "standard",
            "--d-sae",
            "16",
            "--training-tokens",
            "256",
            "--train-batch-size-tokens",
            "64",
            "--out",
            sae_out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("another model") && said.contains("with --adapter"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(whole.parent().unwrap());
}

/// A token file whose rows are longer than the model's positions is refused (it ran the model
/// past them without a word), and a --context past them is cut with a note.
#[test]
fn rows_past_the_models_positions_are_refused_or_cut_with_a_note() {
    let bin = env!("CARGO_BIN_EXE_glassbox");
    let model = root().join("models/reference").display().to_string();
    let dir = scratch("past-context");
    std::fs::create_dir_all(&dir).unwrap();
    // A safetensors file of one I64 tensor `tokens` [2, 300]: the header, then the ids.
    let (rows, pos) = (2usize, 300usize);
    let header = format!(
        r#"{{"tokens":{{"dtype":"I64","shape":[{rows},{pos}],"data_offsets":[0,{}]}}}}"#,
        rows * pos * 8
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    for i in 0..rows * pos {
        bytes.extend(((i % 80) as i64 + 5).to_le_bytes());
    }
    let tokens = dir.join("long.safetensors");
    std::fs::write(&tokens, bytes).unwrap();
    let out = dir.join("store");
    let o = Command::new(bin)
        .args([
            "cache",
            &model,
            "--hooks",
            "blocks.0.hook_resid_post",
            "--tokens",
        ])
        .arg(&tokens)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains("rows of 300 tokens; the model has 128 positions"),
        "{said}"
    );

    let text = dir.join("text.txt");
    std::fs::write(&text, "the cat sees a dog . ".repeat(200)).unwrap();
    let o = Command::new(bin)
        .args([
            "cache",
            &model,
            "--hooks",
            "blocks.0.hook_resid_post",
            "--context",
            "1000",
            "--text",
        ])
        .arg(&text)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("--context 1000: the model has 128 positions"),
        "{said}"
    );
    assert_eq!(manifest(&out).unwrap()["context"], 128);
    let _ = std::fs::remove_dir_all(&dir);
}
