//! `glassbox serve MODEL… [--host H] [--port P]` — the web workbench: pages for the models
//! given (architecture, tensors, statistics) and a prompt explorer (predictions, attention,
//! logit lens), over the JSON API documented at `GET /api`. Loopback only unless `--host`
//! names another address, and then only with the token printed at start.

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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = glassbox_serve::Config {
        models: args.models,
        host: args.host,
        port: args.port,
        numerics: crate::model_cli::numerics(),
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
    if !args.host.is_loopback() {
        eprintln!("not loopback: every request needs the token in that URL");
    }
    Ok(bound.serve()?)
}
