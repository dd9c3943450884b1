//! Kernel-3, padding-1 convolution (the encoder stem), `shaders/conv1d.wgsl`.
//!
//! CPU twin: `backend/cpu/ops/conv1d.rs` (`ops::conv1d_k3`). Test: `tests/kernels_vs_cpu/conv1d.rs`.

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::{groups, need, whole, Kernels};

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

impl Kernels {
    /// Kernel-3, padding-1 convolution: input `[c_in, t_in]`, weight `[c_out, c_in, 3]`,
    /// out `[t_out, c_out]` (time-major), optional GELU; as `ops::conv1d_k3`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv1d_k3(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        input: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        out: &wgpu::Buffer,
        c_in: usize,
        t_in: usize,
        c_out: usize,
        stride: usize,
        gelu: bool,
    ) -> Result<()> {
        if stride == 0 || t_in == 0 || c_in == 0 || c_out == 0 {
            return Err(Error::Device("conv1d: empty shape or zero stride".into()));
        }
        let t_out = crate::backend::cpu::ops::conv1d_out_len(t_in, stride);
        need(input, c_in * t_in, "conv1d input")?;
        need(weight, c_out * c_in * 3, "conv1d weight")?;
        need(bias, c_out, "conv1d bias")?;
        need(out, t_out * c_out, "conv1d out")?;
        let c = &self.config;
        let params = Conv1dParams {
            c_in: c_in as u32,
            t_in: t_in as u32,
            c_out: c_out as u32,
            t_out: t_out as u32,
            stride: stride as u32,
            gelu: gelu as u32,
            ..Default::default()
        };
        let wg = (
            groups(c_out, c.conv_wg.0 * c.conv_tc),
            groups(t_out, c.conv_wg.1 * c.conv_tt),
            1,
        );
        let binds = [whole(input), whole(weight), whole(bias), whole(out)];
        self.launch(pass, &self.conv1d, &params, &binds, wg, || params.work())
    }
}
