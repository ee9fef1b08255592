//! `glassbox features` — feature dashboards of an SAE over a corpus
//! (`glassbox_features::dashboard`): per feature its top-activating contexts (the activating
//! token in brackets), density and activation histogram, and its logit effect (tokens whose
//! logits `W_dec[f]·W_U` raises and lowers most). `--json` prints the dashboards;
//! `--html FILE` writes a self-contained page (contexts shaded by activation).

use std::path::PathBuf;

use anyhow::Context as _;
use glassbox_features::dashboard::{self, DashboardOptions, Dashboards};

use crate::model_cli::token_text;
use crate::render::svg;

#[derive(clap::Args)]
pub struct Args {
    /// A Hub snapshot directory or a GGUF file.
    pub model: PathBuf,
    /// The SAE: a SAELens folder or a sparsify hook folder.
    #[arg(long, value_name = "DIR")]
    pub sae: PathBuf,
    /// Text to read features over, cut into rows of --context tokens.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "tokens",
        required_unless_present = "tokens"
    )]
    pub text: Option<PathBuf>,
    /// Token rows [sequences, positions] in a safetensors file.
    #[arg(long, value_name = "F.safetensors")]
    pub tokens: Option<PathBuf>,
    /// Tokens per row from --text (default: the SAE's training context, else 128).
    #[arg(long)]
    pub context: Option<usize>,
    /// Features to show, comma-separated ids (default: the --top that fire most often).
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<usize>>,
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Top-activating contexts per feature.
    #[arg(long, default_value_t = 8)]
    pub contexts: usize,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long)]
    pub json: bool,
    /// Also write an HTML dashboard.
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// Also write a figure: per feature, its activation histogram and logit effect.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut inputs = vec![args.model.as_path(), args.sae.as_path()];
    inputs.extend(args.text.as_deref());
    inputs.extend(args.tokens.as_deref());
    if let Some(p) = &args.html {
        crate::output::check(p, "--html", &inputs)?;
    }
    if let Some(p) = &args.plot {
        crate::output::check_svg(p, "--plot", &inputs)?;
    }
    let model = crate::model_cli::load_plain_model(&args.model, "f32")?;
    let sae = crate::model_cli::load_sae(&args.sae)?;
    let rows = glassbox_features::corpus::rows_for_sae(
        &model,
        &sae,
        args.text.as_deref(),
        args.tokens.as_deref(),
        args.context
            .map(|c| crate::model_cli::context_within(&model, c, "--context")),
    )?;
    let opts = DashboardOptions {
        features: args.features.clone(),
        top: args.top,
        contexts: args.contexts,
        batch_size: args.batch_size,
        ..DashboardOptions::default()
    };
    let d = dashboard::dashboards(&model, &sae, &rows, &opts)
        .with_context(|| format!("reading the features of {}", args.sae.display()))?;
    let text = |id: u32| token_text(&model, id);
    if let Some(path) = &args.html {
        crate::render::write_atomic(path, html(&d, &text).as_bytes())?;
    }
    if let Some(path) = &args.plot {
        crate::render::save_svg(path, &figure(&d, &text))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    let (n_rows, row_len) = rows.dims2()?;
    let cut = if args.text.is_some() {
        "; a text's tail shorter than a row is left out"
    } else {
        ""
    };
    println!(
        "{} features of {} at {} over {} tokens ({n_rows} rows of {row_len}{cut}; {} dead)\ntop contexts leave out each row's first position (its BOS, or a token cut from what came before)",
        d.features.len(),
        args.sae.display(),
        d.hook_name,
        d.tokens,
        d.dead_features
    );
    for f in &d.features {
        println!(
            "\nfeature {}: fires on {:.3}% of tokens, max activation {:.3}",
            f.feature,
            f.density * 100.0,
            f.max_activation
        );
        for c in &f.top_contexts {
            let shown: Vec<String> = c
                .tokens
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    let s = text(t);
                    if i == c.marked {
                        format!("[[{s}]]")
                    } else {
                        s
                    }
                })
                .collect();
            println!(
                "  {:>8.3}  {}",
                c.activation,
                shown.concat().replace('\n', "⏎")
            );
        }
        if d.logit_effects {
            let list = |v: &[(u32, f32)]| {
                v.iter()
                    .map(|(t, l)| format!("{:?} {l:+.2}", text(*t)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!("  raises: {}", list(&f.logit_top));
            println!("  lowers: {}", list(&f.logit_bottom));
        }
    }
    if let Some(path) = &args.html {
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

/// Per feature two panels: how its non-zero activations are distributed, and the tokens whose
/// logits it raises and lowers most.
fn figure(d: &Dashboards, text: &dyn Fn(u32) -> String) -> String {
    use crate::render::{svg, Bar, BarChart, Panel};
    let mut panels = Vec::new();
    for f in &d.features {
        panels.push(Panel::Bars(BarChart {
            title: format!(
                "Feature {}: its non-zero activations (fires on {:.3}% of {} tokens)",
                f.feature,
                f.density * 100.0,
                d.tokens
            ),
            notes: vec!["bins of equal width from 0 to the largest activation; labels are each bin's upper edge".into()],
            value_axis: "tokens".into(),
            bars: f
                .histogram
                .iter()
                .map(|(edge, count)| Bar::term(format!("≤ {edge:.2}"), *count as f32))
                .collect(),
        }));
        if d.logit_effects {
            panels.push(Panel::Bars(BarChart {
                title: format!("Feature {}: logit effect (W_dec · g · W_U)", f.feature),
                notes: vec!["the change in each token's logit per unit of activation, through the final norm's centring and gain g (TransformerLens's fold_ln), at unit scale".into()],
                value_axis: "logit change per unit activation".into(),
                bars: f
                    .logit_top
                    .iter()
                    .chain(f.logit_bottom.iter().rev())
                    .map(|(t, v)| Bar::term(crate::render::token_label(&text(*t)), *v))
                    .collect(),
            }));
        }
    }
    svg::figure(&panels)
}

/// A self-contained page: one card per feature.
fn html(d: &Dashboards, text: &dyn Fn(u32) -> String) -> String {
    let mut out = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>glassbox features</title><style>\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
         .card{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}\
         .ctx{font-family:ui-monospace,monospace;white-space:pre-wrap;margin:.2em 0}\
         .tok{border-radius:2px}.mark{outline:2px solid #222}\
         .hist{display:flex;align-items:flex-end;height:60px;gap:1px}\
         .hist div{background:#4a7ab8;width:10px}</style>",
    );
    out.push_str(&format!(
        "<h1>Features at {}</h1><p>{} tokens, {} of {} features dead.</p>",
        svg::esc(&d.hook_name),
        d.tokens,
        d.dead_features,
        d.d_sae
    ));
    for f in &d.features {
        out.push_str(&format!(
            "<div class=\"card\" id=\"f{}\"><h2>Feature {}</h2><p>density {:.4}%, max activation {:.3}</p>",
            f.feature,
            f.feature,
            f.density * 100.0,
            f.max_activation
        ));
        let most = f.histogram.iter().map(|h| h.1).max().unwrap_or(0).max(1);
        out.push_str("<div class=\"hist\" title=\"non-zero activations, 0 to max\">");
        for (edge, count) in &f.histogram {
            out.push_str(&format!(
                "<div style=\"height:{}%\" title=\"≤ {edge:.3}: {count}\"></div>",
                count * 100 / most
            ));
        }
        out.push_str("</div><h3>Top contexts</h3>");
        for c in &f.top_contexts {
            out.push_str(&format!("<div class=\"ctx\">{:>8.3}  ", c.activation));
            for (i, (&t, &a)) in c.tokens.iter().zip(&c.activations).enumerate() {
                let alpha = if f.max_activation > 0.0 {
                    (a / f.max_activation).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                out.push_str(&format!(
                    "<span class=\"tok{}\" style=\"background:rgba(220,80,40,{alpha:.2})\" title=\"{a:.3}\">{}</span>",
                    if i == c.marked { " mark" } else { "" },
                    svg::esc(&text(t))
                ));
            }
            out.push_str("</div>");
        }
        if d.logit_effects {
            let list = |v: &[(u32, f32)]| {
                v.iter()
                    .map(|(t, l)| format!("<code>{}</code> {l:+.2}", svg::esc(&text(*t))))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(
                "<p><b>Raises</b> {}</p><p><b>Lowers</b> {}</p>",
                list(&f.logit_top),
                list(&f.logit_bottom)
            ));
        }
        out.push_str("</div>");
    }
    out
}
