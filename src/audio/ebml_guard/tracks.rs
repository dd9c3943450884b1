//! What the Matroska/WebM check reads of a TrackEntry: whether its CodecID says Vorbis, and
//! whether its CodecPrivate would split and decode as a Vorbis track's.

use super::lacing::LaceCheck;
use super::{unseen, VORBIS};
use crate::audio::vorbis_setup_guard::check_vorbis_setup;

/// What the walk knows of the TrackEntry it is in.
#[derive(Debug)]
pub(super) struct TrackEntry {
    pub(super) end: u64,
    pub(super) vorbis: bool,
    /// Why a CodecPrivate of this entry would not split as Vorbis's does, if it would not.
    pub(super) bad_private: Option<String>,
}

/// A CodecPrivate read as a Vorbis track's: its Xiph sizes checked as they come, its bytes
/// kept to check the setup header once the element is whole.
#[derive(Debug)]
pub(super) struct PrivateRead {
    lacing: LaceCheck,
    pub(super) next: u64,
    pub(super) end: u64,
    kept: Vec<u8>,
}

impl PrivateRead {
    pub(super) fn new(at: u64, data: u64, end: u64) -> Self {
        PrivateRead {
            lacing: LaceCheck::vorbis_private(at, data, end),
            next: data,
            end,
            kept: Vec::new(),
        }
    }

    /// Take in data bytes from stream position `from`; Err: why it would not do as Vorbis's.
    pub(super) fn feed(&mut self, from: u64, bytes: &[u8]) -> Result<(), String> {
        self.lacing.feed(from, bytes)?;
        let new = unseen(bytes, from, self.next, self.end);
        self.next += new.len() as u64;
        self.kept.extend_from_slice(new);
        if self.next < self.end {
            return Ok(());
        }
        // Whole, and its sizes within it: the packets as symphonia splits them.
        for packet in xiph_packets(&self.kept) {
            check_vorbis_setup(packet, "Matroska/WebM Vorbis setup header")?;
        }
        Ok(())
    }

    pub(super) fn done(&self) -> bool {
        self.next >= self.end || self.lacing.refused.is_some()
    }
}

/// The packets of a Vorbis CodecPrivate whose sizes passed [`LaceCheck`]: a count, that many
/// Xiph sizes, the packets, the last one the rest.
pub(super) fn xiph_packets(private: &[u8]) -> Vec<&[u8]> {
    let Some((&count, mut rest)) = private.split_first() else {
        return Vec::new();
    };
    let mut sizes = Vec::with_capacity(usize::from(count));
    let mut size = 0usize;
    while sizes.len() < usize::from(count) {
        let Some((&b, tail)) = rest.split_first() else {
            return Vec::new();
        };
        rest = tail;
        size += usize::from(b);
        if b < 255 {
            sizes.push(size);
            size = 0;
        }
    }
    let mut packets = Vec::with_capacity(sizes.len() + 1);
    for size in sizes {
        let (packet, tail) = rest.split_at(size.min(rest.len()));
        packets.push(packet);
        rest = tail;
    }
    packets.push(rest);
    packets
}

/// The first bytes of a CodecID: as symphonia reads a string, up to the first NUL byte.
#[derive(Debug)]
pub(super) struct CodecIdRead {
    pub(super) next: u64,
    /// Where reading stops: the element's end, or one byte past "A_VORBIS" (enough to tell).
    pub(super) stop: u64,
    bytes: Vec<u8>,
}

impl CodecIdRead {
    pub(super) fn new(data: u64, end: u64) -> Self {
        CodecIdRead {
            next: data,
            stop: end.min(data + VORBIS.len() as u64 + 1),
            bytes: Vec::with_capacity(VORBIS.len() + 1),
        }
    }

    pub(super) fn feed(&mut self, from: u64, bytes: &[u8]) {
        let new = unseen(bytes, from, self.next, self.stop);
        self.next += new.len() as u64;
        self.bytes.extend_from_slice(new);
    }

    /// Whether the ID says Vorbis, once every byte that tells has been read.
    pub(super) fn vorbis(&self) -> Option<bool> {
        (self.next >= self.stop).then(|| self.bytes.split(|&b| b == 0).next() == Some(VORBIS))
    }
}
