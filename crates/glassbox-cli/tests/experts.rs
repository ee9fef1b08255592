//! `glassbox experts` on the mixture-of-experts fixtures: the per-token routing it prints
//! equals the library's routing hooks, usage statistics add up, the plot is written, and bad
//! input exits 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use glassbox_models::moe::{routing_from_cache, ROUTING_HOOKS};
use glassbox_models::{HookedModel, LoadOptions, NameFilter};
use serde_json::Value;

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("run glassbox")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "glassbox failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// The routes the command prints for `PROMPT` equal the hooks of a library run.
fn check_prompt_routes(rel: &str) {
    let dir = fixture(rel);
    let out = glassbox(&[
        "experts",
        dir.to_str().unwrap(),
        "--prompt",
        PROMPT,
        "--json",
    ]);
    let report = json_of(&out);
    let model = HookedModel::load(&dir, &LoadOptions::default()).unwrap();
    let ids = model.to_tokens(PROMPT).unwrap();
    let filter = NameFilter::new(&ROUTING_HOOKS).unwrap();
    let (_, cache) = model
        .run_with_cache(&model.ids_tensor(&ids).unwrap(), &filter)
        .unwrap();
    let expected = routing_from_cache(&cache, model.info().n_layers, 0).unwrap();
    assert_eq!(report["tokens"].as_array().unwrap().len(), ids.len());
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), expected.len(), "{rel}: MoE layer count");
    for (got, want) in layers.iter().zip(&expected) {
        assert_eq!(got["layer"], want.layer);
        assert_eq!(got["n_experts"], want.n_experts);
        for (pos, routes) in got["routes"].as_array().unwrap().iter().enumerate() {
            for (slot, pair) in routes.as_array().unwrap().iter().enumerate() {
                assert_eq!(pair[0].as_u64().unwrap() as u32, want.experts[pos][slot]);
                let w = pair[1].as_f64().unwrap() as f32;
                assert!(
                    (w - want.weights[pos][slot]).abs() < 1e-6,
                    "{rel}: weight at {pos}/{slot}"
                );
            }
        }
    }
}

#[test]
fn prompt_routes_match_the_hooks() {
    let more = "../../crates/glassbox-models/tests/fixtures/more";
    for rel in ["families/deepseek-v3", "families/mixtral"] {
        check_prompt_routes(rel);
    }
    for name in [
        "olmoe",
        "glm4-moe",
        "gpt-oss",
        "gpt-oss-mxfp4",
        "llama4",
        "qwen3-next",
        "nemotron-h",
    ] {
        check_prompt_routes(&format!("{more}/{name}"));
    }
}

