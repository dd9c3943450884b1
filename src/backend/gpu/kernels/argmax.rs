//! Row argmax and the greedy decoder's token pick (suppression mask, log-probability),
//! `shaders/argmax.wgsl`.
//!
//! CPU twins: `backend/cpu/ops/argmax.rs` (`ops::argmax`) and `backend::masked_argmax`. Tests:
//! `tests/kernels_vs_cpu/argmax.rs`, `tests/suite/gpu_greedy_pick.rs`.

use crate::error::Result;

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::op::Op;
use super::Kernels;

super::wgsl_params! {
    ArgmaxParams in "argmax.wgsl" {
        /// Values per row.
        n: u32,
        rows: u32,
        /// greedy_pick: the first word of the suppression mask's row.
        mask_word: u32,
    }
}

pub(super) struct Pipelines {
    argmax: Kernel,
    greedy_pick: Kernel,
}

pub(super) fn compile(b: &Builder<'_>) -> Pipelines {
    let m = b.module::<ArgmaxParams>("argmax", &[("AM_WG", b.config.argmax_wg)], "");
    Pipelines {
        argmax: b.pipeline(&m, "argmax", &b.layouts.ro_rw),
        greedy_pick: b.pipeline(&m, "greedy_pick", &b.layouts.ro_rw_ro),
    }
}

super::op::kernel_ops! {
    /// Index of the maximum of each row of `x [rows, n]` (first on ties) into `out[rows]` (u32).
    Argmax(ArgmaxParams) { x, out; n, rows }
    /// Greedy token choice over one row of `n` logits (see `greedy_pick` in argmax.wgsl):
    /// `mask` holds bitsets of suppressed ids, the row used starting at word `mask_word`;
    /// `out` receives (index, log-probability bits).
    GreedyPick(ArgmaxParams) { x, mask, out; n, mask_word }
}

impl Op for Argmax<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (rows, n) = (self.rows, self.n);
        if rows == 0 || n == 0 {
            return Ok(());
        }
        let params = self.params()?;
        let operands = [("x", self.x, rows * n), ("out", self.out, rows)];
        let work = || Work::new(0.0, 4.0 * n as f64 * rows as f64);
        let (kernel, wg) = (&k.argmax.argmax, (rows as u32, 1, 1));
        k.dispatch(pass, "argmax", kernel, &params, &operands, wg, work)
    }
}

impl Op for GreedyPick<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let n = self.n;
        let params = ArgmaxParams {
            rows: 1,
            ..self.params()?
        };
        let mask = ("mask", self.mask, self.mask_word + n.div_ceil(32));
        let operands = [("x", self.x, n), ("out", self.out, 2), mask];
        // The logits and their suppression bits.
        let work = || Work::new(0.0, 4.0 * n as f64 + n as f64 / 8.0);
        let kernel = &k.argmax.greedy_pick;
        k.dispatch(
            pass,
            "greedy_pick",
            kernel,
            &params,
            &operands,
            (1, 1, 1),
            work,
        )
    }
}
