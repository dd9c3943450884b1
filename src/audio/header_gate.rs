//! A `Read` that hands on a stream's headers only once they are checked, for formats whose
//! checked parts are whole units (a FLAC metadata block, a RIFF chunk header) with unchecked
//! bytes between them (`flac_guard`, `riff_guard`).

use std::io::{Read, Seek, SeekFrom};

/// What a check does at the next unit of the stream.
pub(crate) trait HeaderWalk {
    /// Read the next unit from `inner` into `unit` (empty on entry) and check it: Err
    /// (InvalidData) to refuse it. Returns how many bytes after it pass through unread, and
    /// whether another unit follows them (false: nothing more is checked).
    fn step(&mut self, inner: &mut dyn Read, unit: &mut Vec<u8>) -> std::io::Result<(u64, bool)>;
}

/// `inner` with every unit of `W` checked before a byte of it is handed on.
pub(crate) struct HeaderGate<R, W> {
    inner: R,
    walk: W,
    /// The checked unit, handed on from `at`.
    unit: Vec<u8>,
    at: usize,
    /// Bytes after it to pass straight through.
    through: u64,
    done: bool,
}

impl<R: Read, W: HeaderWalk> HeaderGate<R, W> {
    pub(crate) fn new(inner: R, walk: W) -> Self {
        HeaderGate {
            inner,
            walk,
            unit: Vec::new(),
            at: 0,
            through: 0,
            done: false,
        }
    }

    fn step(&mut self) -> std::io::Result<()> {
        self.unit.clear();
        self.at = 0;
        let (through, more) = self.walk.step(&mut self.inner, &mut self.unit)?;
        self.through = through;
        self.done = !more;
        Ok(())
    }

    /// Read and check every unit, handing nothing on (a file's check before it is opened).
    pub(crate) fn check_all(&mut self) -> std::io::Result<()> {
        loop {
            std::io::copy(
                &mut self.inner.by_ref().take(self.through),
                &mut std::io::sink(),
            )?;
            if self.done {
                return Ok(());
            }
            self.step()?;
        }
    }
}

impl<R: Read, W: HeaderWalk> Read for HeaderGate<R, W> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.at < self.unit.len() {
                let n = out.len().min(self.unit.len() - self.at);
                out[..n].copy_from_slice(&self.unit[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if self.through > 0 {
                let want = out
                    .len()
                    .min(usize::try_from(self.through).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut out[..want])?;
                self.through = if n == 0 { 0 } else { self.through - n as u64 };
                return Ok(n);
            }
            if self.done {
                return self.inner.read(out);
            }
            self.step()?;
        }
    }
}

/// Read up to `n` more bytes of `inner` onto `unit` (fewer at its end); how many came.
pub(crate) fn take_into(
    inner: &mut dyn Read,
    n: u64,
    unit: &mut Vec<u8>,
) -> std::io::Result<usize> {
    inner.take(n).read_to_end(unit)
}

/// A refusal as the read error the demuxer passes on.
pub(crate) fn refused(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// The message of a refusal, or the read error, for a file's check.
pub(crate) fn file_error(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::InvalidData => e.to_string(),
        _ => format!("cannot read: {e}"),
    }
}

/// Check every unit of the file `r` with `walk`, then rewind it.
pub(crate) fn check_file<R: Read + Seek, W: HeaderWalk>(r: &mut R, walk: W) -> Result<(), String> {
    HeaderGate::new(&mut *r, walk)
        .check_all()
        .map_err(file_error)?;
    r.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(())
}

/// Everything `gate` hands on, read `piece` bytes at a time as a pipe gives them; its error's
/// message if it refuses.
#[cfg(test)]
pub(crate) fn read_in_pieces(mut gate: impl Read, piece: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; piece];
    loop {
        match gate.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}
