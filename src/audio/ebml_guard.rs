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
//!   then reads is not checked here);
//! - a laced SimpleBlock or Block (Xiph or EBML lacing) may not claim frames past its own end:
//!   symphonia's `lacing::extract_frames` allocates each claimed frame size before reading it
//!   (a 2-KB WebM whose EBML lace claimed 26 GB, found by the fuzzer). See [`LaceCheck`].
//! - a Vorbis track's CodecPrivate (a count and Xiph-laced sizes of the three Vorbis header
//!   packets) may not claim packets past its own end: symphonia's
//!   `vorbis_extra_data_from_codec_private` allocates each claimed size before reading it (up
//!   to 255 times the element's size); and its setup header's codebooks must be within the
//!   limits of `vorbis_setup_guard` (the decoder builds them at their claimed sizes). The
//!   CodecID and the CodecPrivate of a TrackEntry come in either order, so the refusal comes
//!   with whichever of the two is read second.
//!
//! A file is walked before the demuxer opens it ([`check_file`]); a stream (stdin, a pipe) goes
//! through [`EbmlGate`], which hands bytes on only once the header they belong to has passed.
//! Written by hand: no crate does only this check.

use std::io::{Read, Seek, SeekFrom};

mod lacing;
mod tracks;

use lacing::LaceCheck;
use tracks::{CodecIdRead, PrivateRead, TrackEntry};

/// The part of `bytes` (which start at stream position `from`) at positions `next..end`: what a
/// data check has not seen yet of its element. The gate and the file walk hand element data on
/// in order, so `from <= next` unless the bytes end before it.
fn unseen(bytes: &[u8], from: u64, next: u64, end: u64) -> &[u8] {
    let at = |pos: u64| {
        usize::try_from(pos.saturating_sub(from)).map_or(bytes.len(), |i| i.min(bytes.len()))
    };
    &bytes[at(next)..at(end.max(next))]
}

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

/// SimpleBlock and Block (in a BlockGroup): their data is a block header and lacing header that
/// symphonia's `lacing::extract_frames` reads (see [`LaceCheck`]).
const BLOCKS: [u32; 2] = [0xA3, 0xA1];

/// A track's description, and in it the codec's ID (a string) and private data (binary).
const TRACK_ENTRY: u32 = 0xAE;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;

/// The CodecID whose CodecPrivate symphonia splits by Xiph-laced sizes.
const VORBIS: &[u8] = b"A_VORBIS";

/// The largest CodecPrivate read as Vorbis's: it is held whole to check its setup header
/// (symphonia-format-ogg's limit on one packet; encoders write a few KB).
const MAX_VORBIS_PRIVATE: u64 = 16 << 20;

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
    /// The check of the element data that comes next, if the last header's data is checked.
    data_check: Option<DataCheck>,
    /// The TrackEntry the walk is in, if any.
    track: Option<TrackEntry>,
}

/// What is checked in an element's data.
#[derive(Debug)]
enum DataCheck {
    /// A block's lacing header: refused as soon as it claims frames past the block.
    Block(LaceCheck),
    /// A CodecPrivate read as Vorbis's (count, Xiph sizes, setup header): a bad one is
    /// refused only in a Vorbis track, since other codecs' private data has another layout.
    Private(PrivateRead),
    /// A CodecID: whether it says Vorbis.
    CodecId(CodecIdRead),
}

