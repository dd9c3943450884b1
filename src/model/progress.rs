//! Byte counts of downloads, conversions and verification, reported to one process-wide sink
//! (the CLI installs terminal bars; a library user may install its own or none).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::progress::{Progress, ProgressUnit};

/// Where downloads, imports and verification report their bytes (see [`set_progress`]).
static PROGRESS: std::sync::RwLock<Option<Arc<dyn Progress>>> = std::sync::RwLock::new(None);

/// Sends the progress of downloads, conversions and verification in this process to `sink`
/// (`None`, the default: nowhere). The CLI installs terminal bars unless `--quiet`.
pub fn set_progress(sink: Option<Arc<dyn Progress>>) {
    *PROGRESS.write().unwrap_or_else(|e| e.into_inner()) = sink;
}

/// One piece of byte-counted work reported to the sink of [`set_progress`]; ends (`finish`) when
/// dropped.
pub struct ByteProgress {
    sink: Option<Arc<dyn Progress>>,
    position: AtomicU64,
}

impl ByteProgress {
    /// Starts reporting `label` with a total of `len` bytes (0: not known yet).
    pub fn begin(len: u64, label: &str) -> Self {
        let sink = PROGRESS.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(s) = &sink {
            s.begin(label, (len > 0).then_some(len), ProgressUnit::Bytes);
        }
        ByteProgress {
            sink,
            position: AtomicU64::new(0),
        }
    }

    /// Reports nowhere.
    pub fn hidden() -> Self {
        ByteProgress {
            sink: None,
            position: AtomicU64::new(0),
        }
    }

    pub fn set_length(&self, len: u64) {
        if let Some(s) = &self.sink {
            s.set_total(len);
        }
    }

    pub fn set_position(&self, done: u64) {
        self.position.store(done, Ordering::Relaxed);
        if let Some(s) = &self.sink {
            s.set_position(done);
        }
    }

    pub fn inc(&self, n: u64) {
        let done = self.position.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(s) = &self.sink {
            s.set_position(done);
        }
    }

    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }
}

impl Drop for ByteProgress {
    fn drop(&mut self) {
        if let Some(s) = &self.sink {
            s.finish();
        }
    }
}
