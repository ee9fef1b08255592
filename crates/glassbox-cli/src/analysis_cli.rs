//! What the analysis commands (lens, attribute, heads, patch, ablate, steer) share: loading
//! a model, turning token arguments into ids, and the `--json` / `--plot` output options.

use std::path::{Path, PathBuf};

use anyhow::Context;
use glassbox_models::HookedModel;

/// Output options every analysis command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print the result as JSON on stdout instead of the terminal view.
    #[arg(long)]
    pub json: bool,
    /// Also write a figure to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Fix the colour scale of signed values at −MAX..MAX (terminal and figure), so that
    /// figures of several runs compare; default: the largest magnitude shown.
    #[arg(long, value_name = "MAX")]
    pub range: Option<f32>,
}

impl OutputArgs {
    /// Fails early, before any model work, on a plot path that cannot be an SVG or would be
    /// written over one of `inputs` (what the command reads).
    pub fn check(&self, inputs: &[&Path]) -> anyhow::Result<()> {
        if let Some(m) = self.range {
            if !(m.is_finite() && m > 0.0) {
                return Err(crate::invalid!("--range {m}: give a positive number"));
            }
        }
        if let Some(p) = &self.plot {
            crate::output::check_svg(p, "--plot", inputs)?;
        }
        Ok(())
    }
}

impl OutputArgs {
    /// `grid` on the fixed signed range `--range` asked for, if any.
    pub fn signed_range(&self, grid: crate::render::Grid) -> crate::render::Grid {
        match self.range {
            Some(m) => grid.range(-m, m),
            None => grid,
        }
    }
}

/// Loads the model at `path` (a Hub snapshot directory or a GGUF file) on the CPU in f32,
/// with the SAEs `--sae` names spliced in.
pub fn load_model(path: &Path, saes: &crate::model_cli::SaeArgs) -> anyhow::Result<HookedModel> {
    crate::model_cli::load_model(path, "f32", saes)
}

/// Token ids of `text`, with the special tokens the tokenizer adds.
pub fn tokens(model: &HookedModel, text: &str) -> anyhow::Result<Vec<u32>> {
    let ids = model.to_tokens(text)?;
    if ids.is_empty() {
        return Err(crate::invalid!("the text {text:?} has no tokens"));
    }
    crate::model_cli::note_unknown(model, text, &ids);
    Ok(ids)
}

/// The id of a single token given as text (`" Paris"`) or as `#123`. Special tokens the
/// tokenizer adds to every text (a BOS) are not counted.
pub fn single_token(model: &HookedModel, spec: &str, what: &str) -> anyhow::Result<u32> {
    Ok(glassbox_analysis::predictions::single_token(
        model, spec, what,
    )?)
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A token id as a readable string for messages: `" Paris" (#314)`.
pub fn describe_token(model: &HookedModel, id: u32) -> String {
    glassbox_analysis::predictions::describe_token(model, id)
}

/// Adds the control vector `spec` (`FILE` or `FILE:SCALE`) to `hooks`, warning on stderr
/// about directions for blocks the model does not have (llama.cpp ignores those too).
pub fn apply_control_vector(
    hooks: &mut glassbox_models::Hooks,
    model: &HookedModel,
    spec: &str,
) -> anyhow::Result<()> {
    use glassbox_analysis::steering::{parse_file_and_scale, ControlVector};
    let (path, scale) = parse_file_and_scale(spec)?;
    if !path.is_file() {
        return Err(crate::invalid!(
            "{}: no such control-vector file",
            path.display()
        ));
    }
    let vector = ControlVector::read(&path)?;
    let ignored = vector
        .apply(hooks, model, scale)
        .with_context(|| format!("applying {}", path.display()))?;
    if !ignored.is_empty() {
        eprintln!(
            "warning: {}: directions for blocks {ignored:?} ignored (the model has {} blocks)",
            path.display(),
            model.info().n_layers
        );
    }
    Ok(())
}

/// Where a probe file's directions were found: the model's path as given, and a fingerprint
/// of what that model computes at the file's hooks ([`glassbox_features::store::model_fingerprint`]).
const PROBED_MODEL: &str = "glassbox.probed_model";
const PROBED_FINGERPRINT: &str = "glassbox.probed_model_fingerprint";

/// The fingerprint of `model` at `hooks`, in a fixed order.
fn fingerprint_at(
    model: &glassbox_models::HookedModel,
    hooks: &[String],
) -> anyhow::Result<String> {
    let mut hooks = hooks.to_vec();
    hooks.sort();
    Ok(glassbox_features::store::model_fingerprint(model, &hooks)?)
}

/// The metadata `glassbox probe --out` records beside its directions.
pub fn probe_provenance(
    model: &glassbox_models::HookedModel,
    model_path: &Path,
    hooks: &[String],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    Ok([
        (PROBED_MODEL.to_string(), model_path.display().to_string()),
        (
            PROBED_FINGERPRINT.to_string(),
            fingerprint_at(model, hooks)?,
        ),
    ]
    .into())
}

/// A probe file's directions (`glassbox probe --out`) at `blocks.N.hook_resid_post`, and a
/// note when the file says they were found on a model that computes otherwise than `model`
/// (another checkpoint, an adapter, an SAE splice) — steering with them then assumes the two
/// share a residual basis.
pub fn read_probe_directions(
    path: &Path,
    model: &glassbox_models::HookedModel,
) -> anyhow::Result<(std::collections::BTreeMap<usize, Vec<f32>>, Option<String>)> {
    glassbox_formats::input::regular_file(path, "probe directions")?;
    // one read: the header's metadata and the tensors from the same mapped file
    let file = glassbox_formats::SafetensorsFile::open(path)?;
    let hooks: Vec<String> = file.entries.iter().map(|e| e.name.clone()).collect();
    let mut out = std::collections::BTreeMap::new();
    for entry in &file.entries {
        let Some(layer) = entry
            .name
            .strip_prefix("blocks.")
            .and_then(|r| r.strip_suffix(".hook_resid_post"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let v = glassbox_formats::to_f32(entry.dtype, file.bytes(entry)).ok_or_else(|| {
            crate::invalid!(
                "{}: `{}` ({}) cannot be read as numbers",
                path.display(),
                entry.name,
                entry.dtype
            )
        })?;
        out.insert(layer, v);
    }
    if out.is_empty() {
        return Err(crate::invalid!(
            "{}: no direction at a `blocks.N.hook_resid_post` hook (probe those to steer with them)",
            path.display()
        ));
    }
    let note = match file.metadata.get(PROBED_FINGERPRINT) {
        // a hook this model lacks is a model that differs
        Some(recorded) if fingerprint_at(model, &hooks).ok().as_ref() != Some(recorded) => {
            let probed = file
                .metadata
                .get(PROBED_MODEL)
                .map_or("another model".to_string(), |m| format!("`{m}`"));
            Some(format!(
                "{}: these directions were probed on {probed}; this model computes something else at those hooks, so steering it with them assumes the two share a residual basis",
                path.display()
            ))
        }
        _ => None,
    };
    Ok((out, note))
}
