//! Writing a release: a Hub-layout directory that holds everything needed to rebuild it.
//!
//! ```text
//! config.json  model.safetensors  tokenizer.json  generation_config.json
//! README.md            model card (front matter: licence, data, base facts)
//! LICENSE              Apache-2.0, the licence of every component
//! recipe.toml          the recipe, verbatim
//! training_log.jsonl   loss, learning rate and throughput per step
//! training_run.json    threads, backend, time: the terms of the bit-identity promise
//! eval_results.json    held-out loss, head roles, ablation effect, fact recall
//! samples.txt          greedy continuations of a few prompts
//! checkpoints/step-N/  intermediate checkpoints (each a loadable Hub directory)
//! data/                manifest.json (generator, seed, sha256), held_out.txt (the
//!                      evaluation data), train_sample.txt
//! data_card.md         what the data is and how it is made
//! code/                the generator, training and evaluation code, the model's forward
//!                      pass, and the workspace manifest and lock file
//! technical_report.md  method, figures, how to rebuild
//! paper.md             a short research note on the model and what it shows
//! mof.yml              Model Openness Framework description of all of the above
//! ```
//!
//! Everything is written into a temporary sibling directory that is renamed into place at
//! the end, so an interrupted run never leaves a half-written release.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::eval::Evaluation;
use crate::recipe::Recipe;
use crate::reproduce::{RunInfo, RUN_INFO};
use crate::trainer::{safetensors_bytes, snapshot, Data, Run, StepRecord};
use crate::{corpus, vocab, TrainError};

const APACHE_2_0: &str = include_str!("LICENSE-Apache-2.0.txt");

/// The code that produced a release, copied into its `code/` folder: (path, source). The
/// training side is this crate; the architecture is glassbox-models' forward pass; the
/// workspace manifest and lock file pin every library version.
const CODE: &[(&str, &str)] = &[
    ("code/corpus.rs", include_str!("corpus.rs")),
    ("code/rng.rs", include_str!("rng.rs")),
    ("code/vocab.rs", include_str!("vocab.rs")),
    ("code/recipe.rs", include_str!("recipe.rs")),
    ("code/trainer.rs", include_str!("trainer.rs")),
    ("code/eval.rs", include_str!("eval.rs")),
    ("code/release.rs", include_str!("release.rs")),
    ("code/reproduce.rs", include_str!("reproduce.rs")),
    (
        "code/model/llama.rs",
        include_str!("../../glassbox-models/src/llama.rs"),
    ),
    (
        "code/model/decoder.rs",
        include_str!("../../glassbox-models/src/decoder.rs"),
    ),
    (
        "code/model/attention.rs",
        include_str!("../../glassbox-models/src/attention.rs"),
    ),
    (
        "code/model/mlp.rs",
        include_str!("../../glassbox-models/src/mlp.rs"),
    ),
    (
        "code/model/layers.rs",
        include_str!("../../glassbox-models/src/layers.rs"),
    ),
    (
        "code/model/ops.rs",
        include_str!("../../glassbox-models/src/ops.rs"),
    ),
    (
        "code/model/hooks.rs",
        include_str!("../../glassbox-models/src/hooks.rs"),
    ),
    ("code/Cargo.toml", include_str!("../../../Cargo.toml")),
    ("code/Cargo.lock", include_str!("../../../Cargo.lock")),
];

/// Everything a release is made of.
pub struct ReleaseParts<'a> {
    pub recipe: &'a Recipe,
    /// The recipe file's text, kept verbatim (comments included).
    pub recipe_text: &'a str,
    pub data: &'a Data,
    pub run: &'a Run,
    pub evaluation: &'a Evaluation,
}

