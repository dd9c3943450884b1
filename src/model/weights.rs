//! Reading a safetensors checkpoint: memory-mapped, tensors fetched by name with their shape
//! checked, converted to f32 (the CPU reference computes in f32 whatever the storage dtype).

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// A memory-mapped safetensors file. The header is validated once, on open.
pub struct Weights {
    path: PathBuf,
    mmap: Mmap,
}

impl Weights {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the cache files are written once (temp file + rename) and never modified in
        // place, so the mapping cannot change under us.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        SafeTensors::deserialize(&mmap)
            .map_err(|e| Error::model(path, format!("not a valid safetensors file: {e}")))?;
        Ok(Weights {
            path: path.to_path_buf(),
            mmap,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tensors(&self) -> SafeTensors<'_> {
        // Validated in `open`; the mapping is immutable.
        SafeTensors::deserialize(&self.mmap).expect("safetensors header validated on open")
    }

    pub fn names(&self) -> Vec<String> {
        self.tensors()
            .names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors().tensor(name).is_ok()
    }

    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let st = self.tensors();
        let t = st
            .tensor(name)
            .map_err(|_| Error::model(&self.path, format!("missing tensor '{name}'")))?;
        Ok(t.shape().to_vec())
    }

    /// The tensor `name` as f32, checking that its shape is `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let st = self.tensors();
        let t = st
            .tensor(name)
            .map_err(|_| Error::model(&self.path, format!("missing tensor '{name}'")))?;
        if t.shape() != shape {
            return Err(Error::model(
                &self.path,
                format!(
                    "tensor '{name}' has shape {:?}, config says {:?}",
                    t.shape(),
                    shape
                ),
            ));
        }
        let bytes = t.data();
        let out = match t.dtype() {
            Dtype::F32 => le_f32s(bytes),
            Dtype::F16 => le_f16s(bytes),
            Dtype::BF16 => le_bf16s(bytes),
            other => {
                return Err(Error::model(
                    &self.path,
                    format!("tensor '{name}' has unsupported dtype {other:?}"),
                ))
            }
        };
        Ok(out)
    }
}

/// Little-endian f32 values.
pub(crate) fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Little-endian IEEE half-precision values, as f32.
pub(crate) fn le_f16s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

/// Little-endian bfloat16 values, as f32.
pub(crate) fn le_bf16s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}
