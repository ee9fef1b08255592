//! The JSON API under `/api/`, which the pages use. Each answer is the document the CLI's
//! `--json` prints for the same request, built by the same library call:
//!
//! | request | CLI |
//! |---|---|
//! | `GET /api/models` | `glassbox inspect PATH --json` for each model, without its tensor table, plus `id` |
//! | `GET /api/models/{id}` | `glassbox inspect PATH --json` |
//! | `GET /api/models/{id}/tensors/{name}?bins=N` | `glassbox inspect PATH --tensor NAME --stats --hist N --json` |
//! | `POST /api/models/{id}/predictions` `{prompt, top_k}` | `glassbox run PATH --prompt P --top-k K --all-positions --json` |
//! | `POST /api/models/{id}/lens` `{prompt, top_k, target}` | `glassbox lens PATH --prompt P --top K [--target T] --json` |
//! | `POST /api/models/{id}/attention` `{prompt}` | every `blocks.L.attn.hook_pattern` of `glassbox trace` |
//! | `POST /api/models/{id}/attribute` `{prompt, target, versus, position}` | `glassbox attribute PATH --prompt P --target T [--versus V] [--position N] --json` |
//! | `POST /api/models/{id}/heads` `{seq_len, batch, seed, top}` | `glassbox heads PATH [--seq-len N --batch B --seed S --top K] --json` |
//! | `POST /api/models/{id}/experts` `{prompt}` | `glassbox experts PATH --prompt P --json` |
//! | `GET /api/models/{id}/sae` | the SAE served with the model: hook, width, corpus |
//! | `GET /api/models/{id}/features?features=3,17&top=N` | `glassbox features PATH --sae DIR (--text F \| --tokens F) [--features …] [--top N] --json`, plus `token_text` |
//! | `POST /api/models/{id}/features/active` `{prompt, top_k}` | per position the top `hook_sae_acts_post` values of `glassbox trace --sae DIR` |
//! | `GET /api/models/{id}/audit` (a release folder) | `glassbox audit PATH --json` |
//! | `GET /api/diff/{a}/{b}?top=N` | `glassbox diff A B [--top N] --json` |
//! | `POST /api/drift/{a}/{b}` `{prompts, top}` | `glassbox drift A B --prompts FILE [--top N] --json` (`input` names the request) |
//! | `GET /api/registry` | `glassbox audit --list --json` |
//! | `GET /api/registry/{model id}` | `glassbox audit ID --json` (registry ids only: never a path) |
//! | `POST /api/models/{id}/patch` `{clean, corrupt, answer, wrong, what, method}` | `glassbox patch PATH … --json`, streamed (below) |
//! | `POST /api/models/{id}/ablate` `{text, targets, method, reference, seed, each}` | `glassbox ablate PATH --text T --target … --json`, streamed |
//!
//! `patch` and `ablate` answer with server-sent events: `progress` (`{done, total}`) while
//! they run, then `result` (the CLI's document) or `error` (`{error}`).
//!
//! Closing the connection stops a request's computation at its next hook point; one that runs
//! past the server's time limit (`--time-limit`, 300 s by default) is stopped and answered
//! with 503 (an `error` event when streamed). Reading tensors (`diff`, a tensor's statistics)
//! is not stopped mid-way: its answer comes at the limit, the reading ends on its own.
//!
//! Errors are `{"error": "…"}` with a 4xx status for what the request got wrong.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, State as AxumState};

use crate::extract::{Body, Params, Query};
use axum::routing::{get, post};
use axum::{Json, Router};
use glassbox_analysis::{attribution, drift, heads, lens, predictions, routing};
use glassbox_formats::{diff, report, stats};
use glassbox_models::{HookedModel, NameFilter};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::Access;
use crate::served::{Entry, Served};
use crate::{assets, work, ApiError};

