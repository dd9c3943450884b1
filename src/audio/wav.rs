//! A small RIFF/WAVE reader: PCM 8/16/24/32-bit integer and IEEE 32/64-bit float, plain or
//! `WAVE_FORMAT_EXTENSIBLE`, any channel count. Errors are one-line messages (the caller adds
//! the file name).

/// What [`decode_wav_bytes`] found in a WAV file.
#[derive(Debug, Clone)]
pub struct DecodedWav {
    /// Mono samples (channels averaged), nominally in [-1, 1].
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channels in the file (before averaging).
    pub channels: u16,
    /// The data chunk declared more bytes than the file holds; `samples` has what is there.
    pub truncated: bool,
    /// Bytes at the end of the data chunk that do not make a whole frame (dropped).
    pub partial_frame_bytes: usize,
    /// NaN or infinite float samples (all channels), decoded as silence.
    pub nonfinite: usize,
    /// Samples in the data chunk (all channels), finite or not.
    pub total: usize,
}

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Sample rates outside this range are almost certainly a corrupt header, and resampling them
/// to 16 kHz would be absurd (1 Hz -> 16 kHz multiplies the length by 16000).
const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 1_536_000;

const SUPPORTED: &str = "PCM 8/16/24/32-bit integer or 32/64-bit float samples";

#[derive(Debug, Clone, Copy)]
pub(crate) enum SampleKind {
    U8,
    I16,
    I24,
    I32,
    F32,
    F64,
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Name the format of a file that is not RIFF/WAVE, for the error message.
fn sniff_non_wav(bytes: &[u8]) -> String {
    let starts = |m: &[u8]| bytes.len() >= m.len() && &bytes[..m.len()] == m;
    let what = if starts(b"ID3")
        || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0)
    {
        "MP3 audio"
    } else if starts(b"fLaC") {
        "FLAC audio"
    } else if starts(b"OggS") {
        "Ogg audio"
    } else if starts(b"FORM") {
        "AIFF audio"
    } else if starts(b"RF64") || starts(b"BW64") {
        "RF64/BW64 (64-bit WAV)"
    } else if starts(b"\x1A\x45\xDF\xA3") {
        "Matroska/WebM"
    } else if bytes.len() >= 8 && &bytes[4..8] == b"ftyp" {
        "MP4/M4A"
    } else if bytes
        .iter()
        .take(512)
        .all(|&c| c == b'\n' || c == b'\r' || c == b'\t' || (0x20..0x7F).contains(&c))
    {
        "text, not audio"
    } else {
        return format!("not a WAV file (no RIFF/WAVE header); this audio format is not supported, only WAV is ({SUPPORTED})");
    };
    format!("not a WAV file ({what}); `audio::load_audio` reads it")
}

fn format_name(tag: u16) -> String {
    match tag {
        0x0002 => "Microsoft ADPCM".into(),
        0x0006 => "A-law".into(),
        0x0007 => "mu-law".into(),
        0x0011 => "IMA ADPCM".into(),
        0x0031 => "GSM 6.10".into(),
        0x0050 => "MPEG".into(),
        0x0055 => "MP3".into(),
        other => format!("format tag 0x{other:04X}"),
    }
}

