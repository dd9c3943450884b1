//! Whisper's forward pass on the GPU, block for block as `cpu::model` (its reference, whose
//! semantics every `Backend` method here mirrors): weights uploaded once; activation, cross-K/V
//! and self-attention cache buffers allocated once per model and grown only when a pass needs
//! more sequences (or a longer prompt) than any before it.
//!
//! A decoder step is one command buffer with one compute pass (the new K/V rows go into the
//! per-sequence caches through a kernel, not copies), then one copy of the `n_seq × n_vocab`
//! logits into a persistent staging buffer, one submit, one map. Bind groups are created once
//! (`Kernels::enable_bind_cache`: the buffers are fixed, so a step re-records the same dispatches
//! on the same bindings) and the per-dispatch parameters go into the uniform arena with one
//! upload. `reorder` copies the used cache rows into spare buffers on the device and swaps them.
//! The logits are read back each step because the `Backend` trait hands them to the host-side
//! logit filters; `Kernels::argmax` is there for a greedy path that reads back one u32.

use wgpu::Buffer;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::config::ModelDims;
use crate::model::weights::Weights;

use super::context::GpuContext;
use super::kernels::{GpuMatrix, KernelConfig, Kernels, WeightType, HEAD_DIM};
use super::mel::GpuMel;

struct Linear {
    w: GpuMatrix,
    b: Option<Buffer>,
}

impl Linear {
    fn load(
        ctx: &GpuContext,
        w: &Weights,
        prefix: &str,
        n_in: usize,
        n_out: usize,
        bias: bool,
        wt: WeightType,
    ) -> Result<Self> {
        let data = w.f32(&format!("{prefix}.weight"), &[n_out, n_in])?;
        Ok(Linear {
            w: GpuMatrix::upload(ctx, prefix, &data, n_out, n_in, wt),
            b: if bias {
                Some(ctx.upload(prefix, &w.f32(&format!("{prefix}.bias"), &[n_out])?))
            } else {
                None
            },
        })
    }

    fn run(
        &self,
        k: &Kernels,
        enc: &mut wgpu::ComputePass<'_>,
        x: &Buffer,
        rows: usize,
        out: &Buffer,
        gelu: bool,
    ) -> Result<()> {
        k.linear_typed(enc, x, self.w.view(), self.b.as_ref(), out, rows, gelu)
    }
}

struct LayerNorm {
    g: Buffer,
    b: Buffer,
    n: usize,
}

impl LayerNorm {
    fn load(ctx: &GpuContext, w: &Weights, prefix: &str, n: usize) -> Result<Self> {
        Ok(LayerNorm {
            g: ctx.upload(prefix, &w.f32(&format!("{prefix}.weight"), &[n])?),
            b: ctx.upload(prefix, &w.f32(&format!("{prefix}.bias"), &[n])?),
            n,
        })
    }

