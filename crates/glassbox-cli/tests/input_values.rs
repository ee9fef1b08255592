//! Issue 19's reproductions beyond the file parsers, each through the binary under a time limit
//! — the numbers and values inside inputs: counts and sizes past what a run can hold (checked
//! against the memory budget before any work), config values that contradict the weights or
//! make every output NaN, arguments that would silently mean something else. Each must end
//! with exit code 2 (or run with a note) and a message that says what is wrong in words — no
//! hang, no panic, no OS error number. The files themselves are `input_policy.rs`'s.

mod support;

use std::process::{Command, Stdio};

use support::policy::*;

#[test]
fn a_prompt_longer_than_learned_positions_is_refused() {
    let dir = root().join("tests/fixtures/parity/gpt2");
    let prompt = vec!["word"; 2000].join(" ");
    refused(
        &["run", dir.to_str().unwrap(), "--prompt", &prompt],
        "learned embeddings for",
    );
}

/// `n_layer: 1000000000` was an allocation failure (abort); `n_layer: 0` ran a model with no
/// layers. Both contradict the weights and are refused before anything is built.
#[test]
fn a_layer_count_the_weights_do_not_hold_is_refused() {
    for (n, expect) in [(1_000_000_000u64, "the weights hold 2 layers"), (0, "is 0")] {
        let dir = gpt2_copy(&format!("layers-{n}"));
        let path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["n_layer"] = n.into();
        std::fs::write(&path, config.to_string()).unwrap();
        refused(&["run", dir.to_str().unwrap(), "--prompt", "Hello"], expect);
    }
}

/// Requests far past the memory budget were allocation failures (abort): 20,000 words on a
/// rotary model, `heads --batch 1000000`, a long `--tokens` list. They are refused with the
/// estimate and the budget.
#[test]
fn requests_past_the_memory_budget_are_refused_with_numbers() {
    let llama = root().join("tests/fixtures/parity/llama");
    let m = llama.to_str().unwrap();
    let words = vec!["word"; 20_000].join(" ");
    refused(&["run", m, "--prompt", &words], "GLASSBOX_MEMORY");
    refused(&["heads", m, "--batch", "1000000"], "GLASSBOX_MEMORY");
    let tokens = vec!["5"; 30_000].join(",");
    refused(&["run", m, "--tokens", &tokens], "GLASSBOX_MEMORY");
    // Within the budget, the same model runs.
    let (code, err) = glassbox(&["run", m, "--prompt", "word word word"]);
    assert_eq!(code, Some(0), "{err}");
}

/// `heads` kept every layer's attention pattern (batch × heads × tokens² each) until the
/// scores were read: a served GPT-2 request took about 16 GB, and an 8-layer test model 2.5 GB
/// where one layer needs 0.7 GB. Each layer's pattern is now scored as the pass makes it, so
/// the budget holds one layer's activations only: a request that fits that runs, one twice its
/// size is refused.
#[test]
fn heads_holds_one_layers_patterns_at_a_time() {
    let reference = root().join("models/reference");
    let heads = |batch: &str| {
        Command::new(env!("CARGO_BIN_EXE_glassbox"))
            .args([
                "heads",
                reference.to_str().unwrap(),
                "--seq-len",
                "60",
                "--batch",
                batch,
            ])
            .env("GLASSBOX_MEMORY", "50M")
            .output()
            .unwrap()
    };
    // 121 tokens: one layer's activations about 1.0 MB per sequence, and the patterns of its
    // 3 layers 0.7 MB more: 40 sequences fit 50 MiB only when the patterns are not all kept
    let ran = heads("40");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let refused = heads("80");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("GLASSBOX_MEMORY"), "{said}");
}

