//! The audio front door on arbitrary bytes: content sniffing, then streaming decode of whatever
//! container it names (our WAV reader, symphonia, libopus) and resampling to 16 kHz mono.
//! Inputs whose last byte is odd go through a seekable temporary file (MP4 with its index at the
//! end, CAF), the others through a non-seekable reader as stdin and the server do.
#![no_main]

use std::io::{Cursor, Write};
use std::path::Path;

use dattavani_asr::audio_io::{sniff, AudioStream, OpenOptions, SNIFF_LEN};
use libfuzzer_sys::fuzz_target;

/// Enough chunks for any clip a few KB long; stops a stream that never ends from timing out.
const MAX_CHUNKS: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let _ = sniff(&data[..data.len().min(SNIFF_LEN)]);
    let opts = OpenOptions::default();
    let seekable = data.last().is_some_and(|b| b & 1 == 1);
    let _file; // keeps the temporary file alive while the stream reads it
    let stream = if seekable {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(data).expect("write temp file");
        let s = AudioStream::open(f.path(), &opts);
        _file = f;
        s
    } else {
        AudioStream::from_reader(
            Box::new(Cursor::new(data.to_vec())),
            Path::new("fuzz"),
            &opts,
        )
    };
    let Ok(mut stream) = stream else { return };
    for _ in 0..MAX_CHUNKS {
        match stream.next_chunk() {
            Ok(Some(chunk)) => {
                assert!(
                    chunk.iter().all(|s| s.is_finite()),
                    "non-finite sample out of the decoder"
                );
            }
            Ok(None) | Err(_) => break,
        }
    }
});
