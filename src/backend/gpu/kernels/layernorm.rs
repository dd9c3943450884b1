//! Layer norm of rows (eps 1e-5), `shaders/layernorm.wgsl`.
//!
//! CPU twin: `backend/cpu/ops/layernorm.rs` (`ops::layer_norm`). Test:
//! `tests/kernels_vs_cpu/layernorm.rs`.

use crate::error::Result;

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::{need, whole, Kernels};

super::wgsl_params! {
    LayerNormParams in "layernorm.wgsl" + "reduce.wgsl" {
        rows: u32,
        cols: u32,
        /// Output row r reads input row `r * in_step + in_first` (1 and 0: every row).
        in_step: u32,
        in_first: u32,
    }
}

impl LayerNormParams {
    /// Each value read and written once, ~8 operations per value.
    fn work(&self) -> Work {
        let v = self.rows as f64 * self.cols as f64;
        Work::new(8.0 * v, 8.0 * v)
    }
}

pub(super) fn compile(b: &Builder<'_>) -> Kernel {
    let consts = [("LN_WG", b.config.layernorm_wg)];
    b.single::<LayerNormParams>("layernorm", &consts, "layer_norm", &b.layouts.ro3_rw)
}

impl Kernels {
    /// Layer norm of each `cols`-wide row (eps 1e-5), out-of-place; as `ops::layer_norm`.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        gamma: &wgpu::Buffer,
        beta: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        self.layer_norm_rows(pass, x, gamma, beta, out, rows, cols, 1, 0)
    }

    /// Layer norm of input rows `first + r * step` (r < `rows`) into output rows r: the
    /// decoder's last position of each sequence (`step` = tokens per sequence).
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_rows(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        gamma: &wgpu::Buffer,
        beta: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        cols: usize,
        step: usize,
        first: usize,
    ) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        need(x, ((rows - 1) * step + first + 1) * cols, "layer_norm x")?;
        need(out, rows * cols, "layer_norm out")?;
        need(gamma, cols, "layer_norm gamma")?;
        need(beta, cols, "layer_norm beta")?;
        let params = LayerNormParams {
            rows: rows as u32,
            cols: cols as u32,
            in_step: step as u32,
            in_first: first as u32,
            ..Default::default()
        };
        let binds = [whole(x), whole(gamma), whole(beta), whole(out)];
        let wg = Self::grid(rows);
        self.launch(pass, &self.layernorm, &params, &binds, wg, || params.work())
    }
}
