//! Memory-mapped readers for model checkpoints.
//!
//! Design: every reader parses only the header of a file and keeps the file memory-mapped, so
//! opening a checkpoint of any size costs memory proportional to its *header*, never to its
//! weights. Tensor bytes are touched only when a caller asks for a tensor. Every length, count
//! and offset read from a file is checked against the file's real size before it is used to
//! allocate or index: a hostile header yields [`FormatError::Invalid`], never a panic or an
//! allocation sized by the header.
//!
//! [`Checkpoint::open`] is the single entry point: a Hub snapshot directory, a `.safetensors`
//! file, a `.gguf` file, or a PyTorch pickle checkpoint.

mod bytes;
mod checkpoint;
mod convert;
pub mod diff;
mod dtype;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gguf;
pub mod gguf_convert;
pub mod gguf_names;
pub mod gguf_quantize;
pub mod gguf_write;
pub mod hf_config;
pub mod input;
pub mod output;
pub mod peft;
pub mod pickle;
pub mod quant;
pub mod report;
mod safetensors_file;
pub mod sentencepiece;
pub mod stats;
pub mod summary;
pub mod zip;

pub use bytes::{file_map_backing, MapBacking};
pub use checkpoint::{Checkpoint, CheckpointKind, TensorInfo};
pub use convert::to_f32;
pub use dtype::DType;
pub use error::{FormatError, Result};
pub use gguf::{GgufArray, GgufFile, GgufType, GgufValue};
pub use gguf_write::GgufWriter;
pub use pickle::TorchFile;
pub use safetensors_file::SafetensorsFile;