/// Largest request body accepted (bytes).
pub const MAX_BODY: usize = 64 * 1024;
/// Longest prompt accepted (characters) and most tokens it may make.
pub const MAX_PROMPT_CHARS: usize = 8 * 1024;
pub const MAX_TOKENS: usize = 512;
/// Attention patterns grow with the square of the prompt: fewer tokens there.
pub const MAX_ATTENTION_TOKENS: usize = 128;
/// Most attention weights one answer holds (layers × heads × tokens²): a model with many
/// heads gets fewer tokens than [`MAX_ATTENTION_TOKENS`] (an 80 × 64-head model 57), so that an
/// answer stays within some hundred MB however large the model.
pub const MAX_ATTENTION_WEIGHTS: usize = 1 << 24;

/// The most tokens an attention request may have for a model of `layers` × `heads`.
pub fn attention_tokens(layers: usize, heads: usize) -> usize {
    let per_token_squared = MAX_ATTENTION_WEIGHTS / (layers * heads).max(1);
    MAX_ATTENTION_TOKENS.min(per_token_squared.isqrt()).max(1)
}
/// Most histogram bins and top tokens a request may ask for.
pub const MAX_BINS: usize = 1000;
pub const MAX_TOP: usize = 50;

pub struct State {
    pub served: Served,
    pub access: Access,
    /// How long one request's computation may run (`None`: as long as it takes).
    pub time_limit: Option<std::time::Duration>,
}

impl State {
    pub fn new(served: Served, access: Access, time_limit: Option<std::time::Duration>) -> State {
        State {
            served,
            access,
            time_limit,
        }
    }
}

pub(crate) type Shared = AxumState<Arc<State>>;

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file))
        .route("/api", get(api_index))
        .route("/api/models", get(models))
        .route("/api/models/{id}", get(inspect))
        .route("/api/models/{id}/tensors/{name}", get(tensor))
        .route("/api/models/{id}/predictions", post(predictions_of))
        .route("/api/models/{id}/lens", post(lens_of))
        .route("/api/models/{id}/attention", post(attention_of))
        .route("/api/models/{id}/attribute", post(attribute_of))
        .route("/api/models/{id}/heads", post(heads_of))
        .route("/api/models/{id}/experts", post(experts_of))
        .route("/api/models/{id}/sae", get(crate::features::about))
        .route(
            "/api/models/{id}/features",
            get(crate::features::dashboards),
        )
        .route(
            "/api/models/{id}/features/active",
            post(crate::features::active),
        )
        .route("/api/models/{id}/patch", post(crate::streamed::run))
        .route("/api/models/{id}/ablate", post(crate::streamed::ablate))
        .route("/api/models/{id}/audit", get(audit_of))
        .route("/api/diff/{a}/{b}", get(diff_of))
        .route("/api/drift/{a}/{b}", post(drift_of))
        .route("/api/registry", get(registry_list))
        .route("/api/registry/{*rid}", get(registry_audit))
        .fallback(|| async { ApiError::not_found("no such page or API route (see GET /api)") })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                message: "this route does not take that method (see GET /api)".into(),
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(body_in_time))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::access::check,
        ))
        .with_state(state)
}

/// How long a client has, once its headers are in, to send the whole body: one that trickled
/// a byte now and then held its connection (and, 256 of them, everyone's) for as long as it
/// liked.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request's body whole before any handler sees it: at most [`MAX_BODY`] bytes
/// (413), within [`BODY_TIMEOUT`] (408).
async fn body_in_time(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let fail = |status, message: String| ApiError { status, message }.into_response();
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => fail(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request's body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        ),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => fail(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request's body is over {} KiB", MAX_BODY / 1024),
        ),
        Ok(Err(e)) => fail(
            axum::http::StatusCode::BAD_REQUEST,
            format!("the request's body could not be read: {e}"),
        ),
        Ok(Ok(collected)) => {
            let body = axum::body::Body::from(collected.to_bytes());
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
    }
}

