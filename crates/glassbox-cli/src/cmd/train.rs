//! `glassbox train RECIPE.toml --out DIR`: train a model from a recipe and write its release.
//!
//! The thread count comes from the recipe and is fixed before any tensor work, so the same
//! recipe gives bit-identical weights. The release directory is written only at the end,
//! through a temporary directory (see `glassbox_train::release`).

use std::path::PathBuf;

use glassbox_train::{eval, release, trainer, Recipe};

#[derive(clap::Args)]
pub struct Args {
    /// The recipe (TOML): architecture config, data, optimizer, schedule, batch, steps, seed, threads.
    pub recipe: PathBuf,
    /// The release directory to write (Hub layout).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace DIR if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let recipe = Recipe::load(&args.recipe)?;
    if let Some(note) = recipe.warmup_note() {
        eprintln!("note: {}: {note}", args.recipe.display());
    }
    let recipe_text = glassbox_formats::input::read_text(
        &args.recipe,
        "recipe",
        glassbox_formats::input::limit::CONFIG,
    )?;
    crate::output::not_an_input(&args.out, "--out", &[&args.recipe])?;
    if args.force {
        crate::output::no_input_inside(&args.out, "--out", &[&args.recipe])?;
    }
    if args.out.exists() && !args.force {
        return Err(crate::invalid!(
            "{}: already exists (pass --force to replace it)",
            args.out.display()
        ));
    }
    // Checked now, not after training: a release is a folder.
    if args.out.exists() && !args.out.is_dir() {
        return Err(crate::invalid!(
            "--out {}: is a file; give a folder",
            args.out.display()
        ));
    }
    crate::training_cli::set_threads(recipe.threads);

    eprintln!(
        "generating data ({} + {} documents of {} words, seed {})",
        recipe.data.train_documents,
        recipe.data.held_out_documents,
        recipe.data.seq_len,
        recipe.data.seed
    );
    let data = trainer::prepare_data(&recipe.data)?;
    let steps = recipe.training.steps;
    let bar = crate::progress::bar(steps as u64, "training");
    let mut last_print = std::time::Instant::now();
    let run = trainer::train(&recipe, &data, steps, &mut |r| {
        bar.set_position(r.step as u64);
        bar.set_message(format!("loss {:.3}  {:.0} tok/s", r.loss, r.tokens_per_s));
        if bar.is_hidden() && (last_print.elapsed().as_secs() >= 10 || r.step == steps) {
            eprintln!(
                "step {}/{steps}  loss {:.4}  lr {:.2e}  {:.0} tok/s",
                r.step, r.loss, r.lr, r.tokens_per_s
            );
            last_print = std::time::Instant::now();
        }
    })?;
    bar.finish_and_clear();

    eprintln!("evaluating");
    let evaluation = eval::evaluate(&run.model, &recipe.data, &data.held_out, data.row)?;
    let parts = release::ReleaseParts {
        recipe: &recipe,
        recipe_text: &recipe_text,
        data: &data,
        run: &run,
        evaluation: &evaluation,
    };
    release::write(&args.out, &parts, args.force)?;

    let tps = run.log.last().map(|r| r.tokens_per_s).unwrap_or(0.0);
    println!(
        "trained {} steps in {:.1} s on {} thread(s): {:.0} tokens/s; final loss {:.4}",
        run.steps_done,
        run.seconds,
        run.threads,
        tps,
        run.log.last().map(|r| r.loss).unwrap_or(f32::NAN)
    );
    print!("{}", evaluation.markdown());
    println!("release written to {}", args.out.display());
    Ok(())
}
