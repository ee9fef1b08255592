//! The served set: the models named at start, each addressed by its index. No request
//! carries a path; a tensor is found by its name in the model's own table.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use glassbox_formats::Checkpoint;
use glassbox_models::{HookedModel, LoadOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ApiError, ServeError};

/// Requests that may wait for one model's computation before more are turned away (503).
pub const MAX_QUEUED: usize = 256;

pub struct Served {
    pub entries: Vec<Entry>,
}

/// How served models are loaded: the CLI's defaults (f32 weights and activations on the CPU),
/// with its `--numerics` choice.
fn load_options(numerics: Option<glassbox_models::Numerics>) -> LoadOptions {
    LoadOptions {
        numerics,
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
    /// Loaded on first use, then kept.
    model: Mutex<Option<Arc<HookedModel>>>,
    options: LoadOptions,
    /// One computation at a time per model: activations of one forward pass at most.
    turn: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl Served {
    /// Opens each model's file table; a path that is missing or unreadable stops the start.
    pub fn open(
        paths: &[PathBuf],
        numerics: Option<glassbox_models::Numerics>,
    ) -> Result<Served, ServeError> {
        if paths.is_empty() {
            return Err(ServeError::Nothing);
        }
        let entries = paths
            .iter()
            .enumerate()
            .map(|(id, path)| {
                let model_error = |message: String| ServeError::Model {
                    path: path.clone(),
                    message,
                };
                if !path.exists() {
                    return Err(model_error("no such file or directory".into()));
                }
                let checkpoint = match Checkpoint::open(path) {
                    Ok(ck) => Some(ck),
                    // A release folder is served for its audit even without weights.
                    Err(_) if path.is_dir() => None,
                    Err(e) => return Err(model_error(e.to_string())),
                };
                Ok(Entry {
                    id,
                    path: path.clone(),
                    checkpoint,
                    model: Mutex::new(None),
                    options: load_options(numerics),
                    turn: Arc::new(Semaphore::new(1)),
                    queued: AtomicUsize::new(0),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Served { entries })
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
        if self.queued.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                message: format!("{MAX_QUEUED} requests already wait for this model; try again"),
            });
        }
        let permit = Arc::clone(&self.turn).acquire_owned().await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| ApiError::internal("the server is shutting down"))
    }
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