async fn api_index(AxumState(state): Shared) -> Json<Value> {
    Json(json!({
        "routes": [
            {"method": "GET", "path": "/api/models", "cli": "glassbox inspect PATH --json (each model, no tensor table) + id"},
            {"method": "GET", "path": "/api/models/{id}", "cli": "glassbox inspect PATH --json"},
            {"method": "GET", "path": "/api/models/{id}/tensors/{name}?bins=N", "cli": "glassbox inspect PATH --tensor NAME --stats --hist N --json"},
            {"method": "POST", "path": "/api/models/{id}/predictions", "body": {"prompt": "text", "top_k": 5}, "cli": "glassbox run PATH --prompt P --top-k K --all-positions --json"},
            {"method": "POST", "path": "/api/models/{id}/lens", "body": {"prompt": "text", "top_k": 5, "target": "optional token or #id"}, "cli": "glassbox lens PATH --prompt P --top K [--target T] --json"},
            {"method": "POST", "path": "/api/models/{id}/attention", "body": {"prompt": "text"}, "cli": "glassbox trace PATH --prompt P --hooks 'blocks.*.attn.hook_pattern'"},
            {"method": "POST", "path": "/api/models/{id}/attribute", "body": {"prompt": "text", "target": "token or #id", "versus": "optional token or #id", "position": "optional index (default: last)"}, "cli": "glassbox attribute PATH --prompt P --target T [--versus V] [--position N] --json"},
            {"method": "POST", "path": "/api/models/{id}/heads", "body": {"seq_len": 20, "batch": 8, "seed": 0, "top": 0}, "cli": "glassbox heads PATH --seq-len N --batch B --seed S --top K --json"},
            {"method": "POST", "path": "/api/models/{id}/ablate", "body": {"text": "text", "targets": ["L1H0", "L2MLP", "heads"], "method": "zero|mean|resample", "reference": ["texts"], "seed": 0, "each": false}, "cli": "glassbox ablate PATH --text T --target … --method M [--reference R…] [--seed S] [--each] --json", "answer": "text/event-stream, as patch"},
            {"method": "POST", "path": "/api/models/{id}/experts", "body": {"prompt": "text"}, "cli": "glassbox experts PATH --prompt P --json (mixture-of-experts models)"},
            {"method": "GET", "path": "/api/models/{id}/sae", "cli": "the SAE given with --sae: hook, width, corpus"},
            {"method": "GET", "path": "/api/models/{id}/features?features=3,17&top=N", "cli": "glassbox features PATH --sae DIR (--text F | --tokens F) [--features …] [--top N] --json (plus token_text)"},
            {"method": "POST", "path": "/api/models/{id}/features/active", "body": {"prompt": "text", "top_k": 5}, "cli": "glassbox trace PATH --sae DIR --prompt P --hooks '*hook_sae_acts_post' (the top k per position)"},
            {"method": "GET", "path": "/api/models/{id}/audit", "cli": "glassbox audit PATH --json (release folders)"},
            {"method": "GET", "path": "/api/diff/{a}/{b}?top=N", "cli": "glassbox diff A B [--top N] --json"},
            {"method": "POST", "path": "/api/drift/{a}/{b}", "body": {"prompts": "one prompt per line", "top": 15}, "cli": "glassbox drift A B --prompts FILE [--top N] --json (input: \"request\")"},
            {"method": "GET", "path": "/api/registry", "cli": "glassbox audit --list --json"},
            {"method": "GET", "path": "/api/registry/{model id}", "cli": "glassbox audit ID --json"},
            {"method": "POST", "path": "/api/models/{id}/patch", "body": {"clean": "text", "corrupt": "text", "answer": "token or #id", "wrong": "token or #id", "what": "resid_pre|attn_out|mlp_out|heads", "method": "activation|attribution|both"}, "cli": "glassbox patch PATH --clean C --corrupt R --answer A --wrong W --what X --method M --json", "answer": "text/event-stream: progress {done, total}, then result (the CLI's document) or error {error}"},
        ],
        "limits": {
            "body_bytes": MAX_BODY,
            "prompt_chars": MAX_PROMPT_CHARS,
            "prompt_tokens": MAX_TOKENS,
            "attention_tokens": MAX_ATTENTION_TOKENS,
            "attention_weights": MAX_ATTENTION_WEIGHTS,
            "bins": MAX_BINS,
            "top_k": MAX_TOP,
            // one request's computation, seconds (null: no limit)
            "time_limit_s": state.time_limit.map(|d| d.as_secs()),
        },
    }))
}

