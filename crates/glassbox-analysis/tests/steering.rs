//! Control vectors: llama.cpp's files load, ours are what llama.cpp's loader accepts, bad
//! files are refused with a message, and a vector made from contrasting prompts is the
//! normalised mean difference of the residual stream entering its block.
//!
//! `tests/fixtures/*-cvector.gguf` were written by llama.cpp's own GGUF writer (gguf-py) in
//! the layouts of llama.cpp's cvector-generator and of repeng; `make_control_vectors.py`
//! rebuilds them and `expected.json` holds what they contain.

use std::path::{Path, PathBuf};

use glassbox_analysis::steering::ControlVector;
use glassbox_formats::{GgufFile, GgufValue, GgufWriter};
use glassbox_models::{HookedModel, LoadOptions, NameFilter};

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glassbox-steering-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Reads a fixture and compares it with `expected.json`.
fn check(file: &str) {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(here().join("expected.json")).unwrap())
            .unwrap();
    let e = &expected[file];
    let cv = ControlVector::read(&here().join(file)).unwrap_or_else(|err| panic!("{file}: {err}"));
    assert_eq!(cv.model_hint, e["model_hint"].as_str().unwrap(), "{file}");
    let dirs = e["directions"].as_object().unwrap();
    assert_eq!(cv.directions.len(), dirs.len(), "{file}");
    for (layer, values) in dirs {
        let want: Vec<f32> = values
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let got = &cv.directions[&layer.parse::<usize>().unwrap()];
        assert_eq!(got, &want, "{file}: direction.{layer}");
        assert_eq!(cv.d_model, want.len());
    }
}

#[test]
fn llama_cpp_control_vectors_load() {
    check("llamacpp-cvector.gguf");
    check("repeng-cvector.gguf");
}

#[test]
fn written_vectors_are_what_llama_cpp_reads() {
    let model = HookedModel::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/gpt2"),
        &LoadOptions::default(),
    )
    .unwrap();
    // pairs, the last of unequal length
    let pos: Vec<Vec<u32>> = ["I love this, it is wonderful", "What a great day", "No"]
        .iter()
        .map(|t| model.to_tokens(t).unwrap())
        .collect();
    let neg: Vec<Vec<u32>> = [
        "I hate this, it is awful",
        "What a terrible day",
        "Not at all, never",
    ]
    .iter()
    .map(|t| model.to_tokens(t).unwrap())
    .collect();
    let cv = ControlVector::from_contrast(&model, &pos, &neg, 1..=1, true).unwrap();
    let path = temp("ours.gguf");
    cv.write(&path).unwrap();

    // what llama.cpp's common_control_vector_load_one checks, on the raw file
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.architecture(), Some("controlvector"));
    assert_eq!(file.get_str("controlvector.model_hint"), Some("gpt2"));
    assert_eq!(file.get_u32("controlvector.layer_count"), Some(1));
    assert_eq!(file.tensors.len(), 1);
    let t = &file.tensors[0];
    assert_eq!(t.name, "direction.1");
    assert_eq!(t.dtype, glassbox_formats::DType::F32);
    assert_eq!(t.shape, vec![model.info().d_model]);
    assert_eq!(ControlVector::read(&path).unwrap(), cv);

    // the direction, as cvector-generator makes it: each pair padded to one length with the
    // last token of " ", position by position positive − negative at resid_pre of block 1,
    // rows with no element above 1e-6 dropped, the mean of the rest, normalised
    let pad = *model
        .tokenizer
        .as_ref()
        .unwrap()
        .encode_plain(" ")
        .unwrap()
        .last()
        .unwrap();
    let rows_of = |ids: &[u32], len: usize| -> Vec<Vec<f32>> {
        let mut ids = ids.to_vec();
        ids.resize(len, pad);
        let (_, cache) = model
            .run_with_cache(
                &model.ids_tensor(&ids).unwrap(),
                &NameFilter::new(&["blocks.1.hook_resid_pre"]).unwrap(),
            )
            .unwrap();
        cache["blocks.1.hook_resid_pre"]
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    };
    let mut sum = vec![0f64; model.info().d_model];
    let (mut count, mut dropped) = (0, 0);
    for (p, n) in pos.iter().zip(&neg) {
        let len = p.len().max(n.len());
        for (a, b) in rows_of(p, len).iter().zip(rows_of(n, len)) {
            let d: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
            if d.iter().all(|&v| v <= 1e-6) {
                dropped += 1;
                continue;
            }
            sum.iter_mut().zip(&d).for_each(|(s, &v)| *s += v as f64);
            count += 1;
        }
    }
    // the shared starts ("I", "What a", "No") are the rows dropped
    assert!(dropped >= 3, "{dropped}");
    let diff: Vec<f32> = sum.iter().map(|s| (s / count as f64) as f32).collect();
    let norm = diff.iter().map(|x| x * x).sum::<f32>().sqrt();
    for (got, want) in cv.directions[&1].iter().zip(&diff) {
        assert!((got - want / norm).abs() < 1e-5, "{got} {}", want / norm);
    }
    // as many positive as negative prompts
    let e = ControlVector::from_contrast(&model, &pos, &neg[..2], 1..=1, true).unwrap_err();
    assert!(e.to_string().contains("as many of each"), "{e}");
    // identical prompts have nothing to contrast
    let e = ControlVector::from_contrast(&model, &pos[..1], &pos[..1], 1..=1, true).unwrap_err();
    assert!(e.to_string().contains("nothing to contrast"), "{e}");

    // layer 0 cannot be expressed; blocks past the model are refused
    assert!(ControlVector::from_contrast(&model, &pos, &neg, 0..=1, true).is_err());
    assert!(ControlVector::from_contrast(&model, &pos, &neg, 1..=2, true).is_err());
}

/// Writes a GGUF with `tensors` (name, values, f16?) and checks that reading it fails with a
/// message containing `message`.
fn refused(name: &str, arch: &str, tensors: &[(&str, Vec<f32>, bool)], message: &str) {
    let mut w = GgufWriter::new();
    w.set("general.architecture", GgufValue::String(arch.into()));
    for (n, v, half) in tensors {
        if *half {
            w.add_f16(n, &[v.len()], v).unwrap();
        } else {
            w.add_f32(n, &[v.len()], v).unwrap();
        }
    }
    let path = temp(name);
    w.write(&path).unwrap();
    let err = ControlVector::read(&path).expect_err(name).to_string();
    assert!(err.contains(message), "{name}: {err}");
    assert!(
        err.contains(name),
        "{name}: the message names the file: {err}"
    );
}

#[test]
fn malformed_control_vectors_are_refused() {
    let v = vec![0.5f32; 8];
    refused(
        "zero.gguf",
        "controlvector",
        &[("direction.0", v.clone(), false)],
        "direction.0",
    );
    refused(
        "f16.gguf",
        "controlvector",
        &[("direction.1", v.clone(), true)],
        "F32",
    );
    refused(
        "lengths.gguf",
        "controlvector",
        &[
            ("direction.1", v.clone(), false),
            ("direction.2", vec![1.0; 4], false),
        ],
        "values",
    );
    refused(
        "name.gguf",
        "controlvector",
        &[("steer.1", v.clone(), false)],
        "direction.N",
    );
    refused(
        "arch.gguf",
        "llama",
        &[("direction.1", v.clone(), false)],
        "not a control vector",
    );
    refused("empty.gguf", "controlvector", &[], "no direction");
    std::fs::write(temp("junk.gguf"), b"GGUF not really").unwrap();
    assert!(ControlVector::read(&temp("junk.gguf")).is_err());
}
