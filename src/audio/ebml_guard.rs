//! A structural check of Matroska/WebM (EBML) input before symphonia reads it.
//!
//! Symphonia 0.5's Matroska demuxer allocates a string or binary element's claimed size before
//! reading it: a 3-KB WebM whose block claims 35 PB aborts the process (found by `fuzz/` target
//! `audio_stream`, after the same kind of find in MP4: see `mp4_guard`). Memory must stay
//! bounded whatever the input, so every element header the demuxer will read is checked first:
//! - a string or binary element (blocks, codec private data, tags) may claim at most
//!   [`MAX_ELEMENT`] bytes;
//! - a child may not end past the end of its parent (so the demuxer and this check agree on
//!   where every header is);
//! - an invalid element ID is refused (the demuxer would scan for the next cluster: what it
//!   then reads is not checked here).
//!
//! A file is walked before the demuxer opens it ([`check_file`]); a stream (stdin, a pipe) goes
//! through [`EbmlGate`], which hands bytes on only once the header they belong to has passed.
//! Written by hand: no crate does only this check.

use std::io::{Read, Seek, SeekFrom};

/// The largest string or binary element we let the demuxer allocate: blocks of audio are a
/// few KB, codec private data and tags rarely more than a few hundred.
pub(crate) const MAX_ELEMENT: u64 = 64 << 20;

/// Deeper nesting than the Matroska schema has; bounds the walk's stack.
const MAX_DEPTH: usize = 32;

/// Element IDs symphonia-format-mkv 0.5 reads as master elements (its `element_ids.rs`).
const MASTERS: [u32; 30] = [
    0x1A45DFA3, 0x18538067, 0x114D9B74, 0x4DBB, 0x1549A966, 0x1F43B675, 0xA0, 0x75A1, 0xA6,
    0x1654AE6B, 0xAE, 0xE0, 0xE1, 0x6D80, 0x6240, 0x5035, 0x47E7, 0x55B0, 0x55D0, 0x1C53BB6B, 0xBB,
    0xB7, 0x1043A770, 0x45B9, 0xB6, 0x80, 0x1254C367, 0x7373, 0x63C0, 0x67C8,
];

/// Element IDs whose data symphonia reads into a buffer of the claimed size (string and binary
/// types in its `element_ids.rs`).
const ALLOCATING: [u32; 24] = [
    0x4282, 0x7BA9, 0x4D80, 0x5741, 0x536E, 0x22B59C, 0x86, 0x258688, 0x5654, 0x85, 0x437C, 0x437D,
    0x437E, 0x63CA, 0x45A3, 0x447A, 0x4487, 0xBF, 0xEC, 0xA3, 0xA1, 0xA5, 0x63A2, 0x4485,
];

const CLUSTER: u32 = 0x1F43B675;

/// Segment-level elements: one of these ends a cluster of unknown size.
const SEGMENT_LEVEL: [u32; 8] = [
    CLUSTER, 0x1C53BB6B, 0x1549A966, 0x114D9B74, 0x1254C367, 0x1654AE6B, 0x1043A770, 0x1941A469,
];

/// The longest element header: a 4-byte ID and an 8-byte size.
const MAX_HEADER: usize = 12;

/// The walk: where the next element header starts, and the ends of the open master elements.
#[derive(Debug, Default)]
struct Walker {
    next_header: u64,
    /// (end, whether it is a cluster of unknown size)
    open: Vec<(u64, bool)>,
}

