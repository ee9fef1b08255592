//! The restricted PyTorch checkpoint reader, on hand-written pickles.

mod pickle_util;

use std::path::{Path, PathBuf};

use candle_core::Device;
use glassbox_formats::pickle::load_state_dict;
use glassbox_formats::{Checkpoint, CheckpointKind, DType, FormatError, TorchFile};
use pickle_util::{f32_bytes, sample_checkpoint, sample_checkpoint_zip64, zip_stored, Pickle};

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "glassbox-pickle-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn values(ck: &Checkpoint, name: &str) -> Vec<f32> {
    ck.tensor_f32(name, &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn state_dict_opens_as_a_checkpoint() {
    let dir = tempdir();
    let path = dir.join("model.bin");
    std::fs::write(&path, sample_checkpoint()).unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    assert_eq!(ck.kind, CheckpointKind::PyTorch);
    let infos: Vec<(&str, Vec<usize>, DType, u64)> = ck
        .tensors()
        .iter()
        .map(|t| (t.name.as_str(), t.shape.clone(), t.dtype, t.bytes))
        .collect();
    assert_eq!(
        infos,
        vec![
            ("w", vec![2, 3], DType::F32, 24),
            ("b", vec![3], DType::F16, 6),
            ("tail", vec![3], DType::F32, 12),
        ]
    );
    assert_eq!(values(&ck, "w"), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(values(&ck, "b"), vec![0.5, -1.0, 2.0]);
    assert_eq!(values(&ck, "tail"), vec![4.0, 5.0, 6.0]);
    assert_eq!(ck.tensor("w", &Device::Cpu).unwrap().dims(), &[2, 3]);
    std::fs::remove_dir_all(dir).ok();
}

/// Checkpoints over 4 GiB use zip64 records; the same tensors must come out.
#[test]
fn zip64_checkpoint_reads_the_same() {
    let plain = TorchFile::from_bytes(Path::new("a.bin"), sample_checkpoint()).unwrap();
    let zip64 = TorchFile::from_bytes(Path::new("b.bin"), sample_checkpoint_zip64()).unwrap();
    assert_eq!(zip64.entries.len(), 3);
    for (a, b) in plain.entries.iter().zip(&zip64.entries) {
        assert_eq!((&a.name, a.dtype, &a.shape), (&b.name, b.dtype, &b.shape));
        assert_eq!(plain.bytes(a), zip64.bytes(b));
    }
}

/// Checkpoints written by `torch.save` itself (`tests/fixtures/torch/make_torch_fixtures.py`):
/// every tensor equals, bit for bit, the one in the safetensors file of the same model —
/// tied weights, which torch stores once and names twice, included.
#[test]
fn torch_made_checkpoints_read_as_their_safetensors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for name in ["gpt2", "llama"] {
        let torch_dir = root.join("tests/fixtures/torch").join(name);
        let torch = Checkpoint::open(&torch_dir).unwrap();
        assert_eq!(torch.kind, CheckpointKind::HubSnapshot);
        let st = Checkpoint::open(root.join("tests/fixtures/parity").join(name)).unwrap();
        let mut names: Vec<&str> = st.tensors().iter().map(|t| t.name.as_str()).collect();
        names.sort();
        assert!(!names.is_empty());
        for n in names {
            let t = torch
                .tensors()
                .iter()
                .find(|t| t.name == n)
                .unwrap_or_else(|| panic!("{name}: `{n}` missing from the torch checkpoint"));
            let s = st.tensors().iter().find(|t| t.name == n).unwrap();
            assert_eq!((&t.shape, t.dtype), (&s.shape, s.dtype), "{name}: {n}");
            assert_eq!(
                torch.raw_bytes(n).unwrap(),
                st.raw_bytes(n).unwrap(),
                "{name}: {n}"
            );
        }
    }
}

#[test]
fn hub_directory_with_only_pytorch_model_bin() {
    let dir = tempdir();
    std::fs::write(dir.join("pytorch_model.bin"), sample_checkpoint()).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "test"}"#).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    assert_eq!(ck.kind, CheckpointKind::HubSnapshot);
    assert_eq!(ck.tensors().len(), 3);
    assert_eq!(ck.config.as_ref().unwrap()["model_type"], "test");
    assert_eq!(values(&ck, "b"), vec![0.5, -1.0, 2.0]);
    std::fs::remove_dir_all(dir).ok();
}

