//! WAV files written byte by byte, for the decoders' tests (headers that hound would not write:
//! odd chunks, chunks out of order, EXTENSIBLE variants).
//!
//! Use with `#[path = "common/wav.rs"] mod wav;`.

#![allow(dead_code)]

/// A RIFF/WAVE file of `chunks` (id, body) in this order, each padded to an even length.
pub fn riff_wave(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut body = b"WAVE".to_vec();
    for (id, data) in chunks {
        body.extend_from_slice(*id);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The 16-byte `fmt ` body of interleaved samples: `tag` 1 (integer PCM) or 3 (float).
pub fn fmt_chunk(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let block_align = channels * bits / 8;
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * block_align as u32).to_le_bytes());
    fmt.extend_from_slice(&block_align.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    fmt
}

/// A canonical 44-byte-header WAV: `fmt ` then `data`.
pub fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    riff_wave(&[
        (b"fmt ", &fmt_chunk(tag, channels, rate, bits)),
        (b"data", data),
    ])
}
