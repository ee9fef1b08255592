//! `--adapter`, `merge` and `finetune` from the command line: an adapter moves a run's numbers,
//! merging gives the same numbers as applying, a fine-tuned adapter applies; bad adapters and
//! commands that would ignore one are exit 2.

mod support;

use std::path::Path;

use support::{glassbox, root, scratch};

use serde_json::Value;

const PROMPT: &str = "When Mary and John went to the store";

/// The logits `run --json --all-positions` reports, flattened in order.
fn run_logits(model: &Path, adapter: Option<&Path>) -> Vec<f64> {
    let mut args = vec![
        "run",
        model.to_str().unwrap(),
        "--prompt",
        PROMPT,
        "--json",
        "--all-positions",
    ];
    if let Some(a) = adapter {
        args.extend(["--adapter", a.to_str().unwrap()]);
    }
    let out = glassbox(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["positions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["logit"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn an_adapter_applies_and_merging_it_gives_the_same_numbers() {
    let dir = scratch("lora", "merge");
    let base = root().join("tests/fixtures/parity/llama");
    let adapter = root().join("tests/fixtures/peft/llama-peft");
    let plain = run_logits(&base, None);
    let adapted = run_logits(&base, Some(&adapter));
    assert_eq!(plain.len(), adapted.len());
    assert!(
        plain
            .iter()
            .zip(&adapted)
            .any(|(a, b)| (a - b).abs() > 1e-2),
        "the adapter changed nothing"
    );

    let merged = dir.join("merged");
    let out = glassbox(&[
        "merge",
        base.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(merged.join("config.json").is_file() && merged.join("tokenizer.json").is_file());
    let from_merged = run_logits(&merged, None);
    for (a, b) in adapted.iter().zip(&from_merged) {
        assert!((a - b).abs() <= 1e-4, "{a} vs {b}");
    }
    // merging again into the same (now full) folder is refused
    let again = glassbox(&[
        "merge",
        base.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn finetune_writes_an_adapter_that_applies() {
    let dir = scratch("lora", "finetune");
    let base = root().join("tests/fixtures/parity/llama");
    let data = root().join("tests/fixtures/peft/train.jsonl");
    let out = dir.join("adapter");
    let args = [
        "finetune",
        base.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--lora-r",
        "2",
        "--target",
        "q_proj,v_proj,down_proj",
        "--steps",
        "5",
        "--context",
        "8",
        "--lr",
        "0.05",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let run = glassbox(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["modules"], 6);
    assert_eq!(summary["steps"], 5);
    // The summary's losses are over the same rows before and after (a step's loss is one
    // batch's: different rows). Before: the base model's mean next-token loss on the first
    // rows of 9 tokens, computed here from its logits.
    let eval_rows = summary["eval_rows"].as_u64().unwrap() as usize;
    let model = glassbox_models::HookedModel::load(&base, &Default::default()).unwrap();
    let mut ids = Vec::new();
    for line in std::fs::read_to_string(&data).unwrap().lines() {
        let text: Value = serde_json::from_str(line).unwrap();
        ids.extend(model.to_tokens(text["text"].as_str().unwrap()).unwrap());
    }
    assert_eq!(eval_rows, (ids.len() / 9).min(64));
    let (mut sum, mut count) = (0f64, 0usize);
    for row in ids.chunks_exact(9).take(eval_rows) {
        let logits = model.run(&model.ids_tensor(&row[..8]).unwrap()).unwrap();
        let logits = logits.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        for (p, l) in logits.iter().enumerate() {
            let max = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            sum += lse - l[row[p + 1] as usize] as f64;
            count += 1;
        }
    }
    let before = summary["loss_before"].as_f64().unwrap();
    assert!(
        (before - sum / count as f64).abs() < 1e-4,
        "{before} vs {}",
        sum / count as f64
    );
    assert!(
        summary["loss_after"].as_f64().unwrap() < before,
        "{summary}"
    );
    let log = std::fs::read_to_string(out.join("training_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 5);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 2);
    // B starts at zero, so five steps at this rate must have moved it
    let adapted = run_logits(&base, Some(&out));
    assert!(run_logits(&base, None)
        .iter()
        .zip(&adapted)
        .any(|(a, b)| (a - b).abs() > 1e-4));
    // a second run into the same folder needs --force
    assert_eq!(glassbox(&args).status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_adapters_are_exit_2() {
    let dir = scratch("lora", "bad");
    let llama = root().join("tests/fixtures/parity/llama");
    let gpt2_adapter = root().join("tests/fixtures/peft/gpt2-peft");
    // a DoRA adapter: PEFT's files with use_dora set
    let dora = dir.join("dora");
    std::fs::create_dir_all(&dora).unwrap();
    let src = root().join("tests/fixtures/peft/llama-peft");
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        dora.join("adapter_model.safetensors"),
    )
    .unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("adapter_config.json")).unwrap())
            .unwrap();
    config["use_dora"] = Value::Bool(true);
    std::fs::write(dora.join("adapter_config.json"), config.to_string()).unwrap();
    // PEFT's files with a config that disagrees with the weights: PEFT builds LoRA layers
    // only where the config says, so applying every matrix would compute something else.
    let disagreeing = |name: &str, key: &str, value: Value| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            src.join("adapter_model.safetensors"),
            d.join("adapter_model.safetensors"),
        )
        .unwrap();
        let mut c: Value = serde_json::from_str(
            &std::fs::read_to_string(src.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        c[key] = value;
        std::fs::write(d.join("adapter_config.json"), c.to_string()).unwrap();
        d
    };
    let other_targets = disagreeing("targets", "target_modules", serde_json::json!(["o_proj"]));
    let one_layer = disagreeing("layers", "layers_to_transform", serde_json::json!([0]));
    let merged = dir.join("m");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "run",
                llama.to_str().unwrap(),
                "--prompt",
                "x",
                "--adapter",
                "/nonexistent",
            ],
            "no such folder",
        ),
        (
            vec![
                "run",
                llama.to_str().unwrap(),
                "--prompt",
                "x",
                "--adapter",
                gpt2_adapter.to_str().unwrap(),
            ],
            "no linear layer",
        ),
        (
            vec![
                "run",
                llama.to_str().unwrap(),
                "--prompt",
                "x",
                "--adapter",
                dora.to_str().unwrap(),
            ],
            "DoRA",
        ),
        (
            vec![
                "run",
                llama.to_str().unwrap(),
                "--prompt",
                "x",
                "--adapter",
                other_targets.to_str().unwrap(),
            ],
            "which target_modules",
        ),
        (
            vec![
                "run",
                llama.to_str().unwrap(),
                "--prompt",
                "x",
                "--adapter",
                one_layer.to_str().unwrap(),
            ],
            "outside layers_to_transform",
        ),
        (
            vec![
                "inspect",
                llama.to_str().unwrap(),
                "--adapter",
                src.to_str().unwrap(),
            ],
            "does not apply an adapter",
        ),
        (
            vec![
                "merge",
                llama.to_str().unwrap(),
                "--out",
                merged.to_str().unwrap(),
            ],
            "needs --adapter",
        ),
    ];
    for (args, message) in cases {
        let out = glassbox(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(!merged.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fine-tune that diverges writes nothing (it wrote a NaN adapter with exit 0); one that
/// would write over its own data, or over files of an adapter already there, is refused.
#[test]
fn finetune_refuses_divergence_and_writing_over_what_is_there() {
    let dir = scratch("lora", "finetune-refusals");
    let reference = root().join("models/reference");
    let data = dir.join("data.jsonl");
    let lines: String = std::fs::read_to_string(reference.join("data/train_sample.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::json!({ "text": l }).to_string() + "\n")
        .collect();
    std::fs::write(&data, &lines).unwrap();
    let finetune = |data: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "finetune",
            reference.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "3",
        ];
        if !extra.contains(&"--context") {
            args.extend(["--context", "16"]);
        }
        args.extend_from_slice(extra);
        let o = glassbox(&args);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };

    let out = dir.join("diverged");
    let (code, said) = finetune(&data, &out, &["--lr", "3e38"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("training diverged at step"), "{said}");
    assert!(!out.exists(), "something was written");
    let (code, said) = finetune(&data, &out, &["--lr", "1e39"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("--lr"), "{said}");
    // Rows longer than the model's 128 positions (trained past them, in silence).
    let (code, said) = finetune(&data, &out, &["--context", "200"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("the model has 128 positions"), "{said}");
    assert!(!out.exists(), "something was written");

    // The data where the training log is written: refused even with --force.
    let own = dir.join("own");
    std::fs::create_dir_all(&own).unwrap();
    let log = own.join("training_log.jsonl");
    std::fs::write(&log, &lines).unwrap();
    let (code, said) = finetune(&log, &own, &["--force"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("is an input of this run"), "{said}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), lines);

    // Any file of an adapter already there needs --force.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("adapter_config.json"), "precious").unwrap();
    let (code, said) = finetune(&data, &other, &[]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("holds an adapter already"), "{said}");
    assert_eq!(
        std::fs::read_to_string(other.join("adapter_config.json")).unwrap(),
        "precious"
    );

    // Text the word-level vocabulary does not know trains the adapter on `<unk>`: said before
    // the steps; the reference's own text is not.
    let (code, said) = finetune(&data, &dir.join("known"), &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(!said.contains("unknown token"), "{said}");
    let foreign = dir.join("foreign.jsonl");
    let text =
        "{\"text\": \"qwe rty uio pas dfg hjk zxc vbn qwe rty uio pas dfg hjk zxc vbn qwe rty\"}\n";
    std::fs::write(&foreign, text.repeat(4)).unwrap();
    let (code, said) = finetune(&foreign, &dir.join("unknown"), &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("72 of the 76 training tokens (95 %) are the unknown token `<unk>`"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
