//! Builders for hand-written torch checkpoints: pickle opcodes as torch emits them, and a
//! stored (uncompressed) zip like `torch.save` writes. No Python needed.
#![allow(dead_code)]

/// A pickle program, built opcode by opcode.
#[derive(Default)]
pub struct Pickle(pub Vec<u8>);

impl Pickle {
    pub fn new(protocol: u8) -> Self {
        Pickle(vec![0x80, protocol])
    }
    pub fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.0.push(b'c');
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self
    }
    pub fn stack_global(&mut self, module: &str, name: &str) -> &mut Self {
        self.short_str(module).short_str(name).op(0x93)
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn short_str(&mut self, s: &str) -> &mut Self {
        self.0.push(0x8c);
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn int(&mut self, v: i64) -> &mut Self {
        if (0..256).contains(&v) {
            self.0.extend_from_slice(&[b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.0.push(b'M');
            self.0.extend_from_slice(&(v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.0.push(b'J');
            self.0.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            self.0.extend_from_slice(&[0x8a, 8]);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        self
    }
    pub fn put(&mut self, k: u8) -> &mut Self {
        self.0.extend_from_slice(&[b'q', k]);
        self
    }
    pub fn get(&mut self, k: u8) -> &mut Self {
        self.0.extend_from_slice(&[b'h', k]);
        self
    }
    pub fn tuple_of_ints(&mut self, v: &[i64]) -> &mut Self {
        self.op(b'(');
        for &x in v {
            self.int(x);
        }
        self.op(b't')
    }
    /// `_rebuild_tensor_v2(persistent(('storage', torch.<storage>, key, 'cpu', numel)),
    /// offset, size, stride, False, OrderedDict())`, as torch pickles a tensor.
    pub fn tensor(
        &mut self,
        storage: &str,
        key: &str,
        numel: i64,
        offset: i64,
        size: &[i64],
        stride: &[i64],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        self.op(b'(')
            .str("storage")
            .global("torch", storage)
            .str(key)
            .str("cpu")
            .int(numel)
            .op(b't');
        self.op(b'Q')
            .int(offset)
            .tuple_of_ints(size)
            .tuple_of_ints(stride)
            .op(0x89);
        self.global("collections", "OrderedDict").op(b')').op(b'R');
        self.op(b't').op(b'R')
    }
    /// Starts `OrderedDict()` and a MARK for SETITEMS.
    pub fn begin_dict(&mut self) -> &mut Self {
        self.global("collections", "OrderedDict")
            .put(0)
            .op(b')')
            .op(b'R')
            .put(1)
            .op(b'(')
    }
    pub fn end_dict(&mut self) -> &mut Self {
        self.op(b'u').op(b'.')
    }
}

/// A zip of stored entries with a central directory, as torch.save lays it out (CRCs are
/// left zero: the reader does not check them).
pub fn zip_stored(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(entries, false)
}

/// The same in zip64 form, as torch writes checkpoints over 4 GiB: every size and offset in
/// the central directory is 0xFFFFFFFF with the real value in a zip64 extra field, and a
/// zip64 end record precedes the classic one.
pub fn zip64_stored(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(entries, true)
}

fn zip_with(entries: &[(&str, &[u8])], zip64: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time, date
        out.extend_from_slice(&0u32.to_le_bytes()); // crc
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // made, needed, flags, method, time, date
        central.extend_from_slice(&0u32.to_le_bytes());
        let small = |v: u32| if zip64 { u32::MAX } else { v };
        central.extend_from_slice(&small(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&small(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&(if zip64 { 28u16 } else { 0 }).to_le_bytes()); // extra length
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // comment, disk, int attr, ext attr
        central.extend_from_slice(&small(offset).to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        if zip64 {
            central.extend_from_slice(&1u16.to_le_bytes());
            central.extend_from_slice(&24u16.to_le_bytes());
            central.extend_from_slice(&(data.len() as u64).to_le_bytes());
            central.extend_from_slice(&(data.len() as u64).to_le_bytes());
            central.extend_from_slice(&(offset as u64).to_le_bytes());
        }
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    if zip64 {
        let record = out.len() as u64;
        out.extend_from_slice(b"PK\x06\x06");
        out.extend_from_slice(&44u64.to_le_bytes());
        out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // made, needed, disks
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        out.extend_from_slice(&(central.len() as u64).to_le_bytes());
        out.extend_from_slice(&(cd_offset as u64).to_le_bytes());
        out.extend_from_slice(b"PK\x06\x07");
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&record.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        out.extend_from_slice(&[0xff; 8]);
        out.extend_from_slice(&0u16.to_le_bytes());
        return out;
    }
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A small valid checkpoint: `w` F32 [2, 3] and `b` F16 [3] in separate storages, and `tail`,
/// a view of the last 3 floats of `w`'s storage.
pub fn sample_checkpoint() -> Vec<u8> {
    sample_with(zip_stored)
}

pub fn sample_checkpoint_zip64() -> Vec<u8> {
    sample_with(zip64_stored)
}

fn sample_with(zip: fn(&[(&str, &[u8])]) -> Vec<u8>) -> Vec<u8> {
    let mut p = Pickle::new(2);
    p.begin_dict();
    p.str("w")
        .tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1]);
    p.str("b").tensor("HalfStorage", "1", 3, 0, &[3], &[1]);
    p.str("tail").tensor("FloatStorage", "0", 6, 3, &[3], &[1]);
    p.end_dict();
    let w = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b: Vec<u8> = [0.5f32, -1.0, 2.0]
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    zip(&[
        ("archive/data.pkl", &p.0),
        ("archive/byteorder", b"little"),
        ("archive/data/0", &w),
        ("archive/data/1", &b),
        ("archive/version", b"3\n"),
    ])
}
