//! Opus decoding through libopus (the reference decoder, built from source by `audiopus_sys`).
//!
//! Why libopus and not a pure-Rust decoder: libopus *is* the RFC 6716 reference implementation,
//! so it passes the RFC test vectors by definition; the pure-Rust decoders on crates.io are young
//! (0.x, a few months old) and their conformance could not be checked here (the test vectors are
//! not reachable offline). `audiopus_sys` ships the libopus sources in its crate and builds them
//! with CMake (feature `static`), so a fresh clone needs only crates.io and `cmake`.
//!
//! Symphonia demuxes Ogg and Matroska/WebM Opus tracks but has no Opus decoder; this module is
//! the decoder for those packets. It always uses the multistream API, which covers mapping
//! family 0 (mono/stereo) and family 1 (surround) alike.

use std::os::raw::c_int;

use audiopus_sys as ffi;

/// libopus always decodes at 48 kHz here (Opus's native rate; the stream's "input rate" in the
/// header is informational only).
pub const OPUS_RATE: u32 = 48_000;

/// The longest Opus packet: 120 ms at 48 kHz.
const MAX_FRAME: usize = 5760;

/// What an `OpusHead` header says (RFC 7845 section 5.1).
#[derive(Debug, Clone)]
pub struct OpusHead {
    pub channels: u8,
    /// Samples (at 48 kHz) of encoder priming to drop from the start.
    pub pre_skip: u16,
    /// Output gain in Q7.8 dB, to apply to every sample.
    pub gain_q8: i16,
    pub streams: u8,
    pub coupled: u8,
    pub mapping: Vec<u8>,
}

impl OpusHead {
    /// Parse the identification header (Ogg's first packet, Matroska's CodecPrivate).
    pub fn parse(b: &[u8]) -> Result<Self, String> {
        if b.len() < 19 || &b[..8] != b"OpusHead" {
            return Err("Opus stream without a valid OpusHead header".into());
        }
        let channels = b[9];
        if channels == 0 {
            return Err("Opus header says 0 channels".into());
        }
        let pre_skip = u16::from_le_bytes([b[10], b[11]]);
        let gain_q8 = i16::from_le_bytes([b[16], b[17]]);
        let family = b[18];
        let (streams, coupled, mapping) = if family == 0 {
            if channels > 2 {
                return Err(format!(
                    "Opus mapping family 0 with {channels} channels is invalid"
                ));
            }
            (1, channels - 1, (0..channels).collect())
        } else {
            if b.len() < 21 + channels as usize {
                return Err("Opus header truncated (channel mapping table)".into());
            }
            let (s, c) = (b[19], b[20]);
            if s == 0 || c > s {
                return Err(format!("Opus header has {s} streams, {c} coupled"));
            }
            (s, c, b[21..21 + channels as usize].to_vec())
        };
        Ok(OpusHead {
            channels,
            pre_skip,
            gain_q8,
            streams,
            coupled,
            mapping,
        })
    }
}

/// A libopus multistream decoder producing interleaved f32 at 48 kHz.
pub struct OpusDecoder {
    state: *mut ffi::OpusMSDecoder,
    channels: usize,
    gain: f32,
    out: Vec<f32>,
}

// SAFETY: the decoder state is owned exclusively by this value and libopus keeps no global or
// thread-local state; moving it to another thread is sound (it is not shared: no Sync).
unsafe impl Send for OpusDecoder {}

fn opus_error(code: c_int) -> String {
    // SAFETY: opus_strerror returns a pointer to a static NUL-terminated string for any code.
    unsafe { std::ffi::CStr::from_ptr(ffi::opus_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

impl OpusDecoder {
    pub fn new(head: &OpusHead) -> Result<Self, String> {
        let mut err: c_int = 0;
        // SAFETY: `mapping` has `channels` entries, as libopus requires; `err` is a valid out
        // pointer. A null result is checked below.
        let state = unsafe {
            ffi::opus_multistream_decoder_create(
                OPUS_RATE as i32,
                head.channels as c_int,
                head.streams as c_int,
                head.coupled as c_int,
                head.mapping.as_ptr(),
                &mut err,
            )
        };
        if state.is_null() || err != 0 {
            return Err(format!("libopus refused the stream: {}", opus_error(err)));
        }
        Ok(OpusDecoder {
            state,
            channels: head.channels as usize,
            gain: 10f32.powf(head.gain_q8 as f32 / (20.0 * 256.0)),
            out: vec![0.0; MAX_FRAME * head.channels as usize],
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Decode one packet; returns its interleaved samples (borrowed until the next call).
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[f32], String> {
        // SAFETY: `out` holds MAX_FRAME frames of `channels` samples, the frame_size passed;
        // `packet` is a valid slice of the given length.
        let n = unsafe {
            ffi::opus_multistream_decode_float(
                self.state,
                packet.as_ptr(),
                packet.len() as i32,
                self.out.as_mut_ptr(),
                MAX_FRAME as c_int,
                0,
            )
        };
        if n < 0 {
            return Err(format!("damaged Opus packet: {}", opus_error(n)));
        }
        let len = n as usize * self.channels;
        if self.gain != 1.0 {
            for x in &mut self.out[..len] {
                *x *= self.gain;
            }
        }
        Ok(&self.out[..len])
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: `state` came from opus_multistream_decoder_create and is destroyed once.
        unsafe { ffi::opus_multistream_decoder_destroy(self.state) }
    }
}
