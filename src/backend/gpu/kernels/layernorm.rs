//! Layer norm of rows (eps 1e-5), `shaders/layernorm.wgsl`.
//!
//! CPU twin: `backend/cpu/ops/layernorm.rs` (`ops::layer_norm`). Test:
//! `tests/kernels_vs_cpu/layernorm.rs`.

use crate::error::Result;

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::op::Op;
use super::Kernels;

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
        Work::per_value(self.rows as f64 * self.cols as f64, 8.0, 8.0)
    }
}

pub(super) fn compile(b: &Builder<'_>) -> Kernel {
    let consts = [("LN_WG", b.config.layernorm_wg)];
    b.single::<LayerNormParams>("layernorm", &consts, "layer_norm", &b.layouts.ro3_rw)
}

super::op::kernel_ops! {
    /// Layer norm (eps 1e-5) of each `cols`-wide input row `in_first + r * in_step` (r < `rows`)
    /// into output row r, out-of-place; as `ops::layer_norm`. `in_step` 1, `in_first` 0: every
    /// row; `in_step` = tokens per sequence: the decoder's last position of each sequence.
    LayerNorm(LayerNormParams) { x, gamma, beta, out; rows, cols, in_step, in_first }
}

impl Op for LayerNorm<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let params = self.params()?;
        let last_in = (rows - 1) * self.in_step + self.in_first;
        let operands = [
            ("x", self.x, (last_in + 1) * cols),
            ("gamma", self.gamma, cols),
            ("beta", self.beta, cols),
            ("out", self.out, rows * cols),
        ];
        let (wg, work) = (Kernels::grid(rows), || params.work());
        k.dispatch(
            pass,
            "layer_norm",
            &k.layernorm,
            &params,
            &operands,
            wg,
            work,
        )
    }
}
