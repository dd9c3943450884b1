//! A bounded-memory log-mel for the seek loop.
//!
//! Whisper's log-mel clamps every value at (global max - 8), the max over the WHOLE file, so no
//! window is final before the whole input has been seen. [`SpooledMel`] therefore makes two
//! passes: pass 1 decodes the input once, computes each frame's `log10` mel (the part before
//! the clamp, by the same [`FrameAnalyzer`] as `mel::log_mel_spectrogram`) and spools the
//! frames to an anonymous temporary file while tracking the global max; pass 2
//! ([`MelSource::window`]) reads the 3000 frames a window needs back with `read` and clamps and
//! scales them. Spooling frames rather than samples stores 80 x 4 bytes per 10 ms instead of
//! 160 x 4, and runs the STFT once. Memory: one window plus the decoder's blocks, whatever the
//! length; disk: 32 kB per second of audio at 80 mels (115 MB per hour).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::stream::{AudioStream, OpenOptions};
use crate::error::{Error, Result};
use crate::mel::{
    live_frames, normalize, FrameAnalyzer, MelSource, HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES,
    SILENT_LOG_MEL,
};

/// Frames computed per batch in pass 1 (parallel over rayon inside the batch).
const BATCH_FRAMES: usize = 2048;

/// A log-mel computed in one streaming pass and spooled to a temporary file; see the module doc.
pub struct SpooledMel {
    n_mels: usize,
    /// 16 kHz samples of audio.
    n_samples: usize,
    /// Frames with audio in them (spooled); frames past these are silence.
    n_live: usize,
    global_max: f32,
    spool: File,
    name: std::path::PathBuf,
    /// Reused read buffer (one window of frames).
    raw: Vec<u8>,
}

impl SpooledMel {
    /// Decode `path` ("-": stdin) and run pass 1.
    pub fn open(path: &Path, opts: &OpenOptions, n_mels: usize) -> Result<Self> {
        Self::from_stream(AudioStream::open(path, opts)?, n_mels)
    }

    /// Run pass 1 over a decoder stream.
    pub fn from_stream(mut stream: AudioStream, n_mels: usize) -> Result<Self> {
        let name = stream.name().to_path_buf();
        let mut builder = Builder::new(n_mels, &name)?;
        while let Some(chunk) = stream.next_chunk()? {
            builder.push(&chunk)?;
        }
        builder.finish()
    }

    /// Run pass 1 over samples already in memory (16 kHz mono).
    pub fn from_samples(samples: &[f32], n_mels: usize, name: &Path) -> Result<Self> {
        let mut builder = Builder::new(n_mels, name)?;
        for chunk in samples.chunks(1 << 16) {
            builder.push(chunk)?;
        }
        builder.finish()
    }

    /// 16 kHz samples of audio.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Seconds of audio.
    pub fn duration(&self) -> f64 {
        self.n_samples as f64 / super::SAMPLE_RATE as f64
    }
}

impl MelSource for SpooledMel {
    fn n_mels(&self) -> usize {
        self.n_mels
    }

    fn content_frames(&self) -> usize {
        // As `LogMel::content_frames`: (n + N_SAMPLES) / HOP - N_FRAMES.
        ((self.n_samples + N_SAMPLES) / HOP_LENGTH).saturating_sub(N_FRAMES)
    }

    fn window(&mut self, start: usize) -> Result<Vec<f32>> {
        let n_mels = self.n_mels;
        let n_frames = (self.n_samples + N_SAMPLES) / HOP_LENGTH;
        let mut out = vec![0.0f32; n_mels * N_FRAMES];
        let start = start.min(n_frames);
        let take = (n_frames - start).min(N_FRAMES);
        // Frames start..start+take: spooled ones (below n_live), then silence.
        let live_end = self.n_live.clamp(start, start + take);
        let n_read = live_end - start;
        if n_read > 0 {
            self.raw.resize(n_read * n_mels * 4, 0);
            self.spool
                .seek(SeekFrom::Start((start * n_mels * 4) as u64))
                .and_then(|_| self.spool.read_exact(&mut self.raw))
                .map_err(|e| Error::audio(&self.name, format!("mel spool read failed: {e}")))?;
            for (f, frame) in self.raw.chunks_exact(n_mels * 4).enumerate() {
                for (m, b) in frame.chunks_exact(4).enumerate() {
                    let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    out[m * N_FRAMES + f] = normalize(x, self.global_max);
                }
            }
        }
        let silent = normalize(SILENT_LOG_MEL, self.global_max);
        for row in out.chunks_exact_mut(N_FRAMES) {
            row[n_read..take].fill(silent);
        }
        Ok(out)
    }
}

