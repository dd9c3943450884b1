//! Whisper's forward pass on the CPU, block for block as OpenAI's `model.py`: the reference the
//! GPU backend is tested against. Weights are held in f32; every matrix product goes through
//! `ops::linear` / `ops::attention` (the `gemm` crate, multi-threaded).

use crate::backend::cpu::int8::{Int8Matrix, OutLayout};
use crate::backend::cpu::ops;
use crate::backend::{Backend, DecodePass};
use crate::error::{Error, Result};
use crate::model::config::ModelDims;

mod kv_cache;
mod load;

use kv_cache::KvCache;

/// How the CPU path stores matrix weights (`--dtype`): f32 (the reference) or row-scaled int8
/// (see [`crate::backend::cpu::int8`]). Everything else (norms, biases, convolutions, positions,
/// attention) stays f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuWeights {
    #[default]
    F32,
    Int8,
}

/// A weight matrix `[rows, cols]` in either storage.
enum Matrix {
    F32(Vec<f32>),
    Int8(Int8Matrix),
}

impl Matrix {
    /// `out[m, rows] = x[m, cols] · selfᵀ + bias`. With `rowwise`, each row's result is what
    /// it is in a call of at most `ops::SMALL_M` rows, whatever `m`: f32 as `ops::linear` says;
    /// int8 as is (its sums are exact integers and its activations are quantized per row, so
    /// rows never interact).
    fn product(
        &self,
        x: &[f32],
        (m, cols): (usize, usize),
        bias: Option<&[f32]>,
        rowwise: bool,
        out: &mut [f32],
    ) {
        match self {
            Matrix::F32(w) => ops::linear(x, m, cols, w, w.len() / cols, bias, rowwise, out),
            Matrix::Int8(w) => crate::backend::cpu::int8::linear(x, m, w, bias, out),
        }
    }
}

/// `y = x · Wᵀ + b`, W as PyTorch's `[n_out, n_in]`.
struct Linear {
    w: Matrix,
    b: Option<Vec<f32>>,
    n_in: usize,
    n_out: usize,
}

impl Linear {
    /// `rows` rows of `x` -> `out` (`rows * n_out`).
    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        self.forward_rows(x, 0, rows, false, out);
    }

    /// [`Linear::forward`] of each of `linears` on the same `rows` of `x`, into `outs` laid out
    /// as `layout`: int8 ones quantize `x` once and share the thread pool
    /// (`int8::linear_shared`), with the bits each `forward` gives. f32 weights write rows
    /// only ([`Linear::writes_blocks64`] says where blocks can be asked for).
    fn forward_shared(
        linears: &[&Linear],
        x: &[f32],
        rows: usize,
        outs: &mut [&mut [f32]],
        layout: OutLayout,
    ) {
        assert_eq!(linears.len(), outs.len());
        let int8: Option<Vec<_>> = linears
            .iter()
            .zip(outs.iter_mut())
            .map(|(l, out)| match &l.w {
                Matrix::Int8(w) => Some(crate::backend::cpu::int8::Product {
                    w,
                    bias: l.b.as_deref(),
                    out: &mut out[..rows * l.n_out],
                    layout,
                }),
                Matrix::F32(_) => None,
            })
            .collect();
        match int8 {
            Some(mut products) => crate::backend::cpu::int8::linear_shared(x, rows, &mut products),
            None => {
                assert_eq!(layout, OutLayout::Rows, "f32 weights write rows");
                linears
                    .iter()
                    .zip(outs.iter_mut())
                    .for_each(|(l, out)| l.forward(x, rows, out))
            }
        }
    }

    /// Whether [`Linear::forward_shared`] writes [`OutLayout::Blocks64`] for it without a
    /// copy: int8 weights on the panel kernels.
    fn writes_blocks64(&self) -> bool {
        matches!(&self.w, Matrix::Int8(w) if w.writes_blocks64())
    }

    /// Rows `row0..row0 + rows` of `x` into the same rows of `out`; `rowwise` as
    /// `Matrix::product` says.
    fn forward_rows(&self, x: &[f32], row0: usize, rows: usize, rowwise: bool, out: &mut [f32]) {
        let (x, out) = (&x[row0 * self.n_in..], &mut out[row0 * self.n_out..]);
        let (b, out) = (self.b.as_deref(), &mut out[..rows * self.n_out]);
        self.w.product(x, (rows, self.n_in), b, rowwise, out);
    }
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl LayerNorm {
    fn forward(&self, x: &[f32], out: &mut [f32]) {
        ops::layer_norm(
            x,
            self.gamma.len(),
            &self.gamma,
            &self.beta,
            &mut out[..x.len()],
        );
    }
}

