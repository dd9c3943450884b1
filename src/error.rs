//! One error type for the whole crate. Every variant renders as a single line that names the file
//! (or model, or device) and the problem, because that line is what the CLI prints.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unreadable, malformed or unsupported audio input.
    #[error("{}: {msg}", path.display())]
    Audio { path: PathBuf, msg: String },

    /// A model file that exists but is wrong: truncated, corrupt, or disagreeing with its config.
    #[error("{}: {msg}", path.display())]
    Model { path: PathBuf, msg: String },

    /// A model name that could not be resolved to files (cache, hub and offline source all failed).
    #[error("model '{name}': {msg}")]
    ModelResolve { name: String, msg: String },

    /// Tokenizer file missing or unreadable.
    #[error("{}: tokenizer: {msg}", path.display())]
    Tokenizer { path: PathBuf, msg: String },

    /// An I/O failure on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// No usable compute device, or a device-side failure.
    #[error("device: {0}")]
    Device(String),

    /// A request the program cannot honour (bad flag combination, unsupported option).
    #[error("{0}")]
    Usage(String),

    /// The work was stopped through a `CancelHandle`.
    #[error("cancelled")]
    Cancelled,

    /// A failure inside decoding or the forward pass that is not the input's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn audio(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Audio {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    pub fn model(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Model {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    pub fn resolve(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::ModelResolve {
            name: name.into(),
            msg: msg.into(),
        }
    }
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The process exit code documented in README ("Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Audio { .. } | Error::Io { .. } => 1,
            Error::Usage(_) => 2,
            Error::Model { .. } | Error::ModelResolve { .. } | Error::Tokenizer { .. } => 3,
            Error::Device(_) => 4,
            Error::Internal(_) => 5,
            // As a shell reports a command stopped by SIGINT.
            Error::Cancelled => 130,
        }
    }
}
