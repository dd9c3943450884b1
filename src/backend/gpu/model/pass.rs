//! What the encoder and decoder passes share: the activation buffers of a pass, the record calls
//! of its layers, and submitting a recorded pass.

use wgpu::Buffer;

use crate::error::Result;

use super::super::context::GpuContext;
use super::super::kernels::Kernels;
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
        k.linear_typed(enc, x, self.w.view(), self.b.as_ref(), out, rows, gelu)
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
        k.layer_norm(enc, x, &self.g, &self.b, out, rows, self.n)
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
        self.ctx.scoped(what, || {
            self.k.begin();
            let mut enc = self
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(what),
                    timestamp_writes: None,
                });
                record(&mut pass)?;
            }
            after(&mut enc);
            self.k.flush_params();
            if wait {
                self.ctx.submit_wait(enc)
            } else {
                self.ctx.queue.submit([enc.finish()]);
                self.ctx.check()
            }
        })
    }
}
