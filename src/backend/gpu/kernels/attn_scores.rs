//! One head's scaled attention scores `q · kᵀ / √head_dim` (the cross-attention weights that
//! word timestamps align on), `shaders/attn_scores.wgsl`; softmaxed afterwards by `softmax`.
//!
//! CPU twin: `backend/cpu/ops/attention.rs` (`ops::attention_weights`). Test:
//! `tests/kernels_vs_cpu/attention.rs`.

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::op::Op;
use super::{groups, Kernels, HEAD_DIM};

super::wgsl_params! {
    AttnScoresParams in "attn_scores.wgsl" {
        n_q: u32,
        n_kv: u32,
        /// Row stride of q / k in vec4s (d / 4).
        d4: u32,
        head: u32,
        /// First row of out written.
        out_row0: u32,
        scale: f32,
    }
}

impl AttnScoresParams {
    fn work(&self) -> Work {
        let (n_q, n_kv, hd) = (self.n_q as f64, self.n_kv as f64, HEAD_DIM as f64);
        Work::new(
            2.0 * n_q * n_kv * hd,
            4.0 * (n_q * hd + n_kv * hd + n_q * n_kv),
        )
    }
}

pub(super) fn compile(b: &Builder<'_>) -> Kernel {
    let consts = [("AT_HD4", (HEAD_DIM / 4) as u32)];
    b.single::<AttnScoresParams>("attn_scores", &consts, "attn_scores", &b.layouts.ro3_rw)
}

super::op::kernel_ops! {
    /// Scaled scores `q_h · k_hᵀ / √head_dim` of head `head` for `n_q` queries against `n_kv`
    /// keys into rows `out_row0 ..` of `out [.., n_kv]` (softmax them with `Softmax`): the
    /// cross-attention weights, as `ops::attention_weights`.
    AttnScores(AttnScoresParams) { q, k, out; n_q, n_kv, head, out_row0; d: usize }
}

impl Op for AttnScores<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (n_q, n_kv, d, head) = (self.n_q, self.n_kv, self.d, self.head);
        if !d.is_multiple_of(HEAD_DIM) || (head + 1) * HEAD_DIM > d {
            return Err(Error::Device(format!(
                "attn_scores: head {head} of d = {d} with head_dim {HEAD_DIM}"
            )));
        }
        if n_q == 0 || n_kv == 0 {
            return Ok(());
        }
        let params = AttnScoresParams {
            d4: (d / 4) as u32,
            scale: 1.0 / (HEAD_DIM as f32).sqrt(),
            ..self.params()?
        };
        let operands = [
            ("q", self.q, n_q * d),
            ("k", self.k, n_kv * d),
            ("dummy", &k.dummy, 0),
            ("out", self.out, (self.out_row0 + n_q) * n_kv),
        ];
        let (wg, work) = ((groups(n_kv, 64), n_q as u32, 1), || params.work());
        k.dispatch(
            pass,
            "attn_scores",
            &k.attn_scores,
            &params,
            &operands,
            wg,
            work,
        )
    }
}
