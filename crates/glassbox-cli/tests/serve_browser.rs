//! The workbench in a real browser: headless Chromium driven through every page on the
//! reference model and a llama.cpp-quantized GGUF — the model list, a model's tensor table
//! (sorted, searched, a tensor's statistics opened), the prompt explorer (a prompt typed and
//! run, a position and a head clicked, a cell hovered) — and every number read off the page
//! checked against the CLI's `--json` for the same request. Screenshots of each page go to
//! `target/browser-screenshots/` (CI keeps them).

mod support;

use serde_json::{json, Value};
use support::browser::Browser;
use support::serve::Server;
use support::{glassbox, ok, root, scratch, traced};

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

fn cli_json(args: &[&str]) -> Value {
    serde_json::from_slice(&ok(&glassbox(args)).stdout).expect("the CLI's --json")
}

/// Checks the page shows no programming leftovers (`undefined`, `null`, `[object …]`, `NaN`),
/// then saves its screenshot.
fn shot(browser: &mut Browser, path: &std::path::Path) {
    let text = browser.eval("document.body.innerText");
    let text = text.as_str().unwrap();
    for leftover in ["undefined", "[object", "NaN"] {
        assert!(
            !text.contains(leftover),
            "{}: the page shows {leftover:?}: {text}",
            path.display()
        );
    }
    assert!(
        !text.split_whitespace().any(|w| w == "null"),
        "{}: the page shows null: {text}",
        path.display()
    );
    browser.screenshot(path);
}

/// A patching pair and an ablation text for one model: `clean` continues with `answer`,
/// `corrupt` (as long) with `wrong`; `text` is one the model predicts well. They are what the
/// pages offer for the model before anything is typed.
struct Task {
    clean: &'static str,
    corrupt: &'static str,
    answer: &'static str,
    wrong: &'static str,
    text: &'static str,
}

const IOI: Task = Task {
    clean: "When Mary and John went to the store, John gave a drink to",
    corrupt: "When Mary and John went to the store, Mary gave a drink to",
    answer: " Mary",
    wrong: " John",
    text: "When Mary and John went to the store, John gave a drink to Mary",
};

/// A recall the reference model learned, in its vocabulary: its card's examples (the Hub's
/// `widget` list), recall of one key and of the other.
const RECALL: Task = Task {
    clean: "x3 = v05 , x7 = v11 . x3 =",
    corrupt: "x3 = v05 , x7 = v11 . x7 =",
    answer: " v05",
    wrong: " v11",
    text: "x3 = v05 , x7 = v11 . x3 = v05",
};

fn f32_at(v: &Value) -> f32 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_f64().unwrap() as f32,
    }
}