    fn run(
        &self,
        k: &Kernels,
        enc: &mut wgpu::ComputePass<'_>,
        x: &Buffer,
        out: &Buffer,
        rows: usize,
    ) -> Result<()> {
        k.layer_norm(enc, x, &self.g, &self.b, out, rows, self.n)
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

impl Attention {
    fn load(ctx: &GpuContext, w: &Weights, prefix: &str, d: usize, wt: WeightType) -> Result<Self> {
        Ok(Attention {
            q: Linear::load(ctx, w, &format!("{prefix}.q_proj"), d, d, true, wt)?,
            k: Linear::load(ctx, w, &format!("{prefix}.k_proj"), d, d, false, wt)?,
            v: Linear::load(ctx, w, &format!("{prefix}.v_proj"), d, d, true, wt)?,
            o: Linear::load(ctx, w, &format!("{prefix}.out_proj"), d, d, true, wt)?,
        })
    }
}

struct Block {
    attn_ln: LayerNorm,
    attn: Attention,
    cross_ln: Option<LayerNorm>,
    cross: Option<Attention>,
    mlp_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    fn load(
        ctx: &GpuContext,
        w: &Weights,
        prefix: &str,
        d: usize,
        ffn: usize,
        cross: bool,
        wt: WeightType,
    ) -> Result<Self> {
        Ok(Block {
            attn_ln: LayerNorm::load(ctx, w, &format!("{prefix}.self_attn_layer_norm"), d)?,
            attn: Attention::load(ctx, w, &format!("{prefix}.self_attn"), d, wt)?,
            cross_ln: if cross {
                Some(LayerNorm::load(
                    ctx,
                    w,
                    &format!("{prefix}.encoder_attn_layer_norm"),
                    d,
                )?)
            } else {
                None
            },
            cross: if cross {
                Some(Attention::load(
                    ctx,
                    w,
                    &format!("{prefix}.encoder_attn"),
                    d,
                    wt,
                )?)
            } else {
                None
            },
            mlp_ln: LayerNorm::load(ctx, w, &format!("{prefix}.final_layer_norm"), d)?,
            fc1: Linear::load(ctx, w, &format!("{prefix}.fc1"), d, ffn, true, wt)?,
            fc2: Linear::load(ctx, w, &format!("{prefix}.fc2"), ffn, d, true, wt)?,
        })
    }
}

/// Activation buffers of one pass (`rows` × d, hidden `rows` × ffn).
struct Scratch {
    x: Buffer,
    h: Buffer,
    q: Buffer,
    k: Buffer,
    v: Buffer,
    a: Buffer,
    o: Buffer,
    hidden: Buffer,
}

impl Scratch {
    fn new(ctx: &GpuContext, rows: usize, d: usize, ffn: usize) -> Self {
        let b = |l: &str, n: usize| ctx.storage(l, (n * 4) as u64);
        Scratch {
            x: b("x", rows * d),
            h: b("h", rows * d),
            q: b("q", rows * d),
            k: b("k", rows * d),
            v: b("v", rows * d),
            a: b("a", rows * d),
            o: b("o", rows * d),
            hidden: b("hidden", rows * ffn),
        }
    }
}

/// Self-attention keys and values of every decoded position, per decoder layer, for up to `cap`
/// sequences of `n_text_ctx` rows each (as `cpu::model::KvCache`); `spare_*` are the targets of
/// `reorder`, swapped in afterwards.
struct KvCache {
    k: Vec<Buffer>,
    v: Vec<Buffer>,
    spare_k: Vec<Buffer>,
    spare_v: Vec<Buffer>,
    cap: usize,
    n_seq: usize,
    len: usize,
}

/// Per-step input / output buffers sized for `cap` sequences: the token ids (`rows` of them),
/// the final-LN rows, the logits and their persistent read-back staging buffer.
struct StepIo {
    ids: Buffer,
    last_ln: Buffer,
    logits: Buffer,
    staging: Buffer,
}

pub struct GpuModel {
    ctx: GpuContext,
    k: Kernels,
    dims: ModelDims,
    conv1_w: Buffer,
    conv1_b: Buffer,
    conv2_w: Buffer,
    conv2_b: Buffer,
    enc_pos: Buffer,
    enc_blocks: Vec<Block>,
    enc_ln: LayerNorm,
    /// The token embedding, also the (tied) logits projection: int8 under `WeightType::Int8`
    /// (a quarter of the f32 bytes: 20 of tiny's 80 MB), f32 otherwise.
    tok_emb: GpuMatrix,
    dec_pos: Buffer,
    dec_blocks: Vec<Block>,
    dec_ln: LayerNorm,
    mel: Buffer,
    stem1: Buffer,
    stem1_cf: Buffer,
    enc: Scratch,
    enc_out: Buffer,
    /// Score chunk of the unfused encoder self-attention (`KernelConfig::attn_unfused`).
    enc_scores: Buffer,
    /// Cross-attention K and V per encoded window, per decoder layer (`[window][layer]`,
    /// `[n_audio_ctx, d]` each); grown when a batch has more windows than any before it.
    cross_k: Vec<Vec<Buffer>>,
    cross_v: Vec<Vec<Buffer>>,
    n_windows: usize,
    /// The window each sequence of the pass attends to, and its runs of equal windows
    /// (`backend::window_runs`); `spare_seq_window` is the target of `reorder`.
    seq_window: Vec<usize>,
    spare_seq_window: Vec<usize>,
    window_runs: Vec<(usize, usize, usize)>,
    cache: KvCache,
    /// Decoder activations for `dec_rows` rows (sequences × new tokens of one call).
    dec: Scratch,
    dec_rows: usize,
    io: StepIo,
    /// Cross-attention weights of `cross_attention_weights` (grown on demand).
    attn_w: Buffer,
    greedy: GreedyPick,
    /// The log-mel's DFT matrix and filterbank (created on first use).
    log_mel: Option<GpuMel>,
}

/// Suppression bitsets resident on the device for `decode_greedy` (a greedy pass uses two: the
/// first step's and the rest's), and the two-word result it reads back.
struct GreedyPick {
    /// `MASK_ROWS` rows of `ceil(n_vocab / 32)` words.
    mask: Buffer,
    /// The id list each row holds (compared per call: a few hundred ids).
    rows: Vec<Vec<u32>>,
    next: usize,
    /// (token, log-probability bits).
    out: Buffer,
}

const MASK_ROWS: usize = 4;

impl GreedyPick {
    fn new(ctx: &GpuContext, n_vocab: usize) -> Self {
        GreedyPick {
            mask: ctx.storage(
                "suppress masks",
                (MASK_ROWS * n_vocab.div_ceil(32) * 4) as u64,
            ),
            rows: Vec::new(),
            next: 0,
            out: ctx.storage("greedy pick", 8),
        }
    }

    /// The row holding `suppress` as a bitset, uploading it (into the least recently written
    /// row) when it is not resident yet.
    fn row_for(&mut self, ctx: &GpuContext, suppress: &[u32], n_vocab: usize) -> usize {
        if let Some(i) = self.rows.iter().position(|r| r.as_slice() == suppress) {
            return i;
        }
        let words = n_vocab.div_ceil(32);
        let mut bits = vec![0u32; words];
        for &t in suppress.iter().filter(|&&t| (t as usize) < n_vocab) {
            bits[t as usize / 32] |= 1 << (t % 32);
        }
        let i = if self.rows.len() < MASK_ROWS {
            self.rows.push(suppress.to_vec());
            self.rows.len() - 1
        } else {
            let i = self.next;
            self.next = (self.next + 1) % MASK_ROWS;
            self.rows[i] = suppress.to_vec();
            i
        };
        ctx.queue.write_buffer(
            &self.mask,
            (i * words * 4) as u64,
            bytemuck::cast_slice(&bits),
        );
        i
    }
}

impl GpuModel {
    /// Uploads every tensor (shapes checked against `dims`) and allocates all buffers, with the
    /// kernel configuration for the adapter's type.
    pub fn load(ctx: GpuContext, weights: &Weights, dims: &ModelDims) -> Result<Self> {
        let config = KernelConfig::for_adapter(&ctx);
        Self::load_with_config(ctx, weights, dims, config)
    }

    /// `load` with an explicit kernel configuration (benchmarks, tests).
    pub fn load_with_config(
        ctx: GpuContext,
        weights: &Weights,
        dims: &ModelDims,
        config: KernelConfig,
    ) -> Result<Self> {
        let d = dims.n_audio_state;
        if dims.n_text_state != d {
            return Err(Error::model(
                weights.path(),
                "encoder and decoder widths differ",
            ));
        }
        if !d.is_multiple_of(4)
            || d != dims.n_audio_head * HEAD_DIM
            || d != dims.n_text_head * HEAD_DIM
        {
            return Err(Error::model(
                weights.path(),
                format!("GPU kernels need head_dim {HEAD_DIM} (d = {d})"),
            ));
        }
        let mut k = Kernels::new(&ctx, config)?;
        k.enable_bind_cache();
        let wt = k.config.weights;
        let model = ctx.scoped("uploading the model", || {
            let c = &ctx;
            let enc_blocks = (0..dims.n_audio_layer)
                .map(|i| {
                    Block::load(
                        c,
                        weights,
                        &format!("model.encoder.layers.{i}"),
                        d,
                        dims.n_audio_ffn,
                        false,
                        wt,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let dec_blocks = (0..dims.n_text_layer)
                .map(|i| {
                    Block::load(
                        c,
                        weights,
                        &format!("model.decoder.layers.{i}"),
                        d,
                        dims.n_text_ffn,
                        true,
                        wt,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            // A checkpoint with more layers than the config names is a config mismatch (as
            // `CpuModel::load`).
            for (part, n) in [
                ("encoder", dims.n_audio_layer),
                ("decoder", dims.n_text_layer),
            ] {
                if weights.contains(&format!("model.{part}.layers.{n}.fc1.weight")) {
                    return Err(Error::model(
                        weights.path(),
                        format!("checkpoint has more {part} layers than config.json's {n}"),
                    ));
                }
            }
            let (na, nt) = (dims.n_audio_ctx, dims.n_text_ctx);
            Ok((
                enc_blocks,
                dec_blocks,
                [
                    c.upload(
                        "conv1.w",
                        &weights.f32("model.encoder.conv1.weight", &[d, dims.n_mels, 3])?,
                    ),
                    c.upload("conv1.b", &weights.f32("model.encoder.conv1.bias", &[d])?),
                    c.upload(
                        "conv2.w",
                        &weights.f32("model.encoder.conv2.weight", &[d, d, 3])?,
                    ),
                    c.upload("conv2.b", &weights.f32("model.encoder.conv2.bias", &[d])?),
                    c.upload(
                        "enc_pos",
                        &weights.f32("model.encoder.embed_positions.weight", &[na, d])?,
                    ),
                    c.upload(
                        "dec_pos",
                        &weights.f32("model.decoder.embed_positions.weight", &[nt, d])?,
                    ),
                ],
                GpuMatrix::upload(
                    c,
                    "tok_emb",
                    &weights.f32("model.decoder.embed_tokens.weight", &[dims.n_vocab, d])?,
                    dims.n_vocab,
                    d,
                    match wt {
                        WeightType::Int8 => WeightType::Int8,
                        WeightType::F32 | WeightType::F16 => WeightType::F32,
                    },
                ),
                LayerNorm::load(c, weights, "model.encoder.layer_norm", d)?,
                LayerNorm::load(c, weights, "model.decoder.layer_norm", d)?,
                Self::cross_buffers(c, dims, "cross_k"),
                Self::cross_buffers(c, dims, "cross_v"),
            ))
        })?;
        let (
            enc_blocks,
            dec_blocks,
            [conv1_w, conv1_b, conv2_w, conv2_b, enc_pos, dec_pos],
            tok_emb,
            enc_ln,
            dec_ln,
            cross_k,
            cross_v,
        ) = model;
        let t_in = 2 * dims.n_audio_ctx;
        let buf = |l: &str, n: usize| ctx.storage(l, (n * 4) as u64);
        // One sequence and a full-context prompt to start with; beam search grows this once.
        let cache = Self::new_cache(&ctx, dims, 1);
        let io = Self::new_io(&ctx, dims, 1, dims.n_text_ctx);
        Ok(GpuModel {
            mel: buf("mel", dims.n_mels * t_in),
            stem1: buf("stem1", t_in * d),
            stem1_cf: buf("stem1_cf", t_in * d),
            enc: Scratch::new(&ctx, dims.n_audio_ctx, d, dims.n_audio_ffn),
            enc_out: buf("enc_out", dims.n_audio_ctx * d),
            enc_scores: buf(
                "enc_scores",
                if k.use_unfused_attention(dims.n_audio_ctx, dims.n_audio_ctx, None) {
                    k.unfused_scores_len(dims.n_audio_ctx, dims.n_audio_ctx, dims.n_audio_head)
                } else {
                    1
                },
            ),
            dec: Scratch::new(&ctx, dims.n_text_ctx, d, dims.n_text_ffn),
            dec_rows: dims.n_text_ctx,
            attn_w: buf("attn_w", 4),
            cache,
            io,
            conv1_w,
            conv1_b,
            conv2_w,
            conv2_b,
            enc_pos,
            enc_blocks,
            enc_ln,
            tok_emb,
            dec_pos,
            dec_blocks,
            dec_ln,
            cross_k: vec![cross_k],
            cross_v: vec![cross_v],
            n_windows: 0,
            seq_window: Vec::new(),
            spare_seq_window: Vec::new(),
            window_runs: Vec::new(),
            greedy: GreedyPick::new(&ctx, dims.n_vocab),
            log_mel: None,
            dims: dims.clone(),
            k,
            ctx,
        })
    }

    /// One window's cross-attention K (or V) buffers, one per decoder layer.
    fn cross_buffers(ctx: &GpuContext, dims: &ModelDims, what: &str) -> Vec<Buffer> {
        let bytes = (dims.n_audio_ctx * dims.n_text_state * 4) as u64;
        (0..dims.n_text_layer)
            .map(|_| ctx.storage(what, bytes))
            .collect()
    }

    fn cache_buffers(ctx: &GpuContext, dims: &ModelDims, cap: usize, what: &str) -> Vec<Buffer> {
        let bytes = (cap * dims.n_text_ctx * dims.n_text_state * 4) as u64;
        (0..dims.n_text_layer)
            .map(|_| ctx.storage(what, bytes))
            .collect()
    }

    fn new_cache(ctx: &GpuContext, dims: &ModelDims, cap: usize) -> KvCache {
        KvCache {
            k: Self::cache_buffers(ctx, dims, cap, "cache_k"),
            v: Self::cache_buffers(ctx, dims, cap, "cache_v"),
            spare_k: Self::cache_buffers(ctx, dims, cap, "cache_k"),
            spare_v: Self::cache_buffers(ctx, dims, cap, "cache_v"),
            cap,
            n_seq: 0,
            len: 0,
        }
    }

    fn new_io(ctx: &GpuContext, dims: &ModelDims, cap: usize, rows: usize) -> StepIo {
        let logits_bytes = (cap * dims.n_vocab * 4) as u64;
        StepIo {
            ids: ctx.storage("ids", (rows * 4) as u64),
            last_ln: ctx.storage("last_ln", (cap * dims.n_text_state * 4) as u64),
            logits: ctx.storage("logits", logits_bytes),
            staging: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("logits staging"),
                size: logits_bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        }
    }

    /// Room for `n_seq` sequences (cache contents are not kept: the start of a pass).
    fn ensure_seqs(&mut self, n_seq: usize) {
        if n_seq > self.cache.cap {
            let (n, len) = (self.cache.n_seq, self.cache.len);
            self.cache = Self::new_cache(&self.ctx, &self.dims, n_seq);
            self.cache.n_seq = n;
            self.cache.len = len;
            self.io = Self::new_io(&self.ctx, &self.dims, n_seq, self.dec_rows);
            self.k.clear_bind_cache();
        }
    }

    /// Room for decoder calls of `rows` rows (sequences × new tokens).
    fn ensure_rows(&mut self, rows: usize) {
        if rows > self.dec_rows {
            let d = &self.dims;
            self.dec = Scratch::new(&self.ctx, rows, d.n_text_state, d.n_text_ffn);
            self.dec_rows = rows;
            self.io = Self::new_io(&self.ctx, d, self.cache.cap, rows);
            self.k.clear_bind_cache();
        }
    }

    /// The encoder over `mel`, then the cross-attention K/V of window `window`.
    fn record_encoder(&self, enc: &mut wgpu::ComputePass<'_>, window: usize) -> Result<()> {
        let (dims, k, s) = (&self.dims, &self.k, &self.enc);
        let (d, n, t_in) = (dims.n_audio_state, dims.n_audio_ctx, 2 * dims.n_audio_ctx);
        k.conv1d_k3(
            enc,
            &self.mel,
            &self.conv1_w,
            &self.conv1_b,
            &self.stem1,
            dims.n_mels,
            t_in,
            d,
            1,
            true,
        )?;
        k.transpose(enc, &self.stem1_cf, &self.stem1, t_in, d)?;
        k.conv1d_k3(
            enc,
            &self.stem1_cf,
            &self.conv2_w,
            &self.conv2_b,
            &s.x,
            d,
            t_in,
            d,
            2,
            true,
        )?;
        k.add(enc, &s.x, &self.enc_pos, n * d)?;
        for b in &self.enc_blocks {
            b.attn_ln.run(k, enc, &s.x, &s.h, n)?;
            b.attn.q.run(k, enc, &s.h, n, &s.q, false)?;
            b.attn.k.run(k, enc, &s.h, n, &s.k, false)?;
            b.attn.v.run(k, enc, &s.h, n, &s.v, false)?;
            if k.use_unfused_attention(n, n, None) {
                k.attention_unfused(
                    enc,
                    &s.q,
                    &s.k,
                    &s.v,
                    &s.a,
                    &self.enc_scores,
                    n,
                    n,
                    d,
                    dims.n_audio_head,
                )?;
            } else {
                k.attention(
                    enc,
                    &s.q,
                    &s.k,
                    &s.v,
                    &s.a,
                    n,
                    n,
                    d,
                    dims.n_audio_head,
                    None,
                )?;
            }
            b.attn.o.run(k, enc, &s.a, n, &s.o, false)?;
            k.add(enc, &s.x, &s.o, n * d)?;
            b.mlp_ln.run(k, enc, &s.x, &s.h, n)?;
            b.fc1.run(k, enc, &s.h, n, &s.hidden, true)?;
            b.fc2.run(k, enc, &s.hidden, n, &s.o, false)?;
            k.add(enc, &s.x, &s.o, n * d)?;
        }
        self.enc_ln.run(k, enc, &s.x, &self.enc_out, n)?;
        for (i, b) in self.dec_blocks.iter().enumerate() {
            let cross = b
                .cross
                .as_ref()
                .expect("decoder blocks have cross-attention");
            cross
                .k
                .run(k, enc, &self.enc_out, n, &self.cross_k[window][i], false)?;
            cross
                .v
                .run(k, enc, &self.enc_out, n, &self.cross_v[window][i], false)?;
        }
        Ok(())
    }

    /// OpenAI `TextDecoder.forward` with a KV cache for `n_seq` sequences of `n` new tokens at
    /// position `pos0` (ids already in `io.ids`), logits of each sequence's last position into
    /// `io.logits`. With `capture`, the scaled cross-attention scores of the listed heads go to
    /// `attn_w` (`[heads, rows, n_audio_ctx]`, softmaxed by the caller).
    fn record_decoder(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        n_seq: usize,
        n: usize,
        pos0: usize,
        capture: Option<&[(usize, usize)]>,
    ) -> Result<()> {
        let (dims, k, s, c) = (&self.dims, &self.k, &self.dec, &self.cache);
        let (d, h, ctx) = (dims.n_text_state, dims.n_text_head, dims.n_text_ctx);
        let n_kv = pos0 + n;
        let rows = n_seq * n;
        k.embed_batched(
            pass,
            &self.io.ids,
            self.tok_emb.view(),
            &self.dec_pos,
            &s.x,
            rows,
            d,
            pos0,
            n,
        )?;
        for (i, b) in self.dec_blocks.iter().enumerate() {
            // Causal self-attention: each sequence's new K/V rows go into its cache, and its
            // queries see its cache.
            b.attn_ln.run(k, pass, &s.x, &s.h, rows)?;
            b.attn.q.run(k, pass, &s.h, rows, &s.q, false)?;
            b.attn.k.run(k, pass, &s.h, rows, &s.k, false)?;
            b.attn.v.run(k, pass, &s.h, rows, &s.v, false)?;
            k.kv_append(pass, &c.k[i], &s.k, n_seq, n, d, ctx, pos0)?;
            k.kv_append(pass, &c.v[i], &s.v, n_seq, n, d, ctx, pos0)?;
            k.attention_batched(
                pass,
                &s.q,
                &c.k[i],
                &c.v[i],
                &s.a,
                n,
                n_kv,
                d,
                h,
                Some(pos0),
                n_seq,
                ctx,
            )?;
            b.attn.o.run(k, pass, &s.a, rows, &s.o, false)?;
            k.add(pass, &s.x, &s.o, rows * d)?;

            // Cross-attention over each sequence's window, one dispatch per run of sequences on
            // one window: they read the same keys (stride 0), batched per sequence so that a
            // step's single queries take the few-query kernel.
            let (cross_ln, cross) = (b.cross_ln.as_ref().unwrap(), b.cross.as_ref().unwrap());
            cross_ln.run(k, pass, &s.x, &s.h, rows)?;
            cross.q.run(k, pass, &s.h, rows, &s.q, false)?;
            for &(w, seq0, run_seqs) in &self.window_runs {
                k.attention_batched_at(
                    pass,
                    &s.q,
                    &self.cross_k[w][i],
                    &self.cross_v[w][i],
                    &s.a,
                    seq0 * n,
                    n,
                    dims.n_audio_ctx,
                    d,
                    h,
                    None,
                    run_seqs,
                    0,
                )?;
            }
            if let Some(heads) = capture {
                let w = self.window_runs[0].0;
                for (slot, &(layer, head)) in heads.iter().enumerate() {
                    if layer == i {
                        k.attn_scores(
                            pass,
                            &s.q,
                            &self.cross_k[w][i],
                            &self.attn_w,
                            rows,
                            dims.n_audio_ctx,
                            d,
                            head,
                            slot * rows,
                        )?;
                    }
                }
            }
            cross.o.run(k, pass, &s.a, rows, &s.o, false)?;
            k.add(pass, &s.x, &s.o, rows * d)?;

            b.mlp_ln.run(k, pass, &s.x, &s.h, rows)?;
            b.fc1.run(k, pass, &s.h, rows, &s.hidden, true)?;
            b.fc2.run(k, pass, &s.hidden, rows, &s.o, false)?;
            k.add(pass, &s.x, &s.o, rows * d)?;
        }
        // Only each sequence's last position is needed: final LN of those rows, then the tied
        // output projection (token embedding transposed).
        k.layer_norm_rows(
            pass,
            &s.x,
            &self.dec_ln.g,
            &self.dec_ln.b,
            &self.io.last_ln,
            n_seq,
            d,
            n,
            n - 1,
        )?;
        k.linear_typed(
            pass,
            &self.io.last_ln,
            self.tok_emb.view(),
            None,
            &self.io.logits,
            n_seq,
            false,
        )
    }

    /// Records one compute pass, then `after` (copies), uploads the parameters and submits;
    /// waits when `wait`.
    fn submit(
        &self,
        what: &str,
        wait: bool,
        record: impl FnOnce(&mut wgpu::ComputePass<'_>) -> Result<()>,
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<()> {
        self.ctx.scoped(what, || {
            self.k.begin();
            let mut enc = self
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(what),
                    timestamp_writes: None,
                });
                record(&mut pass)?;
            }
            after(&mut enc);
            self.k.flush_params();
            if wait {
                self.ctx.submit_wait(enc)
            } else {
                self.ctx.queue.submit([enc.finish()]);
                self.ctx.check()
            }
        })
    }

    /// Checks shared by `decode` and `cross_attention_weights` (the messages of `CpuModel`);
    /// returns tokens per sequence.
    fn check_decode(&self, tokens: &[u32]) -> Result<usize> {
        let dims = &self.dims;
        let (n_seq, pos0) = (self.cache.n_seq, self.cache.len);
        if n_seq == 0 {
            return Err(Error::Internal("decode called before begin_decode".into()));
        }
        let n = tokens.len() / n_seq;
        if n == 0 || n * n_seq != tokens.len() || pos0 + n > dims.n_text_ctx {
            return Err(Error::Internal(format!(
                "decoder given {} tokens for {n_seq} sequences at position {pos0}, context is {}",
                tokens.len(),
                dims.n_text_ctx
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= dims.n_vocab) {
            return Err(Error::Internal(format!(
                "token id {bad} outside the vocabulary of {}",
                dims.n_vocab
            )));
        }
        Ok(n)
    }

    /// Maps the staging buffer and copies its first `out.len()` floats out.
    fn read_staging(&self, out: &mut [f32]) -> Result<()> {
        let name = &self.ctx.info.name;
        let bytes = (out.len() * 4) as u64;
        let slice = self.io.staging.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.ctx
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| Error::Device(format!("{name}: mapping the logits: {e}")))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            _ => return Err(Error::Device(format!("{name}: cannot map the logits"))),
        }
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Device(format!("{name}: logits read-back: {e}")))?;
            out.copy_from_slice(bytemuck::cast_slice(&view[..]));
        }
        self.io.staging.unmap();
        Ok(())
    }
}

impl Backend for GpuModel {
    fn dims(&self) -> &ModelDims {
        &self.dims
    }

    fn device_name(&self) -> String {
        format!("gpu: {}", self.ctx.describe())
    }

    fn log_mel(&mut self, samples: &[f32], n_mels: usize) -> Result<crate::mel::LogMel> {
        let (ctx, k) = (&self.ctx, &self.k);
        self.log_mel
            .get_or_insert_with(|| GpuMel::new(ctx))
            .compute(ctx, k, samples, n_mels)
    }

    fn encode_batch(&mut self, mels: &[&[f32]]) -> Result<()> {
        let dims = &self.dims;
        let t_in = 2 * dims.n_audio_ctx;
        if mels.is_empty() {
            return Err(Error::Internal("encode_batch given no windows".into()));
        }
        if let Some(mel) = mels.iter().find(|m| m.len() != dims.n_mels * t_in) {
            return Err(Error::Internal(format!(
                "mel window has {} values, expected {} x {t_in}",
                mel.len(),
                dims.n_mels
            )));
        }
        // A new batch: the next pass must call begin_decode.
        self.cache.n_seq = 0;
        self.cache.len = 0;
        self.n_windows = 0;
        while self.cross_k.len() < mels.len() {
            self.cross_k
                .push(Self::cross_buffers(&self.ctx, &self.dims, "cross_k"));
            self.cross_v
                .push(Self::cross_buffers(&self.ctx, &self.dims, "cross_v"));
        }
        // One submission per window (the mel and encoder buffers are reused; the queue runs
        // them in order), the last one waited for. Window 0 goes last, so that the encoder
        // output buffer holds it (`encoder_output`).
        for (w, mel) in mels.iter().enumerate().rev() {
            self.ctx
                .queue
                .write_buffer(&self.mel, 0, bytemuck::cast_slice(mel));
            self.submit(
                "encoder",
                w == 0,
                |pass| self.record_encoder(pass, w),
                |_| {},
            )?;
        }
        self.n_windows = mels.len();
        Ok(())
    }

    fn n_windows(&self) -> usize {
        self.n_windows
    }

    fn encoder_output(&self) -> Result<Vec<f32>> {
        if self.n_windows == 0 {
            return Ok(Vec::new());
        }
        self.ctx.read(
            &self.enc_out,
            self.dims.n_audio_ctx * self.dims.n_audio_state,
        )
    }

    fn begin_decode(&mut self, n_seq: usize) -> Result<()> {
        let mut windows = std::mem::take(&mut self.spare_seq_window);
        windows.clear();
        windows.resize(n_seq, 0);
        let r = self.begin_decode_windows(&windows);
        self.spare_seq_window = windows;
        r
    }

    fn begin_decode_windows(&mut self, windows: &[usize]) -> Result<()> {
        if self.n_windows == 0 {
            return Err(Error::Internal("begin_decode called before encode".into()));
        }
        if windows.is_empty() {
            return Err(Error::Internal(
                "a decoding pass needs at least one sequence".into(),
            ));
        }
        if let Some(&w) = windows.iter().find(|&&w| w >= self.n_windows) {
            return Err(Error::Internal(format!(
                "sequence on window {w} of {} encoded",
                self.n_windows
            )));
        }
        let n_seq = windows.len();
        self.ensure_seqs(n_seq);
        self.cache.n_seq = n_seq;
        self.cache.len = 0;
        self.seq_window.clear();
        self.seq_window.extend_from_slice(windows);
        crate::backend::window_runs(&self.seq_window, &mut self.window_runs);
        Ok(())
    }

    fn cached_len(&self) -> usize {
        self.cache.len
    }

    fn n_seq(&self) -> usize {
        self.cache.n_seq
    }

    fn decode(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        let n = self.check_decode(tokens)?;
        let (n_seq, pos0, n_vocab) = (self.cache.n_seq, self.cache.len, self.dims.n_vocab);
        if logits.len() < n_seq * n_vocab {
            return Err(Error::Internal(
                "logits buffer smaller than n_seq x n_vocab".into(),
            ));
        }
        self.ensure_rows(tokens.len());
        self.ctx
            .queue
            .write_buffer(&self.io.ids, 0, bytemuck::cast_slice(tokens));
        let bytes = (n_seq * n_vocab * 4) as u64;
        self.submit(
            "decoder step",
            true,
            |pass| self.record_decoder(pass, n_seq, n, pos0, None),
            |enc| enc.copy_buffer_to_buffer(&self.io.logits, 0, &self.io.staging, 0, bytes),
        )?;
        self.read_staging(&mut logits[..n_seq * n_vocab])?;
        self.cache.len = pos0 + n;
        Ok(())
    }

    /// The step's logits stay on the device: `greedy_pick` masks them and reduces to the
    /// token and its log-probability, and only those 8 bytes are read back.
    fn decode_greedy(&mut self, tokens: &[u32], suppress: &[u32]) -> Result<(u32, f32)> {
        if self.cache.n_seq != 1 {
            return Err(Error::Internal(format!(
                "decode_greedy needs one sequence, the pass has {}",
                self.cache.n_seq
            )));
        }
        let n = self.check_decode(tokens)?;
        let (pos0, n_vocab) = (self.cache.len, self.dims.n_vocab);
        let row = self.greedy.row_for(&self.ctx, suppress, n_vocab);
        self.ensure_rows(tokens.len());
        self.ctx
            .queue
            .write_buffer(&self.io.ids, 0, bytemuck::cast_slice(tokens));
        let words = n_vocab.div_ceil(32);
        self.submit(
            "greedy decoder step",
            true,
            |pass| {
                self.record_decoder(pass, 1, n, pos0, None)?;
                self.k.greedy_pick(
                    pass,
                    &self.io.logits,
                    &self.greedy.mask,
                    row * words,
                    &self.greedy.out,
                    n_vocab,
                )
            },
            |enc| enc.copy_buffer_to_buffer(&self.greedy.out, 0, &self.io.staging, 0, 8),
        )?;
        let mut picked = [0.0f32; 2];
        self.read_staging(&mut picked)?;
        self.cache.len = pos0 + n;
        Ok((picked[0].to_bits(), picked[1]))
    }

    fn reorder(&mut self, src: &[usize]) -> Result<()> {
        let n_old = self.cache.n_seq;
        if src.is_empty() || src.iter().any(|&i| i >= n_old) {
            return Err(Error::Internal(format!(
                "reorder {src:?} of {n_old} sequences"
            )));
        }
        let grow = src.len() > self.cache.cap;
        if grow {
            // The target must hold the new sequences; the source keeps its contents.
            let dims = &self.dims;
            self.cache.spare_k = Self::cache_buffers(&self.ctx, dims, src.len(), "cache_k");
            self.cache.spare_v = Self::cache_buffers(&self.ctx, dims, src.len(), "cache_v");
        }
        let seq_bytes = (self.dims.n_text_ctx * self.dims.n_text_state * 4) as u64;
        let used = (self.cache.len * self.dims.n_text_state * 4) as u64;
        if used > 0 {
            let c = &self.cache;
            self.submit(
                "reorder",
                false,
                |_| Ok(()),
                |enc| {
                    for layer in 0..c.k.len() {
                        for (dst, &from) in src.iter().enumerate() {
                            let (a, b) = (from as u64 * seq_bytes, dst as u64 * seq_bytes);
                            enc.copy_buffer_to_buffer(&c.k[layer], a, &c.spare_k[layer], b, used);
                            enc.copy_buffer_to_buffer(&c.v[layer], a, &c.spare_v[layer], b, used);
                        }
                    }
                },
            )?;
        }
        let c = &mut self.cache;
        std::mem::swap(&mut c.k, &mut c.spare_k);
        std::mem::swap(&mut c.v, &mut c.spare_v);
        c.n_seq = src.len();
        self.spare_seq_window.clear();
        self.spare_seq_window
            .extend(src.iter().map(|&i| self.seq_window[i]));
        std::mem::swap(&mut self.seq_window, &mut self.spare_seq_window);
        crate::backend::window_runs(&self.seq_window, &mut self.window_runs);
        if grow {
            let dims = &self.dims;
            c.spare_k = Self::cache_buffers(&self.ctx, dims, src.len(), "cache_k");
            c.spare_v = Self::cache_buffers(&self.ctx, dims, src.len(), "cache_v");
            c.cap = src.len();
            self.io = Self::new_io(&self.ctx, dims, c.cap, self.dec_rows);
            self.k.clear_bind_cache();
        }
        Ok(())
    }

    fn cross_attention_weights_in(
        &mut self,
        window: usize,
        tokens: &[u32],
        heads: &[(usize, usize)],
    ) -> Result<Vec<f32>> {
        let dims = &self.dims;
        if let Some(bad) = heads
            .iter()
            .find(|&&(l, h)| l >= dims.n_text_layer || h >= dims.n_text_head)
        {
            return Err(Error::Internal(format!(
                "alignment head {bad:?} outside {} layers x {} heads",
                dims.n_text_layer, dims.n_text_head
            )));
        }
        self.begin_decode_windows(&[window])?;
        let n = self.check_decode(tokens)?;
        let na = self.dims.n_audio_ctx;
        let n_w = heads.len() * n * na;
        if (self.attn_w.size() as usize) < n_w * 4 {
            self.attn_w = self.ctx.storage("attn_w", (n_w * 4) as u64);
            self.k.clear_bind_cache();
        }
        self.ensure_rows(n);
        self.ctx
            .queue
            .write_buffer(&self.io.ids, 0, bytemuck::cast_slice(tokens));
        self.submit(
            "cross-attention weights",
            true,
            |pass| {
                self.record_decoder(pass, 1, n, 0, Some(heads))?;
                self.k
                    .softmax(pass, &self.attn_w, heads.len() * n, na, None)
            },
            |_| {},
        )?;
        self.cache.len = n;
        self.ctx.read(&self.attn_w, n_w)
    }

    fn diagnostics(&mut self) -> Option<&mut dyn crate::backend::Diagnostics> {
        Some(self)
    }
}

impl crate::backend::Diagnostics for GpuModel {
    /// What the device's memory allocator holds live (every buffer of this model: weights,
    /// activations, caches, staging), when the backend reports it (Vulkan, DX12).
    fn device_memory_bytes(&self) -> Option<u64> {
        self.ctx
            .device
            .generate_allocator_report()
            .map(|r| r.total_allocated_bytes)
    }

    fn set_kernel_profiling(&mut self, on: bool) -> bool {
        if on {
            self.k.enable_profiling()
        } else {
            self.k.disable_profiling();
            false
        }
    }

    fn take_kernel_profile(&mut self) -> Result<Option<super::KernelProfile>> {
        self.k.take_profile()
    }

    fn weights_dtype(&self) -> &'static str {
        self.k.config.weights.name()
    }
}
