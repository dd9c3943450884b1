//! Kernel dispatches as values: each op is a struct of its operands (buffers and sizes) that the
//! caller fills in by name and hands to `Kernels::record`, which checks the shape against the
//! buffers and records the dispatches. The structs are declared from one table row each
//! (`kernel_ops!`): the sizes that a family's parameter block takes as they are carry the
//! block's field names, so `params()` fills the block by name, each size checked to fit the
//! shader's 32-bit word.

use crate::error::{Error, Result};

use super::super::context::GpuContext;
use super::super::profile::Work;
use super::build::Kernel;
use super::{whole, Kernels, WgslParams, MAX_BINDINGS};

/// A kernel dispatch described by its operands, recorded by `Kernels::record`.
pub trait Op {
    /// Checks the operands' shape against their buffers, then records the op's dispatches into
    /// `pass` (nothing for an empty shape).
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()>;
}

/// A size as the shader's 32-bit word; `what` names the op in the error.
pub(super) fn word(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::Device(format!("{what}: size {v} does not fit the kernel's u32")))
}

/// Declares kernel ops, one row each: `Name(Params) { buffers ; sizes ; other: Type, .. }`.
/// The struct gets a `&wgpu::Buffer` field per buffer, a `usize` field per size (each named as
/// the field of `Params` it sets) and the other fields as typed; `params()` returns `Params`
/// with the sizes set and the rest zero, for the op's `record` to complete.
macro_rules! kernel_ops {
    ($($(#[$meta:meta])* $name:ident($params:ident) {
        $($buf:ident),* ; $($size:ident),* $(; $($field:ident: $ty:ty),* $(,)?)?
    })*) => {$(
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $name<'a> {
            $(pub $buf: &'a wgpu::Buffer,)*
            $(pub $size: usize,)*
            $($(pub $field: $ty,)*)?
        }

        impl $name<'_> {
            /// The parameter block with this op's sizes set.
            #[allow(dead_code)]
            fn params(&self) -> $crate::error::Result<$params> {
                Ok($params {
                    $($size: super::op::word(stringify!($name), self.$size)?,)*
                    ..Default::default()
                })
            }
        }
    )*};
}
pub(super) use kernel_ops;

impl Kernels {
    /// Records `op` (see `Op`): `k.record(pass, &LayerNorm { x, gamma, .. })?`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, op: &impl Op) -> Result<()> {
        op.record(self, pass)
    }

    /// Records one compute pass labelled `what` (`record`), then `after` (copies) on the same
    /// encoder, uploads the parameters and submits on `ctx`'s queue, waiting when `wait`. The
    /// parameter arena starts afresh (`begin`): one such pass at a time per `Kernels`.
    pub fn submit_pass(
        &self,
        ctx: &GpuContext,
        (what, wait): (&str, bool),
        record: impl FnOnce(&mut wgpu::ComputePass<'_>) -> Result<()>,
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        self.begin();
        let label = Some(what);
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label });
        {
            let timestamp_writes = None;
            let desc = wgpu::ComputePassDescriptor {
                label,
                timestamp_writes,
            };
            record(&mut enc.begin_compute_pass(&desc))?;
        }
        after(&mut enc);
        self.flush_params();
        if wait {
            ctx.submit_wait(enc)
        } else {
            ctx.queue.submit([enc.finish()]);
            ctx.check()
        }
    }

    /// Records one dispatch of `kernel` with every buffer of `operands` bound whole, in order,
    /// after checking that each holds the 4-byte values its shape needs (`(name, buffer,
    /// values)`; `what` names the op in the error).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dispatch<P: WgslParams>(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        what: &str,
        kernel: &Kernel,
        params: &P,
        operands: &[(&str, &wgpu::Buffer, usize)],
        wg: (u32, u32, u32),
        work: impl FnOnce() -> Work,
    ) -> Result<()> {
        for (name, b, values) in operands {
            super::need(b, *values, &format!("{what} {name}"))?;
        }
        let binds: [wgpu::BufferBinding<'_>; MAX_BINDINGS] =
            std::array::from_fn(|i| whole(operands.get(i).map_or(&self.dummy, |o| o.1)));
        self.launch(pass, kernel, params, &binds[..operands.len()], wg, work)
    }
}
