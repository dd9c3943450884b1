//! Weight matrices on the device: storage types (`WeightType`), the packings the matmul and
//! embedding kernels read (`pack_f16`, `pack_i8`), an uploaded matrix (`GpuMatrix`) and the view
//! the record functions take (`MatrixRef`).

use crate::error::{Error, Result};
use crate::model::quant::QuantizedMatrix;

use super::super::context::GpuContext;
use super::need;

/// Storage type of `linear` weights; arithmetic is f32 either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    F32,
    /// IEEE half, two per u32 (element 2i in the low 16 bits), unpacked with
    /// `unpack2x16float`: works on every adapter, `shader-f16` not required.
    F16,
    /// Row-scaled int8 (`crate::model::quant`, CTranslate2's int8 layout): four two's-complement
    /// bytes per u32 (element 4i in the low byte, `pack_i8`), unpacked with `unpack4xI8`, and an
    /// f32 scale per row in a second buffer. The kernels sum `x · q` in f32 and multiply by the
    /// row's scale once, in the epilogue (the scale of output column n is constant along K).
    Int8,
}

impl WeightType {
    /// Bytes per stored weight (scales not counted).
    pub(crate) fn bytes(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::F16 => 2,
            WeightType::Int8 => 1,
        }
    }

    /// "f32", "f16" or "int8" (as `--dtype` spells them).
    pub fn name(self) -> &'static str {
        match self {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::Int8 => "int8",
        }
    }
}

/// `[rows, k]` f32 weights (k even) as f16 pairs packed in u32, the layout of `WeightType::F16`
/// (round to nearest even).
pub fn pack_f16(w: &[f32]) -> Vec<u32> {
    w.chunks(2)
        .map(|p| {
            let lo = half::f16::from_f32(p[0]).to_bits() as u32;
            let hi = p
                .get(1)
                .map_or(0, |&v| half::f16::from_f32(v).to_bits() as u32);
            lo | (hi << 16)
        })
        .collect()
}

/// int8 values four per u32 (element 4i in the low byte; a short tail is zero-filled), the
/// layout of `WeightType::Int8` and what WGSL's `unpack4xI8` reads.
pub fn pack_i8(q: &[i8]) -> Vec<u32> {
    q.chunks(4)
        .map(|b| {
            b.iter()
                .enumerate()
                .fold(0u32, |acc, (i, &v)| acc | ((v as u8 as u32) << (8 * i)))
        })
        .collect()
}

/// A `[rows, cols]` weight matrix on the device in one storage type: `cols` is the source's
/// column count rounded up to a multiple of 4 (zero padding, which adds nothing to a dot
/// product), as the matmul kernels read rows in groups of four. For `Int8`, `scale` holds the
/// f32 scale of each row.
pub struct GpuMatrix {
    pub data: wgpu::Buffer,
    pub scale: Option<wgpu::Buffer>,
    pub ty: WeightType,
    pub rows: usize,
    pub cols: usize,
}

impl GpuMatrix {
    /// Converts `w` (`rows x cols`, row-major f32) to `ty` and uploads it; `Int8` quantizes with
    /// `QuantizedMatrix::quantize` (per-row absmax / 127), the quantizer the CPU path shares.
    pub fn upload(
        ctx: &GpuContext,
        label: &str,
        w: &[f32],
        rows: usize,
        cols: usize,
        ty: WeightType,
    ) -> Self {
        assert_eq!(w.len(), rows * cols, "{label}: data is not rows x cols");
        let padded = cols.next_multiple_of(4);
        // No copy when no padding is needed: the token embedding is tens of MB.
        let w: std::borrow::Cow<[f32]> = if padded == cols {
            w.into()
        } else {
            pad_cols(w, rows, cols).0.into()
        };
        let (data, scale) = match ty {
            WeightType::F32 => (ctx.upload(label, &w), None),
            WeightType::F16 => (ctx.upload(label, &pack_f16(&w)), None),
            WeightType::Int8 => {
                let q = QuantizedMatrix::quantize(&w, rows, padded);
                (
                    ctx.upload(label, &pack_i8(&q.q)),
                    Some(ctx.upload(label, &q.scale)),
                )
            }
        };
        GpuMatrix {
            data,
            scale,
            ty,
            rows,
            cols: padded,
        }
    }

    /// The view the record functions take.
    pub fn view(&self) -> MatrixRef<'_> {
        MatrixRef {
            data: &self.data,
            scale: self.scale.as_ref(),
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Device bytes of the values and scales.
    pub fn device_bytes(&self) -> u64 {
        self.data.size() + self.scale.as_ref().map_or(0, |s| s.size())
    }
}

/// A `[rows, cols]` weight matrix as `linear_typed` and `embed_batched` read it (cols a
/// multiple of 4 for `linear_typed`): storage buffer, type, and for `Int8` the row scales.
#[derive(Clone, Copy, Debug)]
pub struct MatrixRef<'a> {
    pub data: &'a wgpu::Buffer,
    pub scale: Option<&'a wgpu::Buffer>,
    pub ty: WeightType,
    pub rows: usize,
    pub cols: usize,
}

impl<'a> MatrixRef<'a> {
    /// An f32 matrix in `data`.
    pub fn f32(data: &'a wgpu::Buffer, rows: usize, cols: usize) -> Self {
        MatrixRef {
            data,
            scale: None,
            ty: WeightType::F32,
            rows,
            cols,
        }
    }

    /// The row scales of an `Int8` matrix (checked to hold `rows` values), `None` otherwise.
    pub(super) fn scales(&self, what: &str) -> Result<Option<&'a wgpu::Buffer>> {
        match (self.ty, self.scale) {
            (WeightType::Int8, Some(s)) => {
                need(s, self.rows, what)?;
                Ok(Some(s))
            }
            (WeightType::Int8, None) => Err(Error::Device(format!("{what}: int8 without scales"))),
            _ => Ok(None),
        }
    }

    /// Bytes of one stored row.
    pub(super) fn row_bytes(&self) -> usize {
        self.cols * self.ty.bytes()
    }
}

/// Copies `[rows, cols]` into `[rows, cols.next_multiple_of(4)]` with zero padding.
pub fn pad_cols(x: &[f32], rows: usize, cols: usize) -> (Vec<f32>, usize) {
    let padded = cols.next_multiple_of(4);
    if padded == cols {
        return (x[..rows * cols].to_vec(), cols);
    }
    let mut out = vec![0.0; rows * padded];
    for r in 0..rows {
        out[r * padded..r * padded + cols].copy_from_slice(&x[r * cols..(r + 1) * cols]);
    }
    (out, padded)
}
