//! Matrix multiply, `shaders/matmul.wgsl`: `linear` (`x · wᵀ + bias`, optional GELU) with
//! weights stored as f32, f16 or int8, on three kernels per storage type: `matmul_tiled`
//! (shared-memory tiles, real GPUs), `matmul_reg` (register blocking, CPU-type adapters) and
//! `gemv` (few rows).
//!
//! CPU twin: `backend/cpu/ops/matmul.rs` (`ops::linear`; int8 weights: `backend/cpu/int8.rs`).
//! Test: `tests/kernels_vs_cpu/matmul.rs`.

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::config::{MatmulTile, MatmulVariant};
use super::matrix::{MatrixRef, WeightType};
use super::op::{word, Op};
use super::{binding, groups, need, ranges, whole, Kernels};

super::wgsl_params! {
    /// One dispatch over a range of `n` weight rows (output columns `col0 ..`).
    MatmulParams in "matmul.wgsl" + "gelu.wgsl" {
        /// Rows of x / out.
        m: u32,
        /// Rows of w in this binding = columns written.
        n: u32,
        /// K / 4.
        k4: u32,
        /// Bit 0: add bias, bit 1: GELU epilogue.
        flags: u32,
        /// Row stride of out, in f32.
        out_stride: u32,
        /// First output column written.
        col0: u32,
    }
}

impl MatmulParams {
    /// The product of this dispatch's `n` output columns with weights of `weight_bytes` each.
    fn work(&self, weight_bytes: f64) -> Work {
        let (m, rows, k) = (self.m as f64, self.n as f64, 4.0 * self.k4 as f64);
        let bias = if self.flags & 1 != 0 { rows * 4.0 } else { 0.0 };
        Work::new(
            2.0 * m * rows * k,
            rows * k * weight_bytes + m * k * 4.0 + m * rows * 4.0 + bias,
        )
    }
}

/// The three matmul kernels compiled for one weight type.
pub(super) struct Pipelines {
    tiled: Kernel,
    reg: Kernel,
    gemv: Kernel,
}

/// What `shaders/matmul.wgsl` expects prepended for weights stored as `ty`: binding 1,
/// `wload(i)` (the i-th group of 4 weights along K, before any row scale) and `row_scaled(v, n)`
/// (the K-sum of output column n times its row's scale).
fn prelude(ty: WeightType) -> String {
    let unscaled = "fn row_scaled(v: f32, n: u32) -> f32 { return v; }\n";
    match ty {
        WeightType::F32 => format!(
            "@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;\n\
             fn wload(i: u32) -> vec4<f32> {{ return w[i]; }}\n{unscaled}"
        ),
        WeightType::F16 => format!(
            "@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>;\n\
             fn wload(i: u32) -> vec4<f32> {{\n\
             let u = w[i];\n\
             return vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y));\n}}\n{unscaled}"
        ),
        // Sign-extending unpack (naga emits bit-field extracts where the Int8 capability is
        // absent), exact conversion to f32 (|q| <= 127); the scale is applied once per output.
        WeightType::Int8 => "@group(0) @binding(1) var<storage, read> w: array<u32>;\n\
             @group(0) @binding(5) var<storage, read> w_scale: array<f32>;\n\
             fn wload(i: u32) -> vec4<f32> { return vec4<f32>(unpack4xI8(w[i])); }\n\
             fn row_scaled(v: f32, n: u32) -> f32 { return v * w_scale[n]; }\n"
            .to_string(),
    }
}

/// The matmul kernels for weights stored as `ty`.
pub(super) fn compile(b: &Builder<'_>, ty: WeightType) -> Pipelines {
    let c = b.config;
    let consts = |t: &MatmulTile| {
        [
            ("MM_WG_X", t.wg_x),
            ("MM_WG_Y", t.wg_y),
            ("MM_TM", t.tm),
            ("MM_TN", t.tn),
            ("MM_BK4", t.bk4),
            ("GV_LANES", c.gemv_lanes),
            ("GV_ROWS", c.gemv_rows),
            ("GV_BATCH", c.gemv_batch),
        ]
    };
    // f32 keeps the plain labels (profile names "matmul_reg", not "... (f32)").
    let (tiled, reg) = match ty {
        WeightType::F32 => ("matmul (tiled)", "matmul (register)"),
        WeightType::F16 => ("matmul f16 (tiled)", "matmul f16 (register)"),
        WeightType::Int8 => ("matmul int8 (tiled)", "matmul int8 (register)"),
    };
    let prelude = prelude(ty);
    let tiled = b.module::<MatmulParams>(tiled, &consts(&c.tiled), &prelude);
    let reg = b.module::<MatmulParams>(reg, &consts(&c.register), &prelude);
    let l = &b.layouts.weights;
    Pipelines {
        tiled: b.pipeline(&tiled, "matmul_tiled", l),
        reg: b.pipeline(&reg, "matmul_reg", l),
        gemv: b.pipeline(&tiled, "gemv", l),
    }
}

