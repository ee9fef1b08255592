//! The whole-CLI stress harness (issue 19): seeded mutations of what a user or an attacker can
//! hand glassbox — config.json values and bytes, tokenizer.json nodes and bytes, GGUF metadata
//! of llama.cpp-made files, model and data cards, licences, MOT YAML, training recipes, special
//! files where files belong, extreme arguments — through the commands, each run under a time and a
//! memory limit. Every run must end with exit 0 or 2, print no panic, finish in time and
//! leave no half-written output. Failures are listed with the case's seed and description,
//! which reproduce it.
//!
//! `GLASSBOX_STRESS_CASES` sets the number of cases (CI runs the default slice, a few minutes
//! on a 2-core machine); `GLASSBOX_STRESS_SEED` the first seed. A long local run:
//! `GLASSBOX_STRESS_CASES=20000 cargo test --release -p glassbox-cli --test stress`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use glassbox_formats::gguf::{GgufArray, GgufValue};
use glassbox_formats::gguf_write::GgufWriter;
use glassbox_formats::Checkpoint;
use serde_json::{json, Value};

const DEFAULT_CASES: u64 = 300;
/// Per run. Generous for a debug build on a loaded 2-core machine; a hang is far past it.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Address space per run: a runaway allocation fails here instead of swapping the machine.
const MEMORY_LIMIT: u64 = 8 << 30;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// xorshift64*: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values that break sizes, types and signs.
fn hostile_value(rng: &mut Rng) -> Value {
    rng.pick(&[
        json!(0),
        json!(-1),
        json!(1),
        json!(3),
        json!(1_000_000_000u64),
        json!(4_294_967_295u64),
        json!(u64::MAX),
        json!(2.5),
        json!(-1e30),
        json!(1e300),
        json!(null),
        json!("x"),
        json!(""),
        json!(true),
        json!([]),
        json!({}),
        json!([1, 2, 3]),
    ])
    .clone()
}

/// Every node of a JSON value, as a path of keys / indices.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(json!(k));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            // Long arrays (vocabularies, merges): a few entries stand for the rest.
            for (i, child) in a.iter().enumerate().take(4) {
                prefix.push(json!(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |node, key| match key {
        Value::String(k) => &mut node[k.as_str()],
        Value::Number(i) => &mut node[i.as_u64().unwrap() as usize],
        _ => unreachable!(),
    })
}

/// Replaces one node of `v` (or removes it from its object) and says which.
fn mutate_json(v: &mut Value, rng: &mut Rng) -> String {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = rng.pick(&all).clone();
    let name = path
        .iter()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .collect::<Vec<_>>()
        .join(".");
    if rng.below(5) == 0 && !path.is_empty() {
        let (last, parent) = path.split_last().unwrap();
        if let (Value::Object(m), Value::String(k)) = (node_mut(v, parent), last) {
            m.remove(k);
            return format!("removed `{name}`");
        }
    }
    let value = hostile_value(rng);
    *node_mut(v, &path) = value.clone();
    format!("`{name}` = {value}")
}

/// Byte-level damage: truncation, a flipped byte, a run of zeros.
fn mutate_bytes(bytes: &mut Vec<u8>, rng: &mut Rng) -> String {
    let at = rng.below(bytes.len());
    match rng.below(3) {
        0 => {
            bytes.truncate(at);
            format!("truncated at {at}")
        }
        1 => {
            let b = rng.next() as u8;
            bytes[at] = b;
            format!("byte {at} = {b:#x}")
        }
        _ => {
            let end = (at + 1 + rng.below(64)).min(bytes.len());
            bytes[at..end].iter_mut().for_each(|b| *b = 0);
            format!("zeros at {at}..{end}")
        }
    }
}

/// A llama.cpp-made GGUF rewritten with one metadata value made hostile (or removed), its
/// tensors as they were.
fn mutated_gguf(src: &Path, dst: &Path, rng: &mut Rng) -> String {
    let ck = Checkpoint::open(src).unwrap();
    let meta = ck.gguf().unwrap().metadata().to_vec();
    let (key, _) = rng.pick(&meta).clone();
    let hostile = rng
        .pick(&[
            Some(GgufValue::U32(0)),
            Some(GgufValue::U32(u32::MAX)),
            Some(GgufValue::U64(u64::MAX)),
            Some(GgufValue::I32(-1)),
            Some(GgufValue::F32(f32::NAN)),
            Some(GgufValue::F32(1e30)),
            Some(GgufValue::String("x".into())),
            Some(GgufValue::Bool(true)),
            Some(GgufValue::Array(GgufArray::U32(vec![]))),
            Some(GgufValue::Array(GgufArray::U32(vec![u32::MAX; 3]))),
            None,
        ])
        .clone();
    let mut w = GgufWriter::new();
    for (k, v) in &meta {
        match (k == &key, &hostile) {
            (false, _) => {
                w.set(k, v.clone());
            }
            (true, Some(h)) => {
                w.set(k, h.clone());
            }
            (true, None) => {}
        }
    }
    for t in ck.tensors() {
        let bytes = ck.raw_bytes(&t.name).unwrap().to_vec();
        w.add_raw(&t.name, &t.shape, t.dtype, bytes).unwrap();
    }
    w.write(dst).unwrap();
    match hostile {
        Some(h) => format!("`{key}` = {h:?}"),
        None => format!("removed `{key}`"),
    }
}

/// A scratch copy of a fixture directory.
fn copy_fixture(src: &Path, dst: &Path) {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
    }
}

