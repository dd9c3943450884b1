//! A check of FLAC metadata blocks before symphonia reads them.
//!
//! symphonia's FLAC demuxer reads VORBIS_COMMENT and PICTURE blocks with symphonia-metadata,
//! which allocates every claimed comment, media type, description and picture length before
//! reading it (see `comment_guard`): a 916-byte FLAC whose comment claims 4 GiB reserved
//! 4 GiB (found by `fuzz/` target `audio_stream`). Those two block types are read in whole
//! (a block is at most 16 MiB: its length has 24 bits) and checked before the demuxer sees a
//! byte of them; other blocks and the audio frames pass through unread.
//!
//! A file is checked before the demuxer opens it ([`check_file`]); a stream (stdin, a pipe)
//! goes through [`FlacGate`], which hands a checked block on only after its check.

use std::io::{Read, Seek, SeekFrom};

use super::comment_guard::{check_picture, check_vorbis_comment};

const VORBIS_COMMENT: u8 = 4;
const PICTURE: u8 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before the "fLaC" marker.
    Marker,
    /// At a metadata block header.
    Blocks,
    /// Past the last metadata block (or not FLAC after all): nothing more to check.
    Frames,
}

/// A FLAC stream whose VORBIS_COMMENT and PICTURE blocks are handed on only once checked; a
/// failed check is a read error (InvalidData), so the demuxer never reads a length it would
/// trust.
pub(crate) struct FlacGate<R> {
    inner: R,
    /// Checked bytes not handed on yet, from `at`.
    pending: Vec<u8>,
    at: usize,
    /// Bytes of a block nobody allocates from, passed straight through.
    through: u64,
    stage: Stage,
}

impl<R: Read> FlacGate<R> {
    pub(crate) fn new(inner: R) -> Self {
        FlacGate {
            inner,
            pending: Vec::new(),
            at: 0,
            through: 0,
            stage: Stage::Marker,
        }
    }

    /// Replace `pending` with up to `n` more bytes of `inner` (fewer at its end).
    fn take(&mut self, n: u64) -> std::io::Result<usize> {
        self.pending.clear();
        self.at = 0;
        self.inner.by_ref().take(n).read_to_end(&mut self.pending)
    }

    /// Move past the marker or the next block header, reading and checking the block if it is
    /// one symphonia allocates from.
    fn step(&mut self) -> std::io::Result<()> {
        match self.stage {
            Stage::Frames => {}
            Stage::Marker => {
                self.take(4)?;
                self.stage = if self.pending == b"fLaC" {
                    Stage::Blocks
                } else {
                    Stage::Frames
                };
            }
            Stage::Blocks => {
                if self.take(4)? < 4 {
                    // The stream ends inside a header: the demuxer says so.
                    self.stage = Stage::Frames;
                    return Ok(());
                }
                let header = [
                    self.pending[0],
                    self.pending[1],
                    self.pending[2],
                    self.pending[3],
                ];
                let len = u32::from_be_bytes([0, header[1], header[2], header[3]]);
                if header[0] & 0x80 != 0 {
                    self.stage = Stage::Frames;
                }
                let block_type = header[0] & 0x7F;
                if block_type != VORBIS_COMMENT && block_type != PICTURE {
                    self.through = u64::from(len);
                    return Ok(());
                }
                self.inner
                    .by_ref()
                    .take(u64::from(len))
                    .read_to_end(&mut self.pending)?;
                let body = &self.pending[4..];
                let checked = if block_type == VORBIS_COMMENT {
                    check_vorbis_comment(body, "FLAC VORBIS_COMMENT block")
                } else {
                    check_picture(body, "FLAC PICTURE block")
                };
                checked.map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            }
        }
        Ok(())
    }

    /// Read and check every metadata block, handing nothing on.
    fn check_metadata(&mut self) -> std::io::Result<()> {
        while self.stage != Stage::Frames {
            std::io::copy(
                &mut self.inner.by_ref().take(self.through),
                &mut std::io::sink(),
            )?;
            self.through = 0;
            self.step()?;
        }
        Ok(())
    }
}

impl<R: Read> Read for FlacGate<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.at < self.pending.len() {
                let n = out.len().min(self.pending.len() - self.at);
                out[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
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
            if self.stage == Stage::Frames {
                return self.inner.read(out);
            }
            self.step()?;
        }
    }
}

/// Check the metadata blocks of the FLAC file `r`, then rewind it.
pub(crate) fn check_file<R: Read + Seek>(r: &mut R) -> Result<(), String> {
    FlacGate::new(&mut *r)
        .check_metadata()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => e.to_string(),
            _ => format!("cannot read: {e}"),
        })?;
    r.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::comment_guard::tests::comment_body;
    use std::io::Cursor;

    fn block(block_type: u8, body: &[u8]) -> Vec<u8> {
        let mut b = vec![block_type];
        b.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        b.extend_from_slice(body);
        b
    }

    fn flac(comment: &[u8]) -> Vec<u8> {
        let mut f = b"fLaC".to_vec();
        f.extend(block(0, &[0u8; 34]));
        f.extend(block(1, &[0u8; 100]));
        f.extend(block(0x80 | VORBIS_COMMENT, comment));
        f.extend_from_slice(&[0xFF, 0xF8, 1, 2, 3, 4, 5]);
        f
    }

    fn both(bytes: &[u8]) -> (Result<(), String>, Result<Vec<u8>, String>) {
        let file = check_file(&mut Cursor::new(bytes));
        let mut gate = FlacGate::new(Cursor::new(bytes));
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        let stream = loop {
            match gate.read(&mut buf) {
                Ok(0) => break Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e.to_string()),
            }
        };
        (file, stream)
    }

    #[test]
    fn sound_files_pass_unchanged_even_cut() {
        let f = flac(&comment_body(&[b"TITLE=a", &[b'x'; 5000]]));
        // The comment block's body spans 150..5176; its first comment starts at 165.
        let comment = 165..5176;
        for cut in 0..=f.len() {
            let (file, stream) = both(&f[..cut]);
            // A cut inside a comment leaves it claiming more than is there: refused or not,
            // never a panic.
            if !comment.contains(&cut) {
                assert_eq!(file, Ok(()), "cut {cut}");
                assert_eq!(stream.as_deref(), Ok(&f[..cut]), "cut {cut}");
            }
        }
    }

    #[test]
    fn a_comment_claiming_4_gib_is_refused_before_it_is_handed_on() {
        let mut body = comment_body(&[b"TITLE=a"]);
        body[11..15].copy_from_slice(&u32::MAX.to_le_bytes());
        let f = flac(&body);
        let (file, stream) = both(&f);
        let want = "malformed FLAC VORBIS_COMMENT block: comment 0 claims 4294967295 bytes, \
                    only 7 left in it";
        assert_eq!(file.unwrap_err(), want);
        assert_eq!(stream.unwrap_err(), want);
        // A picture block likewise.
        let mut f = b"fLaC".to_vec();
        f.extend(block(0x80 | PICTURE, &[0, 0, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF]));
        assert!(both(&f)
            .1
            .unwrap_err()
            .contains("malformed FLAC PICTURE block: picture media type claims"));
    }
}
