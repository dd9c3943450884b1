//! Whisper's forward pass on the CPU, block for block as OpenAI's `model.py`: the reference the
//! GPU backend is tested against. Weights are held in f32; every matrix product goes through
//! `ops::linear` / `ops::attention` (the `gemm` crate, multi-threaded).

use crate::backend::cpu::ops;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::config::ModelDims;
use crate::model::weights::Weights;

/// `y = x · Wᵀ + b`, W as PyTorch's `[n_out, n_in]`.
struct Linear {
    w: Vec<f32>,
    b: Option<Vec<f32>>,
    n_in: usize,
    n_out: usize,
}

impl Linear {
    fn load(w: &Weights, prefix: &str, n_in: usize, n_out: usize, bias: bool) -> Result<Self> {
        Ok(Linear {
            w: w.f32(&format!("{prefix}.weight"), &[n_out, n_in])?,
            b: if bias {
                Some(w.f32(&format!("{prefix}.bias"), &[n_out])?)
            } else {
                None
            },
            n_in,
            n_out,
        })
    }

    /// `rows` rows of `x` -> `out` (`rows * n_out`).
    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        ops::linear(
            x,
            rows,
            self.n_in,
            &self.w,
            self.n_out,
            self.b.as_deref(),
            &mut out[..rows * self.n_out],
        );
    }
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl LayerNorm {
    fn load(w: &Weights, prefix: &str, n: usize) -> Result<Self> {
        Ok(LayerNorm {
            gamma: w.f32(&format!("{prefix}.weight"), &[n])?,
            beta: w.f32(&format!("{prefix}.bias"), &[n])?,
        })
    }

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

impl Attention {
    fn load(w: &Weights, prefix: &str, d: usize) -> Result<Self> {
        Ok(Attention {
            query: Linear::load(w, &format!("{prefix}.q_proj"), d, d, true)?,
            key: Linear::load(w, &format!("{prefix}.k_proj"), d, d, false)?,
            value: Linear::load(w, &format!("{prefix}.v_proj"), d, d, true)?,
            out: Linear::load(w, &format!("{prefix}.out_proj"), d, d, true)?,
        })
    }
}

struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn load(w: &Weights, prefix: &str, d: usize, ffn: usize) -> Result<Self> {
        Ok(Mlp {
            fc1: Linear::load(w, &format!("{prefix}.fc1"), d, ffn, true)?,
            fc2: Linear::load(w, &format!("{prefix}.fc2"), ffn, d, true)?,
        })
    }

    /// `out = fc2(gelu(fc1(x)))`, using `hidden` (`rows * ffn`) as scratch.
    fn forward(&self, x: &[f32], rows: usize, hidden: &mut [f32], out: &mut [f32]) {
        let hidden = &mut hidden[..rows * self.fc1.n_out];
        self.fc1.forward(x, rows, hidden);
        ops::gelu(hidden);
        self.fc2.forward(hidden, rows, out);
    }
}

/// OpenAI `ResidualAttentionBlock`: pre-LN self-attention, (decoder only) cross-attention, MLP.
struct Block {
    attn_ln: LayerNorm,
    attn: Attention,
    cross_ln: Option<LayerNorm>,
    cross: Option<Attention>,
    mlp_ln: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn load(w: &Weights, prefix: &str, d: usize, ffn: usize, cross: bool) -> Result<Self> {
        Ok(Block {
            attn_ln: LayerNorm::load(w, &format!("{prefix}.self_attn_layer_norm"), d)?,
            attn: Attention::load(w, &format!("{prefix}.self_attn"), d)?,
            cross_ln: if cross {
                Some(LayerNorm::load(
                    w,
                    &format!("{prefix}.encoder_attn_layer_norm"),
                    d,
                )?)
            } else {
                None
            },
            cross: if cross {
                Some(Attention::load(w, &format!("{prefix}.encoder_attn"), d)?)
            } else {
                None
            },
            mlp_ln: LayerNorm::load(w, &format!("{prefix}.final_layer_norm"), d)?,
            mlp: Mlp::load(w, prefix, d, ffn)?,
        })
    }
}

/// Self-attention keys and values of every decoded position, per decoder layer, allocated once
/// at `n_text_ctx` rows.
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

/// Scratch space for a decoder call of up to `n_text_ctx` tokens, allocated once per model so
/// that a decoder step allocates nothing.
struct DecoderScratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    a: Vec<f32>,
    o: Vec<f32>,
    hidden: Vec<f32>,
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
    tok_emb: Vec<f32>,
    dec_pos: Vec<f32>,
    dec_blocks: Vec<Block>,
    dec_ln: LayerNorm,
    /// `[n_audio_ctx, d]` of the current window.
    encoder_out: Vec<f32>,
    /// Cross-attention K and V per decoder layer, computed once per window.
    cross_k: Vec<Vec<f32>>,
    cross_v: Vec<Vec<f32>>,
    cache: KvCache,
    scratch: DecoderScratch,
}

