//! SAE training throughput on given activations (bench/sae/run.sh runs SAELens beside it).
//!
//! usage: sae_train_speed ACTS.safetensors ARCH D_SAE K BATCH STEPS LR
//! ACTS holds `acts` [rows, d_in] (f32); batches are taken in order, wrapping. Prints one JSON
//! line: tokens/s over the timed steps (the first step is warm-up), final mse and L0.

use std::time::Instant;

use candle_core::Device;
use glassbox_features::train::{LrScheduler, TrainArch, TrainOptions, Trainer};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 8 {
        eprintln!("usage: sae_train_speed ACTS.safetensors ARCH D_SAE K BATCH STEPS LR");
        std::process::exit(2);
    }
    // As the CLI does (main.rs): freed activation buffers are reused, not returned and
    // faulted in again.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: first in main, before any thread or allocation that could race with it.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    glassbox_models::kernel_ops::claim_cpu_threads();
    let acts = candle_core::safetensors::load(&a[1], &Device::Cpu).unwrap()["acts"].clone();
    let (rows, d_in) = acts.dims2().unwrap();
    let (d_sae, k, batch, steps): (usize, usize, usize, usize) = (
        a[3].parse().unwrap(),
        a[4].parse().unwrap(),
        a[5].parse().unwrap(),
        a[6].parse().unwrap(),
    );
    let lr: f64 = a[7].parse().unwrap();
    let arch = match a[2].as_str() {
        "standard" => TrainArch::Standard {
            l1_coefficient: 1.0,
            lp_norm: 1.0,
            l1_warm_up_steps: 0,
        },
        "topk" => TrainArch::TopK {
            k,
            aux_loss_coefficient: 1.0,
            rescale_acts_by_decoder_norm: true,
        },
        "batchtopk" => TrainArch::BatchTopK {
            k: k as f64,
            aux_loss_coefficient: 1.0,
            rescale_acts_by_decoder_norm: true,
            topk_threshold_lr: 0.01,
        },
        "jumprelu" => TrainArch::JumpRelu {
            jumprelu_init_threshold: 0.01,
            jumprelu_bandwidth: 0.05,
            l0_coefficient: 1.0,
            l0_warm_up_steps: 0,
        },
        other => panic!("unknown arch {other}"),
    };
    let opts = TrainOptions {
        arch,
        d_in,
        d_sae,
        apply_b_dec_to_input: true,
        decoder_init_norm: Some(0.1),
        lr,
        lr_end: None,
        lr_scheduler: LrScheduler::Constant,
        lr_warm_up_steps: 0,
        lr_decay_steps: 0,
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        train_batch_size_tokens: batch,
        training_tokens: batch * (steps + 1),
        dead_feature_window: 1000,
        feature_sampling_window: 2000,
        seed: 42,
        normalize_activations: false,
        n_batches_for_norm_estimate: 1,
        metadata: Default::default(),
    };
    let mut trainer = Trainer::new(opts).unwrap();
    let batch_at = |s: usize| {
        acts.narrow(0, (s * batch) % (rows - batch + 1), batch)
            .unwrap()
    };
    trainer.train_step(&batch_at(0)).unwrap();
    let start = Instant::now();
    let mut last = None;
    for s in 1..=steps {
        last = Some(trainer.train_step(&batch_at(s)).unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    let last = last.unwrap();
    println!(
        "{{\"tool\":\"glassbox\",\"tokens_per_s\":{:.1},\"seconds\":{secs:.3},\"mse_loss\":{},\"l0\":{}}}",
        (steps * batch) as f64 / secs,
        last.mse_loss,
        last.l0
    );
}
