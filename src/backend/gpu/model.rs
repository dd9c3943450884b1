//! Whisper's forward pass on the GPU, block for block as `cpu::model` (its reference): weights
//! uploaded once, activation, cross-K/V and self-attention cache buffers allocated once per
//! model, one command buffer per `encode` and per `decode` call. The logits (n_vocab f32) are
//! read back each step because the `Backend` trait hands them to the host-side logit filters;
//! `Kernels::argmax` is there for a greedy path that reads back one u32.
//!
//! Not yet done: bind groups are created per dispatch (cheap, but a decoder step could reuse
//! them), and every kernel gets its own compute pass.

use wgpu::Buffer;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::config::ModelDims;
use crate::model::weights::Weights;

use super::context::GpuContext;
use super::kernels::{KernelConfig, Kernels, HEAD_DIM};

struct Linear {
    w: Buffer,
    b: Option<Buffer>,
    n_in: usize,
    n_out: usize,
}

impl Linear {
    fn load(
        ctx: &GpuContext,
        w: &Weights,
        prefix: &str,
        n_in: usize,
        n_out: usize,
        bias: bool,
    ) -> Result<Self> {
        Ok(Linear {
            w: ctx.upload(prefix, &w.f32(&format!("{prefix}.weight"), &[n_out, n_in])?),
            b: if bias {
                Some(ctx.upload(prefix, &w.f32(&format!("{prefix}.bias"), &[n_out])?))
            } else {
                None
            },
            n_in,
            n_out,
        })
    }

