//! The whole-CLI stress harness (issue 19): seeded mutations of what a user or an attacker can
//! hand glassbox — config.json values and bytes, tokenizer.json nodes and bytes, GGUF metadata
//! of llama.cpp-made files, model and data cards, licences, MOT YAML, training recipes, special
//! files where files belong, extreme arguments — through the commands, each run under a time and a
//! memory limit. Every run must end with exit 0 or 2, print no panic, finish in time and
//! leave no half-written output. Failures are listed with the case's seed and description,
//! which reproduce it.
//!
//! `GLASSBOX_STRESS_CASES` sets the number of cases (CI runs the default slice, a few minutes
//! on a 2-core machine); `GLASSBOX_STRESS_SEED` the first seed; `GLASSBOX_STRESS_VERBOSE`
//! prints every case's exit code and first line of error. A long local run:
//! `GLASSBOX_STRESS_CASES=20000 cargo test --release -p glassbox-cli --test stress`.

mod cases;
mod mutate;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cases::{make_case, Case};

const DEFAULT_CASES: u64 = 1500;

/// Per run. Generous for a debug build on a loaded 2-core machine; a hang is far past it.
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Address space per run: a runaway allocation fails here instead of swapping the machine.
const MEMORY_LIMIT: u64 = 8 << 30;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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
    if std::env::var_os("GLASSBOX_STRESS_VERBOSE").is_some() {
        eprintln!("exit {code}: {} — {first}", case.what);
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
