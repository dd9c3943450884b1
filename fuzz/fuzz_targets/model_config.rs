//! Model metadata on arbitrary text: `config.json` (+ `generation_config.json`) and
//! `tokenizer.json` (the Whisper tokenizer and the CTranslate2 importer's special tokens).
//! The first byte picks the file; the rest is its content.
#![no_main]

use dattavani_asr::testing::model::config::ModelConfig;
use dattavani_asr::testing::model::ct2::SpecialTokens;
use dattavani_asr::testing::tokenizer::WhisperTokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, content)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    match which % 3 {
        0 => {
            std::fs::write(dir.path().join("config.json"), content).unwrap();
            let _ = ModelConfig::from_dir(dir.path());
        }
        1 => {
            std::fs::write(dir.path().join("config.json"), br#"{"d_model":8}"#).unwrap();
            std::fs::write(dir.path().join("generation_config.json"), content).unwrap();
            let _ = ModelConfig::from_dir(dir.path());
        }
        _ => {
            let path = dir.path().join("tokenizer.json");
            std::fs::write(&path, content).unwrap();
            let _ = SpecialTokens::from_tokenizer_json(&path);
            for n_vocab in [51864, 51865, 51866] {
                if let Ok(tok) = WhisperTokenizer::from_file(&path, n_vocab) {
                    let _ = tok.sot_sequence(None, dattavani_asr::Task::Transcribe);
                    let _ = tok.sot_sequence(Some("de"), dattavani_asr::Task::Translate);
                    let _ = tok.decode(&[0, 1, 2, 50257, 50363, 51000]);
                    let _ = tok.encode("hello world");
                }
            }
        }
    }
});
