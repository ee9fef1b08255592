//! Openness audit of a model release: which tier it is in (closed, open weights, open
//! source), why, what is missing for the next tier, its Model Openness Framework class,
//! its reading under the EU AI Act's open-source exception — every claim tied to evidence.
//!
//! # Design
//!
//! Three inputs become one [`audit::Release`] (the evidence for each of MOF's 17
//! components plus the release's licences and restriction clauses), and one function,
//! [`audit::Release::audit`], turns evidence into a verdict:
//!
//! - [`snapshot::gather`] reads a local Hub snapshot directory;
//! - [`snapshot::from_mot_file`] reads a Model Openness Tool model file (`*.yml`);
//! - [`registry::lookup`] finds a well-known release in the built-in registry
//!   (`data/registry.yaml`, each fact with its source, its date and how it is known — verified
//!   against stored sources or recalled — shown with it). A name that stands for several
//!   releases with different terms (`falcon`, `mistral`, `glm-4`…) is refused with the
//!   candidates listed ([`registry::family`]).
//!
//! Modules: [`licenses`] (ids, SPDX expressions, licence texts, restriction clauses),
//! [`content`] (what a file does or says: code roles, SPDX headers, data statements),
//! [`third_party`] (licences of declared datasets and libraries),
//! [`mof`] (MOT's scoring, reproduced exactly), [`mot`] (MOT's file format), [`audit`]
//! (the verdict), [`render`] (terminal, JSON, Markdown, HTML, SVG badge).
//!
//! Every component's evidence is one of: **present** (a file in the directory, by path),
//! **declared** (the card or a MOT file claims it: a link or a field, not verifiable
//! offline), **registry** (a built-in fact with source URL and date), or **absent**. A
//! declaration is never reported as verified.
//!
//! # Tiers
//!
//! - `closed`: no downloadable weights (Model parameters (Final) absent).
//! - `open-source`: the Open Source AI Definition 1.0 is met: weights, training code,
//!   data-processing code and code to run the model (architecture or inference code),
//!   each under an OSI-approved licence; and data information — a data card (complete
//!   description of the training data) and the list of training data with where to get
//!   it (the Datasets component, e.g. the card's `datasets:` list) — with the *information*
//!   under open terms (the data card's, or the model card's where the list is given: OSI-approved,
//!   FSF-libre or an open-data licence) and no card saying part of the data is withheld. OSAID
//!   does not ask for the data itself to be openly licensed, so the datasets' own licences do
//!   not decide the tier. A use restriction binding the weights (an acceptable-use policy,
//!   non-commercial terms, a user threshold, naming requirements… found in the release's terms
//!   files or known of its licence) rules out `open-source` whatever the licence: the weights'
//!   terms are then *restricted*.
//!
//! The tier and the MOF class are separate rules: the MOF class (below) grades every
//! component's own licence, the datasets' included, as MOT computes it.
//! - `open-weights`: everything else with weights; the weights' terms are *permissive*
//!   (OSI-approved) or *restricted* (with the restrictions found), or *unknown*.
//!
//! # What counts as evidence in a snapshot directory
//!
//! Paths are relative to the directory; matching is case-insensitive; hidden entries are
//! skipped. Licences resolve as MOT does: the component's own licence (from `mof.yml`),
//! else the release licence for its content type, else the distribution licence.
//!
//! | Component (MOT id) | present when the directory has |
//! |---|---|
//! | Model parameters (Final) (10) | a weight file: `*.safetensors`, `*.gguf`, `*.bin`, `*.pt`, `*.pth`, `*.ckpt`, `*.onnx`, `*.h5`, `*.msgpack`, `*.npz` |
//! | Model parameters (Intermediate) (24) | a weight file under `checkpoints/`, `intermediate/` or a `step*` directory |
//! | Model metadata (17) | `training_args.bin`, `trainer_state.json`, `optimizer*` |
//! | Training code (7) | code (`py`, `rs`, `sh`, `ipynb`, `c`, `cpp`, `cu`, `jl`, `js`, `ts`, `go`) whose *text* runs a training loop (an optimiser step, a backward pass, a trainer's `train()`) or launches one (`torchrun`, `deepspeed`, `accelerate launch`… on a line naming a train script) — never by its name: a tokenizer trainer is data preprocessing, a script that only evaluates is evaluation code, a recipe configures a trainer and is not one ([`content::code_role`]); code that trains but starts from the released model itself — it loads the release's own weights by its Hub id, its name or its folder (`./`) — fine-tunes this release (a fine-tuning example, noted) and did not produce it, so it is not training code ([`content::starts_from_release`]; what the release is called: its folder's name or Hub cache id, the card's `model_name`/`model-index` names and its Hub links to the script, `mof.yml`'s name, never the card's `base_model`); a `mof.yml` path listed as training code must pass the same test |
//! | Data preprocessing code (16) | code that trains a tokenizer; code or `toml`/`yaml` named `*preprocess*`, `*prepare*`, `*data_gen*`, `*datagen*`; code `*tokeniz*`; anything under `data_processing/` or `preprocessing/` |
//! | Model architecture (9) | code named `modeling*`, `model.*`, `configuration_*` |
//! | Inference code (8) | code named `infer*`, `generate*`, `run*`; declared by front matter `library_name` |
//! | Evaluation code (18) | code named `eval*`, or whose text only evaluates |
//! | Evaluation data (19) | anything under `eval_data/`; data files under `evaluation/` |
//! | Evaluation results (12) | `eval_results*`, `evaluation_results*`, `results.*`; front matter `model-index` |
//! | Model card (13) | `README.md` |
//! | Data card (14) | `data_card*`, `datacard*`, `datasheet*` |
//! | Technical report (11) | `*technical_report*`, `*tech_report*` |
//! | Research paper (21) | `paper*.pdf` |
//! | Datasets (15) | data files under `data/`, `dataset/`, `datasets/`; declared by front matter `datasets:` |
//! | Supporting libraries and tools (22) | `requirements.txt`, `pyproject.toml`, `Cargo.toml`, `environment.yml`, `setup.py` |
//! | Sample model outputs (20) | `sample_output*`, `samples*` |
//!
//! Card body links declare (at the card file's own line numbers), the words introducing a link
//! first ("[the datasheet](https://arxiv.org/…)" is a data card): a link to `arxiv.org`,
//! `doi.org`, `aclanthology.org` or `openreview.net` → Research paper; any link on a line that
//! says "technical report" →
//! Technical report, "training code"/"training script"/"training recipe" → Training code, and so
//! is a link to a code repository (`github.com`, `gitlab.com`, …) the words before it introduce
//! as training ("Core repo (training, inference, …):", "Pre-training code:", "Training:", but
//! not "Training data:"),
//! "preprocessing code"/"data processing code" → Data preprocessing code, "data
//! card"/"datasheet" → Data card, "evaluation code" → Evaluation code.
//!
//! Release licences: front matter `license` (a Hub id, an SPDX id or expression, or a list),
//! with `license_name` used when `license: other`, and `license_link`; top-level `LICENSE*`,
//! `LICENCE*`, `COPYING*` texts are identified (`LICENSE-DATA*`/`DATA_LICENSE*` set the data
//! licence, `*CODE*` the code licence, `*DOC*` the document licence). A text is a licence only
//! if it is that licence's whole text up to a few words (a title, a holder's name): a standard
//! licence with terms added is reported as a variant, its terms unknown, with the added lines
//! quoted. A file identified as the card's licence, or where the card names none, decides; a
//! file and a card naming different licences both apply (the more restrictive reading, noted);
//! a file that cannot be identified leaves the card's licence (noted). `NOTICE*`, `USE_POLICY*` and `*_LICENSE*` files
//! are searched for restriction clauses too.
//!
//! **A component's licence comes from evidence about that component, never from another's.**
//! For a file: an `SPDX-License-Identifier` header in it; else a licence file in its folder or
//! the nearest folder above (at the top, the file scoped to its content type — or the
//! release's own licence for that type in `mof.yml` — before the plain `LICENSE`); else the
//! repository's declared licence (card `license`). A licence text that cannot be identified
//! makes the terms *unknown*. For something declared but not shipped: a licence stated on the
//! same card line ("released under the MIT License"), a component licence in `mof.yml`, or a
//! sourced registry fact — the datasets a card lists keep their own licences
//! (`data/third_party.yaml`, by Hub id) and the `library_name` its library's; otherwise the
//! terms are unknown. An unknown licence on a component OSAID requires keeps the release out of
//! `open-source`, and the report says which file or declaration made it unknown.
//!
//! **Data information is read, not just found**: sentences of the model card and data cards
//! saying part of the training data is proprietary, licensed, internal, undisclosed or
//! unobtainable are evidence against complete data information, quoted with `file:line`
//! (negations such as "no proprietary data was used" are told apart; [`content`]).
//!
//! MOT counts model parameters as *data*: when a `mof.yml` sets a release-level `data`
//! licence (say CDLA for the datasets), give both "Model parameters" components their own
//! `license:` (e.g. Apache-2.0), or they resolve to the data licence.
//!
//! A `mof.yml` (or `mof.yaml`) in MOT's schema lists components and their licences: a
//! `component_path` that is a relative path counts as present when it exists (and as
//! absent, with a note, when it does not), a URL or no path counts as declared. So a
//! release that ships `LICENSE` (Apache-2.0), a card with front matter (`license:
//! apache-2.0`, `datasets:`), its training code/recipe, data generator, modeling code,
//! data card and a `mof.yml` naming all 17 components with local paths audits as
//! `open-source` and MOF Class I from the directory alone.
//!
//! # MOF class
//!
//! For a MOT file the class is MOT's, computed from the ids as written (see [`mof`]); for
//! a directory or a registry entry it is computed by the same rules from the available
//! components with canonical licence ids.

