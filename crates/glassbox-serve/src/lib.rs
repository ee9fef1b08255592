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
//!   time per model, stopped when their client leaves or their time limit passes;
//! - [`assets`]: the pages, embedded in the binary (no CDN, no network, no build step).

pub mod access;
pub mod api;
mod assets;
mod error;
mod extract;
mod features;
pub mod served;
mod streamed;
pub mod work;

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
    /// The `--kv-cache` choice (`None`: the loader's default for the numerics).
    pub kv_cache: Option<glassbox_models::KvCacheType>,
    /// A sparse autoencoder of the first model, for the features pages.
    pub sae: Option<served::SaeSource>,
    /// How long one request's computation may run before it is stopped (`None`: no limit).
    pub time_limit: Option<std::time::Duration>,
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
    let served = served::Served::open(
        &config.models,
        config.numerics,
        config.kv_cache,
        config.sae.as_ref(),
    )?;
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
        state: Arc::new(api::State::new(served, access, config.time_limit)),
        url,
        addr,
        notes,
    })
}

/// How long a client has to send a request's headers, on a new connection or an idle kept-alive
/// one: clients that connect and stay silent held a file descriptor each, and a thousand of them
/// locked everyone out.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connections served at once; one past it is answered 503 and closed (the requests they carry
/// are limited on their own, by each model's queue).
pub const MAX_CONNECTIONS: usize = 256;

/// Connections one client address may hold at once, unless it is this machine: one host on the
/// network could otherwise take every connection (silent ones for [`HEADER_TIMEOUT`] each,
/// slow bodies for `api::BODY_TIMEOUT`) and lock the others out.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 32;

/// The open connections by client address (loopback ones not counted).
#[derive(Clone, Default)]
struct Clients(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

/// One connection counted for its client until dropped.
struct ClientSlot {
    clients: Clients,
    ip: std::net::IpAddr,
}

impl Clients {
    fn admit(&self, peer: SocketAddr) -> Result<Option<ClientSlot>, ()> {
        // an IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d
        let ip = peer.ip().to_canonical();
        if ip.is_loopback() {
            return Ok(None);
        }
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= MAX_CONNECTIONS_PER_CLIENT {
            return Err(());
        }
        *n += 1;
        Ok(Some(ClientSlot {
            clients: self.clone(),
            ip,
        }))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Answers a connection the server will not serve, and closes it: a 503 the client can show,
/// not a reset (written within a second, or not at all).
fn turn_away(mut stream: tokio::net::TcpStream, why: &'static str) {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let body = format!("{{\"error\":\"{why}\"}}");
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer_and_drain = async {
            use tokio::io::AsyncReadExt;
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            // closing with the request unread would send a reset, which can discard the 503
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), answer_and_drain).await;
    });
}

impl Bound {
    /// Serves until the process is interrupted: one task per connection (HTTP/1.1), each with
    /// [`HEADER_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once and
    /// [`MAX_CONNECTIONS_PER_CLIENT`] from one address elsewhere.
    pub fn serve(self) -> Result<(), ServeError> {
        let app = api::router(self.state);
        let listener = self.listener;
        self.runtime.block_on(async move {
            let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            let clients = Clients::default();
            let interrupted = tokio::signal::ctrl_c();
            tokio::pin!(interrupted);
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        // out of descriptors, or a connection reset before it was taken:
                        // the listener itself is fine, after a breath
                        Err(_) => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            continue;
                        }
                    },
                    _ = &mut interrupted => return Ok(()),
                };
                let Ok(client) = clients.admit(peer) else {
                    turn_away(
                        stream,
                        "this client has too many connections open to this server",
                    );
                    continue;
                };
                let Ok(slot) = Arc::clone(&open).try_acquire_owned() else {
                    turn_away(
                        stream,
                        "this server has too many connections open; try again",
                    );
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let mut http = hyper::server::conn::http1::Builder::new();
                    http.timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT);
                    let io = hyper_util::rt::TokioIo::new(stream);
                    // a client that goes away mid-answer ends its connection, nothing more
                    let _ = http.serve_connection(io, service).with_upgrades().await;
                    drop((slot, client));
                });
            }
        })
    }
}
