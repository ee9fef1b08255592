//! The long computations — `POST /api/models/{id}/patch` (activation / attribution patching)
//! and `POST /api/models/{id}/ablate` — with their progress streamed as server-sent events,
//! cancelled when the client goes away.
//!
//! The request is checked first, in the model's turn (prompt lengths, tokens, targets): what
//! is wrong with it is a 400 like any other request's. Then the stream starts: `progress`
//! events (`{done, total}`, at most every tenth of a second), and `result` — the document the
//! CLI's `--json` prints — or `error`.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::extract::{Body, Params};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use glassbox_analysis::ablation::{self, AblationMethod};
use glassbox_analysis::patching::{self, Methods, PatchReport, PatchTarget};
use glassbox_analysis::predictions::single_token;
use glassbox_models::HookedModel;
use serde::Deserialize;
use serde_json::json;

use crate::api::{
    path_of, tokens_of, with_model, within_limit, Shared, State, MAX_PROMPT_CHARS, MAX_TOKENS,
};
use crate::served::Entry;
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
    Params(id): Params<usize>,
    Body(req): Body<PatchRequest>,
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

    Ok(stream(state, id, total, move |entry, model, progress| {
        let report = patching::patch_prompts(
            model,
            &req.clean,
            &req.corrupt,
            &req.answer,
            &req.wrong,
            what,
            methods,
            progress,
        )?;
        Ok(patching::patch_document(
            &path_of(entry),
            &req.clean,
            &req.corrupt,
            &report,
        )?)
    }))
}

/// Runs `job` on model `id` in its turn, streaming its progress (`total` steps) and its
/// document as server-sent events; the client going away stops it at its next hook point, and
/// the server's time limit with an `error` event.
fn stream<F>(
    state: Arc<State>,
    id: usize,
    total: usize,
    job: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce(
            &Entry,
            &HookedModel,
            &mut dyn FnMut() -> ControlFlow<()>,
        ) -> Result<serde_json::Value, ApiError>
        + Send
        + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let sender = tx.clone();
        let limit = state.time_limit;
        let computation = async move {
            match state.served.get(id) {
                Ok(entry) => match entry.turn().await {
                    Ok(turn) => {
                        work::on_pool(turn, limit, move || {
                            let entry = state.served.get(id)?;
                            let model = entry.model()?;
                            let (mut done, mut last) = (0usize, Instant::now());
                            let mut progress = || {
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
                            };
                            job(entry, &model, &mut progress)
                        })
                        .await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        };
        // The client going away drops the computation, which stops it at its next hook point
        // (not only at its next step).
        let outcome = tokio::select! {
            outcome = computation => outcome,
            _ = tx.closed() => return,
        };
        let event = match outcome {
            Ok(doc) => Event::default().event("result").data(doc.to_string()),
            Err(e) => Event::default()
                .event("error")
                .data(json!({"error": e.message}).to_string()),
        };
        let _ = tx.send(event).await;
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblateRequest {
    text: String,
    targets: Vec<String>,
    #[serde(default = "default_ablation")]
    method: String,
    #[serde(default)]
    reference: Vec<String>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    each: bool,
}

fn default_ablation() -> String {
    "zero".into()
}

/// Most targets and reference prompts an ablation request may name.
const MAX_TARGETS: usize = 4096;
const MAX_REFERENCES: usize = 64;
/// Most forward passes one ablation request may take: the caps above multiply (every target
/// resampled from every reference prompt), and the model serves one request at a time.
const MAX_FORWARD_PASSES: usize = 16_384;

pub async fn ablate(
    axum::extract::State(state): Shared,
    Params(id): Params<usize>,
    Body(req): Body<AblateRequest>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let method = ablation::parse_method(&req.method, req.seed)?;
    if req.targets.is_empty()
        || req.targets.len() > MAX_TARGETS
        || req.reference.len() > MAX_REFERENCES
    {
        return Err(ApiError::bad_request(format!(
            "name 1–{MAX_TARGETS} targets and at most {MAX_REFERENCES} reference prompts"
        )));
    }
    if method != AblationMethod::Zero && req.reference.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} ablation needs reference prompts",
            req.method
        )));
    }
    for text in std::iter::once(&req.text).chain(&req.reference) {
        if text.is_empty() || text.chars().count() > MAX_PROMPT_CHARS {
            return Err(ApiError::bad_request(format!(
                "texts must be 1–{MAX_PROMPT_CHARS} characters"
            )));
        }
    }
    let req = Arc::new(req);
    let checked = Arc::clone(&req);
    let (total, inputs) = with_model(Arc::clone(&state), id, move |_, model| {
        // Everything the ablation would refuse is refused now, as a 400, not after a 200;
        // the run then starts from these checked inputs (the texts tokenized once).
        let inputs = ablation::AblationInputs::check(
            model,
            &checked.text,
            &checked.targets,
            method,
            &checked.reference,
            // `heads` names every head: the cap is on the targets it expands to
            MAX_TARGETS,
        )?;
        for ids in std::iter::once(&inputs.ids).chain(&inputs.reference) {
            within_limit(model, ids, MAX_TOKENS)?;
        }
        let passes = inputs.forward_passes(method, checked.each);
        if passes > MAX_FORWARD_PASSES {
            return Err(ApiError::bad_request(format!(
                "this ablation takes {passes} forward passes; at most {MAX_FORWARD_PASSES} at once (name fewer targets or reference prompts, or ablate them together)"
            )));
        }
        let total = if checked.each {
            inputs.targets.len()
        } else {
            1
        };
        Ok((total, inputs))
    })
    .await?;
    Ok(stream(state, id, total, move |entry, model, progress| {
        let report = inputs.ablate(model, method, req.each, progress)?;
        Ok(ablation::document(
            &path_of(entry),
            &req.text,
            req.each,
            &report,
        ))
    }))
}