/// Files of a release, relative to its root.
pub mod files {
    pub const CONFIG: &str = "config.json";
    pub const WEIGHTS: &str = "model.safetensors";
    pub const TOKENIZER: &str = "tokenizer.json";
    pub const RECIPE: &str = "recipe.toml";
    pub const LOG: &str = "training_log.jsonl";
    pub const EVALUATION: &str = "eval_results.json";
    pub const MANIFEST: &str = "data/manifest.json";
    pub const HELD_OUT: &str = "data/held_out.txt";
    pub const TRAIN_SAMPLE: &str = "data/train_sample.txt";
    pub const GENERATION: &str = "generation_config.json";
    pub const CHECKPOINTS: &str = "checkpoints";
}

/// Directory name of the checkpoint after `step`.
pub fn checkpoint_dir(step: usize) -> String {
    format!("step-{step:06}")
}

/// Writes the release to `out`. `out` must not exist unless `replace` is set.
pub fn write(out: &Path, parts: &ReleaseParts, replace: bool) -> Result<(), TrainError> {
    if out.exists() && !replace {
        return Err(TrainError::Release {
            path: out.display().to_string(),
            why: "already exists (pass --force to replace it)".into(),
        });
    }
    let tmp = temp_sibling(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    let result = write_into(&tmp, parts);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| TrainError::io(out, e))
}

fn temp_sibling(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "release".into());
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn put(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) -> Result<(), TrainError> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    std::fs::write(&path, bytes).map_err(|e| TrainError::io(&path, e))
}

fn pretty(v: &impl serde::Serialize) -> Result<String, TrainError> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| TrainError::Internal(e.to_string()))
}

/// The model's `config.json`: the recipe's, with the dtype stated.
pub fn config_json(recipe: &Recipe) -> serde_json::Value {
    let mut config = recipe.model.clone();
    if let Some(obj) = config.as_object_mut() {
        obj.entry("torch_dtype").or_insert("float32".into());
        obj.entry("bos_token_id").or_insert(0.into());
    }
    config
}

/// The release's `generation_config.json` (where generation starts; read by every loader).
pub fn generation_config_json() -> serde_json::Value {
    serde_json::json!({ "bos_token_id": 0 })
}

fn write_into(root: &Path, p: &ReleaseParts) -> Result<(), TrainError> {
    let config = pretty(&config_json(p.recipe))?;
    let vocab_words = corpus::vocabulary(&p.recipe.data);
    let tokenizer = pretty(&vocab::tokenizer_json(&vocab_words))?;
    let generation = pretty(&generation_config_json())?;

    put(root, files::CONFIG, &config)?;
    put(root, files::TOKENIZER, &tokenizer)?;
    put(root, files::GENERATION, &generation)?;
    put(
        root,
        files::WEIGHTS,
        safetensors_bytes(&snapshot(&p.run.varmap)?)?,
    )?;
    for (step, weights) in &p.run.checkpoints {
        let dir = format!("{}/{}", files::CHECKPOINTS, checkpoint_dir(*step));
        put(
            root,
            &format!("{dir}/{}", files::WEIGHTS),
            safetensors_bytes(weights)?,
        )?;
        put(root, &format!("{dir}/{}", files::CONFIG), &config)?;
        put(root, &format!("{dir}/{}", files::TOKENIZER), &tokenizer)?;
    }
    put(root, files::RECIPE, p.recipe_text)?;
    put(root, files::LOG, training_log(&p.run.log)?)?;
    put(root, files::EVALUATION, pretty(p.evaluation)?)?;
    let run_info = RunInfo {
        glassbox_version: env!("CARGO_PKG_VERSION").to_string(),
        backend: "cpu".to_string(),
        numerics: glassbox_kernels::NUMERICS.to_string(),
        isa: glassbox_kernels::Isa::active().to_string(),
        threads: p.run.threads,
        steps: p.run.steps_done,
        seconds: p.run.seconds,
        tokens_per_s: p.run.log.last().map(|l| l.tokens_per_s).unwrap_or(0.0),
    };
    put(root, RUN_INFO, pretty(&run_info)?)?;
    put(root, files::MANIFEST, pretty(&p.data.manifest)?)?;
    put(root, files::HELD_OUT, &p.data.held_out_text)?;
    put(root, files::TRAIN_SAMPLE, &p.data.train_sample)?;
    put(root, "data_card.md", data_card(p))?;
    for (path, source) in CODE {
        put(root, path, source)?;
    }
    put(root, "LICENSE", APACHE_2_0)?;
    put(root, "README.md", model_card(p))?;
    put(root, "technical_report.md", report(p))?;
    put(root, "paper.md", paper(p))?;
    put(root, "samples.txt", samples(p))?;
    put(root, "mof.yml", mof_yml(p))?;
    Ok(())
}

