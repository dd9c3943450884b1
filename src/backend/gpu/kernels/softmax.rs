//! Row softmax in place, optionally causal, `shaders/softmax.wgsl`.
//!
//! CPU twin: `backend/cpu/ops/softmax.rs` (`ops::softmax_rows`). Test:
//! `tests/kernels_vs_cpu/softmax.rs`.

use crate::error::Result;

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::op::{word, Op};
use super::Kernels;

super::wgsl_params! {
    SoftmaxParams in "softmax.wgsl" + "reduce.wgsl" {
        rows: u32,
        cols: u32,
        /// 1: row i keeps columns `0..=offset + i`.
        causal: u32,
        offset: u32,
    }
}

impl SoftmaxParams {
    /// Each value read and written once; max, exp, sum and scale.
    fn work(&self) -> Work {
        Work::per_value(self.rows as f64 * self.cols as f64, 4.0, 8.0)
    }
}

pub(super) fn compile(b: &Builder<'_>) -> Kernel {
    let consts = [("SM_WG", b.config.softmax_wg)];
    b.single::<SoftmaxParams>("softmax", &consts, "softmax", &b.layouts.rw)
}

super::op::kernel_ops! {
    /// Stable softmax of each row of `x [rows, cols]` in place; with `causal = Some(p)` row i
    /// keeps columns `0..=p + i` and the rest become 0.
    Softmax(SoftmaxParams) { x; rows, cols; causal: Option<usize> }
}

impl Op for Softmax<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        if self.rows == 0 || self.cols == 0 {
            return Ok(());
        }
        let params = SoftmaxParams {
            causal: self.causal.is_some() as u32,
            offset: word("softmax", self.causal.unwrap_or(0))?,
            ..self.params()?
        };
        let x = [("x", self.x, self.rows * self.cols)];
        let (wg, work) = (Kernels::grid(self.rows), || params.work());
        k.dispatch(pass, "softmax", &k.softmax, &params, &x, wg, work)
    }
}
