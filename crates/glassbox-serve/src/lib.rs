//! `glassbox serve`: the web workbench. An axum server over the same library calls as the
//! CLI's `--json` output, so a number on a page is the number the CLI prints.
//!
//! - [`served`]: the models named at start — the only things a request can open (by index,
//!   never by path);
//! - [`access`]: loopback by default; any other bind only with the token printed at start;
//! - [`api`]: the JSON API under `/api/` (documented at `GET /api`), which the pages use;
//! - `features`: an SAE's feature dashboards and the features active on a prompt;
//! - `streamed`: patching and ablation, their progress streamed as server-sent events;
//! - [`work`]: model computations off the request threads, on the kernels' pool, one at a
//!   time per model;
//! - [`assets`]: the pages, embedded in the binary (no CDN, no network, no build step).

pub mod access;
pub mod api;
mod assets;
mod error;
mod extract;
mod features;
pub mod served;
mod streamed;
mod work;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

pub use error::{ApiError, ServeError};

/// What `glassbox serve` was asked to do.
#[derive(Clone, Debug)]
pub struct Config {
    /// Models (Hub folders, safetensors or GGUF files) to serve, in order.
    pub models: Vec<PathBuf>,
    pub host: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Whose arithmetic GGUF models follow (`None`: llama.cpp's for quantized files).
    pub numerics: Option<glassbox_models::Numerics>,
    /// A sparse autoencoder of the first model, for the features pages.
    pub sae: Option<served::SaeSource>,
}

/// A server bound to its address, not yet serving.
pub struct Bound {
    listener: tokio::net::TcpListener,
    runtime: tokio::runtime::Runtime,
    state: Arc<api::State>,
    /// Where to point a browser (with the token when one is needed).
    pub url: String,
    pub addr: SocketAddr,
    /// Notes for the user at start (see [`served::Served::notes`]).
    pub notes: Vec<String>,
}

/// Opens every model's file table (a bad path fails here, before anything is served) and
/// binds the address.
pub fn bind(config: &Config) -> Result<Bound, ServeError> {
    let served = served::Served::open(&config.models, config.numerics, config.sae.as_ref())?;
    let access = access::Access::for_host(config.host);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind((config.host, config.port)))
        .map_err(|source| ServeError::Bind {
            addr: SocketAddr::new(config.host, config.port),
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Runtime)?;
    let access = access.bound_to(addr);
    let url = access.url(addr);
    let notes = served.notes();
    Ok(Bound {
        listener,
        runtime,
        state: Arc::new(api::State::new(served, access)),
        url,
        addr,
        notes,
    })
}

impl Bound {
    /// Serves until the process is interrupted.
    pub fn serve(self) -> Result<(), ServeError> {
        let app = api::router(self.state);
        self.runtime.block_on(async move {
            axum::serve(self.listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .map_err(ServeError::Runtime)
        })
    }
}
