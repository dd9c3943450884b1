//! Row softmax in place, optionally causal, `shaders/softmax.wgsl`.
//!
//! CPU twin: `backend/cpu/ops/softmax.rs` (`ops::softmax_rows`). Test:
//! `tests/kernels_vs_cpu/softmax.rs`.

use crate::error::Result;

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::{need, whole, Kernels};

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
    fn work(&self) -> Work {
        let v = self.rows as f64 * self.cols as f64;
        Work::new(4.0 * v, 8.0 * v)
    }
}

pub(super) fn compile(b: &Builder<'_>) -> Kernel {
    let consts = [("SM_WG", b.config.softmax_wg)];
    b.single::<SoftmaxParams>("softmax", &consts, "softmax", &b.layouts.rw)
}

impl Kernels {
    /// Stable softmax of each row of `x [rows, cols]` in place; with `causal = Some(p)` row i
    /// keeps columns `0..=p + i` and the rest become 0.
    pub fn softmax(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        rows: usize,
        cols: usize,
        causal: Option<usize>,
    ) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        need(x, rows * cols, "softmax")?;
        let params = SoftmaxParams {
            rows: rows as u32,
            cols: cols as u32,
            causal: causal.is_some() as u32,
            offset: causal.unwrap_or(0) as u32,
            ..Default::default()
        };
        let wg = Self::grid(rows);
        self.launch(pass, &self.softmax, &params, &[whole(x)], wg, || {
            params.work()
        })
    }
}