pub(crate) fn path_of(entry: &Entry) -> String {
    entry.path.display().to_string()
}

async fn models(AxumState(state): Shared) -> Json<Value> {
    let list = state
        .served
        .entries
        .iter()
        .map(|e| {
            let mut doc = match e.checkpoint() {
                Ok(ck) => report::inspect_document(&path_of(e), ck, &[], None, None),
                Err(_) => json!({"path": path_of(e)}),
            };
            if let Some(obj) = doc.as_object_mut() {
                obj.remove("tensors");
                obj.remove("metadata");
                obj.insert("id".into(), json!(e.id));
                obj.insert("name".into(), json!(e.name()));
                obj.insert("weights".into(), json!(e.has_weights()));
                obj.insert("release".into(), json!(e.is_release()));
                obj.insert("tokenizer".into(), json!(e.tokenizer));
                // The card's prompts, the pages' defaults for this model.
                let examples: Vec<Value> = e
                    .examples
                    .iter()
                    .map(|x| json!({"text": x.text, "output": x.output}))
                    .collect();
                obj.insert("examples".into(), Value::Array(examples));
            }
            doc
        })
        .collect();
    Json(Value::Array(list))
}

async fn inspect(
    AxumState(state): Shared,
    Params(id): Params<usize>,
) -> Result<Json<Value>, ApiError> {
    let e = state.served.get(id)?;
    let ck = e.checkpoint()?;
    let tensors: Vec<_> = ck.tensors().iter().collect();
    Ok(Json(report::inspect_document(
        &path_of(e),
        ck,
        &tensors,
        None,
        None,
    )))
}

#[derive(Deserialize)]
struct Bins {
    bins: Option<usize>,
}

async fn tensor(
    AxumState(state): Shared,
    Params((id, name)): Params<(usize, String)>,
    Query(q): Query<Bins>,
) -> Result<Json<Value>, ApiError> {
    let bins = q.bins.unwrap_or(50);
    if bins == 0 || bins > MAX_BINS {
        return Err(ApiError::bad_request(format!(
            "bins must be 1–{MAX_BINS}, not {bins}"
        )));
    }
    let e = state.served.get(id)?;
    if e.checkpoint()?.info(&name).is_none() {
        return Err(ApiError::not_found(format!(
            "{} has no tensor named `{name}`",
            e.name()
        )));
    }
    let turn = e.turn().await?;
    let state = Arc::clone(&state);
    work::on_pool(turn, state.time_limit, move || {
        let e = state.served.get(id)?;
        let ck = e.checkpoint()?;
        let info = ck.info(&name).expect("checked above");
        let start = Instant::now();
        let per_tensor = stats::checkpoint_stats(ck, &[&name], &|_| {})?;
        let seconds = start.elapsed().as_secs_f64();
        let histogram = stats::histogram(ck, &name, bins)?;
        let run = report::StatsRun {
            per_tensor: &per_tensor,
            bytes: info.bytes,
            seconds,
        };
        Ok(Json(report::inspect_document(
            &path_of(e),
            ck,
            &[info],
            Some(&run),
            Some((&name, &histogram)),
        )))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptRequest {
    prompt: String,
    #[serde(default = "default_top")]
    top_k: usize,
    #[serde(default)]
    target: Option<String>,
}

fn default_top() -> usize {
    5
}

impl PromptRequest {
    fn check(&self) -> Result<(), ApiError> {
        if self.prompt.is_empty() {
            return Err(ApiError::bad_request("the prompt is empty"));
        }
        if self.prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(ApiError::bad_request(format!(
                "the prompt is longer than {MAX_PROMPT_CHARS} characters"
            )));
        }
        if self.top_k == 0 || self.top_k > MAX_TOP {
            return Err(ApiError::bad_request(format!(
                "top_k must be 1–{MAX_TOP}, not {}",
                self.top_k
            )));
        }
        Ok(())
    }
}

/// The prompt's token ids, within `max` tokens and the model's context.
pub(crate) fn tokens_of(
    model: &HookedModel,
    prompt: &str,
    max: usize,
) -> Result<Vec<u32>, ApiError> {
    let ids = model.to_tokens(prompt)?;
    within_limit(model, &ids, max)?;
    Ok(ids)
}

/// Token ids of a prompt are some, within `max` tokens and the model's context.
pub(crate) fn within_limit(model: &HookedModel, ids: &[u32], max: usize) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::bad_request("the prompt has no tokens"));
    }
    let limit = max.min(model.info().n_ctx);
    if ids.len() > limit {
        return Err(ApiError::bad_request(format!(
            "the prompt is {} tokens; at most {limit} here",
            ids.len()
        )));
    }
    Ok(())
}

