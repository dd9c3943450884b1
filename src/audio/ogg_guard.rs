//! A check of Ogg comment headers (and Vorbis setup headers) before symphonia reads them.
//!
//! symphonia's Ogg demuxer hands a Vorbis comment header, an OpusTags packet and an Ogg FLAC
//! VORBIS_COMMENT or PICTURE packet to symphonia-metadata, which allocates every claimed
//! comment and picture length before reading it (see `comment_guard`): a few bytes claiming
//! 4 GiB reserve 4 GiB. Here the pages are read as the demuxer reads them (capture pattern,
//! version, flags, CRC; a bad page is skipped and the stream resynchronised), packets are
//! reassembled per logical stream as it does (a continuation page without a partial packet
//! drops its first packet; packets over its 16-MiB limit are not assembled), and every packet
//! its mapper would read as a comment or picture is checked against the packet's own length,
//! and a Vorbis setup header's codebooks against their limits (`vorbis_setup_guard`).
//! Only such packets are held, the others are counted; memory stays within one page plus the
//! comment packets symphonia itself holds.
//!
//! A file is read through once before the demuxer opens it ([`check_file`]: comment headers
//! may come anywhere in a chained stream); a stream (stdin, a pipe) goes through [`OggGate`],
//! which hands a page on only once it has passed. Written by hand: no crate does only this.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use super::comment_guard::{check_picture, check_vorbis_comment};
use super::header_gate::file_error;
use super::vorbis_setup_guard::check_vorbis_setup;

const CAPTURE: &[u8; 4] = b"OggS";
const PAGE_HEADER: usize = 27;
/// symphonia-format-ogg 0.5's limit on an assembled packet (`LogicalStream::MAX_PACKET_LEN`).
const MAX_PACKET: usize = 16 << 20;

/// The mappers symphonia-format-ogg 0.5 has (`mappings::detect`), from a stream's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    Vorbis,
    Opus,
    Flac,
}

impl Mapping {
    fn detect(first: &[u8]) -> Option<Self> {
        if first.starts_with(b"\x7FFLAC") {
            Some(Mapping::Flac)
        } else if first.starts_with(b"\x01vorbis") {
            Some(Mapping::Vorbis)
        } else if first.starts_with(b"OpusHead") {
            Some(Mapping::Opus)
        } else {
            None
        }
    }

    /// Whether a packet starting with `head` is one the mapper reads comments or a picture from
    /// (`head` holds its first 8 bytes, or all of a shorter packet).
    fn reads_metadata(self, head: &[u8]) -> bool {
        match self {
            // Odd packet types are headers; 3 is the comment header, 5 the setup header
            // (whose codebooks the decoder builds at their claimed sizes).
            Mapping::Vorbis => head.starts_with(b"\x03vorbis") || head.starts_with(b"\x05vorbis"),
            // Read as comments until the first OpusTags (checked whenever, to be safe).
            Mapping::Opus => head.starts_with(b"OpusTags"),
            // A metadata block per packet; 0xFF is audio.
            Mapping::Flac => head
                .first()
                .is_some_and(|&b| b != 0xFF && matches!(b & 0x7F, 4 | 6)),
        }
    }

    /// Check a whole packet the mapper reads metadata from.
    fn check(self, packet: &[u8]) -> Result<(), String> {
        match self {
            Mapping::Vorbis if packet[0] == 5 => {
                check_vorbis_setup(packet, "Ogg Vorbis setup header")
            }
            Mapping::Vorbis => check_vorbis_comment(&packet[7..], "Ogg Vorbis comment header"),
            Mapping::Opus => check_vorbis_comment(&packet[8..], "Ogg Opus comment header"),
            Mapping::Flac if packet.len() < 4 => Ok(()),
            Mapping::Flac if packet[0] & 0x7F == 4 => {
                check_vorbis_comment(&packet[4..], "Ogg FLAC VORBIS_COMMENT packet")
            }
            Mapping::Flac => check_picture(&packet[4..], "Ogg FLAC PICTURE packet"),
        }
    }
}

