//! Row argmax and the greedy decoder's token pick (suppression mask, log-probability),
//! `shaders/argmax.wgsl`.
//!
//! CPU twins: `backend/cpu/ops/argmax.rs` (`ops::argmax`) and `backend::masked_argmax`. Tests:
//! `tests/kernels_vs_cpu/argmax.rs`, `tests/suite/gpu_greedy_pick.rs`.

use crate::error::Result;

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::{need, whole, Kernels};

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

impl Kernels {
    /// Index of the maximum of each row of `x [rows, n]` (first on ties) into `out[rows]` (u32).
    pub fn argmax(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        n: usize,
    ) -> Result<()> {
        if rows == 0 || n == 0 {
            return Ok(());
        }
        need(x, rows * n, "argmax x")?;
        need(out, rows, "argmax out")?;
        let params = ArgmaxParams {
            n: n as u32,
            rows: rows as u32,
            ..Default::default()
        };
        let work = || Work::new(0.0, 4.0 * n as f64 * rows as f64);
        let (binds, wg) = ([whole(x), whole(out)], (rows as u32, 1, 1));
        self.launch(pass, &self.argmax.argmax, &params, &binds, wg, work)
    }

    /// Greedy token choice over one row of `n` logits (see `greedy_pick` in argmax.wgsl):
    /// `mask` holds bitsets of suppressed ids, the row used starting at word `mask_word`;
    /// `out` receives (index, log-probability bits).
    pub fn greedy_pick(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        mask: &wgpu::Buffer,
        mask_word: usize,
        out: &wgpu::Buffer,
        n: usize,
    ) -> Result<()> {
        need(x, n, "greedy_pick x")?;
        need(mask, mask_word + n.div_ceil(32), "greedy_pick mask")?;
        need(out, 2, "greedy_pick out")?;
        let params = ArgmaxParams {
            n: n as u32,
            rows: 1,
            mask_word: mask_word as u32,
            ..Default::default()
        };
        // The logits and their suppression bits.
        let work = || Work::new(0.0, 4.0 * n as f64 + n as f64 / 8.0);
        let binds = [whole(x), whole(out), whole(mask)];
        self.launch(
            pass,
            &self.argmax.greedy_pick,
            &params,
            &binds,
            (1, 1, 1),
            work,
        )
    }
}
