// Temporary timing probe (to be removed).
use glassbox_train::{eval, trainer, Recipe};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let steps: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let recipe = Recipe::load(path.as_ref()).unwrap();
    trainer::set_threads(recipe.threads);
    let t = std::time::Instant::now();
    let data = trainer::prepare_data(&recipe.data).unwrap();
    eprintln!("data {:.2}s", t.elapsed().as_secs_f64());
    let run = trainer::train(&recipe, &data, steps, &mut |r| {
        if r.step % 50 == 0 || r.step < 4 { eprintln!("step {} loss {:.4} {:.0} tok/s", r.step, r.loss, r.tokens_per_s) }
    }).unwrap();
    eprintln!("train {:.1}s", run.seconds);
    let e = eval::evaluate(&run.model, &recipe.data, &data.held_out, data.row).unwrap();
    eprintln!("{}", e.markdown());
    for h in &e.heads { eprintln!("L{}H{} ind {:.3} prev {:.3}", h.layer, h.head, h.induction, h.previous_token); }
}