/// Multi-head attention projections (OpenAI `MultiHeadAttention`; key has no bias).
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
}

/// OpenAI `ResidualAttentionBlock`: pre-LN self-attention, (decoder only) cross-attention, MLP.
type Block = crate::backend::load_common::Block<LayerNorm, Attention, Linear>;

impl Block {
    /// `out = fc2(gelu(fc1(x)))`, using `hidden` (`rows * ffn`) as scratch.
    fn mlp(&self, x: &[f32], rows: usize, hidden: &mut [f32], out: &mut [f32]) {
        let hidden = &mut hidden[..rows * self.fc1.n_out];
        self.fc1.forward(x, rows, hidden);
        ops::gelu(hidden);
        self.fc2.forward(hidden, rows, out);
    }
}

/// A transformer block's activations, grown to the largest call seen (rows: the encoder's
/// positions, or the decoder's sequences x new tokens), so that steady-state calls allocate
/// nothing. `last` is the decoder's (each sequence's last row).
#[derive(Default)]
struct BlockScratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    a: Vec<f32>,
    o: Vec<f32>,
    hidden: Vec<f32>,
    last: Vec<f32>,
}

impl BlockScratch {
    fn ensure(&mut self, rows: usize, d: usize, ffn: usize) {
        for buf in [
            &mut self.x,
            &mut self.h,
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.a,
            &mut self.o,
        ] {
            if buf.len() < rows * d {
                buf.resize(rows * d, 0.0);
            }
        }
        if self.hidden.len() < rows * ffn {
            self.hidden.resize(rows * ffn, 0.0);
        }
    }
}

/// The encoder's activations, kept from window to window: a 30-s window of tiny fills about
/// 40 MB of them, which fresh allocations paid for in page faults and zeroing every window.
#[derive(Default)]
struct EncoderScratch {
    /// conv1's output, time-major (conv2's input).
    x1: Vec<f32>,
    /// The residual stream and the blocks' intermediates.
    blocks: BlockScratch,
    /// One window's output and every decoder layer's cross-attention K/V projections of it
    /// (`encode_windows`).
    out: Vec<f32>,
    cross_kv: Vec<f32>,
}

/// `buf` holding `len` elements, reusing its allocation (new elements zero; the callers
/// overwrite all of them).
fn sized(buf: &mut Vec<f32>, len: usize) -> &mut Vec<f32> {
    buf.resize(len, 0.0);
    buf
}

pub struct CpuModel {
    dims: ModelDims,
    conv1_w: Vec<f32>,
    conv1_b: Vec<f32>,
    conv2_w: Vec<f32>,
    conv2_b: Vec<f32>,
    enc_pos: Vec<f32>,
    enc_blocks: Vec<Block>,
    enc_ln: LayerNorm,
    /// Token embedding, also the tied output projection.
    tok_emb: Matrix,
    dec_pos: Vec<f32>,
    dec_blocks: Vec<Block>,
    dec_ln: LayerNorm,
    /// `[n_audio_ctx, d]` of encoded window 0.
    encoder_out: Vec<f32>,
    /// Cross-attention K and V per decoder layer, computed once per window, head-major
    /// (`ops::KvLayout::Heads`): `[n_windows, n_head, n_audio_ctx, head_dim]` each.
    cross_k: Vec<Vec<f32>>,
    cross_v: Vec<Vec<f32>>,
    /// Windows encoded, sequences of the pass, their windows and cached positions.
    pass: DecodePass,
    cache: KvCache,
    scratch: BlockScratch,
    encoder_scratch: EncoderScratch,
    /// Of the last `encode_windows`, ms in the cross-attention K/V ([`Diagnostics::cross_kv_ms`]).
    ///
    /// [`Diagnostics::cross_kv_ms`]: crate::backend::Diagnostics::cross_kv_ms
    cross_kv_ms: f64,
    /// The logits row of `decode_greedy`.
    greedy_logits: Vec<f32>,
    dtype: CpuWeights,
    /// The precision of the encoder's attention products (`--dtype int8-bf16` and
    /// `int8-bf16x3`: bf16 where the CPU has it; f32 otherwise).
    encoder_attention: ops::Products,
    /// Threads of the rayon pool the model was loaded in (the caller's `--threads` pool; calls
    /// such as `device_name` may come from outside it).
    threads: usize,
}