    fn run(
        &self,
        k: &Kernels,
        enc: &mut wgpu::CommandEncoder,
        x: &Buffer,
        rows: usize,
        out: &Buffer,
        gelu: bool,
    ) -> Result<()> {
        k.linear(
            enc,
            x,
            &self.w,
            self.b.as_ref(),
            out,
            rows,
            self.n_out,
            self.n_in,
            gelu,
        )
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
        enc: &mut wgpu::CommandEncoder,
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
    fn load(ctx: &GpuContext, w: &Weights, prefix: &str, d: usize) -> Result<Self> {
        Ok(Attention {
            q: Linear::load(ctx, w, &format!("{prefix}.q_proj"), d, d, true)?,
            k: Linear::load(ctx, w, &format!("{prefix}.k_proj"), d, d, false)?,
            v: Linear::load(ctx, w, &format!("{prefix}.v_proj"), d, d, true)?,
            o: Linear::load(ctx, w, &format!("{prefix}.out_proj"), d, d, true)?,
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
    ) -> Result<Self> {
        Ok(Block {
            attn_ln: LayerNorm::load(ctx, w, &format!("{prefix}.self_attn_layer_norm"), d)?,
            attn: Attention::load(ctx, w, &format!("{prefix}.self_attn"), d)?,
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
                )?)
            } else {
                None
            },
            mlp_ln: LayerNorm::load(ctx, w, &format!("{prefix}.final_layer_norm"), d)?,
            fc1: Linear::load(ctx, w, &format!("{prefix}.fc1"), d, ffn, true)?,
            fc2: Linear::load(ctx, w, &format!("{prefix}.fc2"), ffn, d, true)?,
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
    tok_emb: Buffer,
    dec_pos: Buffer,
    dec_blocks: Vec<Block>,
    dec_ln: LayerNorm,
    mel: Buffer,
    stem1: Buffer,
    stem1_cf: Buffer,
    enc: Scratch,
    enc_out: Buffer,
    cross_k: Vec<Buffer>,
    cross_v: Vec<Buffer>,
    cache_k: Vec<Buffer>,
    cache_v: Vec<Buffer>,
    dec: Scratch,
    ids: Buffer,
    last: Buffer,
    last_ln: Buffer,
    logits: Buffer,
    cache_len: usize,
    encoded: bool,
}

impl GpuModel {
    /// Uploads every tensor (shapes checked against `dims`) and allocates all buffers.
    pub fn load(ctx: GpuContext, weights: &Weights, dims: &ModelDims) -> Result<Self> {
        let d = dims.n_audio_state;
        if dims.n_text_state != d {
            return Err(Error::model(
                weights.path(),
                "encoder and decoder widths differ",
            ));
        }
        if d % 4 != 0 || d != dims.n_audio_head * HEAD_DIM || d != dims.n_text_head * HEAD_DIM {
            return Err(Error::model(
                weights.path(),
                format!("GPU kernels need head_dim {HEAD_DIM} (d = {d})"),
            ));
        }
        let k = Kernels::new(&ctx, KernelConfig::for_adapter(&ctx))?;
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
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let (na, nt) = (dims.n_audio_ctx, dims.n_text_ctx);
            let buf = |l: &str, n: usize| c.storage(l, (n * 4) as u64);
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
                        "tok_emb",
                        &weights.f32("model.decoder.embed_tokens.weight", &[dims.n_vocab, d])?,
                    ),
                    c.upload(
                        "dec_pos",
                        &weights.f32("model.decoder.embed_positions.weight", &[nt, d])?,
                    ),
                ],
                LayerNorm::load(c, weights, "model.encoder.layer_norm", d)?,
                LayerNorm::load(c, weights, "model.decoder.layer_norm", d)?,
                (0..dims.n_text_layer)
                    .map(|_| buf("cross_k", na * d))
                    .collect::<Vec<_>>(),
                (0..dims.n_text_layer)
                    .map(|_| buf("cross_v", na * d))
                    .collect::<Vec<_>>(),
                (0..dims.n_text_layer)
                    .map(|_| buf("cache_k", nt * d))
                    .collect::<Vec<_>>(),
                (0..dims.n_text_layer)
                    .map(|_| buf("cache_v", nt * d))
                    .collect::<Vec<_>>(),
            ))
        })?;
        let (
            enc_blocks,
            dec_blocks,
            [conv1_w, conv1_b, conv2_w, conv2_b, enc_pos, tok_emb, dec_pos],
            enc_ln,
            dec_ln,
            cross_k,
            cross_v,
            cache_k,
            cache_v,
        ) = model;
        let t_in = 2 * dims.n_audio_ctx;
        let buf = |l: &str, n: usize| ctx.storage(l, (n * 4) as u64);
        Ok(GpuModel {
            mel: buf("mel", dims.n_mels * t_in),
            stem1: buf("stem1", t_in * d),
            stem1_cf: buf("stem1_cf", t_in * d),
            enc: Scratch::new(&ctx, dims.n_audio_ctx, d, dims.n_audio_ffn),
            enc_out: buf("enc_out", dims.n_audio_ctx * d),
            dec: Scratch::new(&ctx, dims.n_text_ctx, d, dims.n_text_ffn),
            ids: buf("ids", dims.n_text_ctx),
            last: buf("last", d),
            last_ln: buf("last_ln", d),
            logits: buf("logits", dims.n_vocab),
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
            cross_k,
            cross_v,
            cache_k,
            cache_v,
            cache_len: 0,
            encoded: false,
            dims: dims.clone(),
            k,
            ctx,
        })
    }

    fn record_encoder(&self, enc: &mut wgpu::CommandEncoder) -> Result<()> {
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
                .run(k, enc, &self.enc_out, n, &self.cross_k[i], false)?;
            cross
                .v
                .run(k, enc, &self.enc_out, n, &self.cross_v[i], false)?;
        }
        Ok(())
    }

    fn record_decoder(&self, enc: &mut wgpu::CommandEncoder, n: usize, pos0: usize) -> Result<()> {
        let (dims, k, s) = (&self.dims, &self.k, &self.dec);
        let (d, h) = (dims.n_text_state, dims.n_text_head);
        let n_kv = pos0 + n;
        let row_bytes = (d * 4) as u64;
        k.embed(
            enc,
            &self.ids,
            &self.tok_emb,
            &self.dec_pos,
            &s.x,
            n,
            d,
            dims.n_vocab,
            pos0,
        )?;
        for (i, b) in self.dec_blocks.iter().enumerate() {
            b.attn_ln.run(k, enc, &s.x, &s.h, n)?;
            b.attn.q.run(k, enc, &s.h, n, &s.q, false)?;
            b.attn.k.run(k, enc, &s.h, n, &s.k, false)?;
            b.attn.v.run(k, enc, &s.h, n, &s.v, false)?;
            enc.copy_buffer_to_buffer(
                &s.k,
                0,
                &self.cache_k[i],
                pos0 as u64 * row_bytes,
                n as u64 * row_bytes,
            );
            enc.copy_buffer_to_buffer(
                &s.v,
                0,
                &self.cache_v[i],
                pos0 as u64 * row_bytes,
                n as u64 * row_bytes,
            );
            k.attention(
                enc,
                &s.q,
                &self.cache_k[i],
                &self.cache_v[i],
                &s.a,
                n,
                n_kv,
                d,
                h,
                Some(pos0),
            )?;
            b.attn.o.run(k, enc, &s.a, n, &s.o, false)?;
            k.add(enc, &s.x, &s.o, n * d)?;
            let (cross_ln, cross) = (b.cross_ln.as_ref().unwrap(), b.cross.as_ref().unwrap());
            cross_ln.run(k, enc, &s.x, &s.h, n)?;
            cross.q.run(k, enc, &s.h, n, &s.q, false)?;
            k.attention(
                enc,
                &s.q,
                &self.cross_k[i],
                &self.cross_v[i],
                &s.a,
                n,
                dims.n_audio_ctx,
                d,
                h,
                None,
            )?;
            cross.o.run(k, enc, &s.a, n, &s.o, false)?;
            k.add(enc, &s.x, &s.o, n * d)?;
            b.mlp_ln.run(k, enc, &s.x, &s.h, n)?;
            b.fc1.run(k, enc, &s.h, n, &s.hidden, true)?;
            b.fc2.run(k, enc, &s.hidden, n, &s.o, false)?;
            k.add(enc, &s.x, &s.o, n * d)?;
        }
        enc.copy_buffer_to_buffer(&s.x, (n - 1) as u64 * row_bytes, &self.last, 0, row_bytes);
        self.dec_ln.run(k, enc, &self.last, &self.last_ln, 1)?;
        k.linear(
            enc,
            &self.last_ln,
            &self.tok_emb,
            None,
            &self.logits,
            1,
            dims.n_vocab,
            d,
            false,
        )
    }

    fn submit(
        &self,
        what: &str,
        record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<()>,
    ) -> Result<()> {
        self.ctx.scoped(what, || {
            self.k.begin();
            let mut enc = self
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
            record(&mut enc)?;
            self.ctx.submit_wait(enc)
        })
    }
}

