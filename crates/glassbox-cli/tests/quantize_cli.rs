//! `glassbox quantize`: llama.cpp's file from the command line, a summary that describes it,
//! the written file opened and run by glassbox; bad input → exit 2, nothing written.

mod support;

use support::{glassbox, root, scratch};

use serde_json::Value;

#[test]
fn quantize_writes_llama_cpps_file_and_describes_it() {
    let dir = scratch("quantize", "cli");
    let llama = root().join("tests/fixtures/llamacpp/llama");
    let out = dir.join("ours.gguf");
    let run = glassbox(&[
        "quantize",
        llama.join("model-F32.gguf").to_str().unwrap(),
        "--to",
        "q4_0",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(llama.join("model-Q4_0.gguf")).unwrap()
    );
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["mixture"], "Q4_0");
    assert_eq!(summary["file_type"], 2);
    let data = std::fs::metadata(&out).unwrap().len();
    assert!(summary["data_bytes"].as_u64().unwrap() < data, "{summary}");
    let tensors = summary["tensors"].as_array().unwrap();
    let types = &summary["types"];
    assert_eq!(
        types
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        tensors.len() as u64
    );
    assert_eq!(tensors[0]["name"], "output.weight"); // llama.cpp's order: non-layer tensors first
    assert_eq!(tensors[0]["to"], "Q8_0"); // the output matrix: Q6_K, which 64-wide rows cannot hold

    // the file runs here, under llama.cpp's numerics
    let ran = glassbox(&[
        "run",
        out.to_str().unwrap(),
        "--prompt",
        "The Eiffel Tower",
        "--json",
    ]);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let ran: Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(ran["numerics"], "llamacpp");

    // --dry-run writes nothing and plans the same tensors
    let dry = dir.join("dry.gguf");
    let plan = glassbox(&[
        "quantize",
        llama.join("model-F32.gguf").to_str().unwrap(),
        "--to",
        "q4_0",
        "--out",
        dry.to_str().unwrap(),
        "--dry-run",
        "--json",
    ]);
    assert!(plan.status.success());
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["tensors"], summary["tensors"]);
    assert!(plan["out"].is_null() && !dry.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// From a Hub folder: llama.cpp's converter-then-quantizer file, and the summary reads the
/// folder's own bytes as the source size.
#[test]
fn quantize_converts_a_hub_folder() {
    let dir = scratch("quantize", "hub");
    let out = dir.join("llama.gguf");
    let parity = root().join("tests/fixtures/parity/llama");
    let run = glassbox(&[
        "quantize",
        parity.to_str().unwrap(),
        "--to",
        "q8_0",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let expected = root().join("tests/fixtures/llamacpp-quantize/hub/llama/model-Q8_0.gguf");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(expected).unwrap()
    );
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    let weights = std::fs::metadata(parity.join("model.safetensors"))
        .unwrap()
        .len();
    let source = summary["source_bytes"].as_u64().unwrap();
    assert!(
        source < weights && source > weights * 9 / 10,
        "{source} of {weights}"
    );
    // A byte-level BPE vocabulary is llama.cpp's own: nothing to say.
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(!said.contains("llama.cpp only runs token ids"), "{said}");

    // A SentencePiece one (Llama 2's tokenizer.model) is llama.cpp's too: its converter's file,
    // nothing to say.
    let spm = root().join("tests/fixtures/llamacpp-quantize/hub/llama-spm");
    let out = dir.join("llama-spm.gguf");
    let run = glassbox(&[
        "quantize",
        spm.join("checkpoint").to_str().unwrap(),
        "--to",
        "q8_0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{said}");
    assert!(!said.contains("llama.cpp only runs token ids"), "{said}");
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(spm.join("model-Q8_0.gguf")).unwrap(),
        "not llama.cpp's file"
    );

    // A word-level one is carried for glassbox; llama.cpp cannot tokenize text with it, and
    // the user is told so.
    let out = dir.join("reference.gguf");
    let run = glassbox(&[
        "quantize",
        root().join("models/reference").to_str().unwrap(),
        "--to",
        "q8_0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{said}");
    assert!(
        said.contains("tokenizer.ggml.model = none")
            && said.contains("llama.cpp only runs token ids"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_quantize_input_is_exit_2_and_writes_nothing() {
    let dir = scratch("quantize", "bad");
    let fixtures = root().join("tests/fixtures");
    let f32 = fixtures.join("llamacpp/llama/model-F32.gguf");
    let q8 = fixtures.join("llamacpp/llama/model-Q8_0.gguf");
    let deep = fixtures.join("llamacpp-quantize/deep/model-F16.gguf");
    let moe_imatrix = fixtures.join("llamacpp-quantize/moe/imatrix.gguf");
    let out = dir.join("out.gguf");
    let missing = dir.join("missing.gguf");
    let gpt2 = fixtures.join("parity/gpt2");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![f32.to_str().unwrap(), "--to", "q9"], "not a mixture"),
        (
            vec![q8.to_str().unwrap(), "--to", "q4_0"],
            "quantize from an F32, F16 or BF16 file",
        ),
        (
            vec![
                f32.to_str().unwrap(),
                "--to",
                "q4_0",
                "--imatrix",
                f32.to_str().unwrap(),
            ],
            "not an importance matrix",
        ),
        // another model's importance matrix: the sizes disagree, found before anything is written
        (
            vec![
                deep.to_str().unwrap(),
                "--to",
                "q4_k_m",
                "--imatrix",
                moe_imatrix.to_str().unwrap(),
            ],
            "importance values",
        ),
        (
            vec![missing.to_str().unwrap(), "--to", "q4_0"],
            "missing.gguf",
        ),
        (
            vec![gpt2.to_str().unwrap(), "--to", "q4_0"],
            "convert_hf_to_gguf.py",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["quantize"];
        all.extend(args);
        all.extend(["--out", out.to_str().unwrap()]);
        let run = glassbox(&all);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{all:?}: {stderr}");
        assert!(stderr.contains(message), "{all:?}: {stderr}");
        assert!(!out.exists(), "{all:?} left a file");
        assert!(
            std::fs::read_dir(&dir).unwrap().next().is_none(),
            "{all:?} left a temporary file"
        );
    }
    let to_dir = glassbox(&[
        "quantize",
        f32.to_str().unwrap(),
        "--to",
        "q4_0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(to_dir.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
