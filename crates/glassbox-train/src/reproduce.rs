//! Rebuilding a release from its own recipe and comparing.
//!
//! 1. The corpus is regenerated from the release's recipe and its sha256 checked against
//!    `data/manifest.json` (a mismatch means the generator changed: nothing else can match).
//! 2. The recipe is rerun for N steps (all of them by default).
//! 3. If the backend and the kernels' numerics match the release's (`training_run.json`), the
//!    weights at step N must equal the release's (final model or `checkpoints/step-N`) bit for
//!    bit, and so must every logged loss — whatever the CPU (its instruction set) and thread
//!    count, since `glassbox-kernels` computes the same bits on all of them.
//! 4. Otherwise — or as well, after a full run — the rebuilt model must be *comparable*:
//!    final training loss within [`LOSS_TOLERANCE`], the same heads in the same roles, and a
//!    mean next-token KL on the held-out text below [`KL_BOUND`]. A shortened run whose
//!    numerics differ is comparable when every logged loss is within [`LOSS_TOLERANCE`] and
//!    the weights within [`WEIGHT_TOLERANCE`] of the checkpoint's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use glassbox_models::{HookedModel, LoadOptions};
use serde::{Deserialize, Serialize};

use crate::eval::{self, fmt_heads};
use crate::recipe::Recipe;
use crate::release::{checkpoint_dir, files};
use crate::trainer::{self, DataManifest, StepRecord};
use crate::TrainError;

/// Largest accepted difference in final training loss (mean of the last 20 steps), nats.
pub const LOSS_TOLERANCE: f32 = 0.05;
/// Largest accepted mean KL(release ‖ rebuilt) per held-out token, nats.
pub const KL_BOUND: f32 = 0.05;
/// Largest accepted max |Δ| / max |w| between a shortened rerun's weights and the checkpoint's
/// when the numerics differ (rounding differences grow slowly over the first steps).
pub const WEIGHT_TOLERANCE: f32 = 1e-3;

/// `training_run.json`: how the release was produced, for the bit-identity contract.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub glassbox_version: String,
    pub backend: String,
    /// The kernels' arithmetic ([`glassbox_kernels::NUMERICS`]); empty for releases made
    /// before the kernels existed (candle's CPU kernels, which differ between CPUs).
    #[serde(default)]
    pub numerics: String,
    /// The instruction-set path training ran on (informational: the bits do not depend on it).
    #[serde(default)]
    pub isa: String,
    /// Threads used (informational: the bits do not depend on it).
    pub threads: usize,
    pub steps: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

pub const RUN_INFO: &str = "training_run.json";

/// The outcome of a reproduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Weights and losses identical bit for bit at step N.
    BitIdentical,
    /// Not bit-identical (other numerics or backend) but comparable by every measure.
    Comparable,
    /// Not reproduced: the reasons are in the report.
    NotReproduced,
}

/// Figures and verdict of a reproduction.
pub struct Report {
    pub verdict: Verdict,
    /// Human-readable lines, in order: data, run, comparison, verdict.
    pub lines: Vec<String>,
}

pub struct Options {
    /// Stop after this many steps (must be a checkpoint or the final step).
    pub steps: Option<usize>,
    /// The thread count used for the rerun (recorded for the verdict; set by the caller).
    pub threads: usize,
}

fn read(path: &Path) -> Result<String, TrainError> {
    use glassbox_formats::input;
    Ok(input::read_text(path, "release", input::limit::DOCUMENT)?)
}

fn bad(dir: &Path, why: impl Into<String>) -> TrainError {
    TrainError::Release {
        path: dir.display().to_string(),
        why: why.into(),
    }
}

/// The pieces of a release that reproduction reads.
pub struct Release {
    pub dir: PathBuf,
    pub recipe: Recipe,
    pub manifest: DataManifest,
    pub run: RunInfo,
    pub log: Vec<StepRecord>,
}