/// Protocol 4 as newer torch writes it: FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE, memo
/// gets, LONG1, nested dicts, parameters, non-tensor values and BUILD of `_metadata`.
#[test]
fn protocol_4_opcodes_and_nesting() {
    let mut p = Pickle::new(4);
    p.op(0x95).0.extend_from_slice(&100u64.to_le_bytes());
    p.op(b'}').op(0x94); // top dict, memo 0
    p.op(b'(');
    p.short_str("step").int(1 << 40); // LONG1
    p.short_str("model").op(b'}').op(0x94).op(b'(');
    p.short_str("layer.weight");
    p.stack_global("torch._utils", "_rebuild_parameter")
        .op(0x94); // memo 3
    p.tensor("BFloat16Storage", "7", 4, 0, &[2, 2], &[2, 1]);
    p.op(0x88)
        .stack_global("collections", "OrderedDict")
        .op(b')')
        .op(b'R')
        .op(0x87)
        .op(b'R');
    p.short_str("scalar")
        .tensor("LongStorage", "8", 1, 0, &[], &[]);
    p.op(b'u');
    // BUILD with a `_metadata` state, as state_dict() objects carry.
    p.op(b'}').short_str("_metadata").op(b'}').op(b's').op(b'b');
    p.short_str("names").op(b']').short_str("a").op(b'a');
    p.op(b'u').op(b'.');
    let bf16: Vec<u8> = [1.0f32, -2.0, 0.5, 4.0]
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    let long = 42i64.to_le_bytes();
    let zip = zip_stored(&[
        ("ckpt/data.pkl", &p.0),
        ("ckpt/data/7", &bf16),
        ("ckpt/data/8", &long),
    ]);
    let f = TorchFile::from_bytes(Path::new("x.pt"), zip).unwrap();
    let names: Vec<(&str, DType, Vec<usize>)> = f
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.dtype, e.shape.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("model.layer.weight", DType::BF16, vec![2, 2]),
            ("model.scalar", DType::I64, vec![])
        ]
    );
    assert_eq!(f.bytes(&f.entries[1]), &long);
}

