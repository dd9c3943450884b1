//! One head's scaled attention scores `q · kᵀ / √head_dim` (the cross-attention weights that
//! word timestamps align on), `shaders/attn_scores.wgsl`; softmaxed afterwards by `softmax`.
//!
//! CPU twin: `backend/cpu/ops/attention.rs` (`ops::attention_weights`). Test:
//! `tests/kernels_vs_cpu/attention.rs`.

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::{groups, need, whole, Kernels, HEAD_DIM};

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

impl Kernels {
    /// Scaled scores `q_h · k_hᵀ / √head_dim` of head `head` for `n_q` queries against `n_kv`
    /// keys into rows `out_row0 ..` of `out [.., n_kv]` (softmax them with `softmax`): the
    /// cross-attention weights, as `ops::attention_weights`.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_scores(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n_q: usize,
        n_kv: usize,
        d: usize,
        head: usize,
        out_row0: usize,
    ) -> Result<()> {
        if !d.is_multiple_of(HEAD_DIM) || (head + 1) * HEAD_DIM > d {
            return Err(Error::Device(format!(
                "attn_scores: head {head} of d = {d} with head_dim {HEAD_DIM}"
            )));
        }
        if n_q == 0 || n_kv == 0 {
            return Ok(());
        }
        need(q, n_q * d, "attn_scores q")?;
        need(k, n_kv * d, "attn_scores k")?;
        need(out, (out_row0 + n_q) * n_kv, "attn_scores out")?;
        let params = AttnScoresParams {
            n_q: n_q as u32,
            n_kv: n_kv as u32,
            d4: (d / 4) as u32,
            head: head as u32,
            out_row0: out_row0 as u32,
            scale: 1.0 / (HEAD_DIM as f32).sqrt(),
            ..Default::default()
        };
        let binds = [whole(q), whole(k), whole(&self.dummy), whole(out)];
        let wg = (groups(n_kv, 64), n_q as u32, 1);
        self.launch(pass, &self.attn_scores, &params, &binds, wg, || {
            params.work()
        })
    }
}
