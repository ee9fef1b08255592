//! The analysis commands end to end: `lens`, `attribute`, `heads`, `patch`, `ablate`,
//! `steer`, on the parity fixtures of every architecture and on a GGUF model — JSON output
//! with its identities, SVG figures, and bad input refused with exit code 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPT: &str = "When Mary and John went to the store, Mary gave a drink to";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    root()
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-analyses-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn glassbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs a command that must succeed and print JSON.
fn json(args: &[&str]) -> serde_json::Value {
    let out = glassbox(args);
    assert!(
        out.status.success(),
        "glassbox {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("glassbox {args:?}: not JSON ({e})"))
}

/// Runs a command that must fail with exit code 2 and a message containing `message`.
fn refused(args: &[&str], message: &str) {
    let out = glassbox(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "glassbox {args:?}: {stderr}");
    assert!(stderr.contains(message), "glassbox {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn check_svg(path: &Path) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|_| panic!("{} written", path.display()));
    assert!(
        text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
        "{}",
        path.display()
    );
}

/// Every analysis on `model`, with `mary`/`john` single tokens of its tokenizer.
fn check(model: &str, tag: &str, mary: &str, john: &str) {
    let plot = |what: &str| temp(&format!("{tag}-{what}.svg"));
    let p = |p: &Path| p.to_string_lossy().into_owned();

    let lens = json(&[
        "lens",
        model,
        "--prompt",
        CLEAN,
        "--json",
        "--plot",
        &p(&plot("lens")),
    ]);
    let layers = lens["report"]["layers"].as_array().unwrap().len();
    assert!(layers >= 2, "{tag}: lens rows");
    check_svg(&plot("lens"));

    let a = json(&[
        "attribute",
        model,
        "--prompt",
        CLEAN,
        "--target",
        mary,
        "--versus",
        john,
        "--json",
        "--plot",
        &p(&plot("attribute")),
    ]);
    let (total, sum) = (
        a["total"].as_f64().unwrap(),
        a["sum_of_parts"].as_f64().unwrap(),
    );
    assert!(
        (total - sum).abs() <= 1e-4 * total.abs().max(1.0),
        "{tag}: parts {sum} vs {total}"
    );
    check_svg(&plot("attribute"));

    let h = json(&[
        "heads",
        model,
        "--seq-len",
        "8",
        "--batch",
        "2",
        "--top",
        "2",
        "--json",
        "--plot",
        &p(&plot("heads")),
    ]);
    let induction = h["scores"]["induction"].as_array().unwrap();
    assert_eq!(induction.len(), layers - 1, "{tag}: one row per layer");
    assert_eq!(h["top"]["induction"].as_array().unwrap().len(), 2);
    check_svg(&plot("heads"));

    for what in ["resid_pre", "heads"] {
        let r = json(&[
            "patch",
            model,
            "--clean",
            CLEAN,
            "--corrupt",
            CORRUPT,
            "--answer",
            mary,
            "--wrong",
            john,
            "--what",
            what,
            "--method",
            "both",
            "--json",
            "--plot",
            &p(&plot("patch")),
        ]);
        let results = r["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "{tag}: activation and attribution");
        assert_eq!(results[0]["method"], "activation");
        check_svg(&plot("patch"));
    }

    let ab = json(&[
        "ablate",
        model,
        "--text",
        CLEAN,
        "--target",
        "L0H0,L0MLP",
        "--json",
        "--plot",
        &p(&plot("ablate")),
    ]);
    let r = &ab["results"][0];
    assert_ne!(
        r["baseline_loss"], r["ablated_loss"],
        "{tag}: ablation changes the loss"
    );
    check_svg(&plot("ablate"));

    let cv = temp(&format!("{tag}-cv.gguf"));
    let s = json(&[
        "steer",
        model,
        "--positive",
        "I love this",
        "--positive",
        "What a great day",
        "--negative",
        "I hate this",
        "--negative",
        "What a terrible day",
        "--layers",
        "1-1",
        "--out",
        &p(&cv),
        "--json",
    ]);
    assert_eq!(s["layers"][0]["hook"], "blocks.1.hook_resid_post");
    // the paired permutation control: two pairs, four side patterns
    assert_eq!(s["pairs"], 2);
    let p = s["layers"][0]["p_value"].as_f64().unwrap();
    assert!([0.5, 1.0].contains(&p), "{tag}: p {p}");
    assert!(s["layers"][0]["swapped_norm"].as_f64().unwrap() >= 0.0);
    assert!(cv.exists(), "{tag}: control vector written");
}

#[test]
fn analyses_run_on_every_parity_architecture() {
    for name in ["gpt2", "pythia", "llama", "qwen2"] {
        check(&fixture(&format!("parity/{name}")), name, " Mary", " John");
    }
}

#[test]
fn analyses_run_on_a_gguf_model() {
    let gguf = root().join(".artifacts/tiny.gguf");
    if !gguf.exists() {
        assert!(
            std::env::var("GLASSBOX_REQUIRE_ARTIFACTS").as_deref() != Ok("1"),
            "{} is missing (run scripts/fetch-artifacts.sh)",
            gguf.display()
        );
        eprintln!("skipping: {} not fetched", gguf.display());
        return;
    }
    // ids rather than text: this tokenizer splits the names differently
    check(&gguf.to_string_lossy(), "gguf", "#10", "#11");
}

#[test]
fn bad_input_is_refused_with_exit_code_2() {
    let gpt2 = fixture("parity/gpt2");
    refused(
        &[
            "patch",
            &gpt2,
            "--clean",
            CLEAN,
            "--corrupt",
            "Mary gave a drink to",
            "--answer",
            " Mary",
            "--wrong",
            " John",
        ],
        "equal token length",
    );
    refused(
        &["lens", &gpt2, "--prompt", "Paris", "--target", " Paris"],
        "not one",
    );
    refused(
        &["lens", &gpt2, "--prompt", "Paris", "--target", "#99999"],
        "outside the vocabulary",
    );
    refused(
        &["lens", &gpt2, "--prompt", "Paris", "--plot", "figure.png"],
        ".svg",
    );
    refused(
        &[
            "attribute",
            &gpt2,
            "--prompt",
            CLEAN,
            "--target",
            " Mary",
            "--position",
            "99",
        ],
        "position 99",
    );
    refused(&["heads", &gpt2, "--seq-len", "100"], "context");
    refused(
        &["ablate", &gpt2, "--text", CLEAN, "--target", "L9H0"],
        "layers",
    );
    refused(
        &["ablate", &gpt2, "--text", CLEAN, "--target", "L0X"],
        "--target",
    );
    refused(
        &[
            "ablate", &gpt2, "--text", CLEAN, "--target", "L0H0", "--method", "mean",
        ],
        "reference",
    );
    let out = temp("refused.gguf");
    refused(
        &[
            "steer",
            &gpt2,
            "--positive",
            "a",
            "--negative",
            "b",
            "--layers",
            "0-1",
            "--out",
            &out.to_string_lossy(),
        ],
        "layer 0",
    );
    assert!(!out.exists(), "no file is written on refusal");
    refused(
        &["lens", &fixture("parity/missing"), "--prompt", "a"],
        "missing",
    );
}

#[test]
fn terminal_views_label_tokens_and_layers() {
    let gpt2 = fixture("parity/gpt2");
    let out = glassbox(&[
        "attribute",
        &gpt2,
        "--prompt",
        CLEAN,
        "--target",
        " Mary",
        "--versus",
        " John",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("L1") && text.contains("H3") && text.contains("sum of parts"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour codes when stdout is not a terminal"
    );
    let out = glassbox(&[
        "lens",
        &gpt2,
        "--prompt",
        "The Eiffel Tower",
        "--target",
        " in",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("final_post") && text.contains("␣Ei") && text.contains("#"),
        "{text}"
    );
}

#[test]
fn generate_applies_control_vectors() {
    let gpt2 = fixture("parity/gpt2");
    let cv = temp("generate-cv.gguf");
    let cv = cv.to_string_lossy();
    json(&[
        "steer",
        &gpt2,
        "--positive",
        "I love this",
        "--negative",
        "I hate this",
        "--layers",
        "1",
        "--out",
        &cv,
        "--json",
    ]);
    let run = |extra: &[&str]| -> String {
        let mut args = vec![
            "generate",
            gpt2.as_str(),
            "--prompt",
            "When Mary",
            "--max-tokens",
            "8",
        ];
        args.extend_from_slice(extra);
        let out = glassbox(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = run(&[]);
    assert_eq!(
        run(&["--control-vector", &format!("{cv}:0")]),
        plain,
        "scale 0 changes nothing"
    );
    assert_ne!(
        run(&["--control-vector", &format!("{cv}:40")]),
        plain,
        "a large scale steers"
    );
    let made_by_llama_cpp =
        root().join("crates/glassbox-analysis/tests/fixtures/llamacpp-cvector.gguf");
    run(&["--control-vector", &made_by_llama_cpp.to_string_lossy()]);
    refused(
        &[
            "generate",
            &gpt2,
            "--prompt",
            "x",
            "--control-vector",
            "/nonexistent.gguf:2",
        ],
        "no such",
    );
    let junk = temp("junk.gguf");
    std::fs::write(&junk, b"not a gguf").unwrap();
    refused(
        &[
            "generate",
            &gpt2,
            "--prompt",
            "x",
            "--control-vector",
            &junk.to_string_lossy(),
        ],
        "junk.gguf",
    );
}

/// A setup that cannot support a patching result is said in the terminal, the JSON and the
/// figure, and refused under `--strict`.
#[test]
fn patching_guard_rails_name_a_weak_setup() {
    let gpt2 = fixture("parity/gpt2");
    // On the random-weight fixture the IOI pair barely moves the metric: a tiny gap.
    let base = [
        "patch",
        &gpt2,
        "--clean",
        CLEAN,
        "--corrupt",
        CORRUPT,
        "--answer",
        " Mary",
        "--wrong",
        " John",
    ];
    let out = glassbox(&base);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the clean−corrupted gap"),
        "{stderr}"
    );
    let plot = temp("weak-setup.svg");
    let mut with_plot = base.to_vec();
    with_plot.extend(["--plot", plot.to_str().unwrap(), "--json"]);
    let v = json(&with_plot);
    assert!(!v["warnings"].as_array().unwrap().is_empty());
    assert!(v["gap"].as_f64().is_some());
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.contains("class=\"note warning\""),
        "the figure says it too"
    );
    assert!(
        svg.contains("metric: logit["),
        "the figure names the metric and tokens"
    );
    // Swapped answers invert the scale: refused under --strict.
    let swapped = [
        "patch",
        &gpt2,
        "--clean",
        CLEAN,
        "--corrupt",
        CORRUPT,
        "--answer",
        " John",
        "--wrong",
        " Mary",
        "--strict",
    ];
    let out = glassbox(&swapped);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupted run scores above"));
}

/// Terminal views fit the width they are given (80 or 120 columns, from `COLUMNS`), and colour
/// follows `--color` and `NO_COLOR`.
#[test]
fn terminal_views_fit_the_width_and_honour_no_color() {
    let gpt2 = fixture("parity/gpt2");
    let args = [
        "patch",
        &gpt2,
        "--clean",
        CLEAN,
        "--corrupt",
        CORRUPT,
        "--answer",
        " Mary",
        "--wrong",
        " John",
    ];
    for width in [80usize, 120] {
        let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
            .args(args)
            .env("COLUMNS", width.to_string())
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(
            widest <= width,
            "{widest} columns at width {width}:\n{text}"
        );
        assert!(
            text.contains("position 0–"),
            "a wide grid continues in blocks"
        );
    }
    let colored = |extra: &[&str], no_color: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_glassbox"));
        c.args(["heads", &gpt2]).args(extra);
        match no_color {
            Some(v) => c.env("NO_COLOR", v),
            None => c.env_remove("NO_COLOR"),
        };
        String::from_utf8_lossy(&c.output().unwrap().stdout).contains('\x1b')
    };
    assert!(colored(&["--color", "always"], None));
    assert!(
        colored(&["--color", "always"], Some("1")),
        "a flag beats NO_COLOR"
    );
    assert!(!colored(&["--color", "never"], None));
    assert!(!colored(&[], Some("1")), "not a terminal, and NO_COLOR");
}

/// Under llama.cpp's numerics a quantized lm_head rounds the logit away from the parts' f32
/// projections (by 0.02, more than most parts): that difference is a part of its own, named,
/// and the parts sum to the model's value; in f32 there is none.
#[test]
fn attribution_names_the_unembeddings_rounding() {
    let q4 = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llamacpp/llama/model-Q4_0.gguf");
    let q4 = q4.to_str().unwrap();
    let attribute = |extra: &[&str]| {
        let mut args = vec![
            "attribute",
            q4,
            "--prompt",
            "The Eiffel Tower is in Paris",
            "--target",
            "#5",
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&args)
    };
    let rounding = |a: &serde_json::Value| {
        a["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["component"]["kind"] == "unembed_rounding")
            .count()
    };
    let native = attribute(&[]);
    assert_eq!(rounding(&native), 1, "{native}");
    let (total, sum) = (
        native["total"].as_f64().unwrap(),
        native["sum_of_parts"].as_f64().unwrap(),
    );
    assert!(
        (total - sum).abs() <= 1e-4 * total.abs().max(1.0),
        "{total} vs {sum}"
    );
    assert_eq!(rounding(&attribute(&["--numerics", "f32"])), 0);
}

/// Without colour a lens cell read as a clear prediction at 0.52 against 0.48: a cell whose
/// runner-up has at least 80 % of the top token's probability is marked `≈`, exactly those.
#[test]
fn lens_marks_near_ties() {
    let model = fixture("parity/gpt2");
    let prompt = "The Eiffel Tower is in";
    let report = json(&["lens", &model, "--prompt", prompt, "--json"]);
    let ties: usize = report["report"]["top"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .filter(|cell| {
            let p = |i: usize| cell[i]["prob"].as_f64().unwrap();
            p(1) >= 0.8 * p(0)
        })
        .count();
    assert!(ties > 0, "the fixture has near ties to mark");
    let out = glassbox(&["lens", &model, "--prompt", prompt, "--color", "never"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let marked: usize = text
        .lines()
        .filter(|l| l.contains('│'))
        .map(|l| l.matches('≈').count())
        .sum();
    assert_eq!(marked, ties, "{text}");
}
