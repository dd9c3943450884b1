//! Int8 weight storage (`--dtype int8`): each row of a `[n_out, n_in]` matrix scaled by its own
//! absolute maximum, as CTranslate2 quantizes its int8 checkpoints. One quantizer serves both
//! backends, so the CPU and GPU int8 paths start from the same integers.
//!
//! Row `r` holds `q[r, c] = round(w[r, c] / scale[r])` with `scale[r] = max_c |w[r, c]| / 127`,
//! rounding half to even, so `w ≈ q · scale` with an error of at most `scale / 2` per element.
//! An all-zero row gets scale 0 (and zeros), never a division by zero.

/// A row-scaled int8 matrix: `w[r, c] ≈ q[r * cols + c] as f32 * scale[r]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMatrix {
    pub q: Vec<i8>,
    pub scale: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl QuantizedMatrix {
    /// Quantize `w` (`rows x cols`, row-major) row by row.
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols, "quantize: matrix is not rows x cols");
        use rayon::prelude::*;
        let mut q = vec![0i8; rows * cols];
        let mut scale = vec![0.0f32; rows];
        // Rows in parallel: model load quantizes every matrix of the checkpoint.
        w.par_chunks_exact(cols.max(1))
            .zip(q.par_chunks_exact_mut(cols.max(1)))
            .zip(scale.par_iter_mut())
            .with_min_len(64)
            .for_each(|((src, dst), s)| *s = quantize_row(src, dst));
        QuantizedMatrix {
            q,
            scale,
            rows,
            cols,
        }
    }

    /// Row `r` back in f32 (`out.len() == cols`): embedding lookups of a quantized table.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let s = self.scale[r];
        for (o, &v) in out
            .iter_mut()
            .zip(&self.q[r * self.cols..(r + 1) * self.cols])
        {
            *o = v as f32 * s;
        }
    }

    /// The whole matrix back in f32 (tests and CPU twins of the GPU kernels).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.dequantize_row(r, row);
        }
        out
    }

    /// Bytes held (int8 values and f32 scales).
    pub fn bytes(&self) -> usize {
        self.q.len() + 4 * self.scale.len()
    }
}

/// Quantize one row into `dst`; returns its scale (`max |x| / 127`, 0 for an all-zero row).
/// Activations of the CPU int8 matrix products use the same rule per row.
///
/// Compiled for AVX-512 and AVX2 as well as the build's baseline (SSE2), the widest the CPU
/// has taken: every step is exact or one IEEE operation per element, so all give the same
/// integers. Model load quantizes every matrix: on Zen 5 that took 43 ms of CPU time for
/// tiny.en with the SSE2 build and takes 12 ms with the AVX-512 one (`perf record` of a
/// `transcribe`).
pub fn quantize_row(src: &[f32], dst: &mut [i8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { quantize_row_avx512(src, dst) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { quantize_row_avx2(src, dst) };
        }
    }
    quantize_row_with(src, dst, |q| q as i8)
}

/// [`quantize_row`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_row_avx512(src: &[f32], dst: &mut [i8]) -> f32 {
    quantize_row_with(src, dst, |q| q as i8)
}

/// [`quantize_row`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2(src: &[f32], dst: &mut [i8]) -> f32 {
    quantize_row_with(src, dst, |q| q as i8)
}

