//! `glassbox tour` — PLACEHOLDER: replaced by the issue that builds it.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    Err(crate::invalid!("`glassbox tour` is not built yet"))
}