/// Runs `f` with the model `id` on the pool, in that model's turn.
pub(crate) async fn with_model<T: Send + 'static>(
    state: Arc<State>,
    id: usize,
    f: impl FnOnce(&Entry, &HookedModel) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let turn = state.served.get(id)?.turn().await?;
    work::on_pool(turn, state.time_limit, move || {
        let entry = state.served.get(id)?;
        let model = entry.model()?;
        if !model.model.has_unembedding() {
            return Err(ApiError::bad_request(format!(
                "{} has no unembedding (no language-model head): no logits to show",
                entry.name()
            )));
        }
        f(entry, &model)
    })
    .await
}

async fn predictions_of(
    AxumState(state): Shared,
    Params(id): Params<usize>,
    Body(req): Body<PromptRequest>,
) -> Result<Json<Value>, ApiError> {
    req.check()?;
    with_model(state, id, move |entry, model| {
        let ids = tokens_of(model, &req.prompt, MAX_TOKENS)?;
        let positions = predictions::top_next(model, &ids, req.top_k, true)?;
        Ok(Json(predictions::document(
            model,
            &path_of(entry),
            &ids,
            &positions,
        )))
    })
    .await
}

async fn lens_of(
    AxumState(state): Shared,
    Params(id): Params<usize>,
    Body(req): Body<PromptRequest>,
) -> Result<Json<Value>, ApiError> {
    req.check()?;
    with_model(state, id, move |entry, model| {
        let ids = tokens_of(model, &req.prompt, MAX_TOKENS)?;
        let followed = match req.target.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => predictions::single_token(model, t, "target")?,
            None => predictions::predicted_next(model, &ids)?,
        };
        let report = lens::run(model, &ids, req.top_k, Some(followed))?;
        Ok(Json(lens::document(
            &path_of(entry),
            &req.prompt,
            &ids,
            &report,
        )))
    })
    .await
}