fn refused(pkl: &[u8], global: &str) {
    let err = load_state_dict(pkl).unwrap_err();
    assert!(
        err.contains(&format!("`{global}`")),
        "expected refusal of {global}, got: {err}"
    );
    // The same through a file: an Unsupported FormatError naming the file and the global.
    let zip = zip_stored(&[("archive/data.pkl", pkl)]);
    let err = TorchFile::from_bytes(Path::new("evil.bin"), zip)
        .err()
        .unwrap();
    assert!(matches!(err, FormatError::Unsupported { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("evil.bin: ") && msg.contains(global),
        "{msg}"
    );
    assert!(err.is_invalid_input());
}

#[test]
fn foreign_globals_are_refused_by_name() {
    let mut p = Pickle::new(2);
    p.global("os", "system")
        .str("touch /tmp/pwned")
        .op(0x85)
        .op(b'R')
        .op(b'.');
    refused(&p.0, "os.system");
    let mut p = Pickle::new(2);
    p.global("posix", "system")
        .str("id")
        .op(0x85)
        .op(b'R')
        .op(b'.');
    refused(&p.0, "posix.system");
    let mut p = Pickle::new(4);
    p.stack_global("builtins", "eval")
        .short_str("__import__('os')")
        .op(0x85)
        .op(b'R')
        .op(b'.');
    refused(&p.0, "builtins.eval");
    // A foreign global hidden inside an otherwise valid state dict.
    let mut p = Pickle::new(2);
    p.begin_dict()
        .str("w")
        .global("subprocess", "Popen")
        .op(b')')
        .op(b'R')
        .end_dict();
    refused(&p.0, "subprocess.Popen");
    // torch names outside the allow-list are foreign too.
    let mut p = Pickle::new(2);
    p.global("torch", "load").op(b'.');
    refused(&p.0, "torch.load");
}

#[test]
fn pickle_programs_that_are_not_state_dicts_fail_cleanly() {
    let check = |pkl: &[u8], fragment: &str| {
        let err = load_state_dict(pkl).unwrap_err();
        assert!(err.contains(fragment), "expected `{fragment}`, got: {err}");
    };
    check(&[0x80, 2], "ends without STOP");
    check(&[0x80, 2, b'.'], "empty stack");
    check(&[0x80, 2, b'K', 1, b'.'], "not a state dict");
    check(&[0x80, 2, b'h', 9], "memo key 9");
    check(&[0x80, 2, b'i'], "opcode 0x69"); // INST: a call form state dicts never use
    check(&[0x80, 2, b'u'], "without a MARK");
    check(
        &[0x80, 2, b'X', 0xff, 0xff, 0xff, 0xff],
        "runs past the end",
    );
    check(&[0x80, 9], "protocol 9");
    let mut p = Pickle::new(2);
    p.begin_dict()
        .str("w")
        .tensor("FloatStorage", "0", 6, 0, &[2, 3], &[1, 2])
        .end_dict();
    let zip = zip_stored(&[("a/data.pkl", &p.0), ("a/data/0", &f32_bytes(&[0.0; 6]))]);
    let err = TorchFile::from_bytes(Path::new("t.bin"), zip)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("non-contiguous"), "{err}");
}

#[test]
fn legacy_pickle_gets_conversion_advice() {
    let dir = tempdir();
    let path = dir.join("old.bin");
    std::fs::write(&path, [0x80, 2, 0x8a, 0x0a]).unwrap();
    let err = Checkpoint::open(&path).err().unwrap().to_string();
    assert!(
        err.contains("legacy") && err.contains("st.save_file(torch.load("),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Issue 19's reproductions: a million nested tuples (`)` then TUPLE1 a million times), and
/// deeply nested lists and dicts built with APPEND and SETITEM, were a stack overflow (abort)
/// when the values were dropped. They are refused by nesting depth, with a message.
#[test]
fn deeply_nested_values_are_refused_not_a_stack_overflow() {
    let mut tuples = vec![0x80, 2, b')'];
    tuples.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    tuples.push(b'.');
    let mut lists = vec![0x80, 2];
    lists.extend(std::iter::repeat_n(b']', 100_000));
    lists.extend(std::iter::repeat_n(b'a', 99_999));
    lists.push(b'.');
    let mut nested_dicts = vec![0x80, 2, b'}'];
    for _ in 0..100_000 {
        nested_dicts.extend_from_slice(b"K\x01}");
    }
    nested_dicts.extend(std::iter::repeat_n(b's', 100_000));
    nested_dicts.push(b'.');
    for (what, pkl) in [
        ("tuples", tuples),
        ("lists", lists),
        ("dicts", nested_dicts),
    ] {
        let err = load_state_dict(&pkl).unwrap_err();
        assert!(err.contains("deeper than"), "{what}: {err}");
        // And through the torch zip reader, as an input error naming the file.
        let zip = zip_stored(&[("archive/data.pkl", &pkl)]);
        let err = TorchFile::from_bytes(Path::new("nested.bin"), zip)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(err.is_invalid_input(), "{what}: {err}");
    }
    // Shallow nesting, as real state dicts have, still loads.
    let mut shallow = vec![0x80, 2, b')'];
    shallow.extend(std::iter::repeat_n(0x85u8, 10));
    shallow.push(b'.');
    let err = load_state_dict(&shallow).unwrap_err();
    assert!(!err.contains("deeper than"), "{err}");
}
