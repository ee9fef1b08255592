//! `glassbox experts` — which experts each token is routed to, in mixture-of-experts models.
//!
//! With `--prompt`/`--tokens`: per MoE layer, each token's experts and weights (read from the
//! `mlp.hook_expert_indices` / `hook_expert_weights` hooks). With `--file`: the text is run in
//! windows of `--window` tokens and, per layer and expert, we report how often it fires (the
//! share of tokens routed to it) and its mean weight when it does. `--json` prints the same
//! data as JSON; `--plot FILE.svg` draws it as a heatmap (tokens × experts for a prompt,
//! layers × experts for a file), written to a temporary file and renamed into place.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use glassbox_models::moe::{routing_from_cache, LayerRouting, ROUTING_HOOKS};
use glassbox_models::NameFilter;
use serde::Serialize;

use crate::model_cli::{input_ids, load_model};
use crate::render::{self, svg, Grid, Scale};

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory or GGUF file of a mixture-of-experts model.
    pub model: PathBuf,
    #[command(flatten)]
    pub sae: crate::model_cli::SaeArgs,
    /// Text whose routing to show, token by token.
    #[arg(long, conflicts_with_all = ["tokens", "file"])]
    pub prompt: Option<String>,
    /// Comma-separated token ids, instead of --prompt.
    #[arg(long, conflicts_with = "file")]
    pub tokens: Option<String>,
    /// A text file: report how often each expert fires and its mean weight.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Tokens per forward pass over --file (capped at the model's context).
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also draw the routing as an SVG heatmap.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Weight dtype: f32 (default), f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

use glassbox_analysis::routing::{prompt_routing, PromptRouting as PromptReport};

#[derive(Serialize)]
struct UsageReport {
    tokens: usize,
    /// Tokens of text per window (each window after the tokenizer's leading tokens).
    window: usize,
    /// The tokens put before each window (the BOS, where the tokenizer adds one); their
    /// routing is not counted.
    prefix: usize,
    /// Share of tokens each expert gets under uniform routing (k of E experts: k / E).
    uniform: f64,
    layers: Vec<UsageLayer>,
}

#[derive(Serialize)]
struct UsageLayer {
    layer: usize,
    /// Per expert: share of tokens routed to it.
    frequency: Vec<f64>,
    /// Per expert: mean weight over the tokens routed to it (0 if none).
    mean_weight: Vec<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.prompt.is_none() && args.tokens.is_none() && args.file.is_none() {
        return Err(crate::invalid!("give --prompt, --tokens or --file"));
    }
    if let Some(p) = &args.plot {
        if p.extension().and_then(|e| e.to_str()) != Some("svg") {
            return Err(crate::invalid!(
                "--plot {}: the plot is an SVG file (name it *.svg)",
                p.display()
            ));
        }
        let mut inputs = crate::model_cli::model_inputs(&args.model, &args.sae);
        inputs.extend(args.file.as_deref());
        crate::output::check(p, "--plot", &inputs)?;
    }
    let model = load_model(&args.model, &args.dtype, &args.sae)?;
    let filter = NameFilter::new(&ROUTING_HOOKS).context("routing hook names")?;
    let route = |ids: &[u32]| -> anyhow::Result<Vec<LayerRouting>> {
        let (_, cache) = model.run_with_cache(&model.ids_tensor(ids)?, &filter)?;
        let routing = routing_from_cache(&cache, model.info().n_layers, 0)?;
        if routing.is_empty() {
            return Err(crate::invalid!(
                "{}: {} has no mixture-of-experts layers",
                args.model.display(),
                model.info().architecture
            ));
        }
        Ok(routing)
    };
    match &args.file {
        Some(file) => {
            let text = glassbox_formats::input::read_text(
                file,
                "text",
                glassbox_formats::input::limit::CORPUS,
            )?;
            // Each window is seen as a text is: after the tokenizer's leading tokens (BOS),
            // which are cut from the document's ids and put before every window instead.
            let prefix = model.text_prefix()?;
            let mut ids = model.to_tokens(&text)?;
            if ids.starts_with(&prefix) {
                ids.drain(..prefix.len());
            }
            if ids.is_empty() {
                return Err(crate::invalid!("--file {} has no tokens", file.display()));
            }
            let window = args
                .window
                .clamp(1, model.info().n_ctx.saturating_sub(prefix.len()).max(1));
            let report = usage(&ids, &prefix, window, &route)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", usage_table(&report));
            }
            if let Some(p) = &args.plot {
                render::save_svg(p, &svg::heatmap(&usage_grid(&report)))?;
            }
        }
        None => {
            let ids = input_ids(&model, args.prompt.as_deref(), args.tokens.as_deref())?;
            let report = prompt_routing(&model, &ids)
                .map_err(|e| anyhow::Error::from(e).context(format!("{}", args.model.display())))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", prompt_table(&report));
            }
            if let Some(p) = &args.plot {
                render::save_svg(p, &svg::heatmap_panels(&prompt_grids(&report)))?;
            }
        }
    }
    Ok(())
}

