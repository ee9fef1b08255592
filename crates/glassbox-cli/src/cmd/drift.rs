//! `glassbox drift A B` — what changed between two versions of one model (a quantization, a
//! fine-tune, two checkpoints): outputs, the residual stream layer by layer, every component
//! ranked by how much it moved, head roles and, with `--sae`, features. Terminal view,
//! `--json`, `--plot FILE.svg` and a self-contained `--html FILE.html` report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use glassbox_analysis::attribution::Component;
use glassbox_analysis::drift::{self, DriftOptions, DriftReport, FeatureDictionary};
use glassbox_models::HookedModel;

use crate::analysis_cli;
use crate::model_cli;
use crate::render::{self, svg, Bar, BarChart, Grid, LinePlot, Panel, Scale};

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["text", "prompts"]))]
pub struct Args {
    /// The reference model (a Hub snapshot directory or a GGUF file).
    pub a: PathBuf,
    /// The changed model: its quantization, fine-tune or later checkpoint.
    pub b: PathBuf,
    /// A text to read, in windows of --context tokens.
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Prompts to read, one per line.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// A LoRA adapter (PEFT's format) applied to B only: a base model against its fine-tune
    /// is `drift BASE BASE --b-adapter DIR`.
    #[arg(long, value_name = "DIR")]
    pub b_adapter: Option<PathBuf>,
    /// A sparse autoencoder (SAELens's format) trained on A: which of its features died,
    /// appeared or moved in B.
    #[arg(long, value_name = "DIR")]
    pub sae: Option<PathBuf>,
    /// Window length for --text (default: 128, or the model's context if shorter).
    #[arg(long, value_name = "N")]
    pub context: Option<usize>,
    /// Read at most this many tokens of --text.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub max_tokens: usize,
    /// Head-role probe: length of the random sequence (0 skips the probe).
    #[arg(long, default_value_t = 20)]
    pub head_seq_len: usize,
    /// Head-role probe: random sequences averaged over (0 skips the probe).
    #[arg(long, default_value_t = 4)]
    pub head_batch: usize,
    /// Seed of the head-role probe.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows of each ranked list shown (and features kept per list).
    #[arg(long, value_name = "N", default_value_t = 15)]
    pub top: usize,
    /// Weights' dtype in memory: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Print the report as JSON on stdout instead of the terminal view.
    #[arg(long)]
    pub json: bool,
    /// Also write the figures to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Also write a self-contained HTML report (figures and tables).
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
}

/// Token sequences of the input, each at most the model's context; checked to tokenize the
/// same way in B.
fn sequences(args: &Args, a: &HookedModel, b: &HookedModel) -> anyhow::Result<Vec<Vec<u32>>> {
    let n_ctx = a.info().n_ctx.min(b.info().n_ctx);
    let same_in_b = |text: &str, ids: &[u32], what: &str| -> anyhow::Result<()> {
        Ok(drift::same_in_b(b, text, ids, what)?)
    };
    if let Some(path) = &args.text {
        let text = read_input(path, "text")?;
        let ids = a.to_tokens(&text)?;
        same_in_b(&text, &ids, &format!("{}", path.display()))?;
        let context = match args.context {
            Some(c) if c < 2 || c > n_ctx => {
                return Err(crate::invalid!(
                    "--context {c}: give 2 to the models' context of {n_ctx}"
                ))
            }
            Some(c) => c,
            None => 128.min(n_ctx),
        };
        let ids = &ids[..ids.len().min(args.max_tokens)];
        let windows: Vec<Vec<u32>> = ids
            .chunks(context)
            .filter(|w| w.len() >= 2)
            .map(<[u32]>::to_vec)
            .collect();
        if windows.is_empty() {
            return Err(crate::invalid!(
                "{}: fewer than 2 tokens to read",
                path.display()
            ));
        }
        return Ok(windows);
    }
    let path = args
        .prompts
        .as_ref()
        .expect("clap requires --text or --prompts");
    let text = read_input(path, "prompts")?;
    Ok(drift::prompt_sequences(
        a,
        b,
        &text,
        &path.display().to_string(),
    )?)
}

