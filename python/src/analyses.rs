//! The analyses and the audit, each returning the JSON document the CLI's `--json` prints for
//! the same request, built by the same library function (the Python side parses it).

use std::path::PathBuf;
use std::sync::Arc;

use glassbox_analysis as ga;
use glassbox_models::HookedModel;
use pyo3::prelude::*;

use crate::errors::{call_error, file_error, invalid, invalid_anyhow};
use crate::model::Model;
use crate::work;

type Doc = anyhow::Result<String>;

/// A steering vector's document and its directions by layer.
type Steered = (String, Vec<(usize, Vec<f32>)>);

fn json(v: &serde_json::Value) -> Doc {
    Ok(serde_json::to_string(v)?)
}

/// The ids of `text`; an error if it has none.
fn tokens(model: &HookedModel, text: &str) -> anyhow::Result<Vec<u32>> {
    let ids = model.to_tokens(text)?;
    if ids.is_empty() {
        return Err(invalid_anyhow(format!("the text {text:?} has no tokens")));
    }
    Ok(ids)
}

/// A prompt as Python gives it: a text (tokenized as the CLI does) or token ids (used as
/// they are, as TransformerLens takes tokens).
#[derive(FromPyObject)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

impl Prompt {
    /// The prompt's ids and the text its document shows (the ids' decoding, special tokens
    /// included, when ids were given).
    fn resolve(self, model: &HookedModel) -> anyhow::Result<(Vec<u32>, String)> {
        match self {
            Prompt::Text(text) => Ok((tokens(model, &text)?, text)),
            Prompt::Ids(ids) => {
                if ids.is_empty() {
                    return Err(invalid_anyhow("the prompt has no tokens"));
                }
                let vocab = model.info().d_vocab;
                if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(invalid_anyhow(format!(
                        "token id {id} is outside the vocabulary ({vocab} tokens)"
                    )));
                }
                let text = model.decode_with_special(&ids)?;
                Ok((ids, text))
            }
        }
    }
}

/// Refuses a model without logits (an encoder without a language-model head) for `what`.
fn require_logits(model: &HookedModel, what: &str) -> anyhow::Result<()> {
    if model.model.has_unembedding() {
        return Ok(());
    }
    Err(invalid_anyhow(format!(
        "{} has no unembedding (no language-model head), so `{what}` has no logits to show",
        model.info().architecture
    )))
}

/// Runs `job` with the model on the pool (GIL released, Ctrl-C cancels).
fn with_model<T: Send + 'static>(
    py: Python<'_>,
    model: &Model,
    job: impl FnOnce(&HookedModel, &str, &work::Cancel) -> anyhow::Result<T> + Send + 'static,
) -> PyResult<T> {
    let inner = Arc::clone(&model.inner);
    let path = model.path.clone();
    work::run(py, move |cancel| job(&inner, &path, cancel), call_error)
}

/// `glassbox run MODEL --tokens … --top-k K [--all-positions] --json`.
#[pyfunction]
#[pyo3(signature = (model, ids, top_k=5, all_positions=false))]
pub fn predictions(
    py: Python<'_>,
    model: &Model,
    ids: Vec<u32>,
    top_k: usize,
    all_positions: bool,
) -> PyResult<String> {
    if top_k == 0 || ids.is_empty() {
        return Err(invalid("give at least one token and top_k ≥ 1"));
    }
    with_model(py, model, move |m, path, _| {
        require_logits(m, "predictions")?;
        let out = ga::predictions::top_next(m, &ids, top_k, all_positions)?;
        json(&ga::predictions::document(m, path, &ids, &out))
    })
}

/// `glassbox lens MODEL --prompt P [--target T] --top K --json`.
#[pyfunction]
#[pyo3(signature = (model, prompt, top_k=5, target=None))]
pub fn lens(
    py: Python<'_>,
    model: &Model,
    prompt: Prompt,
    top_k: usize,
    target: Option<String>,
) -> PyResult<String> {
    with_model(py, model, move |m, path, _| {
        require_logits(m, "lens")?;
        let (ids, prompt) = prompt.resolve(m)?;
        let followed = match &target {
            Some(t) => ga::predictions::single_token(m, t, "target")?,
            None => ga::predictions::predicted_next(m, &ids)?,
        };
        let report = ga::lens::run(m, &ids, top_k.max(1), Some(followed))?;
        json(&ga::lens::document(path, &prompt, &ids, &report))
    })
}

/// `glassbox attribute MODEL --prompt P --target T [--versus V] [--position N] --json`.
#[pyfunction]
#[pyo3(signature = (model, prompt, target, versus=None, position=None))]
pub fn attribute(
    py: Python<'_>,
    model: &Model,
    prompt: Prompt,
    target: String,
    versus: Option<String>,
    position: Option<usize>,
) -> PyResult<String> {
    with_model(py, model, move |m, path, _| {
        require_logits(m, "attribute")?;
        let (ids, prompt) = prompt.resolve(m)?;
        let target = ga::predictions::single_token(m, &target, "target")?;
        let versus = match &versus {
            Some(v) => Some(ga::predictions::single_token(m, v, "versus")?),
            None => None,
        };
        let result = ga::attribution::run(m, &ids, position, target, versus)?;
        json(&ga::attribution::document(
            m, path, &prompt, &ids, &result, target, versus,
        ))
    })
}

