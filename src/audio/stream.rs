//! The streaming decoder: any input (file, stdin, any `Read`) -> sniffed container -> decoder
//! -> channel mix -> incremental resampling -> 16 kHz mono chunks, in bounded memory.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use symphonia::core::io::{MediaSource, MediaSourceStream, ReadOnlySource};

use super::codec::SymphoniaSource;
use super::pcm::{read_full, read_wav_header, wav_source, PcmSource, RawPcm, WavStart};
use super::resample::StreamResampler;
use super::sniff::{sniff, Container, SNIFF_LEN};
use super::SAMPLE_RATE;
use crate::error::{Error, Result};

/// What the decoder knows about the input before the first sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceFormat {
    /// "WAV", "Ogg", "MP4/M4A/MOV", "raw PCM", ...
    pub container: String,
    /// "PCM 16-bit integer", "MPEG Audio Layer 3", "Opus", ...
    pub codec: String,
    /// The input's own rate (before resampling to 16 kHz).
    pub sample_rate: u32,
    pub channels: u16,
    /// Bits per sample where the format has them (PCM, FLAC, ALAC); None for lossy codecs.
    pub bits_per_sample: Option<u32>,
    /// Frames the header declares, where it does.
    pub total_frames: Option<u64>,
}

/// A decoder of interleaved f32 samples at the input's own rate.
pub(crate) trait FrameSource: Send {
    fn format(&self) -> &SourceFormat;
    /// Fill `out` (cleared first) with the next interleaved samples; false at the end.
    fn next_block(&mut self, out: &mut Vec<f32>) -> std::result::Result<bool, String>;
    /// Why the input was only partly readable (truncated, damaged packets), if it was.
    fn damage(&self) -> Option<&str>;
    /// NaN or infinite samples the source itself turned into silence while decoding.
    fn nonfinite(&self) -> usize {
        0
    }
}

/// How to open an input.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Raw PCM (no header): the CLI's `--input-format/--input-rate/--input-channels`.
    pub raw: Option<RawPcm>,
    /// Which audio track of a multi-track container (0-based among audio tracks): the CLI's
    /// `--audio-track N`. None: the first.
    pub audio_track: Option<usize>,
}

/// symphonia wants `Sync` sources; a `Read + Send` made `Sync` by a lock nobody contends.
struct SyncRead(Mutex<Box<dyn Read + Send>>);

impl Read for SyncRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.get_mut().expect("lock never poisoned").read(buf)
    }
}

/// Open `input` as a frame source; `name` is the path it came from (used in messages, and to
/// re-read a file whose WAV layout only the whole-file reader handles).
pub(crate) fn open_source(
    input: Input,
    name: &Path,
    opts: &OpenOptions,
) -> Result<Box<dyn FrameSource>> {
    match open_source_inner(input, opts).map_err(|m| Error::audio(name, m))? {
        Some(source) => Ok(source),
        None => whole_wav_source(name),
    }
}