impl CpuModel {
    /// OpenAI `AudioEncoder.forward` for one window: mel `[n_mels, 2 * n_audio_ctx]` ->
    /// `s.out`, `[n_audio_ctx, d]`.
    fn run_encoder(&self, mel: &[f32], s: &mut EncoderScratch) {
        let dims = &self.dims;
        // `encode_batch` has checked the window's size.
        let (d, n_mels, t_in) = (dims.n_audio_state, dims.n_mels, 2 * dims.n_audio_ctx);
        // Stem: conv1 (stride 1) + GELU, conv2 (stride 2) + GELU. conv1 reads the mel channels
        // first and writes time-major rows, which conv2 reads.
        let x1 = sized(&mut s.x1, t_in * d);
        ops::conv1d_k3(mel, n_mels, t_in, &self.conv1_w, &self.conv1_b, d, 1, x1);
        ops::gelu(x1);
        let n = ops::conv1d_out_len(t_in, 2);
        debug_assert_eq!(n, dims.n_audio_ctx);
        s.blocks.ensure(n, d, dims.n_audio_ffn);
        let BlockScratch {
            x,
            h,
            q,
            k,
            v,
            a,
            o,
            hidden,
            ..
        } = &mut s.blocks;
        let [x, h, q, k, v, a, o] = [x, h, q, k, v, a, o].map(|buf| &mut buf[..n * d]);
        let hidden = &mut hidden[..n * dims.n_audio_ffn];
        let (w, b) = (&self.conv2_w, &self.conv2_b);
        ops::conv1d_k3_from(ops::ConvInput::TimeMajor, x1, (d, t_in, d, 2), w, b, x);
        ops::gelu(x);
        ops::add_assign(x, &self.enc_pos);

        for block in &self.enc_blocks {
            block.attn_ln.forward(x, h);
            let attn = &block.attn;
            let qkv = [&attn.query, &attn.key, &attn.value];
            let qkv_out = &mut [&mut *q, &mut *k, &mut *v];
            Linear::forward_shared(&qkv, h, n, qkv_out, OutLayout::Rows);
            ops::attention(
                self.encoder_attention,
                q,
                k,
                v,
                ops::KvLayout::Rows,
                n,
                n,
                d,
                dims.n_audio_head,
                None,
                a,
            );
            block.attn.out.forward(a, n, o);
            ops::add_assign(x, o);
            block.mlp_ln.forward(x, h);
            block.mlp(h, n, hidden, o);
            ops::add_assign(x, o);
        }
        self.enc_ln.forward(x, sized(&mut s.out, n * d));
    }

    /// The model with its encoder's attention products in `products` (f32 unless asked; bf16
    /// only where [`ops::Products::on_this_cpu`] says so).
    pub fn with_encoder_attention(mut self, products: ops::Products) -> Self {
        self.encoder_attention = products.on_this_cpu();
        self
    }
}

impl crate::backend::Diagnostics for CpuModel {
    fn weights_dtype(&self) -> &'static str {
        match (self.dtype, self.encoder_attention) {
            (CpuWeights::F32, _) => "f32",
            (CpuWeights::Int8, ops::Products::F32) => "int8",
            (CpuWeights::Int8, ops::Products::Bf16) => "int8-bf16",
            (CpuWeights::Int8, ops::Products::Bf16x3) => "int8-bf16x3",
            (CpuWeights::Int8, ops::Products::Bf16Values) => "int8-bf16v",
        }
    }

    fn cross_kv_ms(&self) -> Option<f64> {
        Some(self.cross_kv_ms)
    }
}

impl Backend for CpuModel {
    fn dims(&self) -> &ModelDims {
        &self.dims
    }

    fn device_name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn diagnostics(&mut self) -> Option<&mut dyn crate::backend::Diagnostics> {
        Some(self)
    }