/// `training_log.jsonl`: one JSON object per step.
pub fn training_log(log: &[StepRecord]) -> Result<String, TrainError> {
    let mut s = String::new();
    for r in log {
        s += &serde_json::to_string(r).map_err(|e| TrainError::Internal(e.to_string()))?;
        s.push('\n');
    }
    Ok(s)
}

fn final_loss(run: &Run) -> f32 {
    // The mean of the last 20 steps: one batch's loss is noisy.
    let tail: Vec<f32> = run.log.iter().rev().take(20).map(|r| r.loss).collect();
    tail.iter().sum::<f32>() / tail.len().max(1) as f32
}

fn architecture(recipe: &Recipe) -> String {
    recipe.model["architectures"][0]
        .as_str()
        .unwrap_or("unknown")
        .to_string()
}

fn param_count(run: &Run) -> usize {
    snapshot(&run.varmap)
        .map(|w| w.iter().map(|(_, t)| t.elem_count()).sum())
        .unwrap_or(0)
}

/// Prompts the card offers (the Hub's `widget`; the workbench's defaults): recall from
/// context, twice with the other key, so that the pair is one of equal length whose answers
/// differ — a patching experiment with a known mechanism.
const CARD_EXAMPLES: &[(&str, &str, &str)] = &[
    ("recall from context", "x3 = v05 , x7 = v11 . x3 =", " v05"),
    ("the other key", "x3 = v05 , x7 = v11 . x7 =", " v11"),
];

/// The card's `widget` list in YAML (strings quoted as JSON, which YAML reads as written).
fn widget() -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = String::from("widget:\n");
    for (title, text, output) in CARD_EXAMPLES {
        let _ = write!(
            out,
            "- text: {}\n  example_title: {}\n  output:\n    text: {}\n",
            quote(text),
            quote(title),
            quote(output)
        );
    }
    out
}

