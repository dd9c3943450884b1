//! Fused multi-head attention (online softmax), `shaders/attention.wgsl`: `attn_tiled` for many
//! queries (the encoder), `attn_split` for few (decoder steps); every sequence of a batch in one
//! dispatch. The unfused path for CPU-type adapters is `attn_mm.rs`.
//!
//! CPU twin: `backend/cpu/ops/attention.rs` (`ops::attention`). Test:
//! `tests/kernels_vs_cpu/attention.rs`.

use crate::error::{Error, Result};

use super::super::profile::Work;
use super::build::{Builder, Kernel};
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

pub(super) struct Pipelines {
    tiled: Kernel,
    split: Kernel,
}

pub(super) fn compile(b: &Builder<'_>) -> Pipelines {
    let c = b.config;
    let consts = [
        ("AT_BQ", c.attn_bq),
        ("AT_BK", c.attn_bk),
        ("AT_HD4", (HEAD_DIM / 4) as u32),
        ("AD_WG", c.attn_split_wg),
    ];
    let m = b.module::<AttentionParams>("attention", &consts, "");
    Pipelines {
        tiled: b.pipeline(&m, "attn_tiled", &b.layouts.ro3_rw),
        split: b.pipeline(&m, "attn_split", &b.layouts.ro3_rw),
    }
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

impl Kernels {
    /// Fused multi-head attention, as `ops::attention` (head_dim must be `HEAD_DIM`). The
    /// few-query kernel serves `n_q ≤ attn_split_max_q` (decoder steps), the tiled one the rest.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n_q: usize,
        n_kv: usize,
        d: usize,
        n_head: usize,
        causal: Option<usize>,
    ) -> Result<()> {
        self.attention_batched_at(pass, q, k, v, out, 0, n_q, n_kv, d, n_head, causal, 1, 0)
    }

    /// `attention` for `n_seq` sequences in one dispatch, on the query / output rows from `row0`
    /// on: sequence s has query rows `row0 + s * n_q ..` of q / out and key / value rows
    /// `s * kv_stride ..` of k / v (`kv_stride` 0: all sequences attend to the same keys). q and
    /// out are bound from `row0` (the cross-attention of one window's sequences in a batched
    /// pass), so `row0 · d` values must be a multiple of the storage offset alignment (d is a
    /// multiple of 64).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_batched_at(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        row0: usize,
        n_q: usize,
        n_kv: usize,
        d: usize,
        n_head: usize,
        causal: Option<usize>,
        n_seq: usize,
        kv_stride: usize,
    ) -> Result<()> {
        check_heads(d, n_head)?;
        if n_q == 0 || n_seq == 0 {
            return Ok(());
        }
        if n_kv == 0 {
            return Err(Error::Device("attention: no keys".into()));
        }
        if n_seq > 1 && kv_stride != 0 && kv_stride < n_kv {
            return Err(Error::Device(format!(
                "attention: sequences {kv_stride} rows apart hold {n_kv} keys"
            )));
        }
        need(q, (row0 + n_seq * n_q) * d, "attention q")?;
        need(k, ((n_seq - 1) * kv_stride + n_kv) * d, "attention k")?;
        need(v, ((n_seq - 1) * kv_stride + n_kv) * d, "attention v")?;
        need(out, (row0 + n_seq * n_q) * d, "attention out")?;
        let params = AttentionParams {
            n_q: n_q as u32,
            n_kv: n_kv as u32,
            d4: (d / 4) as u32,
            n_head: n_head as u32,
            causal: causal.is_some() as u32,
            offset: causal.unwrap_or(0) as u32,
            scale: 1.0 / (HEAD_DIM as f32).sqrt(),
            kv_stride: kv_stride as u32,
            ..Default::default()
        };
        let rows = |b| match row0 {
            0 => Ok(whole(b)),
            _ => self.range(b, row0 * d, n_seq * n_q * d, "attention rows"),
        };
        let binds = [rows(q)?, whole(k), whole(v), rows(out)?];
        let (kernel, wg) = if n_q <= self.config.attn_split_max_q {
            (
                &self.attention.split,
                (n_head as u32, n_q as u32, n_seq as u32),
            )
        } else {
            (
                &self.attention.tiled,
                (
                    groups(n_q, self.config.attn_bq),
                    n_head as u32,
                    n_seq as u32,
                ),
            )
        };
        self.launch(pass, kernel, &params, &binds, wg, || params.work(n_seq))
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
