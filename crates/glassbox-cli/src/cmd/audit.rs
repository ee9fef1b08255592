//! `glassbox audit` — openness audit of a release: a snapshot directory, a MOT model file
//! or a model id from the built-in registry. The work is in `glassbox-audit`.

use std::path::PathBuf;

use anyhow::Context;
use glassbox_audit::{registry, render};

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory, a MOT model file (*.yml), or a registry model id
    /// (e.g. meta-llama/Llama-3.1-8B).
    #[arg(required_unless_present = "list")]
    pub target: Option<String>,
    /// List the releases in the built-in registry.
    #[arg(long)]
    pub list: bool,
    /// Print the report as JSON.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the report as Markdown.
    #[arg(long)]
    pub markdown: bool,
    /// Also write a self-contained HTML report to this file.
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// Also write an SVG badge with the tier to this file.
    #[arg(long, value_name = "FILE.svg")]
    pub badge: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.list {
        return list(args.json);
    }
    let target = args.target.as_deref().unwrap_or_default();
    // A release folder or file (a registry name is no path and is skipped).
    let inputs = [std::path::Path::new(target)];
    if let Some(path) = &args.html {
        crate::output::check(path, "--html", &inputs)?;
    }
    if let Some(path) = &args.badge {
        crate::output::check(path, "--badge", &inputs)?;
    }
    let audit =
        glassbox_audit::audit_target(target).with_context(|| format!("auditing {target}"))?;
    if let Some(path) = &args.html {
        glassbox_audit::write_atomic(path, &render::html(&audit))?;
    }
    if let Some(path) = &args.badge {
        glassbox_audit::write_atomic(path, &render::badge(&audit))?;
    }
    let out = if args.json {
        render::json(&audit)
    } else if args.markdown {
        render::markdown(&audit)
    } else {
        render::text(&audit)
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn list(json: bool) -> anyhow::Result<()> {
    let entries = registry::entries();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&registry::list_document())?
        );
        return Ok(());
    }
    println!(
        "{:<36} {:<13} {:<42} VERSION",
        "MODEL ID", "TIER", "WEIGHTS LICENCE"
    );
    for e in entries {
        let a = e.release().audit();
        let lic = a
            .weights_license
            .as_ref()
            .map(|l| l.display())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<36} {:<13} {:<42} {}",
            e.id,
            a.tier.label(),
            lic,
            e.version
        );
    }
    println!(
        "\n{} releases; facts with sources and dates: `glassbox audit <id>`.",
        entries.len()
    );
    Ok(())
}
