//! The decoder pass: OpenAI `TextDecoder.forward` over new tokens with the self-attention cache,
//! the device-resident suppression masks of the greedy pick, and reading the logits back.

use wgpu::Buffer;

use crate::error::{Error, Result};

use super::super::context::GpuContext;
use super::super::kernels::{Attention, AttnScores, Embed, KvAppend, LayerNorm, Linear};
use super::GpuModel;

/// Suppression bitsets resident on the device for `decode_greedy` (a greedy pass uses two: the
/// first step's and the rest's), and the two-word result it reads back.
pub(super) struct GreedyPick {
    /// `MASK_ROWS` rows of `ceil(n_vocab / 32)` words.
    pub mask: Buffer,
    /// The id list each row holds (compared per call: a few hundred ids).
    rows: Vec<Vec<u32>>,
    next: usize,
    /// (token, log-probability bits).
    pub out: Buffer,
}

const MASK_ROWS: usize = 4;

impl GreedyPick {
    pub(super) fn new(ctx: &GpuContext, n_vocab: usize) -> Self {
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
    pub(super) fn row_for(&mut self, ctx: &GpuContext, suppress: &[u32], n_vocab: usize) -> usize {
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
    /// OpenAI `TextDecoder.forward` with a KV cache for `n_seq` sequences of `n` new tokens at
    /// position `pos0` (ids already in `io.ids`), logits of each sequence's last position into
    /// `io.logits`. With `capture`, the scaled cross-attention scores of the listed heads go to
    /// `attn_w` (`[heads, rows, n_audio_ctx]`, softmaxed by the caller).
    pub(super) fn record_decoder(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        n_seq: usize,
        n: usize,
        pos0: usize,
        capture: Option<&[(usize, usize)]>,
    ) -> Result<()> {
        let (dims, k, s, c) = (&self.dims, &self.k, &self.dec, &self.cache);
        let (d, h, ctx) = (dims.n_text_state, dims.n_text_head, dims.n_text_ctx);
        let (n_kv, n_kv_audio) = (pos0 + n, dims.n_audio_ctx);
        let rows = n_seq * n;
        let embed = Embed {
            ids: &self.io.ids,
            pos: &self.dec_pos,
            out: &s.x,
            n_tok: rows,
            d,
            pos0,
            per_seq: n,
            table: self.tok_emb.view(),
        };
        k.record(pass, &embed)?;
        for (i, b) in self.dec_blocks.iter().enumerate() {
            // Causal self-attention: each sequence's new K/V rows go into its cache, and its
            // queries see its cache.
            b.attn_ln.run(k, pass, &s.x, &s.h, rows)?;
            b.attn.q.run(k, pass, &s.h, rows, &s.q, false)?;
            b.attn.k.run(k, pass, &s.h, rows, &s.k, false)?;
            b.attn.v.run(k, pass, &s.h, rows, &s.v, false)?;
            for (cache, src) in [(&c.k[i], &s.k), (&c.v[i], &s.v)] {
                let n_new = n;
                k.record(
                    pass,
                    &KvAppend {
                        cache,
                        src,
                        n_seq,
                        n_new,
                        d,
                        ctx,
                        pos0,
                    },
                )?;
            }
            let attn = Attention {
                n_seq,
                kv_stride: ctx,
                ..Attention::single([&s.q, &c.k[i], &c.v[i], &s.a], (n, n_kv, d, h), Some(pos0))
            };
            k.record(pass, &attn)?;
            b.attn.o.run(k, pass, &s.a, rows, &s.o, false)?;
            s.add_residual(k, pass, rows * d)?;

            // Cross-attention over each sequence's window, one dispatch per run of sequences on
            // one window: they read the same keys (stride 0), batched per sequence so that a
            // step's single queries take the few-query kernel.
            let (cross_ln, cross) = (b.cross_ln.as_ref().unwrap(), b.cross.as_ref().unwrap());
            cross_ln.run(k, pass, &s.x, &s.h, rows)?;
            cross.q.run(k, pass, &s.h, rows, &s.q, false)?;
            for &(w, seq0, run_seqs) in self.pass.runs() {
                let kv = [&self.cross_k[w][i], &self.cross_v[w][i]];
                let attn = Attention {
                    row0: seq0 * n,
                    n_seq: run_seqs,
                    ..Attention::single([&s.q, kv[0], kv[1], &s.a], (n, n_kv_audio, d, h), None)
                };
                k.record(pass, &attn)?;
            }
            if let Some(heads) = capture {
                let w = self.pass.runs()[0].0;
                for (slot, &(layer, head)) in heads.iter().enumerate() {
                    if layer == i {
                        let scores = AttnScores {
                            q: &s.q,
                            k: &self.cross_k[w][i],
                            out: &self.attn_w,
                            n_q: rows,
                            n_kv: n_kv_audio,
                            head,
                            out_row0: slot * rows,
                            d,
                        };
                        k.record(pass, &scores)?;
                    }
                }
            }
            cross.o.run(k, pass, &s.a, rows, &s.o, false)?;
            s.add_residual(k, pass, rows * d)?;

            b.mlp_ln.run(k, pass, &s.x, &s.h, rows)?;
            b.fc1.run(k, pass, &s.h, rows, &s.hidden, true)?;
            b.fc2.run(k, pass, &s.hidden, rows, &s.o, false)?;
            s.add_residual(k, pass, rows * d)?;
        }
        // Only each sequence's last position is needed: final LN of those rows, then the tied
        // output projection (token embedding transposed).
        let last_ln = LayerNorm {
            x: &s.x,
            gamma: &self.dec_ln.g,
            beta: &self.dec_ln.b,
            out: &self.io.last_ln,
            rows: n_seq,
            cols: d,
            in_step: n,
            in_first: n - 1,
        };
        k.record(pass, &last_ln)?;
        let logits = Linear::new(
            &self.io.last_ln,
            self.tok_emb.view(),
            &self.io.logits,
            n_seq,
        );
        k.record(pass, &logits)
    }

    /// Maps the staging buffer and copies its first `out.len()` floats out.
    pub(super) fn read_staging(&self, out: &mut [f32]) -> Result<()> {
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
