//! Malformed and hostile files: each must give a `FormatError` that names the file and the
//! problem — never a panic, never an allocation sized by the header.

#[path = "pickle_util/mod.rs"]
mod pickle_util;

use glassbox_formats::{Checkpoint, DType, GgufValue, GgufWriter};
use pickle_util::{f32_bytes, sample_checkpoint, zip_stored, Pickle};

/// Writes `bytes` to a file called `name`, opens it, and expects an input error whose message
/// names the file and contains `fragment`.
fn check(name: &str, bytes: &[u8], fragment: &str) {
    let dir =
        std::env::temp_dir().join(format!("glassbox-bad-input-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let result = Checkpoint::open(&path);
    std::fs::remove_dir_all(&dir).ok();
    let err = match result {
        Ok(_) => panic!("{name}: opened, expected an error containing `{fragment}`"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(err.is_invalid_input(), "{name}: not an input error: {msg}");
    assert!(
        msg.contains(name),
        "{name}: message does not name the file: {msg}"
    );
    assert!(
        msg.contains(fragment),
        "{name}: expected `{fragment}` in: {msg}"
    );
}

fn safetensors(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + data_len, 0);
    out
}

#[test]
fn bad_safetensors() {
    check("empty.safetensors", b"", "the file is empty");
    check("short.safetensors", &[1, 0, 0], "too short");
    let mut past = 1000u64.to_le_bytes().to_vec();
    past.extend_from_slice(b"{}");
    check("past.safetensors", &past, "runs past the end");
    check("huge.safetensors", &(1u64 << 62).to_le_bytes(), "exceeds");
    check(
        "json.safetensors",
        &safetensors("{\"a\": [", 0),
        "malformed JSON",
    );
    check(
        "dtype.safetensors",
        &safetensors(
            r#"{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}"#,
            4,
        ),
        "unknown dtype `F7`",
    );
    check(
        "range.safetensors",
        &safetensors(
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            8,
        ),
        "out of range",
    );
    check(
        "reversed.safetensors",
        &safetensors(
            r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#,
            8,
        ),
        "out of range",
    );
    check(
        "overlap.safetensors",
        &safetensors(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
        ),
        "overlap",
    );
    check(
        "count.safetensors",
        &safetensors(
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            8,
        ),
        "needs 12 bytes",
    );
    check(
        "overflow.safetensors",
        &safetensors(
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
            8,
        ),
        "overflows",
    );
    // A zero dim must not hide an overflowing product (the fuzzer found this one).
    check(
        "zerodim.safetensors",
        &safetensors(
            r#"{"a":{"dtype":"F32","shape":[0,4294967296,4294967296,4294967296],"data_offsets":[0,0]}}"#,
            0,
        ),
        "overflows",
    );
    check(
        "meta.safetensors",
        &safetensors(r#"{"__metadata__":{"a":1}}"#, 0),
        "__metadata__",
    );
}

/// A GGUF header: magic, version, counts.
fn gguf(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&n_tensors.to_le_bytes());
    out.extend_from_slice(&n_kv.to_le_bytes());
    out
}
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}
/// One tensor info: name, dims (innermost first), ggml type, offset.
fn push_tensor(out: &mut Vec<u8>, name: &str, dims: &[u64], ty: u32, offset: u64) {
    push_str(out, name);
    out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
}
fn pad_to(out: &mut Vec<u8>, n: usize) {
    let len = out.len().div_ceil(n) * n;
    out.resize(len, 0);
}

#[test]
fn bad_gguf_headers() {
    check("short.gguf", b"GGU", "too short");
    check("magic.gguf", b"GGML\x03\0\0\0", "not a GGUF file");
    check("v1.gguf", &gguf(1, 0, 0), "version 1");
    check("v7.gguf", &gguf(7, 0, 0), "version 7");
    check("be.gguf", &gguf(0x0300_0000, 0, 0), "big-endian");
    check("trunc.gguf", &gguf(3, 0, 0)[..12], "runs past the end");
    check(
        "ntensors.gguf",
        &gguf(3, 1 << 60, 0),
        "tensor count 1152921504606846976 cannot fit",
    );
    check("nkv.gguf", &gguf(3, 0, u64::MAX), "metadata count");
    // A key whose length is 2^62.
    let mut b = gguf(3, 0, 1);
    b.extend_from_slice(&(1u64 << 62).to_le_bytes());
    b.extend_from_slice(&[0; 16]);
    check(
        "keylen.gguf",
        &b,
        "metadata key of 4611686018427387904 bytes runs past the end",
    );
    // A string value whose length is 2^62.
    let mut b = gguf(3, 0, 1);
    push_str(&mut b, "k");
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&(1u64 << 62).to_le_bytes());
    check(
        "strlen.gguf",
        &b,
        "string value of 4611686018427387904 bytes",
    );
    // An array of u32 with 2^61 elements, and of strings with 2^40.
    for (name, ty, n) in [
        ("arru32.gguf", 4u32, 1u64 << 61),
        ("arrstr.gguf", 8, 1 << 40),
    ] {
        let mut b = gguf(3, 0, 1);
        push_str(&mut b, "k");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&[0; 64]);
        check(name, &b, "array element count");
    }
    // Arrays nested 20 deep.
    let mut b = gguf(3, 0, 1);
    push_str(&mut b, "k");
    b.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..20 {
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    }
    b.extend_from_slice(&[0; 64]);
    check("nested.gguf", &b, "nested deeper");
    let mut b = gguf(3, 0, 1);
    push_str(&mut b, "k");
    b.extend_from_slice(&99u32.to_le_bytes());
    b.extend_from_slice(&[0; 16]);
    check("vtype.gguf", &b, "unknown value type 99");
    let mut b = gguf(3, 0, 1);
    push_str(&mut b, "k");
    b.extend_from_slice(&7u32.to_le_bytes());
    b.extend_from_slice(&[2; 16]);
    check("bool.gguf", &b, "neither 0 nor 1");
    let mut b = gguf(3, 0, 2);
    for _ in 0..2 {
        push_str(&mut b, "dup");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
    }
    check("dupkey.gguf", &b, "appears twice");
    let mut b = gguf(3, 0, 1);
    push_str(&mut b, "general.alignment");
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    check("align.gguf", &b, "power of two");
}

