//! The served set: the models named at start, each addressed by its index. No request
//! carries a path; a tensor is found by its name in the model's own table.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use glassbox_formats::Checkpoint;
use glassbox_models::{HookedModel, LoadOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ApiError, ServeError};

/// A sparse autoencoder (SAELens's format) of the first served model, and the corpus its
/// feature dashboards are read over (text, or token rows in safetensors), named at start.
#[derive(Clone, Debug)]
pub struct SaeSource {
    pub dir: PathBuf,
    pub text: Option<PathBuf>,
    pub tokens: Option<PathBuf>,
}

/// A loaded SAE with its corpus.
pub struct ServedSae {
    pub sae: glassbox_features::Sae,
    pub source: SaeSource,
}

/// Requests that may wait for one model's computation before more are turned away (503).
pub const MAX_QUEUED: usize = 256;

pub struct Served {
    pub entries: Vec<Entry>,
}

/// How served models are loaded: the CLI's defaults (f32 weights and activations on the CPU),
/// with its `--numerics` and `--kv-cache` choices.
fn load_options(
    numerics: Option<glassbox_models::Numerics>,
    kv_cache: Option<glassbox_models::KvCacheType>,
) -> LoadOptions {
    LoadOptions {
        numerics,
        kv_cache,
        ..LoadOptions::default()
    }
}