/// The logit lens held every layer's logits over the whole vocabulary at once (layers ×
/// positions × vocabulary: a served request on a Qwen-sized vocabulary took 24 GB and the
/// server with it). It reads one layer at a time, and refuses a prompt whose one layer would
/// pass the budget, with the numbers.
#[test]
fn the_lens_is_refused_past_the_budget_one_layer_at_a_time() {
    use candle_core::{Device, Tensor};
    let dir = scratch("lens-vocab");
    let src = root().join("tests/fixtures/parity/llama");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    // a 50,000-token vocabulary (the tokenizer's ids are the first 384 of it)
    let vocab = 50_000;
    let mut tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    for name in ["model.embed_tokens.weight", "lm_head.weight"] {
        let t = &tensors[name];
        let d = t.dim(1).unwrap();
        let pad = Tensor::zeros((vocab - t.dim(0).unwrap(), d), t.dtype(), &Device::Cpu).unwrap();
        let grown = Tensor::cat(&[t, &pad], 0).unwrap();
        tensors.insert(name.to_string(), grown);
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["vocab_size"] = vocab.into();
    std::fs::write(&path, config.to_string()).unwrap();
    let lens = |budget: &str| {
        Command::new(env!("CARGO_BIN_EXE_glassbox"))
            .args([
                "lens",
                dir.to_str().unwrap(),
                "--prompt",
                &"word ".repeat(20),
            ])
            .env("GLASSBOX_MEMORY", budget)
            .output()
            .unwrap()
    };
    // one layer: 100 tokens × 50,000 × 16 bytes = 80 MB, past 32 MB (where the model's own
    // activations fit), within 100 MB
    let refused = lens("32M");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains("the lens over") && said.contains("a layer"),
        "{said}"
    );
    let ran = lens("100M");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// A recipe with 65,536 heads ran without end; sizes of 10⁹ were allocation failures; a
/// `head_dim` of 0 or a context shorter than the training sequences failed inside. All are
/// refused when the recipe is read.
#[test]
fn recipe_sizes_are_checked_before_building() {
    let reference = std::fs::read_to_string(root().join("recipes/reference.toml")).unwrap();
    let dir = scratch("recipes");
    for (key, value, expect) in [
        ("num_attention_heads", "65536", "at most hidden_size"),
        ("intermediate_size", "1000000000", "GLASSBOX_MEMORY"),
        ("num_hidden_layers", "1000000000", "GLASSBOX_MEMORY"),
        // Found by the stress harness: an internal shape error, and a run that trained and
        // then failed at its evaluation (both exit 1).
        ("head_dim", "0", "head_dim is 0"),
        (
            "max_position_embeddings",
            "0",
            "shorter than the 64 positions",
        ),
    ] {
        let text: String = reference
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} =")) {
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(text, reference, "{key} is in the reference recipe");
        let recipe = dir.join(format!("{key}.toml"));
        std::fs::write(&recipe, text).unwrap();
        let out = dir.join(format!("{key}-out"));
        refused(
            &[
                "train",
                recipe.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            expect,
        );
        assert!(!out.exists(), "{key}: half-written release");
    }
}

/// `reproduce --threads 300` is capped at the machine's CPUs, with a note.
#[test]
fn thread_counts_past_the_cpus_are_capped_with_a_note() {
    let release = root().join("models/reference");
    let (code, err) = glassbox(&[
        "reproduce",
        release.to_str().unwrap(),
        "--steps",
        "10",
        "--threads",
        "300",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("capped at this machine's"), "{err}");
    // And a recipe's `threads` under `train` (a short run of the reference recipe).
    let reference = std::fs::read_to_string(root().join("recipes/reference.toml")).unwrap();
    let short: String = reference
        .lines()
        .map(|l| match l.split(" =").next().unwrap_or("") {
            "threads" => "threads = 200".to_string(),
            "steps" => "steps = 2".to_string(),
            "checkpoints" => "checkpoints = [1]".to_string(),
            "train_documents" => "train_documents = 32".to_string(),
            "held_out_documents" => "held_out_documents = 4".to_string(),
            "batch_size" => "batch_size = 2".to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = scratch("threads");
    let recipe = dir.join("recipe.toml");
    std::fs::write(&recipe, short).unwrap();
    let out = dir.join("release");
    let (code, err) = glassbox(&[
        "train",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("200 threads capped at this machine's"),
        "{err}"
    );
    // the reference's 30 warmup steps outlast this 2-step trial: said, not refused
    assert!(
        err.contains("warmup_steps 30 outlasts the 2 steps: the learning rate peaks at"),
        "{err}"
    );
}

/// A prompt longer than a rotary model's trained context runs (as in transformers), with a
/// warning naming the context.
#[test]
fn a_prompt_past_a_rotary_context_runs_with_a_warning() {
    let llama = root().join("tests/fixtures/parity/llama");
    let words = vec!["word"; 200].join(" ");
    let (code, err) = glassbox(&["run", llama.to_str().unwrap(), "--prompt", &words]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("positions LlamaForCausalLM was trained on"),
        "{err}"
    );
}

/// Experts are read on first use, so an expert width the weights contradict surfaced in the
/// middle of a forward pass as an internal error (exit 1; found by the stress harness). It is
/// the input's fault, as at load time.
#[test]
fn experts_that_contradict_the_config_are_an_input_error() {
    use glassbox_formats::gguf::GgufValue;
    use glassbox_formats::gguf_write::GgufWriter;
    use glassbox_formats::Checkpoint;
    let src = root().join("tests/fixtures/llamacpp/qwen3moe/model-Q8_0.gguf");
    let ck = Checkpoint::open(&src).unwrap();
    let dir = scratch("experts");
    for width in [0u32, 31] {
        let mut w = GgufWriter::new();
        for (k, v) in ck.gguf().unwrap().metadata() {
            let v = match k.as_str() {
                "qwen3moe.expert_feed_forward_length" => GgufValue::U32(width),
                _ => v.clone(),
            };
            w.set(k, v);
        }
        for t in ck.tensors() {
            let bytes = ck.raw_bytes(&t.name).unwrap().to_vec();
            w.add_raw(&t.name, &t.shape, t.dtype, bytes).unwrap();
        }
        let file = dir.join(format!("width-{width}.gguf"));
        w.write(&file).unwrap();
        refused(
            &["run", file.to_str().unwrap(), "--prompt", "Hello there"],
            "weights do not match the config",
        );
    }
}

/// A steering vector of NaNs (a config whose norm epsilon is −10³⁰) was written and then
/// refused when read back, leaving the file (found by the stress harness): refused before
/// writing, nothing left.
#[test]
fn a_steering_vector_that_is_not_finite_is_not_written() {
    let dir = scratch("nan-steer");
    let model = nan_llama(&dir);
    let out = dir.join("vector.gguf");
    refused(
        &[
            "steer",
            model.to_str().unwrap(),
            "--positive",
            "Paris is big",
            "--negative",
            "Rome is big",
            "--layers",
            "1-1",
            "--out",
            out.to_str().unwrap(),
        ],
        "not finite",
    );
    assert!(!out.exists(), "a refused steer left {}", out.display());
}

/// Counts far past what the model or machine can hold were allocation failures (abort) or an
/// arithmetic overflow (panic): `finetune --batch`/`--lora-r` 10¹², `--lora-r` past the layers'
/// sides, `sae train --n-checkpoints` 10¹², `inspect --hist` 10¹². Each is refused before any
/// work with exit 2.
#[test]
fn counts_past_what_a_run_can_hold_are_refused_first() {
    let release = root().join("models/reference");
    let r = release.to_str().unwrap();
    let data = root().join("tests/fixtures/peft/train.jsonl");
    let d = data.to_str().unwrap();
    let out = scratch("counts");
    let o = out.join("adapter");
    let o = o.to_str().unwrap();
    let huge = "1000000000000";
    let finetune = |flag: &str, value: &str| {
        [
            "finetune", r, "--data", d, "--out", o, "--steps", "1", flag, value,
        ]
        .map(String::from)
    };
    for (flag, value, expect) in [
        ("--batch", huge, "GLASSBOX_MEMORY"),
        ("--lora-r", huge, "--lora-r"),
        ("--lora-r", "100000", "--lora-r"),
    ] {
        let args = finetune(flag, value);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, expect);
    }
    assert!(!out.join("adapter").exists(), "an adapter folder was left");
    let text = release.join("samples.txt");
    let sae = out.join("sae");
    refused(
        &[
            "sae",
            "train",
            r,
            "--hook",
            "blocks.0.hook_resid_post",
            "--arch",
            "standard",
            "--d-sae",
            "8",
            "--text",
            text.to_str().unwrap(),
            "--n-checkpoints",
            huge,
            "--out",
            sae.to_str().unwrap(),
        ],
        "--n-checkpoints",
    );
    assert!(!sae.exists(), "an SAE folder was left");
    let weights = release.join("model.safetensors");
    let w = weights.to_str().unwrap();
    refused(
        &[
            "inspect",
            w,
            "--tensor",
            "model.embed_tokens.weight",
            "--hist",
            huge,
        ],
        "--hist",
    );
}

/// The memory budget was `MemAvailable` alone: under an address-space limit (`ulimit -v`) a
/// request within the machine's memory but past the limit aborted in the allocator. The budget
/// is the smaller of the two, so the request is refused with the numbers.
#[cfg(target_os = "linux")]
#[test]
fn the_budget_respects_the_process_address_space_limit() {
    let release = root().join("models/reference");
    let script = format!(
        "ulimit -v 3000000 && exec '{}' heads '{}' --seq-len 63 --batch 6000",
        env!("CARGO_BIN_EXE_glassbox"),
        release.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env_remove("GLASSBOX_MEMORY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("GLASSBOX_MEMORY"), "{err}");
    assert!(!err.contains("memory allocation"), "{err}");
}

/// Config values no published model has made every output NaN with exit 0: a negative norm
/// epsilon, a rotary base of 0 or below, a negative rope scaling factor, llama3 scaling whose
/// low-frequency factor is not below its high one or whose original context is 0. Each is a
/// config error (exit 2) naming the key.
#[test]
fn config_values_that_make_every_output_nan_are_refused() {
    let src = root().join("tests/fixtures/parity/llama");
    let rope = |extra: serde_json::Value| {
        let mut block = serde_json::json!({"rope_theta": 10000.0});
        for (k, v) in extra.as_object().unwrap() {
            block[k] = v.clone();
        }
        block
    };
    let llama3 = |low: f64, high: f64, original: f64| {
        rope(
            serde_json::json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": low,
            "high_freq_factor": high, "original_max_position_embeddings": original}),
        )
    };
    let cases = [
        ("rms_norm_eps", serde_json::json!(-1.0), "rms_norm_eps"),
        (
            "rope_parameters",
            rope(serde_json::json!({"rope_theta": 0.0})),
            "rope_theta",
        ),
        (
            "rope_parameters",
            rope(serde_json::json!({"rope_theta": -10000.0})),
            "rope_theta",
        ),
        (
            "rope_parameters",
            rope(serde_json::json!({"rope_type": "linear", "factor": -1.0})),
            "factor",
        ),
        ("rope_parameters", llama3(4.0, 1.0, 64.0), "low_freq_factor"),
        (
            "rope_parameters",
            llama3(1.0, 4.0, 0.0),
            "original_max_position_embeddings",
        ),
    ];
    for (i, (key, value, expect)) in cases.into_iter().enumerate() {
        let dir = llama_with(&format!("nan-config-{i}"), key, value);
        refused(&["run", dir.to_str().unwrap(), "--tokens", "1,2,3"], expect);
    }
    // The fixture itself runs.
    let (code, err) = glassbox(&["run", src.to_str().unwrap(), "--tokens", "1,2,3"]);
    assert_eq!(code, Some(0), "{err}");
}

/// Small inputs that meant something else were taken silently: `--target "#-1"` as the text
/// "#-1" (the unknown token), `--tokens 1,,2` as `1,2`, `finetune --lr nan` trained and wrote a
/// NaN adapter, a zero `--direction` was written and reported as unit length, an empty folder
/// inspected as a checkpoint of 0 tensors. Each is refused with exit 2.
#[test]
fn inputs_that_meant_something_else_are_refused() {
    let release = root().join("models/reference");
    let r = release.to_str().unwrap();
    for target in ["#-1", "#18446744073709551616"] {
        refused(
            &["lens", r, "--prompt", "the old bird", "--target", target],
            "outside the vocabulary",
        );
    }
    refused(&["run", r, "--tokens", "1,,2"], "empty item");
    // A word the vocabulary lacks was scored as its unknown token.
    refused(
        &["lens", r, "--prompt", "the old bird", "--target", "Paris"],
        "the tokenizer reads it as the special token \"<unk>\"",
    );
    let (code, err) = glassbox(&["lens", r, "--prompt", "the old bird", "--target", "<bos>"]);
    assert_eq!(code, Some(0), "a special token by its own name: {err}");
    let dir = scratch("meant-else");
    let data = root().join("tests/fixtures/peft/train.jsonl");
    let adapter = dir.join("adapter");
    for (flag, value) in [
        ("--lr", "nan"),
        ("--lora-alpha", "inf"),
        ("--weight-decay", "NaN"),
    ] {
        refused(
            &[
                "finetune",
                r,
                "--data",
                data.to_str().unwrap(),
                "--out",
                adapter.to_str().unwrap(),
                "--steps",
                "1",
                flag,
                value,
            ],
            flag,
        );
    }
    assert!(
        !adapter.exists(),
        "a refused finetune left {}",
        adapter.display()
    );
    let zero = dir.join("zero.safetensors");
    let tensors = std::collections::HashMap::from([(
        "blocks.1.hook_resid_post".to_string(),
        candle_core::Tensor::zeros(64, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    )]);
    candle_core::safetensors::save(&tensors, &zero).unwrap();
    let out = dir.join("vector.gguf");
    refused(
        &[
            "steer",
            r,
            "--direction",
            zero.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        "is zero",
    );
    assert!(!out.exists());
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    refused(&["inspect", empty.to_str().unwrap()], "no weights");
}

/// NaN logits made generation pick token 0 (a stop token in many vocabularies) and print the
/// prompt alone with exit 0. It stops with the reason instead.
#[test]
fn generation_whose_logits_are_not_finite_says_so() {
    let dir = scratch("nan-generate");
    let model = nan_llama(&dir);
    refused(
        &[
            "generate",
            model.to_str().unwrap(),
            "--prompt",
            "Paris is",
            "--max-tokens",
            "3",
        ],
        "not finite",
    );
}

/// Config keys of the wrong kind were taken as absent — `hidden_act: 5` ran the model with
/// SiLU, the default; `rope_scaling: "yes"` was ignored — and `sliding_window: 0` left
/// positions nothing to attend to; `max_position_embeddings: 0` ran with a warning and
/// generated nothing. Each is a config error naming the key.
#[test]
fn config_keys_of_another_kind_are_refused() {
    for (i, (key, value)) in [
        ("hidden_act", serde_json::json!(5)),
        ("rope_scaling", serde_json::json!("yes")),
        ("sliding_window", serde_json::json!(0)),
        ("max_position_embeddings", serde_json::json!(0)),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = llama_with(&format!("key-kind-{i}"), key, value);
        refused(&["run", dir.to_str().unwrap(), "--tokens", "1,2,3"], key);
    }
}
