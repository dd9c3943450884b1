//! Building a [`CpuModel`] from a checkpoint: every tensor named and shaped by
//! [`crate::model::schema`], matrices stored as `--dtype` asks.

use super::{
    Attention, Block, BlockScratch, CpuModel, CpuWeights, KvCache, LayerNorm, Linear, Matrix,
};
use crate::backend::cpu::int8::Int8Matrix;
use crate::backend::load_common::Layer;
use crate::backend::DecodePass;
use crate::error::{Error, Result};
use crate::model::config::ModelDims;
use crate::model::schema::{self, Module, Part, Side};
use crate::model::weights::Weights;

impl Matrix {
    /// The module's weight `[rows, cols]`.
    fn load(w: &Weights, m: &Module, dtype: CpuWeights) -> Result<Self> {
        let (rows, cols) = m.matrix();
        let f = w.f32(&m.weight.name, &m.weight.shape)?;
        Ok(match dtype {
            CpuWeights::F32 => Matrix::F32(f),
            CpuWeights::Int8 => Matrix::Int8(Int8Matrix::quantize(&f, rows, cols)),
        })
    }
}

impl Linear {
    fn load(w: &Weights, m: &Module, dtype: CpuWeights) -> Result<Self> {
        let (n_out, n_in) = m.matrix();
        Ok(Linear {
            w: Matrix::load(w, m, dtype)?,
            b: match &m.bias {
                Some(b) => Some(w.f32(&b.name, &b.shape)?),
                None => None,
            },
            n_in,
            n_out,
        })
    }
}

impl LayerNorm {
    fn load(w: &Weights, m: &Module) -> Result<Self> {
        Ok(LayerNorm {
            gamma: w.f32(&m.weight.name, &m.weight.shape)?,
            beta: w.f32(&m.bias().name, &m.bias().shape)?,
        })
    }
}

impl CpuModel {
    /// Load every tensor in f32, checking each one's shape against `dims`.
    pub fn load(weights: &Weights, dims: &ModelDims) -> Result<Self> {
        Self::load_with(weights, dims, CpuWeights::F32)
    }

    /// Load with matrix weights (linear layers, token embedding) stored as `dtype`.
    pub fn load_with(weights: &Weights, dims: &ModelDims, dtype: CpuWeights) -> Result<Self> {
        if dims.n_text_state != dims.n_audio_state {
            return Err(Error::model(
                weights.path(),
                "encoder and decoder widths differ",
            ));
        }
        let blocks = |side: Side| {
            (0..side.layers(dims))
                .map(|i| {
                    Block::load(
                        Layer { dims, side, i },
                        |m| LayerNorm::load(weights, m),
                        |m| Linear::load(weights, m, dtype),
                        |[query, key, value, out]| Attention {
                            query,
                            key,
                            value,
                            out,
                        },
                    )
                })
                .collect::<Result<Vec<_>>>()
        };
        let enc_blocks = blocks(Side::Encoder)?;
        let dec_blocks = blocks(Side::Decoder)?;
        schema::check_no_extra_layers(weights, dims)?;
        let f32_of = |t: &schema::Tensor| weights.f32(&t.name, &t.shape);
        let (conv1, conv2) = (
            schema::model(dims, Part::Conv1),
            schema::model(dims, Part::Conv2),
        );
        Ok(CpuModel {
            conv1_w: f32_of(&conv1.weight)?,
            conv1_b: f32_of(conv1.bias())?,
            conv2_w: f32_of(&conv2.weight)?,
            conv2_b: f32_of(conv2.bias())?,
            enc_pos: f32_of(&schema::model(dims, Part::EncoderPositions).weight)?,
            enc_blocks,
            enc_ln: LayerNorm::load(weights, &schema::model(dims, Part::EncoderNorm))?,
            tok_emb: Matrix::load(weights, &schema::model(dims, Part::TokenEmbedding), dtype)?,
            dec_pos: f32_of(&schema::model(dims, Part::DecoderPositions).weight)?,
            dec_blocks,
            dec_ln: LayerNorm::load(weights, &schema::model(dims, Part::DecoderNorm))?,
            encoder_out: Vec::new(),
            cross_k: vec![Vec::new(); dims.n_text_layer],
            cross_v: vec![Vec::new(); dims.n_text_layer],
            pass: DecodePass::default(),
            cache: KvCache::new(dims.n_text_layer),
            scratch: BlockScratch::default(),
            encoder_scratch: Default::default(),
            cross_kv_ms: 0.0,
            greedy_logits: Vec::new(),
            dims: dims.clone(),
            dtype,
            encoder_attention: crate::backend::cpu::ops::Products::F32,
            threads: rayon::current_num_threads(),
        })
    }
}
