//! Tensors handed to NumPy without a copy, and NumPy arrays read into tensors.
//!
//! [`Held`] keeps a candle tensor alive and describes its memory with NumPy's array interface
//! (`__array_interface__`: address, shape, strides in bytes, element type), so that
//! `numpy.asarray(held)` is a view of the tensor's own storage, and the view keeps `held` (and
//! so the tensor) alive as its base. Strided tensors (a transposed or narrowed view) are shared
//! as they are. Only bf16, which NumPy has no type for, is widened to f32 (a copy).

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

#[pyclass(module = "glassbox._native", frozen)]
pub struct Held {
    tensor: Tensor,
    /// The tensor is a copy made for NumPy (bf16 widened): writes to the view reach nothing else.
    #[pyo3(get)]
    copied: bool,
}

impl Held {
    /// Wraps `t` (any CPU tensor) for NumPy.
    pub fn new(t: &Tensor) -> candle_core::Result<Held> {
        let t = t.to_device(&Device::Cpu)?;
        Ok(match t.dtype() {
            DType::BF16 => Held {
                tensor: t.to_dtype(DType::F32)?,
                copied: true,
            },
            _ => Held {
                tensor: t,
                copied: false,
            },
        })
    }
}

impl Held {
    /// A copy of `t`'s values for NumPy, marked `copied`: what a hook writes to it comes back
    /// as a replacement, and the tensor itself (and the graph it belongs to) is untouched.
    pub fn copy_of(t: &Tensor) -> candle_core::Result<Held> {
        let t = t.detach().to_device(&Device::Cpu)?;
        let tensor = match t.dtype() {
            DType::BF16 => t.to_dtype(DType::F32)?,
            _ => t.copy()?,
        };
        Ok(Held {
            tensor,
            copied: true,
        })
    }
}

#[pymethods]
impl Held {
    /// NumPy's array interface (version 3): the tensor's memory, shared.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (storage, layout) = self.tensor.storage_and_layout();
        let (address, typestr, size) = match &*storage {
            Storage::Cpu(cpu) => match cpu {
                CpuStorage::F32(v) => (v.as_ptr() as usize, "<f4", 4),
                CpuStorage::F16(v) => (v.as_ptr() as usize, "<f2", 2),
                CpuStorage::F64(v) => (v.as_ptr() as usize, "<f8", 8),
                CpuStorage::U32(v) => (v.as_ptr() as usize, "<u4", 4),
                CpuStorage::I64(v) => (v.as_ptr() as usize, "<i8", 8),
                CpuStorage::U8(v) => (v.as_ptr() as usize, "|u1", 1),
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "a {:?} tensor has no NumPy type",
                        self.tensor.dtype()
                    )))
                }
            },
            _ => return Err(PyValueError::new_err("the tensor is not in CPU memory")),
        };
        let shape = PyTuple::new(py, layout.dims())?;
        let strides = PyTuple::new(py, layout.stride().iter().map(|s| s * size))?;
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("shape", shape)?;
        d.set_item("strides", strides)?;
        d.set_item("typestr", typestr)?;
        // (address, read-only): writable, as TransformerLens' tensors are.
        d.set_item("data", (address + layout.start_offset() * size, false))?;
        Ok(d)
    }
}

/// A tensor of `dtype` from an f32 buffer (a C-contiguous NumPy array).
pub fn tensor_from_f32(py: Python<'_>, obj: &Bound<'_, PyAny>, dtype: DType) -> PyResult<Tensor> {
    let buf = PyBuffer::<f32>::get(obj)?;
    if !buf.is_c_contiguous() {
        return Err(PyValueError::new_err(
            "expected a C-contiguous float32 array",
        ));
    }
    let shape = buf.shape().to_vec();
    let data = buf.to_vec(py)?;
    let t = Tensor::from_vec(data, shape, &Device::Cpu).map_err(to_value_error)?;
    t.to_dtype(dtype).map_err(to_value_error)
}

/// Token ids [batch, pos] from a C-contiguous uint32 buffer.
pub fn ids_from_u32(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let buf = PyBuffer::<u32>::get(obj)?;
    if !buf.is_c_contiguous() || buf.dimensions() != 2 {
        return Err(PyValueError::new_err(
            "token ids must be a C-contiguous uint32 array [batch, pos]",
        ));
    }
    let shape = buf.shape().to_vec();
    Tensor::from_vec(buf.to_vec(py)?, shape, &Device::Cpu).map_err(to_value_error)
}

fn to_value_error(e: candle_core::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}
