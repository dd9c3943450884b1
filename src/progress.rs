//! Progress of long work (downloads, model conversion, hashing, transcription) reported to
//! whoever drives the library. The library draws nothing itself: the CLI turns these calls into
//! terminal bars (indicatif), a server into metrics or nothing.

/// What a [`Progress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressUnit {
    /// Bytes downloaded, read or written.
    Bytes,
    /// Audio transcribed, in centiseconds.
    Centiseconds,
}

/// A sink for the progress of one piece of long work at a time.
///
/// `begin` starts a piece (`label` says what, e.g. "downloading tiny.en"; `total` how many
/// `unit`s, `None` while unknown), `set_total` fixes an unknown total later, `set_position`
/// reports how many are done (never more than the total), `finish` ends the piece. A sink may be
/// handed several pieces in a row; it is never handed two at once.
pub trait Progress: Send + Sync {
    fn begin(&self, label: &str, total: Option<u64>, unit: ProgressUnit);
    fn set_total(&self, total: u64);
    fn set_position(&self, done: u64);
    fn finish(&self);
}

/// The sink that reports nowhere (library default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _label: &str, _total: Option<u64>, _unit: ProgressUnit) {}
    fn set_total(&self, _total: u64) {}
    fn set_position(&self, _done: u64) {}
    fn finish(&self) {}
}