/// A packet continued on a later page: its length, and its bytes if the mapper will read
/// metadata from it.
struct Partial {
    len: usize,
    kept: Option<Vec<u8>>,
}

struct Logical {
    mapping: Mapping,
    partial: Option<Partial>,
}

/// The logical streams of the current group, as the demuxer tracks them.
#[derive(Default)]
struct Walker {
    streams: HashMap<u32, Logical>,
    /// The last page was a first page (consecutive first pages form one group).
    after_first_page: bool,
}

impl Walker {
    /// Take in one whole page that passed its CRC.
    fn page(&mut self, page: &[u8]) -> Result<(), String> {
        let flags = page[5];
        let serial = u32::from_le_bytes([page[14], page[15], page[16], page[17]]);
        let lacing = &page[PAGE_HEADER..PAGE_HEADER + usize::from(page[26])];
        let body = &page[PAGE_HEADER + lacing.len()..];
        let mut packets = Vec::new();
        let (mut start, mut len) = (0, 0);
        for &segment in lacing {
            len += usize::from(segment);
            if segment < 255 {
                packets.push(&body[start..start + len]);
                start += len;
                len = 0;
            }
        }
        let unfinished = &body[start..start + len];

        if flags & 0x02 != 0 {
            // A first page starts a new group of streams; its packets are only detected.
            if !self.after_first_page {
                self.streams.clear();
            }
            self.after_first_page = true;
            if let Some(mapping) = packets.first().and_then(|p| Mapping::detect(p)) {
                let partial = None;
                self.streams.insert(serial, Logical { mapping, partial });
            }
            return Ok(());
        }
        self.after_first_page = false;
        let Some(stream) = self.streams.get_mut(&serial) else {
            return Ok(());
        };
        let mut packets = packets.into_iter();
        if flags & 0x01 != 0 && stream.partial.is_none() {
            // A continuation with nothing to continue: its first packet is dropped, or the
            // whole page if it has none.
            if packets.next().is_none() {
                return Ok(());
            }
        }
        for packet in packets {
            match stream.partial.take() {
                None if stream.mapping.reads_metadata(head(packet)) => {
                    stream.mapping.check(packet)?
                }
                None | Some(Partial { kept: None, .. }) => {}
                Some(Partial {
                    kept: Some(mut whole),
                    ..
                }) => {
                    whole.extend_from_slice(packet);
                    stream.mapping.check(&whole)?;
                }
            }
        }
        if !unfinished.is_empty() {
            let mut partial = stream.partial.take().unwrap_or_else(|| Partial {
                len: 0,
                kept: stream
                    .mapping
                    .reads_metadata(head(unfinished))
                    .then(Vec::new),
            });
            // Past the limit the demuxer refuses the page and keeps what it had.
            if partial.len + unfinished.len() <= MAX_PACKET {
                partial.len += unfinished.len();
                if let Some(kept) = &mut partial.kept {
                    kept.extend_from_slice(unfinished);
                }
            }
            stream.partial = Some(partial);
        }
        Ok(())
    }
}

fn head(packet: &[u8]) -> &[u8] {
    &packet[..packet.len().min(8)]
}

/// Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value and final XOR 0.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04C1_1DB7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
};

fn page_crc(page: &[u8]) -> u32 {
    page.iter().enumerate().fold(0u32, |crc, (i, &b)| {
        // The CRC field itself counts as zeros.
        let b = if (22..26).contains(&i) { 0 } else { b };
        (crc << 8) ^ CRC_TABLE[((crc >> 24) as u8 ^ b) as usize]
    })
}

/// What to do with the bytes at the front of the buffer.
enum Scan {
    /// The first n bytes are checked (a whole page, or bytes that are not a page).
    Pass(usize),
    /// A page may start here: more bytes are needed to tell.
    More,
}