#[test]
fn bad_gguf_tensors() {
    let tensor_file = |dims: &[u64], ty: u32, offset: u64, data: usize| {
        let mut b = gguf(3, 1, 0);
        push_tensor(&mut b, "t", dims, ty, offset);
        pad_to(&mut b, 32);
        b.resize(b.len() + data, 0);
        b
    };
    check("ndims.gguf", &tensor_file(&[1; 9], 0, 0, 64), "9 dims");
    check(
        "past.gguf",
        &tensor_file(&[16], 0, 0, 32),
        "run past the 32-byte data section",
    );
    check("offset.gguf", &tensor_file(&[4], 0, 1 << 63, 32), "offset");
    check(
        "unaligned.gguf",
        &tensor_file(&[4], 0, 4, 64),
        "not a multiple of the alignment 32",
    );
    check("iq.gguf", &tensor_file(&[256], 20, 0, 1024), "ggml type 20");
    check(
        "ggmltype.gguf",
        &tensor_file(&[4], 1000, 0, 32),
        "ggml type 1000",
    );
    check(
        "dims.gguf",
        &tensor_file(&[1 << 32, 1 << 32, 1 << 32], 0, 0, 32),
        "overflow",
    );
    check(
        "zerodim.gguf",
        &tensor_file(&[0, 1 << 32, 1 << 32, 1 << 32], 0, 0, 32),
        "overflow",
    );
    check(
        "block.gguf",
        &tensor_file(&[16, 2], 8, 0, 64),
        "block size 32",
    );
    // Tensor data cut off at the end of the file.
    check("cut.gguf", &tensor_file(&[8], 0, 0, 16), "run past");
    // Two tensors sharing bytes.
    let mut b = gguf(3, 2, 0);
    push_tensor(&mut b, "a", &[16], 0, 0);
    push_tensor(&mut b, "b", &[16], 0, 32);
    pad_to(&mut b, 32);
    b.resize(b.len() + 96, 0);
    check("overlap.gguf", &b, "overlap");
    let mut b = gguf(3, 2, 0);
    push_tensor(&mut b, "a", &[4], 0, 0);
    push_tensor(&mut b, "a", &[4], 0, 32);
    pad_to(&mut b, 32);
    b.resize(b.len() + 64, 0);
    check("duptensor.gguf", &b, "appears twice");
    // A valid file cut at every point of its header must fail cleanly.
    let mut w = GgufWriter::new();
    w.set("general.architecture", GgufValue::String("llama".into()));
    w.set(
        "tokens",
        GgufValue::Array(glassbox_formats::GgufArray::String(vec!["a".into(); 4])),
    );
    w.add_raw("t", &[2, 32], DType::F32, vec![0; 256]).unwrap();
    let good = w.to_bytes().unwrap();
    for cut in (0..good.len() - 256).step_by(7) {
        check("cutheader.gguf", &good[..cut], "cutheader.gguf");
    }
}