fn model_card(p: &ReleaseParts) -> String {
    let r = p.recipe;
    let m = &p.data.manifest;
    let e = p.evaluation;
    let mut s = String::new();
    let _ = write!(
        s,
        "---\nlicense: apache-2.0\nlibrary_name: glassbox\npipeline_tag: text-generation\n\
         tags:\n- fully-open\n- synthetic-data\n- interpretability\n\
         datasets:\n- {gen}\n\
         dataset_generator: {gen}\ndataset_seed: {seed}\ndataset_sha256: {sha}\n\
         training_recipe: recipe.toml\n{widget}---\n\n",
        gen = m.generator,
        seed = m.config.seed,
        sha = m.train.sha256_token_ids,
        widget = widget(),
    );
    let _ = writeln!(s, "# {}\n", r.name);
    let _ = writeln!(
        s,
        "A small {arch} ({params} parameters) trained by `glassbox train` on a synthetic corpus \
         whose mechanisms are known in advance, so that interpretability analyses have a ground \
         truth to find. Every component is released under Apache-2.0: weights, intermediate \
         checkpoints, tokenizer, data generator and its output hashes, training code, recipe, \
         training log and evaluation.\n",
        arch = architecture(r),
        params = param_count(p.run),
    );
    let _ = writeln!(s, "## Model\n");
    let info = p.run.model.info();
    let _ = writeln!(
        s,
        "| | |\n| --- | --- |\n| architecture | {} |\n| layers | {} |\n| d_model | {} |\n| heads | {} (d_head {}) |\n| d_mlp | {} |\n| vocabulary | {} words (word-level `tokenizer.json`, `<bos>` prepended) |\n| context | {} tokens |\n",
        info.architecture, info.n_layers, info.d_model, info.n_heads, info.d_head, info.d_mlp,
        info.d_vocab, r.data.seq_len + 1
    );
    let _ = writeln!(s, "## Data\n");
    let _ =
        writeln!(
        s,
        "Generated by `{}` (code in `code/corpus.rs`, described in `data_card.md`) from seed {}: \
         {} training documents ({} tokens, sha256 of token ids `{}`) and {} held-out documents \
         (`data/held_out.txt`). Nothing was scraped; the data contains no personal information.\n",
        m.generator, m.config.seed, m.train.documents, m.train.tokens, m.train.sha256_token_ids,
        m.held_out.documents
    );
    let _ = writeln!(s, "## Training\n");
    let _ = writeln!(
        s,
        "AdamW (lr {}, betas {}/{}, weight decay {} on matrices), {} warmup steps then cosine decay \
         to {}× the peak; batch {} × {} tokens; {} steps; seed {}; {} CPU thread(s). \
         Training took {:.0} s ({:.0} tokens/s). Final training loss (mean of the last 20 steps) {:.3}. \
         Checkpoints after steps {:?} are in `checkpoints/`.\n",
        r.optimizer.lr, r.optimizer.beta1, r.optimizer.beta2, r.optimizer.weight_decay,
        r.schedule.warmup_steps, r.schedule.min_lr_ratio, r.training.batch_size, r.data.seq_len,
        p.run.steps_done, r.seed, p.run.threads, p.run.seconds,
        p.run.log.last().map(|l| l.tokens_per_s).unwrap_or(0.0), final_loss(p.run),
        r.training.checkpoints
    );
    let _ = writeln!(s, "## Evaluation\n\n{}", e.markdown());
    let _ = writeln!(s, "## Rebuild\n");
    let _ = writeln!(
        s,
        "```sh\nglassbox reproduce DIR            # regenerate the data, retrain, compare\n\
         glassbox reproduce DIR --steps {}  # the first steps only, bit for bit\n```\n",
        r.training.checkpoints.first().copied().unwrap_or(1)
    );
    let _ = writeln!(
        s,
        "## Intended use and limitations\n\nA teaching and testing model: it knows only its \
         synthetic vocabulary and is not useful for any natural-language task.\n"
    );
    s
}

fn data_card(p: &ReleaseParts) -> String {
    let m = &p.data.manifest;
    let c = &m.config;
    let seg = &m.train.segments;
    format!(
        "# Data card: {gen}\n\n\
         Synthetic text made by `code/corpus.rs` from seed {seed}; regenerate it with \
         `glassbox reproduce` (which checks the hashes in `data/manifest.json`). Licence: Apache-2.0.\n\n\
         ## What it contains\n\n\
         Each document is exactly {len} words (the model sees `<bos>` first). Segments are drawn \
         with weights {mix:?} (sentence, fact, bindings, span):\n\n\
         - **sentence** — `det [adj] noun verb det [adj] noun .` from a fixed word list (grammar).\n\
         - **fact** — `kNN is vMM .` from one fixed table of {keys} keys (see `fact_table` in \
           `data/manifest.json`): recalled from the weights.\n\
         - **bindings** — `xA = vP , xB = vQ .` with fresh values per document; one binding is \
           echoed later (`xB = vQ .`): recalled from context.\n\
         - **span** — {lo}–{hi} words drawn uniformly from the vocabulary (all but `is` and `=`), \
           echoed later: induction.\n\n\
         Echoes follow after 0–2 further segments. The training split holds {sent} sentences, \
         {facts} facts, {binds} binding groups, {spans} spans and {echoes} echoes; {repdocs} documents \
         ({repfrac} of them, by the recipe's `repeat_documents`) are instead one random span \
         repeated end to end.\n\n\
         ## Splits\n\n\
         | split | documents | tokens | sha256 of text | sha256 of token ids |\n| --- | --- | --- | --- | --- |\n\
         | train | {tn} | {tt} | `{th}` | `{ti}` |\n| held out | {hn} | {ht} | `{hh}` | `{hids}` |\n\n\
         `data/held_out.txt` is the held-out split (the evaluation data); `data/train_sample.txt` the first \
         training documents. No person, website or dataset is the source of any of it.\n",
        gen = m.generator,
        seed = c.seed,
        len = c.seq_len,
        mix = c.mix,
        keys = c.fact_keys,
        lo = c.span_len[0],
        hi = c.span_len[1],
        sent = seg.sentences,
        facts = seg.facts,
        binds = seg.bindings,
        spans = seg.spans,
        echoes = seg.echoes,
        repdocs = seg.repeat_documents,
        repfrac = c.repeat_documents,
        tn = m.train.documents,
        tt = m.train.tokens,
        th = m.train.sha256_text,
        ti = m.train.sha256_token_ids,
        hn = m.held_out.documents,
        ht = m.held_out.tokens,
        hh = m.held_out.sha256_text,
        hids = m.held_out.sha256_token_ids,
    )
}