impl Walker {
    /// Look at `buf`, which starts where the demuxer's next read of a page would.
    fn scan(&mut self, buf: &[u8]) -> Result<Scan, String> {
        let Some(at) = buf.windows(4).position(|w| w == CAPTURE) else {
            // Keep a possible start of the capture pattern.
            let keep = (1..=3.min(buf.len()))
                .rev()
                .find(|&k| CAPTURE.starts_with(&buf[buf.len() - k..]))
                .unwrap_or(0);
            return Ok(if buf.len() > keep {
                Scan::Pass(buf.len() - keep)
            } else {
                Scan::More
            });
        };
        if at > 0 {
            return Ok(Scan::Pass(at));
        }
        if buf.len() < PAGE_HEADER {
            return Ok(Scan::More);
        }
        if buf[4] != 0 || buf[5] & 0xF8 != 0 {
            // The demuxer refuses the header having read it, and looks for the next capture
            // pattern after it.
            return Ok(Scan::Pass(PAGE_HEADER));
        }
        let lacing_end = PAGE_HEADER + usize::from(buf[26]);
        let Some(lacing) = buf.get(PAGE_HEADER..lacing_end) else {
            return Ok(Scan::More);
        };
        let len = lacing_end + lacing.iter().map(|&s| usize::from(s)).sum::<usize>();
        let Some(page) = buf.get(..len) else {
            return Ok(Scan::More);
        };
        let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
        if page_crc(page) != stored {
            // The demuxer goes back to just after this capture pattern and looks for the next.
            return Ok(Scan::Pass(CAPTURE.len()));
        }
        self.page(page)?;
        Ok(Scan::Pass(len))
    }
}

/// An Ogg stream whose pages are handed on only once checked; a failed check is a read error
/// (InvalidData), so the demuxer never assembles a packet whose lengths it would trust.
pub(crate) struct OggGate<R> {
    inner: R,
    walker: Walker,
    /// Bytes read from `inner`: `buf[head..passed]` are checked and not handed on yet.
    buf: Vec<u8>,
    head: usize,
    passed: usize,
    eof: bool,
}

impl<R: Read> OggGate<R> {
    pub(crate) fn new(inner: R) -> Self {
        OggGate {
            inner,
            walker: Walker::default(),
            buf: Vec::new(),
            head: 0,
            passed: 0,
            eof: false,
        }
    }
}