/// Decode a whole WAV file held in memory. Errors are messages without the file name.
pub fn decode_wav_bytes(bytes: &[u8]) -> Result<DecodedWav, String> {
    if bytes.is_empty() {
        return Err("file is empty (0 bytes)".into());
    }
    if bytes.len() >= 4 && &bytes[..4] == b"RIFF" {
        if bytes.len() < 12 {
            return Err(format!(
                "truncated WAV header ({} bytes, RIFF header needs 12)",
                bytes.len()
            ));
        }
        if &bytes[8..12] != b"WAVE" {
            let kind = String::from_utf8_lossy(&bytes[8..12]).into_owned();
            return Err(format!("RIFF file of type '{kind}' is not WAVE audio"));
        }
    } else if bytes.len() < 4 && b"RIFF".starts_with(bytes) {
        return Err(format!("truncated WAV header ({} bytes)", bytes.len()));
    } else {
        return Err(sniff_non_wav(bytes));
    }

    // Walk the chunks.
    let mut fmt: Option<&[u8]> = None;
    let mut data: Option<&[u8]> = None;
    let mut truncated = false;
    let mut pos = 12usize;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32le(bytes, pos + 4) as usize;
        let body = pos + 8;
        let avail = bytes.len() - body;
        match id {
            b"fmt " => {
                if size > avail {
                    return Err(format!(
                        "truncated WAV header: 'fmt ' chunk declares {size} bytes, file has {avail}"
                    ));
                }
                fmt = Some(&bytes[body..body + size]);
            }
            b"data" => {
                if size > avail {
                    // Declared past the end of the file: a truncated file, or a streamed WAV
                    // written with an unknown size (0xFFFFFFFF). Use what is there.
                    truncated = size != u32::MAX as usize && size != 0x7FFF_FFFF;
                    data = Some(&bytes[body..]);
                    break;
                }
                data = Some(&bytes[body..body + size]);
                if fmt.is_some() {
                    break;
                }
            }
            _ => {}
        }
        // Chunks are word-aligned: odd sizes carry one pad byte.
        pos = body.saturating_add(size).saturating_add(size & 1);
    }

    let fmt = fmt.ok_or_else(|| {
        if data.is_some() {
            "malformed WAV: no 'fmt ' chunk".to_string()
        } else {
            format!(
                "truncated or malformed WAV header: no 'fmt ' chunk in {} bytes",
                bytes.len()
            )
        }
    })?;
    let WavFormat {
        kind,
        channels,
        sample_rate,
        block_align,
        container,
        ..
    } = parse_fmt(fmt)?;

    let data = data
        .ok_or_else(|| "truncated WAV: no 'data' chunk (file ends before the audio)".to_string())?;
    let frames = data.len() / block_align;
    if frames == 0 {
        return Err("WAV file contains no audio samples".into());
    }
    let partial_frame_bytes = data.len() % block_align;
    let data = &data[..frames * block_align];
    let nonfinite = match kind {
        SampleKind::F32 | SampleKind::F64 => super::levels::count_nonfinite(data, container),
        _ => 0,
    };

    let samples = to_mono(data, kind, channels as usize, container);
    Ok(DecodedWav {
        samples,
        sample_rate,
        channels,
        truncated,
        partial_frame_bytes,
        nonfinite,
        total: frames * channels as usize,
    })
}

/// The sample layout a `fmt ` chunk declares, validated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WavFormat {
    pub kind: SampleKind,
    pub channels: u16,
    pub sample_rate: u32,
    /// Bytes per frame (all channels).
    pub block_align: usize,
    /// Bytes per sample.
    pub container: usize,
    /// Significant bits per sample.
    pub bits: u16,
}

/// The format tag of a `fmt ` chunk, looking through `WAVE_FORMAT_EXTENSIBLE`.
pub(crate) fn fmt_tag(fmt: &[u8]) -> Option<u16> {
    if fmt.len() < 16 {
        return None;
    }
    let tag = u16le(fmt, 0);
    if tag == WAVE_FORMAT_EXTENSIBLE {
        (fmt.len() >= 40).then(|| u16le(fmt, 24))
    } else {
        Some(tag)
    }
}

/// True when our reader decodes this format tag (integer PCM or IEEE float).
pub(crate) fn tag_is_ours(tag: u16) -> bool {
    tag == WAVE_FORMAT_PCM || tag == WAVE_FORMAT_IEEE_FLOAT
}

