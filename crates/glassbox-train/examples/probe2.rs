// Temporary debugging probe (to be removed).
use glassbox_train::{trainer, Recipe};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let recipe = Recipe::load(path.as_ref()).unwrap();
    trainer::set_threads(1);
    let data = trainer::prepare_data(&recipe.data).unwrap();
    let run = trainer::train(&recipe, &data, 1, &mut |_| {}).unwrap();
    let a = trainer::snapshot(&run.varmap).unwrap();
    let run2 = trainer::train(&recipe, &data, 20, &mut |_| {}).unwrap();
    let b = trainer::snapshot(&run2.varmap).unwrap();
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        let d = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let s = x.sqr().unwrap().mean_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap();
        println!("{n:50} rms {s:.4} maxdiff {d:.4}");
    }
    let t = &data.train[..65];
    println!("{:?}", t);
}
