//! dattavani-asr: Whisper speech recognition with hand-written WGSL compute shaders on wgpu and a
//! plain-Rust CPU reference path.
//!
//! Data flows one way: audio file -> samples (16 kHz mono f32) -> log-mel -> encoder -> decoder
//! loop -> segments -> writers. Each stage is a module with one job.

pub mod atomic_file;
pub mod audio;
pub mod backend;
pub mod bench;
pub mod decode;
pub mod error;
pub mod mel;
pub mod model;
pub mod output;
pub mod progress;
pub mod tokenizer;
pub mod transcribe;
pub mod vad;

pub use error::{Error, Result};
