//! Rebuilding a release from its own recipe and comparing.
//!
//! 1. The corpus is regenerated from the release's recipe and its sha256 checked against
//!    `data/manifest.json` (a mismatch means the generator changed: nothing else can match).
//!    Every other file that says what the model is or was trained on must be what the recipe
//!    makes too — `config.json` and `tokenizer.json` (also each checkpoint's), the whole
//!    manifest (fact table, settings, counts) and the shipped data files — or the verdict is
//!    NOT REPRODUCED before any training: equal weights prove nothing about a release whose
//!    config or tokenizer make the same weights compute something else.
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
use serde_json::Value;

use crate::eval::{self, fmt_heads};
use crate::recipe::Recipe;
use crate::release::{self, checkpoint_dir, files};
use crate::trainer::{self, Data, DataManifest, StepRecord};
use crate::{corpus, vocab, TrainError};

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

/// One reason a release was not reproduced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The data the recipe generates differ from what this file of the release (the manifest
    /// or a shipped data file) holds.
    Data(String),
    /// This file (`config.json`, `tokenizer.json`, relative to the release) is not what the
    /// recipe makes.
    File(String),
    /// The rerun's weights or losses are not the release's.
    Training,
}

/// Figures and verdict of a reproduction.
pub struct Report {
    pub verdict: Verdict,
    /// Human-readable lines, in order: data, run, comparison, verdict.
    pub lines: Vec<String>,
    /// Why the verdict is [`Verdict::NotReproduced`] (empty otherwise).
    pub failures: Vec<Failure>,
}