/// The work of [`open_source`]; Ok(None) means "a WAV with its data chunk before its fmt chunk,
/// from a file": only the whole-file reader handles that.
fn open_source_inner(
    input: Input,
    opts: &OpenOptions,
) -> std::result::Result<Option<Box<dyn FrameSource>>, String> {
    if let Some(raw) = opts.raw {
        raw.validate()?;
        let reader: Box<dyn Read + Send> = match input {
            Input::File(f) => Box::new(std::io::BufReader::with_capacity(1 << 16, f)),
            Input::Reader(r) => r,
        };
        return Ok(Some(Box::new(PcmSource::raw(reader, raw))));
    }
    match input {
        Input::File(mut file) => {
            let mut head = [0u8; SNIFF_LEN];
            let n = read_full(&mut file, &mut head).map_err(|e| format!("cannot read: {e}"))?;
            let container = sniff(&head[..n])?;
            file.seek(SeekFrom::Start(0))
                .map_err(|e| format!("cannot read: {e}"))?;
            if container == Container::Mpeg && head[..n].starts_with(b"ID3") {
                // Its ID3v2 tags are skipped as a stream (see id3_guard); an MP3 does not need
                // seeking.
                let reader = std::io::BufReader::with_capacity(1 << 16, file);
                return open_source_inner(Input::Reader(Box::new(reader)), opts);
            }
            if container == Container::Wav {
                let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
                match read_wav_header(&mut reader)? {
                    WavStart::Pcm { format, data_len } => {
                        return Ok(Some(Box::new(wav_source(reader, format, data_len))))
                    }
                    WavStart::DataBeforeFmt => return Ok(None),
                    WavStart::Other => {}
                }
                file = reader.into_inner();
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| format!("cannot read: {e}"))?;
                // An encoding symphonia decodes: its LIST chunks are checked first.
                super::riff_guard::check_file(&mut file)?;
            }
            // The containers whose demuxer (or metadata reader) trusts sizes in the file: their
            // structure is checked first (see mp4_guard, ebml_guard, caf_guard, flac_guard,
            // ogg_guard; riff_guard above).
            if matches!(
                container,
                Container::Mp4 | Container::Matroska | Container::Caf
            ) {
                let len = file
                    .metadata()
                    .map_err(|e| format!("cannot read: {e}"))?
                    .len();
                match container {
                    Container::Mp4 => super::mp4_guard::check(&mut file, len)?,
                    Container::Caf => super::caf_guard::check_file(&mut file, len)?,
                    _ => super::ebml_guard::check_file(&mut file, len)?,
                }
            }
            match container {
                Container::Flac => super::flac_guard::check_file(&mut file)?,
                Container::Ogg => super::ogg_guard::check_file(&mut file)?,
                _ => {}
            }
            let mss =
                MediaSourceStream::new(Box::new(file) as Box<dyn MediaSource>, Default::default());
            Ok(Some(Box::new(SymphoniaSource::open(
                mss,
                container,
                opts.audio_track,
            )?)))
        }
        Input::Reader(mut reader) => {
            let mut head = vec![0u8; SNIFF_LEN];
            let n = read_full(&mut reader, &mut head).map_err(|e| format!("read error: {e}"))?;
            head.truncate(n);
            let container = sniff(&head)?;
            if container == Container::Wav {
                // Record the header while reading it, in case symphonia must start over.
                let mut rec = Recorder {
                    inner: Cursor::new(head).chain(reader),
                    log: Vec::new(),
                };
                match read_wav_header(&mut rec)? {
                    WavStart::Pcm { format, data_len } => {
                        return Ok(Some(Box::new(wav_source(rec.inner, format, data_len))))
                    }
                    WavStart::DataBeforeFmt => {
                        return Err("WAV 'data' chunk before its 'fmt ' chunk: \
                                    not readable from a stream (give it as a file)"
                            .into())
                    }
                    WavStart::Other => {
                        let replay: Box<dyn Read + Send> = Box::new(super::riff_guard::gate(
                            Cursor::new(rec.log).chain(rec.inner),
                        ));
                        return symphonia_from_reader(replay, container, opts).map(Some);
                    }
                }
            }
            let starts_with_id3 = head.starts_with(b"ID3");
            let mut replay: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(reader));
            if container == Container::Mpeg && starts_with_id3 {
                // ID3v2 tags are skipped unread (see id3_guard); what follows is the input.
                return match super::id3_guard::skip_tags(replay)
                    .map_err(|e| format!("read error: {e}"))?
                {
                    Ok(rest) => open_after_tags(rest, opts),
                    Err(whole) => symphonia_from_reader(whole, container, opts).map(Some),
                };
            }
            if container == Container::Mp4 || container == Container::Caf {
                // An MP4 or CAF read from a stream goes through an unnamed temporary file: an
                // MP4's index may come after the media data, CAF's demuxer needs to seek, and
                // their structure is checked before the demuxer trusts it (see mp4_guard,
                // caf_guard). Disk, not memory, holds it meanwhile.
                let mut spool = tempfile::tempfile().map_err(|e| format!("temporary file: {e}"))?;
                std::io::copy(&mut replay, &mut spool).map_err(|e| format!("read error: {e}"))?;
                spool
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| format!("temporary file: {e}"))?;
                return open_source_inner(Input::File(spool), opts);
            }
            // Checked as they stream (see ebml_guard, flac_guard, ogg_guard): live WebM and Ogg
            // cannot wait for their end.
            replay = match container {
                Container::Matroska => Box::new(super::ebml_guard::EbmlGate::new(replay)),
                Container::Flac => Box::new(super::flac_guard::gate(replay)),
                Container::Ogg => Box::new(super::ogg_guard::OggGate::new(replay)),
                _ => replay,
            };
            symphonia_from_reader(replay, container, opts).map(Some)
        }
    }
}

