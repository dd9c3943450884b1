//! Elementwise kernels, `shaders/elementwise.wgsl`: GELU, the residual add, the transpose
//! between the two encoder convolutions, and the KV-cache append.
//!
//! CPU twins: `backend/cpu/ops/elementwise.rs` (`ops::gelu`, `ops::add_assign`). Test:
//! `tests/kernels_vs_cpu/elementwise.rs` (the transpose and append are covered end to end by
//! `tests/gpu_end_to_end.rs`).

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::op::{word, Op};
use super::{groups, Kernels};

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
        Work::per_value(self.n as f64, flops_per_value, bytes_per_value)
    }
}

super::build::pipelines! { gelu: "gelu", add: "add", transpose: "transpose", kv_append: "kv_append" }

pub(super) fn compile(b: &Builder<'_>) -> Pipelines {
    let consts = [("EW_WG", b.config.elementwise_wg)];
    let m = b.module::<ElementwiseParams>("elementwise", &consts, "");
    Pipelines::new(b, &m, &b.layouts.rw_ro)
}

super::op::kernel_ops! {
    /// `a = gelu(a)` over the first `n` values (erf form, see `shaders/elementwise.wgsl`).
    Gelu(ElementwiseParams) { a; n }
    /// `a += b` over the first `n` values (the residual add).
    Add(ElementwiseParams) { a, b; n }
    /// `out[cols, rows] = inp[rows, cols]ᵀ` (time-major conv1 output -> channels-first conv2
    /// input).
    Transpose(ElementwiseParams) { out, inp; ; rows: usize, cols: usize }
    /// Appends `n_new` rows per sequence of `src [n_seq, n_new, d]` to the per-sequence caches
    /// `cache [.., ctx, d]` at row `pos0` of each sequence.
    KvAppend(ElementwiseParams) { cache, src; ; n_seq: usize, n_new: usize, d: usize, ctx: usize, pos0: usize }
}

impl Kernels {
    /// One thread per value of `params.n` over `operands` (the first read-write, the second
    /// read; `dummy` where the kernel reads none).
    fn elementwise(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        (what, kernel): (&str, &Kernel),
        operands: [(&str, &wgpu::Buffer, usize); 2],
        params: ElementwiseParams,
        work: Work,
    ) -> Result<()> {
        if params.n == 0 {
            return Ok(());
        }
        let wg = Self::grid(groups(params.n as usize, self.config.elementwise_wg) as usize);
        self.dispatch(pass, what, kernel, &params, &operands, wg, || work)
    }
}

impl Op for Gelu<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let params = self.params()?;
        let operands = [("a", self.a, self.n), ("-", &k.dummy, 0)];
        let work = params.work(0.0, 8.0);
        k.elementwise(pass, ("gelu", &k.elementwise.gelu), operands, params, work)
    }
}

impl Op for Add<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let params = self.params()?;
        let operands = [("a", self.a, self.n), ("b", self.b, self.n)];
        let work = params.work(1.0, 12.0);
        k.elementwise(pass, ("add", &k.elementwise.add), operands, params, work)
    }
}

impl Op for Transpose<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let n = self.rows * self.cols;
        let params = ElementwiseParams {
            n: word("transpose", n)?,
            run: self.rows as u32,
            stride: self.cols as u32,
            ..Default::default()
        };
        let operands = [("out", self.out, n), ("in", self.inp, n)];
        let kernel = ("transpose", &k.elementwise.transpose);
        k.elementwise(pass, kernel, operands, params, params.work(0.0, 8.0))
    }
}

impl Op for KvAppend<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (n_new, d, ctx, pos0) = (self.n_new, self.d, self.ctx, self.pos0);
        let n = self.n_seq * n_new * d;
        if n == 0 {
            return Ok(());
        }
        if pos0 + n_new > ctx {
            return Err(Error::Device(format!(
                "kv_append: rows {pos0}..{} past the context of {ctx}",
                pos0 + n_new
            )));
        }
        // The cache is checked whole: every sequence's `ctx` rows.
        let params = ElementwiseParams {
            n: word("kv_append", n)?,
            run: (n_new * d) as u32,
            stride: word("kv_append", ctx * d)?,
            offset: (pos0 * d) as u32,
            ..Default::default()
        };
        let cache = ("cache", self.cache, self.n_seq * ctx * d);
        let operands = [cache, ("src", self.src, n)];
        let kernel = ("kv_append", &k.elementwise.kv_append);
        k.elementwise(pass, kernel, operands, params, params.work(0.0, 8.0))
    }
}