impl Report {
    /// The failures in one clause, for the error that follows the report: "its data differ
    /// from what its recipe generates (data/manifest.json); config.json is not what …".
    pub fn cause(&self) -> String {
        let data: Vec<&str> = self
            .failures
            .iter()
            .filter_map(|f| match f {
                Failure::Data(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        let other: Vec<&str> = self
            .failures
            .iter()
            .filter_map(|f| match f {
                Failure::File(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        let mut parts = Vec::new();
        if !data.is_empty() {
            parts.push(format!(
                "its data differ from what its recipe generates ({})",
                data.join(", ")
            ));
        }
        if !other.is_empty() {
            parts.push(format!(
                "{} not what its recipe makes",
                match other.as_slice() {
                    [one] => format!("{one} is"),
                    many => format!("{} are", many.join(", ")),
                }
            ));
        }
        if self.failures.contains(&Failure::Training) {
            parts.push("its weights are not what its recipe trains".into());
        }
        parts.join("; ")
    }
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

    // 1. Data, and the files that must be what the recipe makes.
    let data = trainer::prepare_data(&recipe.data)?;
    let m = &data.manifest;
    let want = &release.manifest;
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
    let failures = check_files(release, &data, &mut lines)?;
    if !failures.is_empty() {
        let only_model_files = failures.iter().all(|f| matches!(f, Failure::File(_)));
        lines.push(if only_model_files {
            "verdict: NOT REPRODUCED — the release's model files are not what its recipe makes (see above); not retrained".to_string()
        } else if m.generator != want.generator {
            format!(
                "verdict: NOT REPRODUCED — the regenerated data differ from the release's (generator {} vs {}); not retrained",
                m.generator, want.generator
            )
        } else {
            "verdict: NOT REPRODUCED — the release's data differ from what its recipe generates (see above); not retrained".to_string()
        });
        return Ok(Report {
            verdict: Verdict::NotReproduced,
            lines,
            failures,
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
        recorded_numerics(&release.run)
    ));

    // 3. Bit identity.
    let same_setup =
        release.run.backend == "cpu" && release.run.numerics == glassbox_kernels::NUMERICS;
    if !same_setup {
        lines.push(format!(
            "note: the release records backend {}, numerics {}; this build computes on cpu with {}: bit identity is not promised, judging comparability",
            release.run.backend,
            recorded_numerics(&release.run),
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
    let bits_equal = identical && losses_identical;
    // The promise is bit identity under the recorded numerics and backend; under others,
    // equal bits are a coincidence or a wrong record, so the verdict stays "comparable".
    if bits_equal && same_setup {
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
            failures: Vec::new(),
        });
    }
    if bits_equal {
        lines.push(format!(
            "note: the weights and losses equal this build's although the release records other numerics ({}): its {RUN_INFO} may be wrong",
            recorded_numerics(&release.run)
        ));
    }
    let comparable_why = if bits_equal {
        "the release records other numerics, so bit identity is not promised"
    } else {
        "not bit-identical (other numerics)"
    };
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
                "verdict: COMPARABLE at step {steps} — {comparable_why}; the same training by the measures above"
            ));
            Verdict::Comparable
        } else {
            lines.push(format!(
                "verdict: NOT REPRODUCED at step {steps} — see the figures above"
            ));
            Verdict::NotReproduced
        };
        return Ok(report(verdict, lines));
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
            format!("verdict: COMPARABLE — {comparable_why}; the same model by every measure above")
        }
        _ => "verdict: NOT REPRODUCED — see the figures above".into(),
    });
    Ok(report(verdict, lines))
}

/// A report after training: a failure is the training's.
fn report(verdict: Verdict, lines: Vec<String>) -> Report {
    let failures = if verdict == Verdict::NotReproduced {
        vec![Failure::Training]
    } else {
        Vec::new()
    };
    Report {
        verdict,
        lines,
        failures,
    }
}

fn recorded_numerics(run: &RunInfo) -> &str {
    if run.numerics.is_empty() {
        "candle (pre-kernels)"
    } else {
        &run.numerics
    }
}

/// Compares every file of `release` that its recipe determines, the weights and log aside,
/// with what the recipe makes: the manifest and shipped data files with `data` (regenerated),
/// `config.json` and `tokenizer.json` (top level and each checkpoint's) with what `glassbox
/// train` writes. A line per file that differs; a file that cannot be read is an error.
fn check_files(
    release: &Release,
    data: &Data,
    lines: &mut Vec<String>,
) -> Result<Vec<Failure>, TrainError> {
    use glassbox_formats::input::{self, limit};
    let recipe = &release.recipe;
    let mut failures = Vec::new();

    // The manifest whole: hashes, counts, settings and the fact table.
    let found = to_json(&release.manifest)?;
    let made = through_text(&data.manifest)?;
    let diffs = json_differences(&found, &made);
    if !diffs.is_empty() {
        lines.push(format!(
            "{}: differs from the regenerated data's: {}",
            files::MANIFEST,
            describe(&diffs, "regenerated")
        ));
        failures.push(Failure::Data(files::MANIFEST.into()));
    }

    // The shipped held-out text must be what the manifest hashes (and so what evaluation uses).
    let path = release.dir.join(files::HELD_OUT);
    let text = input::read_bytes(&path, "held-out data", limit::CORPUS)?;
    let sha = corpus::sha256_hex(&text);
    if sha != release.manifest.held_out.sha256_text {
        lines.push(format!(
            "{}: sha256 {} but {} records {}: the data differ ({})",
            files::HELD_OUT,
            short(&sha),
            files::MANIFEST,
            short(&release.manifest.held_out.sha256_text),
            first_differing_line(&text, data.held_out_text.as_bytes())
        ));
        failures.push(Failure::Data(files::HELD_OUT.into()));
    }
    let path = release.dir.join(files::TRAIN_SAMPLE);
    let sample = input::read_bytes(&path, "training sample", limit::CORPUS)?;
    if sample != data.train_sample.as_bytes() {
        lines.push(format!(
            "{}: not the regenerated training documents: the data differ ({})",
            files::TRAIN_SAMPLE,
            first_differing_line(&sample, data.train_sample.as_bytes())
        ));
        failures.push(Failure::Data(files::TRAIN_SAMPLE.into()));
    }

    // What `run` builds besides the weights: the architecture and the tokenizer, in every
    // loadable folder of the release.
    let config = through_text(&release::config_json(recipe))?;
    let tokenizer = through_text(&vocab::tokenizer_json(&corpus::vocabulary(&recipe.data)))?;
    let generation = release::generation_config_json();
    let mut folders = vec![String::new()];
    for step in &recipe.training.checkpoints {
        let rel = format!("{}/{}/", files::CHECKPOINTS, checkpoint_dir(*step));
        if release.dir.join(&rel).is_dir() {
            folders.push(rel);
        }
    }
    for folder in &folders {
        for (name, made, what, cap) in [
            (files::CONFIG, &config, "config", limit::CONFIG),
            (files::TOKENIZER, &tokenizer, "tokenizer", limit::TOKENIZER),
            (
                files::GENERATION,
                &generation,
                "generation config",
                limit::CONFIG,
            ),
        ] {
            // Checkpoints are written with the architecture and tokenizer only.
            if name == files::GENERATION && !folder.is_empty() {
                continue;
            }
            let rel = format!("{folder}{name}");
            let found = input::read_json(&release.dir.join(&rel), what, cap)?;
            let diffs = json_differences(&found, made);
            if !diffs.is_empty() {
                lines.push(format!(
                    "{rel}: not what the recipe makes: {}",
                    describe(&diffs, "the recipe makes")
                ));
                failures.push(Failure::File(rel));
            }
        }
    }
    Ok(failures)
}

fn to_json(v: &impl Serialize) -> Result<Value, TrainError> {
    serde_json::to_value(v).map_err(|e| TrainError::Internal(e.to_string()))
}

/// `v` as a release holds it: written as text and read back, so that a float is the one a
/// reader of the written file gets, whatever the parser's rounding.
fn through_text(v: &impl Serialize) -> Result<Value, TrainError> {
    let text = serde_json::to_string(v).map_err(|e| TrainError::Internal(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Internal(e.to_string()))
}

/// One place where a JSON document differs from what was made: the path and both values
/// (`None`: absent).
#[derive(Debug, PartialEq)]
struct Difference {
    path: String,
    found: Option<Value>,
    made: Option<Value>,
}

/// Where `found` differs from `made`, leaf by leaf; keys in any order. A number is compared
/// as a reader takes it: where an integer was made, the same integer; where a float was
/// made, the same value however it is written (`10000` for `10000.0`, `0.00001` for `1e-5`).
fn json_differences(found: &Value, made: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(String::new(), found, made, &mut out);
    out
}

fn walk(path: String, found: &Value, made: &Value, out: &mut Vec<Difference>) {
    // A key that is not a plain name (the tokenizer's "." and "=") is quoted.
    let child = |key: &str| {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match (plain, path.is_empty()) {
            (true, true) => key.to_string(),
            (true, false) => format!("{path}.{key}"),
            (false, _) => format!("{path}[{}]", Value::from(key)),
        }
    };
    match (found, made) {
        (Value::Object(f), Value::Object(m)) => {
            let mut keys: Vec<&String> = f.keys().chain(m.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (f.get(k), m.get(k)) {
                    (Some(a), Some(b)) => walk(child(k), a, b, out),
                    (a, b) => out.push(Difference {
                        path: child(k),
                        found: a.cloned(),
                        made: b.cloned(),
                    }),
                }
            }
        }
        (Value::Array(f), Value::Array(m)) if f.len() == m.len() => {
            for (i, (a, b)) in f.iter().zip(m).enumerate() {
                walk(format!("{path}[{i}]"), a, b, out);
            }
        }
        (Value::Number(a), Value::Number(b))
            if a == b || (b.is_f64() && a.as_f64() == b.as_f64()) => {}
        (a, b) if a == b => {}
        (a, b) => out.push(Difference {
            path,
            found: Some(a.clone()),
            made: Some(b.clone()),
        }),
    }
}

/// The first differences, "path found (label made)", and how many more.
fn describe(diffs: &[Difference], label: &str) -> String {
    const SHOWN: usize = 4;
    let value = |v: &Option<Value>| match v {
        None => "absent".to_string(),
        Some(v) => {
            let s = v.to_string();
            match s.char_indices().nth(72) {
                Some((cut, _)) => format!("{}…", &s[..cut]),
                None => s,
            }
        }
    };
    let mut parts: Vec<String> = diffs
        .iter()
        .take(SHOWN)
        .map(|d| {
            let at = if d.path.is_empty() {
                "the document"
            } else {
                &d.path
            };
            format!("{at} {} ({label} {})", value(&d.found), value(&d.made))
        })
        .collect();
    if diffs.len() > SHOWN {
        parts.push(format!("and {} more", diffs.len() - SHOWN));
    }
    parts.join(", ")
}

/// "line N differs" for two texts (1-based), or which is longer.
fn first_differing_line(found: &[u8], made: &[u8]) -> String {
    // Split as lines: a final newline ends the last line, it does not start another.
    fn lines(t: &[u8]) -> Vec<&[u8]> {
        let t = t.strip_suffix(b"\n").unwrap_or(t);
        t.split(|&b| b == b'\n').collect()
    }
    let (found, made) = (lines(found), lines(made));
    let (mut a, mut b) = (found.iter(), made.iter());
    let mut n = 1;
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => n += 1,
            (Some(_), Some(_)) => return format!("line {n} differs"),
            (None, None) => return "the line ends differ".into(),
            (Some(_), None) => return format!("lines from {n} on are extra"),
            (None, Some(_)) => return format!("lines from {n} on are missing"),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(found: Value, made: Value) -> Vec<String> {
        json_differences(&found, &made)
            .into_iter()
            .map(|d| d.path)
            .collect()
    }

    #[test]
    fn numbers_compare_as_a_reader_takes_them() {
        // A float made: the same value however written.
        assert!(paths(
            json!({"eps": 0.00001, "theta": 10000}),
            json!({"eps": 1e-5, "theta": 10000.0})
        )
        .is_empty());
        // An integer made: a float is not it (an integer reader refuses 89.0).
        assert_eq!(
            paths(json!({"vocab_size": 89.0}), json!({"vocab_size": 89})),
            ["vocab_size"]
        );
        assert_eq!(paths(json!({"eps": 0.5}), json!({"eps": 1e-5})), ["eps"]);
    }

    #[test]
    fn differences_name_each_leaf_and_absent_keys_in_any_order() {
        let made = json!({"a": 1, "model": {"vocab": {"cat": 1, "dog": 2}}, "list": [1, 2]});
        assert!(paths(
            json!({"list": [1, 2], "model": {"vocab": {"dog": 2, "cat": 1}}, "a": 1}),
            made.clone()
        )
        .is_empty());
        assert_eq!(
            paths(
                json!({"model": {"vocab": {"cat": 2, "dog": 1}}, "list": [1, 3], "extra": true}),
                made.clone()
            ),
            [
                "a",
                "extra",
                "list[1]",
                "model.vocab.cat",
                "model.vocab.dog"
            ]
        );
        assert_eq!(
            paths(
                json!({"list": [1], "a": 1, "model": {"vocab": {"cat": 1, "dog": 2}}}),
                made
            ),
            ["list"]
        );
        assert_eq!(
            paths(json!({"v": {".": 1}}), json!({"v": {".": 2}})),
            [r#"v["."]"#]
        );
        let diffs = json_differences(&json!({"x": 0.5}), &json!({"y": 1}));
        assert_eq!(
            describe(&diffs, "made"),
            "x 0.5 (made absent), y absent (made 1)"
        );
    }

    #[test]
    fn the_first_differing_line_is_named() {
        assert_eq!(
            first_differing_line(b"a\nb\nc\n", b"a\nx\nc\n"),
            "line 2 differs"
        );
        assert_eq!(
            first_differing_line(b"a\nb\n", b"a\nb\nc\n"),
            "lines from 3 on are missing"
        );
        assert_eq!(
            first_differing_line(b"a\nb\nc\n", b"a\nb\n"),
            "lines from 3 on are extra"
        );
    }

    #[test]
    fn the_cause_names_the_data_the_files_and_the_training() {
        let report = |failures| Report {
            verdict: Verdict::NotReproduced,
            lines: Vec::new(),
            failures,
        };
        assert_eq!(
            report(vec![Failure::Data(files::MANIFEST.into())]).cause(),
            "its data differ from what its recipe generates (data/manifest.json)"
        );
        assert_eq!(
            report(vec![
                Failure::File("config.json".into()),
                Failure::File("tokenizer.json".into())
            ])
            .cause(),
            "config.json, tokenizer.json are not what its recipe makes"
        );
        assert_eq!(
            report(vec![Failure::Training]).cause(),
            "its weights are not what its recipe trains"
        );
    }
}
