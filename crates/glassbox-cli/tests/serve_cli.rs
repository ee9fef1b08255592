//! `glassbox serve`: its JSON API answers exactly what the CLI's `--json` prints for the same
//! request (on the reference model and a quantized GGUF made by llama.cpp). What it refuses,
//! and how it holds up under slow, many or departing clients, is `serve_limits.rs`'s.

mod support;

use serde_json::{json, Value};
use support::serve::Server;
use support::{glassbox, ok, root, scratch, traced};

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

fn reference() -> String {
    root().join("models/reference").display().to_string()
}

fn gguf() -> String {
    root()
        .join("tests/fixtures/llamacpp/gpt2/model-Q4_0.gguf")
        .display()
        .to_string()
}

fn cli_json(args: &[&str]) -> Value {
    let out = glassbox(args);
    serde_json::from_slice(&ok(&out).stdout).expect("the CLI's --json")
}

#[test]
fn api_answers_are_the_cli_json() {
    let (reference, gguf) = (reference(), gguf());
    let server = Server::start(&[&reference, &gguf]);
    let models = server.get("/api/models").json();
    assert_eq!(models.as_array().unwrap().len(), 2);
    // The examples the pages offer: the reference card's `widget` list; a file has no card.
    assert_eq!(
        models[0]["examples"],
        json!([
            {"text": "x3 = v05 , x7 = v11 . x3 =", "output": " v05"},
            {"text": "x3 = v05 , x7 = v11 . x7 =", "output": " v11"},
        ])
    );
    assert_eq!(models[1]["examples"], json!([]));
    // Models that tokenize alike are told apart from others (a checkpoint without a card can
    // offer its release's prompts): the reference's tokenizer.json fingerprint, none for a file.
    let fingerprint = models[0]["tokenizer"].as_str().expect("a fingerprint");
    assert_eq!(fingerprint.len(), 16, "{fingerprint}");
    assert_eq!(models[1]["tokenizer"], Value::Null);
    for (id, path) in [(0, &reference), (1, &gguf)] {
        // A recall the reference model learned, in its vocabulary; the indirect-object task
        // for GPT-2 (the reference model reads its names as the unknown token).
        let task = if id == 0 { &RECALL } else { &IOI };
        // The model page: inspect --json, whole.
        let inspect = cli_json(&["inspect", path, "--json"]);
        assert_eq!(server.get(&format!("/api/models/{id}")).json(), inspect);
        assert_eq!(models[id]["architecture"], inspect["architecture"]);
        assert_eq!(models[id]["parameters"], inspect["parameters"]);

        // A tensor's statistics and histogram (timings aside).
        let name = inspect["tensors"][1]["name"].as_str().unwrap().to_string();
        let mut api = server
            .get(&format!("/api/models/{id}/tensors/{name}?bins=40"))
            .json();
        let mut cli = cli_json(&[
            "inspect", path, "--tensor", &name, "--stats", "--hist", "40", "--json",
        ]);
        for doc in [&mut api, &mut cli] {
            let stats = doc["stats"].as_object_mut().unwrap();
            stats.remove("seconds");
            stats.remove("gb_per_s");
        }
        assert_eq!(api, cli, "{name}");

        // Predictions at every position: run --json.
        let api = server
            .post(
                &format!("/api/models/{id}/predictions"),
                &json!({"prompt": task.prompt, "top_k": 5}),
            )
            .json();
        let cli = cli_json(&[
            "run",
            path,
            "--prompt",
            task.prompt,
            "--top-k",
            "5",
            "--all-positions",
            "--json",
        ]);
        assert_eq!(api, cli);

        // The logit lens, following the model's own prediction and a chosen target.
        for target in [None, Some("#3")] {
            let mut body = json!({"prompt": task.prompt, "top_k": 3});
            let mut args = vec![
                "lens",
                path,
                "--prompt",
                task.prompt,
                "--top",
                "3",
                "--json",
            ];
            if let Some(t) = target {
                body["target"] = json!(t);
                args.extend(["--target", t]);
            }
            let api = server.post(&format!("/api/models/{id}/lens"), &body).json();
            assert_eq!(api, cli_json(&args), "target {target:?}");
        }

        // Direct logit attribution and head roles.
        for versus in [None, Some(task.wrong)] {
            let mut body = json!({"prompt": task.prompt, "target": task.answer});
            let mut args = vec![
                "attribute",
                path,
                "--prompt",
                task.prompt,
                "--target",
                task.answer,
                "--json",
            ];
            if let Some(v) = versus {
                body["versus"] = json!(v);
                args.extend(["--versus", v]);
            }
            let api = server
                .post(&format!("/api/models/{id}/attribute"), &body)
                .json();
            assert_eq!(api, cli_json(&args), "attribute versus {versus:?}");
        }
        let api = server
            .post(&format!("/api/models/{id}/heads"), &json!({"top": 3}))
            .json();
        assert_eq!(api, cli_json(&["heads", path, "--top", "3", "--json"]));

        // Attention patterns: trace's hook_pattern tensors, value for value.
        let api = server
            .post(
                &format!("/api/models/{id}/attention"),
                &json!({"prompt": task.prompt}),
            )
            .json();
        let layers = api["n_layers"].as_u64().unwrap() as usize;
        assert!(layers > 0);
        for layer in 0..layers {
            let name = format!("blocks.{layer}.attn.hook_pattern");
            let (_, values) = traced(path, &["--prompt", task.prompt], &name);
            let shown: Vec<f32> = api["patterns"][layer]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|head| head.as_array().unwrap())
                .flat_map(|row| row.as_array().unwrap())
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(shown, values, "{name}");
        }

        // Patching, streamed: progress events, then the CLI's document.
        for (what, method) in [("resid_pre", "both"), ("heads", "activation")] {
            let body = json!({"clean": task.clean, "corrupt": task.corrupt, "answer": task.answer,
                "wrong": task.wrong, "what": what, "method": method});
            let r = server.post(&format!("/api/models/{id}/patch"), &body);
            assert_eq!(r.status, 200, "{}", r.text());
            let events = sse_events(&r.text());
            let (last, data) = events.last().expect("events");
            assert_eq!(last, "result", "{data}");
            assert!(events.iter().any(|(e, _)| e == "progress"));
            let cli = cli_json(&[
                "patch",
                path,
                "--clean",
                task.clean,
                "--corrupt",
                task.corrupt,
                "--answer",
                task.answer,
                "--wrong",
                task.wrong,
                "--what",
                what,
                "--method",
                method,
                "--json",
            ]);
            let doc: Value = serde_json::from_str(data).unwrap();
            assert_eq!(doc, cli, "patch {what} {method}");
        }

        // Ablation, streamed the same way.
        let cases = [
            (
                json!({"text": task.clean, "targets": ["heads"], "each": true}),
                vec!["--target", "heads", "--each"],
            ),
            (
                json!({"text": task.clean, "targets": ["L0H1", "L1MLP"], "method": "mean",
                    "reference": [task.corrupt, "the cat sat on the mat"]}),
                vec![
                    "--target",
                    "L0H1,L1MLP",
                    "--method",
                    "mean",
                    "--reference",
                    task.corrupt,
                    "--reference",
                    "the cat sat on the mat",
                ],
            ),
        ];
        for (body, extra) in cases {
            let r = server.post(&format!("/api/models/{id}/ablate"), &body);
            assert_eq!(r.status, 200, "{}", r.text());
            let events = sse_events(&r.text());
            let (last, data) = events.last().expect("events");
            assert_eq!(last, "result", "{data}");
            let mut args = vec!["ablate", path, "--text", task.clean, "--json"];
            args.extend(extra);
            let doc: Value = serde_json::from_str(data).unwrap();
            assert_eq!(doc, cli_json(&args), "ablate {body}");
        }
    }
}