/// Routes `ids` window by window, each after `prefix`, and tallies each expert's firing rate
/// and mean weight over the text's tokens.
fn usage(
    ids: &[u32],
    prefix: &[u32],
    window: usize,
    route: &dyn Fn(&[u32]) -> anyhow::Result<Vec<LayerRouting>>,
) -> anyhow::Result<UsageReport> {
    let chunks: Vec<&[u32]> = ids.chunks(window).collect();
    let mut k = 0;
    let bar = crate::progress::bar(chunks.len() as u64, "routing");
    // Per layer: (layer, per-expert count, per-expert weight sum).
    let mut tally: Vec<(usize, Vec<u64>, Vec<f64>)> = Vec::new();
    for chunk in chunks {
        let routing = route(&[prefix, chunk].concat())?;
        if tally.is_empty() {
            tally = routing
                .iter()
                .map(|r| (r.layer, vec![0; r.n_experts], vec![0.0; r.n_experts]))
                .collect();
            k = routing
                .first()
                .and_then(|r| r.experts.first())
                .map_or(0, Vec::len);
        }
        for (r, (_, count, weight)) in routing.iter().zip(tally.iter_mut()) {
            let text = r.experts.iter().zip(&r.weights).skip(prefix.len());
            for (experts, weights) in text {
                for (&e, &w) in experts.iter().zip(weights) {
                    count[e as usize] += 1;
                    weight[e as usize] += w as f64;
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n = ids.len() as f64;
    let n_experts = tally.first().map_or(1, |t| t.1.len().max(1));
    Ok(UsageReport {
        tokens: ids.len(),
        window,
        prefix: prefix.len(),
        uniform: k as f64 / n_experts as f64,
        layers: tally
            .into_iter()
            .map(|(layer, count, weight)| UsageLayer {
                layer,
                frequency: count.iter().map(|&c| c as f64 / n).collect(),
                mean_weight: count
                    .iter()
                    .zip(&weight)
                    .map(|(&c, &w)| if c == 0 { 0.0 } else { w / c as f64 })
                    .collect(),
            })
            .collect(),
    })
}

fn prompt_table(r: &PromptReport) -> String {
    let mut s = String::new();
    let width = r
        .tokens
        .iter()
        .map(|t| format!("{t:?}").chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 24);
    for l in &r.layers {
        let _ = writeln!(s, "layer {} ({} experts)", l.layer, l.n_experts);
        for (pos, (tok, routes)) in r.tokens.iter().zip(&l.routes).enumerate() {
            let shown: String = format!("{tok:?}").chars().take(width).collect();
            let experts: Vec<String> = routes
                .iter()
                .map(|(e, w)| format!("{e:>3} ({w:.3})"))
                .collect();
            let _ = writeln!(s, "  {pos:>4}  {shown:<width$}  {}", experts.join("  "));
        }
    }
    s
}

fn usage_table(r: &UsageReport) -> String {
    let after = if r.prefix > 0 {
        format!(", each after the tokenizer's {} leading token(s)", r.prefix)
    } else {
        String::new()
    };
    let mut s = format!(
        "{} tokens in windows of {}{after}; uniform routing gives each expert {:.1}%\n",
        r.tokens,
        r.window,
        r.uniform * 100.0
    );
    for l in &r.layers {
        let _ = writeln!(s, "layer {}\n  expert  fires   mean weight", l.layer);
        for (e, (f, w)) in l.frequency.iter().zip(&l.mean_weight).enumerate() {
            let _ = writeln!(s, "  {e:>6}  {:>5.1}%  {w:.4}", f * 100.0);
        }
    }
    s
}

/// Per MoE layer, a token × expert grid of router weights (0 where the token does not go).
fn prompt_grids(r: &PromptReport) -> Vec<Grid> {
    r.layers
        .iter()
        .map(|l| {
            let values: Vec<Vec<f32>> = l
                .routes
                .iter()
                .map(|routes| {
                    // experts the token does not go to are empty cells
                    let mut row = vec![f32::NAN; l.n_experts];
                    for &(e, w) in routes {
                        let cell = &mut row[e as usize];
                        *cell = if cell.is_nan() { w } else { *cell + w };
                    }
                    row
                })
                .collect();
            Grid::new(
                format!(
                    "Layer {}: router weight of the experts each token goes to",
                    l.layer
                ),
                "token",
                "expert",
                render::position_labels(&r.tokens),
                (0..l.n_experts).map(|e| format!("E{e}")).collect(),
                values,
            )
            .scale(Scale::Sequential)
            .range(0.0, 1.0)
            .value_label("router weight")
        })
        .collect()
}

/// A layer × expert grid of how often each expert fires, with uniform routing as baseline.
fn usage_grid(r: &UsageReport) -> Grid {
    let n_experts = r.layers.first().map_or(0, |l| l.frequency.len());
    let values: Vec<Vec<f32>> = r
        .layers
        .iter()
        .map(|l| l.frequency.iter().map(|&f| f as f32).collect())
        .collect();
    // each token goes to k experts: the frequencies of a layer sum to k
    let k = r
        .layers
        .first()
        .map_or(0.0, |l| l.frequency.iter().sum::<f64>());
    Grid::new(
        format!("Share of {} tokens routed to each expert", r.tokens),
        "layer",
        "expert",
        r.layers.iter().map(|l| format!("L{}", l.layer)).collect(),
        (0..n_experts).map(|e| format!("E{e}")).collect(),
        values,
    )
    .scale(Scale::Sequential)
    .range(0.0, 1.0)
    .value_label("share of tokens")
    .baseline((k / n_experts.max(1) as f64) as f32, "uniform")
}
