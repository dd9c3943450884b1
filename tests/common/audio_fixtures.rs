//! The audio fixtures (tests/data/formats, made with ffmpeg: its README has each command) and
//! a stream that is only `Read`, shared by tests/audio_formats.rs and tests/audio_guards.rs.

use std::io::Read;
use std::path::{Path, PathBuf};

use dattavani_asr::testing::audio::{decode_wav, AudioStream, OpenOptions};

pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

pub fn fixture(name: &str) -> PathBuf {
    data("formats").join(name)
}

/// jfk.wav's first `n` samples (16 kHz mono).
pub fn jfk(n: usize) -> Vec<f32> {
    let (s, rate) = decode_wav(&data("speech/jfk.wav")).unwrap();
    assert_eq!(rate, 16_000);
    s[..n].to_vec()
}

/// A reader that is only `Read` (as stdin): no seeking possible.
pub struct NotSeek<R>(pub R);

impl<R: Read> Read for NotSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Hand out small reads, as a pipe does.
        let n = buf.len().min(3000);
        self.0.read(&mut buf[..n])
    }
}

pub fn from_reader(bytes: Vec<u8>, opts: &OpenOptions) -> dattavani_asr::Result<Vec<f32>> {
    AudioStream::from_reader(
        Box::new(NotSeek(std::io::Cursor::new(bytes))),
        Path::new("-"),
        opts,
    )?
    .read_all()
}

/// The one-line error of decoding `bytes` from a stream (named "-").
pub fn stream_error(bytes: Vec<u8>) -> String {
    from_reader(bytes, &OpenOptions::default())
        .unwrap_err()
        .to_string()
}
