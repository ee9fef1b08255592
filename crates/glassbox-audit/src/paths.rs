//! What a file of a release is, by its path (and, for code, by what it does): a component's
//! evidence, a licence file and the scope it sets, the release's terms. The rules are the
//! crate docs'; [`crate::snapshot`] applies them to the files it lists.

use crate::content::CodeRole;

/// Extensions of weight files.
const WEIGHT_EXTENSIONS: &[&str] = &[
    "safetensors",
    "gguf",
    "bin",
    "pt",
    "pth",
    "ckpt",
    "onnx",
    "h5",
    "msgpack",
    "npz",
];

fn file_name(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or(rel).to_lowercase()
}

/// Source files whose text is read for what they do.
pub(crate) fn is_code_file(rel: &str) -> bool {
    let name = file_name(rel);
    let ext = name.rsplit('.').next().unwrap_or("");
    matches!(
        ext,
        "py" | "rs" | "sh" | "ipynb" | "c" | "cpp" | "cu" | "jl" | "js" | "ts" | "go"
    )
}

/// Which component a file is evidence of, by the rules in the crate docs. Code counts as
/// training code by what it does (`role`), never by its name.
pub(crate) fn component_of(rel: &str, role: Option<CodeRole>) -> Option<u32> {
    let lower = rel.to_lowercase();
    let name = file_name(rel);
    let ext = name.rsplit('.').next().unwrap_or("");
    let stem = name.split('.').next().unwrap_or("");
    let in_dir = |d: &str| lower.starts_with(&format!("{d}/")) || lower.contains(&format!("/{d}/"));
    let is_code = is_code_file(rel);
    match role {
        Some(CodeRole::Training) => return Some(7),
        Some(CodeRole::TokenizerTraining) => return Some(16),
        _ => {}
    }
    if name == "training_args.bin" || name == "trainer_state.json" || stem.starts_with("optimizer")
    {
        return Some(17); // metadata
    }
    let intermediate = in_dir("checkpoints")
        || in_dir("intermediate")
        || lower.contains("/step")
        || lower.starts_with("step");
    if intermediate && WEIGHT_EXTENSIONS.contains(&ext) {
        return Some(24);
    }
    if WEIGHT_EXTENSIONS.contains(&ext) && !name.starts_with("training_args") {
        return Some(10);
    }
    if (is_code || matches!(ext, "toml" | "yaml" | "yml"))
        && (stem.contains("preprocess")
            || stem.contains("prepare")
            || stem.contains("data_gen")
            || stem.contains("datagen")
            || stem.contains("tokeniz") && is_code)
    {
        return Some(16);
    }
    if in_dir("data_processing") || in_dir("preprocessing") {
        return Some(16);
    }
    if is_code
        && (stem.starts_with("modeling") || stem == "model" || stem.starts_with("configuration_"))
    {
        return Some(9);
    }
    if is_code
        && (stem.starts_with("infer") || stem.starts_with("generate") || stem.starts_with("run"))
    {
        return Some(8);
    }
    if stem.starts_with("eval_results")
        || stem.starts_with("evaluation_results")
        || stem == "results"
    {
        return Some(12);
    }
    if is_code && (stem.starts_with("eval") || role == Some(CodeRole::Evaluation)) {
        return Some(18);
    }
    if in_dir("eval_data")
        || (in_dir("evaluation") && matches!(ext, "jsonl" | "json" | "csv" | "parquet" | "txt"))
    {
        return Some(19);
    }
    if stem.starts_with("data_card")
        || stem.starts_with("datacard")
        || stem.starts_with("datasheet")
    {
        return Some(14);
    }
    if stem.contains("technical_report") || stem.contains("tech_report") {
        return Some(11);
    }
    if stem.starts_with("paper") && ext == "pdf" {
        return Some(21);
    }
    // An evaluation split under data/ is evaluation data, never training data.
    let eval_split = ["held_out", "heldout", "eval", "test", "valid", "dev"]
        .iter()
        .any(|s| stem.contains(s));
    if eval_split
        && (in_dir("data") || in_dir("dataset") || in_dir("datasets"))
        && matches!(ext, "jsonl" | "json" | "parquet" | "arrow" | "txt" | "csv")
    {
        return Some(19);
    }
    if (in_dir("data") || in_dir("dataset") || in_dir("datasets"))
        && matches!(
            ext,
            "jsonl" | "json" | "parquet" | "arrow" | "txt" | "csv" | "bin" | "tar" | "gz" | "zst"
        )
    {
        return Some(15);
    }
    if matches!(
        name.as_str(),
        "requirements.txt" | "pyproject.toml" | "cargo.toml" | "environment.yml" | "setup.py"
    ) {
        return Some(22);
    }
    if stem.starts_with("sample_output") || stem.starts_with("samples") {
        return Some(20);
    }
    None
}

/// Which release-level licence a licence file sets, by its name.
pub(crate) fn license_scope(rel: &str) -> Option<&'static str> {
    let name = file_name(rel);
    if rel.contains('/') {
        return None;
    }
    let is_license =
        name.starts_with("license") || name.starts_with("licence") || name.starts_with("copying");
    let scoped = |s: &str| name.contains(s);
    if is_license || scoped("_license") || scoped("-license") {
        if scoped("data") {
            return Some("data");
        }
        if scoped("code") {
            return Some("code");
        }
        if scoped("doc") {
            return Some("document");
        }
        if is_license {
            return Some("distribution");
        }
    }
    None
}

pub(crate) fn is_terms_file(rel: &str) -> bool {
    let name = file_name(rel);
    !rel.contains('/')
        && (name.starts_with("license")
            || name.starts_with("licence")
            || name.starts_with("copying")
            || name.starts_with("notice")
            || name.starts_with("use_policy")
            || name.contains("_license"))
}

/// A licence, copyright or notice file (any folder).
pub(crate) fn is_license_file(rel: &str) -> bool {
    let name = file_name(rel);
    name.starts_with("license") || name.starts_with("licence") || name.starts_with("copying")
}