struct Case {
    what: String,
    args: Vec<String>,
    /// Where an output may appear: nothing half-written may be left there.
    out_dir: PathBuf,
}

/// The commands a model is put through (one, picked by the case's seed).
fn model_commands(dir: &str, out: &Path, rng: &mut Rng) -> Vec<String> {
    let prompt = "When Mary and John went to the store, John gave a drink to";
    let trace_out = out.join("trace.safetensors");
    let steer_out = out.join("vector.gguf");
    let all: Vec<Vec<String>> = vec![
        vec!["inspect", dir, "--json"],
        vec!["run", dir, "--prompt", prompt, "--json"],
        vec!["generate", dir, "--prompt", "The", "--max-tokens", "3"],
        vec![
            "trace",
            dir,
            "--prompt",
            prompt,
            "--hooks",
            "blocks.*.hook_resid_post",
            "--out",
            trace_out.to_str().unwrap(),
        ],
        vec!["lens", dir, "--prompt", prompt, "--json"],
        vec!["heads", dir, "--batch", "2", "--seq-len", "8", "--json"],
        vec![
            "attribute",
            dir,
            "--prompt",
            prompt,
            "--target",
            "#5",
            "--json",
        ],
        vec![
            "patch",
            dir,
            "--clean",
            prompt,
            "--corrupt",
            "When Mary and John went to the store, Mary gave a drink to",
            "--answer",
            "#5",
            "--wrong",
            "#6",
            "--json",
        ],
        vec![
            "ablate",
            dir,
            "--text",
            prompt,
            "--target",
            "L0H0,L0MLP",
            "--method",
            "zero",
            "--json",
        ],
        vec![
            "steer",
            dir,
            "--positive",
            "Paris is big",
            "--negative",
            "Rome is big",
            "--layers",
            "1-1",
            "--out",
            steer_out.to_str().unwrap(),
        ],
        vec!["experts", dir, "--prompt", prompt, "--json"],
        vec!["diff", dir, dir, "--json"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    rng.pick(&all).clone()
}

/// Text damage for cards, YAML and TOML: one line's value made hostile, or byte damage.
fn mutate_text(text: &str, rng: &mut Rng) -> (String, String) {
    let lines: Vec<&str> = text.lines().collect();
    if rng.below(2) == 0 && !lines.is_empty() {
        let i = rng.below(lines.len());
        let value = *rng.pick(&[
            "0",
            "-1",
            "1000000000",
            "18446744073709551616",
            "2.5",
            "\"x\"",
            "true",
            "[]",
            "{}",
            "",
            ":",
            "- -",
            "\u{0}",
        ]);
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        out[i] = match lines[i].split_once(['=', ':']) {
            Some((key, _)) => format!(
                "{key}{} {value}",
                if lines[i].contains('=') { " =" } else { ":" }
            ),
            None => value.to_string(),
        };
        (out.join("\n"), format!("line {} = {value}", i + 1))
    } else {
        let mut bytes = text.as_bytes().to_vec();
        let what = mutate_bytes(&mut bytes, rng);
        (String::from_utf8_lossy(&bytes).into_owned(), what)
    }
}

/// A release folder's model card, data card or licence, or a MOT file, damaged, then audited.
fn audit_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    if rng.below(3) == 0 {
        let mot_dir = root().join("tests/fixtures/mot/Test_Data");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&mot_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        let src = rng.pick(&files).clone();
        let (text, what) = mutate_text(&std::fs::read_to_string(&src).unwrap(), rng);
        let file = scratch.join("model.yml");
        std::fs::write(&file, text).unwrap();
        return Case {
            what: format!("mot: yaml {what}"),
            args: ["audit", file.to_str().unwrap(), "--json"]
                .map(String::from)
                .to_vec(),
            out_dir,
        };
    }
    let cases = root().join("tests/fixtures/audit/cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cases)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let src = rng.pick(&dirs).clone();
    let dir = scratch.join("release");
    copy_fixture(&src, &dir);
    let mut texts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.ends_with(".md") || n == "LICENSE" || n.ends_with(".json")
        })
        .collect();
    texts.sort();
    let what = match texts.is_empty() {
        true => "unchanged".to_string(),
        false => {
            let file = rng.pick(&texts).clone();
            let (text, what) =
                mutate_text(&std::fs::read_to_string(&file).unwrap_or_default(), rng);
            std::fs::write(&file, text).unwrap();
            format!("{} {what}", file.file_name().unwrap().to_string_lossy())
        }
    };
    let html = out_dir.join("report.html");
    Case {
        what: format!(
            "{}: card {what}",
            src.file_name().unwrap().to_string_lossy()
        ),
        args: [
            "audit",
            dir.to_str().unwrap(),
            "--json",
            "--html",
            html.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec(),
        out_dir,
    }
}

/// The reference recipe cut to a few steps on a small corpus, one line damaged, then trained.
fn recipe_case(rng: &mut Rng, scratch: &Path, out_dir: PathBuf) -> Case {
    let reference = std::fs::read_to_string(root().join("recipes/reference.toml")).unwrap();
    let small: String = reference
        .lines()
        .map(|l| {
            if l.starts_with("steps =") {
                "steps = 3".to_string()
            } else if l.starts_with("checkpoints =") {
                "checkpoints = [1]".to_string()
            } else if l.starts_with("train_documents =") {
                "train_documents = 64".to_string()
            } else if l.starts_with("held_out_documents =") {
                "held_out_documents = 8".to_string()
            } else if l.starts_with("batch_size =") {
                "batch_size = 4".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (text, what) = mutate_text(&small, rng);
    let recipe = scratch.join("recipe.toml");
    std::fs::write(&recipe, text).unwrap();
    let release = out_dir.join("release");
    Case {
        what: format!("reference: recipe {what}"),
        args: [
            "train",
            recipe.to_str().unwrap(),
            "--out",
            release.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec(),
        out_dir,
    }
}

/// Extreme arguments on an intact model.
fn extreme_arguments(dir: &str, rng: &mut Rng) -> (String, Vec<String>) {
    let n = rng
        .pick(&[
            "0",
            "-1",
            "1",
            "4294967296",
            "18446744073709551615",
            "99999999999999999999",
            "1e9",
            "nan",
            "x",
            "",
        ])
        .to_string();
    let args: Vec<&str> = match rng.below(6) {
        0 => vec!["heads", dir, "--batch", &n],
        1 => vec!["heads", dir, "--seq-len", &n],
        2 => vec!["generate", dir, "--prompt", "The", "--max-tokens", &n],
        3 => vec![
            "generate",
            dir,
            "--prompt",
            "The",
            "--max-tokens",
            "2",
            "--temperature",
            &n,
        ],
        4 => vec!["lens", dir, "--prompt", "The Eiffel Tower", "--top", &n],
        _ => vec!["run", dir, "--tokens", &n],
    };
    (
        format!("argument {n}"),
        args.into_iter().map(String::from).collect(),
    )
}

fn make_case(seed: u64, scratch: &Path) -> Case {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let fixtures = [
        "parity/gpt2",
        "parity/llama",
        "parity/qwen2",
        "parity/pythia",
    ];
    let fixture = root().join("tests/fixtures").join(rng.pick(&fixtures));
    let dir = scratch.join("model");
    let out_dir = scratch.join("out");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    copy_fixture(&fixture, &dir);
    let d = dir.to_str().unwrap().to_string();
    let fixture_name = fixture.file_name().unwrap().to_string_lossy().into_owned();
    match rng.below(10) {
        0 => return audit_case(&mut rng, scratch, out_dir),
        1 => return recipe_case(&mut rng, scratch, out_dir),
        _ => {}
    }
    if rng.below(7) == 0 {
        let name = *rng.pick(&[
            "llama",
            "gemma3",
            "qwen3moe",
            "olmo3",
            "gpt-oss",
            "nemotron_h",
            "qwen3next",
            "deepseek2",
            "bert",
            "phi3",
            "gpt2",
            "llama4",
        ]);
        let src = root()
            .join("tests/fixtures/llamacpp")
            .join(name)
            .join("model-Q8_0.gguf");
        let file = scratch.join("model.gguf");
        let what = mutated_gguf(&src, &file, &mut rng);
        let f = file.to_str().unwrap().to_string();
        return Case {
            what: format!("{name}: gguf {what}"),
            args: model_commands(&f, &out_dir, &mut rng),
            out_dir,
        };
    }
    let (what, args) = match rng.below(6) {
        0 | 1 => {
            let path = dir.join("config.json");
            let mut config: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let what = mutate_json(&mut config, &mut rng);
            std::fs::write(&path, config.to_string()).unwrap();
            (
                format!("config.json {what}"),
                model_commands(&d, &out_dir, &mut rng),
            )
        }
        2 => {
            let path = dir.join("tokenizer.json");
            let mut tok: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let what = mutate_json(&mut tok, &mut rng);
            std::fs::write(&path, tok.to_string()).unwrap();
            (
                format!("tokenizer.json {what}"),
                model_commands(&d, &out_dir, &mut rng),
            )
        }
        3 => {
            let file = *rng.pick(&["config.json", "tokenizer.json", "model.safetensors"]);
            let path = dir.join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            let what = mutate_bytes(&mut bytes, &mut rng);
            std::fs::write(&path, bytes).unwrap();
            (
                format!("{file} {what}"),
                model_commands(&d, &out_dir, &mut rng),
            )
        }
        4 => {
            let file = *rng.pick(&["config.json", "tokenizer.json", "model.safetensors"]);
            let path = dir.join(file);
            std::fs::remove_file(&path).unwrap();
            let special = *rng.pick(&["/dev/zero", "/dev/null", "/dev/urandom", "directory"]);
            if special == "directory" {
                std::fs::create_dir(&path).unwrap();
            } else {
                #[cfg(unix)]
                std::os::unix::fs::symlink(special, &path).unwrap();
            }
            (
                format!("{file} → {special}"),
                model_commands(&d, &out_dir, &mut rng),
            )
        }
        _ => extreme_arguments(&d, &mut rng),
    };
    Case {
        what: format!("{fixture_name}: {what}"),
        args,
        out_dir,
    }
}

/// Runs one case: its exit code if it behaved, else what went wrong.
fn run_case(case: &Case) -> Result<i32, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glassbox"));
    cmd.args(&case.args)
        .env("GLASSBOX_MEMORY", "2G")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only setrlimit, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: MEMORY_LIMIT,
                    rlim_max: MEMORY_LIMIT,
                };
                libc::setrlimit(libc::RLIMIT_AS, &limit);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        use std::io::Read;
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer in {} s", TIME_LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = reader.join().unwrap();
    let first = err.lines().next().unwrap_or("").to_string();
    if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
        return Err(format!(
            "panic: {}",
            err.lines().take(3).collect::<Vec<_>>().join(" | ")
        ));
    }
    let code = match status.code() {
        Some(code @ (0 | 2)) => code,
        code => return Err(format!("exit {code:?}: {first}")),
    };
    let leftovers: Vec<String> = std::fs::read_dir(&case.out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains("tmp"))
        .collect();
    if !leftovers.is_empty() {
        return Err(format!("half-written output left: {leftovers:?}"));
    }
    // A refused command writes nothing at all.
    if code == 2 {
        let written: Vec<String> = std::fs::read_dir(&case.out_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !written.is_empty() {
            return Err(format!("refused (exit 2) but wrote {written:?}"));
        }
    }
    Ok(code)
}

#[test]
fn seeded_mutations_through_every_command_end_cleanly() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("GLASSBOX_STRESS_CASES").unwrap_or(DEFAULT_CASES);
    let first = env("GLASSBOX_STRESS_SEED").unwrap_or(1);
    let scratch = std::env::temp_dir().join(format!("glassbox-stress-{}", std::process::id()));
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    let mut exits = std::collections::BTreeMap::<i32, u64>::new();
    for seed in first..first + cases {
        let case = make_case(seed, &scratch);
        let kind = case.what.split(' ').nth(1).unwrap_or("?").to_string();
        *kinds.entry(kind).or_default() += 1;
        match run_case(&case) {
            Ok(code) => *exits.entry(code).or_default() += 1,
            Err(problem) => failures.push(format!(
                "seed {seed}: {} — glassbox {}: {problem}",
                case.what,
                case.args.join(" ")
            )),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!(
        "stress: {cases} cases from seed {first} in {:.0} s; by kind: {kinds:?}; exit codes: {exits:?}",
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
