//! Every command on the GGUF files llama.cpp made (`tests/fixtures/llamacpp/`): `inspect`
//! (with statistics), `diff` (F16 against a quantized file of the same model), `run`, `trace`,
//! `generate`, and the analyses `lens`, `attribute`, `heads`, `patch`, `ablate`, `steer`,
//! `experts` — for each model, on its F16 file and on one quantized file (gpt-oss' MXFP4 file:
//! that one). Each succeeds with
//! JSON where it has JSON, or, where the model cannot answer (an encoder has no logits to
//! generate from; a dense model has no experts), is refused with exit code 2 and a reason.
//! Whatever llama.cpp tolerated in the file is printed as a warning naming the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llamacpp")
}

fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn temp(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("glassbox-llamacpp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

/// How a command went: success, a refusal (exit 2) or anything else.
fn outcome(args: &[&str]) -> Result<Output, String> {
    let out = glassbox(args);
    match out.status.code() {
        Some(0) => Ok(out),
        Some(2) => Err(format!(
            "refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        code => Err(format!(
            "FAILED (exit {code:?}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_command_runs_on_llama_cpp_made_files() {
    let manifest = manifest();
    let mut problems = Vec::new();
    for (name, fixture) in manifest["fixtures"].as_object().unwrap() {
        let types: Vec<&String> = fixture["file_bytes"].as_object().unwrap().keys().collect();
        let encoder = fixture["output"] == "embeddings";
        let moe = matches!(
            name.as_str(),
            "qwen3moe"
                | "mixtral"
                | "deepseek2"
                | "olmoe"
                | "glm4moe"
                | "llama4"
                | "nemotron_h_moe"
                | "qwen3next"
                | "gpt-oss"
                | "gpt-oss-mxfp4"
        );
        // A head and an MLP to ablate: in the Nemotron-H fixtures (Mamba, MLP or experts,
        // attention, …) block 0 is a Mamba mixer, which has neither.
        let targets = if name.starts_with("nemotron_h") {
            "L2H0,L1MLP"
        } else {
            "L0H0,L0MLP"
        };
        let path = |t: &str| {
            fixtures()
                .join(name)
                .join(format!("model-{t}.gguf"))
                .to_string_lossy()
                .into_owned()
        };
        let files: Vec<String> = ["F16", "Q4_K_M", "MXFP4"]
            .iter()
            .filter(|t| types.iter().any(|k| k == t))
            .map(|t| path(t))
            .collect();
        let mut expect =
            |what: &str, args: &[&str], should_work: bool| match (outcome(args), should_work) {
                (Ok(out), true) => {
                    if args.contains(&"--json") {
                        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                            problems.push(format!("{name}: {what}: not JSON: {e}"));
                        }
                    }
                }
                (Err(e), false) if e.starts_with("refused") => {}
                (Ok(_), false) => problems.push(format!("{name}: {what}: should be refused")),
                (Err(e), _) => problems.push(format!("{name}: {what}: {e}")),
            };
        for file in &files {
            let f = file.as_str();
            let info = outcome(&["inspect", f, "--json"])
                .map(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap())
                .unwrap_or_else(|e| panic!("{name}: inspect: {e}"));
            // llama.cpp's control vectors start at block 1: a one-block model cannot be steered.
            let layers = info["architecture"]["layers"].as_u64().unwrap();
            let out_trace = temp(&format!("{name}-trace.safetensors"));
            let out_vector = temp(&format!("{name}-vector.gguf"));
            let prompt = "When Mary and John went to the store, John gave a drink to";
            expect("inspect", &["inspect", f, "--stats", "--json"], true);
            expect("run", &["run", f, "--prompt", prompt, "--json"], !encoder);
            expect(
                "trace",
                &[
                    "trace",
                    f,
                    "--prompt",
                    prompt,
                    "--hooks",
                    "blocks.*.hook_resid_post",
                    "--out",
                    &out_trace,
                ],
                true,
            );
            expect(
                "generate",
                &["generate", f, "--prompt", "The", "--max-tokens", "3"],
                !encoder,
            );
            expect("lens", &["lens", f, "--prompt", prompt, "--json"], !encoder);
            expect(
                "attribute",
                &[
                    "attribute",
                    f,
                    "--prompt",
                    prompt,
                    "--target",
                    "#5",
                    "--json",
                ],
                !encoder,
            );
            expect("heads", &["heads", f, "--json"], true);
            expect(
                "patch",
                &[
                    "patch",
                    f,
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
                !encoder,
            );
            expect(
                "ablate",
                &[
                    "ablate", f, "--text", prompt, "--target", targets, "--method", "zero",
                    "--json",
                ],
                !encoder,
            );
            expect(
                "steer",
                &[
                    "steer",
                    f,
                    "--positive",
                    "Paris is big",
                    "--negative",
                    "Rome is big",
                    "--layers",
                    "1-1",
                    "--out",
                    &out_vector,
                ],
                layers >= 2,
            );
            expect(
                "experts",
                &["experts", f, "--prompt", prompt, "--json"],
                moe,
            );
        }
        if let [f16, quantized] = files.as_slice() {
            expect("diff", &["diff", f16, quantized, "--json"], true);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A GPT-2 file whose converter wrote Hub GPT-2's special ids (50256) into a 384-token
/// vocabulary loads, as in llama.cpp, with a warning naming the key.
#[test]
fn special_ids_outside_the_vocabulary_are_warnings() {
    let f = fixtures().join("gpt2/model-F32.gguf");
    let out = glassbox(&["run", f.to_str().unwrap(), "--prompt", "The Eiffel Tower"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("tokenizer.ggml.bos_token_id 50256"),
        "{stderr}"
    );
}

/// `--numerics`: a quantized file runs under llama.cpp's numerics unless told otherwise, and the
/// two give different logits (the activations quantized or not); an F32 file runs in f32; a
/// value that is not a numerics is refused with exit 2.
#[test]
fn numerics_default_to_llama_cpp_for_quantized_files() {
    let file = |t: &str| {
        fixtures()
            .join(format!("llama/model-{t}.gguf"))
            .to_string_lossy()
            .into_owned()
    };
    let run = |path: &str, extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["run", path, "--prompt", "The Eiffel Tower", "--json"];
        args.extend_from_slice(extra);
        let out = outcome(&args).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let top_logit =
        |doc: &serde_json::Value| doc["positions"][0]["top"][0]["logit"].as_f64().unwrap();
    let quantized = file("Q8_0");
    let default = run(&quantized, &[]);
    let llamacpp = run(&quantized, &["--numerics", "llamacpp"]);
    let f32 = run(&quantized, &["--numerics", "f32"]);
    assert_eq!(default["numerics"], "llamacpp");
    assert_eq!(f32["numerics"], "f32");
    assert_eq!(default["positions"], llamacpp["positions"]);
    assert!((top_logit(&default) - top_logit(&f32)).abs() > 1e-4);
    assert_eq!(run(&file("F32"), &[])["numerics"], "f32");
    let out = glassbox(&["run", &quantized, "--prompt", "x", "--numerics", "int4"]);
    assert_eq!(out.status.code(), Some(2));
    // A command that runs no model's arithmetic refuses the choice rather than ignore it.
    let out = glassbox(&["inspect", &quantized, "--numerics", "f32"]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("`inspect` does not run"), "{said}");
    // llama.cpp's numerics bring its default F16 KV cache; --kv-cache f32 is its
    // --cache-type-k/v f32 run; f32 numerics keep keys and values as computed unless asked.
    assert_eq!(default["kv_cache"], "f16");
    assert_eq!(f32["kv_cache"], "f32");
    let f32_cache = run(&quantized, &["--kv-cache", "f32"]);
    assert_eq!(f32_cache["kv_cache"], "f32");
    assert!((top_logit(&default) - top_logit(&f32_cache)).abs() > 1e-5);
    let rounded = run(&quantized, &["--numerics", "f32", "--kv-cache", "f16"]);
    assert_eq!(rounded["kv_cache"], "f16");
    assert!((top_logit(&rounded) - top_logit(&f32)).abs() > 1e-5);
    let out = glassbox(&["inspect", &quantized, "--kv-cache", "f16"]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--kv-cache: `inspect` does not run"),
        "{said}"
    );
}