    fn encode_windows(&mut self, mels: &[&[f32]]) -> Result<()> {
        let (n, d, h) = (
            self.dims.n_audio_ctx,
            self.dims.n_text_state,
            self.dims.n_text_head,
        );
        // Sized, not cleared: every value is written below, and a batch of the same size as
        // the last rewrites the buffers in place.
        for buf in self.cross_k.iter_mut().chain(&mut self.cross_v) {
            buf.resize(mels.len() * n * d, 0.0);
        }
        let mut s = std::mem::take(&mut self.encoder_scratch);
        self.cross_kv_ms = 0.0;
        // Window by window, each exactly as if encoded alone.
        for (w, mel) in mels.iter().enumerate() {
            self.run_encoder(mel, &mut s);
            let cross_kv = std::time::Instant::now();
            // Every decoder layer's cross-attention keys and values of the window, from one
            // quantization of the encoder output: [layer][key, value][n, d].
            let projections: Vec<&Linear> = self
                .dec_blocks
                .iter()
                .flat_map(|block| {
                    let cross = block
                        .cross
                        .as_ref()
                        .expect("decoder blocks have cross-attention");
                    [&cross.key, &cross.value]
                })
                .collect();
            // Each written head-major into its window's part of the layer's buffer: for heads
            // of 64, the int8 panel kernels write that layout themselves (64-column blocks);
            // otherwise rows into the scratch, then copied.
            let window = w * n * d..(w + 1) * n * d;
            let mut heads: Vec<&mut [f32]> = self
                .cross_k
                .iter_mut()
                .zip(&mut self.cross_v)
                .flat_map(|(k, v)| [&mut k[window.clone()], &mut v[window.clone()]])
                .collect();
            if d / h == 64 && projections.iter().all(|l| l.writes_blocks64()) {
                Linear::forward_shared(&projections, &s.out, n, &mut heads, OutLayout::Blocks64);
            } else {
                let kv = sized(&mut s.cross_kv, projections.len() * n * d);
                let mut rows: Vec<&mut [f32]> = kv.chunks_exact_mut(n * d).collect();
                Linear::forward_shared(&projections, &s.out, n, &mut rows, OutLayout::Rows);
                for (rows, out) in s.cross_kv.chunks_exact(n * d).zip(heads) {
                    ops::write_head_major(rows, n, d, h, out);
                }
            }
            self.cross_kv_ms += cross_kv.elapsed().as_secs_f64() * 1e3;
            if w == 0 {
                self.encoder_out.clear();
                self.encoder_out.extend_from_slice(&s.out);
            }
        }
        self.encoder_scratch = s;
        Ok(())
    }

    crate::backend::decode_pass_field!(pass);

    fn encoder_output(&self) -> Result<Vec<f32>> {
        Ok(self.encoder_out.clone())
    }

    fn reserve_sequences(&mut self, n_seq: usize) {
        self.cache
            .ensure(n_seq, self.dims.n_text_ctx * self.dims.n_text_state);
    }

    fn decode(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        self.forward_decoder(tokens, logits, None)
    }

    fn decode_greedy(&mut self, tokens: &[u32], suppress: &[u32]) -> Result<(u32, f32)> {
        // The logits row lives in the model so the step allocates nothing.
        let mut logits = std::mem::take(&mut self.greedy_logits);
        logits.resize(self.dims.n_vocab, 0.0);
        let result = self.forward_decoder(tokens, &mut logits, None);
        let choice = crate::backend::masked_argmax(&mut logits, suppress);
        self.greedy_logits = logits;
        result.map(|()| choice)
    }

    fn reorder_caches(&mut self, src: &[usize]) -> Result<()> {
        let seq_len = self.dims.n_text_ctx * self.dims.n_text_state;
        self.cache.ensure(src.len(), seq_len);
        let used = self.pass.cached_len() * self.dims.n_text_state;
        self.cache.reorder(src, seq_len, used);
        Ok(())
    }

    fn cross_attention(&mut self, tokens: &[u32], heads: &[(usize, usize)]) -> Result<Vec<f32>> {
        let mut logits = vec![0.0; self.dims.n_vocab];
        let mut weights = vec![0.0; heads.len() * tokens.len() * self.dims.n_audio_ctx];
        self.forward_decoder(tokens, &mut logits, Some((heads, &mut weights)))?;
        Ok(weights)
    }
}

/// Where `forward_decoder` writes cross-attention weights: the (layer, head) pairs and the output.
type AttentionCapture<'a> = (&'a [(usize, usize)], &'a mut Vec<f32>);

/// How the rows of a decoder call go through a matrix product so that each row gets exactly
/// what decoding its window alone gives (windows decoded together equal windows decoded one by
/// one): with one window, all rows at once, as always; with several, all at once through
/// `Matrix::product` rowwise when each window alone would have been at most `ops::SMALL_M`
/// rows (its per-row results do not depend on the row count), else window by window with the
/// row counts a lone window has.
#[derive(Clone, Copy)]
struct RowSplit<'a> {
    /// `(window, first sequence, sequences)` runs (`backend::window_runs`).
    runs: &'a [(usize, usize, usize)],
    rows_per_seq: usize,
    total_rows: usize,
}

