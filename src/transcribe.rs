//! Transcriber