impl Walker {
    /// Check the header at `self.next_header`, whose first bytes are `bytes`, and move past it
    /// (into a master element, past any other). None: too few bytes for a whole header.
    fn header(&mut self, bytes: &[u8]) -> Result<Option<usize>, String> {
        let at = self.next_header;
        while self.open.last().is_some_and(|&(end, _)| end <= at) {
            self.open.pop();
        }
        let Some(&first) = bytes.first() else {
            return Ok(None);
        };
        let id_len = first.leading_zeros() as usize + 1;
        if id_len > 4 {
            return Err(format!(
                "malformed Matroska/WebM: invalid element ID at byte {at}"
            ));
        }
        let Some(&size_first) = bytes.get(id_len) else {
            return Ok(None);
        };
        let size_len = size_first.leading_zeros() as usize + 1;
        if size_len > 8 {
            return Err(format!(
                "malformed Matroska/WebM: invalid element size at byte {at}"
            ));
        }
        let header_len = id_len + size_len;
        if bytes.len() < header_len {
            return Ok(None);
        }
        let id = bytes[..id_len]
            .iter()
            .fold(0u32, |v, &b| (v << 8) | u32::from(b));
        // As symphonia reads it: only a one-byte all-ones size means "unknown".
        let unknown = size_first == 0xFF;
        let size = bytes[id_len + 1..header_len]
            .iter()
            .fold(u64::from(size_first) & (0xFF >> size_len), |v, &b| {
                (v << 8) | u64::from(b)
            });
        // A cluster of unknown size ends where the next segment-level element starts.
        if SEGMENT_LEVEL.contains(&id) && self.open.last().is_some_and(|&(_, open)| open) {
            self.open.pop();
        }
        let parent_end = self.open.last().map_or(u64::MAX, |&(end, _)| end);
        let data = at + header_len as u64;
        let end = if unknown {
            parent_end
        } else {
            data.saturating_add(size)
        };
        if end > parent_end {
            return Err(format!(
                "malformed Matroska/WebM: element {id:#X} at byte {at} claims {size} bytes, past \
                 the end of its parent"
            ));
        }
        if MASTERS.contains(&id) {
            if self.open.len() >= MAX_DEPTH {
                return Err("malformed Matroska/WebM: elements nested too deep".into());
            }
            self.open.push((end, unknown && id == CLUSTER));
            self.next_header = data;
        } else {
            if ALLOCATING.contains(&id) && !unknown && size > MAX_ELEMENT {
                return Err(format!(
                    "malformed Matroska/WebM: element {id:#X} at byte {at} claims {size} bytes \
                     (at most {MAX_ELEMENT} are read)"
                ));
            }
            // Symphonia reads an unknown size as 0.
            self.next_header = if unknown { data } else { end };
        }
        Ok(Some(header_len))
    }
}

/// Walk every element header of the file `r` (`len` bytes) the demuxer will meet, seeking over
/// element data. A file cut inside an element is fine (the demuxer reports it as truncated).
pub(crate) fn check_file<R: Read + Seek>(r: &mut R, len: u64) -> Result<(), String> {
    let mut walker = Walker::default();
    let mut buf = [0u8; MAX_HEADER];
    let io = |e: std::io::Error| format!("cannot read: {e}");
    while walker.next_header < len {
        r.seek(SeekFrom::Start(walker.next_header)).map_err(io)?;
        let want = (len - walker.next_header).min(MAX_HEADER as u64) as usize;
        r.read_exact(&mut buf[..want]).map_err(io)?;
        if walker.header(&buf[..want])?.is_none() {
            break;
        }
    }
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(())
}

/// A stream of Matroska/WebM whose bytes are handed on only once the element header they
/// belong to has passed the checks; a failed check is a read error (InvalidData) at that
/// header, so the demuxer never sees a size it would trust.
pub(crate) struct EbmlGate<R> {
    inner: R,
    walker: Walker,
    /// Bytes read from `inner` and not handed on yet; `pending[0]` is at stream position `pos`.
    pending: Vec<u8>,
    pos: u64,
    eof: bool,
}

impl<R: Read> EbmlGate<R> {
    pub(crate) fn new(inner: R) -> Self {
        EbmlGate {
            inner,
            walker: Walker::default(),
            pending: Vec::with_capacity(MAX_HEADER),
            pos: 0,
            eof: false,
        }
    }