impl CpuModel {
    /// Load every tensor, checking each one's shape against `dims`.
    pub fn load(weights: &Weights, dims: &ModelDims) -> Result<Self> {
        let d = dims.n_audio_state;
        if dims.n_text_state != d {
            return Err(Error::model(
                weights.path(),
                "encoder and decoder widths differ",
            ));
        }
        let enc_blocks = (0..dims.n_audio_layer)
            .map(|i| {
                Block::load(
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
                    weights,
                    &format!("model.decoder.layers.{i}"),
                    d,
                    dims.n_text_ffn,
                    true,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        // A checkpoint with more layers than the config names is a config mismatch, not extra data.
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
        let ctx = dims.n_text_ctx;
        Ok(CpuModel {
            conv1_w: weights.f32("model.encoder.conv1.weight", &[d, dims.n_mels, 3])?,
            conv1_b: weights.f32("model.encoder.conv1.bias", &[d])?,
            conv2_w: weights.f32("model.encoder.conv2.weight", &[d, d, 3])?,
            conv2_b: weights.f32("model.encoder.conv2.bias", &[d])?,
            enc_pos: weights.f32(
                "model.encoder.embed_positions.weight",
                &[dims.n_audio_ctx, d],
            )?,
            enc_blocks,
            enc_ln: LayerNorm::load(weights, "model.encoder.layer_norm", d)?,
            tok_emb: weights.f32("model.decoder.embed_tokens.weight", &[dims.n_vocab, d])?,
            dec_pos: weights.f32("model.decoder.embed_positions.weight", &[ctx, d])?,
            dec_blocks,
            dec_ln: LayerNorm::load(weights, "model.decoder.layer_norm", d)?,
            encoder_out: Vec::new(),
            cross_k: vec![Vec::new(); dims.n_text_layer],
            cross_v: vec![Vec::new(); dims.n_text_layer],
            cache: KvCache {
                k: vec![vec![0.0; ctx * d]; dims.n_text_layer],
                v: vec![vec![0.0; ctx * d]; dims.n_text_layer],
                len: 0,
            },
            scratch: DecoderScratch {
                x: vec![0.0; ctx * d],
                h: vec![0.0; ctx * d],
                q: vec![0.0; ctx * d],
                a: vec![0.0; ctx * d],
                o: vec![0.0; ctx * d],
                hidden: vec![0.0; ctx * dims.n_text_ffn],
            },
            dims: dims.clone(),
        })
    }

    /// OpenAI `AudioEncoder.forward` for one window: mel `[n_mels, 2 * n_audio_ctx]` ->
    /// `[n_audio_ctx, d]`.
    fn run_encoder(&self, mel: &[f32]) -> Result<Vec<f32>> {
        let dims = &self.dims;
        let (d, n_mels, t_in) = (dims.n_audio_state, dims.n_mels, 2 * dims.n_audio_ctx);
        if mel.len() != n_mels * t_in {
            return Err(Error::Internal(format!(
                "mel window has {} values, expected {n_mels} x {t_in}",
                mel.len()
            )));
        }
        // Stem: conv1 (stride 1) + GELU, conv2 (stride 2) + GELU. conv1 writes time-major rows;
        // conv2 reads channels-first, hence the transpose between them.
        let mut x1 = vec![0.0; t_in * d];
        ops::conv1d_k3(
            mel,
            n_mels,
            t_in,
            &self.conv1_w,
            &self.conv1_b,
            d,
            1,
            &mut x1,
        );
        ops::gelu(&mut x1);
        let mut x1_cf = vec![0.0; d * t_in];
        for t in 0..t_in {
            for c in 0..d {
                x1_cf[c * t_in + t] = x1[t * d + c];
            }
        }
        let n = ops::conv1d_out_len(t_in, 2);
        debug_assert_eq!(n, dims.n_audio_ctx);
        let mut x = vec![0.0; n * d];
        ops::conv1d_k3(&x1_cf, d, t_in, &self.conv2_w, &self.conv2_b, d, 2, &mut x);
        ops::gelu(&mut x);
        ops::add_assign(&mut x, &self.enc_pos);

        let mut h = vec![0.0; n * d];
        let (mut q, mut k, mut v, mut a, mut o) =
            (h.clone(), h.clone(), h.clone(), h.clone(), h.clone());
        let mut hidden = vec![0.0; n * dims.n_audio_ffn];
        for block in &self.enc_blocks {
            block.attn_ln.forward(&x, &mut h);
            block.attn.query.forward(&h, n, &mut q);
            block.attn.key.forward(&h, n, &mut k);
            block.attn.value.forward(&h, n, &mut v);
            ops::attention(&q, &k, &v, n, n, d, dims.n_audio_head, None, &mut a);
            block.attn.out.forward(&a, n, &mut o);
            ops::add_assign(&mut x, &o);
            block.mlp_ln.forward(&x, &mut h);
            block.mlp.forward(&h, n, &mut hidden, &mut o);
            ops::add_assign(&mut x, &o);
        }
        let mut out = vec![0.0; n * d];
        self.enc_ln.forward(&x, &mut out);
        Ok(out)
    }
}

impl Backend for CpuModel {
    fn dims(&self) -> &ModelDims {
        &self.dims
    }

    fn device_name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn encode(&mut self, mel: &[f32]) -> Result<()> {
        self.encoder_out = self.run_encoder(mel)?;
        let n = self.dims.n_audio_ctx;
        for (i, block) in self.dec_blocks.iter().enumerate() {
            let cross = block
                .cross
                .as_ref()
                .expect("decoder blocks have cross-attention");
            let d = self.dims.n_text_state;
            let mut k = vec![0.0; n * d];
            let mut v = vec![0.0; n * d];
            cross.key.forward(&self.encoder_out, n, &mut k);
            cross.value.forward(&self.encoder_out, n, &mut v);
            self.cross_k[i] = k;
            self.cross_v[i] = v;
        }
        self.cache.len = 0;
        Ok(())
    }

    fn encoder_output(&self) -> Result<Vec<f32>> {
        Ok(self.encoder_out.clone())
    }

    fn reset_decoder(&mut self) {
        self.cache.len = 0;
    }

    fn cached_len(&self) -> usize {
        self.cache.len
    }

    /// OpenAI `TextDecoder.forward` with a KV cache: only the new tokens are computed.
    fn decode(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        let dims = &self.dims;
        let (d, n_head) = (dims.n_text_state, dims.n_text_head);
        let (n, pos0) = (tokens.len(), self.cache.len);
        if n == 0 || pos0 + n > dims.n_text_ctx {
            return Err(Error::Internal(format!(
                "decoder given {n} tokens at position {pos0}, context is {}",
                dims.n_text_ctx
            )));
        }
        if self.encoder_out.is_empty() {
            return Err(Error::Internal("decode called before encode".into()));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= dims.n_vocab) {
            return Err(Error::Internal(format!(
                "token id {bad} outside the vocabulary of {}",
                dims.n_vocab
            )));
        }
        let n_kv = pos0 + n;
        let s = &mut self.scratch;
        let rows = n * d;
        ops::embed(
            &self.tok_emb,
            &self.dec_pos,
            d,
            tokens,
            pos0,
            &mut s.x[..rows],
        );
        for (i, block) in self.dec_blocks.iter().enumerate() {
            // Causal self-attention: new K/V rows go into the cache, queries see the cache.
            block.attn_ln.forward(&s.x[..rows], &mut s.h);
            block.attn.query.forward(&s.h, n, &mut s.q);
            block
                .attn
                .key
                .forward(&s.h, n, &mut self.cache.k[i][pos0 * d..]);
            block
                .attn
                .value
                .forward(&s.h, n, &mut self.cache.v[i][pos0 * d..]);
            ops::attention(
                &s.q[..rows],
                &self.cache.k[i][..n_kv * d],
                &self.cache.v[i][..n_kv * d],
                n,
                n_kv,
                d,
                n_head,
                Some(pos0),
                &mut s.a[..rows],
            );
            block.attn.out.forward(&s.a, n, &mut s.o);
            ops::add_assign(&mut s.x[..rows], &s.o[..rows]);

            // Cross-attention over this window's encoder output.
            let (cross_ln, cross) = (
                block.cross_ln.as_ref().unwrap(),
                block.cross.as_ref().unwrap(),
            );
            cross_ln.forward(&s.x[..rows], &mut s.h);
            cross.query.forward(&s.h, n, &mut s.q);
            ops::attention(
                &s.q[..rows],
                &self.cross_k[i],
                &self.cross_v[i],
                n,
                dims.n_audio_ctx,
                d,
                n_head,
                None,
                &mut s.a[..rows],
            );
            cross.out.forward(&s.a, n, &mut s.o);
            ops::add_assign(&mut s.x[..rows], &s.o[..rows]);

            block.mlp_ln.forward(&s.x[..rows], &mut s.h);
            block.mlp.forward(&s.h, n, &mut s.hidden, &mut s.o);
            ops::add_assign(&mut s.x[..rows], &s.o[..rows]);
        }
        self.cache.len = n_kv;
        // Only the last position's logits are needed: final LN of one row, then the tied
        // output projection (token embedding transposed).
        let last = &s.x[(n - 1) * d..rows];
        self.dec_ln.forward(last, &mut s.h[..d]);
        ops::linear(
            &s.h[..d],
            1,
            d,
            &self.tok_emb,
            dims.n_vocab,
            None,
            &mut logits[..dims.n_vocab],
        );
        Ok(())
    }
}
