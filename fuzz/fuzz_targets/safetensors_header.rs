//! The safetensors checks on an arbitrary file: the cache's header check (`integrity::read_header`)
//! and the weights loader (open, shapes, tensors widened to f32).
#![no_main]

use std::io::Write;

use dattavani_asr::testing::model::{integrity, weights::Weights};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(data).expect("write temp file");
    f.flush().expect("flush temp file");
    let _ = integrity::read_header(f.path());
    let Ok(w) = Weights::open(f.path()) else {
        return;
    };
    for name in w.names() {
        if let Ok(shape) = w.shape(&name) {
            let _ = w.f32(&name, &shape);
        }
    }
});