#[test]
fn every_page_shows_the_cli_numbers() {
    let dir = scratch("serve_browser", "pages");
    let Some(mut browser) = Browser::launch(&dir.join("profile")) else {
        return;
    };
    let shots = root().join("target/browser-screenshots");
    let models = [
        root().join("models/reference").display().to_string(),
        root()
            .join("tests/fixtures/llamacpp/gpt2/model-Q4_0.gguf")
            .display()
            .to_string(),
        root()
            .join("tests/fixtures/llamacpp/olmoe/model-Q8_0.gguf")
            .display()
            .to_string(),
        root()
            .join("tests/fixtures/llamacpp/gpt2/model-F32.gguf")
            .display()
            .to_string(),
    ];
    let server = Server::start(&[&models[0], &models[1], &models[2], &models[3]]);
    let base = server.url.trim_end_matches('/').to_string();

    // The model list.
    browser.goto(&format!("{base}/#/"));
    browser.wait_for("document.querySelectorAll('#model-cards .card').length === 4");
    shot(&mut browser, &shots.join("models.png"));

    for (id, path) in models.iter().enumerate().take(2) {
        let name = if id == 0 { "reference" } else { "gguf" };
        let inspect = cli_json(&["inspect", path, "--json"]);
        let tensors = inspect["tensors"].as_array().unwrap();

        // The model page: every tensor listed; sorting by bytes; searching.
        browser.goto(&format!("{base}/#/model/{id}"));
        browser.wait_for("document.querySelectorAll('#tensor-table tbody tr').length > 0");
        let listed = browser.eval(
            "[...document.querySelectorAll('#tensor-table tbody tr')].map(r => r.dataset.tensor)",
        );
        let names: Vec<Value> = tensors.iter().map(|t| t["name"].clone()).collect();
        assert_eq!(listed, json!(names), "{name}: the tensor table");
        browser.eval("document.querySelector('th[data-column=bytes]').click()");
        browser.eval("document.querySelector('th[data-column=bytes]').click()");
        let first = browser.eval("document.querySelector('#tensor-table tbody tr').dataset.tensor");
        let largest = tensors
            .iter()
            .map(|t| t["bytes"].as_u64().unwrap())
            .max()
            .unwrap();
        let first_bytes = tensors.iter().find(|t| t["name"] == first).unwrap()["bytes"].as_u64();
        assert_eq!(
            first_bytes,
            Some(largest),
            "{name}: sorted by bytes, descending"
        );
        browser.eval(
            "(() => { const s = document.getElementById('tensor-search'); s.value = 'weight'; \
             s.dispatchEvent(new Event('input')); })()",
        );
        let shown = browser
            .eval("document.querySelectorAll('#tensor-table tbody tr').length")
            .as_u64()
            .unwrap() as usize;
        let matching = tensors
            .iter()
            .filter(|t| {
                t["name"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .contains("weight")
            })
            .count();
        assert_eq!(shown, matching, "{name}: search");

        // A tensor's statistics, opened from the table.
        let tensor =
            browser.eval("document.querySelector('#tensor-table tbody tr').dataset.tensor");
        let tensor = tensor.as_str().unwrap().to_string();
        browser.eval("document.querySelector('#tensor-table tbody tr .tensor-link').click()");
        browser.wait_for("document.getElementById('tensor-stats')");
        browser.wait_for("document.querySelectorAll('#histogram rect').length === 40");
        let stats = cli_json(&["inspect", path, "--tensor", &tensor, "--stats", "--json"]);
        let want = &stats["stats"]["tensors"][&tensor];
        for key in [
            "mean", "std", "min", "max", "abs_max", "l2_norm", "elements", "zeros",
        ] {
            let shown = browser.eval(&format!(
                "document.querySelector('[data-stat={key}]').dataset.value"
            ));
            let shown: f64 = shown.as_str().unwrap().parse().unwrap();
            let want = want[key].as_f64().unwrap();
            // The same double, as far as serde_json's float parsing tells (it may be an ulp off).
            assert!(
                (shown - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                "{name}: {tensor} {key}: page {shown}, CLI {want}"
            );
        }
        shot(&mut browser, &shots.join(format!("model-{name}.png")));

        // The prompt explorer: it offers the model's own example (the card's, else the IOI
        // prompt); type a prompt, run it.
        let task = if id == 0 { &RECALL } else { &IOI };
        browser.goto(&format!("{base}/#/explore/{id}"));
        browser.wait_for("document.getElementById('prompt')");
        let offered = browser.eval("document.getElementById('prompt').value");
        assert_eq!(
            offered,
            json!(task.clean),
            "{name}: the explorer's default prompt"
        );
        browser.eval(&format!(
            "(() => {{ document.getElementById('prompt').value = {}; \
             document.getElementById('run').click(); }})()",
            json!(PROMPT)
        ));
        browser.wait_for("document.getElementById('lens-grid')");
        let run = cli_json(&[
            "run",
            path,
            "--prompt",
            PROMPT,
            "--top-k",
            "10",
            "--all-positions",
            "--json",
        ]);
        let positions = run["positions"].as_array().unwrap();
        // The last position is shown first; then click another token.
        for p in [positions.len() - 1, 2] {
            browser.eval(&format!(
                "document.querySelector('.tok[data-position=\"{p}\"]').click()"
            ));
            browser.wait_for(&format!(
                "document.getElementById('pred-table').dataset.position === '{p}'"
            ));
            let logits = browser.eval(
                "[...document.querySelectorAll('#pred-table td:nth-child(3)')].map(c => c.dataset.logit)",
            );
            let tokens = browser.eval(
                "[...document.querySelectorAll('#pred-table .tok-cell')].map(c => JSON.parse(c.textContent))",
            );
            let top = positions[p]["top"].as_array().unwrap();
            let want_logits: Vec<f32> = top.iter().map(|c| f32_at(&c["logit"])).collect();
            let shown_logits: Vec<f32> = logits.as_array().unwrap().iter().map(f32_at).collect();
            assert_eq!(shown_logits, want_logits, "{name}: predictions after {p}");
            let want_tokens: Vec<Value> = top.iter().map(|c| c["token"].clone()).collect();
            assert_eq!(tokens, json!(want_tokens), "{name}: tokens after {p}");
        }

        // The logit lens: each cell's top token is the CLI's.
        let lens = cli_json(&["lens", path, "--prompt", PROMPT, "--top", "5", "--json"]);
        let top = lens["report"]["top"].as_array().unwrap();
        let cells = browser.eval(
            "[...document.querySelectorAll('#lens-grid td')].map(td => [Number(td.dataset.layer), Number(td.dataset.position), JSON.parse(td.textContent)])",
        );
        let cells = cells.as_array().unwrap();
        assert_eq!(
            cells.len(),
            top.len() * positions.len(),
            "{name}: lens cells"
        );
        for c in cells {
            let (l, p) = (
                c[0].as_u64().unwrap() as usize,
                c[1].as_u64().unwrap() as usize,
            );
            assert_eq!(c[2], top[l][p][0]["token"], "{name}: lens ({l}, {p})");
        }

        // The lens target's probability and rank at each cell are the CLI's.
        let target = &lens["report"]["target"]["scores"];
        let cells = browser.eval(
            "[...document.querySelectorAll('#lens-target td')].map(td => [Number(td.dataset.layer), Number(td.dataset.position), td.dataset.prob, Number(td.dataset.rank)])",
        );
        let cells = cells.as_array().unwrap();
        assert_eq!(
            cells.len(),
            top.len() * positions.len(),
            "{name}: lens target cells"
        );
        for c in cells {
            let (l, p) = (
                c[0].as_u64().unwrap() as usize,
                c[1].as_u64().unwrap() as usize,
            );
            assert_eq!(
                f32_at(&c[2]),
                f32_at(&target[l][p]["prob"]),
                "{name}: target ({l}, {p})"
            );
            assert_eq!(c[3], target[l][p]["rank"], "{name}: target rank ({l}, {p})");
        }
        // The prompt's tokens are reached by the keyboard, and pressed with Enter.
        assert_eq!(
            browser.eval(
                "[...document.querySelectorAll('#tokens .tok')].every(t => t.tabIndex === 0)"
            ),
            json!(true),
            "{name}: tokens focusable"
        );

        // Direct logit attribution toward the top prediction, and the head roles.
        browser.wait_for("document.getElementById('dla-heads')");
        let last_top = &positions[positions.len() - 1]["top"][0]["id"];
        let attribute = cli_json(&[
            "attribute",
            path,
            "--prompt",
            PROMPT,
            "--target",
            &format!("#{last_top}"),
            "--json",
        ]);
        let shown = browser.eval(
            "[...document.querySelectorAll('#dla-heads td')].map(td => [Number(td.dataset.row), Number(td.dataset.col), td.dataset.value])",
        );
        let shown = shown.as_array().unwrap();
        assert!(!shown.is_empty());
        for c in shown {
            let (l, h) = (
                c[0].as_u64().unwrap() as usize,
                c[1].as_u64().unwrap() as usize,
            );
            assert_eq!(
                f32_at(&c[2]),
                f32_at(&attribute["heads"][l][h]),
                "{name}: DLA L{l}H{h}"
            );
        }
        // Signed colours as the CLI's: red above zero, blue below (and readable text on them).
        let colours = browser.eval(
            "[...document.querySelectorAll('#dla-heads td')].map(td => [Number(td.dataset.value), getComputedStyle(td).backgroundColor, getComputedStyle(td).color])",
        );
        let rgb = |s: &Value| -> Vec<f64> {
            s.as_str()
                .unwrap()
                .trim_start_matches("rgba(")
                .trim_start_matches("rgb(")
                .trim_end_matches(')')
                .split(',')
                .map(|x| x.trim().parse().unwrap())
                .collect()
        };
        let luminance = |c: &[f64]| -> f64 {
            let lin = |v: f64| {
                let v = v / 255.0;
                if v <= 0.03928 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
        };
        let extent = colours
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[0].as_f64().unwrap().abs())
            .fold(0.0, f64::max);
        for c in colours.as_array().unwrap() {
            let (v, bg, fg) = (c[0].as_f64().unwrap(), rgb(&c[1]), rgb(&c[2]));
            if v.abs() > 0.25 * extent {
                assert_eq!(v > 0.0, bg[0] > bg[2], "{name}: DLA {v} coloured {bg:?}");
            }
            let (a, b) = (luminance(&bg), luminance(&fg));
            let contrast = (a.max(b) + 0.05) / (a.min(b) + 0.05);
            assert!(
                contrast >= 4.5,
                "{name}: text on {bg:?} in {fg:?}: {contrast:.2}"
            );
        }
        browser.wait_for("document.querySelector('#head-roles table')");
        let heads = cli_json(&["heads", path, "--json"]);
        let shown = browser.eval(
            "[...document.querySelectorAll('#head-roles td')].map(td => [td.closest('table').dataset.role, Number(td.dataset.layer), Number(td.dataset.head), td.dataset.value])",
        );
        let layers_scored = heads["scores"]["layers"].as_array().unwrap();
        for c in shown.as_array().unwrap() {
            let role = c[0].as_str().unwrap();
            let (l, h) = (c[1].as_u64().unwrap(), c[2].as_u64().unwrap() as usize);
            let row = layers_scored
                .iter()
                .position(|x| x.as_u64() == Some(l))
                .unwrap();
            assert_eq!(
                f32_at(&c[3]),
                f32_at(&heads["scores"][role][row][h]),
                "{name}: {role} L{l}H{h}"
            );
        }
        // Each role's chance level, and the heads named above it, are the CLI's.
        let named = browser.eval(
            "[...document.querySelectorAll('#head-roles td.beats-chance')].map(td => [td.closest('table').dataset.role, Number(td.dataset.layer), Number(td.dataset.head)])",
        );
        let mut want = Vec::new();
        let all = cli_json(&["heads", path, "--top", "1000", "--json"]);
        for role in [
            "previous_token",
            "duplicate_token",
            "induction",
            "first_token",
        ] {
            let chance = browser.eval(&format!(
                "document.querySelector('#head-roles table[data-role={role}]').parentElement.querySelector('.chance').dataset.chance"
            ));
            assert_eq!(
                f32_at(&chance),
                f32_at(&heads["chance"][role]),
                "{name}: {role} chance"
            );
            for r in all["top"][role].as_array().unwrap() {
                if r["beats_chance"] == json!(true) {
                    want.push(json!([role, r["layer"], r["head"]]));
                }
            }
        }
        let mut named = named.as_array().unwrap().clone();
        let key = |v: &Value| v.to_string();
        named.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(named, want, "{name}: heads above chance");

        // Attention: click a head, hover a cell of the large view; its weight is trace's.
        let layers = inspect["architecture"]["layers"].as_u64().unwrap() as usize;
        let (layer, head) = (layers - 1, 1);
        browser.eval(&format!(
            "document.querySelector('.mini[data-layer=\"{layer}\"][data-head=\"{head}\"]').click()"
        ));
        browser.wait_for(&format!(
            "document.getElementById('large-title').dataset.layer === '{layer}'"
        ));
        let (_, values) = traced(
            path,
            &["--prompt", PROMPT],
            &format!("blocks.{layer}.attn.hook_pattern"),
        );
        let n = positions.len();
        let (q, k) = (n - 1, 1);
        let tip = browser.eval(&format!(
            "(() => {{ const c = document.getElementById('large-canvas'); const r = c.getBoundingClientRect(); \
             const n = {n}; const label = 110; const cell = (c.width - label) / n; \
             c.dispatchEvent(new MouseEvent('mousemove', {{clientX: r.left + label + ({k} + 0.5) * cell, \
             clientY: r.top + label + ({q} + 0.5) * cell, bubbles: true}})); \
             return document.getElementById('tooltip').textContent; }})()"
        ));
        let weight = values[(head * n + q) * n + k];
        let tip = tip.as_str().unwrap().to_string();
        assert!(
            tip.ends_with(&format!("{weight:.4}")),
            "{name}: hovering ({q}, {k}) of L{layer}H{head} shows {tip:?}, trace has {weight}"
        );
        browser.eval("document.getElementById('tooltip').hidden = true");
        shot(&mut browser, &shots.join(format!("explore-{name}.png")));

        // Patching with the pair the page offers for the model (nothing typed); the grid is
        // the CLI's.
        browser.goto(&format!("{base}/#/patch/{id}"));
        browser.wait_for("document.getElementById('patch-run')");
        for (field, want) in [
            ("clean", task.clean),
            ("corrupt", task.corrupt),
            ("answer", task.answer),
            ("wrong", task.wrong),
            ("ablate-text", task.text),
        ] {
            let input = if field == "ablate-text" {
                field.to_string()
            } else {
                format!("patch-{field}")
            };
            let offered = browser.eval(&format!("document.getElementById('{input}').value"));
            assert_eq!(offered, json!(want), "{name}: the page's default {field}");
        }
        browser.eval(
            "(() => { const w = document.getElementById('patch-what'); w.value = 'heads';              w.dispatchEvent(new Event('change')); document.getElementById('patch-run').click(); })()",
        );
        browser
            .wait_for("document.querySelector('.patch-grid') || document.querySelector('.error')");
        let status = browser.eval("document.getElementById('patch-status').textContent");
        assert_eq!(status, json!("done"), "{name}: patching");
        let cells = browser.eval(
            "[...document.querySelectorAll('.patch-grid td')].map(td => [Number(td.dataset.layer), Number(td.dataset.col), td.dataset.value ?? null])",
        );
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
            "heads",
            "--json",
        ]);
        let grid = cli["results"][0]["normalized"].as_array().unwrap();
        let cells = cells.as_array().unwrap();
        assert_eq!(
            cells.len(),
            grid.len() * grid[0].as_array().unwrap().len(),
            "{name}: patch cells"
        );
        for c in cells {
            let (l, h) = (
                c[0].as_u64().unwrap() as usize,
                c[1].as_u64().unwrap() as usize,
            );
            let want = &grid[l][h];
            match (&c[2], want) {
                (Value::Null, Value::Null) => {}
                (shown, want) => assert_eq!(f32_at(shown), f32_at(want), "{name}: patch L{l}H{h}"),
            }
        }

        // Ablation on the same page: every head, one at a time.
        browser.eval("document.getElementById('ablate-run').click()");
        browser.wait_for("document.getElementById('ablate-table') || document.querySelector('#ablate-results .error')");
        let cli = cli_json(&[
            "ablate", path, "--text", task.text, "--target", "heads", "--each", "--json",
        ]);
        let shown = browser.eval(
            "[...document.querySelectorAll('#ablate-table [data-value]')].map(td => td.dataset.value)",
        );
        let results = cli["results"].as_array().unwrap();
        let shown = shown.as_array().unwrap();
        assert_eq!(shown.len(), results.len(), "{name}: ablation rows");
        for (i, (s, r)) in shown.iter().zip(results).enumerate() {
            let want = f32_at(&r["ablated_loss"]) - f32_at(&r["baseline_loss"]);
            assert_eq!(f32_at(s), want, "{name}: ablation {i}");
        }
        // The same changes as a layer × head grid.
        let grid = browser.eval(
            "[...document.querySelectorAll('#ablate-grid td')].map(td => [Number(td.dataset.row), Number(td.dataset.col), td.dataset.value])",
        );
        let grid = grid.as_array().unwrap();
        assert_eq!(grid.len(), results.len(), "{name}: ablation grid");
        for c in grid {
            let r = results
                .iter()
                .find(|r| r["targets"][0]["layer"] == c[0] && r["targets"][0]["head"] == c[1])
                .unwrap();
            let want = f32_at(&r["ablated_loss"]) - f32_at(&r["baseline_loss"]);
            assert_eq!(f32_at(&c[2]), want, "{name}: ablation grid {c:?}");
        }
        shot(&mut browser, &shots.join(format!("patch-{name}.png")));
    }

    // A mixture-of-experts model: the explorer shows each token's experts and weights.
    browser.goto(&format!("{base}/#/explore/2"));
    browser.wait_for("document.getElementById('prompt')");
    browser.eval(&format!(
        "(() => {{ document.getElementById('prompt').value = {}; \
         document.getElementById('run').click(); }})()",
        json!(PROMPT)
    ));
    browser.wait_for("document.querySelector('#expert-routing table')");
    let routing = cli_json(&["experts", &models[2], "--prompt", PROMPT, "--json"]);
    let shown = browser.eval(
        "[...document.querySelectorAll('#expert-routing td')].filter(td => Number(td.dataset.value) > 0).map(td => [Number(td.closest('table').dataset.layer), Number(td.dataset.position), Number(td.dataset.expert), td.dataset.value])",
    );
    let mut want = Vec::new();
    for layer in routing["layers"].as_array().unwrap() {
        for (p, routes) in layer["routes"].as_array().unwrap().iter().enumerate() {
            for r in routes.as_array().unwrap() {
                if f32_at(&r[1]) > 0.0 {
                    want.push((
                        layer["layer"].as_u64().unwrap(),
                        p as u64,
                        r[0].as_u64().unwrap(),
                        f32_at(&r[1]),
                    ));
                }
            }
        }
    }
    let mut got: Vec<(u64, u64, u64, f32)> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_u64().unwrap(),
                c[1].as_u64().unwrap(),
                c[2].as_u64().unwrap(),
                f32_at(&c[3]),
            )
        })
        .collect();
    want.sort_by(|a, b| a.partial_cmp(b).unwrap());
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(!want.is_empty());
    assert_eq!(got, want, "expert routing");
    shot(&mut browser, &shots.join("explore-moe.png"));

    // Diff: GPT-2's F32 file against its Q4_0, chosen on the page.
    browser.goto(&format!("{base}/#/diff"));
    browser.wait_for("document.getElementById('diff-run')");
    browser.eval(
        "(() => { document.getElementById('diff-a').value = '3'; document.getElementById('diff-b').value = '1'; \
         document.getElementById('diff-run').click(); })()",
    );
    browser.wait_for("document.querySelector('#diff-table tr[data-tensor]')");
    let diff = cli_json(&["diff", &models[3], &models[1], "--json"]);
    let shown = browser.eval(
        "[...document.querySelectorAll('#diff-table tr[data-tensor]')].map(r => [r.dataset.tensor, r.querySelector('[data-value]').dataset.value])",
    );
    let shown = shown.as_array().unwrap();
    let tensors = diff["tensors"].as_array().unwrap();
    assert_eq!(shown.len(), tensors.len(), "diff rows");
    for (s, t) in shown.iter().zip(tensors) {
        assert_eq!(s[0], t["name"], "diff order");
        match &t["relative_change"] {
            Value::Null => assert_eq!(s[1], json!("")),
            v => {
                let (shown, want): (f64, f64) =
                    (s[1].as_str().unwrap().parse().unwrap(), v.as_f64().unwrap());
                assert!(
                    (shown - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                    "{}: {shown} vs {want}",
                    t["name"]
                );
            }
        }
    }
    shot(&mut browser, &shots.join("diff.png"));

    // Drift: the same pair on three prompts typed on the page.
    browser.goto(&format!("{base}/#/drift"));
    browser.wait_for("document.getElementById('drift-run')");
    browser.eval(
        "(() => { document.getElementById('drift-a').value = '3'; document.getElementById('drift-b').value = '1'; \
         document.getElementById('drift-run').click(); })()",
    );
    browser.wait_for("document.getElementById('drift-components') || document.querySelector('#drift-results .error')");
    let prompts = browser.eval("document.getElementById('drift-prompts').value");
    let file = dir.join("drift-prompts.txt");
    std::fs::write(&file, prompts.as_str().unwrap()).unwrap();
    let drift = cli_json(&[
        "drift",
        &models[3],
        &models[1],
        "--prompts",
        file.to_str().unwrap(),
        "--json",
    ]);
    let kl: f64 = browser
        .eval("document.getElementById('drift-outputs').dataset.kl")
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let want = drift["report"]["outputs"]["kl_mean"].as_f64().unwrap();
    assert!(
        (kl - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
        "drift KL {kl} vs {want}"
    );
    let ranked = browser.eval(
        "[...document.querySelectorAll('#drift-components tr[data-component]')].map(r => r.dataset.component)",
    );
    let want: Vec<Value> = drift["report"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .take(30)
        .map(|c| c["label"].clone())
        .collect();
    assert_eq!(ranked, json!(want), "drift ranking");
    shot(&mut browser, &shots.join("drift.png"));

    // Audit: the served release folder and a registry entry, from the index.
    let audit = cli_json(&["audit", &models[0], "--json"]);
    browser.goto(&format!("{base}/#/audit"));
    browser.wait_for("document.querySelector('#registry-table tr[data-id]')");
    browser.eval("document.querySelector('#audit-releases a').click()");
    browser.wait_for("document.getElementById('audit-components')");
    assert_eq!(
        browser.eval("document.getElementById('audit-tier').textContent"),
        audit["tier"]
    );
    let components = browser.eval(
        "[...document.querySelectorAll('#audit-components tr[data-component]')].map(r => r.dataset.component)",
    );
    let want: Vec<Value> = audit["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(components, json!(want), "audit components");
    shot(&mut browser, &shots.join("audit-reference.png"));
    let id = "meta-llama/Llama-3.1-8B";
    let audit = cli_json(&["audit", id, "--json"]);
    browser.goto(&format!("{base}/#/audit"));
    browser.wait_for("document.querySelector('#registry-table tr[data-id]')");
    browser.eval(&format!(
        "document.querySelector('#registry-table tr[data-id=\"{id}\"] a').click()"
    ));
    browser.wait_for(&format!(
        "(document.getElementById('audit-title') || {{}}).textContent?.startsWith({})",
        json!(audit["release"])
    ));
    assert_eq!(
        browser.eval("document.getElementById('audit-tier').textContent"),
        audit["tier"]
    );
    let restrictions = browser
        .eval("[...document.querySelectorAll('#audit-restrictions q')].map(q => q.textContent)");
    let want: Vec<Value> = audit["restrictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].clone())
        .collect();
    assert_eq!(restrictions, json!(want), "restrictions quoted");
    shot(&mut browser, &shots.join("audit-registry.png"));

    // Features: a model served with its SAE. Encode a prompt, click a token, open the
    // dashboard of its most active feature.
    let gpt2 = root()
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
    let with_sae = Server::start(&[&gpt2, "--sae", &sae, "--sae-tokens", &tokens]);
    let base = with_sae.url.trim_end_matches('/').to_string();
    browser.goto(&format!("{base}/#/features/0"));
    browser.wait_for("document.getElementById('feature-run')");
    browser.eval(&format!(
        "(() => {{ document.getElementById('feature-prompt').value = {}; \
         document.getElementById('feature-run').click(); }})()",
        json!(PROMPT)
    ));
    browser.wait_for("document.getElementById('active-table')");
    let hook = "blocks.0.hook_resid_post.hook_sae_acts_post";
    let (shape, values) = traced(&gpt2, &["--sae", &sae, "--prompt", PROMPT], hook);
    let d_sae = *shape.last().unwrap();
    let position = browser
        .eval("Number(document.getElementById('active-table').dataset.position)")
        .as_u64()
        .unwrap() as usize;
    let shown = browser.eval(
        "[...document.querySelectorAll('#active-table [data-feature]')].map(a => [Number(a.dataset.feature), a.closest('tr').querySelector('[data-value]').dataset.value])",
    );
    let row = &values[position * d_sae..(position + 1) * d_sae];
    let shown = shown.as_array().unwrap();
    assert!(!shown.is_empty(), "no active features shown");
    for s in shown {
        let f = s[0].as_u64().unwrap() as usize;
        assert_eq!(f32_at(&s[1]), row[f], "feature {f} at position {position}");
    }
    let first = shown[0][0].as_u64().unwrap();
    browser.eval("document.querySelector('#active-table [data-feature]').click()");
    browser.wait_for(&format!(
        "document.querySelector('.dashboard[data-feature=\"{first}\"]')"
    ));
    let dash = cli_json(&[
        "features",
        &gpt2,
        "--sae",
        &sae,
        "--tokens",
        &tokens,
        "--features",
        &first.to_string(),
        "--json",
    ]);
    let density: f64 = browser
        .eval("document.querySelector('.dashboard [data-density]').dataset.density")
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let want = dash["features"][0]["density"].as_f64().unwrap();
    assert!(
        (density - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
        "density {density} vs {want}"
    );
    let contexts = browser
        .eval("document.querySelectorAll('.dashboard .contexts .tokens').length")
        .as_u64()
        .unwrap() as usize;
    assert_eq!(
        contexts,
        dash["features"][0]["top_contexts"]
            .as_array()
            .unwrap()
            .len()
    );
    shot(&mut browser, &shots.join("features.png"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A model whose outputs are NaN (its final norm broken) and a release folder without weights:
/// the model list shows both (the release as audit-only; its missing architecture stopped the
/// whole page), and the explorer shows the NaN model's predictions as "—" (a null logit
/// stopped the results).
#[test]
fn broken_models_and_weightless_releases_show() {
    let dir = scratch("serve_browser", "broken");
    let Some(mut browser) = Browser::launch(&dir.join("profile")) else {
        return;
    };
    let shots = root().join("target/browser-screenshots");
    let nan = dir.join("nan-model");
    std::fs::create_dir_all(&nan).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(root().join("models/reference").join(f), nan.join(f)).unwrap();
    }
    support::set_nan(&nan, "model.norm.weight");
    let release = dir.join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(
        release.join("README.md"),
        "# A release without its weights\n",
    )
    .unwrap();
    let server = Server::start(&[nan.to_str().unwrap(), release.to_str().unwrap()]);
    let base = server.url.trim_end_matches('/').to_string();

    browser.goto(&format!("{base}/#/"));
    browser.wait_for("document.querySelectorAll('#model-cards .card').length === 2");
    let links = browser.eval(
        "[...document.querySelectorAll('#model-cards .card > a')].map(a => a.getAttribute('href'))",
    );
    assert_eq!(links, json!(["#/model/0", "#/audit/model/1"]));
    shot(&mut browser, &shots.join("models-broken.png"));

    browser.goto(&format!("{base}/#/explore/0"));
    browser.wait_for("document.getElementById('prompt')");
    browser.eval(&format!(
        "(() => {{ document.getElementById('prompt').value = {}; \
         document.getElementById('run').click(); }})()",
        json!("the cat")
    ));
    browser.wait_for("!!(document.querySelector('#pred-table td:nth-child(3)') || document.querySelector('#results .error'))");
    let error = browser.eval("document.querySelector('#results .error')?.innerText ?? ''");
    assert_eq!(error, json!(""), "the explorer failed");
    let logits = browser.eval(
        "[...document.querySelectorAll('#pred-table td:nth-child(3)')].map(td => td.innerText)",
    );
    let logits = logits.as_array().unwrap();
    assert!(
        !logits.is_empty() && logits.iter().all(|l| l == "—"),
        "{logits:?}"
    );
    // Only the model with weights is offered to run.
    let offered =
        browser.eval("[...document.querySelectorAll('#model-select option')].map(o => o.value)");
    assert_eq!(offered, json!(["0"]));
    shot(&mut browser, &shots.join("explore-nan.png"));

    // Its losses are NaN (null in JSON): no head's ablation may read as a finding (`x − null`
    // is x in JavaScript, which showed one head's ablated loss as a red Δ, the rest as 0).
    browser.goto(&format!("{base}/#/patch/0"));
    browser.wait_for("document.getElementById('ablate-run')");
    browser.eval(
        "(() => { document.getElementById('ablate-text').value = 'x3 x7 x3 x7'; \
         document.getElementById('ablate-run').click(); })()",
    );
    browser.wait_for(
        "document.getElementById('ablate-table') || document.querySelector('#ablate-results .error')",
    );
    let cells = browser.eval(
        "[...document.querySelectorAll('#ablate-table [data-value]')].map(td => [td.dataset.value, td.innerText, td.style.backgroundColor])",
    );
    let cells = cells.as_array().unwrap();
    assert!(!cells.is_empty(), "no ablation table");
    for c in cells {
        assert_eq!(c, &json!(["NaN", "—", "rgb(221, 221, 221)"]), "{cells:?}");
    }
    shot(&mut browser, &shots.join("ablate-nan.png"));
}
