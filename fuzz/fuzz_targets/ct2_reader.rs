//! The CTranslate2 `model.bin` reader on arbitrary bytes: parse, Whisper dimensions, and every
//! variable widened to f32.
#![no_main]

use std::path::Path;

use dattavani_asr::testing::model::ct2::{Ct2Model, Ct2WhisperDims};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Ct2Model::from_bytes(Path::new("fuzz/model.bin"), data) else {
        return;
    };
    let _ = Ct2WhisperDims::from_model(&model);
    let names: Vec<String> = model.variable_names().map(str::to_owned).collect();
    for name in &names {
        let _ = model.scalar_i64(name);
        let _ = model.f32(name);
    }
    for alias in model.aliases().keys() {
        let _ = model.get(alias);
    }
});
