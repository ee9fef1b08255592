//! The features pages' API: an SAE's feature dashboards over the corpus named at start
//! (`glassbox features MODEL --sae DIR (--text F | --tokens F) --json`), and the features
//! active on a typed prompt (the SAE's `hook_sae_acts_post`, as `glassbox trace --sae` records
//! it), for the model the SAE was given with.

use crate::extract::{Body, Params, Query};
use axum::extract::State as AxumState;
use axum::Json;
use glassbox_features::{corpus, dashboard};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{tokens_of, with_model, Shared, MAX_TOKENS, MAX_TOP};
use crate::served::Entry;
use crate::ApiError;

/// Most features one dashboards request may name.
pub const MAX_FEATURES: usize = 64;

fn sae_of(entry: &Entry) -> Result<&crate::served::ServedSae, ApiError> {
    entry.sae.as_ref().ok_or_else(|| {
        ApiError::bad_request(format!(
            "{} was served without an SAE (glassbox serve MODEL --sae DIR --sae-text FILE)",
            entry.name()
        ))
    })
}

fn feature_error(e: glassbox_features::FeatureError) -> ApiError {
    if e.is_invalid_input() {
        ApiError::bad_request(e.to_string())
    } else {
        ApiError::internal(e.to_string())
    }
}

/// `value` as the CLI's JSON prints it: f32 fields in their own shortest form (a direct
/// `serde_json::to_value` would widen them to f64 digits).
fn as_printed<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_string(value)
        .and_then(|s| serde_json::from_str(&s))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// What the server has: the SAE's hook and width, and whether dashboards can be read.
pub async fn about(
    AxumState(state): Shared,
    Params(id): Params<usize>,
) -> Result<Json<Value>, ApiError> {
    let entry = state.served.get(id)?;
    let s = sae_of(entry)?;
    Ok(Json(json!({
        "sae": s.source.dir.display().to_string(),
        "hook_name": s.sae.hook_name(),
        "d_sae": s.sae.cfg.d_sae,
        "architecture": s.sae.cfg.architecture(),
        "corpus": s.source.text.as_ref().or(s.source.tokens.as_ref()).map(|p| p.display().to_string()),
    })))
}

#[derive(Deserialize)]
pub struct DashboardQuery {
    /// Comma-separated feature ids; absent: the `top` that fire most often.
    features: Option<String>,
    top: Option<usize>,
}

pub async fn dashboards(
    AxumState(state): Shared,
    Params(id): Params<usize>,
    Query(q): Query<DashboardQuery>,
) -> Result<Json<Value>, ApiError> {
    let features = match q.features.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(list) => {
            let ids = list
                .split(',')
                .map(|f| {
                    f.trim().parse::<usize>().map_err(|_| {
                        ApiError::bad_request(format!("features: `{f}` is not a feature id"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ids.len() > MAX_FEATURES {
                return Err(ApiError::bad_request(format!(
                    "at most {MAX_FEATURES} features at a time"
                )));
            }
            Some(ids)
        }
        None => None,
    };
    let top = q.top.unwrap_or(10);
    if top == 0 || top > MAX_FEATURES {
        return Err(ApiError::bad_request(format!(
            "top must be 1–{MAX_FEATURES}"
        )));
    }
    sae_of(state.served.get(id)?)?;
    with_model(state, id, move |entry, model| {
        let s = sae_of(entry)?;
        if s.source.text.is_none() && s.source.tokens.is_none() {
            return Err(ApiError::bad_request(
                "no corpus to read dashboards over (glassbox serve … --sae-text FILE or --sae-tokens FILE)",
            ));
        }
        let rows = corpus::rows_for_sae(
            model,
            &s.sae,
            s.source.text.as_deref(),
            s.source.tokens.as_deref(),
            None,
        )
        .map_err(feature_error)?;
        let opts = dashboard::DashboardOptions {
            features,
            top,
            ..dashboard::DashboardOptions::default()
        };
        let d = dashboard::dashboards(model, &s.sae, &rows, &opts).map_err(feature_error)?;
        // With the tokens' text beside their ids, for the page.
        let mut doc = as_printed(&d)?;
        let mut ids: Vec<u32> = Vec::new();
        for f in &d.features {
            for c in &f.top_contexts {
                ids.extend(&c.tokens);
            }
            ids.extend(f.logit_top.iter().chain(&f.logit_bottom).map(|(t, _)| *t));
        }
        ids.sort_unstable();
        ids.dedup();
        let text: serde_json::Map<String, Value> = ids
            .into_iter()
            .map(|t| (t.to_string(), json!(glassbox_analysis::predictions::token_text(model, t))))
            .collect();
        doc["token_text"] = Value::Object(text);
        Ok(Json(doc))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveRequest {
    prompt: String,
    #[serde(default = "default_top")]
    top_k: usize,
}

fn default_top() -> usize {
    5
}

pub async fn active(
    AxumState(state): Shared,
    Params(id): Params<usize>,
    Body(req): Body<ActiveRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.prompt.is_empty() || req.prompt.chars().count() > crate::api::MAX_PROMPT_CHARS {
        return Err(ApiError::bad_request(
            "the prompt must be 1–8192 characters",
        ));
    }
    if req.top_k == 0 || req.top_k > MAX_TOP {
        return Err(ApiError::bad_request(format!("top_k must be 1–{MAX_TOP}")));
    }
    sae_of(state.served.get(id)?)?;
    with_model(state, id, move |entry, model| {
        let s = sae_of(entry)?;
        let ids = tokens_of(model, &req.prompt, MAX_TOKENS)?;
        let active =
            dashboard::active_features(model, &s.sae, &ids, req.top_k).map_err(feature_error)?;
        Ok(Json(json!({
            "hook_name": format!("{}.hook_sae_acts_post", s.sae.hook_name()),
            "input_ids": ids,
            "tokens": model.ids_to_str_tokens(&ids)?,
            "active": as_printed(&active)?,
        })))
    })
    .await
}