/// Windows cut from a text are seen as a text is, after the tokenizer's BOS, whose own routing
/// is not counted: a tokenizer that adds one gives the same token count, with the prefix said.
#[test]
fn file_windows_start_with_the_tokenizers_bos() {
    let tmp = std::env::temp_dir().join(format!("glassbox-experts-bos-{}", std::process::id()));
    let with_bos = tmp.join("model");
    std::fs::create_dir_all(&with_bos).unwrap();
    let moe = fixture("families/mixtral");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(moe.join(f), with_bos.join(f)).unwrap();
    }
    let mut tokenizer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(moe.join("tokenizer.json")).unwrap()).unwrap();
    tokenizer["post_processor"] = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}}
    });
    std::fs::write(with_bos.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let text = tmp.join("text.txt");
    std::fs::write(&text, "The Eiffel Tower is in Paris. ".repeat(6)).unwrap();
    let usage = |model: &Path| {
        json_of(&glassbox(&[
            "experts",
            model.to_str().unwrap(),
            "--file",
            text.to_str().unwrap(),
            "--window",
            "8",
            "--json",
        ]))
    };
    let (plain, bos) = (usage(&moe), usage(&with_bos));
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(
        (plain["prefix"].as_u64(), bos["prefix"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(plain["tokens"], bos["tokens"], "the BOS is not counted");
    assert_ne!(
        plain["layers"], bos["layers"],
        "the BOS changes what the windows route"
    );
}

#[test]
fn file_usage_adds_up_and_plots() {
    let tmp = std::env::temp_dir().join(format!("glassbox-experts-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let text = tmp.join("text.txt");
    std::fs::write(
        &text,
        "The Eiffel Tower is in Paris. The Colosseum is in Rome.\n".repeat(4),
    )
    .unwrap();
    let plot = tmp.join("usage.svg");
    let dir = fixture("families/deepseek-v3");
    let out = glassbox(&[
        "experts",
        dir.to_str().unwrap(),
        "--file",
        text.to_str().unwrap(),
        "--window",
        "16",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let report = json_of(&out);
    // the setting the rates depend on, and the level uniform routing (2 of 8) gives
    assert_eq!(report["window"], 16);
    assert_eq!(report["uniform"], 0.25);
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "layers 1 and 2 are MoE");
    for l in layers {
        let freq: Vec<f64> = l["frequency"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(freq.len(), 8);
        // Each token picks 2 distinct experts.
        assert!(
            (freq.iter().sum::<f64>() - 2.0).abs() < 1e-9,
            "frequencies {freq:?}"
        );
        for (f, w) in freq.iter().zip(l["mean_weight"].as_array().unwrap()) {
            let w = w.as_f64().unwrap();
            assert!(if *f == 0.0 {
                w == 0.0
            } else {
                w > 0.0 && w <= 2.5 + 1e-6
            });
        }
    }
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("class=\"cell\"").count() + svg.matches("class=\"cell empty\"").count(),
        2 * 8,
        "one cell per layer and expert"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn bad_input_exits_2() {
    let dense = fixture("parity/llama");
    let out = glassbox(&["experts", dense.to_str().unwrap(), "--prompt", "hi"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no mixture-of-experts layers"));
    let moe = fixture("families/mixtral");
    let out = glassbox(&[
        "experts",
        moe.to_str().unwrap(),
        "--file",
        "/nonexistent/text.txt",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/text.txt"));
    let out = glassbox(&[
        "experts",
        moe.to_str().unwrap(),
        "--prompt",
        "hi",
        "--plot",
        "out.png",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = glassbox(&["experts", moe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

/// Each expert the last token was routed to, and the shared experts, are direct-logit-
/// attribution parts that sum (with everything else) to the logit difference; ablating an
/// expert changes the loss, and experts that do not exist are refused.
#[test]
fn experts_are_attribution_and_ablation_components() {
    use glassbox_analysis::ablation::{self, AblationMethod, AblationTarget};
    use glassbox_analysis::attribution::{self, Component};

    let model =
        HookedModel::load(&fixture("families/deepseek-v3"), &LoadOptions::default()).unwrap();
    let ids = model.to_tokens(PROMPT).unwrap();
    let mary = model.to_tokens(" Mary").unwrap()[0];
    let john = model.to_tokens(" John").unwrap()[0];
    let attr = attribution::run(&model, &ids, None, mary, Some(john)).unwrap();
    let experts: Vec<(usize, usize)> = attr
        .parts
        .iter()
        .filter_map(|(c, _)| match *c {
            Component::Expert { layer, expert } => Some((layer, expert)),
            _ => None,
        })
        .collect();
    let shared = attr
        .parts
        .iter()
        .filter(|(c, _)| matches!(c, Component::SharedExperts { .. }))
        .count();
    assert_eq!(
        experts.iter().filter(|(l, _)| *l == 1).count(),
        2,
        "{experts:?}"
    );
    assert_eq!(
        experts.iter().filter(|(l, _)| *l == 2).count(),
        2,
        "{experts:?}"
    );
    assert_eq!(shared, 2);
    assert!(
        attr.parts
            .iter()
            .any(|(c, _)| *c == Component::Mlp { layer: 0 }),
        "layer 0 is dense"
    );
    assert!(
        (attr.sum() - attr.total).abs() < 1e-3,
        "parts sum {} vs logit difference {}",
        attr.sum(),
        attr.total
    );

    let (layer, expert) = experts[experts.len() - 1];
    let target = AblationTarget::parse(&format!("L{layer}E{expert}")).unwrap();
    assert_eq!(target, AblationTarget::Expert { layer, expert });
    let result = ablation::run(&model, &ids, &[target], AblationMethod::Zero, &[]).unwrap();
    assert!((result.ablated_loss - result.baseline_loss).abs() > 1e-5);
    let shared_target = AblationTarget::parse(&format!("L{layer}SE")).unwrap();
    let result = ablation::run(&model, &ids, &[shared_target], AblationMethod::Zero, &[]).unwrap();
    assert!((result.ablated_loss - result.baseline_loss).abs() > 1e-5);

    let missing = AblationTarget::Expert { layer, expert: 8 };
    assert!(ablation::run(&model, &ids, &[missing], AblationMethod::Zero, &[]).is_err());
    let mixtral = HookedModel::load(&fixture("families/mixtral"), &LoadOptions::default()).unwrap();
    let no_shared = AblationTarget::SharedExperts { layer: 0 };
    assert!(ablation::run(&mixtral, &ids, &[no_shared], AblationMethod::Zero, &[]).is_err());
}

#[path = "../../glassbox-models/tests/support/mixtral_gguf.rs"]
mod mixtral_gguf;

/// The same analyses on a GGUF mixture-of-experts model (the Mixtral fixture written in
/// llama.cpp's layout): `experts` prints the routing of the safetensors model, and expert
/// attribution and ablation give the same figures as on the safetensors model.
#[test]
fn experts_ablation_and_attribution_work_on_a_gguf_moe_model() {
    use glassbox_analysis::ablation::{self, AblationMethod, AblationTarget};
    use glassbox_analysis::attribution::{self, Component};

    let gguf =
        std::env::temp_dir().join(format!("glassbox-cli-mixtral-{}.gguf", std::process::id()));
    mixtral_gguf::write_mixtral_gguf(&gguf);
    let gguf_str = gguf.to_str().unwrap();
    let hub = fixture("families/mixtral");
    let hub_model = HookedModel::load(&hub, &LoadOptions::default()).unwrap();
    // The GGUF carries no vocabulary: feed both the same token ids.
    let ids = hub_model.to_tokens(PROMPT).unwrap();
    let ids_arg = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let routes = |model: &str| {
        json_of(&glassbox(&[
            "experts", model, "--tokens", &ids_arg, "--json",
        ]))
    };
    let (from_gguf, from_hub) = (routes(gguf_str), routes(hub.to_str().unwrap()));
    assert_eq!(
        from_gguf["layers"], from_hub["layers"],
        "routing differs between GGUF and safetensors"
    );

    let gguf_model = HookedModel::load(&gguf, &LoadOptions::default()).unwrap();
    let mary = hub_model.to_tokens(" Mary").unwrap()[0];
    let john = hub_model.to_tokens(" John").unwrap()[0];
    let attr = attribution::run(&gguf_model, &ids, None, mary, Some(john)).unwrap();
    let hub_attr = attribution::run(&hub_model, &ids, None, mary, Some(john)).unwrap();
    assert!(
        (attr.sum() - attr.total).abs() < 1e-3,
        "parts {} vs total {}",
        attr.sum(),
        attr.total
    );
    assert!((attr.total - hub_attr.total).abs() < 1e-4);
    let experts: Vec<&(Component, f32)> = attr
        .parts
        .iter()
        .filter(|(c, _)| matches!(c, Component::Expert { .. }))
        .collect();
    assert!(
        !experts.is_empty(),
        "no expert components: {:?}",
        attr.parts
    );
    for (component, value) in &experts {
        let (_, hub_value) = hub_attr
            .parts
            .iter()
            .find(|(c, _)| c == component)
            .expect("same experts chosen");
        assert!(
            (value - hub_value).abs() < 1e-4,
            "{component:?}: {value} vs {hub_value}"
        );
    }
    let Component::Expert { layer, expert } = experts[0].0 else {
        unreachable!()
    };
    let target = AblationTarget::Expert { layer, expert };
    let on_gguf = ablation::run(&gguf_model, &ids, &[target], AblationMethod::Zero, &[]).unwrap();
    let on_hub = ablation::run(&hub_model, &ids, &[target], AblationMethod::Zero, &[]).unwrap();
    assert!((on_gguf.ablated_loss - on_gguf.baseline_loss).abs() > 1e-5);
    assert!((on_gguf.ablated_loss - on_hub.ablated_loss).abs() < 1e-4);
    std::fs::remove_file(&gguf).ok();
}
