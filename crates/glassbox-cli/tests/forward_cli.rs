//! The forward-pass commands (`run`, `generate`, `trace`) run as a user runs them, checked
//! against the parity fixtures (Hugging Face transformers' activations).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device, IndexOp, Tensor};
use glassbox_formats::Checkpoint;

const PROMPTS: [&str; 2] = [
    "The Eiffel Tower is in Paris.",
    "When Mary and John went to the store, John gave a drink to",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity")
        .join(name)
}

fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("runs glassbox")
}

fn tmp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-forward-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn tensor(ck: &Checkpoint, name: &str) -> Tensor {
    ck.tensor_f32(name, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Every hook `trace` wrote that the fixture also holds for `prompt{j}` equals it at 1e-4;
/// `rows` maps the fixture's single sequence to a row and length in the traced batch.
fn check(traced: &Checkpoint, expected: &Checkpoint, j: usize, row: usize, len: usize) -> usize {
    let prefix = format!("prompt{j}.");
    let mut compared = 0;
    for info in expected.tensors() {
        let Some(hook) = info.name.strip_prefix(&prefix) else {
            continue;
        };
        if hook == "input_ids" || !traced.contains(hook) {
            continue;
        }
        let want = tensor(expected, &info.name);
        let got = tensor(traced, hook).i(row).unwrap().unsqueeze(0).unwrap();
        // Positions are dim 1 for residual-like hooks, dims 2 and 3 for patterns.
        let got = if hook.ends_with("hook_pattern") {
            got.narrow(2, 0, len).unwrap().narrow(3, 0, len).unwrap()
        } else {
            got.narrow(1, 0, len).unwrap()
        };
        let diff = max_abs_diff(&got, &want);
        assert!(diff <= 1e-4, "prompt {j} `{hook}` differs by {diff}");
        compared += 1;
    }
    compared
}

#[test]
fn trace_writes_the_reference_activations() {
    let dir = fixture("gpt2");
    let expected = Checkpoint::open(dir.join("expected.safetensors")).unwrap();
    let out = tmp_path("single.safetensors");
    let o = glassbox(&[
        "trace",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPTS[0],
        "--hooks",
        "blocks.*.hook_resid_post,blocks.*.attn.hook_pattern,blocks.0.hook_mlp_out",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let traced = Checkpoint::open(&out).unwrap();
    let ids = traced.tensor("input_ids", &Device::Cpu).unwrap();
    let want_ids = expected.tensor("prompt0.input_ids", &Device::Cpu).unwrap();
    assert_eq!(
        ids.to_dtype(DType::I64).unwrap().to_vec2::<i64>().unwrap(),
        want_ids.to_vec2::<i64>().unwrap()
    );
    let len = ids.dim(1).unwrap();
    // 2 resid_post + 2 patterns + 1 mlp_out + logits.
    assert_eq!(check(&traced, &expected, 0, 0, len), 6);
    assert!(!traced.contains("attention_mask"));
    assert!(
        !traced.contains("blocks.0.hook_resid_pre"),
        "only the requested hooks are written"
    );
}

#[test]
fn trace_pads_several_prompts_with_an_attention_mask() {
    let dir = fixture("llama");
    let expected = Checkpoint::open(dir.join("expected.safetensors")).unwrap();
    let out = tmp_path("batch.safetensors");
    let o = glassbox(&[
        "trace",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPTS[0],
        "--prompt",
        PROMPTS[1],
        "--hooks",
        "blocks.*.hook_resid_pre,blocks.*.hook_attn_out",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let traced = Checkpoint::open(&out).unwrap();
    let mask = traced
        .tensor("attention_mask", &Device::Cpu)
        .unwrap()
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec2::<i64>()
        .unwrap();
    for j in 0..2 {
        let len = expected
            .info(&format!("prompt{j}.input_ids"))
            .unwrap()
            .shape[1];
        assert_eq!(mask[j].iter().sum::<i64>() as usize, len);
        assert!(mask[j][..len].iter().all(|&m| m == 1), "right padding");
        assert_eq!(check(&traced, &expected, j, j, len), 5);
    }
}

#[test]
fn run_json_top_token_is_the_reference_argmax() {
    let dir = fixture("qwen2");
    let expected = Checkpoint::open(dir.join("expected.safetensors")).unwrap();
    let o = glassbox(&[
        "run",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPTS[1],
        "--json",
        "--top-k",
        "3",
        "--all-positions",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let logits = tensor(&expected, "prompt1.logits");
    let positions = doc["positions"].as_array().unwrap();
    assert_eq!(positions.len(), logits.dim(1).unwrap());
    for (p, pos) in positions.iter().enumerate() {
        let row = logits.i((0, p)).unwrap();
        let argmax = row.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        assert_eq!(
            pos["top"][0]["id"].as_u64().unwrap() as u32,
            argmax,
            "position {p}"
        );
        assert_eq!(pos["top"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn generate_is_greedy_and_reproducible() {
    let dir = fixture("pythia");
    let args = [
        "generate",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPTS[1],
        "--max-tokens",
        "8",
        "--ignore-eos",
    ];
    let a = glassbox(&args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let text = String::from_utf8_lossy(&a.stdout);
    assert!(
        text.starts_with(PROMPTS[1]) && text.trim_end().len() > PROMPTS[1].len(),
        "{text}"
    );
    assert_eq!(glassbox(&args).stdout, a.stdout);
    // Sampling with a seed is reproducible too.
    let mut sampled = args.to_vec();
    sampled.extend(["--temperature", "1.0", "--seed", "3"]);
    assert_eq!(glassbox(&sampled).stdout, glassbox(&sampled).stdout);
}

#[test]
fn bad_input_exits_2_and_writes_no_file() {
    let out = tmp_path("never.safetensors");
    let gpt2 = fixture("gpt2");
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "/no/such/model", "--prompt", "x"],
        vec!["run", gpt2.to_str().unwrap(), "--tokens", "1,99999"],
        vec!["run", gpt2.to_str().unwrap(), "--tokens", "1,x"],
        vec![
            "run",
            gpt2.to_str().unwrap(),
            "--prompt",
            "x",
            "--dtype",
            "f8",
        ],
        vec![
            "trace",
            gpt2.to_str().unwrap(),
            "--prompt",
            "x",
            "--hooks",
            "blocks.*.hook_nope",
            "--out",
            out.to_str().unwrap(),
        ],
    ];
    for args in cases {
        let o = glassbox(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).starts_with("error: "),
            "{args:?}"
        );
    }
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("never"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// The continuation is joined to the prompt as the tokenizer joins them: "the cat finds",
/// never "the catfinds".
#[test]
fn generate_keeps_the_space_between_prompt_and_continuation() {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/reference");
    let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args([
            "generate",
            reference.to_str().unwrap(),
            "--prompt",
            "the cat",
            "--max-tokens",
            "3",
            "--seed",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("the cat "), "{text:?}");
    assert!(text.trim_end().len() > "the cat ".len(), "{text:?}");
}

/// Generation that prints nothing, or stops before `--max-tokens`, says why on stderr: the
/// first pick was the end-of-sequence token (made so here by naming the greedy pick as EOS),
/// the picks are special tokens decoding skips (a huge control vector: `<bos>` each time), or
/// the context is full. A run that does what was asked says nothing.
#[test]
fn generate_says_why_it_printed_little() {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/reference");
    let reference = reference.to_str().unwrap();
    let text = |out: &Output| String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    let note = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let greedy = ["--prompt", "the cat", "--max-tokens"];
    let one = glassbox(&[&["generate", reference][..], &greedy[..], &["1"]].concat());
    assert!(note(&one).is_empty(), "{}", note(&one));
    let word = text(&one)["the cat ".len()..].to_string();
    let vocab: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{reference}/tokenizer.json")).unwrap(),
    )
    .unwrap();
    let id = vocab["model"]["vocab"][&word]
        .as_u64()
        .expect("a word of the vocabulary");

    // The same model, with that word as its end-of-sequence token.
    let eos = tmp_path("eos-model");
    std::fs::create_dir_all(&eos).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(format!("{reference}/{f}"), eos.join(f)).unwrap();
    }
    std::fs::write(
        eos.join("generation_config.json"),
        format!("{{\"eos_token_id\": {id}}}"),
    )
    .unwrap();
    let out = glassbox(
        &[
            &["generate", eos.to_str().unwrap()][..],
            &greedy[..],
            &["5"],
        ]
        .concat(),
    );
    let said = note(&out);
    assert!(
        said.contains("end-of-sequence token") && said.contains(&format!("`{word}` (id {id})")),
        "{said}"
    );

    let cv = tmp_path("huge.gguf");
    let steer = [
        "steer",
        reference,
        "--positive",
        "the cat",
        "--negative",
        "the dog",
        "--layers",
        "1",
        "--out",
    ];
    let made = glassbox(&[&steer[..], &[cv.to_str().unwrap()]].concat());
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let huge = format!("{}:1e30", cv.display());
    let out = glassbox(
        &[
            &["generate", reference][..],
            &greedy[..],
            &["5", "--control-vector", &huge],
        ]
        .concat(),
    );
    if text(&out) == "the cat" {
        assert!(
            note(&out).contains("the 5 new tokens print as nothing"),
            "{}",
            note(&out)
        );
    }

    let out = glassbox(&[&["generate", reference][..], &greedy[..], &["500"]].concat());
    assert!(
        note(&out).contains("the model's context of 128 positions is full"),
        "{}",
        note(&out)
    );
}

/// Text outside a vocabulary became `<unk>` in silence: the reference model reads "dog." as
/// one placeholder, and every figure then describes the placeholder. The commands that take a
/// prompt say so (stderr), and the predictions document counts them.
#[test]
fn prompts_with_unknown_tokens_are_said() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/reference");
    let model = model.to_str().unwrap();
    for args in [
        vec!["run", model, "--prompt", "the cat sees a dog.", "--json"],
        vec!["lens", model, "--prompt", "the cat sees a dog."],
        vec![
            "generate",
            model,
            "--prompt",
            "the cat sees a dog.",
            "--max-tokens",
            "1",
        ],
    ] {
        let out = glassbox(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("1 token of \"the cat sees a dog.\" is the tokenizer's unknown token \"<unk>\" (position 5)"),
            "{args:?}: {stderr}"
        );
        if args.contains(&"--json") {
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(doc["unknown_tokens"], 1);
            assert_eq!(doc["unknown_token"], "<unk>");
        }
    }
    let out = glassbox(&["run", model, "--prompt", "the cat sees a bird .", "--json"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("unknown"));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["unknown_tokens"], 0);
    // spaces alone: this tokenizer makes nothing of them but its BOS
    let out = glassbox(&["run", model, "--prompt", "   "]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "\"   \" has no tokens of its own: the model reads only the tokenizer's <bos>"
        ),
        "{stderr}"
    );
}
