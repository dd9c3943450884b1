//! "Upload the inputs, run one kernel, read the result back": the path tests and benchmarks use
//! to compare each kernel with its CPU twin. Every call allocates its buffers and waits; the
//! model uses the record functions in `kernels/` on buffers it allocated once. This module
//! depends on `kernels`, never the reverse.

use crate::error::Result;

use super::context::GpuContext;
use super::kernels::{pad_cols, GpuMatrix, Kernels, WeightType};

impl Kernels {
    fn run(
        &self,
        ctx: &GpuContext,
        what: &str,
        record: impl FnOnce(&mut wgpu::ComputePass<'_>) -> Result<()>,
    ) -> Result<()> {
        ctx.scoped(what, || {
            self.begin();
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                record(&mut pass)?;
            }
            self.flush_params();
            ctx.submit_wait(enc)
        })
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
        self.run(ctx, "linear", |enc| {
            self.linear_typed(enc, &xb, wm.view(), bb.as_ref(), &ob, m, gelu)
        })?;
        ctx.read(&ob, m * n)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run_conv1d_k3(
        &self,
        ctx: &GpuContext,
        input: &[f32],
        c_in: usize,
        t_in: usize,
        weight: &[f32],
        bias: &[f32],
        c_out: usize,
        stride: usize,
        gelu: bool,
    ) -> Result<Vec<f32>> {
        let t_out = crate::backend::cpu::ops::conv1d_out_len(t_in, stride);
        let ib = ctx.upload("input", input);
        let wb = ctx.upload("weight", weight);
        let bb = ctx.upload("bias", bias);
        let ob = ctx.storage("out", (t_out * c_out * 4) as u64);
        self.run(ctx, "conv1d", |enc| {
            self.conv1d_k3(enc, &ib, &wb, &bb, &ob, c_in, t_in, c_out, stride, gelu)
        })?;
        ctx.read(&ob, t_out * c_out)
    }

    pub fn run_layer_norm(
        &self,
        ctx: &GpuContext,
        x: &[f32],
        rows: usize,
        cols: usize,
        gamma: &[f32],
        beta: &[f32],
    ) -> Result<Vec<f32>> {
        let xb = ctx.upload("x", x);
        let gb = ctx.upload("gamma", gamma);
        let bb = ctx.upload("beta", beta);
        let ob = ctx.storage("out", (rows * cols * 4) as u64);
        self.run(ctx, "layer_norm", |enc| {
            self.layer_norm(enc, &xb, &gb, &bb, &ob, rows, cols)
        })?;
        ctx.read(&ob, rows * cols)
    }

    pub fn run_gelu(&self, ctx: &GpuContext, x: &[f32]) -> Result<Vec<f32>> {
        let xb = ctx.upload("x", x);
        self.run(ctx, "gelu", |enc| self.gelu(enc, &xb, x.len()))?;
        ctx.read(&xb, x.len())
    }

    pub fn run_add(&self, ctx: &GpuContext, a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
        let ab = ctx.upload("a", a);
        let bb = ctx.upload("b", b);
        self.run(ctx, "add", |enc| self.add(enc, &ab, &bb, a.len()))?;
        ctx.read(&ab, a.len())
    }

    pub fn run_softmax(
        &self,
        ctx: &GpuContext,
        x: &[f32],
        rows: usize,
        cols: usize,
        causal: Option<usize>,
    ) -> Result<Vec<f32>> {
        let xb = ctx.upload("x", x);
        self.run(ctx, "softmax", |enc| {
            self.softmax(enc, &xb, rows, cols, causal)
        })?;
        ctx.read(&xb, rows * cols)
    }

    /// Uploads q, k and v, records `record(pass, [q, k, v, out])` with an `out_len`-value output
    /// and reads the output back.
    fn run_qkv(
        &self,
        ctx: &GpuContext,
        what: &str,
        [q, k, v]: [&[f32]; 3],
        out_len: usize,
        record: impl FnOnce(&mut wgpu::ComputePass<'_>, [&wgpu::Buffer; 4]) -> Result<()>,
    ) -> Result<Vec<f32>> {
        let qb = ctx.upload("q", q);
        let kb = ctx.upload("k", k);
        let vb = ctx.upload("v", v);
        let ob = ctx.storage("out", (out_len * 4) as u64);
        self.run(ctx, what, |enc| record(enc, [&qb, &kb, &vb, &ob]))?;
        ctx.read(&ob, out_len)
    }

    /// `attention` of q `[n_q, d]` against k and v `[n_kv, d]`, or with `unfused` (non-causal,
    /// n_kv a multiple of 4) `attention_unfused`.
    #[allow(clippy::too_many_arguments)]
    pub fn run_attention(
        &self,
        ctx: &GpuContext,
        qkv: [&[f32]; 3],
        n_q: usize,
        n_kv: usize,
        n_head: usize,
        causal: Option<usize>,
        unfused: bool,
    ) -> Result<Vec<f32>> {
        let d = n_head * super::kernels::HEAD_DIM;
        if !unfused {
            return self.run_qkv(ctx, "attention", qkv, n_q * d, |enc, [q, k, v, o]| {
                self.attention(enc, q, k, v, o, n_q, n_kv, d, n_head, causal)
            });
        }
        let scores = self.unfused_scores_len(n_q, n_kv, n_head);
        let sb = ctx.storage("scores", (scores * 4) as u64);
        let what = "attention (unfused)";
        self.run_qkv(ctx, what, qkv, n_q * d, |enc, [q, k, v, o]| {
            self.attention_unfused(enc, q, k, v, o, &sb, n_q, n_kv, d, n_head)
        })
    }

    /// `embed_batched` of `ids` (one sequence from position `pos0`) from a table stored as `wt`
    /// (f32 or int8; converted here as `GpuMatrix` stores model weights).
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
        let vocab = table.len() / d.max(1);
        let ib = ctx.upload("ids", ids);
        let tm = GpuMatrix::upload(ctx, "table", &table[..vocab * d], vocab, d, wt);
        let pb = ctx.upload("positions", positions);
        let ob = ctx.storage("out", (ids.len() * d * 4) as u64);
        self.run(ctx, "embed", |enc| {
            self.embed_batched(enc, &ib, tm.view(), &pb, &ob, ids.len(), d, pos0, ids.len())
        })?;
        ctx.read(&ob, ids.len() * d)
    }

    /// Argmax of each `n`-long row of `x`.
    pub fn run_argmax(
        &self,
        ctx: &GpuContext,
        x: &[f32],
        rows: usize,
        n: usize,
    ) -> Result<Vec<u32>> {
        let xb = ctx.upload("x", x);
        let ob = ctx.storage("out", (rows * 4) as u64);
        self.run(ctx, "argmax", |enc| self.argmax(enc, &xb, &ob, rows, n))?;
        ctx.read(&ob, rows)
    }

    /// `greedy_pick` over one row with the ids in `suppress` masked: (index, log-probability).
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
        let xb = ctx.upload("x", x);
        let mb = ctx.upload("mask", &bits);
        let ob = ctx.storage("out", 8);
        self.run(ctx, "greedy_pick", |enc| {
            self.greedy_pick(enc, &xb, &mb, 0, &ob, n)
        })?;
        let out: Vec<u32> = ctx.read(&ob, 2)?;
        Ok((out[0], f32::from_bits(out[1])))
    }
}
