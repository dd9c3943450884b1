//! Uncompressed sample streams read incrementally: the data chunk of a WAV (through our own
//! RIFF reader, which survives odd WAVs) and raw PCM (`--input-format s16le|f32le`).

use std::io::Read;

use super::stream::{FrameSource, SourceFormat};
use super::wav::{fmt_tag, parse_fmt, sample_at, tag_is_ours, SampleKind, WavFormat};

/// Raw PCM sample encodings (what `arecord -f S16_LE` and `ffmpeg -f s16le|f32le -` write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RawEncoding {
    S16le,
    F32le,
}

impl std::str::FromStr for RawEncoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "s16le" => Ok(RawEncoding::S16le),
            "f32le" => Ok(RawEncoding::F32le),
            other => Err(format!(
                "unknown raw PCM format '{other}' (supported: s16le, f32le)"
            )),
        }
    }
}

/// Raw PCM input: no header, so the caller says what the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPcm {
    pub encoding: RawEncoding,
    pub sample_rate: u32,
    pub channels: u16,
}

impl RawPcm {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1_000..=1_536_000).contains(&self.sample_rate) {
            return Err(format!(
                "raw PCM sample rate {} Hz is out of range (1000 to 1536000)",
                self.sample_rate
            ));
        }
        if self.channels == 0 || self.channels > 64 {
            return Err(format!(
                "raw PCM channel count {} is out of range (1 to 64)",
                self.channels
            ));
        }
        Ok(())
    }
}

/// Frames read per block.
const BLOCK_FRAMES: usize = 4096;

/// Interleaved samples of a known layout, read from `reader` until `remaining` bytes are consumed
/// (None: until end of input).
pub(crate) struct PcmSource<R> {
    reader: R,
    kind: SampleKind,
    channels: usize,
    container: usize,
    remaining: Option<u64>,
    /// Bytes read and not yet converted (`have` of them: less than one frame between calls).
    bytes: Vec<u8>,
    have: usize,
    ended: bool,
    format: SourceFormat,
    damage: Option<String>,
    /// NaN or infinite float samples met so far (converted to silence).
    nonfinite: usize,
}

impl<R: Read + Send> PcmSource<R> {
    fn new(reader: R, wav: WavFormat, data_len: Option<u64>, format: SourceFormat) -> Self {
        PcmSource {
            reader,
            kind: wav.kind,
            channels: wav.channels as usize,
            container: wav.container,
            remaining: data_len,
            bytes: Vec::new(),
            have: 0,
            ended: false,
            format,
            damage: None,
            nonfinite: 0,
        }
    }

    /// Raw PCM from `reader`.
    pub(crate) fn raw(reader: R, raw: RawPcm) -> Self {
        let (kind, container, codec) = match raw.encoding {
            RawEncoding::S16le => (SampleKind::I16, 2, "PCM s16le"),
            RawEncoding::F32le => (SampleKind::F32, 4, "PCM f32le"),
        };
        let wav = WavFormat {
            kind,
            channels: raw.channels,
            sample_rate: raw.sample_rate,
            block_align: container * raw.channels as usize,
            container,
            bits: container as u16 * 8,
        };
        let format = SourceFormat {
            container: "raw PCM".into(),
            codec: codec.into(),
            sample_rate: raw.sample_rate,
            channels: raw.channels,
            bits_per_sample: Some(container as u32 * 8),
            total_frames: None,
        };
        Self::new(reader, wav, None, format)
    }
}

/// Read until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read + Send> FrameSource for PcmSource<R> {
    fn format(&self) -> &SourceFormat {
        &self.format
    }

    fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    fn nonfinite(&self) -> usize {
        self.nonfinite
    }

    /// Returns the whole frames the next `read` brings (at least one), so that a live stream
    /// (a microphone through a pipe) is handed on as it arrives, not when a block is full.
    fn next_block(&mut self, out: &mut Vec<f32>) -> Result<bool, String> {
        out.clear();
        let block = self.channels * self.container;
        let cap = BLOCK_FRAMES * block;
        self.bytes.resize(cap, 0);
        loop {
            if self.have >= block {
                let frames = self.have / block;
                if matches!(self.kind, SampleKind::F32 | SampleKind::F64) {
                    let data = &self.bytes[..frames * block];
                    self.nonfinite += super::levels::count_nonfinite(data, self.container);
                }
                out.reserve(frames * self.channels);
                for i in 0..frames * self.channels {
                    out.push(sample_at(&self.bytes, i * self.container, self.kind));
                }
                // Keep a partial frame for the next read.
                self.bytes.copy_within(frames * block..self.have, 0);
                self.have -= frames * block;
                return Ok(true);
            }
            if self.ended {
                return Ok(false);
            }
            let mut room = cap - self.have;
            if let Some(rem) = self.remaining {
                room = room.min(usize::try_from(rem).unwrap_or(usize::MAX));
            }
            let n = if room == 0 {
                0
            } else {
                read_some(
                    &mut self.reader,
                    &mut self.bytes[self.have..self.have + room],
                )
                .map_err(|e| format!("read error: {e}"))?
            };
            if n == 0 {
                // The declared data is all read, or the input ended.
                self.ended = true;
                if self.remaining.is_some_and(|r| r > 0) || self.have > 0 {
                    self.damage = Some(
                        "truncated: the file ends before the audio its header declares; using \
                         the samples present"
                            .into(),
                    );
                }
                continue;
            }
            self.have += n;
            if let Some(rem) = self.remaining.as_mut() {
                *rem -= n as u64;
            }
        }
    }
}