pub mod audit;
pub mod card;
mod card_links;
pub mod content;
mod identity;
pub mod licenses;
pub mod mof;
pub mod mot;
mod paths;
pub mod registry;
pub mod render;
pub mod snapshot;
pub mod third_party;

use std::path::{Path, PathBuf};

pub use audit::{Audit, EvidenceKind, Tier};

/// Errors of the audit library.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {problem}")]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("{path}: model card front matter: {message}")]
    FrontMatter { path: PathBuf, message: String },
    #[error("`{0}` is not a directory, a MOT model file (.yml/.yaml) or a model id in the registry (`glassbox audit --list` shows the registry)")]
    UnknownTarget(String),
    /// A name that stands for several releases with different terms.
    #[error("`{name}` names several releases with different terms{}; audit one of: {}", note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(), candidates.join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
        note: Option<String>,
    },
    /// A file refused by the input policy ([`glassbox_formats::input`]).
    #[error(transparent)]
    Input(#[from] glassbox_formats::FormatError),
    /// A report could not be written (the error names the file).
    #[error(transparent)]
    Write(glassbox_formats::FormatError),
}

impl AuditError {
    /// True when the user's input is at fault (exit code 2); a failed write only when the
    /// place to write was the user's choice and cannot hold a file.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            AuditError::Write(e) => e.is_invalid_input(),
            _ => true,
        }
    }
}