/// Open what follows leading ID3v2 tags: sniffed again (an ID3v2 tag may precede FLAC or AAC
/// too); where it is not recognised, MPEG audio, whose demuxer scans for the first frame.
fn open_after_tags(
    mut rest: Box<dyn Read + Send>,
    opts: &OpenOptions,
) -> std::result::Result<Option<Box<dyn FrameSource>>, String> {
    let mut head = vec![0u8; SNIFF_LEN];
    let n = read_full(&mut rest, &mut head).map_err(|e| format!("read error: {e}"))?;
    head.truncate(n);
    let known = sniff(&head).is_ok();
    let replay: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(rest));
    if known {
        open_source_inner(Input::Reader(replay), opts)
    } else {
        symphonia_from_reader(replay, Container::Mpeg, opts).map(Some)
    }
}

fn symphonia_from_reader(
    reader: Box<dyn Read + Send>,
    container: Container,
    opts: &OpenOptions,
) -> std::result::Result<Box<dyn FrameSource>, String> {
    let source = ReadOnlySource::new(SyncRead(Mutex::new(reader)));
    let mss = MediaSourceStream::new(Box::new(source), Default::default());
    Ok(Box::new(SymphoniaSource::open(
        mss,
        container,
        opts.audio_track,
    )?))
}

/// Copies what it reads into `log` (only used for a WAV header, which is small).
struct Recorder<R> {
    inner: R,
    log: Vec<u8>,
}

impl<R: Read> Read for Recorder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.log.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Where the bytes come from.
pub(crate) enum Input {
    /// A seekable file (MP4 with its index at the end needs seeking).
    File(File),
    /// A stream: stdin, a socket, an upload (not seekable).
    Reader(Box<dyn Read + Send>),
}

/// Samples already decoded in memory, handed out in blocks (the whole-file WAV fallback).
struct VecSource {
    samples: Vec<f32>,
    at: usize,
    format: SourceFormat,
    damage: Option<String>,
}

impl FrameSource for VecSource {
    fn format(&self) -> &SourceFormat {
        &self.format
    }
    fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }
    fn next_block(&mut self, out: &mut Vec<f32>) -> std::result::Result<bool, String> {
        out.clear();
        let end = (self.at + 65536).min(self.samples.len());
        out.extend_from_slice(&self.samples[self.at..end]);
        self.at = end;
        Ok(!out.is_empty())
    }
}

/// Open a path as an [`Input`]; "-" is standard input.
pub(crate) fn open_input(path: &Path) -> Result<Input> {
    if path == Path::new("-") {
        return Ok(Input::Reader(Box::new(std::io::stdin())));
    }
    match File::open(path) {
        Ok(f) => {
            if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                return Err(Error::audio(
                    path,
                    "cannot read audio file: it is a directory",
                ));
            }
            Ok(Input::File(f))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::audio(path, "audio file not found"))
        }
        Err(e) => Err(Error::audio(path, format!("cannot read audio file: {e}"))),
    }
}

/// Open `path` as a frame source, with the whole-file fallback for WAVs whose data chunk comes
/// before the fmt chunk. Errors name the file.
pub(crate) fn open_path_source(path: &Path, opts: &OpenOptions) -> Result<Box<dyn FrameSource>> {
    open_source(open_input(path)?, path, opts)
}

/// A WAV file whose data chunk precedes its fmt chunk, through the whole-file reader.
fn whole_wav_source(path: &Path) -> Result<Box<dyn FrameSource>> {
    let (samples, rate) = super::decode_wav(path)?;
    Ok(Box::new(VecSource {
        format: SourceFormat {
            container: "WAV".into(),
            codec: "PCM (mixed to mono by the whole-file reader)".into(),
            sample_rate: rate,
            channels: 1,
            bits_per_sample: None,
            total_frames: Some(samples.len() as u64),
        },
        samples,
        at: 0,
        damage: None,
    }))
}

/// A decoded input as a stream of 16 kHz mono f32 chunks (variable length), in bounded memory.
///
/// Channels are averaged (in f64, as the WAV reader does); other rates are resampled with the
/// same filter and alignment as [`super::resample`] on the whole clip, so the samples equal
/// [`super::load_audio`]'s for the same decoded input.
pub struct AudioStream {
    name: PathBuf,
    source: Box<dyn FrameSource>,
    format: SourceFormat,
    resampler: Option<StreamResampler>,
    block: Vec<f32>,
    frames_in: u64,
    samples_out: u64,
    finished: bool,
    warned: bool,
    /// Running level figures of the decoded samples, for `levels::warning_for` at the end.
    peak: f32,
    nonfinite: usize,
    samples_in: usize,
}