impl Release {
    pub fn open(dir: &Path) -> Result<Release, TrainError> {
        if !dir.is_dir() {
            return Err(bad(dir, "is not a directory"));
        }
        let recipe = Recipe::load(&dir.join(files::RECIPE))?;
        let json = |rel: &str| -> Result<serde_json::Value, TrainError> {
            let p = dir.join(rel);
            serde_json::from_str(&read(&p)?).map_err(|e| bad(&p, format!("not valid JSON: {e}")))
        };
        let manifest: DataManifest = serde_json::from_value(json(files::MANIFEST)?)
            .map_err(|e| bad(&dir.join(files::MANIFEST), e.to_string()))?;
        let run: RunInfo = serde_json::from_value(json(RUN_INFO)?)
            .map_err(|e| bad(&dir.join(RUN_INFO), e.to_string()))?;
        let log_path = dir.join(files::LOG);
        let log = read(&log_path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| bad(&log_path, format!("line {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<StepRecord>, _>>()?;
        Ok(Release {
            dir: dir.to_path_buf(),
            recipe,
            manifest,
            run,
            log,
        })
    }

    /// The weights file the release holds for `step`, if any.
    pub fn weights_at(&self, step: usize) -> Option<PathBuf> {
        let p = if step == self.recipe.training.steps {
            self.dir.join(files::WEIGHTS)
        } else {
            self.dir
                .join(files::CHECKPOINTS)
                .join(checkpoint_dir(step))
                .join(files::WEIGHTS)
        };
        p.is_file().then_some(p)
    }
}

/// Reruns `release` per `opts` and compares. `on_step` sees each training step.
pub fn reproduce(
    release: &Release,
    opts: &Options,
    on_step: &mut dyn FnMut(&StepRecord),
) -> Result<Report, TrainError> {
    let recipe = &release.recipe;
    let total = recipe.training.steps;
    let steps = opts.steps.unwrap_or(total);
    let reference = release.weights_at(steps).ok_or_else(|| {
        bad(
            &release.dir,
            format!(
                "holds no weights for step {steps}; steps with weights: {:?} and {total}",
                recipe.training.checkpoints
            ),
        )
    })?;
    // Opened (its header and offsets checked) before any training: a damaged checkpoint is
    // refused at once. Its tensors are read after training, not held during it.
    let released = glassbox_formats::Checkpoint::open_safetensors(&reference)?;
    let mut lines = Vec::new();
    let mut failed = false;

    // 1. Data.
    let data = trainer::prepare_data(&recipe.data)?;
    let m = &data.manifest;
    let want = &release.manifest;
    let data_ok =
        m.train == want.train && m.held_out == want.held_out && m.generator == want.generator;
    lines.push(format!(
        "data: {} regenerated from seed {}: train sha256 {} ({}), held-out sha256 {} ({})",
        m.generator,
        m.config.seed,
        short(&m.train.sha256_token_ids),
        if m.train == want.train {
            "matches"
        } else {
            "DIFFERS"
        },
        short(&m.held_out.sha256_token_ids),
        if m.held_out == want.held_out {
            "matches"
        } else {
            "DIFFERS"
        },
    ));
    if !data_ok {
        lines.push(format!(
            "verdict: NOT REPRODUCED — the regenerated data differs from the manifest (generator {} vs {})",
            m.generator, want.generator
        ));
        return Ok(Report {
            verdict: Verdict::NotReproduced,
            lines,
        });
    }

    // 2. Rerun.
    let run = trainer::train(recipe, &data, steps, on_step)?;
    let tps = run.log.last().map(|r| r.tokens_per_s).unwrap_or(0.0);
    lines.push(format!(
        "run: {steps} of {total} steps on {} thread(s), {} path, in {:.1} s ({:.0} tokens/s); the release used {} thread(s), backend {}, numerics {}",
        opts.threads,
        glassbox_kernels::Isa::active(),
        run.seconds,
        tps,
        release.run.threads,
        release.run.backend,
        if release.run.numerics.is_empty() { "candle (pre-kernels)" } else { &release.run.numerics }
    ));

    // 3. Bit identity.
    let same_setup =
        release.run.backend == "cpu" && release.run.numerics == glassbox_kernels::NUMERICS;
    if !same_setup {
        lines.push(format!(
            "note: this build computes with {} — bits cannot match the release's; judging comparability",
            glassbox_kernels::NUMERICS
        ));
    }
    let released = released.all_tensors(&Device::Cpu)?;
    let rebuilt: HashMap<String, Tensor> = trainer::snapshot(&run.varmap)?.into_iter().collect();
    let (identical, max_diff) = compare_weights(&released, &rebuilt)?;
    let losses_identical = run
        .log
        .iter()
        .zip(&release.log)
        .all(|(a, b)| a.loss.to_bits() == b.loss.to_bits())
        && release.log.len() >= run.log.len();
    let first_loss_diff = run
        .log
        .iter()
        .zip(&release.log)
        .find(|(a, b)| a.loss.to_bits() != b.loss.to_bits())
        .map(|(a, _)| a.step);
    lines.push(format!(
        "weights at step {steps} vs {}: {} (max |Δ| {max_diff:.3e}); losses of steps 1–{steps}: {}",
        reference
            .strip_prefix(&release.dir)
            .unwrap_or(&reference)
            .display(),
        if identical { "bit-identical" } else { "differ" },
        match first_loss_diff {
            None if losses_identical => "bit-identical".to_string(),
            None => "missing from the release's log".to_string(),
            Some(s) => format!("first differ at step {s}"),
        }
    ));
    if identical && losses_identical {
        let setup = if opts.threads == release.run.threads {
            "same numerics and backend"
        } else {
            "same numerics and backend, another thread count"
        };
        lines.push(format!(
            "verdict: REPRODUCED bit for bit at step {steps} ({setup})"
        ));
        return Ok(Report {
            verdict: Verdict::BitIdentical,
            lines,
        });
    }
    if same_setup {
        lines.push("note: same numerics and backend, yet the bits differ".into());
        failed = true;
    }
    if steps != total {
        // A shortened run: comparable when the losses and weights stay close.
        let max_loss_diff = run
            .log
            .iter()
            .zip(&release.log)
            .map(|(a, b)| (a.loss - b.loss).abs())
            .fold(0f32, f32::max);
        let scale = max_abs(&released)?;
        let relative = max_diff / scale.max(f32::MIN_POSITIVE);
        let same_tensors = released.len() == rebuilt.len()
            && released
                .iter()
                .all(|(n, t)| rebuilt.get(n).is_some_and(|r| r.dims() == t.dims()));
        let close = same_tensors
            && release.log.len() >= run.log.len()
            && max_loss_diff <= LOSS_TOLERANCE
            && relative <= WEIGHT_TOLERANCE;
        lines.push(format!(
            "losses of steps 1–{steps}: max |Δ| {max_loss_diff:.2e} (tolerance {LOSS_TOLERANCE}); weights: max |Δ| / max |w| {relative:.2e} (tolerance {WEIGHT_TOLERANCE:.0e}) {}",
            ok(close)
        ));
        let verdict = if close && !failed {
            lines.push(format!(
                "verdict: COMPARABLE at step {steps} — not bit-identical (other numerics), the same training by the measures above"
            ));
            Verdict::Comparable
        } else {
            lines.push(format!(
                "verdict: NOT REPRODUCED at step {steps} — see the figures above"
            ));
            Verdict::NotReproduced
        };
        return Ok(Report { verdict, lines });
    }

    // 4. Comparability of the full run.
    let released_model = HookedModel::load(&release.dir, &LoadOptions::default())?;
    let a = eval::evaluate(&released_model, &recipe.data, &data.held_out, data.row)?;
    let b = eval::evaluate(&run.model, &recipe.data, &data.held_out, data.row)?;
    let loss_a = tail_mean(&release.log);
    let loss_b = tail_mean(&run.log);
    let loss_ok = (loss_a - loss_b).abs() <= LOSS_TOLERANCE;
    let roles_ok =
        a.induction_heads == b.induction_heads && a.previous_token_heads == b.previous_token_heads;
    let kl = eval::mean_kl(&released_model, &run.model, &data.held_out, data.row)?;
    let kl_ok = kl <= KL_BOUND;
    lines.push(format!(
        "final loss: release {loss_a:.4}, rebuilt {loss_b:.4}, |Δ| {:.4} (tolerance {LOSS_TOLERANCE}) {}",
        (loss_a - loss_b).abs(),
        ok(loss_ok)
    ));
    lines.push(format!(
        "head roles: induction {} vs {}, previous-token {} vs {} {}",
        fmt_heads(&a.induction_heads),
        fmt_heads(&b.induction_heads),
        fmt_heads(&a.previous_token_heads),
        fmt_heads(&b.previous_token_heads),
        ok(roles_ok)
    ));
    lines.push(format!(
        "next-token KL(release ‖ rebuilt) on held-out text: {kl:.4} nats/token (bound {KL_BOUND}) {}",
        ok(kl_ok)
    ));
    failed |= !(loss_ok && roles_ok && kl_ok);
    let verdict = if failed {
        Verdict::NotReproduced
    } else {
        Verdict::Comparable
    };
    lines.push(match verdict {
        Verdict::Comparable => {
            "verdict: COMPARABLE — not bit-identical, but the same model by every measure above"
                .into()
        }
        _ => "verdict: NOT REPRODUCED — see the figures above".into(),
    });
    Ok(Report { verdict, lines })
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "FAIL"
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn tail_mean(log: &[StepRecord]) -> f32 {
    let tail: Vec<f32> = log.iter().rev().take(20).map(|r| r.loss).collect();
    tail.iter().sum::<f32>() / tail.len().max(1) as f32
}

/// (all tensors bit-identical with the same names, max |difference|).
fn compare_weights(
    a: &HashMap<String, Tensor>,
    b: &HashMap<String, Tensor>,
) -> Result<(bool, f32), TrainError> {
    let mut identical = a.len() == b.len();
    let mut max_diff = 0f32;
    for (name, ta) in a {
        let Some(tb) = b.get(name) else {
            identical = false;
            continue;
        };
        if ta.dims() != tb.dims() {
            identical = false;
            continue;
        }
        let va = ta.flatten_all()?.to_vec1::<f32>()?;
        let vb = tb.flatten_all()?.to_vec1::<f32>()?;
        for (x, y) in va.iter().zip(&vb) {
            if x.to_bits() != y.to_bits() {
                identical = false;
                max_diff = max_diff.max((x - y).abs());
            }
        }
    }
    Ok((identical, max_diff))
}

/// The largest |w| over all tensors.
fn max_abs(weights: &HashMap<String, Tensor>) -> Result<f32, TrainError> {
    let mut m = 0f32;
    for t in weights.values() {
        let v = t
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        m = m.max(v);
    }
    Ok(m)
}