/// `glassbox heads MODEL --seq-len N --batch B --seed S --top K --json`.
#[pyfunction]
#[pyo3(signature = (model, seq_len=20, batch=8, seed=0, top=0))]
pub fn heads(
    py: Python<'_>,
    model: &Model,
    seq_len: usize,
    batch: usize,
    seed: u64,
    top: usize,
) -> PyResult<String> {
    with_model(py, model, move |m, path, _| {
        let scores = ga::heads::run(m, seq_len, batch, seed)?;
        json(&ga::heads::document(path, &scores, top))
    })
}

/// `glassbox patch MODEL --clean C --corrupt R --answer A --wrong W --what X --method M --json`.
#[pyfunction]
#[pyo3(signature = (model, clean, corrupt, answer, wrong, what="resid_pre", method="activation"))]
#[allow(clippy::too_many_arguments)]
pub fn patch(
    py: Python<'_>,
    model: &Model,
    clean: String,
    corrupt: String,
    answer: String,
    wrong: String,
    what: &str,
    method: &str,
) -> PyResult<String> {
    let what = ga::patching::PatchTarget::parse(what).ok_or_else(|| {
        invalid(format!(
            "what {what:?}: expected resid_pre, attn_out, mlp_out or heads"
        ))
    })?;
    let methods = ga::patching::Methods::parse(method).ok_or_else(|| {
        invalid(format!(
            "method {method:?}: expected activation, attribution or both"
        ))
    })?;
    with_model(py, model, move |m, path, cancel| {
        require_logits(m, "patch")?;
        let report = ga::patching::patch_prompts(
            m,
            &clean,
            &corrupt,
            &answer,
            &wrong,
            what,
            methods,
            cancel.progress(),
        )?;
        json(&ga::patching::patch_document(
            path, &clean, &corrupt, &report,
        )?)
    })
}

/// `glassbox ablate MODEL --text T --target … --method M [--reference R…] [--seed S] [--each] --json`.
#[pyfunction]
#[pyo3(signature = (model, text, targets, method="zero", reference=Vec::new(), seed=0, each=false))]
#[allow(clippy::too_many_arguments)]
pub fn ablate(
    py: Python<'_>,
    model: &Model,
    text: String,
    targets: Vec<String>,
    method: &str,
    reference: Vec<String>,
    seed: u64,
    each: bool,
) -> PyResult<String> {
    let method = ga::ablation::parse_method(method, seed).map_err(|e| call_error(e.into()))?;
    with_model(py, model, move |m, path, cancel| {
        require_logits(m, "ablate")?;
        let report = ga::ablation::ablate_text(
            m,
            &text,
            &targets,
            method,
            &reference,
            each,
            cancel.progress(),
        )?;
        json(&ga::ablation::document(path, &text, each, &report))
    })
}

/// `glassbox steer MODEL --positive … --negative … --layers L1-L2 [--no-normalize] --out F --json`;
/// without `out` nothing is written (`out` is null). Also returns the directions themselves
/// (as written, by layer), which the document does not hold.
#[pyfunction]
#[pyo3(signature = (model, positive, negative, layers, normalize=true, out=None))]
pub fn steer(
    py: Python<'_>,
    model: &Model,
    positive: Vec<String>,
    negative: Vec<String>,
    layers: String,
    normalize: bool,
    out: Option<PathBuf>,
) -> PyResult<Steered> {
    with_model(py, model, move |m, path, _| -> anyhow::Result<Steered> {
        let layers = ga::steering::parse_layers(&layers)?;
        let tokenize = |texts: &[String]| -> anyhow::Result<Vec<Vec<u32>>> {
            texts.iter().map(|t| tokens(m, t)).collect()
        };
        let contrast =
            ga::steering::contrast(m, &tokenize(&positive)?, &tokenize(&negative)?, layers)?;
        let raw = contrast.vector.clone();
        let vector = match &out {
            Some(file) => ga::steering::write_checked(&raw, normalize, file)?,
            None if normalize => raw.normalized(),
            None => raw.clone(),
        };
        let doc = ga::steering::document(path, out.as_deref(), &raw, normalize, Some(&contrast));
        let directions = vector.directions.into_iter().collect();
        Ok((serde_json::to_string(&doc)?, directions))
    })
}

/// `glassbox experts MODEL --prompt P --json`.
#[pyfunction]
pub fn experts(py: Python<'_>, model: &Model, prompt: Prompt) -> PyResult<String> {
    with_model(py, model, move |m, _, _| {
        let (ids, _) = prompt.resolve(m)?;
        let report = ga::routing::prompt_routing(m, &ids)?;
        Ok(serde_json::to_string(&report)?)
    })
}

/// `glassbox audit TARGET --json`: a release folder, a MOT model file or a registry id.
#[pyfunction]
pub fn audit(py: Python<'_>, target: String) -> PyResult<String> {
    work::run(
        py,
        move |_| -> Doc {
            let audit = glassbox_audit::audit_target(&target)
                .map_err(|e| anyhow::Error::from(e).context(format!("auditing {target}")))?;
            Ok(glassbox_audit::render::json(&audit))
        },
        file_error,
    )
}

/// `glassbox audit --list --json`: the built-in registry.
#[pyfunction]
pub fn audit_registry() -> PyResult<String> {
    serde_json::to_string(&glassbox_audit::registry::list_document())
        .map_err(|e| call_error(e.into()))
}
