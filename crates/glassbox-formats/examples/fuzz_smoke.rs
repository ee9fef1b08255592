//! A stable-toolchain smoke fuzzer for the checkpoint parsers (libFuzzer needs nightly).
//!
//! For each parser it builds a few valid seed files, then feeds it mutated copies — bit flips,
//! byte overwrites, "interesting" integers (0, -1, 2^31, 2^62 …) written over header fields,
//! truncations, insertions, chunk duplication — from a seeded xorshift generator, so a run is
//! reproducible. Each input goes through `glassbox_formats::fuzzing::*` (parse, then decode
//! every accepted tensor) under `catch_unwind`; any panic is saved under `fuzz/artifacts/`
//! and the run exits 1.
//!
//! Usage: `fuzz_smoke [--seconds N] [--seed S] [--only NAME] [--write-seeds DIR]`, or
//! `fuzz_smoke --only NAME --repro FILE` to re-run one saved input with its panic message.

#[path = "../tests/pickle_util/mod.rs"]
mod pickle_util;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use glassbox_formats::{fuzzing, DType, GgufArray, GgufValue, GgufWriter};
use pickle_util::{sample_checkpoint, sample_checkpoint_zip64, zip_stored, Pickle};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    9,
    31,
    32,
    33,
    255,
    256,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 60,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                // Header fields are little-endian integers of 1 to 8 bytes.
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let width = [1, 2, 4, 8][rng.below(4)];
                let i = rng.below(len);
                let n = width.min(len - i);
                input[i..i + n].copy_from_slice(&v[..n]);
            }
            3 => input.truncate(rng.below(len + 1)),
            4 => {
                let i = rng.below(len + 1);
                let extra: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                input.splice(i..i, extra);
            }
            5 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk = input[a..b].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            _ if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(32)).min(len - i);
                input.drain(i..i + n);
            }
            _ => {}
        }
    }
}

fn safetensors_seeds() -> Vec<Vec<u8>> {
    let file = |header: &str, data: usize| {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend((0..data).map(|i| (i * 37) as u8));
        out
    };
    vec![
        file(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},"c":{"dtype":"BF16","shape":[2,2],"data_offsets":[32,40]}}"#,
            40,
        ),
        file(
            r#"{"i":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"u":{"dtype":"U8","shape":[3],"data_offsets":[16,19]},"f8":{"dtype":"F8_E4M3","shape":[5],"data_offsets":[19,24]},"e":{"dtype":"F64","shape":[0],"data_offsets":[24,24]}}"#,
            24,
        ),
        file("{}", 0),
    ]
}

fn gguf_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let mut w = GgufWriter::new();
    w.set("general.architecture", GgufValue::String("llama".into()));
    w.set("llama.block_count", GgufValue::U32(2));
    w.set("f", GgufValue::F32(1e-5));
    w.set("b", GgufValue::Bool(true));
    w.set("i64", GgufValue::I64(-5));
    w.set(
        "tokens",
        GgufValue::Array(GgufArray::String(vec![
            "<s>".into(),
            "a".into(),
            "bc".into(),
        ])),
    );
    w.set(
        "scores",
        GgufValue::Array(GgufArray::F32(vec![0.0, -1.0, -2.0])),
    );
    w.set(
        "nested",
        GgufValue::Array(GgufArray::Array(vec![
            GgufArray::U8(vec![1, 2]),
            GgufArray::Bool(vec![false]),
        ])),
    );
    w.add_f32("token_embd.weight", &[3, 4], &[0.5; 12]).unwrap();
    w.add_f16("blk.0.attn_norm.weight", &[4], &[1.0; 4])
        .unwrap();
    w.add_q8_0("blk.0.attn_q.weight", &[2, 32], &[0.25; 64])
        .unwrap();
    seeds.push(w.to_bytes().unwrap());
    let mut w = GgufWriter::new();
    w.set("general.alignment", GgufValue::U32(8));
    for (i, dtype) in [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q2K,
        DType::Q3K,
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
        DType::Q8K,
        DType::Q8_1,
        DType::Mxfp4,
        DType::BF16,
    ]
    .into_iter()
    .enumerate()
    {
        let (block, bytes) = dtype.block();
        let cols = if block == 1 { 8 } else { block };
        let data: Vec<u8> = (0..bytes * (cols / block))
            .map(|j| (j * 31 + i) as u8)
            .collect();
        w.add_raw(&format!("t{i}"), &[1, cols], dtype, data)
            .unwrap();
    }
    seeds.push(w.to_bytes().unwrap());
    seeds.push(GgufWriter::new().to_bytes().unwrap());
    seeds
}