impl RowSplit<'_> {
    /// Calls `f(first row, rows, rowwise)` for each group of rows to compute together.
    fn each(&self, mut f: impl FnMut(usize, usize, bool)) {
        if self.runs.len() <= 1 {
            return f(0, self.total_rows, false);
        }
        let largest = self.runs.iter().map(|r| r.2).max().unwrap_or(0) * self.rows_per_seq;
        if largest <= ops::SMALL_M {
            return f(0, self.total_rows, true);
        }
        for &(_, seq0, n_seq) in self.runs {
            f(seq0 * self.rows_per_seq, n_seq * self.rows_per_seq, false);
        }
    }

    fn linear(&self, lin: &Linear, x: &[f32], out: &mut [f32]) {
        self.each(|row0, rows, rowwise| lin.forward_rows(x, row0, rows, rowwise, out));
    }

    /// `Block::mlp` over the groups.
    fn mlp(&self, block: &Block, x: &[f32], hidden: &mut [f32], out: &mut [f32]) {
        self.linear(&block.fc1, x, hidden);
        ops::gelu(&mut hidden[..self.total_rows * block.fc1.n_out]);
        self.linear(&block.fc2, hidden, out);
    }
}

/// Cross-attention of the query rows `q` (runs of sequences, `rows_per_seq` rows each) over
/// their windows' keys and values (head-major, `n_ctx · d` values per window) into `out`: one
/// `ops::attention` per run, as a lone window's pass makes it; runs in parallel when they
/// are the same size.
#[allow(clippy::too_many_arguments)]
fn cross_attention_runs(
    runs: &[(usize, usize, usize)],
    rows_per_seq: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_ctx: usize,
    d: usize,
    n_head: usize,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    let kv = |w: usize| w * n_ctx * d..(w + 1) * n_ctx * d;
    let attend = |&(w, _, n_seq): &(usize, usize, usize), q: &[f32], out: &mut [f32]| {
        let rows = n_seq * rows_per_seq;
        let (k, v) = (&k[kv(w)], &v[kv(w)]);
        ops::attention(
            ops::Products::F32,
            q,
            k,
            v,
            ops::KvLayout::Heads,
            rows,
            n_ctx,
            d,
            n_head,
            None,
            out,
        );
    };
    let rows = runs[0].2 * rows_per_seq;
    if runs.len() > 1 && runs.iter().all(|r| r.2 * rows_per_seq == rows) {
        out.par_chunks_mut(rows * d)
            .zip(q.par_chunks(rows * d))
            .zip(runs.par_iter())
            .for_each(|((out, q), run)| attend(run, q, out));
    } else {
        for run in runs {
            let at = run.1 * rows_per_seq * d..(run.1 + run.2) * rows_per_seq * d;
            attend(run, &q[at.clone()], &mut out[at]);
        }
    }
}

