//! Audio input: any container a user has -> mono f32 samples at 16 kHz, whole or streamed.
//!
//! Formats are chosen by content (the first bytes, [`sniff`]), never by the file name. WAV goes
//! through our own RIFF reader ([`wav`], [`pcm`]): PCM 8/16/24/32-bit integer and 32/64-bit
//! float, plain or `WAVE_FORMAT_EXTENSIBLE`, and it keeps the readable part of a truncated file
//! (hound and symphonia reject those). WAV encodings it does not decode (ADPCM, A-law, mu-law)
//! and every other container go through symphonia: MP3, AAC, ALAC, FLAC, Vorbis, PCM, ADPCM in
//! MP4/M4A/MOV, Ogg, MKV/WebM, AIFF, CAF, ADTS. Opus (Ogg, WebM) is decoded by libopus
//! ([`opus`] says why). Channels are averaged; other rates are resampled with a band-limited
//! sinc filter (rubato), whole-clip or incrementally with identical output.
//!
//! Every failure is an [`Error::Audio`] naming the file, one line, never a panic. A truncated or
//! damaged stream yields what is readable plus one `tracing` warning.
//!
//! Known limits (symphonia 0.5): AAC in MP4 keeps its encoder priming (1024 frames from ffmpeg,
//! 2112 from Apple: 64-132 ms of leading near-silence), because symphonia does not apply MP4
//! edit lists; MP3 and Ogg streams cut short are not flagged as truncated (no declared length).
//! MP4 and CAF from a stream are spooled to a temporary file (their demuxers seek).
//! Every MP4 box tree, every Matroska/WebM element header, every CAF chunk and packet table,
//! every FLAC comment and picture block, every Ogg comment header, every Vorbis setup header
//! (in Ogg or Matroska) and the LIST chunks of a WAV symphonia decodes are checked before
//! symphonia reads them (`mp4_guard`, `ebml_guard`, `caf_guard`, `flac_guard`, `ogg_guard`,
//! `comment_guard`, `vorbis_setup_guard`, `riff_guard`): its demuxers, metadata readers and
//! Vorbis decoder trust the counts and sizes they read and would reserve gigabytes for a few
//! bytes.
//! ID3v2 tags are skipped unread (`id3_guard`), and symphonia's probe only knows the demuxer
//! of the container sniffed (`codec::probe_for`).
//!
//! # What the CLI calls (for the merger wiring `src/cli`)
//! - `transcribe FILE` (short files, today's loop): [`load_audio`]`(path)` as now; it now reads
//!   every format above. For bounded memory on long files, the seek loop takes
//!   [`SpooledMel::open`]`(path, &opts, n_mels)` (a [`MelSource`]) instead of samples + mel.
//! - `transcribe -` (stdin): [`AudioStream::open`]`(Path::new("-"), &opts)` (or
//!   [`load_audio_with`]`(Path::new("-"), &opts)` for the whole clip; `SpooledMel::open` also
//!   accepts "-"). stdin is never seeked; an MP4 on stdin is spooled to a temporary file.
//! - `--input-format s16le|f32le --input-rate N --input-channels N`: build
//!   `OpenOptions { raw: Some(RawPcm { encoding: "s16le".parse()?, sample_rate, channels }), .. }`
//!   ([`RawEncoding`] implements `FromStr` with the one-line error) and pass it to any of the
//!   functions above. Without `--input-format`, `raw: None` (sniffed).
//! - `--audio-track N`: `OpenOptions { audio_track: Some(N), .. }` (0-based among audio tracks).
//! - `info FILE... [--json]`: [`audio_info`]`(path, &opts)` per file -> [`AudioInfo`]
//!   (`serde::Serialize`; `--json` prints `serde_json::to_string_pretty`, text mode prints
//!   [`AudioInfo::to_text`]). One failing file is reported and the loop goes on with the next.
//! - Before loading a model: [`sniff_file`]`(path)` rejects non-audio from its first bytes.
//! - A server or streamer with bytes in hand: [`AudioStream::from_reader`]`(Box::new(reader),
//!   name, &opts)` then `next_chunk()` for 16 kHz mono chunks; [`SpooledMel::from_stream`].

mod caf_guard;
mod codec;
mod comment_guard;
mod ebml_guard;
mod flac_guard;
mod header_gate;
mod id3_guard;
mod info;
mod levels;
mod mel_source;
mod mp4_guard;
mod ogg_guard;
mod opus;
mod pcm;
mod resample;
mod riff_guard;
mod sniff;
mod stream;
mod vorbis_setup_guard;
mod wav;

use std::path::Path;

use crate::error::{Error, Result};

pub use crate::mel::MelSource;
pub use info::{audio_info, AudioInfo};
pub use mel_source::SpooledMel;
pub use pcm::{RawEncoding, RawPcm};
pub use resample::StreamResampler;
pub use sniff::{sniff, Container, SNIFF_LEN};
pub use stream::{AudioStream, OpenOptions, SourceFormat};
pub use wav::{decode_wav_bytes, DecodedWav};

