//! The encoder pass: OpenAI `AudioEncoder.forward` over one window's mel, then the
//! cross-attention keys and values every decoder layer reads.

use crate::error::Result;

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
}
