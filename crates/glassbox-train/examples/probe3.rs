// Temporary debugging probe (to be removed).
use candle_core::Tensor;
use glassbox_train::{trainer, Recipe};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let recipe = Recipe::load(path.as_ref()).unwrap();
    trainer::set_threads(1);
    let data = trainer::prepare_data(&recipe.data).unwrap();
    let run = trainer::train(&recipe, &data, 3, &mut |_| {}).unwrap();
    let dev = candle_core::Device::Cpu;
    let (inputs, _) = trainer::batch_tensors(&data.train, data.row, &[0, 1, 2], &dev).unwrap();
    let all = run.model.run(&inputs).unwrap();
    for i in 0..3 {
        let one = run.model.run(&inputs.narrow(0, i, 1).unwrap()).unwrap();
        let d = (all.narrow(0, i, 1).unwrap() - one).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        println!("doc {i}: max |batched - single| = {d}");
    }
    // Causality: changing a later token must not change earlier logits.
    let mut ids: Vec<u32> = inputs.narrow(0, 0, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let a = run.model.run(&Tensor::new(ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap()).unwrap();
    ids[40] = (ids[40] + 1) % 89;
    let b = run.model.run(&Tensor::new(ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap()).unwrap();
    let diff = (a - b).unwrap().abs().unwrap().max(2).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap();
    println!("per-position change after editing token 40: {:?}", diff.iter().map(|x| format!("{x:.1e}")).collect::<Vec<_>>());
}