/// Whisper's input sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

/// Read `path` (any supported format) and return mono samples at [`SAMPLE_RATE`], in [-1, 1].
///
/// 16 kHz input passes through untouched (16-bit PCM becomes `i16 as f32 / 32768.0`, as in
/// OpenAI's ffmpeg-based loader); any other rate is resampled with a windowed-sinc filter to
/// `round(len * 16000 / rate)` time-aligned samples.
pub fn load_audio(path: &Path) -> Result<Vec<f32>> {
    load_audio_with(path, &OpenOptions::default())
}

/// [`load_audio`] with options (raw PCM, audio track); "-" reads standard input.
pub fn load_audio_with(path: &Path, opts: &OpenOptions) -> Result<Vec<f32>> {
    if opts.raw.is_none() && path != Path::new("-") && sniff_path(path)? == Container::Wav {
        // Plain WAV files keep the whole-file reader (unchanged output for every WAV).
        if let Some(samples) = load_wav(path)? {
            return Ok(samples);
        }
    }
    let samples = AudioStream::open(path, opts)?.read_all()?;
    // The codecs silence NaNs without counting them; the level is still worth a look.
    if let Some(w) = levels::level_warning(&samples, 0, samples.len()) {
        tracing::warn!("{}: {w}", path.display());
    }
    Ok(samples)
}

/// The container of the file at `path` from its first bytes, decoding nothing: the cheap check
/// a caller makes before it loads a model (`/dev/zero` or a 3 GB non-audio file is rejected
/// after reading 64 bytes). Errors name the file. `-` is refused: stdin cannot be read twice.
pub fn sniff_file(path: &Path) -> Result<Container> {
    if path == Path::new("-") {
        return Err(Error::Usage(
            "sniff_file reads a file; standard input cannot be read twice".into(),
        ));
    }
    sniff_path(path)
}

/// The container of the file at `path`, from its first bytes.
fn sniff_path(path: &Path) -> Result<Container> {
    let mut head = [0u8; sniff::SNIFF_LEN];
    let n = match stream::open_input(path)? {
        stream::Input::File(mut f) => pcm::read_full(&mut f, &mut head)
            .map_err(|e| Error::audio(path, format!("cannot read audio file: {e}")))?,
        stream::Input::Reader(_) => unreachable!("open_input gives a reader only for \"-\""),
    };
    sniff(&head[..n]).map_err(|m| Error::audio(path, m))
}

/// A WAV our reader decodes, whole; None when it is a WAV encoding left to symphonia.
fn load_wav(path: &Path) -> Result<Option<Vec<f32>>> {
    let (mono, rate) = match decode_wav(path) {
        Ok(d) => d,
        Err(Error::Audio { msg, .. }) if msg.starts_with("unsupported WAV encoding") => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    if rate == SAMPLE_RATE {
        return Ok(Some(mono));
    }
    resample::resample(&mono, rate, SAMPLE_RATE)
        .map(Some)
        .map_err(|msg| {
            Error::audio(
                path,
                format!("resampling {rate} Hz to {SAMPLE_RATE} Hz failed: {msg}"),
            )
        })
}

/// Decode a WAV file to mono f32 samples at the file's own rate. Returns `(samples, rate)`.
pub fn decode_wav(path: &Path) -> Result<(Vec<f32>, u32)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::audio(path, "audio file not found"))
        }
        Err(e) => return Err(Error::audio(path, format!("cannot read audio file: {e}"))),
    };
    let decoded = decode_wav_bytes(&bytes).map_err(|msg| Error::audio(path, msg))?;
    if decoded.truncated {
        tracing::warn!(
            "{}: WAV data chunk is truncated (header declares more audio than the file holds); \
             using the {} samples present",
            path.display(),
            decoded.samples.len()
        );
    }
    if decoded.partial_frame_bytes > 0 {
        tracing::warn!(
            "{}: WAV data chunk ends inside a frame ({} byte(s) after the last whole frame); \
             dropping them",
            path.display(),
            decoded.partial_frame_bytes
        );
    }
    if let Some(w) = levels::level_warning(&decoded.samples, decoded.nonfinite, decoded.total) {
        tracing::warn!("{}: {w}", path.display());
    }
    Ok((decoded.samples, decoded.sample_rate))
}

/// Resample mono `samples` from `from` Hz to `to` Hz with rubato's band-limited sinc resampler.
///
/// The output is time-aligned with the input (the filter delay is removed) and has
/// `round(len * to / from)` samples. `from == to` returns a copy.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    resample::resample(samples, from, to)
        .map_err(|msg| Error::Usage(format!("resampling {from} Hz to {to} Hz: {msg}")))
}
