//! The pieces of a SentencePiece model file (`tokenizer.model`, a `ModelProto` in protocol
//! buffers), as llama.cpp's converter reads them for a `tokenizer.ggml.model = "llama"`
//! vocabulary: each piece's text, score and kind, in id order.
//!
//! Only field 1 of the model (`repeated SentencePiece pieces`) is read; the trainer and
//! normalizer specs and unknown fields are skipped by their wire types. Every length comes
//! from the file and is checked against the bytes left, so a hostile file costs at most its
//! own size.

use std::path::Path;

use crate::{FormatError, Result};

/// A piece's kind, numbered as in `sentencepiece_model.proto` (and as llama.cpp's token
/// types, which copy them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceKind {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl PieceKind {
    fn from_proto(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub text: String,
    pub score: f32,
    pub kind: PieceKind,
}

/// Reads the pieces of the SentencePiece model at `path`.
pub fn read_pieces(path: &Path) -> Result<Vec<Piece>> {
    let bytes =
        crate::input::read_bytes(path, "SentencePiece model", crate::input::limit::TOKENIZER)?;
    parse_pieces(&bytes)
        .map_err(|e| FormatError::invalid(path, format!("not a SentencePiece model: {e}")))
}

/// The pieces of a serialized `ModelProto`.
pub fn parse_pieces(bytes: &[u8]) -> std::result::Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut r = Reader(bytes);
    while !r.0.is_empty() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, WireType::Len) => pieces.push(piece(r.len_delimited()?)?),
            _ => r.skip(wire)?,
        }
    }
    if pieces.is_empty() {
        return Err("no pieces".into());
    }
    Ok(pieces)
}

fn piece(bytes: &[u8]) -> std::result::Result<Piece, String> {
    // proto2 defaults: an absent score is 0, an absent type NORMAL
    let (mut text, mut score, mut kind) = (None, 0.0, PieceKind::Normal);
    let mut r = Reader(bytes);
    while !r.0.is_empty() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, WireType::Len) => {
                let raw = r.len_delimited()?;
                text = Some(
                    String::from_utf8(raw.to_vec())
                        .map_err(|_| "a piece is not UTF-8".to_string())?,
                );
            }
            (2, WireType::Fixed32) => score = f32::from_le_bytes(r.array()?),
            (3, WireType::Varint) => {
                let v = r.varint()?;
                kind = PieceKind::from_proto(v).ok_or(format!("unknown piece type {v}"))?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(Piece {
        text: text.ok_or("a piece without text")?,
        score,
        kind,
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!("a field of {n} bytes runs past the end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| format!("a field of {N} bytes runs past the end"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let [byte] = self.array()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn key(&mut self) -> std::result::Result<(u64, WireType), String> {
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            other => {
                return Err(format!(
                    "wire type {other} (groups are not used by this format)"
                ))
            }
        };
        Ok((key >> 3, wire))
    }

    fn len_delimited(&mut self) -> std::result::Result<&'a [u8], String> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| "a length past the address space")?)
    }

    fn skip(&mut self, wire: WireType) -> std::result::Result<(), String> {
        match wire {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
            WireType::Len => self.len_delimited().map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field_len(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn encoded_piece(text: &str, score: Option<f32>, kind: Option<u64>) -> Vec<u8> {
        let mut p = Vec::new();
        field_len(1, text.as_bytes(), &mut p);
        if let Some(s) = score {
            varint(2 << 3 | 5, &mut p);
            p.extend_from_slice(&s.to_le_bytes());
        }
        if let Some(k) = kind {
            varint(3 << 3, &mut p);
            varint(k, &mut p);
        }
        p
    }

    #[test]
    fn pieces_are_read_in_order_with_proto_defaults_and_other_fields_skipped() {
        let mut model = Vec::new();
        field_len(1, &encoded_piece("<unk>", Some(0.0), Some(2)), &mut model);
        // a trainer spec between pieces, and a varint field
        field_len(2, b"\x08\x01\x10\x96\x01", &mut model);
        varint(7 << 3, &mut model);
        varint(300, &mut model);
        field_len(
            1,
            &encoded_piece("\u{2581}the", Some(-3.5), None),
            &mut model,
        );
        field_len(1, &encoded_piece("<0x0A>", None, Some(6)), &mut model);
        let pieces = parse_pieces(&model).unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece {
                    text: "<unk>".into(),
                    score: 0.0,
                    kind: PieceKind::Unknown
                },
                Piece {
                    text: "\u{2581}the".into(),
                    score: -3.5,
                    kind: PieceKind::Normal
                },
                Piece {
                    text: "<0x0A>".into(),
                    score: 0.0,
                    kind: PieceKind::Byte
                },
            ]
        );
    }

    #[test]
    fn truncated_and_malformed_models_are_errors() {
        let mut model = Vec::new();
        field_len(1, &encoded_piece("a", Some(1.0), Some(1)), &mut model);
        for cut in 0..model.len() {
            assert!(parse_pieces(&model[..cut]).is_err(), "cut at {cut}");
        }
        // a length far past the end, a group wire type, an unknown kind, bad UTF-8
        assert!(parse_pieces(b"\x0a\xff\xff\xff\xff\x0f").is_err());
        assert!(parse_pieces(b"\x0b").is_err());
        let mut bad = Vec::new();
        field_len(1, &encoded_piece("a", None, Some(9)), &mut bad);
        assert!(parse_pieces(&bad).is_err());
        let mut bad = Vec::new();
        field_len(1, &[0x0a, 1, 0xff], &mut bad);
        assert!(parse_pieces(&bad).is_err());
        assert!(parse_pieces(&[0x80; 11]).is_err());
    }
}
