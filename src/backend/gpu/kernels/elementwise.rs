//! Elementwise kernels, `shaders/elementwise.wgsl`: GELU, the residual add, the transpose
//! between the two encoder convolutions, and the KV-cache append.
//!
//! CPU twins: `backend/cpu/ops/elementwise.rs` (`ops::gelu`, `ops::add_assign`). Test:
//! `tests/kernels_vs_cpu/elementwise.rs` (the transpose and append are covered end to end by
//! `tests/gpu_end_to_end.rs`).

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::{groups, need, whole, Kernels};

super::wgsl_params! {
    /// `n` values; `transpose` and `kv_append` split the index i into `i / run` and `i % run`.
    ElementwiseParams in "elementwise.wgsl" + "gelu.wgsl" {
        /// Values to process (one thread each).
        n: u32,
        /// transpose: rows of the input (one output row); kv_append: new values per sequence.
        run: u32,
        /// transpose: columns of the input; kv_append: values between sequences in the cache.
        stride: u32,
        /// kv_append: where the new values go in each sequence's cache.
        offset: u32,
    }
}

impl ElementwiseParams {
    /// `bytes_per_value` read and written per value, `flops_per_value` computed.
    fn work(&self, flops_per_value: f64, bytes_per_value: f64) -> Work {
        let n = self.n as f64;
        Work::new(flops_per_value * n, bytes_per_value * n)
    }
}

pub(super) struct Pipelines {
    gelu: Kernel,
    add: Kernel,
    transpose: Kernel,
    kv_append: Kernel,
}

pub(super) fn compile(b: &Builder<'_>) -> Pipelines {
    let consts = [("EW_WG", b.config.elementwise_wg)];
    let m = b.module::<ElementwiseParams>("elementwise", &consts, "");
    let l = &b.layouts.rw_ro;
    Pipelines {
        gelu: b.pipeline(&m, "gelu", l),
        add: b.pipeline(&m, "add", l),
        transpose: b.pipeline(&m, "transpose", l),
        kv_append: b.pipeline(&m, "kv_append", l),
    }
}

impl Kernels {
    /// One thread per value of `params.n` over `a` (read-write) and `b`.
    fn elementwise(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        kernel: &Kernel,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        params: ElementwiseParams,
        work: Work,
    ) -> Result<()> {
        let wg = Self::grid(groups(params.n as usize, self.config.elementwise_wg) as usize);
        self.launch(pass, kernel, &params, &[whole(a), whole(b)], wg, || work)
    }

    /// `a = gelu(a)` over the first `n` values (erf form, see `shaders/elementwise.wgsl`).
    pub fn gelu(&self, pass: &mut wgpu::ComputePass<'_>, a: &wgpu::Buffer, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        need(a, n, "gelu")?;
        let params = ElementwiseParams {
            n: n as u32,
            ..Default::default()
        };
        let work = params.work(0.0, 8.0);
        self.elementwise(pass, &self.elementwise.gelu, a, &self.dummy, params, work)
    }

    /// `a += b` over the first `n` values (the residual add).
    pub fn add(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        n: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        need(a, n, "add a")?;
        need(b, n, "add b")?;
        let params = ElementwiseParams {
            n: n as u32,
            ..Default::default()
        };
        let work = params.work(1.0, 12.0);
        self.elementwise(pass, &self.elementwise.add, a, b, params, work)
    }

    /// `out[cols, rows] = inp[rows, cols]ᵀ` (time-major conv1 output -> channels-first conv2 input).
    pub fn transpose(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        out: &wgpu::Buffer,
        inp: &wgpu::Buffer,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let n = rows * cols;
        if n == 0 {
            return Ok(());
        }
        need(out, n, "transpose out")?;
        need(inp, n, "transpose in")?;
        let params = ElementwiseParams {
            n: n as u32,
            run: rows as u32,
            stride: cols as u32,
            ..Default::default()
        };
        let work = params.work(0.0, 8.0);
        self.elementwise(pass, &self.elementwise.transpose, out, inp, params, work)
    }

    /// Appends `n_new` rows per sequence of `src [n_seq, n_new, d]` to the per-sequence caches
    /// `cache [.., ctx, d]` at row `pos0` of each sequence.
    #[allow(clippy::too_many_arguments)]
    pub fn kv_append(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        cache: &wgpu::Buffer,
        src: &wgpu::Buffer,
        n_seq: usize,
        n_new: usize,
        d: usize,
        ctx: usize,
        pos0: usize,
    ) -> Result<()> {
        let n = n_seq * n_new * d;
        if n == 0 {
            return Ok(());
        }
        if pos0 + n_new > ctx {
            return Err(Error::Device(format!(
                "kv_append: rows {pos0}..{} past the context of {ctx}",
                pos0 + n_new
            )));
        }
        need(src, n, "kv_append src")?;
        need(cache, n_seq * ctx * d, "kv_append cache")?;
        let params = ElementwiseParams {
            n: n as u32,
            run: (n_new * d) as u32,
            stride: (ctx * d) as u32,
            offset: (pos0 * d) as u32,
            ..Default::default()
        };
        let work = params.work(0.0, 8.0);
        self.elementwise(pass, &self.elementwise.kv_append, cache, src, params, work)
    }
}