impl<R: Read> Read for OggGate<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.head < self.passed {
                let n = out.len().min(self.passed - self.head);
                out[..n].copy_from_slice(&self.buf[self.head..self.head + n]);
                self.head += n;
                return Ok(n);
            }
            self.buf.drain(..self.head);
            (self.head, self.passed) = (0, 0);
            let scan = self
                .walker
                .scan(&self.buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            match scan {
                Scan::Pass(n) => self.passed = n,
                // The stream ends inside a page: hand on what there is (the demuxer stops there).
                Scan::More if self.eof => {
                    if self.buf.is_empty() {
                        return Ok(0);
                    }
                    self.passed = self.buf.len();
                }
                Scan::More => {
                    let mut chunk = [0u8; 1 << 13];
                    let n = self.inner.read(&mut chunk)?;
                    self.eof = n == 0;
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

/// Read the Ogg file `r` through [`OggGate`], then rewind it.
pub(crate) fn check_file<R: Read + Seek>(r: &mut R) -> Result<(), String> {
    std::io::copy(&mut OggGate::new(&mut *r), &mut std::io::sink()).map_err(file_error)?;
    r.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::comment_guard::tests::{comment_body, comment_claiming_4_gib};
    use crate::audio::header_gate::read_in_pieces;
    use std::io::Cursor;

    /// One page of `serial` holding `packets` (the last one unfinished if `open_end`).
    fn page(serial: u32, flags: u8, packets: &[&[u8]], open_end: bool) -> Vec<u8> {
        let mut lacing = Vec::new();
        let mut body = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            lacing.extend(std::iter::repeat_n(255u8, p.len() / 255));
            if !(open_end && i + 1 == packets.len()) {
                lacing.push((p.len() % 255) as u8);
            }
            body.extend_from_slice(p);
        }
        let mut page = CAPTURE.to_vec();
        page.extend([0, flags]);
        page.extend([0u8; 8]);
        page.extend(serial.to_le_bytes());
        page.extend([0u8; 8]);
        page.push(lacing.len() as u8);
        page.extend(lacing);
        page.extend(body);
        let crc = page_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        page
    }

    fn opus(tags: &[u8]) -> Vec<u8> {
        let mut f = page(
            7,
            0x02,
            &[b"OpusHead\x01\x01\x38\x01\x80\x3e\0\0\0\0\0"],
            false,
        );
        // OpusTags split over two pages (a 600-byte packet: 510 on the first).
        let mut packet = b"OpusTags".to_vec();
        packet.extend_from_slice(tags);
        packet.resize(packet.len().max(600), 0);
        f.extend(page(7, 0, &[&packet[..510]], true));
        f.extend(page(7, 0x01, &[&packet[510..], b"\xF8\xFF\xFE"], false));
        f
    }

    fn both(bytes: &[u8]) -> (Result<(), String>, Result<Vec<u8>, String>) {
        let file = check_file(&mut Cursor::new(bytes));
        let stream = read_in_pieces(OggGate::new(Cursor::new(bytes)), 100);
        (file, stream)
    }

    #[test]
    fn sound_streams_pass_unchanged_even_cut_or_with_junk() {
        let f = opus(&comment_body(&[b"TITLE=a", &[b'x'; 300]]));
        for cut in 0..=f.len() {
            let (file, stream) = both(&f[..cut]);
            assert_eq!(file, Ok(()), "cut {cut}");
            assert_eq!(stream.as_deref(), Ok(&f[..cut]), "cut {cut}");
        }
        let junk = [b"Og".as_slice(), &f, b"OggSjunk", &f[..40]].concat();
        assert_eq!(both(&junk).1.as_deref(), Ok(&junk[..]));
    }

    #[test]
    fn a_comment_claiming_4_gib_is_refused_before_its_last_page_is_handed_on() {
        let tags = comment_claiming_4_gib();
        let f = opus(&tags);
        let (file, stream) = both(&f);
        let want = "malformed Ogg Opus comment header: comment 0 claims 4294967295 bytes, only \
                    577 left in it";
        assert_eq!(file.unwrap_err(), want);
        assert_eq!(stream.unwrap_err(), want);
        // Behind a header of a bad version, which the demuxer skips whole (27 bytes) however
        // many segments it claims: still found.
        let mut bogus = CAPTURE.to_vec();
        bogus.push(1);
        bogus.resize(PAGE_HEADER, 0xFF);
        assert_eq!(both(&[bogus, f.clone()].concat()).1.unwrap_err(), want);
        // The same page with a bad CRC is skipped by the demuxer, and so here.
        let mut bad = f.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(both(&bad).0, Ok(()));
        // Vorbis: a comment header packet claiming too much, in one page.
        let mut f = page(1, 0x02, &[b"\x01vorbis\0\0\0\0\x01\x44\xAC\0\0"], false);
        let mut header = b"\x03vorbis".to_vec();
        header.extend(&tags);
        f.extend(page(1, 0, &[&header], false));
        assert!(both(&f)
            .1
            .unwrap_err()
            .starts_with("malformed Ogg Vorbis comment header: comment 0 claims"));
        // A stream nobody maps is not looked into.
        let mut f = page(2, 0x02, &[b"Speex   "], false);
        f.extend(page(2, 0, &[&header], false));
        assert_eq!(both(&f).0, Ok(()));
    }
}