impl AudioStream {
    /// Open a file by path ("-" reads standard input).
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let source = open_path_source(path, opts)?;
        Self::new(path, source)
    }

    /// Decode from any reader (not necessarily seekable: stdin, a socket, an HTTP body).
    /// `name` labels messages (e.g. "-" or the upload's file name).
    pub fn from_reader(
        reader: Box<dyn Read + Send>,
        name: &Path,
        opts: &OpenOptions,
    ) -> Result<Self> {
        let source = open_source(Input::Reader(reader), name, opts)?;
        Self::new(name, source)
    }

    pub(crate) fn new(name: &Path, source: Box<dyn FrameSource>) -> Result<Self> {
        let format = source.format().clone();
        let resampler = if format.sample_rate == SAMPLE_RATE {
            None
        } else {
            Some(
                StreamResampler::new(format.sample_rate, SAMPLE_RATE)
                    .map_err(|m| Error::audio(name, format!("resampling failed: {m}")))?,
            )
        };
        Ok(AudioStream {
            name: name.to_path_buf(),
            source,
            format,
            resampler,
            block: Vec::new(),
            frames_in: 0,
            samples_out: 0,
            finished: false,
            warned: false,
            peak: 0.0,
            nonfinite: 0,
            samples_in: 0,
        })
    }

    /// The input's container, codec, rate and channels.
    pub fn format(&self) -> &SourceFormat {
        &self.format
    }

    /// The file name used in messages.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// Why the input was only partly readable, if it was (also logged once as a warning).
    pub fn damage(&self) -> Option<&str> {
        self.source.damage()
    }

    /// 16 kHz samples handed out so far.
    pub fn samples_out(&self) -> u64 {
        self.samples_out
    }

    /// The next chunk of 16 kHz mono samples; None at the end. An input with no samples at all
    /// is an error.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<f32>>> {
        while !self.finished {
            let more = self
                .source
                .next_block(&mut self.block)
                .map_err(|m| Error::audio(&self.name, m))?;
            let out = if more {
                let ch = self.source.format().channels.max(1) as usize;
                self.frames_in += (self.block.len() / ch) as u64;
                self.check_levels();
                let mono = mix_to_mono(&self.block, ch);
                match self.resampler.as_mut() {
                    None => mono,
                    Some(r) => r
                        .push(&mono)
                        .map_err(|m| Error::audio(&self.name, format!("resampling failed: {m}")))?,
                }
            } else {
                self.finished = true;
                self.warn_damage();
                if self.frames_in == 0 {
                    let why = match self.source.damage() {
                        Some(d) => format!("no decodable audio ({d})"),
                        None => "contains no audio samples".to_string(),
                    };
                    return Err(Error::audio(&self.name, why));
                }
                match self.resampler.as_mut() {
                    None => Vec::new(),
                    Some(r) => r
                        .finish()
                        .map_err(|m| Error::audio(&self.name, format!("resampling failed: {m}")))?,
                }
            };
            if !out.is_empty() {
                self.samples_out += out.len() as u64;
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    fn warn_damage(&mut self) {
        if !self.warned {
            self.warned = true;
            if let Some(d) = self.source.damage() {
                tracing::warn!("{}: {d}", self.name.display());
            }
            let nonfinite = self.nonfinite + self.source.nonfinite();
            let levels = super::levels::warning_for(self.peak, nonfinite, self.samples_in);
            if let Some(w) = levels {
                tracing::warn!("{}: {w}", self.name.display());
            }
        }
    }

    /// Silences NaN and infinite samples of the block just decoded (as the whole-file reader
    /// does) and keeps the running peak, for the level warning at the end.
    fn check_levels(&mut self) {
        self.samples_in += self.block.len();
        for x in &mut self.block {
            if x.is_finite() {
                self.peak = self.peak.max(x.abs());
            } else {
                *x = 0.0;
                self.nonfinite += 1;
            }
        }
    }

    /// Decode everything into one vector (memory grows with the length: prefer chunks).
    pub fn read_all(mut self) -> Result<Vec<f32>> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }
}

/// Average interleaved channels to mono: exactly as the WAV reader's `to_mono` (f64 sum times
/// 1 / channels), so both paths give the same samples.
pub(crate) fn mix_to_mono(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    let scale = 1.0 / channels as f64;
    interleaved
        .chunks_exact(channels)
        .map(|frame| {
            let sum: f64 = frame.iter().map(|&x| x as f64).sum();
            (sum * scale) as f32
        })
        .collect()
}