fn read_input(path: &Path, what: &str) -> anyhow::Result<String> {
    use glassbox_formats::input;
    Ok(input::read_text(path, what, input::limit::CORPUS)?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut inputs = vec![args.a.as_path(), args.b.as_path()];
    for path in [&args.text, &args.prompts, &args.b_adapter, &args.sae] {
        inputs.extend(path.as_deref());
    }
    inputs.extend(model_cli::adapter_dir());
    if let Some(p) = &args.plot {
        crate::output::check_svg(p, "--plot", &inputs)?;
    }
    if let Some(p) = &args.html {
        crate::output::check(p, "--html", &inputs)?;
    }
    for (flag, path) in [("--text", &args.text), ("--prompts", &args.prompts)] {
        if let Some(p) = path {
            if !p.is_file() {
                return Err(crate::invalid!("{flag} {}: no such file", p.display()));
            }
        }
    }
    let a = model_cli::load_model_with_adapter(&args.a, &args.dtype, None)?;
    let b = model_cli::load_model_with_adapter(&args.b, &args.dtype, args.b_adapter.as_deref())?;
    let sae = args.sae.as_deref().map(model_cli::load_sae).transpose()?;
    let seqs = sequences(&args, &a, &b)?;
    let dictionary = sae.as_ref().map(|s| FeatureDictionary {
        hook: s.hook_name().to_string(),
        encode: Box::new(move |x| {
            // the SAE's width against the hook's is the user's choice of SAE
            s.encode(x)
                .map_err(|e| glassbox_analysis::AnalysisError::Input(format!("the SAE: {e}")))
        }),
    });
    let opts = DriftOptions {
        head_seq_len: args.head_seq_len,
        head_batch: args.head_batch,
        seed: args.seed,
        top_features: args.top,
    };
    let bar = crate::progress::bar(seqs.len() as u64, "drift");
    let report = drift::compare(&a, &b, &seqs, &opts, dictionary.as_ref(), &mut |done, _| {
        bar.set_position(done as u64)
    })
    .context("comparing the models")?;
    bar.finish_and_clear();

    let about = About {
        a: side(&args.a, None, &a),
        b: side(&args.b, args.b_adapter.as_deref(), &b),
        input: args
            .text
            .as_ref()
            .or(args.prompts.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    };
    let figure = figure(&report, a.info().n_heads);
    if args.json {
        analysis_cli::print_json(&drift::document(
            about.a.clone(),
            about.b.clone(),
            &about.input,
            &report,
        ))?;
    } else {
        print!("{}", terminal(&report, &about, args.top));
    }
    if let Some(path) = &args.plot {
        render::save_svg(path, &figure)?;
    }
    if let Some(path) = &args.html {
        render::write_atomic(path, html(&report, &about, &figure).as_bytes())?;
    }
    Ok(())
}

/// How a model was opened, for the report's header.
struct About {
    a: serde_json::Value,
    b: serde_json::Value,
    input: String,
}

fn side(path: &Path, adapter: Option<&Path>, m: &HookedModel) -> serde_json::Value {
    let adapter = adapter.map(|a| a.display().to_string());
    drift::side_document(&path.display().to_string(), adapter.as_deref(), m)
}

fn describe(side: &serde_json::Value) -> String {
    let mut s = format!(
        "{} ({}, {} numerics)",
        side["path"].as_str().unwrap_or("?"),
        side["architecture"].as_str().unwrap_or("?"),
        side["numerics"].as_str().unwrap_or("?")
    );
    if let Some(a) = side["adapter"].as_str() {
        let _ = write!(s, " + adapter {a}");
    }
    s
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "—".into())
}

fn terminal(r: &DriftReport, about: &About, top: usize) -> String {
    let mut s = String::new();
    let o = &r.outputs;
    let _ = writeln!(s, "A  {}", describe(&about.a));
    let _ = writeln!(s, "B  {}", describe(&about.b));
    let _ = writeln!(
        s,
        "on {} sequences, {} tokens of {}\n",
        r.sequences, r.tokens, about.input
    );
    let _ = writeln!(
        s,
        "Outputs     KL(A‖B) mean {:.5} nats, max {:.5}; top-1 agreement {:.1} %",
        o.kl_mean,
        o.kl_max,
        o.top1_agreement * 100.0
    );
    let _ = writeln!(
        s,
        "            perplexity A {:.4}, B {:.4} (on {} next tokens)\n",
        o.perplexity_a, o.perplexity_b, o.predicted_tokens
    );
    let _ = writeln!(
        s,
        "Components that moved most (local: B's component on A's inputs; ‖ΔB‖ / ‖residual stream‖)"
    );
    let _ = writeln!(
        s,
        "  {:>4}  {:<18} {:>10} {:>11} {:>10} {:>9} {:>9}",
        "rank", "component", "local", "end-to-end", "rel. err", "DLA A", "DLA B"
    );
    for (i, c) in r.components.iter().take(top).enumerate() {
        let _ = writeln!(
            s,
            "  {:>4}  {:<18} {:>10.5} {:>11.5} {:>10.4} {:>9} {:>9}",
            i + 1,
            c.label,
            c.local_change,
            c.end_to_end_change,
            c.relative_error,
            opt(c.dla_a),
            opt(c.dla_b)
        );
    }
    let _ = writeln!(
        s,
        "\nLayers (residual stream after each block; logit lens read there)"
    );
    let _ = writeln!(
        s,
        "  {:>5}  {:>9} {:>9} {:>11} {:>9} {:>11} {:>10}",
        "layer", "cosine", "rel. err", "lens top-1", "lens KL", "attn local", "mlp local"
    );
    for l in &r.layers {
        let _ = writeln!(
            s,
            "  {:>5}  {:>9.6} {:>9.5} {:>10.1}% {:>9.5} {:>11} {:>10}",
            l.layer,
            l.resid_cosine,
            l.resid_relative_error,
            l.lens_top1_agreement * 100.0,
            l.lens_kl,
            opt(l.attn_local_change),
            opt(l.mlp_local_change)
        );
    }
    if let Some(h) = &r.head_roles {
        let _ = writeln!(s, "\nHead roles that changed most (repeated random tokens)");
        for c in h.ranked.iter().take(top.min(10)) {
            let _ = writeln!(
                s,
                "  L{}H{:<3} {:<16} {:.3} → {:.3}",
                c.layer, c.head, c.role, c.a, c.b
            );
        }
    }
    if let Some(f) = &r.features {
        let _ = writeln!(
            s,
            "\nFeatures at {} ({} features, {} positions): alive in A {}, in B {}; died {}, appeared {}",
            f.hook, f.d_features, f.positions, f.alive_a, f.alive_b, f.died_count, f.appeared_count
        );
        for (name, list) in [
            ("died", &f.died),
            ("appeared", &f.appeared),
            ("moved", &f.moved),
        ] {
            if list.is_empty() {
                continue;
            }
            let items: Vec<String> = list
                .iter()
                .take(top.min(8))
                .map(|c| format!("#{} {:.3}→{:.3}", c.feature, c.mean_a, c.mean_b))
                .collect();
            let _ = writeln!(s, "  {name:<9} {}", items.join("  "));
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "\nnote: {n}");
    }
    s
}

/// Per-head values as a [layer][head] grid (NaN where a layer has none).
fn head_grid(
    n_layers: usize,
    n_heads: usize,
    cells: impl Iterator<Item = (usize, usize, f32)>,
) -> Vec<Vec<f32>> {
    let mut g = vec![vec![f32::NAN; n_heads]; n_layers];
    for (l, h, v) in cells {
        if l < n_layers && h < n_heads {
            g[l][h] = v;
        }
    }
    g
}

fn figure(r: &DriftReport, n_heads: usize) -> String {
    let n_layers = r.layers.len();
    let layer_labels: Vec<String> = (0..n_layers).map(|l| format!("L{l}")).collect();
    let mut panels = vec![
        Panel::Lines(LinePlot {
            title: "Residual stream after each block".into(),
            x_axis: "layer".into(),
            y_axis: "B against A".into(),
            x_labels: layer_labels.clone(),
            series: vec![
                (
                    "relative error".into(),
                    r.layers
                        .iter()
                        .map(|l| l.resid_relative_error as f32)
                        .collect(),
                ),
                (
                    "1 − cosine".into(),
                    r.layers
                        .iter()
                        .map(|l| (1.0 - l.resid_cosine) as f32)
                        .collect(),
                ),
            ],
            y_range: None,
            log_y: false,
            zero_based: true,
            notes: vec!["how far B's stream is from A's, end to end".into()],
        }),
        Panel::Lines(LinePlot {
            title: "Logit lens: agreement of A's and B's top token".into(),
            x_axis: "layer".into(),
            y_axis: "share of positions".into(),
            x_labels: layer_labels.clone(),
            series: vec![(
                "top-1 agreement".into(),
                r.layers
                    .iter()
                    .map(|l| l.lens_top1_agreement as f32)
                    .collect(),
            )],
            y_range: Some((0.0, 1.0)),
            log_y: false,
            zero_based: true,
            notes: Vec::new(),
        }),
    ];
    let heads: Vec<(usize, usize, f32)> = r
        .components
        .iter()
        .filter_map(|c| match c.component {
            Component::Head { layer, head } => Some((layer, head, c.local_change as f32)),
            _ => None,
        })
        .collect();
    if !heads.is_empty() {
        panels.push(Panel::Grid(
            Grid::new(
                "Local change of every head",
                "layer",
                "head",
                layer_labels.clone(),
                (0..n_heads).map(|h| format!("H{h}")).collect(),
                head_grid(n_layers, n_heads, heads.into_iter()),
            )
            .scale(Scale::Sequential)
            .value_label("‖ΔB‖ / ‖stream‖ on A's inputs"),
        ));
    }
    if let Some(h) = &r.head_roles {
        panels.push(Panel::Grid(
            Grid::new(
                "Head roles: largest change of any role's score",
                "layer",
                "head",
                layer_labels,
                (0..n_heads).map(|h| format!("H{h}")).collect(),
                head_grid(
                    n_layers,
                    n_heads,
                    h.ranked.iter().map(|c| (c.layer, c.head, c.change)),
                ),
            )
            .scale(Scale::Sequential)
            // on the scores' own scale, so that a change at the noise level looks like one
            .range(0.0, 1.0)
            .value_label("|score B − score A|"),
        ));
    }
    panels.push(Panel::Bars(BarChart {
        title: "Components that moved most".into(),
        notes: vec!["local change: B's component on A's inputs".into()],
        value_axis: "‖ΔB‖ / ‖residual stream‖".into(),
        bars: r
            .components
            .iter()
            .take(15)
            .map(|c| Bar::term(c.label.clone(), c.local_change as f32))
            .collect(),
    }));
    svg::figure(&panels)
}

fn html(r: &DriftReport, about: &About, figure: &str) -> String {
    let e = svg::esc;
    let mut s = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>glassbox drift</title><style>\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}\
         table{border-collapse:collapse;margin:1em 0}td,th{padding:.2em .7em;text-align:right;\
         border-bottom:1px solid #ddd}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
         .fig{overflow-x:auto}</style>",
    );
    let o = &r.outputs;
    let _ = write!(
        s,
        "<h1>What changed from A to B</h1><p>A: {}<br>B: {}<br>on {} sequences, {} tokens of {}</p>",
        e(&describe(&about.a)),
        e(&describe(&about.b)),
        r.sequences,
        r.tokens,
        e(&about.input)
    );
    let _ = write!(
        s,
        "<h2>Outputs</h2><table><tr><th>KL(A‖B) mean</th><th>KL max</th><th>top-1 agreement</th>\
         <th>perplexity A</th><th>perplexity B</th><th>next tokens</th></tr>\
         <tr><td>{:.5}</td><td>{:.5}</td><td>{:.2} %</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr></table>",
        o.kl_mean,
        o.kl_max,
        o.top1_agreement * 100.0,
        o.perplexity_a,
        o.perplexity_b,
        o.predicted_tokens
    );
    let _ = write!(s, "<h2>Figures</h2><div class=\"fig\">{figure}</div>");
    s.push_str(
        "<h2>Components, ranked</h2><p>Local change: B's component fed A's inputs, ‖ΔB‖ / ‖residual \
         stream‖; end to end: with B's own inputs. Direct logit attribution (DLA) toward A's top \
         prediction at each sequence's last position.</p><table><tr><th>component</th><th>local</th>\
         <th>end to end</th><th>relative error</th><th>DLA A</th><th>DLA B</th><th>mean |ΔDLA|</th></tr>",
    );
    for c in &r.components {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.5}</td><td>{:.5}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(&c.label),
            c.local_change,
            c.end_to_end_change,
            c.relative_error,
            opt(c.dla_a),
            opt(c.dla_b),
            opt(c.dla_change)
        );
    }
    s.push_str(
        "</table><h2>Layers</h2><table><tr><th>layer</th><th>residual cosine</th><th>relative error</th>\
         <th>lens top-1 agreement</th><th>lens KL</th><th>attention local</th><th>MLP local</th></tr>",
    );
    for l in &r.layers {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.6}</td><td>{:.5}</td><td>{:.2} %</td><td>{:.5}</td><td>{}</td><td>{}</td></tr>",
            l.layer,
            l.resid_cosine,
            l.resid_relative_error,
            l.lens_top1_agreement * 100.0,
            l.lens_kl,
            opt(l.attn_local_change),
            opt(l.mlp_local_change)
        );
    }
    s.push_str("</table>");
    if let Some(h) = &r.head_roles {
        s.push_str(
            "<h2>Head roles</h2><table><tr><th>head</th><th>role that changed most</th><th>A</th>\
             <th>B</th><th>change</th></tr>",
        );
        for c in &h.ranked {
            let _ = write!(
                s,
                "<tr><td>L{}H{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                c.layer, c.head, c.role, c.a, c.b, c.change
            );
        }
        s.push_str("</table>");
    }
    if let Some(f) = &r.features {
        let _ = write!(
            s,
            "<h2>Features at {}</h2><p>{} features on {} positions: {} alive in A, {} in B; {} died, {} appeared.</p>",
            e(&f.hook),
            f.d_features,
            f.positions,
            f.alive_a,
            f.alive_b,
            f.died_count,
            f.appeared_count
        );
        for (name, list) in [
            ("Died", &f.died),
            ("Appeared", &f.appeared),
            ("Moved most", &f.moved),
        ] {
            let _ = write!(
                s,
                "<h3>{name}</h3><table><tr><th>feature</th><th>frequency A</th><th>frequency B</th>\
                 <th>mean A</th><th>mean B</th><th>mean |Δ|</th></tr>"
            );
            for c in list {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td></tr>",
                    c.feature, c.frequency_a, c.frequency_b, c.mean_a, c.mean_b, c.mean_abs_change
                );
            }
            s.push_str("</table>");
        }
    }
    for n in &r.notes {
        let _ = write!(s, "<p>Note: {}</p>", e(n));
    }
    s
}
