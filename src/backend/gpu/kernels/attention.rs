//! Fused multi-head attention (online softmax), `shaders/attention.wgsl`: `attn_tiled` for many
//! queries (the encoder), `attn_split` for few (decoder steps); every sequence of a batch in one
//! dispatch. The unfused path for CPU-type adapters is `attn_mm.rs`.
//!
//! CPU twin: `backend/cpu/ops/attention.rs` (`ops::attention`). Test:
//! `tests/kernels_vs_cpu/attention.rs`.

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::Builder;
use super::op::{word, Op};
use super::{groups, need, whole, Kernels, HEAD_DIM};

super::wgsl_params! {
    AttentionParams in "attention.wgsl" {
        n_q: u32,
        n_kv: u32,
        /// d / 4, the row stride in vec4s.
        d4: u32,
        n_head: u32,
        /// 1: query i sees keys `0..=offset + i`.
        causal: u32,
        offset: u32,
        scale: f32,
        /// Rows between sequences in k / v (batched dispatch, workgroup_id.z).
        kv_stride: u32,
    }
}

impl AttentionParams {
    /// `n_seq` sequences of this shape.
    fn work(&self, n_seq: usize) -> Work {
        let (n_q, n_kv, d, seqs) = (
            self.n_q as f64,
            self.n_kv as f64,
            4.0 * self.d4 as f64,
            n_seq as f64,
        );
        // Keys each query sees: all, or (causal) those up to its position.
        let pairs = if self.causal != 0 {
            (0..self.n_q)
                .map(|i| (self.offset as f64 + i as f64 + 1.0).min(n_kv))
                .sum()
        } else {
            n_q * n_kv
        };
        Work::new(
            seqs * 4.0 * pairs * d,
            seqs * 4.0 * (2.0 * n_q * d + 2.0 * n_kv * d),
        )
    }
}

super::build::pipelines! { tiled: "attn_tiled", split: "attn_split" }

pub(super) fn compile(b: &Builder<'_>) -> Pipelines {
    let c = b.config;
    let consts = [
        ("AT_BQ", c.attn_bq),
        ("AT_BK", c.attn_bk),
        ("AT_HD4", (HEAD_DIM / 4) as u32),
        ("AD_WG", c.attn_split_wg),
    ];
    let m = b.module::<AttentionParams>("attention", &consts, "");
    Pipelines::new(b, &m, &b.layouts.ro3_rw)
}

/// The attention kernels' check that `d` is `n_head` heads of `HEAD_DIM`.
pub(super) fn check_heads(d: usize, n_head: usize) -> Result<()> {
    if n_head == 0 || d != n_head * HEAD_DIM {
        return Err(Error::Device(format!(
            "attention: d = {d} with {n_head} heads; the kernels are compiled for head_dim {HEAD_DIM}"
        )));
    }
    Ok(())
}

super::op::kernel_ops! {
    /// Fused multi-head attention as `ops::attention` (head_dim `HEAD_DIM`) for `n_seq`
    /// sequences in one dispatch, on the query / output rows from `row0` on: sequence s has
    /// query rows `row0 + s * n_q ..` of q / out and key / value rows `s * kv_stride ..` of k / v
    /// (`kv_stride` 0: all sequences attend to the same keys). q and out are bound from `row0`
    /// (the cross-attention of one window's sequences in a batched pass), so `row0 · d` values
    /// must be a multiple of the storage offset alignment (d is a multiple of 64). With
    /// `causal = Some(p)` query i sees keys `0..=p + i`. The few-query kernel serves
    /// `n_q ≤ attn_split_max_q` (decoder steps), the tiled one the rest.
    Attention(AttentionParams) {
        q, k, v, out; n_q, n_kv, n_head, kv_stride;
        d: usize, causal: Option<usize>, row0: usize, n_seq: usize,
    }
}

impl<'a> Attention<'a> {
    /// One sequence's attention over all its query rows: `(n_q, n_kv, d, n_head)`.
    pub fn single(
        [q, k, v, out]: [&'a wgpu::Buffer; 4],
        (n_q, n_kv, d, n_head): (usize, usize, usize, usize),
        causal: Option<usize>,
    ) -> Self {
        let (kv_stride, row0, n_seq) = (0, 0, 1);
        Attention {
            q,
            k,
            v,
            out,
            n_q,
            n_kv,
            n_head,
            kv_stride,
            d,
            causal,
            row0,
            n_seq,
        }
    }
}

impl Op for Attention<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (n_q, n_kv, d, n_seq, row0) = (self.n_q, self.n_kv, self.d, self.n_seq, self.row0);
        check_heads(d, self.n_head)?;
        if n_q == 0 || n_seq == 0 {
            return Ok(());
        }
        if n_kv == 0 {
            return Err(Error::Device("attention: no keys".into()));
        }
        let kv_stride = self.kv_stride;
        if n_seq > 1 && kv_stride != 0 && kv_stride < n_kv {
            return Err(Error::Device(format!(
                "attention: sequences {kv_stride} rows apart hold {n_kv} keys"
            )));
        }
        let kv_rows = (n_seq - 1) * kv_stride + n_kv;
        need(self.k, kv_rows * d, "attention k")?;
        need(self.v, kv_rows * d, "attention v")?;
        let params = AttentionParams {
            d4: (d / 4) as u32,
            causal: self.causal.is_some() as u32,
            offset: word("attention", self.causal.unwrap_or(0))?,
            scale: 1.0 / (HEAD_DIM as f32).sqrt(),
            ..self.params()?
        };
        // q / out: `need` inside `range` checks the rows bound.
        let rows = |b| match row0 {
            0 => need(b, n_seq * n_q * d, "attention rows").map(|()| whole(b)),
            _ => k.range(b, row0 * d, n_seq * n_q * d, "attention rows"),
        };
        let binds = [rows(self.q)?, whole(self.k), whole(self.v), rows(self.out)?];
        let (kernel, wg) = if n_q <= k.config.attn_split_max_q {
            let wg = (self.n_head as u32, n_q as u32, n_seq as u32);
            (&k.attention.split, wg)
        } else {
            let wg = (
                groups(n_q, k.config.attn_bq),
                self.n_head as u32,
                n_seq as u32,
            );
            (&k.attention.tiled, wg)
        };
        k.launch(pass, kernel, &params, &binds, wg, || params.work(n_seq))
    }
}

#[cfg(test)]
mod tests {
    use super::AttentionParams;

    #[test]
    fn causal_work_counts_visible_keys() {
        // 3 queries at positions 2, 3, 4 of 5 keys, head dim 64, two sequences.
        let p = AttentionParams {
            n_q: 3,
            n_kv: 5,
            d4: 16,
            n_head: 1,
            causal: 1,
            offset: 2,
            ..Default::default()
        };
        assert_eq!(p.work(2).flops, 2.0 * 4.0 * (3.0 + 4.0 + 5.0) * 64.0);
    }
}