/// One `read`, retried only when interrupted; 0 is the end of the input.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// How a streamed WAV's header turned out.
pub(crate) enum WavStart {
    /// Samples follow in `reader`; `data_len` bytes declared (None: size unknown, streamed).
    Pcm {
        format: WavFormat,
        data_len: Option<u64>,
    },
    /// An encoding our reader leaves to symphonia (ADPCM, A-law, mu-law, ...).
    Other,
    /// The data chunk comes before the fmt chunk: only the whole-file reader handles that.
    DataBeforeFmt,
}

/// The largest `fmt ` or skipped chunk we accept before the data chunk, to bound memory and
/// reading on a corrupt size field.
const MAX_HEADER_CHUNK: usize = 1 << 20;

/// Read a WAV header from the start of `r`, leaving `r` at the first sample.
pub(crate) fn read_wav_header(r: &mut impl Read) -> Result<WavStart, String> {
    let io = |e: std::io::Error| format!("read error: {e}");
    let mut riff = [0u8; 12];
    let n = read_full(r, &mut riff).map_err(io)?;
    if n == 0 {
        return Err("file is empty (0 bytes)".into());
    }
    if n < 12 {
        return Err(if n < 4 {
            format!("truncated WAV header ({n} bytes)")
        } else {
            format!("truncated WAV header ({n} bytes, RIFF header needs 12)")
        });
    }
    if &riff[8..12] != b"WAVE" {
        let kind = String::from_utf8_lossy(&riff[8..12]).into_owned();
        return Err(format!("RIFF file of type '{kind}' is not WAVE audio"));
    }
    let mut pos = 12u64;
    let mut fmt: Option<Vec<u8>> = None;
    loop {
        let mut head = [0u8; 8];
        if read_full(r, &mut head).map_err(io)? < 8 {
            return Err(match fmt {
                None => {
                    format!("truncated or malformed WAV header: no 'fmt ' chunk in {pos} bytes")
                }
                Some(_) => "truncated WAV: no 'data' chunk (file ends before the audio)".into(),
            });
        }
        pos += 8;
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64;
        match &head[..4] {
            b"data" => {
                let Some(fmt) = fmt else {
                    return Ok(WavStart::DataBeforeFmt);
                };
                let format = parse_fmt(&fmt)?;
                let unknown = size == u32::MAX as u64 || size == 0x7FFF_FFFF;
                return Ok(WavStart::Pcm {
                    format,
                    data_len: (!unknown).then_some(size),
                });
            }
            b"fmt " => {
                if size as usize > MAX_HEADER_CHUNK {
                    return Err(format!("malformed WAV: 'fmt ' chunk declares {size} bytes"));
                }
                let mut body = vec![0u8; size as usize];
                let got = read_full(r, &mut body).map_err(io)?;
                if got < body.len() {
                    return Err(format!(
                        "truncated WAV header: 'fmt ' chunk declares {size} bytes, file has {got}"
                    ));
                }
                if size & 1 == 1 {
                    read_full(r, &mut [0u8; 1]).map_err(io)?;
                }
                match fmt_tag(&body) {
                    Some(tag) if !tag_is_ours(tag) => return Ok(WavStart::Other),
                    _ => {}
                }
                fmt = Some(body);
            }
            _ => {
                // Skip the chunk (word-aligned: odd sizes carry a pad byte).
                let skip = size + (size & 1);
                let copied =
                    std::io::copy(&mut r.by_ref().take(skip), &mut std::io::sink()).map_err(io)?;
                if copied < skip {
                    return Err(format!(
                        "truncated or malformed WAV header: no 'data' chunk in {} bytes",
                        pos + copied
                    ));
                }
            }
        }
        pos += size + (size & 1);
    }
}

/// A PCM source for a WAV whose header [`read_wav_header`] has just read from `reader`.
pub(crate) fn wav_source<R: Read + Send>(
    reader: R,
    format: WavFormat,
    data_len: Option<u64>,
) -> PcmSource<R> {
    let float = matches!(format.kind, SampleKind::F32 | SampleKind::F64);
    let source_format = SourceFormat {
        container: "WAV".into(),
        codec: if float {
            format!("PCM {}-bit float", format.container * 8)
        } else {
            format!("PCM {}-bit integer", format.container * 8)
        },
        sample_rate: format.sample_rate,
        channels: format.channels,
        bits_per_sample: Some(format.bits as u32),
        total_frames: data_len.map(|d| d / format.block_align as u64),
    };
    PcmSource::new(reader, format, data_len, source_format)
}
