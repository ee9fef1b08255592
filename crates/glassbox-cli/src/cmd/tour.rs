//! `glassbox tour`: the three tiers of openness, told on real entries and on the bundled
//! fully open reference model, in under a minute with no download.
//!
//! Each chapter prints the command it runs — exactly what a user would type — runs it (the
//! same binary, as a child process, so the output is the real command's), then prints the
//! command to go deeper. The audit chapter calls the audit library directly to put four
//! releases side by side. Any failing chapter fails the tour.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The reference release to tour (default: `models/reference` of this checkout).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

/// Registry entries shown side by side: one per tier.
const TIERS: &[(&str, &str)] = &[
    ("openai/gpt-4o", "closed"),
    ("meta-llama/Llama-3.1-8B", "open-weights"),
    ("EleutherAI/pythia-6.9b", "open-source"),
];

/// The bundled release: `models/reference` under the working directory, else in the source
/// tree this binary was built from (so `cargo run -- tour` works from any directory).
fn reference_dir(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = arg {
        if !dir.is_dir() {
            return Err(crate::invalid!("{}: not a directory", dir.display()));
        }
        return Ok(dir);
    }
    let local = PathBuf::from("models/reference");
    if local.is_dir() {
        return Ok(local);
    }
    // shown as a path that works from where the tour runs (no `crates/glassbox-cli/../..`)
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/reference");
    if let Ok(built) = built.canonicalize() {
        return Ok(built);
    }
    Err(crate::invalid!(
        "models/reference: the bundled release was not found (run from the repository root, or pass --model DIR)"
    ))
}

struct Chapter {
    title: &'static str,
    story: String,
    args: Vec<String>,
    deeper: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let dir = reference_dir(args.model)?;
    // what the commands printed name: the release as it can be typed from here
    let m = dir.display().to_string();
    let shown = m.as_str();
    let s = |x: &str| x.to_string();

    println!(
        "glassbox tour — three tiers of openness, on real releases and on a model of our own\n"
    );
    audit_chapter(&dir, shown)?;

