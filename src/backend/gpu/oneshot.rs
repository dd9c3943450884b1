//! "Upload the inputs, run one kernel, read the result back": the path tests and benchmarks use
//! to compare each kernel with its CPU twin. Every call allocates its buffers and waits; the
//! model uses the record functions in `kernels/` on buffers it allocated once. This module
//! depends on `kernels`, never the reverse.

use crate::error::Result;

use super::context::GpuContext;
use super::kernels::{
    pad_cols, Add, Argmax, Attention, AttentionUnfused, Conv1d, Embed, Gelu, GpuMatrix, GreedyPick,
    Kernels, LayerNorm, Linear, Op, Softmax, WeightType,
};

impl Kernels {
    /// Records `op` alone in one command buffer, submits it, waits, and reads back the first
    /// `len` values of `out`.
    fn run<T: bytemuck::Pod>(
        &self,
        ctx: &GpuContext,
        what: &str,
        op: &impl Op,
        (out, len): (&wgpu::Buffer, usize),
    ) -> Result<Vec<T>> {
        let record = |pass: &mut wgpu::ComputePass<'_>| op.record(self, pass);
        ctx.scoped(what, || self.submit_pass(ctx, (what, true), record, |_| {}))?;
        ctx.read(out, len)
    }

    /// `x[m, k] · wᵀ + bias` (w `[n, k]`), GELU optional; any k (rows are zero-padded to a
    /// multiple of 4 here). The weights are stored on the device as `wt` (converted here; int8
    /// by `QuantizedMatrix::quantize`, so its CPU twin is `ops::linear` on the dequantized
    /// matrix).
    #[allow(clippy::too_many_arguments)]
    pub fn run_linear(
        &self,
        ctx: &GpuContext,
        x: &[f32],
        m: usize,
        k: usize,
        w: &[f32],
        wt: WeightType,
        n: usize,
        bias: Option<&[f32]>,
        gelu: bool,
    ) -> Result<Vec<f32>> {
        let (xp, kp) = pad_cols(x, m, k);
        let xb = ctx.upload("x", &xp);
        let wm = GpuMatrix::upload(ctx, "w", &w[..n * k], n, k, wt);
        debug_assert_eq!(wm.cols, kp);
        let bb = bias.map(|b| ctx.upload("bias", b));
        let ob = ctx.storage("out", (m * n * 4) as u64);
        let bias = bb.as_ref();
        let linear = Linear {
            bias,
            gelu,
            ..Linear::new(&xb, wm.view(), &ob, m)
        };
        self.run(ctx, "linear", &linear, (&ob, m * n))
    }

    /// `Conv1d` of `input [c_in, t_in]` with `weight [c_out, c_in, 3]` and `bias [c_out]`, GELU
    /// optional: `[t_out, c_out]`.
    pub fn run_conv1d_k3(
        &self,
        ctx: &GpuContext,
        [input, weight, bias]: [&[f32]; 3],
        (c_in, t_in, c_out, stride): (usize, usize, usize, usize),
        gelu: bool,
    ) -> Result<Vec<f32>> {
        let t_out = crate::backend::cpu::ops::conv1d_out_len(t_in, stride);
        let out = ctx.storage("out", (t_out * c_out * 4) as u64);
        let [input, weight, bias] =
            [("input", input), ("weight", weight), ("bias", bias)].map(|(l, v)| ctx.upload(l, v));
        let conv = Conv1d {
            input: &input,
            weight: &weight,
            bias: &bias,
            out: &out,
            c_in,
            t_in,
            c_out,
            stride,
            gelu,
        };
        self.run(ctx, "conv1d", &conv, (&out, t_out * c_out))
    }

    /// `LayerNorm` of every row of `x [rows, cols]`.
    pub fn run_layer_norm(
        &self,
        ctx: &GpuContext,
        x: &[f32],
        rows: usize,
        cols: usize,
        gamma: &[f32],
        beta: &[f32],
    ) -> Result<Vec<f32>> {
        let out = ctx.storage("out", (rows * cols * 4) as u64);
        let norm = LayerNorm {
            x: &ctx.upload("x", x),
            gamma: &ctx.upload("gamma", gamma),
            beta: &ctx.upload("beta", beta),
            out: &out,
            rows,
            cols,
            in_step: 1,
            in_first: 0,
        };
        self.run(ctx, "layer_norm", &norm, (&out, rows * cols))
    }

    pub fn run_gelu(&self, ctx: &GpuContext, x: &[f32]) -> Result<Vec<f32>> {
        let a = ctx.upload("x", x);
        self.run(ctx, "gelu", &Gelu { a: &a, n: x.len() }, (&a, x.len()))
    }