fn pickle_seeds() -> Vec<Vec<u8>> {
    let mut p = Pickle::new(4);
    p.op(b'}').op(0x94).op(b'(');
    p.short_str("w")
        .stack_global("torch._utils", "_rebuild_parameter")
        .op(0x94);
    p.tensor("BFloat16Storage", "0", 4, 0, &[2, 2], &[2, 1]);
    p.op(0x88)
        .stack_global("collections", "OrderedDict")
        .op(b')')
        .op(b'R')
        .op(0x87)
        .op(b'R');
    p.short_str("n")
        .int(1 << 40)
        .short_str("l")
        .op(b']')
        .int(3)
        .op(b'a');
    p.op(b'u')
        .op(b'}')
        .short_str("_metadata")
        .op(b'}')
        .op(b's')
        .op(b'b')
        .op(b'.');
    let bf16 = [0u8; 8];
    vec![
        sample_checkpoint(),
        sample_checkpoint_zip64(),
        zip_stored(&[("ckpt/data.pkl", &p.0), ("ckpt/data/0", &bf16)]),
        p.0.clone(),
    ]
}

/// Llama 2-style SentencePiece models made by sentencepiece itself (the quantize fixtures).
fn sentencepiece_seeds() -> Vec<Vec<u8>> {
    vec![
        include_bytes!(
            "../../../tests/fixtures/llamacpp-quantize/hub/llama-spm/checkpoint/tokenizer.model"
        )
        .to_vec(),
        include_bytes!(
            "../../../tests/fixtures/llamacpp-quantize/vocab/spm-no-json/tokenizer.model"
        )
        .to_vec(),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(15);
    let seed: u64 = arg("--seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let only = arg("--only");
    type Target = (&'static str, fn(&[u8]), Vec<Vec<u8>>);
    let targets: Vec<Target> = vec![
        (
            "safetensors_header",
            fuzzing::safetensors,
            safetensors_seeds(),
        ),
        ("gguf", fuzzing::gguf, gguf_seeds()),
        ("pickle", fuzzing::pickle, pickle_seeds()),
        (
            "sentencepiece",
            fuzzing::sentencepiece,
            sentencepiece_seeds(),
        ),
    ];
    if let Some(dir) = arg("--write-seeds") {
        for (name, _, seeds) in &targets {
            let d = std::path::Path::new(&dir).join(name);
            std::fs::create_dir_all(&d).expect("create seed dir");
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(d.join(format!("seed-{i}")), s).expect("write seed");
            }
        }
        println!("seeds written to {dir}");
        return;
    }
    // Re-run one saved input with the panic message shown.
    if let Some(file) = arg("--repro") {
        let data = std::fs::read(&file).expect("read input");
        for (name, run, _) in &targets {
            if only.as_deref().is_none_or(|o| o == *name) {
                run(&data);
                println!("{name}: no panic");
            }
        }
        return;
    }
    // Panics are caught and reported once per target, not printed for every input.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for (name, run, seeds) in targets {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut rng = Rng(seed ^ name.len() as u64 ^ 0x5555);
        let start = Instant::now();
        let (mut inputs, mut crashes) = (0u64, 0u64);
        // The seeds themselves must parse without panicking.
        for s in &seeds {
            if catch_unwind(AssertUnwindSafe(|| run(s))).is_err() {
                panic!("{name}: a valid seed panics");
            }
        }
        while start.elapsed() < Duration::from_secs(seconds) {
            let mut input = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &mut input);
            inputs += 1;
            if catch_unwind(AssertUnwindSafe(|| run(&input))).is_err() {
                crashes += 1;
                failed = true;
                let dir =
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/artifacts");
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!("smoke-{name}-{crashes}.bin"));
                let _ = std::fs::write(&path, &input);
                eprintln!("{name}: PANIC on input saved to {}", path.display());
            }
        }
        println!(
            "{name}: {inputs} inputs in {:.1} s, {crashes} panics",
            start.elapsed().as_secs_f64()
        );
    }
    if failed {
        std::process::exit(1);
    }
}