/// One served model.
pub struct Entry {
    pub id: usize,
    /// The path as given at start (what the CLI's `--json` reports as `model` / `path`).
    pub path: PathBuf,
    /// `None` for a release folder without weights (served for its audit only).
    checkpoint: Option<Checkpoint>,
    /// Why a folder has no weights to serve (none, or none that could be read).
    pub no_weights: Option<String>,
    /// The prompts its model card offers (the pages' defaults), read at start.
    pub examples: Vec<glassbox_audit::card::Example>,
    /// A fingerprint of its `tokenizer.json` (the first 16 hex digits of its SHA-256), read
    /// at start: models with the same one tokenize alike, so a checkpoint without a card can
    /// offer its release's prompts. None for a single file or a folder without one.
    pub tokenizer: Option<String>,
    /// Loaded on first use, then kept.
    model: Mutex<Option<Arc<HookedModel>>>,
    options: LoadOptions,
    /// The first model's SAE, if one was given.
    pub sae: Option<ServedSae>,
    /// One computation at a time per model: activations of one forward pass at most.
    turn: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl Served {
    /// Opens each model's file table; a path that is missing or unreadable stops the start.
    pub fn open(
        paths: &[PathBuf],
        numerics: Option<glassbox_models::Numerics>,
        kv_cache: Option<glassbox_models::KvCacheType>,
        sae: Option<&SaeSource>,
    ) -> Result<Served, ServeError> {
        if paths.is_empty() {
            return Err(ServeError::Nothing);
        }
        let sae = sae.map(open_sae).transpose()?;
        let mut sae = sae.into_iter();
        let entries = paths
            .iter()
            .enumerate()
            .map(|(id, path)| {
                let model_error = |message: String| ServeError::Model {
                    path: path.clone(),
                    message,
                };
                // A link that loops or leads nowhere is named as such, not as absent.
                if !glassbox_formats::input::present(path)? {
                    return Err(model_error("no such file or directory".into()));
                }
                // A release folder is served for its audit even without weights (none, or
                // weights that cannot be read: said at start).
                let (checkpoint, no_weights) = match Checkpoint::open(path) {
                    Ok(ck) if ck.tensors().is_empty() && path.is_dir() => {
                        (None, Some("the folder holds no weights".to_string()))
                    }
                    Ok(ck) => (Some(ck), None),
                    Err(e) if path.is_dir() => (None, Some(glassbox_formats::error::describe(&e))),
                    Err(e) => return Err(e.into()),
                };
                Ok(Entry {
                    id,
                    path: path.clone(),
                    checkpoint,
                    no_weights,
                    examples: if path.is_dir() {
                        glassbox_audit::card::examples(path)
                    } else {
                        Vec::new()
                    },
                    tokenizer: tokenizer_fingerprint(path),
                    model: Mutex::new(None),
                    options: load_options(numerics, kv_cache),
                    sae: if id == 0 { sae.next() } else { None },
                    turn: Arc::new(Semaphore::new(1)),
                    queued: AtomicUsize::new(0),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Served { entries })
    }

    /// What the user should know at start: the folders served for their audit only, and why.
    pub fn notes(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| {
                let why = e.no_weights.as_ref()?;
                Some(format!(
                    "{}: served for its audit only ({why})",
                    e.path.display()
                ))
            })
            .collect()
    }

    pub fn get(&self, id: usize) -> Result<&Entry, ApiError> {
        self.entries.get(id).ok_or_else(|| {
            ApiError::not_found(format!(
                "no model {id}: this server serves {} (ids 0–{})",
                self.entries.len(),
                self.entries.len() - 1
            ))
        })
    }
}

impl Entry {
    /// The checkpoint's table, or a 400 for a release folder without weights.
    pub fn checkpoint(&self) -> Result<&Checkpoint, ApiError> {
        self.checkpoint.as_ref().ok_or_else(|| {
            ApiError::bad_request(format!(
                "{} holds no weights glassbox reads: only its audit is served",
                self.name()
            ))
        })
    }

    pub fn has_weights(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// A release folder (auditable), as opposed to a single weights file.
    pub fn is_release(&self) -> bool {
        self.path.is_dir()
    }

    /// The file name, for display.
    pub fn name(&self) -> String {
        display_name(&self.path)
    }

    /// The model, loaded on first use (the CLI's defaults: f32, llama.cpp's numerics for a
    /// quantized GGUF). Called on the pool, inside this model's turn.
    pub fn model(&self) -> Result<Arc<HookedModel>, ApiError> {
        let mut slot = self.model.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = slot.as_ref() {
            return Ok(Arc::clone(m));
        }
        self.checkpoint()?;
        let model = HookedModel::load(&self.path, &self.options)
            .map_err(|e| ApiError::bad_request(format!("loading {}: {e}", self.path.display())))?;
        let model = Arc::new(model);
        *slot = Some(Arc::clone(&model));
        Ok(model)
    }

    /// Waits for this model's turn; refuses when too many requests already wait.
    pub async fn turn(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        // The place in the queue is given back when the wait ends, however it ends: a client
        // that disconnects drops this future mid-wait, and a count decremented only after the
        // wait would keep its place forever (enough of them lock the model out).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let waiting = Waiting(&self.queued);
        if self.queued.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
            return Err(ApiError {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                message: format!("{MAX_QUEUED} requests already wait for this model; try again"),
            });
        }
        let permit = Arc::clone(&self.turn).acquire_owned().await;
        drop(waiting);
        permit.map_err(|_| ApiError::internal("the server is shutting down"))
    }
}

/// Largest `tokenizer.json` fingerprinted (a larger one gets none; vocabularies of 256k
/// tokens take some tens of MB).
const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

/// See [`Entry::tokenizer`].
fn tokenizer_fingerprint(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    // a FIFO would block the open itself: only a regular file (links followed) is opened
    let tokenizer = path.join("tokenizer.json");
    if !std::fs::metadata(&tokenizer).ok()?.is_file() {
        return None;
    }
    let file = std::fs::File::open(&tokenizer).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKENIZER_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_TOKENIZER_BYTES {
        return None;
    }
    let digest = Sha256::digest(&bytes);
    Some(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

fn open_sae(source: &SaeSource) -> Result<ServedSae, ServeError> {
    let sae_error = |path: &Path, message: String| ServeError::Model {
        path: path.to_path_buf(),
        message,
    };
    for path in [
        Some(&source.dir),
        source.text.as_ref(),
        source.tokens.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if !path.exists() {
            return Err(sae_error(path, "no such file or directory".into()));
        }
    }
    let sae = glassbox_features::Sae::load(&source.dir)
        .map_err(|e| sae_error(&source.dir, format!("loading the SAE: {e}")))?;
    Ok(ServedSae {
        sae,
        source: source.clone(),
    })
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// A client that gives up while waiting (its request future dropped mid-wait) gives its
    /// place in the queue back: more of them than the queue holds do not lock the model out.
    #[test]
    fn abandoned_waits_give_their_place_back() {
        let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/reference");
        let served = Served::open(&[reference], None, None, None).unwrap();
        let entry = served.get(0).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let mut first = Box::pin(entry.turn());
        let Poll::Ready(Ok(held)) = first.as_mut().poll(&mut cx) else {
            panic!("the first request gets the model's turn at once");
        };
        for _ in 0..MAX_QUEUED + 10 {
            let mut waiting = Box::pin(entry.turn());
            assert!(
                waiting.as_mut().poll(&mut cx).is_pending(),
                "it waits its turn"
            );
        }
        assert_eq!(entry.queued.load(Ordering::Acquire), 0);
        drop(held);
        let mut next = Box::pin(entry.turn());
        assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
    }
}