#[test]
fn bad_pytorch_checkpoints() {
    let mut p = Pickle::new(2);
    p.begin_dict()
        .str("w")
        .global("os", "system")
        .str("rm -rf /")
        .op(0x85)
        .op(b'R')
        .end_dict();
    check(
        "evil.bin",
        &zip_stored(&[("archive/data.pkl", &p.0)]),
        "refusing global `os.system`",
    );
    let mut p = Pickle::new(2);
    p.global("builtins", "eval").op(b'.');
    check(
        "eval.pt",
        &zip_stored(&[("archive/data.pkl", &p.0)]),
        "`builtins.eval`",
    );
    check(
        "nopkl.bin",
        &zip_stored(&[("archive/data/0", &[0; 4])]),
        "no `data.pkl`",
    );
    let mut p = Pickle::new(2);
    p.begin_dict()
        .str("w")
        .tensor("FloatStorage", "5", 2, 0, &[2], &[1])
        .end_dict();
    check(
        "nostorage.bin",
        &zip_stored(&[("archive/data.pkl", &p.0)]),
        "`archive/data/5` is not in the zip",
    );
    let mut p = Pickle::new(2);
    p.begin_dict()
        .str("w")
        .tensor("FloatStorage", "0", 2, 1, &[2], &[1])
        .end_dict();
    let zip = zip_stored(&[
        ("archive/data.pkl", &p.0),
        ("archive/data/0", &f32_bytes(&[1.0, 2.0])),
    ]);
    check("paststorage.bin", &zip, "run past its 8-byte storage");
    let mut p = Pickle::new(2);
    p.begin_dict()
        .str("w")
        .tensor("ComplexFloatStorage", "0", 2, 0, &[2], &[1])
        .end_dict();
    check(
        "complex.bin",
        &zip_stored(&[("archive/data.pkl", &p.0)]),
        "`torch.ComplexFloatStorage`",
    );
    // A compressed (deflate) entry: method 8 in both headers.
    let mut zip = sample_checkpoint();
    let cd = find(&zip, b"PK\x01\x02");
    zip[cd + 10] = 8;
    check("deflate.bin", &zip, "compressed (method 8)");
    // Cut before the end record, and a directory claiming 65535 entries.
    let good = sample_checkpoint();
    check(
        "cut.bin",
        &good[..good.len() - 10],
        "end-of-central-directory",
    );
    let mut zip = sample_checkpoint();
    let eocd = find(&zip, b"PK\x05\x06");
    zip[eocd + 10] = 0xff;
    zip[eocd + 11] = 0xff;
    check("entries.bin", &zip, "65535 entries cannot fit");
    let mut zip = sample_checkpoint();
    zip[eocd + 16..eocd + 20].copy_from_slice(&u32::MAX.to_le_bytes());
    check("cdoffset.bin", &zip, "central directory");
    check(
        "legacy.bin",
        &[0x80, 2, b'}', b'.'],
        "legacy (non-zip) PyTorch pickle",
    );
    check("random.pt", b"hello world", "not a PyTorch zip checkpoint");
    check("unknown.xyz", b"hello world", "unknown checkpoint format");
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn bad_hub_index() {
    let dir = std::env::temp_dir().join(format!("glassbox-bad-index-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("{\"weight_map\": ", "malformed JSON"),
        ("{\"weights\": {}}", "missing `weight_map`"),
        (
            "{\"weight_map\": {\"a\": \"../x.safetensors\"}}",
            "leaves the directory",
        ),
    ];
    for (index, fragment) in cases {
        std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
        let msg = Checkpoint::open(&dir).err().unwrap().to_string();
        assert!(
            msg.contains("model.safetensors.index.json") && msg.contains(fragment),
            "{msg}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
