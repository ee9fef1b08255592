//! `glassbox reproduce DIR [--steps N] [--threads T]`: rebuild a fully open release and compare.
//!
//! Regenerates the data (checking the manifest and the shipped data files against it) and
//! checks config.json and tokenizer.json against the recipe, reruns the recipe for N steps
//! and compares with the release: bit for bit when the numerics and backend match, otherwise
//! by losses and weights, or (after a full run) by final loss, head roles and held-out KL.
//! Exit code 0 when reproduced (bit-identical or comparable), 2 when not or when DIR is not a
//! usable release.

use std::path::PathBuf;

use glassbox_train::reproduce::{self, Options, Release, Verdict};

#[derive(clap::Args)]
pub struct Args {
    /// The release directory (with recipe.toml, data/manifest.json, training_log.jsonl).
    pub dir: PathBuf,
    /// Rerun only the first N steps and compare with the checkpoint at N.
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// CPU threads for the rerun (default: the recipe's). Another count gives a comparability check instead of bit identity.
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let release = Release::open(&args.dir)?;
    if args.steps == Some(0) {
        return Err(crate::invalid!("--steps must be at least 1"));
    }
    if let Some(0) = args.threads {
        return Err(crate::invalid!("--threads must be at least 1"));
    }
    let threads = crate::training_cli::set_threads(args.threads.unwrap_or(release.recipe.threads));
    let steps = args.steps.unwrap_or(release.recipe.training.steps);
    println!(
        "reproducing {} ({}): {steps} step(s) of recipe.toml",
        release.recipe.name,
        args.dir.display()
    );
    let bar = crate::progress::bar(steps as u64, "retraining");
    let opts = Options {
        steps: args.steps,
        threads,
    };
    let report = reproduce::reproduce(&release, &opts, &mut |r| {
        bar.set_position(r.step as u64);
        bar.set_message(format!("loss {:.3}", r.loss));
    })?;
    bar.finish_and_clear();
    for line in &report.lines {
        println!("{line}");
    }
    match report.verdict {
        Verdict::BitIdentical | Verdict::Comparable => Ok(()),
        // The release is what the user gave; its files not being what its recipe makes is a
        // fault in it (exit 2), not in glassbox.
        Verdict::NotReproduced => Err(crate::invalid!(
            "{} was not reproduced: {} (see above)",
            args.dir.display(),
            report.cause()
        )),
    }
}
