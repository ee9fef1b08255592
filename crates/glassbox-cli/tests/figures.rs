//! The structure of every analysis command's figure, on each model kind: every panel has a
//! title, axis titles and tick labels, a heatmap has its colour bar, head scores their chance
//! baseline, an attribution every term with its total. Each figure's structure (panels, their
//! titles, notes, axis titles, tick and cell counts, colour bars, baselines, legends, bars) is
//! compared with a snapshot in `tests/snapshots/figures/`; `UPDATE_SNAPSHOTS=1` rewrites them.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    let dir = std::env::temp_dir().join(format!("glassbox-figures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `args` with `--plot` into a temporary SVG and returns the figure.
fn figure(name: &str, args: &[&str]) -> String {
    let path = temp(&format!("{name}.svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(args)
        .args(["--plot", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{name}: glassbox {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{name}"
    );
    svg
}

/// The texts of the `<text class="{class}" …>` elements of `svg`, in order.
fn texts(svg: &str, class: &str) -> Vec<String> {
    let open = format!("<text class=\"{class}\"");
    svg.match_indices(&open)
        .map(|(i, _)| {
            let rest = &svg[i..];
            let start = rest.find('>').unwrap() + 1;
            let end = rest.find("</text>").unwrap();
            unescape(&rest[start..end])
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn count(svg: &str, needle: &str) -> usize {
    svg.matches(needle).count()
}

/// One panel's structure, line by line; checks what every panel must have on the way.
fn panel_summary(name: &str, i: usize, p: &str) -> String {
    let title = texts(p, "title");
    let axes = texts(p, "axis-title");
    let ticks = texts(p, "tick");
    let cells = count(p, "class=\"cell\"") + count(p, "class=\"cell empty\"");
    let colorbars = count(p, "class=\"colorbar\"");
    let bars = texts(p, "label");
    let series = count(p, "class=\"series\"");
    assert_eq!(title.len(), 1, "{name} panel {i}: one title");
    assert!(!axes.is_empty(), "{name} panel {i}: axis titles");
    assert!(
        ticks.len() >= 2,
        "{name} panel {i}: ticks on the axes ({ticks:?})"
    );
    // a heatmap has a colour bar with ticks of its own; a chart has bars or series
    assert!(
        (cells > 0 && colorbars == 1) || !bars.is_empty() || series > 0,
        "{name} panel {i}: what it draws"
    );
    let mut s = format!("panel {i}: {}\n", title[0]);
    for n in texts(p, "note").iter().chain(&texts(p, "note warning")) {
        s.push_str(&format!("  note: {n}\n"));
    }
    s.push_str(&format!("  axes: {}\n", axes.join(" | ")));
    s.push_str(&format!("  ticks: {}\n", ticks.len()));
    if cells > 0 {
        s.push_str(&format!(
            "  cells: {cells}, with text: {}, colour bar: {colorbars}\n",
            count(p, "class=\"cell-text\"")
        ));
    }
    if p.contains("class=\"baseline\"") {
        s.push_str("  baseline\n");
    }
    if !bars.is_empty() {
        s.push_str(&format!("  bars: {}\n", bars.join(" | ")));
    }
    if series > 0 {
        let legend = count(p, "class=\"legend\"");
        assert_eq!(
            legend, series,
            "{name} panel {i}: a legend entry per series"
        );
        s.push_str(&format!("  series: {series}, legend: {legend}\n"));
    }
    s
}

fn summary(name: &str, svg: &str) -> String {
    let panels: Vec<&str> = svg.split("class=\"panel\"").skip(1).collect();
    assert!(!panels.is_empty(), "{name}: panels");
    panels
        .iter()
        .enumerate()
        .map(|(i, p)| panel_summary(name, i, p))
        .collect()
}

/// Compares the figure's structure with its snapshot (or writes it with UPDATE_SNAPSHOTS=1).
fn snapshot(name: &str, svg: &str) {
    let got = summary(name, svg);
    let path = root()
        .join("crates/glassbox-cli/tests/snapshots/figures")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{}: no snapshot (UPDATE_SNAPSHOTS=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        got,
        want,
        "{name}: the figure's structure changed ({})",
        path.display()
    );
}

#[test]
fn lens_figures_are_the_terminal_grids() {
    for (name, model) in [("lens-gpt2", "parity/gpt2"), ("lens-llama", "parity/llama")] {
        let svg = figure(
            name,
            &[
                "lens",
                &fixture(model),
                "--prompt",
                CLEAN,
                "--target",
                " Mary",
            ],
        );
        // the top token in every cell, the target's rank in every cell, probabilities on
        // their fixed log scale
        assert!(svg.contains("class=\"cell-text\""), "{name}");
        assert!(texts(&svg, "tick").iter().any(|t| t == "1e-4"), "{name}");
        snapshot(name, &svg);
    }
    let svg = figure(
        "lens-logprob",
        &[
            "lens",
            &fixture("parity/gpt2"),
            "--prompt",
            CLEAN,
            "--logprob",
        ],
    );
    assert!(texts(&svg, "axis-title")
        .iter()
        .any(|t| t.contains("log-probability")));
    snapshot("lens-logprob", &svg);
}

#[test]
fn attribution_figures_draw_every_term_and_the_total() {
    for (name, model, norm) in [
        ("attribute-gpt2", "parity/gpt2", "centred, divided"),
        ("attribute-llama", "parity/llama", "is divided"),
        ("attribute-mixtral", "families/mixtral", "is divided"),
    ] {
        let svg = figure(
            name,
            &[
                "attribute",
                &fixture(model),
                "--prompt",
                CLEAN,
                "--target",
                " Mary",
                "--versus",
                " John",
            ],
        );
        let bars = texts(&svg, "label");
        for term in [
            "embed",
            "L0 attention",
            "L0 MLP",
            "L1 attention",
            "L1 MLP",
            "final norm bias",
            "unembed bias",
            "sum of the terms",
            "model's value",
        ] {
            assert!(
                bars.iter().any(|b| b == term),
                "{name}: no bar for {term}: {bars:?}"
            );
        }
        // RMSNorm centres nothing; a bias-free model has no bias column
        assert!(
            texts(&svg, "note").iter().any(|n| n.contains(norm)),
            "{name}"
        );
        let bias_column = texts(&svg, "tick").iter().any(|t| t == "attn bias");
        assert_eq!(bias_column, model == "parity/gpt2", "{name}");
        snapshot(name, &svg);
    }
}

#[test]
fn head_scores_show_chance() {
    let svg = figure("heads-gpt2", &["heads", &fixture("parity/gpt2")]);
    assert_eq!(count(&svg, "class=\"baseline\""), 4);
    snapshot("heads-gpt2", &svg);
}

#[test]
fn patching_figures_name_the_setup() {
    let svg = figure(
        "patch-gpt2",
        &[
            "patch",
            &fixture("parity/gpt2"),
            "--clean",
            CLEAN,
            "--corrupt",
            CORRUPT,
            "--answer",
            " Mary",
            "--wrong",
            " John",
            "--what",
            "resid_pre",
            "--method",
            "both",
        ],
    );
    assert!(texts(&svg, "note")
        .iter()
        .any(|n| n.contains("metric: logit")));
    snapshot("patch-gpt2", &svg);
    let svg = figure(
        "patch-llama-heads",
        &[
            "patch",
            &fixture("parity/llama"),
            "--clean",
            CLEAN,
            "--corrupt",
            CORRUPT,
            "--answer",
            " Mary",
            "--wrong",
            " John",
            "--what",
            "heads",
        ],
    );
    snapshot("patch-llama-heads", &svg);
    // --range fixes the signed scale, so that figures of several runs compare
    let svg = figure(
        "patch-range",
        &[
            "patch",
            &fixture("parity/llama"),
            "--clean",
            CLEAN,
            "--corrupt",
            CORRUPT,
            "--answer",
            " Mary",
            "--wrong",
            " John",
            "--what",
            "heads",
            "--range",
            "5",
        ],
    );
    let ticks = texts(&svg, "tick");
    assert!(
        ticks.iter().any(|t| t == "-4") && ticks.iter().any(|t| t == "4"),
        "{ticks:?}"
    );
}

#[test]
fn ablation_figures_are_zero_based_and_complete() {
    let text = format!("{CLEAN} Mary");
    let svg = figure(
        "ablate-each",
        &[
            "ablate",
            &fixture("parity/gpt2"),
            "--text",
            &text,
            "--target",
            "heads,mlps",
            "--each",
        ],
    );
    // heads and MLPs in one layer × component grid
    let ticks = texts(&svg, "tick");
    assert!(ticks.iter().any(|t| t == "MLP") && ticks.iter().any(|t| t == "H3"));
    snapshot("ablate-each", &svg);
    let svg = figure(
        "ablate-one",
        &[
            "ablate",
            &fixture("parity/gpt2"),
            "--text",
            &text,
            "--target",
            "L0H1",
        ],
    );
    // losses are compared by height: the axis starts at zero
    assert_eq!(
        texts(&svg, "tick").iter().filter(|t| *t == "0").count(),
        2,
        "loss axis and Δ colour bar"
    );
    snapshot("ablate-one", &svg);
}

#[test]
fn steering_and_expert_figures_share_the_look() {
    let out = temp("v.gguf");
    let svg = figure(
        "steer",
        &[
            "steer",
            &fixture("parity/gpt2"),
            "--positive",
            "I love this",
            "--negative",
            "I hate this",
            "--layers",
            "1-1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        texts(&svg, "tick").first().map(String::as_str),
        Some("0"),
        "norms from zero"
    );
    snapshot("steer", &svg);
    let svg = figure(
        "experts-prompt",
        &["experts", &fixture("families/mixtral"), "--prompt", CLEAN],
    );
    snapshot("experts-prompt", &svg);
    let file = temp("text.txt");
    std::fs::write(&file, format!("{CLEAN} {CLEAN}")).unwrap();
    let svg = figure(
        "experts-usage",
        &[
            "experts",
            &fixture("families/mixtral"),
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert!(svg.contains("class=\"baseline\""), "uniform routing marked");
    snapshot("experts-usage", &svg);
    // An SAE's feature dashboards: histogram and logit-effect panels per feature.
    let svg = figure(
        "features",
        &[
            "features",
            &fixture("parity/gpt2"),
            "--sae",
            &fixture("saelens/topk"),
            "--tokens",
            &fixture("saelens/tokens.safetensors"),
            "--top",
            "2",
        ],
    );
    assert_eq!(count(&svg, "class=\"panel\""), 4, "two panels per feature");
    snapshot("features", &svg);
}

#[test]
fn long_prompts_wrap_into_panels() {
    let long = std::iter::repeat_n("When Mary and John went to the store,", 5)
        .collect::<Vec<_>>()
        .join(" ");
    let svg = figure(
        "lens-long",
        &["lens", &fixture("parity/gpt2"), "--prompt", &long],
    );
    let panels = count(&svg, "class=\"panel\"");
    assert!(panels >= 3, "{panels} panels");
    // no panel wider than a screen
    let width: f64 = svg["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"".len()..]
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(width < 1400.0, "{width} px");
    snapshot("lens-long", &svg);
}

#[test]
fn figures_of_a_gguf_model_made_by_llama_cpp() {
    // a Q8_0 Llama made by llama.cpp's converter and quantizer, its own tokenizer
    let gguf = fixture("llamacpp/llama/model-Q8_0.gguf");
    let svg = figure("lens-gguf", &["lens", &gguf, "--prompt", CLEAN]);
    snapshot("lens-gguf", &svg);
    let svg = figure(
        "attribute-gguf",
        &[
            "attribute",
            &gguf,
            "--prompt",
            CLEAN,
            "--target",
            "#10",
            "--versus",
            "#11",
        ],
    );
    let bars = texts(&svg, "label");
    assert!(bars.iter().any(|b| b == "embed") && bars.iter().any(|b| b == "model's value"));
    snapshot("attribute-gguf", &svg);
}
