//! Our RIFF/WAV reader on arbitrary bytes: a one-line error or samples, never a panic.
#![no_main]

use dattavani_asr::testing::audio::decode_wav_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(wav) = decode_wav_bytes(data) {
        // Touch the samples so a bogus length shows up under the sanitizer.
        let _ = wav.samples.iter().fold(0f32, |a, s| a + s);
    }
});
