//! What the encoder and decoder passes share: the activation buffers of a pass, the record calls
//! of its layers, and submitting a recorded pass.

use wgpu::Buffer;

use crate::error::Result;

use super::super::context::GpuContext;
use super::super::kernels::{self, Kernels};
use super::{GpuModel, LayerNorm, Linear};

/// Activation buffers of one pass (`rows` × d, hidden `rows` × ffn).
pub(super) struct Scratch {
    pub x: Buffer,
    pub h: Buffer,
    pub q: Buffer,
    pub k: Buffer,
    pub v: Buffer,
    pub a: Buffer,
    pub o: Buffer,
    pub hidden: Buffer,
}

impl Scratch {
    pub(super) fn new(ctx: &GpuContext, rows: usize, d: usize, ffn: usize) -> Self {
        let b = |l: &str, n: usize| ctx.storage(l, (n * 4) as u64);
        Scratch {
            x: b("x", rows * d),
            h: b("h", rows * d),
            q: b("q", rows * d),
            k: b("k", rows * d),
            v: b("v", rows * d),
            a: b("a", rows * d),
            o: b("o", rows * d),
            hidden: b("hidden", rows * ffn),
        }
    }
}

impl Scratch {
    /// The residual connection `x += o` over the first `n` values.
    pub(super) fn add_residual(
        &self,
        k: &Kernels,
        pass: &mut wgpu::ComputePass<'_>,
        n: usize,
    ) -> Result<()> {
        k.record(
            pass,
            &kernels::Add {
                a: &self.x,
                b: &self.o,
                n,
            },
        )
    }
}

impl Linear {
    pub(super) fn run(
        &self,
        k: &Kernels,
        enc: &mut wgpu::ComputePass<'_>,
        x: &Buffer,
        rows: usize,
        out: &Buffer,
        gelu: bool,
    ) -> Result<()> {
        let bias = self.b.as_ref();
        k.record(
            enc,
            &kernels::Linear {
                bias,
                gelu,
                ..kernels::Linear::new(x, self.w.view(), out, rows)
            },
        )
    }
}

impl LayerNorm {
    pub(super) fn run(
        &self,
        k: &Kernels,
        enc: &mut wgpu::ComputePass<'_>,
        x: &Buffer,
        out: &Buffer,
        rows: usize,
    ) -> Result<()> {
        let (gamma, beta, cols) = (&self.g, &self.b, self.n);
        let (in_step, in_first) = (1, 0); // every row
        k.record(
            enc,
            &kernels::LayerNorm {
                x,
                gamma,
                beta,
                out,
                rows,
                cols,
                in_step,
                in_first,
            },
        )
    }
}

impl GpuModel {
    /// Records one compute pass, then `after` (copies), uploads the parameters and submits;
    /// waits when `wait`.
    pub(super) fn submit(
        &self,
        what: &str,
        wait: bool,
        record: impl FnOnce(&mut wgpu::ComputePass<'_>) -> Result<()>,
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        let k = &self.k;
        let submit = || k.submit_pass(&self.ctx, (what, wait), record, after);
        self.ctx.scoped(what, submit)
    }
}
