//! Unfused non-causal attention for CPU-type adapters, `shaders/attn_mm.wgsl`: per chunk of
//! query rows, the scores of every head (`attn_qk`, a register-tiled product), a row `softmax`,
//! then the product with V (`attn_pv`).
//!
//! CPU twin: `backend/cpu/ops/attention.rs` (`ops::attention`). Test:
//! `tests/kernels_vs_cpu/attention.rs`.

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::attention::check_heads;
use super::build::Builder;
use super::op::Op;
use super::softmax::Softmax;
use super::{groups, need, ranges, whole, Kernels, HEAD_DIM};

super::wgsl_params! {
    AttnMmParams in "attn_mm.wgsl" {
        /// Query rows in this chunk.
        n_q: u32,
        /// Keys.
        n_kv: u32,
        /// Row stride of q / k / v / out in vec4s.
        d4: u32,
        /// First query row of the chunk in q / out.
        row0: u32,
        scale: f32,
    }
}

impl AttnMmParams {
    /// One product (Q·Kᵀ into the scores, or scores·V out) of `n_head` heads.
    fn work(&self, n_head: usize) -> Work {
        let (rows, n_kv, d, heads) = (
            self.n_q as f64,
            self.n_kv as f64,
            4.0 * self.d4 as f64,
            n_head as f64,
        );
        Work::new(
            2.0 * rows * n_kv * d,
            4.0 * (rows * d + n_kv * d + heads * rows * n_kv),
        )
    }
}

super::build::pipelines! { qk: "attn_qk", pv: "attn_pv" }

pub(super) fn compile(b: &Builder<'_>) -> Pipelines {
    let c = b.config;
    let consts = [
        ("AM_WG_X", c.attn_mm_wg.0),
        ("AM_WG_Y", c.attn_mm_wg.1),
        ("AM_TM", c.attn_mm_tm),
        ("AM_TN", c.attn_mm_tn),
        ("AM_TN4", c.attn_mm_tn4),
        ("AT_HD4", (HEAD_DIM / 4) as u32),
    ];
    let m = b.module::<AttnMmParams>("attn_mm", &consts, "");
    Pipelines::new(b, &m, &b.layouts.ro3_rw)
}

impl Kernels {
    /// Whether `attention_unfused` serves this shape under the config (non-causal, many
    /// queries, n_kv a multiple of 4).
    pub fn use_unfused_attention(&self, n_q: usize, n_kv: usize, causal: Option<usize>) -> bool {
        self.config.attn_unfused
            && causal.is_none()
            && n_q > self.config.attn_split_max_q
            && n_kv.is_multiple_of(4)
    }

    /// Values of the score buffer `attention_unfused` needs.
    pub fn unfused_scores_len(&self, n_q: usize, n_kv: usize, n_head: usize) -> usize {
        n_head * self.config.attn_chunk.max(1).min(n_q) * n_kv
    }
}

super::op::kernel_ops! {
    /// Non-causal multi-head attention as `Attention`, unfused: per chunk of `attn_chunk` query
    /// rows, scores of every head into `scores` (`unfused_scores_len` values), a row softmax,
    /// then the product with V into the chunk's rows of `out` (see `shaders/attn_mm.wgsl`).
    AttentionUnfused(AttnMmParams) { q, k, v, out, scores; n_kv; n_q: usize, d: usize, n_head: usize }
}

impl Op for AttentionUnfused<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (n_q, n_kv, d, n_head) = (self.n_q, self.n_kv, self.d, self.n_head);
        check_heads(d, n_head)?;
        if n_q == 0 {
            return Ok(());
        }
        if n_kv == 0 || !n_kv.is_multiple_of(4) {
            return Err(Error::Device(format!(
                "unfused attention: n_kv = {n_kv} must be a positive multiple of 4"
            )));
        }
        need(self.q, n_q * d, "attention q")?;
        need(self.k, n_kv * d, "attention k")?;
        need(self.v, n_kv * d, "attention v")?;
        need(self.out, n_q * d, "attention out")?;
        let scores_len = k.unfused_scores_len(n_q, n_kv, n_head);
        need(self.scores, scores_len, "attention scores")?;
        let c = &k.config;
        let (wx, wy) = c.attn_mm_wg;
        let (q, kb, v, out, scores) = (self.q, self.k, self.v, self.out, self.scores);
        for (r0, rows) in ranges(n_q, c.attn_chunk.max(1)) {
            let params = AttnMmParams {
                n_q: rows as u32,
                d4: (d / 4) as u32,
                row0: r0 as u32,
                scale: 1.0 / (HEAD_DIM as f32).sqrt(),
                ..self.params()?
            };
            let work = || params.work(n_head);
            let row_groups = groups(rows, wy * c.attn_mm_tm);
            let binds = [whole(q), whole(kb), whole(&k.dummy), whole(scores)];
            let wg = (groups(n_kv, wx * c.attn_mm_tn), row_groups, n_head as u32);
            k.launch(pass, &k.attn_mm.qk, &params, &binds, wg, work)?;
            let (rows, cols) = (n_head * rows, n_kv);
            let softmax = Softmax {
                x: scores,
                rows,
                cols,
                causal: None,
            };
            k.record(pass, &softmax)?;
            let binds = [whole(scores), whole(v), whole(&k.dummy), whole(out)];
            let wg = (
                groups(HEAD_DIM / 4, wx * c.attn_mm_tn4),
                row_groups,
                n_head as u32,
            );
            k.launch(pass, &k.attn_mm.pv, &params, &binds, wg, work)?;
        }
        Ok(())
    }
}
