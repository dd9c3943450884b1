//! The decoder pass: OpenAI `TextDecoder.forward` over new tokens with the self-attention cache,
//! the device-resident suppression masks of the greedy pick, and reading the logits back.

use wgpu::Buffer;

use crate::error::{Error, Result};

use super::super::context::GpuContext;
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
            k.attention_batched_at(
                pass,
                &s.q,
                &c.k[i],
                &c.v[i],
                &s.a,
                0,
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
            for &(w, seq0, run_seqs) in self.pass.runs() {
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
                let w = self.pass.runs()[0].0;
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