fn report(p: &ReleaseParts) -> String {
    let r = p.recipe;
    format!(
        "# {name}: technical report\n\n\
         ## Goal\n\nA fully open reference model for glassbox: small enough to train on two CPU \
         cores in minutes, with mechanisms planted in its data (induction, in-context and \
         in-weights key→value recall, a grammar) so that interpretability tools can be checked \
         against a known answer.\n\n\
         ## Method\n\nArchitecture {arch} as given by `config.json`; weights initialised from \
         N(0, {std}²) by a SplitMix64 stream per tensor (norm weights 1, biases 0); data from \
         `code/corpus.rs` (see `data_card.md`); next-token cross-entropy; AdamW with linear \
         warmup and cosine decay (`recipe.toml`). The run is deterministic: the same recipe, \
         seed, thread count and backend give bit-identical weights.\n\n\
         ## Results\n\nTraining: {steps} steps in {secs:.0} s on {threads} thread(s), \
         final training loss {loss:.3} (`training_log.jsonl`); evaluation in `eval_results.json`.\n\n{eval}\n\
         ## Reproducing\n\n`glassbox reproduce .` regenerates the data, checks its sha256, \
         retrains and compares with this release: bit for bit at a checkpoint when thread count \
         and backend match, otherwise by final loss, head roles and next-token KL on \
         `data/held_out.txt`.\n",
        name = r.name,
        arch = architecture(r),
        std = r.init.std,
        steps = p.run.steps_done,
        secs = p.run.seconds,
        threads = p.run.threads,
        loss = final_loss(p.run),
        eval = p.evaluation.markdown(),
    )
}