impl Walker {
    /// Check the header at `self.next_header`, whose first bytes are `bytes`, and move past it
    /// (into a master element, past any other). None: too few bytes for a whole header.
    fn header(&mut self, bytes: &[u8]) -> Result<Option<usize>, String> {
        let at = self.next_header;
        while self.open.last().is_some_and(|&(end, _)| end <= at) {
            self.open.pop();
        }
        if self.track.as_ref().is_some_and(|t| t.end <= at) {
            self.track = None;
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
        if id == TRACK_ENTRY {
            self.track = Some(TrackEntry {
                end,
                vorbis: false,
                bad_private: None,
            });
        }
        // Symphonia reads data of unknown size as empty: nothing to check.
        let in_track = self.track.is_some();
        self.data_check = match id {
            _ if unknown => None,
            _ if BLOCKS.contains(&id) => Some(DataCheck::Block(LaceCheck::block(at, data, end))),
            CODEC_PRIVATE if size > MAX_VORBIS_PRIVATE => {
                if let Some(track) = &mut self.track {
                    track.bad_private = Some(format!(
                        "malformed Matroska/WebM: the Vorbis codec private data at byte {at} is \
                         {size} bytes (at most {MAX_VORBIS_PRIVATE} are read)"
                    ));
                }
                None
            }
            CODEC_PRIVATE if in_track => Some(DataCheck::Private(PrivateRead::new(at, data, end))),
            CODEC_ID if in_track => Some(DataCheck::CodecId(CodecIdRead::new(data, end))),
            _ => None,
        };
        self.track_verdict()?;
        Ok(Some(header_len))
    }

    /// Check the element data `bytes`, which start at stream position `from`, in order.
    fn data(&mut self, from: u64, bytes: &[u8]) -> Result<(), String> {
        match &mut self.data_check {
            None => Ok(()),
            Some(DataCheck::Block(block)) => block.feed(from, bytes),
            Some(DataCheck::Private(private)) => {
                if let (Err(e), Some(track)) = (private.feed(from, bytes), &mut self.track) {
                    track.bad_private = Some(e);
                }
                self.track_verdict()
            }
            Some(DataCheck::CodecId(codec_id)) => {
                codec_id.feed(from, bytes);
                if let (Some(vorbis), Some(track)) = (codec_id.vorbis(), &mut self.track) {
                    track.vorbis = vorbis;
                }
                self.track_verdict()
            }
        }
    }

    /// A Vorbis track whose CodecPrivate claims packets past its end is refused.
    fn track_verdict(&self) -> Result<(), String> {
        match &self.track {
            Some(TrackEntry {
                vorbis: true,
                bad_private: Some(e),
                ..
            }) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// The stream position of the next data byte the pending check wants, and where the
    /// element's data ends; None when no check wants more.
    fn wanted(&self) -> Option<(u64, u64)> {
        let (next, end) = match &self.data_check {
            Some(DataCheck::Block(c)) if !c.done() => (c.next, c.end),
            Some(DataCheck::Private(c)) if !c.done() => (c.next, c.end),
            Some(DataCheck::CodecId(c)) => (c.next, c.stop),
            _ => return None,
        };
        (next < end).then_some((next, end))
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
        // Read what the data check wants: a block's header and lacing header, a CodecPrivate's
        // count and sizes, a CodecID's first bytes (a few bytes; runs of Xiph 255s more).
        let mut chunk = [0u8; 256];
        while let Some((from, end)) = walker.wanted() {
            let stop = end.min(len);
            if from >= stop {
                break;
            }
            r.seek(SeekFrom::Start(from)).map_err(io)?;
            let n = (stop - from).min(chunk.len() as u64) as usize;
            r.read_exact(&mut chunk[..n]).map_err(io)?;
            walker.data(from, &chunk[..n])?;
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
                // A block's bytes are handed on only once checked: the demuxer reads a whole
                // block before its lacing, so a refusal always comes before it could.
                self.walker
                    .data(self.pos, &out[..n])
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
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
        webm_with_tracks(&[el(&[0x86], b"A_OPUS")], cluster_body)
    }

    /// A WebM with one TrackEntry of each body in `tracks` and one cluster.
    fn webm_with_tracks(tracks: &[Vec<u8>], cluster_body: &[u8]) -> Vec<u8> {
        let mut f = el(&[0x1A, 0x45, 0xDF, 0xA3], &el(&[0x42, 0x82], b"webm"));
        let entries: Vec<u8> = tracks.iter().flat_map(|t| el(&[0xAE], t)).collect();
        let mut seg = el(&[0x16, 0x54, 0xAE, 0x6B], &entries);
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

    /// A WebM whose cluster holds one SimpleBlock: track 1, timecode 0, `flags`, then `lacing`
    /// (count and sizes) and `payload` bytes of frames.
    fn laced(flags: u8, lacing: &[u8], payload: usize) -> Vec<u8> {
        let mut data = vec![0x81, 0, 0, flags];
        data.extend_from_slice(lacing);
        data.resize(data.len() + payload, 7);
        webm(&el(&[0xA3], &data))
    }

    /// Sound at every cut (the demuxer reports truncation) and whole.
    fn passes_whole_and_cut(f: &[u8]) {
        for cut in 0..=f.len() {
            let (file, stream) = both(&f[..cut]);
            assert_eq!(file, Ok(()), "cut {cut}");
            assert_eq!(stream.as_deref(), Ok(&f[..cut]), "cut {cut}");
        }
    }

    /// Refused whole, from a file and a stream, with `why`; cut anywhere, either sound (the
    /// deciding byte is not there yet) or refused the same way, never anything else.
    fn refused_whole_and_cut(f: &[u8], why: &str) {
        let (file, stream) = both(f);
        assert!(file.as_ref().unwrap_err().contains(why), "{file:?}");
        assert_eq!(stream.unwrap_err(), file.unwrap_err());
        for cut in 0..f.len() {
            let (file, stream) = both(&f[..cut]);
            match file {
                Ok(()) => assert_eq!(stream.as_deref(), Ok(&f[..cut]), "cut {cut}"),
                Err(e) => {
                    assert!(e.contains(why), "cut {cut}: {e}");
                    assert_eq!(stream, Err(e), "cut {cut}");
                }
            }
        }
    }

    #[test]
    fn sound_laced_blocks_pass_unchanged() {
        // Xiph: 2 sizes, 300 (255 + 45) and 10; the last frame is the 5 bytes left.
        passes_whole_and_cut(&laced(0x02, &[2, 0xFF, 45, 10], 315));
        // Xiph: sizes filling the block exactly (an empty last frame).
        passes_whole_and_cut(&laced(0x82, &[1, 0xFF, 0], 255));
        // EBML: 300 (2-byte vint 0x412C), then +10 (1-byte signed: 10 + 63 = 73 = 0xC9).
        passes_whole_and_cut(&laced(0x06, &[2, 0x41, 0x2C, 0xC9], 615));
        // EBML: 300, then -64 (0xFF, as symphonia reads it): 236; the rest 1 byte.
        passes_whole_and_cut(&laced(0x06, &[2, 0x41, 0x2C, 0xFF], 537));
        // Fixed-size: 4 frames of 3 bytes, and a block no lacing reaches past (no sizes).
        passes_whole_and_cut(&laced(0x04, &[3], 12));
        passes_whole_and_cut(&laced(0x04, &[3], 13));
        passes_whole_and_cut(&laced(0x80, &[], 20));
        // A count of 0: one frame, the whole rest.
        passes_whole_and_cut(&laced(0x06, &[0], 9));
    }

    #[test]
    fn laced_frames_past_the_block_are_refused() {
        // The fuzzer's find: EBML lacing whose first size is 0x060E0E0E0E (26 GB).
        let find = [0x0E, 0x0E, 0x0E, 0x0E, 0x0E, 0x0E];
        refused_whole_and_cut(
            &laced(0x0E, &find, 55),
            "claims laced frames of 26005605902",
        );
        // EBML: 300, then +10: 610 bytes of frames in a block of 609.
        refused_whole_and_cut(&laced(0x06, &[2, 0x41, 0x2C, 0xC9], 609), "of 610 bytes");
        // EBML: 5, then -64: a negative size (symphonia would read it as 2^64 - 59).
        refused_whole_and_cut(
            &laced(0x06, &[2, 0x85, 0xFF], 40),
            "negative lace size (-59)",
        );
        // EBML: a first size of 0xFF, which symphonia reads as u64::MAX.
        refused_whole_and_cut(&laced(0x06, &[1, 0xFF], 40), "of 18446744073709551615");
        refused_whole_and_cut(&laced(0x06, &[1, 0x00], 40), "invalid lace size");
        // Xiph: 300 then 10 in a block of 309 bytes of frames; a run of 255s past the end.
        refused_whole_and_cut(&laced(0x02, &[2, 0xFF, 45, 10], 309), "of 310 bytes");
        let run = [&[1u8][..], &[0xFF; 40][..]].concat();
        refused_whole_and_cut(&laced(0x02, &run, 1000), "of 1275 bytes");
        // Track number 0 is no vint symphonia reads soundly.
        refused_whole_and_cut(&webm(&el(&[0xA3], &[0, 1, 2, 3])), "invalid track number");
    }

    /// A WebM with one track: CodecID `codec_id`, CodecPrivate `private`, in that order or
    /// the other.
    fn with_private(codec_id: &[u8], private: &[u8], id_first: bool) -> Vec<u8> {
        let (id, private) = (el(&[0x86], codec_id), el(&[0x63, 0xA2], private));
        let track = if id_first {
            [id, private].concat()
        } else {
            [private, id].concat()
        };
        webm_with_tracks(&[track], &el(&[0xA3], &[0x81, 0, 0, 0x80, 9]))
    }

    /// A Vorbis CodecPrivate: the count (2), the Xiph sizes `sizes`, then `packets` bytes.
    fn vorbis_private(sizes: &[u8], packets: usize) -> Vec<u8> {
        let mut p = vec![2];
        p.extend_from_slice(sizes);
        p.resize(p.len() + packets, 1);
        p
    }

    #[test]
    fn sound_vorbis_private_data_passes_unchanged() {
        // Packets of 30, 300 (255 + 45) and the 5 bytes left.
        let private = vorbis_private(&[30, 0xFF, 45], 335);
        for id_first in [true, false] {
            passes_whole_and_cut(&with_private(b"A_VORBIS", &private, id_first));
        }
        // Sizes filling it exactly (an empty last packet); a string padded with NULs.
        passes_whole_and_cut(&with_private(
            b"A_VORBIS\0\0",
            &vorbis_private(&[3, 4], 7),
            true,
        ));
    }

    #[test]
    fn vorbis_private_data_claiming_packets_past_its_end_is_refused() {
        // Packets of 30 and 300 in 329 bytes; a run of 255s (10 KB) in 101 bytes, refused at
        // its first 255.
        let short = vorbis_private(&[30, 0xFF, 45], 329);
        let run = vorbis_private(&[0xFF; 40], 60);
        for id_first in [true, false] {
            refused_whole_and_cut(
                &with_private(b"A_VORBIS", &short, id_first),
                "claims header packets of 330 bytes, past its end (329 bytes left)",
            );
            refused_whole_and_cut(
                &with_private(b"A_VORBIS\0", &run, id_first),
                "claims header packets of 255 bytes, past its end (99 bytes left)",
            );
        }
        // The same bytes in another codec's track are its own business (Opus: "OpusHead...").
        for codec_id in [&b"A_OPUS"[..], b"A_VORBISX", b"A_VORBI", b""] {
            for id_first in [true, false] {
                passes_whole_and_cut(&with_private(codec_id, &short, id_first));
            }
        }
        // A bad private in an Opus track, then a sound Vorbis track: each entry on its own.
        let tracks = [
            [el(&[0x86], b"A_OPUS"), el(&[0x63, 0xA2], &short)].concat(),
            [
                el(&[0x63, 0xA2], &vorbis_private(&[3, 4], 9)),
                el(&[0x86], b"A_VORBIS"),
            ]
            .concat(),
        ];
        passes_whole_and_cut(&webm_with_tracks(&tracks, &[]));
    }

    #[test]
    fn vorbis_private_data_is_split_as_symphonia_splits_it() {
        let private = vorbis_private(&[30, 0xFF, 45], 335);
        let packets = tracks::xiph_packets(&private);
        let sizes: Vec<usize> = packets.iter().map(|p| p.len()).collect();
        assert_eq!(sizes, [30, 300, 5]);
        // Larger than is held to check its setup header: refused in a Vorbis track only.
        let big = vec![0u8; (MAX_VORBIS_PRIVATE + 1) as usize];
        let (file, stream) = both(&with_private(b"A_VORBIS", &big, false));
        assert!(file
            .unwrap_err()
            .contains("is 16777217 bytes (at most 16777216"));
        assert!(stream.is_err());
        assert_eq!(both(&with_private(b"A_OPUS", &big, true)).0, Ok(()));
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
