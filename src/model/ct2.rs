//! CTranslate2 (faster-whisper) `model.bin` reader and importer into the Hugging Face layout.