/// Prompts and answers for one model: the prompt's next token `answer` (rather than `wrong`),
/// and a `clean` / `corrupt` pair of equal length that swaps them.
struct Task {
    prompt: &'static str,
    answer: &'static str,
    wrong: &'static str,
    clean: &'static str,
    corrupt: &'static str,
}

const IOI: Task = Task {
    prompt: PROMPT,
    answer: " Mary",
    wrong: " John",
    clean: "When Mary and John went to the store, John gave a drink to",
    corrupt: "When Mary and John went to the store, Mary gave a drink to",
};

const RECALL: Task = Task {
    prompt: "x3 = v05 , x7 = v11 . the cat sees a dog . x3 =",
    answer: "v05",
    wrong: "v11",
    clean: "x3 = v05 , x7 = v11 . x3 =",
    corrupt: "x3 = v11 , x7 = v05 . x3 =",
};

/// `(event, data)` of each server-sent event.
fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data += d.trim();
                }
            }
            (!data.is_empty()).then_some((event, data))
        })
        .collect()
}

#[test]
fn expert_routing_is_the_cli_json() {
    let olmoe = root()
        .join("tests/fixtures/llamacpp/olmoe/model-Q8_0.gguf")
        .display()
        .to_string();
    let server = Server::start(&[&olmoe, &reference()]);
    let api = server
        .post("/api/models/0/experts", &json!({"prompt": PROMPT}))
        .json();
    assert_eq!(
        api,
        cli_json(&["experts", &olmoe, "--prompt", PROMPT, "--json"])
    );
    // A dense model has no routing to show.
    let r = server.post("/api/models/1/experts", &json!({"prompt": PROMPT}));
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn diffs_are_the_cli_json() {
    let dir = root().join("tests/fixtures/llamacpp/llama");
    let (a, b) = (
        dir.join("model-F32.gguf").display().to_string(),
        dir.join("model-Q8_0.gguf").display().to_string(),
    );
    let server = Server::start(&[&a, &b]);
    assert_eq!(
        server.get("/api/diff/0/1").json(),
        cli_json(&["diff", &a, &b, "--json"])
    );
    assert_eq!(
        server.get("/api/diff/1/0?top=3").json(),
        cli_json(&["diff", &b, &a, "--top", "3", "--json"])
    );
    assert_eq!(server.get("/api/diff/0/7").status, 404);

    // Drift between the same two files, on prompts (the CLI reads them from a file).
    let dir = scratch("serve_cli", "drift");
    let prompts = format!("{}\nThe capital of France is\n", IOI.clean);
    let file = dir.join("prompts.txt");
    std::fs::write(&file, &prompts).unwrap();
    let mut api = server
        .post("/api/drift/0/1", &json!({"prompts": prompts}))
        .json();
    let mut cli = cli_json(&[
        "drift",
        &a,
        &b,
        "--prompts",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(api["input"], json!("request"));
    api["input"] = Value::Null;
    cli["input"] = Value::Null;
    assert_eq!(api, cli);
    assert_eq!(
        server
            .post("/api/drift/0/1", &json!({"prompts": ""}))
            .status,
        400
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `(feature, activation)` of the `k` most active features at each position, from a trace of
/// the SAE's `hook_sae_acts_post` (zeros left out; ties by id).
fn top_features_traced(model: &str, sae: &str, prompt: &str, k: usize) -> Vec<Vec<(u64, f32)>> {
    let hook = "blocks.0.hook_resid_post.hook_sae_acts_post";
    let (shape, values) = traced(model, &["--sae", sae, "--prompt", prompt], hook);
    let d_sae = *shape.last().unwrap();
    values
        .chunks_exact(d_sae)
        .map(|row| {
            let mut order: Vec<usize> = (0..d_sae).filter(|&f| row[f] != 0.0).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            order
                .into_iter()
                .take(k)
                .map(|f| (f as u64, row[f]))
                .collect()
        })
        .collect()
}

#[test]
fn features_are_the_cli_json() {
    let model = root()
        .join("tests/fixtures/parity/gpt2")
        .display()
        .to_string();
    let sae = root()
        .join("tests/fixtures/saelens/standard")
        .display()
        .to_string();
    let tokens = root()
        .join("tests/fixtures/saelens/tokens.safetensors")
        .display()
        .to_string();
    let server = Server::start(&[&model, &reference(), "--sae", &sae, "--sae-tokens", &tokens]);
    for (query, extra) in [("?features=3,17", vec!["--features", "3,17"]), ("", vec![])] {
        let mut api = server.get(&format!("/api/models/0/features{query}")).json();
        assert!(api["token_text"].is_object());
        api.as_object_mut().unwrap().remove("token_text");
        let mut args = vec![
            "features", &model, "--sae", &sae, "--tokens", &tokens, "--json",
        ];
        args.extend(extra);
        assert_eq!(api, cli_json(&args), "features{query}");
    }
    let api = server
        .post(
            "/api/models/0/features/active",
            &json!({"prompt": PROMPT, "top_k": 5}),
        )
        .json();
    let shown: Vec<Vec<(u64, f32)>> = api["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["feature"].as_u64().unwrap(),
                        f["activation"].as_f64().unwrap() as f32,
                    )
                })
                .collect()
        })
        .collect();
    assert_eq!(shown, top_features_traced(&model, &sae, PROMPT, 5));
    // The second model has no SAE; a feature id past the SAE's width is refused.
    assert_eq!(server.get("/api/models/1/features").status, 400);
    assert_eq!(
        server.get("/api/models/0/features?features=99999").status,
        400
    );
    assert_eq!(server.get("/api/models/0/features?features=x").status, 400);
}

#[test]
fn audits_are_the_cli_json() {
    let (reference, gguf) = (reference(), gguf());
    let server = Server::start(&[&reference, &gguf]);
    assert_eq!(
        server.get("/api/models/0/audit").json(),
        cli_json(&["audit", &reference, "--json"])
    );
    assert_eq!(
        server.get("/api/registry").json(),
        cli_json(&["audit", "--list", "--json"])
    );
    let id = "meta-llama/Llama-3.1-8B";
    assert_eq!(
        server.get(&format!("/api/registry/{id}")).json(),
        cli_json(&["audit", id, "--json"])
    );
    // A single file is not a release; a registry route never reads a path, even one that
    // exists (the reference release, relative to the repository and absolute).
    assert_eq!(server.get("/api/models/1/audit").status, 400);
    let absolute = reference.trim_start_matches('/').to_string();
    for path in [
        "/api/registry/models/reference".to_string(),
        format!("/api/registry/{absolute}"),
        format!("/api/registry//{absolute}"),
        "/api/registry/..%2F..%2Fetc".to_string(),
        "/api/registry/%2Fetc%2Fpasswd".to_string(),
    ] {
        let r = server.get(&path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
}

/// A checkpoint of the reference release has no card: its pages offered the indirect-object
/// prompt, which its vocabulary reads as 11 `<unk>`s of 14. The model list tells which models
/// tokenize alike (their pages then share prompts), and a prediction counts unknown tokens.
#[test]
fn models_that_tokenize_alike_are_known_and_unknown_tokens_counted() {
    let checkpoint = root().join("models/reference/checkpoints/step-000250");
    let server = Server::start(&[&reference(), checkpoint.to_str().unwrap()]);
    let models = server.get("/api/models").json();
    assert_eq!(models[1]["examples"], json!([]));
    assert!(models[0]["tokenizer"].is_string(), "{models}");
    assert_eq!(models[0]["tokenizer"], models[1]["tokenizer"]);
    let r = server.post(
        "/api/models/1/predictions",
        &json!({"prompt": "When Mary and John went to the store"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert_eq!(doc["unknown_token"], "<unk>");
    assert!(doc["unknown_tokens"].as_u64().unwrap() >= 5, "{doc}");
}
