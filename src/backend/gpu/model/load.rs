//! Uploading a checkpoint into a [`GpuModel`]: every tensor named and shaped by
//! [`crate::model::schema`], matrices stored as the kernel configuration asks; then every buffer
//! the passes need, allocated once.

use wgpu::Buffer;

use super::{
    Attention, Block, GpuContext, GpuMatrix, GpuModel, GreedyPick, KernelConfig, Kernels, KvCache,
    LayerNorm, Linear, Scratch, StepIo, WeightType, HEAD_DIM,
};
use crate::backend::load_common::Layer;
use crate::backend::DecodePass;
use crate::error::{Error, Result};
use crate::model::config::ModelDims;
use crate::model::schema::{self, Module, Part, Side};
use crate::model::weights::Weights;

impl Linear {
    fn load(ctx: &GpuContext, w: &Weights, m: &Module, wt: WeightType) -> Result<Self> {
        let (n_out, n_in) = m.matrix();
        let data = w.f32(&m.weight.name, &m.weight.shape)?;
        Ok(Linear {
            w: GpuMatrix::upload(ctx, &m.name, &data, n_out, n_in, wt),
            b: match &m.bias {
                Some(b) => Some(ctx.upload(&m.name, &w.f32(&b.name, &b.shape)?)),
                None => None,
            },
        })
    }
}

impl LayerNorm {
    fn load(ctx: &GpuContext, w: &Weights, m: &Module) -> Result<Self> {
        let (g, b) = (&m.weight, m.bias());
        Ok(LayerNorm {
            g: ctx.upload(&m.name, &w.f32(&g.name, &g.shape)?),
            b: ctx.upload(&m.name, &w.f32(&b.name, &b.shape)?),
            n: g.shape[0],
        })
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
            let blocks = |side: Side| {
                (0..side.layers(dims))
                    .map(|i| {
                        Block::load(
                            Layer { dims, side, i },
                            |m| LayerNorm::load(c, weights, m),
                            |m| Linear::load(c, weights, m, wt),
                            |[q, k, v, o]| Attention { q, k, v, o },
                        )
                    })
                    .collect::<Result<Vec<_>>>()
            };
            let enc_blocks = blocks(Side::Encoder)?;
            let dec_blocks = blocks(Side::Decoder)?;
            schema::check_no_extra_layers(weights, dims)?;
            let upload = |label: &str, t: &schema::Tensor| -> Result<Buffer> {
                Ok(c.upload(label, &weights.f32(&t.name, &t.shape)?))
            };
            let (conv1, conv2) = (
                schema::model(dims, Part::Conv1),
                schema::model(dims, Part::Conv2),
            );
            let tok_emb = schema::model(dims, Part::TokenEmbedding);
            Ok((
                enc_blocks,
                dec_blocks,
                [
                    upload("conv1.w", &conv1.weight)?,
                    upload("conv1.b", conv1.bias())?,
                    upload("conv2.w", &conv2.weight)?,
                    upload("conv2.b", conv2.bias())?,
                    upload(
                        "enc_pos",
                        &schema::model(dims, Part::EncoderPositions).weight,
                    )?,
                    upload(
                        "dec_pos",
                        &schema::model(dims, Part::DecoderPositions).weight,
                    )?,
                ],
                GpuMatrix::upload(
                    c,
                    "tok_emb",
                    &weights.f32(&tok_emb.weight.name, &tok_emb.weight.shape)?,
                    dims.n_vocab,
                    d,
                    match wt {
                        WeightType::Int8 => WeightType::Int8,
                        WeightType::F32 | WeightType::F16 => WeightType::F32,
                    },
                ),
                LayerNorm::load(c, weights, &schema::model(dims, Part::EncoderNorm))?,
                LayerNorm::load(c, weights, &schema::model(dims, Part::DecoderNorm))?,
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
            pass: DecodePass::default(),
            greedy: GreedyPick::new(&ctx, dims.n_vocab),
            log_mel: None,
            dims: dims.clone(),
            k,
            ctx,
        })
    }

    /// One window's cross-attention K (or V) buffers, one per decoder layer.
    pub(super) fn cross_buffers(ctx: &GpuContext, dims: &ModelDims, what: &str) -> Vec<Buffer> {
        let bytes = (dims.n_audio_ctx * dims.n_text_state * 4) as u64;
        (0..dims.n_text_layer)
            .map(|_| ctx.storage(what, bytes))
            .collect()
    }

    pub(super) fn cache_buffers(
        ctx: &GpuContext,
        dims: &ModelDims,
        cap: usize,
        what: &str,
    ) -> Vec<Buffer> {
        let bytes = (cap * dims.n_text_ctx * dims.n_text_state * 4) as u64;
        (0..dims.n_text_layer)
            .map(|_| ctx.storage(what, bytes))
            .collect()
    }

    pub(super) fn new_cache(ctx: &GpuContext, dims: &ModelDims, cap: usize) -> KvCache {
        KvCache {
            k: Self::cache_buffers(ctx, dims, cap, "cache_k"),
            v: Self::cache_buffers(ctx, dims, cap, "cache_v"),
            spare_k: Self::cache_buffers(ctx, dims, cap, "cache_k"),
            spare_v: Self::cache_buffers(ctx, dims, cap, "cache_v"),
            cap,
        }
    }

    pub(super) fn new_io(ctx: &GpuContext, dims: &ModelDims, cap: usize, rows: usize) -> StepIo {
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
}