    pub fn run_add(&self, ctx: &GpuContext, a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
        let (ab, n) = (ctx.upload("a", a), a.len());
        let add = Add {
            a: &ab,
            b: &ctx.upload("b", b),
            n,
        };
        self.run(ctx, "add", &add, (&ab, n))
    }

    /// `Softmax` of the rows of `x [rows, cols]`.
    pub fn run_softmax(
        &self,
        ctx: &GpuContext,
        x: &[f32],
        rows: usize,
        cols: usize,
        causal: Option<usize>,
    ) -> Result<Vec<f32>> {
        let xb = ctx.upload("x", x);
        let softmax = Softmax {
            x: &xb,
            rows,
            cols,
            causal,
        };
        self.run(ctx, "softmax", &softmax, (&xb, rows * cols))
    }

    /// `Attention` of q `[n_q, d]` against k and v `[n_kv, d]` (`shape`: n_q, n_kv, heads of
    /// `HEAD_DIM`, causal offset), or with `unfused` (non-causal, n_kv a multiple of 4)
    /// `AttentionUnfused`.
    pub fn run_attention(
        &self,
        ctx: &GpuContext,
        [q, k, v]: [&[f32]; 3],
        (n_q, n_kv, n_head, causal): (usize, usize, usize, Option<usize>),
        unfused: bool,
    ) -> Result<Vec<f32>> {
        let d = n_head * super::kernels::HEAD_DIM;
        let (q, k, v) = (ctx.upload("q", q), ctx.upload("k", k), ctx.upload("v", v));
        let out = ctx.storage("out", (n_q * d * 4) as u64);
        let fused = Attention::single([&q, &k, &v, &out], (n_q, n_kv, d, n_head), causal);
        if unfused {
            let scores = self.unfused_scores_len(n_q, n_kv, n_head);
            let scores = &ctx.storage("scores", (scores * 4) as u64);
            let (q, k, v, out) = (&q, &k, &v, &out);
            let op = AttentionUnfused {
                q,
                k,
                v,
                out,
                scores,
                n_kv,
                n_q,
                d,
                n_head,
            };
            self.run(ctx, "attention (unfused)", &op, (out, n_q * d))
        } else {
            self.run(ctx, "attention", &fused, (&out, n_q * d))
        }
    }

    /// `Embed` of `ids` (one sequence from position `pos0`) from a table stored as `wt` (f32 or
    /// int8; converted here as `GpuMatrix` stores model weights).
    #[allow(clippy::too_many_arguments)]
    pub fn run_embed(
        &self,
        ctx: &GpuContext,
        table: &[f32],
        wt: WeightType,
        positions: &[f32],
        d: usize,
        ids: &[u32],
        pos0: usize,
    ) -> Result<Vec<f32>> {
        let (vocab, n_tok) = (table.len() / d.max(1), ids.len());
        let tm = GpuMatrix::upload(ctx, "table", &table[..vocab * d], vocab, d, wt);
        let out = ctx.storage("out", (n_tok * d * 4) as u64);
        let embed = Embed {
            ids: &ctx.upload("ids", ids),
            pos: &ctx.upload("positions", positions),
            out: &out,
            n_tok,
            d,
            pos0,
            per_seq: n_tok,
            table: tm.view(),
        };
        self.run(ctx, "embed", &embed, (&out, n_tok * d))
    }

    /// Argmax of each `n`-long row of `x`.
    pub fn run_argmax(
        &self,
        ctx: &GpuContext,
        x: &[f32],
        rows: usize,
        n: usize,
    ) -> Result<Vec<u32>> {
        let out = ctx.storage("out", (rows * 4) as u64);
        let argmax = Argmax {
            x: &ctx.upload("x", x),
            out: &out,
            n,
            rows,
        };
        self.run(ctx, "argmax", &argmax, (&out, rows))
    }

    /// `GreedyPick` over one row with the ids in `suppress` masked: (index, log-probability).
    pub fn run_greedy_pick(
        &self,
        ctx: &GpuContext,
        x: &[f32],
        suppress: &[u32],
    ) -> Result<(u32, f32)> {
        let n = x.len();
        let mut bits = vec![0u32; n.div_ceil(32)];
        for &t in suppress {
            bits[t as usize / 32] |= 1 << (t % 32);
        }
        let out = ctx.storage("out", 8);
        let pick = GreedyPick {
            x: &ctx.upload("x", x),
            mask: &ctx.upload("mask", &bits),
            out: &out,
            n,
            mask_word: 0,
        };
        let out: Vec<u32> = self.run(ctx, "greedy_pick", &pick, (&out, 2))?;
        Ok((out[0], f32::from_bits(out[1])))
    }
}