/// Validate a `fmt ` chunk body. Errors are messages without the file name.
pub(crate) fn parse_fmt(fmt: &[u8]) -> Result<WavFormat, String> {
    if fmt.len() < 16 {
        return Err(format!(
            "malformed WAV: 'fmt ' chunk is {} bytes, needs at least 16",
            fmt.len()
        ));
    }
    let mut tag = u16le(fmt, 0);
    let channels = u16le(fmt, 2);
    let sample_rate = u32le(fmt, 4);
    let block_align = u16le(fmt, 12) as usize;
    let mut bits = u16le(fmt, 14);
    if tag == WAVE_FORMAT_EXTENSIBLE {
        if fmt.len() < 40 {
            return Err(format!(
                "malformed WAV: WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is {} bytes, needs 40",
                fmt.len()
            ));
        }
        // The sub-format GUID starts with the plain format tag.
        tag = u16le(fmt, 24);
        let valid_bits = u16le(fmt, 18);
        if valid_bits > 0 && valid_bits <= bits {
            bits = valid_bits;
        }
    }
    if channels == 0 {
        return Err("malformed WAV: header says 0 channels".into());
    }
    if sample_rate == 0 {
        return Err("malformed WAV: header says sample rate 0 Hz".into());
    }
    if !(MIN_RATE..=MAX_RATE).contains(&sample_rate) {
        return Err(format!(
            "unsupported sample rate {sample_rate} Hz (supported: {MIN_RATE} to {MAX_RATE} Hz)"
        ));
    }
    if block_align == 0 || !block_align.is_multiple_of(channels as usize) {
        return Err(format!(
            "malformed WAV: block align {block_align} does not fit {channels} channels"
        ));
    }
    let container = block_align / channels as usize;
    if bits == 0 || bits as usize > container * 8 {
        return Err(format!(
            "malformed WAV: {bits} bits per sample in {container}-byte sample containers"
        ));
    }
    let kind = match (tag, container) {
        (WAVE_FORMAT_PCM, 1) => SampleKind::U8,
        (WAVE_FORMAT_PCM, 2) => SampleKind::I16,
        (WAVE_FORMAT_PCM, 3) => SampleKind::I24,
        (WAVE_FORMAT_PCM, 4) => SampleKind::I32,
        (WAVE_FORMAT_IEEE_FLOAT, 4) => SampleKind::F32,
        (WAVE_FORMAT_IEEE_FLOAT, 8) => SampleKind::F64,
        (WAVE_FORMAT_PCM, n) => {
            return Err(format!(
                "unsupported WAV sample size: {}-bit integer PCM (supported: {SUPPORTED})",
                n * 8
            ))
        }
        (WAVE_FORMAT_IEEE_FLOAT, n) => {
            return Err(format!(
                "unsupported WAV sample size: {}-bit float (supported: {SUPPORTED})",
                n * 8
            ))
        }
        (other, _) => {
            return Err(format!(
                "unsupported WAV encoding: {} (supported: {SUPPORTED})",
                format_name(other)
            ))
        }
    };

    Ok(WavFormat {
        kind,
        channels,
        sample_rate,
        block_align,
        container,
        bits,
    })
}

/// One sample at byte offset `at`, scaled to [-1, 1] as ffmpeg does (divide by 2^(bits-1)).
#[inline]
pub(crate) fn sample_at(d: &[u8], at: usize, kind: SampleKind) -> f32 {
    match kind {
        SampleKind::U8 => (d[at] as f32 - 128.0) / 128.0,
        SampleKind::I16 => i16::from_le_bytes([d[at], d[at + 1]]) as f32 / 32768.0,
        SampleKind::I24 => {
            let v = i32::from_le_bytes([0, d[at], d[at + 1], d[at + 2]]) >> 8;
            v as f32 / 8_388_608.0
        }
        SampleKind::I32 => {
            (i32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]) as f64 / 2_147_483_648.0)
                as f32
        }
        SampleKind::F32 => finite(f32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])),
        SampleKind::F64 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[at..at + 8]);
            finite(f64::from_le_bytes(b) as f32)
        }
    }
}

/// NaN/inf samples would poison the whole spectrogram (its global max); treat them as silence.
#[inline]
fn finite(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

fn to_mono(data: &[u8], kind: SampleKind, channels: usize, container: usize) -> Vec<f32> {
    let block = channels * container;
    if channels == 1 {
        return (0..data.len() / block)
            .map(|i| sample_at(data, i * block, kind))
            .collect();
    }
    let scale = 1.0 / channels as f64;
    data.chunks_exact(block)
        .map(|frame| {
            let sum: f64 = (0..channels)
                .map(|c| sample_at(frame, c * container, kind) as f64)
                .sum();
            (sum * scale) as f32
        })
        .collect()
}