super::op::kernel_ops! {
    /// `out[m, n] = act(x[m, k] · wᵀ + bias)`, w PyTorch's `[n, k]` (n = `w.rows`, k =
    /// `w.cols`, a multiple of 4: zero-pad rows otherwise) stored in any `WeightType` (see
    /// `GpuMatrix`; `MatrixRef::f32` for a plain f32 buffer). GEMV for `m ≤ gemv_max_rows`, else
    /// the configured matmul variant. Weights larger than one storage binding are processed in
    /// row ranges (see module docs).
    Linear(MatmulParams) {
        x, out; m;
        w: MatrixRef<'a>, bias: Option<&'a wgpu::Buffer>, gelu: bool,
    }
}

impl<'a> Linear<'a> {
    /// `out = x · wᵀ` for `m` rows of x, without bias or GELU (set those with
    /// `Linear { bias, gelu, ..Linear::new(..) }`).
    pub fn new(x: &'a wgpu::Buffer, w: MatrixRef<'a>, out: &'a wgpu::Buffer, m: usize) -> Self {
        let (bias, gelu) = (None, false);
        Linear {
            x,
            out,
            m,
            w,
            bias,
            gelu,
        }
    }
}

impl Op for Linear<'_> {
    fn record(&self, kn: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (x, w, bias, out, m, gelu) = (self.x, self.w, self.bias, self.out, self.m, self.gelu);
        let (n, k) = (w.rows, w.cols);
        let wbytes = w.ty.bytes();
        if !k.is_multiple_of(4) {
            return Err(Error::Device(format!(
                "linear: k = {k} is not a multiple of 4 (zero-pad the rows)"
            )));
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        need(x, m * k, "linear x")?;
        need(w.data, n * k * wbytes / 4, "linear w")?;
        need(out, m * n, "linear out")?;
        if let Some(b) = bias {
            need(b, n, "linear bias")?;
        }
        let scale = w.scales("linear scales")?;
        let c = &kn.config;
        let use_gemv = m <= c.gemv_max_rows;
        let chunk = kn.rows_per_binding(w.row_bytes() as u64).min(n);
        let pipes = &kn.matmul[w.ty as usize];
        for (n0, rows) in ranges(n, chunk) {
            let params = MatmulParams {
                n: rows as u32,
                k4: (k / 4) as u32,
                flags: bias.is_some() as u32 | ((gelu as u32) << 1),
                out_stride: word("linear", n)?,
                col0: n0 as u32,
                ..self.params()?
            };
            let wb = binding(w.data, (n0 * k * wbytes) as u64, (rows * k * wbytes) as u64);
            // Bias and scales of this row range: offsets n0 · 4 bytes, aligned as n0 is a
            // multiple of `row_step`.
            let bb = match bias {
                Some(b) => binding(b, (n0 * 4) as u64, (rows * 4) as u64),
                None => whole(&kn.dummy),
            };
            let sb = match scale {
                Some(s) => binding(s, (n0 * 4) as u64, (rows * 4) as u64),
                None => whole(&kn.dummy),
            };
            let binds = [whole(x), wb, bb, whole(out), sb];
            let (pl, wg) = if use_gemv {
                (
                    &pipes.gemv,
                    (groups(rows, c.gemv_rows), groups(m, c.gemv_batch), 1),
                )
            } else {
                let (pl, t) = match c.matmul {
                    MatmulVariant::Tiled => (&pipes.tiled, c.tiled),
                    MatmulVariant::Register => (&pipes.reg, c.register),
                };
                (
                    pl,
                    (groups(rows, t.wg_x * t.tn), groups(m, t.wg_y * t.tm), 1),
                )
            };
            let work = || params.work(wbytes as f64);
            kn.launch(pass, pl, &params, &binds, wg, work)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MatmulParams;

    #[test]
    fn work_counts_the_range() {
        // 3 rows of x [3, 8] against 5 weight rows (f16), no bias.
        let p = MatmulParams {
            m: 3,
            n: 5,
            k4: 2,
            out_stride: 10,
            col0: 5,
            ..Default::default()
        };
        let w = p.work(2.0);
        assert_eq!(w.flops, 2.0 * 3.0 * 5.0 * 8.0);
        assert_eq!(w.bytes, 5.0 * 8.0 * 2.0 + 3.0 * 8.0 * 4.0 + 3.0 * 5.0 * 4.0);
    }
}