/// Audits a directory, a MOT file or a registry id, in that order of interpretation.
pub fn audit_target(target: &str) -> Result<Audit, AuditError> {
    let path = Path::new(target);
    if path.is_dir() {
        return Ok(snapshot::gather(path)?.audit());
    }
    let is_yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    );
    if path.is_file() && is_yaml {
        return Ok(snapshot::from_mot_file(path)?.audit());
    }
    if let Some(entry) = registry::lookup(target) {
        return Ok(entry.release().audit());
    }
    if let Some(family) = registry::family(target) {
        return Err(AuditError::Ambiguous {
            name: target.to_string(),
            candidates: family.candidates.clone(),
            note: family.note.clone(),
        });
    }
    if path.exists() || is_yaml || target.starts_with('.') || target.starts_with('/') {
        // A file that is there but not one glassbox audits is no missing file.
        let (kind, problem) = if path.exists() {
            (
                std::io::ErrorKind::InvalidInput,
                "not a directory or a .yml/.yaml MOT file",
            )
        } else {
            (std::io::ErrorKind::NotFound, "no such file or directory")
        };
        return Err(AuditError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(kind, problem),
        });
    }
    Err(AuditError::UnknownTarget(target.to_string()))
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, then
/// a rename, so a failure never leaves a half-written report.
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), AuditError> {
    glassbox_formats::output::write_bytes(path, contents.as_bytes()).map_err(AuditError::Write)
}
