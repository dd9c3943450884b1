//! Reading a safetensors checkpoint: memory-mapped, tensors fetched by name with their shape
//! checked, converted to f32 (the CPU reference computes in f32 whatever the storage dtype).

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// A memory-mapped safetensors file. The header is parsed and validated once, on open (a
/// model's few hundred lookups then cost a hash each, not a parse of the JSON header each).
pub struct Weights {
    path: PathBuf,
    mmap: Mmap,
    /// Where the tensors' bytes start in the file (after the length and the JSON header).
    data_start: usize,
    metadata: Metadata,
}

impl Weights {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the cache files are written once (temp file + rename) and never modified in
        // place, so the mapping cannot change under us.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        // `read_metadata` checks that the tensors' byte ranges tile the rest of the file.
        let (header_len, metadata) = SafeTensors::read_metadata(&mmap)
            .map_err(|e| Error::model(path, format!("not a valid safetensors file: {e}")))?;
        Ok(Weights {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + header_len,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor `name`'s entry in the header.
    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.metadata
            .info(name)
            .ok_or_else(|| Error::model(&self.path, format!("missing tensor '{name}'")))
    }

    /// Tensor names, in file order.
    pub fn names(&self) -> Vec<String> {
        self.metadata.offset_keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.metadata.info(name).is_some()
    }

    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.info(name)?.shape.clone())
    }

    /// The tensor `name` as f32, checking that its shape is `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.info(name)?;
        if t.shape != shape {
            return Err(Error::model(
                &self.path,
                format!(
                    "tensor '{name}' has shape {:?}, config says {:?}",
                    t.shape, shape
                ),
            ));
        }
        let (start, end) = t.data_offsets;
        let bytes = &self.mmap[self.data_start + start..self.data_start + end];
        let out = match t.dtype {
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

/// Little-endian IEEE half-precision values, as f32, converted 8 per instruction (F16C) by
/// `half`'s slice conversion: straight from `bytes` where they are aligned for `f16` (as a
/// safetensors file's tensors are), else through an aligned block at a time.
pub(crate) fn le_f16s(bytes: &[u8]) -> Vec<f32> {
    use half::slice::HalfFloatSliceExt;
    let mut out = vec![0.0f32; bytes.len() / 2];
    // SAFETY: `f16` is a `u16` (repr(transparent)), for which every bit pattern is valid.
    let (head, halves, tail) = unsafe { bytes.align_to::<half::f16>() };
    if cfg!(target_endian = "little") && head.is_empty() && tail.is_empty() {
        halves.convert_to_f32_slice(&mut out);
        return out;
    }
    const BLOCK: usize = 256;
    let mut halves = [half::f16::ZERO; BLOCK];
    for (src, dst) in bytes.chunks(2 * BLOCK).zip(out.chunks_mut(BLOCK)) {
        let halves = &mut halves[..dst.len()];
        for (h, b) in halves.iter_mut().zip(src.chunks_exact(2)) {
            *h = half::f16::from_le_bytes([b[0], b[1]]);
        }
        halves.convert_to_f32_slice(dst);
    }
    out
}

/// Little-endian bfloat16 values, as f32.
pub(crate) fn le_bf16s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked conversion against `half`'s one-value `to_f32`, bit for bit, on every f16
    /// bit pattern (subnormals, infinities and NaNs included), and on lengths around the block.
    #[test]
    fn le_f16s_converts_every_half_as_to_f32_does() {
        let all: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        // From an even and an odd address: the aligned cast and the blocked copy.
        let shifted: Vec<u8> = [0].iter().chain(&all).copied().collect();
        for (len, at) in [0, 1, 255, 256, 257, 513, 1 << 16]
            .into_iter()
            .flat_map(|n| [(n, 0), (n, 1)])
        {
            let bytes = if at == 0 {
                &all[..2 * len]
            } else {
                &shifted[1..1 + 2 * len]
            };
            let want: Vec<u32> = bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32().to_bits())
                .collect();
            let got: Vec<u32> = le_f16s(bytes).iter().map(|x| x.to_bits()).collect();
            assert_eq!(got, want, "{len} values at offset {at}");
        }
    }
}