    /// Read from `inner` until `pending` holds a whole header's worth or the stream ends.
    fn fill_header(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; MAX_HEADER];
        while !self.eof && self.pending.len() < MAX_HEADER {
            let n = self
                .inner
                .read(&mut buf[..MAX_HEADER - self.pending.len()])?;
            if n == 0 {
                self.eof = true;
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }
}

impl<R: Read> Read for EbmlGate<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let room = self.walker.next_header - self.pos;
            if room > 0 {
                let n = if self.pending.is_empty() {
                    // Element data: straight through, up to the next header.
                    let want = out.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                    self.inner.read(&mut out[..want])?
                } else {
                    let n = out
                        .len()
                        .min(self.pending.len())
                        .min(usize::try_from(room).unwrap_or(usize::MAX));
                    out[..n].copy_from_slice(&self.pending[..n]);
                    self.pending.drain(..n);
                    n
                };
                self.pos += n as u64;
                return Ok(n);
            }
            self.fill_header()?;
            if self.pending.is_empty() {
                return Ok(0);
            }
            match self.walker.header(&self.pending) {
                Ok(Some(_)) => {}
                // The stream ends inside a header: hand on what there is (the demuxer says
                // "truncated").
                Ok(None) => self.walker.next_header = self.pos + self.pending.len() as u64,
                Err(e) => {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::header_gate::read_in_pieces;
    use std::io::Cursor;

    /// An element: ID bytes, an 8-byte size, the body.
    fn el(id: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = id.to_vec();
        v.push(0x01);
        v.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
        v.extend_from_slice(body);
        v
    }

    fn webm(cluster_body: &[u8]) -> Vec<u8> {
        let mut f = el(&[0x1A, 0x45, 0xDF, 0xA3], &el(&[0x42, 0x82], b"webm"));
        let tracks = el(
            &[0x16, 0x54, 0xAE, 0x6B],
            &el(&[0xAE], &el(&[0x86], b"A_OPUS")),
        );
        let mut seg = tracks;
        seg.extend(el(&[0x1F, 0x43, 0xB6, 0x75], cluster_body));
        f.extend(el(&[0x18, 0x53, 0x80, 0x67], &seg));
        f
    }

    fn both(bytes: &[u8]) -> (Result<(), String>, Result<Vec<u8>, String>) {
        let file = check_file(&mut Cursor::new(bytes), bytes.len() as u64);
        // Small reads, as a pipe gives them.
        let stream = read_in_pieces(EbmlGate::new(Cursor::new(bytes.to_vec())), 5);
        (file, stream)
    }

    #[test]
    fn sound_files_pass_unchanged() {
        let f = webm(&el(&[0xA3], &[0x81, 0, 0, 0x80, 1, 2, 3]));
        let (file, stream) = both(&f);
        assert_eq!(file, Ok(()));
        assert_eq!(stream.as_deref(), Ok(&f[..]));
        // Cut anywhere: still no error from the checks (the demuxer reports truncation).
        for cut in 0..f.len() {
            let (file, stream) = both(&f[..cut]);
            assert_eq!(file, Ok(()), "cut {cut}");
            assert_eq!(stream.as_deref(), Ok(&f[..cut]), "cut {cut}");
        }
    }

    #[test]
    fn a_block_claiming_petabytes_is_refused_before_its_bytes_are_handed_on() {
        // The fuzzer's find, in small: a SimpleBlock claiming ~35 PB.
        let mut block = vec![0xA3, 0x01, 0x7B, 0x92, 0x5C, 0xE7, 0xF2, 0x80, 0xC4];
        block.extend_from_slice(&[0u8; 16]);
        let mut cluster = vec![0x1F, 0x43, 0xB6, 0x75, 0xFF]; // unknown size
        cluster.extend(block);
        let mut f = webm(&[]);
        f.extend(cluster);
        let (file, stream) = both(&f);
        assert!(file.unwrap_err().contains("claims 34782349861486788 bytes"));
        assert!(stream.unwrap_err().contains("at most 67108864 are read"));
    }

    #[test]
    fn children_past_their_parent_and_bad_ids_are_refused() {
        let mut inner = el(&[0x86], b"A_OPUS");
        inner[8] = 0x40; // CodecID claims 64 bytes inside a 15-byte TrackEntry
        let f = el(&[0x18, 0x53, 0x80, 0x67], &el(&[0xAE], &inner));
        assert!(both(&f)
            .0
            .unwrap_err()
            .contains("past the end of its parent"));
        let bad = [0x1A, 0x45, 0xDF, 0xA3, 0x80, 0x00, 0x00];
        let f = [&bad[..], &[0x05, 0x80]].concat();
        assert!(both(&f)
            .1
            .unwrap_err()
            .contains("invalid element ID at byte 5"));
    }

    #[test]
    fn clusters_of_unknown_size_follow_one_another() {
        // Live WebM (MediaRecorder): every cluster of unknown size, each ended by the next.
        let block = el(&[0xA3], &[0x81, 0, 0, 0x80, 9]);
        let mut f = webm(&[]);
        for _ in 0..100 {
            f.extend([0x1F, 0x43, 0xB6, 0x75, 0xFF]);
            f.extend(&block);
        }
        let (file, stream) = both(&f);
        assert_eq!(file, Ok(()));
        assert_eq!(stream.as_deref(), Ok(&f[..]));
    }
}
