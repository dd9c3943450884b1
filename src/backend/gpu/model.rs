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

use crate::backend::{Backend, DecodePass};
use crate::error::{Error, Result};
use crate::model::config::ModelDims;

use super::context::GpuContext;
use super::kernels::{self, GpuMatrix, KernelConfig, Kernels, WeightType, HEAD_DIM};
use super::mel::GpuMel;

mod decoder;
mod encoder;
mod load;
mod pass;

use decoder::GreedyPick;
use pass::Scratch;

struct Linear {
    w: GpuMatrix,
    b: Option<Buffer>,
}

struct LayerNorm {
    g: Buffer,
    b: Buffer,
    n: usize,
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
}

type Block = crate::backend::load_common::Block<LayerNorm, Attention, Linear>;

/// Self-attention keys and values of every decoded position, per decoder layer, for up to `cap`
/// sequences of `n_text_ctx` rows each (as `cpu::model::KvCache`); `spare_*` are the targets of
/// `reorder`, swapped in afterwards.
struct KvCache {
    k: Vec<Buffer>,
    v: Vec<Buffer>,
    spare_k: Vec<Buffer>,
    spare_v: Vec<Buffer>,
    cap: usize,
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
    /// Windows encoded, sequences of the pass, their windows and cached positions.
    pass: DecodePass,
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

impl GpuModel {
    /// Room for `n_seq` sequences (cache contents are not kept: the start of a pass).
    fn ensure_seqs(&mut self, n_seq: usize) {
        if n_seq > self.cache.cap {
            self.cache = Self::new_cache(&self.ctx, &self.dims, n_seq);
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

    /// Checks shared by `decode` and `cross_attention_weights` (the messages of `CpuModel`);
    /// returns tokens per sequence.
    fn check_decode(&self, tokens: &[u32]) -> Result<usize> {
        self.pass.check_step(tokens, &self.dims)
    }
}

impl Backend for GpuModel {
    fn dims(&self) -> &ModelDims {
        &self.dims
    }

    fn device_name(&self) -> String {
        format!("gpu: {}", self.ctx.describe())
    }

    fn mel_on_device(&self) -> bool {
        true
    }

    fn log_mel(&mut self, samples: &[f32], n_mels: usize) -> Result<crate::mel::LogMel> {
        let (ctx, k) = (&self.ctx, &self.k);
        self.log_mel
            .get_or_insert_with(|| GpuMel::new(ctx))
            .compute(ctx, k, samples, n_mels)
    }

    fn encode_windows(&mut self, mels: &[&[f32]]) -> Result<()> {
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
        Ok(())
    }

    crate::backend::decode_pass_field!(pass);

    fn encoder_output(&self) -> Result<Vec<f32>> {
        if self.pass.n_windows() == 0 {
            return Ok(Vec::new());
        }
        self.ctx.read(
            &self.enc_out,
            self.dims.n_audio_ctx * self.dims.n_audio_state,
        )
    }

    fn reserve_sequences(&mut self, n_seq: usize) {
        self.ensure_seqs(n_seq);
    }

    fn decode(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        let n = self.check_decode(tokens)?;
        let (n_seq, pos0, n_vocab) = (self.pass.n_seq(), self.pass.cached_len(), self.dims.n_vocab);
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
        self.pass.advance(n);
        Ok(())
    }

    /// The step's logits stay on the device: `greedy_pick` masks them and reduces to the
    /// token and its log-probability, and only those 8 bytes are read back.
    fn decode_greedy(&mut self, tokens: &[u32], suppress: &[u32]) -> Result<(u32, f32)> {
        if self.pass.n_seq() != 1 {
            return Err(Error::Internal(format!(
                "decode_greedy needs one sequence, the pass has {}",
                self.pass.n_seq()
            )));
        }
        let n = self.check_decode(tokens)?;
        let (pos0, n_vocab) = (self.pass.cached_len(), self.dims.n_vocab);
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
                let pick = kernels::GreedyPick {
                    x: &self.io.logits,
                    mask: &self.greedy.mask,
                    out: &self.greedy.out,
                    n: n_vocab,
                    mask_word: row * words,
                };
                self.k.record(pass, &pick)
            },
            |enc| enc.copy_buffer_to_buffer(&self.greedy.out, 0, &self.io.staging, 0, 8),
        )?;
        let mut picked = [0.0f32; 2];
        self.read_staging(&mut picked)?;
        self.pass.advance(n);
        Ok((picked[0].to_bits(), picked[1]))
    }

    fn reorder_caches(&mut self, src: &[usize]) -> Result<()> {
        let grow = src.len() > self.cache.cap;
        if grow {
            // The target must hold the new sequences; the source keeps its contents.
            let dims = &self.dims;
            self.cache.spare_k = Self::cache_buffers(&self.ctx, dims, src.len(), "cache_k");
            self.cache.spare_v = Self::cache_buffers(&self.ctx, dims, src.len(), "cache_v");
        }
        let seq_bytes = (self.dims.n_text_ctx * self.dims.n_text_state * 4) as u64;
        let used = (self.pass.cached_len() * self.dims.n_text_state * 4) as u64;
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

    fn cross_attention(&mut self, tokens: &[u32], heads: &[(usize, usize)]) -> Result<Vec<f32>> {
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
                let (rows, cols) = (heads.len() * n, na);
                let softmax = kernels::Softmax {
                    x: &self.attn_w,
                    rows,
                    cols,
                    causal: None,
                };
                self.k.record(pass, &softmax)
            },
            |_| {},
        )?;
        self.pass.advance(n);
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