    let chapters = vec![
        Chapter {
            title: "2. Every weight (inspect)",
            story: s("The reference model ships its weights as safetensors: every tensor, its shape and dtype, read from the header alone."),
            args: vec![s("inspect"), m.clone()],
            deeper: format!("glassbox inspect {shown} --stats        # per-tensor statistics"),
        },
        Chapter {
            title: "3. The forward pass (run)",
            story: s("`k07 is` is a fact from the training data's fixed table: the model recalls its value from its weights alone."),
            args: vec![s("run"), m.clone(), s("--prompt"), s("k07 is"), s("--top-k"), s("3")],
            deeper: format!("glassbox run {shown} --prompt \"...\" --all-positions   # every position"),
        },
        Chapter {
            title: "4. What each layer predicts (lens)",
            story: s("A binding seen earlier in the context (`x3 = v05`) is recalled later: the logit lens shows at which layer the answer appears."),
            args: vec![s("lens"), m.clone(), s("--prompt"), s("x3 = v05 , x7 = v11 . the cat sees a dog . x3 ="), s("--target"), s("v05")],
            deeper: format!("glassbox lens {shown} --prompt \"...\" --json   # top tokens per layer and position"),
        },
        Chapter {
            title: "5. Which heads do what (heads)",
            story: s("The corpus plants repeated spans (4 to 12 words), so the model should have grown induction heads: scores on 10 random tokens repeated twice."),
            args: vec![s("heads"), m.clone(), s("--seq-len"), s("10"), s("--batch"), s("16"), s("--top"), s("3")],
            deeper: format!("glassbox ablate {shown} --text \"...\" --target heads --each   # what each head is worth"),
        },
        Chapter {
            title: "6. Where a fact lives (patch)",
            story: s("Clean `k07 is` against corrupted `k09 is`: patching the clean residual stream into the corrupted run, layer by layer and position by position, shows where the fact is carried."),
            args: vec![s("patch"), m.clone(), s("--clean"), s("k07 is"), s("--corrupt"), s("k09 is"), s("--answer"), fact_value(&dir, 7)?, s("--wrong"), fact_value(&dir, 9)?],
            deeper: format!("glassbox patch {shown} ... --what heads   # per head"),
        },
        Chapter {
            title: "7. Rebuild it (reproduce)",
            story: s("Fully open means anyone can rerun the pipeline: regenerate the data from its seed (checking its sha256), retrain, and compare. The first 10 steps, bit for bit:"),
            args: vec![s("reproduce"), m.clone(), s("--steps"), s("10")],
            deeper: format!("glassbox reproduce {shown}        # the full run (a few minutes), judged by loss, head roles and KL"),
        },
    ];
    let exe = std::env::current_exe().context("locating the glassbox binary")?;
    for ch in &chapters {
        println!("\n── {} ──\n{}\n", ch.title, ch.story);
        println!("$ glassbox {}", display_args(&ch.args));
        let status = Command::new(&exe)
            .args(&ch.args)
            .status()
            .with_context(|| format!("running glassbox {}", ch.args[0]))?;
        if !status.success() {
            anyhow::bail!("tour chapter `{}` failed ({status})", ch.title);
        }
        println!("\ngo deeper: {}", ch.deeper);
    }
    println!(
        "\nTour done in {:.0} s. Train your own: glassbox train recipes/reference.toml --out my-model",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The value word of fact key `k` in the release's fact table (`kNN -> vMM`).
fn fact_value(dir: &Path, k: usize) -> anyhow::Result<String> {
    let release = glassbox_train::reproduce::Release::open(dir)?;
    let key = glassbox_train::corpus::key_word(k);
    release
        .manifest
        .fact_table
        .iter()
        .find_map(|line| line.strip_prefix(&format!("{key} -> ")).map(str::to_string))
        .ok_or_else(|| crate::invalid!("{}: no fact `{key}` in data/manifest.json", dir.display()))
}

/// The command as a user would type it: arguments with spaces quoted.
fn display_args(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn audit_chapter(dir: &Path, shown: &str) -> anyhow::Result<()> {
    println!("── 1. Three tiers, side by side (audit) ──");
    println!("What a release really opens: closed (no weights), open-weights (weights only), open-source (weights, code and data information under open terms).\n");
    let mut rows = Vec::new();
    for (id, _) in TIERS {
        println!("$ glassbox audit {id}");
        rows.push((
            id.to_string(),
            glassbox_audit::audit_target(id).with_context(|| format!("auditing {id}"))?,
        ));
    }
    println!("$ glassbox audit {shown}");
    let ours = glassbox_audit::audit_target(&dir.display().to_string())
        .with_context(|| format!("auditing {}", dir.display()))?;
    rows.push((format!("{shown} (ours)"), ours));
    println!(
        "\n{:<26} {:<13} {:<11} missing for the next tier",
        "release", "tier", "MOF class"
    );
    for (name, a) in &rows {
        let class = a
            .mof
            .class
            .map(|c| format!("Class {}", roman(c)))
            .unwrap_or_else(|| "none".into());
        let missing = if a.missing_for_next_tier.is_empty() {
            "—".to_string()
        } else {
            let mut m = a.missing_for_next_tier.join("; ");
            if m.len() > 60 {
                m.truncate(
                    m.char_indices()
                        .take_while(|(i, _)| *i < 57)
                        .last()
                        .map(|(i, c)| i + c.len_utf8())
                        .unwrap_or(0),
                );
                m.push('…');
            }
            m
        };
        println!("{name:<26} {:<13} {class:<11} {missing}", a.tier.label());
    }
    for (id, tier) in TIERS {
        let got = rows
            .iter()
            .find(|(n, _)| n == id)
            .map(|(_, a)| a.tier.label());
        if got != Some(tier) {
            anyhow::bail!("the registry says {id} is {got:?}, the tour expected {tier}");
        }
    }
    println!(
        "\ngo deeper: glassbox audit {shown} --markdown   # every component with its evidence"
    );
    Ok(())
}

fn roman(c: u8) -> &'static str {
    match c {
        1 => "I",
        2 => "II",
        3 => "III",
        _ => "?",
    }
}