async fn attention_of(
    AxumState(state): Shared,
    Params(id): Params<usize>,
    Body(req): Body<PromptRequest>,
) -> Result<Json<Value>, ApiError> {
    req.check()?;
    with_model(state, id, move |entry, model| {
        let info = model.info();
        let limit = attention_tokens(info.n_layers, info.n_heads);
        let ids = tokens_of(model, &req.prompt, limit)?;
        let filter = NameFilter::new(&["blocks.*.attn.hook_pattern"])
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let (_, cache) = model.run_with_cache(&model.ids_tensor(&ids)?, &filter)?;
        // patterns[layer][head][query][key]; null for a layer without attention (SSM).
        let mut patterns = Vec::with_capacity(info.n_layers);
        for layer in 0..info.n_layers {
            let pattern = match cache.get(&format!("blocks.{layer}.attn.hook_pattern")) {
                Some(p) => {
                    let p = p.to_dtype(candle_core::DType::F32)?.squeeze(0)?;
                    json!(p.to_vec3::<f32>()?)
                }
                None => Value::Null,
            };
            patterns.push(pattern);
        }
        Ok(Json(json!({
            "model": path_of(entry),
            "input_ids": ids,
            "tokens": model.ids_to_str_tokens(&ids)?,
            "n_layers": info.n_layers,
            "n_heads": info.n_heads,
            "patterns": patterns,
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributeRequest {
    prompt: String,
    target: String,
    #[serde(default)]
    versus: Option<String>,
    #[serde(default)]
    position: Option<usize>,
}

async fn attribute_of(
    AxumState(state): Shared,
    Params(id): Params<usize>,
    Body(req): Body<AttributeRequest>,
) -> Result<Json<Value>, ApiError> {
    PromptRequest {
        prompt: req.prompt.clone(),
        top_k: 1,
        target: None,
    }
    .check()?;
    with_model(state, id, move |entry, model| {
        let ids = tokens_of(model, &req.prompt, MAX_TOKENS)?;
        let target = predictions::single_token(model, &req.target, "target")?;
        let versus = match req.versus.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => Some(predictions::single_token(model, v, "versus")?),
            None => None,
        };
        let result = attribution::run(model, &ids, req.position, target, versus)?;
        Ok(Json(attribution::document(
            model,
            &path_of(entry),
            &req.prompt,
            &ids,
            &result,
            target,
            versus,
        )))
    })
    .await
}

/// Longest random sequence and largest batch a head-scores request may ask for.
pub const MAX_HEAD_SEQ: usize = 256;
pub const MAX_HEAD_BATCH: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadsRequest {
    #[serde(default = "default_seq_len")]
    seq_len: usize,
    #[serde(default = "default_batch")]
    batch: usize,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    top: usize,
}

// The CLI's defaults.
fn default_seq_len() -> usize {
    20
}

fn default_batch() -> usize {
    8
}

async fn heads_of(
    AxumState(state): Shared,
    Params(id): Params<usize>,
    Body(req): Body<HeadsRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.seq_len == 0
        || req.seq_len > MAX_HEAD_SEQ
        || req.batch == 0
        || req.batch > MAX_HEAD_BATCH
    {
        return Err(ApiError::bad_request(format!(
            "seq_len must be 1–{MAX_HEAD_SEQ} and batch 1–{MAX_HEAD_BATCH}"
        )));
    }
    with_model(state, id, move |entry, model| {
        let scores = heads::run(model, req.seq_len, req.batch, req.seed)?;
        Ok(Json(heads::document(&path_of(entry), &scores, req.top)))
    })
    .await
}

fn audit_json(audit: &glassbox_audit::Audit) -> Result<Json<Value>, ApiError> {
    serde_json::from_str(&glassbox_audit::render::json(audit))
        .map(Json)
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn audit_of(
    AxumState(state): Shared,
    Params(id): Params<usize>,
) -> Result<Json<Value>, ApiError> {
    let e = state.served.get(id)?;
    if !e.is_release() {
        return Err(ApiError::bad_request(format!(
            "{} is a single file, not a release folder: nothing to audit",
            e.name()
        )));
    }
    let path = e.path.clone();
    let turn = e.turn().await?;
    work::on_pool(turn, state.time_limit, move || {
        // The path given at start, never one from a request.
        let audit = glassbox_audit::audit_target(&path.display().to_string())
            .map_err(|err| ApiError::bad_request(format!("auditing {}: {err}", path.display())))?;
        audit_json(&audit)
    })
    .await
}

async fn registry_list() -> Json<Value> {
    Json(glassbox_audit::registry::list_document())
}

async fn registry_audit(Params(rid): Params<String>) -> Result<Json<Value>, ApiError> {
    // Looked up in the built-in registry only: nothing here touches the file system.
    let entry = glassbox_audit::registry::lookup(&rid).ok_or_else(|| {
        ApiError::not_found(format!(
            "`{rid}` is not in the registry (GET /api/registry lists it)"
        ))
    })?;
    audit_json(&entry.release().audit())
}

async fn experts_of(
    AxumState(state): Shared,
    Params(id): Params<usize>,
    Body(req): Body<PromptRequest>,
) -> Result<axum::response::Response, ApiError> {
    req.check()?;
    with_model(state, id, move |_, model| {
        let ids = tokens_of(model, &req.prompt, MAX_TOKENS)?;
        let report = routing::prompt_routing(model, &ids)?;
        // Serialised as the CLI prints it (f32 weights in their own shortest form, which a
        // detour through `Value` would widen).
        let body = serde_json::to_string(&report).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(axum::response::IntoResponse::into_response((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )))
    })
    .await
}

#[derive(Deserialize)]
struct Top {
    top: Option<usize>,
}

async fn diff_of(
    AxumState(state): Shared,
    Params((a, b)): Params<(usize, usize)>,
    Query(q): Query<Top>,
) -> Result<Json<Value>, ApiError> {
    state.served.get(a)?.checkpoint()?;
    state.served.get(b)?.checkpoint()?;
    // Reading both models is one computation: it takes A's turn.
    let turn = state.served.get(a)?.turn().await?;
    work::on_pool(turn, state.time_limit, move || {
        let (ea, eb) = (state.served.get(a)?, state.served.get(b)?);
        let view_a = diff::HubView::hub(ea.checkpoint()?)?;
        let view_b = diff::HubView::hub(eb.checkpoint()?)?;
        let mut diffs = diff::diff(&view_a, &view_b, &|_| {})?;
        let summary = diff::DiffSummary::of(&diffs);
        if let Some(n) = q.top {
            diffs.truncate(n);
        }
        Ok(Json(diff::document(
            &path_of(ea),
            &path_of(eb),
            &view_a,
            &view_b,
            &summary,
            &diffs,
        )))
    })
    .await
}

/// Most prompts a drift request may compare.
pub const MAX_DRIFT_PROMPTS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DriftRequest {
    prompts: String,
    #[serde(default = "default_drift_top")]
    top: usize,
}

// The CLI's default.
fn default_drift_top() -> usize {
    15
}

async fn drift_of(
    AxumState(state): Shared,
    Params((a, b)): Params<(usize, usize)>,
    Body(req): Body<DriftRequest>,
) -> Result<Json<Value>, ApiError> {
    let lines = req.prompts.lines().filter(|l| !l.trim().is_empty()).count();
    if lines == 0 || lines > MAX_DRIFT_PROMPTS || req.prompts.chars().count() > 8 * MAX_PROMPT_CHARS
    {
        return Err(ApiError::bad_request(format!(
            "give 1–{MAX_DRIFT_PROMPTS} prompts, one per line"
        )));
    }
    if req.top == 0 || req.top > MAX_TOP {
        return Err(ApiError::bad_request(format!("top must be 1–{MAX_TOP}")));
    }
    // Both models' turns, in index order (never two requests each holding one).
    let (first, second) = (a.min(b), a.max(b));
    let turn_first = state.served.get(first)?.turn().await?;
    let turn_second = if second != first {
        Some(state.served.get(second)?.turn().await?)
    } else {
        None
    };
    work::on_pool(turn_first, state.time_limit, move || {
        let _second = turn_second;
        let (ea, eb) = (state.served.get(a)?, state.served.get(b)?);
        let (ma, mb) = (ea.model()?, eb.model()?);
        let sequences = drift::prompt_sequences(&ma, &mb, &req.prompts, "the prompts")?;
        // the models' context is no bound here (a million-position model took minutes and
        // gigabytes a prompt): each prompt within the server's limit, as everywhere else
        for ids in &sequences {
            within_limit(&ma, ids, MAX_TOKENS)?;
        }
        let opts = drift::DriftOptions {
            top_features: req.top,
            ..drift::DriftOptions::default()
        };
        let report = drift::compare(&ma, &mb, &sequences, &opts, None, &mut |_, _| {})?;
        Ok(Json(drift::document(
            drift::side_document(&path_of(ea), None, &ma),
            drift::side_document(&path_of(eb), None, &mb),
            "request",
            &report,
        )))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_answers_stay_within_the_weight_budget() {
        // GPT-2 small and the reference model keep the full 128 tokens.
        assert_eq!(attention_tokens(12, 12), MAX_ATTENTION_TOKENS);
        assert_eq!(attention_tokens(3, 4), MAX_ATTENTION_TOKENS);
        for (layers, heads) in [(32, 32), (80, 64), (126, 128), (1, 1 << 30)] {
            let t = attention_tokens(layers, heads);
            assert!(t >= 1 && layers * heads * t * t <= MAX_ATTENTION_WEIGHTS.max(layers * heads));
        }
        assert_eq!(attention_tokens(80, 64), 57);
    }
}
