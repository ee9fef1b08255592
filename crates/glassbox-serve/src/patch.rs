//! `POST /api/models/{id}/patch`: activation / attribution patching with its progress
//! streamed as server-sent events, cancelled when the client goes away.
//!
//! The request is checked first, in the model's turn (prompt lengths, answer tokens): what is
//! wrong with it is a 400 like any other request's. Then the stream starts: `progress`
//! events (`{done, total}`, at most every tenth of a second), and `result` — the document
//! `glassbox patch --json` prints — or `error`.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::Stream;
use glassbox_analysis::patching::{self, Methods, PatchReport, PatchTarget};
use glassbox_analysis::predictions::single_token;
use serde::Deserialize;
use serde_json::json;

use crate::api::{path_of, tokens_of, with_model, Shared, MAX_PROMPT_CHARS, MAX_TOKENS};
use crate::{work, ApiError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    clean: String,
    corrupt: String,
    answer: String,
    wrong: String,
    #[serde(default = "default_what")]
    what: String,
    #[serde(default = "default_method")]
    method: String,
}

fn default_what() -> String {
    "resid_pre".into()
}

fn default_method() -> String {
    "activation".into()
}

/// Progress events no closer together than this.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

pub async fn run(
    axum::extract::State(state): Shared,
    Path(id): Path<usize>,
    Json(req): Json<PatchRequest>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let what = PatchTarget::parse(&req.what).ok_or_else(|| {
        ApiError::bad_request(format!(
            "what {:?}: expected resid_pre, attn_out, mlp_out or heads",
            req.what
        ))
    })?;
    let methods = Methods::parse(&req.method).ok_or_else(|| {
        ApiError::bad_request(format!(
            "method {:?}: expected activation, attribution or both",
            req.method
        ))
    })?;
    for (name, text) in [("clean", &req.clean), ("corrupt", &req.corrupt)] {
        if text.is_empty() || text.chars().count() > MAX_PROMPT_CHARS {
            return Err(ApiError::bad_request(format!(
                "the {name} prompt must be 1–{MAX_PROMPT_CHARS} characters"
            )));
        }
    }
    // What the request gets wrong is a 400, found before the stream starts.
    let req = Arc::new(req);
    let checked = Arc::clone(&req);
    let total = with_model(Arc::clone(&state), id, move |_, model| {
        let clean = tokens_of(model, &checked.clean, MAX_TOKENS)?;
        let corrupt = tokens_of(model, &checked.corrupt, MAX_TOKENS)?;
        if clean.len() != corrupt.len() {
            return Err(ApiError::bad_request(format!(
                "the clean prompt is {} tokens and the corrupted one {}: patching needs prompts of equal token length",
                clean.len(),
                corrupt.len()
            )));
        }
        single_token(model, &checked.answer, "the answer")?;
        single_token(model, &checked.wrong, "the wrong answer")?;
        Ok(if methods == Methods::Attribution {
            0
        } else {
            PatchReport::sites(model, what, clean.len())
        })
    })
    .await?;

    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let outcome = match state.served.get(id) {
            Ok(entry) => match entry.turn().await {
                Ok(turn) => {
                    let sender = tx.clone();
                    work::on_pool(turn, move || {
                        let entry = state.served.get(id)?;
                        let model = entry.model()?;
                        let (mut done, mut last) = (0usize, Instant::now());
                        let report = patching::patch_prompts(
                            &model,
                            &req.clean,
                            &req.corrupt,
                            &req.answer,
                            &req.wrong,
                            what,
                            methods,
                            || {
                                done += 1;
                                if sender.is_closed() {
                                    return ControlFlow::Break(());
                                }
                                if done == total || last.elapsed() >= PROGRESS_EVERY {
                                    last = Instant::now();
                                    let event = Event::default()
                                        .event("progress")
                                        .data(json!({"done": done, "total": total}).to_string());
                                    // A full channel (a slow reader) skips this report.
                                    let _ = sender.try_send(event);
                                }
                                ControlFlow::Continue(())
                            },
                        )?;
                        Ok(patching::patch_document(
                            &path_of(entry),
                            &req.clean,
                            &req.corrupt,
                            &report,
                        )?)
                    })
                    .await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let event = match outcome {
            Ok(doc) => Event::default().event("result").data(doc.to_string()),
            Err(e) => Event::default()
                .event("error")
                .data(json!({"error": e.message}).to_string()),
        };
        let _ = tx.send(event).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