/// [`quantize_row`] storing each quantized value `q` (in -127..=127) as `store(q)`: the CPU
/// int8 kernels keep activations as `u8` bits. Written so the compiler vectorises it: 16
/// independent maxima (max is exact, so the order does not matter), then a branch-free rounding.
#[inline(always)]
pub fn quantize_row_with<T>(src: &[f32], dst: &mut [T], store: impl Fn(i32) -> T) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = src.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..16 {
            lanes[l] = lanes[l].max(c[l].abs());
        }
    }
    let amax = tail
        .iter()
        .fold(lanes.iter().fold(0.0f32, |a, &b| a.max(b)), |a, &b| {
            a.max(b.abs())
        });
    if amax == 0.0 || !amax.is_finite() {
        // Zeros (NaN scale for non-finite input, which then shows).
        for d in dst.iter_mut() {
            *d = store(0);
        }
        return if amax.is_finite() { 0.0 } else { f32::NAN };
    }
    let inv = 127.0 / amax;
    // Round half to even by adding 1.5 · 2²³, exact for |y| < 2²² (what `round_ties_even`
    // gives, without its libm call per element): the sum lies in [2²³, 2²⁴), where the ulp is
    // 1, so its mantissa bits hold the rounded integer plus 2²² (MAGIC's bits less 2²³'s).
    // Reading it from the bits, not with `as i32` (saturating, which the compiler turns into
    // a scalar conversion per element), keeps the loop vectorised. |v · inv| <= 127 up to the
    // product's rounding; the clamp keeps it in range. A NaN element quantizes to 0.
    const MAGIC: f32 = 12_582_912.0;
    const MAGIC_BITS: i32 = 0x4B40_0000;
    for (d, &v) in dst.iter_mut().zip(src) {
        let r = (v * inv).clamp(-127.0, 127.0) + MAGIC;
        *d = store(if r.is_nan() {
            0
        } else {
            r.to_bits() as i32 - MAGIC_BITS
        });
    }
    amax / 127.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_within_half_a_step() {
        let (rows, cols) = (5, 37);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1 + i / cols) as f32)
            .collect();
        let m = QuantizedMatrix::quantize(&w, rows, cols);
        let back = m.dequantize();
        for r in 0..rows {
            let row = &w[r * cols..(r + 1) * cols];
            let amax = row.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
            assert!((m.scale[r] - amax / 127.0).abs() <= f32::EPSILON * amax);
            for c in 0..cols {
                let err = (back[r * cols + c] - row[c]).abs();
                assert!(err <= m.scale[r] * 0.5 + 1e-6, "r{r} c{c}: {err}");
            }
            // The largest element maps to ±127 exactly.
            assert!(m.q[r * cols..(r + 1) * cols]
                .iter()
                .any(|&q| q == 127 || q == -127));
        }
    }

    /// Each build of [`quantize_row`] this CPU runs gives the baseline's integers and scale, on
    /// rows of odd lengths with values of every size, ties (±0.5 steps) and ±127 included.
    #[test]
    fn every_instruction_set_quantizes_alike() {
        for cols in [1, 15, 16, 17, 63, 384, 1537] {
            let row: Vec<f32> = (0..cols)
                .map(|i| match i % 7 {
                    0 => 1.0,
                    1 => -0.5 / 127.0 * (i as f32 % 5.0),
                    _ => ((i * 7919 % 2001) as f32 / 1000.0 - 1.0) * 1.3f32.powi((i % 11) as i32),
                })
                .collect();
            // The rule written plainly: `round_ties_even` of each value times 127 / max |x|.
            let amax = row.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
            let want_scale = amax / 127.0;
            let want: Vec<i8> = row
                .iter()
                .map(|&v| (v * (127.0 / amax)).clamp(-127.0, 127.0))
                .map(|y| y.round_ties_even() as i8)
                .collect();
            let mut got = vec![0i8; cols];
            assert_eq!(quantize_row(&row, &mut got).to_bits(), want_scale.to_bits());
            assert_eq!(got, want, "{cols} columns");
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") {
                // SAFETY: checked just above.
                let scale = unsafe { quantize_row_avx2(&row, &mut got) };
                assert_eq!((scale.to_bits(), &got), (want_scale.to_bits(), &want));
            }
        }
    }

    /// A NaN element quantizes to 0 (the maximum skips it); its neighbours as without it.
    #[test]
    fn nan_element_quantizes_to_zero() {
        let mut q = [1i8; 3];
        let scale = quantize_row(&[f32::NAN, 2.0, -1.0], &mut q);
        assert_eq!((scale, q), (2.0 / 127.0, [0, 127, -64]));
    }

    #[test]
    fn zero_row_has_zero_scale() {
        let m = QuantizedMatrix::quantize(&[0.0; 8], 2, 4);
        assert_eq!(m.scale, vec![0.0, 0.0]);
        assert!(m.q.iter().all(|&q| q == 0));
    }
}