impl Backend for GpuModel {
    fn dims(&self) -> &ModelDims {
        &self.dims
    }

    fn device_name(&self) -> String {
        format!("gpu: {}", self.ctx.describe())
    }

    fn encode(&mut self, mel: &[f32]) -> Result<()> {
        let dims = &self.dims;
        let t_in = 2 * dims.n_audio_ctx;
        if mel.len() != dims.n_mels * t_in {
            return Err(Error::Internal(format!(
                "mel window has {} values, expected {} x {t_in}",
                mel.len(),
                dims.n_mels
            )));
        }
        self.ctx
            .queue
            .write_buffer(&self.mel, 0, bytemuck::cast_slice(mel));
        self.submit("encoder", |enc| self.record_encoder(enc))?;
        self.cache_len = 0;
        self.encoded = true;
        Ok(())
    }

    fn encoder_output(&self) -> Result<Vec<f32>> {
        self.ctx.read(
            &self.enc_out,
            self.dims.n_audio_ctx * self.dims.n_audio_state,
        )
    }

    fn reset_decoder(&mut self) {
        self.cache_len = 0;
    }

    fn cached_len(&self) -> usize {
        self.cache_len
    }

    fn decode(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        let dims = &self.dims;
        let (n, pos0) = (tokens.len(), self.cache_len);
        if n == 0 || pos0 + n > dims.n_text_ctx {
            return Err(Error::Internal(format!(
                "decoder given {n} tokens at position {pos0}, context is {}",
                dims.n_text_ctx
            )));
        }
        if !self.encoded {
            return Err(Error::Internal("decode called before encode".into()));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= dims.n_vocab) {
            return Err(Error::Internal(format!(
                "token id {bad} outside the vocabulary of {}",
                dims.n_vocab
            )));
        }
        self.ctx
            .queue
            .write_buffer(&self.ids, 0, bytemuck::cast_slice(tokens));
        self.submit("decoder step", |enc| self.record_decoder(enc, n, pos0))?;
        let out = self.ctx.read::<f32>(&self.logits, dims.n_vocab)?;
        logits[..dims.n_vocab].copy_from_slice(&out);
        self.cache_len = pos0 + n;
        Ok(())
    }
}
