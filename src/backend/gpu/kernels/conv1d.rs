//! Kernel-3, padding-1 convolution (the encoder stem), `shaders/conv1d.wgsl`.
//!
//! CPU twin: `backend/cpu/ops/conv1d.rs` (`ops::conv1d_k3`). Test: `tests/kernels_vs_cpu/conv1d.rs`.

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::op::Op;
use super::{groups, Kernels};

super::wgsl_params! {
    Conv1dParams in "conv1d.wgsl" + "gelu.wgsl" {
        c_in: u32,
        t_in: u32,
        c_out: u32,
        t_out: u32,
        stride: u32,
        gelu: u32,
    }
}

impl Conv1dParams {
    fn work(&self) -> Work {
        let [c_in, t_in, c_out, t_out] =
            [self.c_in, self.t_in, self.c_out, self.t_out].map(f64::from);
        Work::new(
            2.0 * 3.0 * c_in * c_out * t_out,
            4.0 * (c_in * t_in + 3.0 * c_in * c_out + c_out + t_out * c_out),
        )
    }
}

pub(super) fn compile(b: &Builder<'_>) -> Kernel {
    let c = b.config;
    let consts = [
        ("CV_WG_X", c.conv_wg.0),
        ("CV_WG_Y", c.conv_wg.1),
        ("CV_TT", c.conv_tt),
        ("CV_TC", c.conv_tc),
    ];
    b.single::<Conv1dParams>("conv1d", &consts, "conv1d_k3", &b.layouts.ro3_rw)
}

super::op::kernel_ops! {
    /// Kernel-3, padding-1 convolution: `input [c_in, t_in]`, `weight [c_out, c_in, 3]`,
    /// `out [t_out, c_out]` (time-major), optional GELU; as `ops::conv1d_k3`.
    Conv1d(Conv1dParams) { input, weight, bias, out; c_in, t_in, c_out, stride; gelu: bool }
}

impl Op for Conv1d<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (c_in, t_in, c_out) = (self.c_in, self.t_in, self.c_out);
        if self.stride == 0 || t_in == 0 || c_in == 0 || c_out == 0 {
            return Err(Error::Device("conv1d: empty shape or zero stride".into()));
        }
        let t_out = crate::backend::cpu::ops::conv1d_out_len(t_in, self.stride);
        let params = Conv1dParams {
            t_out: t_out as u32,
            gelu: self.gelu as u32,
            ..self.params()?
        };
        let operands = [
            ("input", self.input, c_in * t_in),
            ("weight", self.weight, c_out * c_in * 3),
            ("bias", self.bias, c_out),
            ("out", self.out, t_out * c_out),
        ];
        let c = &k.config;
        let wg = (
            groups(c_out, c.conv_wg.0 * c.conv_tc),
            groups(t_out, c.conv_wg.1 * c.conv_tt),
            1,
        );
        k.dispatch(pass, "conv1d", &k.conv1d, &params, &operands, wg, || {
            params.work()
        })
    }
}
