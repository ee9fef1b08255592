//! `glassbox serve MODEL… [--host H] [--port P] [--sae DIR (--sae-text F | --sae-tokens F)]` —
//! the web workbench: models and tensors, a prompt explorer, patching and ablation, diff,
//! drift, audit, and with `--sae` the first model's feature pages, over the JSON API
//! documented at `GET /api`. Loopback only unless `--host` names another address, and then
//! only with the token printed at start.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Models to serve: Hub snapshot folders, safetensors or GGUF files. Only these can be
    /// opened from the pages.
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    /// Address to listen on. Any but loopback needs the token printed at start.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0: any free one; the URL printed says which).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A sparse autoencoder of the first model (SAELens's format), for the features pages.
    #[arg(long, value_name = "DIR")]
    pub sae: Option<PathBuf>,
    /// The text the SAE's feature dashboards are read over.
    #[arg(
        long,
        value_name = "FILE",
        requires = "sae",
        conflicts_with = "sae_tokens"
    )]
    pub sae_text: Option<PathBuf>,
    /// Token rows [sequences, positions] in a safetensors file, instead of --sae-text.
    #[arg(long, value_name = "F.safetensors", requires = "sae")]
    pub sae_tokens: Option<PathBuf>,
    /// The longest one request's computation may run, in seconds; past it, it is stopped and
    /// answered with 503 (0: no limit). A computation whose client goes away stops at once.
    #[arg(long, value_name = "SECONDS", default_value_t = glassbox_serve::work::DEFAULT_TIME_LIMIT.as_secs(), value_parser = clap::value_parser!(u64).range(0..=7 * 24 * 3600))]
    pub time_limit: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = glassbox_serve::Config {
        models: args.models,
        host: args.host,
        port: args.port,
        numerics: crate::model_cli::numerics(),
        kv_cache: crate::model_cli::kv_cache(),
        sae: args.sae.map(|dir| glassbox_serve::served::SaeSource {
            dir,
            text: args.sae_text,
            tokens: args.sae_tokens,
        }),
        time_limit: (args.time_limit > 0).then(|| std::time::Duration::from_secs(args.time_limit)),
    };
    let bound = glassbox_serve::bind(&config)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "glassbox serve: {} model{} at {}",
        config.models.len(),
        if config.models.len() == 1 { "" } else { "s" },
        bound.url
    )?;
    out.flush()?;
    drop(out);
    for note in &bound.notes {
        eprintln!("note: {note}");
    }
    if !args.host.is_loopback() {
        eprintln!("not loopback: every request needs the token in that URL");
    }
    Ok(bound.serve()?)
}