/// Pass 1: samples in, log10 mel frames out to the spool.
struct Builder {
    analyzer: FrameAnalyzer,
    name: std::path::PathBuf,
    /// Samples `origin..origin + history.len()` (what the next frames still need).
    history: Vec<f32>,
    origin: usize,
    n_samples: usize,
    next_frame: usize,
    global_max: f32,
    frames: Vec<f32>,
    spool: BufWriter<File>,
}

impl Builder {
    fn new(n_mels: usize, name: &Path) -> Result<Self> {
        let spool = tempfile::tempfile()
            .map_err(|e| Error::audio(name, format!("cannot create the mel spool file: {e}")))?;
        Ok(Builder {
            analyzer: FrameAnalyzer::new(n_mels),
            name: name.to_path_buf(),
            history: Vec::new(),
            origin: 0,
            n_samples: 0,
            next_frame: 0,
            global_max: f32::MIN,
            frames: Vec::new(),
            spool: BufWriter::with_capacity(1 << 16, spool),
        })
    }

    fn push(&mut self, samples: &[f32]) -> Result<()> {
        self.history.extend_from_slice(samples);
        self.n_samples += samples.len();
        // Frame t reads samples up to t*hop + N_FFT/2 - 1 (frames 0 and 1 reflect up to 200):
        // it is final once sample t*hop + N_FFT/2 is in.
        let ready = if self.n_samples > N_FFT / 2 {
            (self.n_samples - N_FFT / 2 - 1) / HOP_LENGTH + 1
        } else {
            0
        };
        while ready >= self.next_frame + BATCH_FRAMES {
            self.compute(self.next_frame + BATCH_FRAMES, self.n_samples)?;
        }
        Ok(())
    }

    /// Compute frames next_frame..end, with the audio `n_known` samples long for them.
    fn compute(&mut self, end: usize, n_known: usize) -> Result<()> {
        let n_mels = self.analyzer.n_mels();
        let count = end - self.next_frame;
        self.frames.resize(count * n_mels, 0.0);
        self.analyzer.frames(
            &self.history,
            self.origin,
            n_known,
            self.next_frame,
            &mut self.frames,
        );
        for &x in &self.frames {
            self.global_max = self.global_max.max(x);
        }
        let mut bytes = Vec::with_capacity(self.frames.len() * 4);
        for &x in &self.frames {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        self.spool
            .write_all(&bytes)
            .map_err(|e| Error::audio(&self.name, format!("mel spool write failed: {e}")))?;
        self.next_frame = end;
        // Keep only what later frames read (frames >= 2 never reflect to the start).
        if self.next_frame >= 2 {
            let keep_from = (self.next_frame * HOP_LENGTH).saturating_sub(N_FFT / 2);
            if keep_from > self.origin {
                let drop = (keep_from - self.origin).min(self.history.len());
                self.history.drain(..drop);
                self.origin += drop;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SpooledMel> {
        let n = self.n_samples;
        let n_live = live_frames(n);
        if n_live > self.next_frame {
            self.compute(n_live, n)?;
        }
        let n_frames = (n + N_SAMPLES) / HOP_LENGTH;
        // As `log_mel_spectrogram`: silent frames take part in the max when there are any.
        let mut global_max = self.global_max;
        if n_live < n_frames {
            global_max = global_max.max(SILENT_LOG_MEL);
        }
        let spool = self
            .spool
            .into_inner()
            .map_err(|e| Error::audio(&self.name, format!("mel spool write failed: {e}")))?;
        Ok(SpooledMel {
            n_mels: self.analyzer.n_mels(),
            n_samples: n,
            n_live,
            global_max,
            spool,
            name: self.name,
            raw: Vec::new(),
        })
    }
}
