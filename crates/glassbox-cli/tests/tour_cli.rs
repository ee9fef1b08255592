//! `glassbox tour` runs end to end on the bundled release, printing each step's command.

use std::process::Command;
use std::time::Instant;

#[test]
fn tour_runs_every_chapter_and_prints_the_commands() {
    let start = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .arg("tour")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("glassbox runs");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    for cmd in [
        "$ glassbox audit openai/gpt-4o",
        "$ glassbox audit meta-llama/Llama-3.1-8B",
        "$ glassbox audit EleutherAI/pythia-6.9b",
        "$ glassbox inspect models/reference",
        "$ glassbox run models/reference",
        "$ glassbox lens models/reference",
        "$ glassbox heads models/reference",
        "$ glassbox patch models/reference",
        "$ glassbox reproduce models/reference --steps 10",
    ] {
        assert!(out.contains(cmd), "tour lacks `{cmd}`:\n{out}");
    }
    assert_eq!(out.matches("go deeper:").count(), 7, "{out}");
    let ours = out
        .lines()
        .find(|l| l.starts_with("models/reference (ours)"))
        .unwrap_or_else(|| panic!("no audit row for the reference release:\n{out}"));
    assert!(
        ours.contains("open-source") && ours.contains("Class I "),
        "{ours}"
    );
    assert!(
        out.contains("verdict: REPRODUCED bit for bit at step 10"),
        "{out}"
    );
    eprintln!(
        "tour took {:.1} s (this build profile)",
        start.elapsed().as_secs_f64()
    );
}

/// Run from elsewhere, the tour found the release through the source tree and printed it as
/// `…/crates/glassbox-cli/../../models/reference`; its "go deeper" commands named
/// `models/reference`, which is not there. Every command it prints names the release as it can
/// be typed from where it runs.
#[test]
fn the_commands_printed_work_from_where_the_tour_runs() {
    let elsewhere = std::env::temp_dir();
    let o = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .arg("tour")
        .current_dir(&elsewhere)
        .output()
        .expect("glassbox runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}");
    let mut named = 0;
    for line in out.lines() {
        let Some(cmd) = line
            .strip_prefix("$ glassbox ")
            .or_else(|| line.strip_prefix("go deeper: glassbox "))
        else {
            continue;
        };
        let arg = cmd.split_whitespace().nth(1).unwrap();
        if arg.contains('/')
            && !arg.ends_with("gpt-4o")
            && !arg.contains("Llama")
            && !arg.contains("pythia")
        {
            assert!(!arg.contains(".."), "{line}");
            assert!(
                elsewhere.join(arg).join("config.json").is_file(),
                "{line}: not a path from {}",
                elsewhere.display()
            );
            named += 1;
        }
    }
    assert!(named >= 14, "{named} commands named the release:\n{out}");
}