/// The Model Openness Framework description (MOT schema) of the release.
fn mof_yml(p: &ReleaseParts) -> String {
    let components: &[(&str, &str, &str)] = &[
        ("Model architecture", "Well commented code for the model's architecture", "code/model/llama.rs"),
        ("Data preprocessing code", "Code for data cleansing, normalization, and augmentation", "code/corpus.rs"),
        ("Training code", "Code used for training the model", "code/trainer.rs"),
        ("Inference code", "Code used for running the model to make predictions", "code/model/"),
        ("Evaluation code", "Code used for evaluating the model", "code/eval.rs"),
        ("Supporting libraries and tools", "Libraries and tools used in the model's development", "code/Cargo.lock"),
        ("Model parameters (Final)", "Trained model parameters, weights and biases", "model.safetensors"),
        ("Model parameters (Intermediate)", "Trained model parameters, weights and biases", "checkpoints/"),
        ("Datasets", "Training, validation and testing datasets used for the model", "data/manifest.json"),
        ("Evaluation data", "Data used for evaluating the model", "data/held_out.txt"),
        ("Model metadata", "Any model metadata including training configuration and optimizer states", "training_run.json"),
        ("Sample model outputs", "Examples of outputs generated by the model", "samples.txt"),
        ("Model card", "Model details including performance metrics, intended use, and limitations", "README.md"),
        ("Data card", "Documentation for datasets including source, characteristics, and preprocessing details", "data_card.md"),
        ("Technical report", "Technical report detailing capabilities and usage instructions for the model", "technical_report.md"),
        ("Research paper", "Research paper detailing the development and capabilities of the model", "paper.md"),
        ("Evaluation results", "The results from evaluating the model", "eval_results.json"),
    ];
    let mut s = format!(
        "framework:\n  name: 'Model Openness Framework'\n  version: '1.0'\n  date: '2024-12-15'\n\
         release:\n  name: '{name}'\n  version: '{version}'\n  date: '{date}'\n  type: language\n\
         \x20 architecture: 'transformer decoder'\n  treatment: pre-trained\n  origin: ''\n\
         \x20 producer: glassbox\n  contact: ''\n  license:\n\
         \x20   distribution:\n      name: Apache-2.0\n      path: LICENSE\n\
         \x20   code:\n      name: Apache-2.0\n      path: LICENSE\n\
         \x20   data:\n      name: Apache-2.0\n      path: LICENSE\n\
         \x20   document:\n      name: Apache-2.0\n      path: LICENSE\n  components:\n",
        name = p.recipe.name,
        version = env!("CARGO_PKG_VERSION"),
        date = today_utc(),
    );
    for (name, description, path) in components {
        let _ = write!(
            s,
            "    -\n      name: '{name}'\n      description: \"{description}\"\n      license: Apache-2.0\n      license_path: LICENSE\n      component_path: {path}\n"
        );
    }
    s
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock (days-to-civil, Hinnant's algorithm).
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn samples(p: &ReleaseParts) -> String {
    let mut s =
        String::from("# Greedy continuations by the final model (prompt => continuation)\n");
    for (prompt, continuation) in &p.evaluation.samples {
        s += &format!("{prompt} => {continuation}\n");
    }
    s
}

fn paper(p: &ReleaseParts) -> String {
    let e = p.evaluation;
    let info = p.run.model.info();
    let best = e
        .heads
        .iter()
        .max_by(|a, b| a.induction.total_cmp(&b.induction))
        .map(|h| format!("{:.2} (layer {}, head {})", h.induction, h.layer, h.head))
        .unwrap_or_else(|| "n/a".into());
    format!(
        "# Planted mechanisms in a fully open toy language model\n\n\
         ## Abstract\n\nWe train a {layers}-layer, {heads}-head {arch} ({params} parameters) on a synthetic \
         corpus in which three mechanisms are planted by construction — induction over repeated \
         spans, key→value recall from context, and key→value recall from the weights — and release \
         every component needed to rebuild it bit for bit: data generator and seed, code, recipe, \
         training log, intermediate checkpoints and weights. The trained model has an induction \
         head with score {best}; zero-ablating the induction heads raises the loss on repeated \
         random tokens from {clean:.3} to {abl:.3} nats, while ablating as many other heads of the \
         same layers gives {other:.3}. Facts are recalled from the weights with {fact:.0} % accuracy.\n\n\
         ## Method\n\nSee `technical_report.md` (training), `data_card.md` (data) and \
         `code/` (everything that ran). Head scores follow Olsson et al. (2022), *In-context \
         Learning and Induction Heads*; the openness description follows the Model Openness \
         Framework (White et al., 2024).\n\n\
         ## Results\n\n{md}\n\
         ## Reproducibility\n\n`glassbox reproduce .` reruns the recipe from the data seed and \
         compares: bit for bit at any checkpoint under the same thread count and backend, by loss, \
         head roles and KL otherwise.\n",
        layers = info.n_layers,
        heads = info.n_heads,
        arch = architecture(p.recipe),
        params = param_count(p.run),
        clean = e.repeat_loss_clean,
        abl = e.repeat_loss_induction_ablated,
        other = e.repeat_loss_other_heads_ablated,
        fact = 100.0 * e.fact_recall_accuracy,
        md = e.markdown(),
    )
}