impl CpuModel {
    /// OpenAI `TextDecoder.forward` with a KV cache: only the new tokens of each sequence are
    /// computed. With `capture`, the cross-attention weights of the listed heads are written out
    /// (`[heads, rows, n_audio_ctx]`, for one sequence).
    fn forward_decoder(
        &mut self,
        tokens: &[u32],
        logits: &mut [f32],
        mut capture: Option<AttentionCapture<'_>>,
    ) -> Result<()> {
        let dims = &self.dims;
        let (d, n_head, n_vocab) = (dims.n_text_state, dims.n_text_head, dims.n_vocab);
        let n = self.pass.check_step(tokens, dims)?;
        let (n_seq, pos0) = (self.pass.n_seq(), self.pass.cached_len());
        if logits.len() < n_seq * n_vocab {
            return Err(Error::Internal(
                "logits buffer smaller than n_seq x n_vocab".into(),
            ));
        }
        let n_kv = pos0 + n;
        let rows = n_seq * n;
        let seq_len = dims.n_text_ctx * d;
        let n_audio = dims.n_audio_ctx;
        self.scratch.ensure(rows, d, dims.n_text_ffn);
        let s = &mut self.scratch;
        let cache = &mut self.cache;
        let runs = self.pass.runs();
        let split = RowSplit {
            runs,
            rows_per_seq: n,
            total_rows: rows,
        };
        let x = &mut s.x[..rows * d];
        for (seq, ids) in tokens.chunks_exact(n).enumerate() {
            let rows = &mut x[seq * n * d..(seq + 1) * n * d];
            match &self.tok_emb {
                Matrix::F32(table) => ops::embed(table, &self.dec_pos, d, ids, pos0, rows),
                Matrix::Int8(table) => {
                    for (i, (&id, row)) in ids.iter().zip(rows.chunks_exact_mut(d)).enumerate() {
                        table.row_f32(id as usize, row);
                        ops::add_assign(row, &self.dec_pos[(pos0 + i) * d..(pos0 + i + 1) * d]);
                    }
                }
            }
        }
        for (i, block) in self.dec_blocks.iter().enumerate() {
            // Causal self-attention: each sequence's new K/V rows go into its cache, and its
            // queries see its cache.
            block.attn_ln.forward(x, &mut s.h);
            split.linear(&block.attn.query, &s.h, &mut s.q);
            split.linear(&block.attn.key, &s.h, &mut s.k);
            split.linear(&block.attn.value, &s.h, &mut s.v);
            for seq in 0..n_seq {
                let base = seq * seq_len;
                let new = seq * n * d..(seq + 1) * n * d;
                cache.k[i][base + pos0 * d..base + n_kv * d].copy_from_slice(&s.k[new.clone()]);
                cache.v[i][base + pos0 * d..base + n_kv * d].copy_from_slice(&s.v[new.clone()]);
                ops::attention(
                    ops::Products::F32,
                    &s.q[new.clone()],
                    &cache.k[i][base..base + n_kv * d],
                    &cache.v[i][base..base + n_kv * d],
                    ops::KvLayout::Rows,
                    n,
                    n_kv,
                    d,
                    n_head,
                    Some(pos0),
                    &mut s.a[new],
                );
            }
            split.linear(&block.attn.out, &s.a, &mut s.o);
            ops::add_assign(x, &s.o[..rows * d]);

            // Cross-attention over each sequence's window: no mask, so the queries of every
            // sequence of a window go through together.
            let (cross_ln, cross) = (
                block.cross_ln.as_ref().unwrap(),
                block.cross.as_ref().unwrap(),
            );
            cross_ln.forward(x, &mut s.h);
            split.linear(&cross.query, &s.h, &mut s.q);
            let (ck, cv) = (&self.cross_k[i], &self.cross_v[i]);
            cross_attention_runs(
                runs,
                n,
                &s.q[..rows * d],
                ck,
                cv,
                n_audio,
                d,
                n_head,
                &mut s.a[..rows * d],
            );
            if let Some((heads, out)) = capture.as_mut() {
                let hd = d / n_head;
                let w = runs[0].0;
                let ck = &ck[w * n_audio * d..(w + 1) * n_audio * d];
                for (slot, &(layer, head)) in heads.iter().enumerate() {
                    if layer == i {
                        let w = &mut out
                            [slot * rows * dims.n_audio_ctx..(slot + 1) * rows * dims.n_audio_ctx];
                        ops::attention_weights(
                            &s.q[..rows * d],
                            ck,
                            ops::KvLayout::Heads,
                            rows,
                            dims.n_audio_ctx,
                            d,
                            head * hd,
                            hd,
                            w,
                        );
                    }
                }
            }
            split.linear(&cross.out, &s.a, &mut s.o);
            ops::add_assign(x, &s.o[..rows * d]);

            block.mlp_ln.forward(x, &mut s.h);
            split.mlp(block, &s.h, &mut s.hidden, &mut s.o);
            ops::add_assign(x, &s.o[..rows * d]);
        }
        // Only each sequence's last position is needed: final LN of those rows, then the tied
        // output projection (token embedding transposed).
        s.last.resize(n_seq * d, 0.0);
        for seq in 0..n_seq {
            let row = (seq * n + n - 1) * d;
            self.dec_ln
                .forward(&x[row..row + d], &mut s.last[seq * d..(seq + 1) * d]);
        }
        let per_seq = RowSplit {
            rows_per_seq: 1,
            total_rows: n_seq,
            ..split
        };
        per_seq.each(|row0, m, rowwise| {
            let (x, out) = (&s.last[row0 * d..], &mut logits[row0 * n_vocab..]);
            let out = &mut out[..m * n_vocab];
            self.tok_emb.product(x, (m, d), None, rowwise, out);
        });
        self.pass.advance(n);
        Ok(())
    }
}
