//! A model through the commands that run one, and extreme arguments on an intact one.

use super::*;

/// The commands a model is put through (one, picked by the case's seed).
pub(crate) fn model_commands(dir: &str, out: &Path, rng: &mut Rng) -> Vec<String> {
    let prompt = "When Mary and John went to the store, John gave a drink to";
    let trace_out = out.join("trace.safetensors");
    let steer_out = out.join("vector.gguf");
    let quantize_out = out.join("quantized.gguf");
    let text = root().join("models/reference/data/train_sample.txt");
    let text = text.to_str().unwrap().to_string();
    let all: Vec<Vec<String>> = vec![
        vec!["inspect", dir, "--json"],
        vec!["run", dir, "--prompt", prompt, "--json"],
        // The other numerics (a GGUF's quantized products widened instead of quantized).
        vec![
            "run",
            dir,
            "--prompt",
            prompt,
            "--numerics",
            "f32",
            "--json",
        ],
        vec!["generate", dir, "--prompt", "The", "--max-tokens", "3"],
        vec![
            "trace",
            dir,
            "--prompt",
            prompt,
            "--hooks",
            "blocks.*.hook_resid_post",
            "--out",
            trace_out.to_str().unwrap(),
        ],
        vec!["lens", dir, "--prompt", prompt, "--json"],
        vec!["heads", dir, "--batch", "2", "--seq-len", "8", "--json"],
        vec![
            "attribute",
            dir,
            "--prompt",
            prompt,
            "--target",
            "#5",
            "--json",
        ],
        vec![
            "patch",
            dir,
            "--clean",
            prompt,
            "--corrupt",
            "When Mary and John went to the store, Mary gave a drink to",
            "--answer",
            "#5",
            "--wrong",
            "#6",
            "--json",
        ],
        vec![
            "ablate",
            dir,
            "--text",
            prompt,
            "--target",
            "L0H0,L0MLP",
            "--method",
            "zero",
            "--json",
        ],
        vec![
            "steer",
            dir,
            "--positive",
            "Paris is big",
            "--negative",
            "Rome is big",
            "--layers",
            "1-1",
            "--out",
            steer_out.to_str().unwrap(),
        ],
        vec!["experts", dir, "--prompt", prompt, "--json"],
        vec!["diff", dir, dir, "--json"],
        // A damaged model against itself, and against the undamaged parity model.
        vec![
            "drift",
            dir,
            dir,
            "--text",
            &text,
            "--max-tokens",
            "24",
            "--context",
            "12",
            "--head-seq-len",
            "4",
            "--head-batch",
            "1",
            "--json",
        ],
        vec![
            "quantize",
            dir,
            "--to",
            "q4_k_m",
            "--out",
            quantize_out.to_str().unwrap(),
        ],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    rng.pick(&all).clone()
}

/// Extreme arguments on an intact model.
pub(crate) fn extreme_arguments(dir: &str, rng: &mut Rng) -> (String, Vec<String>) {
    let n = rng
        .pick(&[
            "0",
            "-1",
            "1",
            "4294967296",
            "18446744073709551615",
            "99999999999999999999",
            "1e9",
            "nan",
            "x",
            "",
        ])
        .to_string();
    let gpt2 = gpt2();
    let tokens = root().join("tests/fixtures/saelens/tokens.safetensors");
    let tokens = tokens.to_str().unwrap();
    let sae = root().join("tests/fixtures/saelens/topk");
    let sae = sae.to_str().unwrap();
    let reference = root().join("models/reference");
    let reference = reference.to_str().unwrap();
    let text = root().join("models/reference/data/train_sample.txt");
    let text = text.to_str().unwrap();
    let args: Vec<&str> = match rng.below(15) {
        12 => vec![
            "drift",
            reference,
            reference,
            "--text",
            text,
            "--context",
            &n,
            "--json",
        ],
        13 => vec![
            "drift",
            reference,
            reference,
            "--text",
            text,
            "--max-tokens",
            &n,
            "--json",
        ],
        14 => vec![
            "drift",
            reference,
            reference,
            "--text",
            text,
            "--max-tokens",
            "64",
            "--head-seq-len",
            &n,
            "--json",
        ],
        6 => vec![
            "features", &gpt2, "--sae", sae, "--tokens", tokens, "--top", &n, "--json",
        ],
        7 => vec![
            "features",
            &gpt2,
            "--sae",
            sae,
            "--tokens",
            tokens,
            "--contexts",
            &n,
            "--json",
        ],
        8 => vec![
            "sae",
            "eval",
            &gpt2,
            "--sae",
            sae,
            "--tokens",
            tokens,
            "--batch-size",
            &n,
            "--json",
        ],
        9 => vec![
            "sae",
            "train",
            &gpt2,
            "--hook",
            "blocks.0.hook_resid_post",
            "--arch",
            "topk",
            "--d-sae",
            &n,
            "--k",
            "4",
            "--cache",
            "/nonexistent",
            "--out",
            "/nonexistent/out",
        ],
        10 => vec![
            "lens",
            dir,
            "--prompt",
            "The Eiffel Tower",
            "--sae",
            sae,
            "--top",
            &n,
        ],
        11 => vec![
            "generate",
            dir,
            "--prompt",
            "The",
            "--max-tokens",
            "2",
            "--top-k",
            &n,
        ],
        0 => vec!["heads", dir, "--batch", &n],
        1 => vec!["heads", dir, "--seq-len", &n],
        2 => vec!["generate", dir, "--prompt", "The", "--max-tokens", &n],
        3 => vec![
            "generate",
            dir,
            "--prompt",
            "The",
            "--max-tokens",
            "2",
            "--temperature",
            &n,
        ],
        4 => vec!["lens", dir, "--prompt", "The Eiffel Tower", "--top", &n],
        _ => vec!["run", dir, "--tokens", &n],
    };
    (
        format!("argument {n}"),
        args.into_iter().map(String::from).collect(),
    )
}
