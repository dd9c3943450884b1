//! The encoder pass: OpenAI `AudioEncoder.forward` over one window's mel, then the
//! cross-attention keys and values every decoder layer reads.

use crate::error::Result;

use super::super::kernels::{Add, Attention, AttentionUnfused, Conv1d, Transpose};
use super::GpuModel;

impl GpuModel {
    /// The encoder over `mel`, then the cross-attention K/V of window `window`.
    pub(super) fn record_encoder(
        &self,
        enc: &mut wgpu::ComputePass<'_>,
        window: usize,
    ) -> Result<()> {
        let (dims, k, s) = (&self.dims, &self.k, &self.enc);
        let (d, n, t_in) = (dims.n_audio_state, dims.n_audio_ctx, 2 * dims.n_audio_ctx);
        // Stem: conv1 (time-major out) -> transpose -> conv2 (stride 2), GELU after each.
        let conv1 = Conv1d {
            input: &self.mel,
            weight: &self.conv1_w,
            bias: &self.conv1_b,
            out: &self.stem1,
            c_in: dims.n_mels,
            t_in,
            c_out: d,
            stride: 1,
            gelu: true,
        };
        k.record(enc, &conv1)?;
        let (out, inp) = (&self.stem1_cf, &self.stem1);
        k.record(
            enc,
            &Transpose {
                out,
                inp,
                rows: t_in,
                cols: d,
            },
        )?;
        let conv2 = Conv1d {
            input: &self.stem1_cf,
            weight: &self.conv2_w,
            bias: &self.conv2_b,
            out: &s.x,
            c_in: d,
            stride: 2,
            ..conv1
        };
        k.record(enc, &conv2)?;
        k.record(
            enc,
            &Add {
                a: &s.x,
                b: &self.enc_pos,
                n: n * d,
            },
        )?;
        for b in &self.enc_blocks {
            b.attn_ln.run(k, enc, &s.x, &s.h, n)?;
            b.attn.q.run(k, enc, &s.h, n, &s.q, false)?;
            b.attn.k.run(k, enc, &s.h, n, &s.k, false)?;
            b.attn.v.run(k, enc, &s.h, n, &s.v, false)?;
            let (q, kk, v, out, n_head) = (&s.q, &s.k, &s.v, &s.a, dims.n_audio_head);
            if k.use_unfused_attention(n, n, None) {
                let scores = &self.enc_scores;
                let attn = AttentionUnfused {
                    q,
                    k: kk,
                    v,
                    out,
                    scores,
                    n_kv: n,
                    n_q: n,
                    d,
                    n_head,
                };
                k.record(enc, &attn)?;
            } else {
                k.record(
                    enc,
                    &Attention::single([q, kk, v, out], (n, n, d, n_head), None),
                )?;
            }
            b.attn.o.run(k, enc, &s.a, n, &s.o, false)?;
            s.add_residual(k, enc, n * d)?;
            b.mlp_ln.run(k, enc, &s.x, &s.h, n)?;
            b.fc1.run(k, enc, &s.h, n, &s.hidden, true)?;
            b.fc2.run(k, enc, &s.hidden, n, &s.o, false)?;
            s.add_residual(k, enc, n * d)?;
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
}
