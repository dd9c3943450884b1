//! A structural check of an MP4/M4A/MOV file before symphonia reads it.
//!
//! Symphonia 0.5's MP4 demuxer trusts the counts and sizes in the file: a 3-KB file whose `stts`
//! box claims 3.3 billion entries makes it reserve 26 GB up front, and the process aborts
//! (found by `fuzz/` target `audio_stream`). Memory must stay bounded whatever the input, so
//! before the demuxer sees a file we walk its box tree and refuse one whose
//! - boxes do not fit inside their parents (a box may not claim more bytes than it has),
//! - sample tables (`stts`, `stsc`, `stco`, `co64`, `stsz`, `ctts`, `stss`, `elst`) claim more
//!   entries than their box holds,
//! - packets (`stsz`, `trun` sample sizes) exceed [`MAX_PACKET`]: the demuxer allocates each
//!   packet whole before reading it,
//! - an ALAC configuration (`alac` box) claims frames longer than [`MAX_ALAC_FRAME`]: the
//!   decoder allocates buffers of that many frames when made (an 84-KB M4A with its frame
//!   length set to 4 billion took 16.8 GB and 52 s before this check),
//! - a QuickTime version-2 PCM sample entry claims more than [`MAX_PCM_FRAMES_PER_PACKET`]
//!   frames per packet: the PCM decoder allocates a packet's worth of frames when made (a
//!   3-KB MOV claiming 4 billion frames of 8 channels of f64 aborted the process).
//!
//! Written by hand because no crate does only this check; it reads box headers and tables only
//! (a few KB for a typical file), never the media data.

use std::io::{Read, Seek, SeekFrom};

/// The largest packet we let the demuxer allocate. Real audio packets are at most a few
/// hundred KB (uncompressed PCM in MOV: one chunk of a second or so).
pub(crate) const MAX_PACKET: u64 = 16 << 20;

/// The longest ALAC frame we let the decoder allocate buffers for. Encoders write 4096 frames
/// (Apple's and ffmpeg's default); this is 256 times that, 40 MB of buffers at 8 channels.
pub(crate) const MAX_ALAC_FRAME: u32 = 1 << 20;

/// Check an ALAC magic cookie's frame length (its first field; the same cookie in MP4's `alac`
/// box and CAF's `kuki` chunk). `place` names where it was found, for the error.
pub(crate) fn check_alac_frame_length(frame_length: u32, place: &str) -> Result<(), String> {
    if frame_length > MAX_ALAC_FRAME {
        return Err(format!(
            "malformed {place}: ALAC frames of {frame_length} samples claimed (at most \
             {MAX_ALAC_FRAME} are decoded)"
        ));
    }
    Ok(())
}

/// The most PCM frames per packet a version-2 sample entry may claim (real files say 1).
pub(crate) const MAX_PCM_FRAMES_PER_PACKET: u32 = 1 << 16;

/// Sample entries symphonia reads as PCM (`is_pcm_codec`): version 2 carries their frames per
/// packet.
const PCM_ENTRIES: [&[u8; 4]; 8] = [
    b"lpcm", b"raw ", b"sowt", b"twos", b"in24", b"in32", b"fl32", b"fl64",
];

/// Deeper nesting than any real file has; bounds the recursion.
const MAX_DEPTH: usize = 16;

/// Boxes that hold only other boxes.
const CONTAINERS: [&[u8; 4]; 13] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex", b"moof",
    b"traf", b"ilst", b"mfra",
];

/// Audio sample entries inside `stsd` (their child boxes carry the decoder configuration).
const AUDIO_ENTRIES: [&[u8; 4]; 8] = [
    b"mp4a", b"alac", b"fLaC", b"Opus", b"lpcm", b"sowt", b"twos", b"ac-3",
];

/// Check the box tree of `file` (`len` bytes). Err says what is wrong, for the one-line error.
pub(crate) fn check<R: Read + Seek>(file: &mut R, len: u64) -> Result<(), String> {
    let mut walker = Walker { r: file };
    let result = walker.children(0, len, 0, true);
    walker
        .r
        .seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read: {e}"))?;
    result
}

struct Walker<'a, R> {
    r: &'a mut R,
}

/// One box: its type, where its payload starts and ends.
struct BoxAt {
    kind: [u8; 4],
    body: u64,
    end: u64,
}

impl<R: Read + Seek> Walker<'_, R> {
    fn read_at(&mut self, at: u64, buf: &mut [u8]) -> Result<bool, String> {
        self.r
            .seek(SeekFrom::Start(at))
            .map_err(|e| format!("cannot read: {e}"))?;
        match self.r.read_exact(buf) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(format!("cannot read: {e}")),
        }
    }

    fn u32_at(&mut self, at: u64) -> Result<Option<u32>, String> {
        let mut b = [0u8; 4];
        Ok(self.read_at(at, &mut b)?.then(|| u32::from_be_bytes(b)))
    }

    /// The box starting at `at` inside a parent ending at `end`; None when too few bytes are
    /// left for a header (the demuxer reports a truncated file itself).
    fn header(&mut self, at: u64, end: u64) -> Result<Option<BoxAt>, String> {
        let mut h = [0u8; 8];
        if end - at < 8 || !self.read_at(at, &mut h)? {
            return Ok(None);
        }
        let kind = [h[4], h[5], h[6], h[7]];
        let name = String::from_utf8_lossy(&kind).into_owned();
        let (size, body) = match u32::from_be_bytes([h[0], h[1], h[2], h[3]]) {
            0 => (end - at, at + 8),
            1 => {
                let mut l = [0u8; 8];
                if end - at < 16 || !self.read_at(at + 8, &mut l)? {
                    return Ok(None);
                }
                (u64::from_be_bytes(l), at + 16)
            }
            s => (u64::from(s), at + 8),
        };
        if size < body - at {
            return Err(format!("malformed MP4: box '{name}' has size {size}"));
        }
        let box_end = at.saturating_add(size);
        if box_end > end {
            return Err(format!(
                "malformed MP4: box '{name}' claims {size} bytes where {} are left",
                end - at
            ));
        }
        Ok(Some(BoxAt {
            kind,
            body,
            end: box_end,
        }))
    }

    /// Walk the boxes in `[start, end)`. At the top level a box may run past the end of a
    /// truncated file (the media data usually does); the demuxer never allocates for that.
    fn children(&mut self, start: u64, end: u64, depth: usize, top: bool) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("malformed MP4: boxes nested too deep".into());
        }
        let mut at = start;
        while at < end {
            let b = match self.header(at, end) {
                Ok(Some(b)) => b,
                Ok(None) => return Ok(()),
                Err(_) if top && !self.is_index(at)? => return Ok(()),
                Err(e) => return Err(e),
            };
            self.check_box(&b, depth)?;
            at = b.end;
        }
        Ok(())
    }

    /// Whether the top-level box at `at` is one the demuxer parses (and so must be sound).
    fn is_index(&mut self, at: u64) -> Result<bool, String> {
        let mut kind = [0u8; 4];
        Ok(self.read_at(at + 4, &mut kind)? && (&kind == b"moov" || &kind == b"moof"))
    }

    fn check_box(&mut self, b: &BoxAt, depth: usize) -> Result<(), String> {
        let len = b.end - b.body;
        match &b.kind {
            k if CONTAINERS.contains(&k) => self.children(b.body, b.end, depth + 1, false),
            // A full box (version and flags) holding boxes.
            b"meta" if len >= 4 => self.children(b.body + 4, b.end, depth + 1, false),
            b"stsd" if len >= 8 => self.sample_entries(b, depth),
            b"stts" | b"ctts" | b"co64" => self.table(b, 8),
            b"stsc" => self.table(b, 12),
            b"stco" | b"stss" => self.table(b, 4),
            b"elst" => {
                let version = self.version(b)?;
                self.table(b, if version == 1 { 20 } else { 12 })
            }
            b"stsz" => self.sample_sizes(b),
            b"trun" => self.track_run(b),
            // The ALAC configuration in an `alac` sample entry (which reaches here only as a
            // configuration box): version and flags, then the cookie, frame length first.
            b"alac" if len >= 8 => match self.u32_at(b.body + 4)? {
                Some(frames) => check_alac_frame_length(frames, "MP4 'alac' box"),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn version(&mut self, b: &BoxAt) -> Result<u8, String> {
        let mut v = [0u8; 1];
        Ok(if self.read_at(b.body, &mut v)? {
            v[0]
        } else {
            0
        })
    }

    /// A full box whose entry count (after version and flags) is followed by `entry` bytes
    /// per entry.
    fn table(&mut self, b: &BoxAt, entry: u64) -> Result<(), String> {
        let Some(count) = self.u32_at(b.body + 4)? else {
            return Ok(());
        };
        let room = b.end.saturating_sub(b.body + 8);
        if u64::from(count) * entry > room {
            return Err(format!(
                "malformed MP4: box '{}' claims {count} entries where {room} bytes hold {}",
                String::from_utf8_lossy(&b.kind),
                room / entry
            ));
        }
        Ok(())
    }

    /// `stsz`: one size for every sample, or a table of sizes.
    fn sample_sizes(&mut self, b: &BoxAt) -> Result<(), String> {
        let (Some(fixed), Some(count)) = (self.u32_at(b.body + 4)?, self.u32_at(b.body + 8)?)
        else {
            return Ok(());
        };
        if fixed != 0 {
            return packet_size(u64::from(fixed));
        }
        let room = b.end.saturating_sub(b.body + 12);
        if u64::from(count) * 4 > room {
            return Err(format!(
                "malformed MP4: box 'stsz' claims {count} samples where {room} bytes hold {}",
                room / 4
            ));
        }
        self.sizes(b.body + 12, count, 4)
    }

    /// Check `count` big-endian u32 sample sizes from `at`, `stride` bytes apart.
    fn sizes(&mut self, at: u64, count: u32, stride: u64) -> Result<(), String> {
        let mut buf = vec![0u8; (stride as usize) * 1024];
        let mut left = u64::from(count);
        let mut pos = at;
        while left > 0 {
            let n = left.min(1024);
            let bytes = &mut buf[..(n * stride) as usize];
            if !self.read_at(pos, bytes)? {
                return Ok(());
            }
            for e in bytes.chunks_exact(stride as usize) {
                packet_size(u64::from(u32::from_be_bytes([e[0], e[1], e[2], e[3]])))?;
            }
            left -= n;
            pos += n * stride;
        }
        Ok(())
    }

    /// `trun` of a fragmented file: its sample sizes, when present, are packets too.
    fn track_run(&mut self, b: &BoxAt) -> Result<(), String> {
        let (Some(flags), Some(count)) = (self.u32_at(b.body)?, self.u32_at(b.body + 4)?) else {
            return Ok(());
        };
        let flags = flags & 0x00ff_ffff;
        // Optional fields before the table: data offset, first-sample flags.
        let mut at = b.body + 8;
        at += 4 * u64::from(flags & 0x1 != 0) + 4 * u64::from(flags & 0x4 != 0);
        // Per sample: duration, size, flags, composition offset, each when its flag is set.
        let fields = [0x100u32, 0x200, 0x400, 0x800].map(|f| u64::from(flags & f != 0));
        let stride = 4 * fields.iter().sum::<u64>();
        let room = b.end.saturating_sub(at);
        if stride > 0 && u64::from(count) * stride > room {
            return Err(format!(
                "malformed MP4: box 'trun' claims {count} samples where {room} bytes hold {}",
                room / stride
            ));
        }
        if fields[1] == 1 {
            return self.sizes(at + 4 * fields[0], count, stride);
        }
        Ok(())
    }

    /// `stsd`: a full box with an entry count, then sample entries; an audio entry's fixed
    /// fields are followed by configuration boxes (esds, alac, dfLa, dOps, ...).
    fn sample_entries(&mut self, b: &BoxAt, depth: usize) -> Result<(), String> {
        let mut at = b.body + 8;
        while at < b.end {
            let Some(e) = self.header(at, b.end)? else {
                return Ok(());
            };
            let pcm = PCM_ENTRIES.contains(&&e.kind);
            if AUDIO_ENTRIES.contains(&&e.kind) || pcm {
                // SampleEntry (8) + AudioSampleEntry (20); QuickTime versions 1 and 2 add 16
                // and 36 bytes (the version is the first field after the SampleEntry).
                let mut v = [0u8; 2];
                let version = if self.read_at(e.body + 8, &mut v)? {
                    u16::from_be_bytes(v)
                } else {
                    0
                };
                let fixed = 28
                    + match version {
                        1 => 16,
                        2 => 36,
                        _ => 0,
                    };
                // Version 2: frames per packet at byte 60 of the entry (after the 28 bytes of
                // version 0, 4 reserved, rate f64, channels, a constant, bits, flags, bytes).
                let frames = if pcm && version == 2 && e.body + 64 <= e.end {
                    self.u32_at(e.body + 60)?
                } else {
                    None
                };
                if let Some(frames) = frames.filter(|&f| f > MAX_PCM_FRAMES_PER_PACKET) {
                    return Err(format!(
                        "malformed MP4: a PCM sample entry claims {frames} frames per packet \
                         (at most {MAX_PCM_FRAMES_PER_PACKET} are decoded)"
                    ));
                }
                if e.body + fixed <= e.end {
                    self.children(e.body + fixed, e.end, depth + 2, false)?;
                }
            }
            at = e.end;
        }
        Ok(())
    }
}

fn packet_size(size: u64) -> Result<(), String> {
    if size > MAX_PACKET {
        return Err(format!(
            "malformed MP4: a packet of {size} bytes (at most {MAX_PACKET} are read)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn full(kind: &[u8; 4], rest: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(rest);
        boxed(kind, &body)
    }

    fn run(bytes: &[u8]) -> Result<(), String> {
        check(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    fn file_with(stbl_child: Vec<u8>) -> Vec<u8> {
        let stbl = boxed(b"stbl", &stbl_child);
        let minf = boxed(b"minf", &stbl);
        let mdia = boxed(b"mdia", &minf);
        let trak = boxed(b"trak", &mdia);
        let mut f = boxed(b"ftyp", b"M4A \0\0\0\0");
        f.extend(boxed(b"moov", &trak));
        f.extend(boxed(b"mdat", &[1, 2, 3]));
        f
    }

    #[test]
    fn an_alac_configuration_claiming_huge_frames_is_refused() {
        let entry = |frames: u32| {
            // AudioSampleEntry: reserved (6), data reference (2), version 0 and the rest (20).
            let mut body = vec![0u8; 28];
            let mut cookie = frames.to_be_bytes().to_vec();
            cookie.resize(24, 0);
            body.extend(full(b"alac", &cookie));
            let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
            stsd.extend(boxed(b"alac", &body));
            file_with(boxed(b"stsd", &stsd))
        };
        assert_eq!(run(&entry(4096)), Ok(()));
        assert_eq!(run(&entry(MAX_ALAC_FRAME)), Ok(()));
        let err = run(&entry(MAX_ALAC_FRAME + 1)).unwrap_err();
        assert!(
            err.contains("malformed MP4 'alac' box: ALAC frames of 1048577 samples"),
            "{err}"
        );
    }

    #[test]
    fn a_pcm_entry_claiming_huge_packets_is_refused() {
        let entry = |kind: &[u8; 4], version: u16, frames: u32| {
            let mut body = vec![0u8; 64];
            body[8..10].copy_from_slice(&version.to_be_bytes());
            body[60..64].copy_from_slice(&frames.to_be_bytes());
            let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
            stsd.extend(boxed(kind, &body));
            file_with(boxed(b"stsd", &stsd))
        };
        assert_eq!(run(&entry(b"lpcm", 2, 1)), Ok(()));
        assert_eq!(run(&entry(b"lpcm", 2, MAX_PCM_FRAMES_PER_PACKET)), Ok(()));
        let err = run(&entry(b"sowt", 2, u32::MAX)).unwrap_err();
        assert!(err.contains("claims 4294967295 frames per packet"), "{err}");
        // Only version 2 has the field; other entries are not PCM.
        assert_eq!(run(&entry(b"lpcm", 1, u32::MAX)), Ok(()));
        assert_eq!(run(&entry(b"mp4a", 2, u32::MAX)), Ok(()));
    }

    #[test]
    fn sound_tables_pass() {
        let mut stts = 2u32.to_be_bytes().to_vec();
        stts.extend([0u8; 16]);
        assert_eq!(run(&file_with(full(b"stts", &stts))), Ok(()));
        let mut stsz = vec![0, 0, 0, 0]; // sizes in a table
        stsz.extend(2u32.to_be_bytes());
        stsz.extend(400u32.to_be_bytes());
        stsz.extend(500u32.to_be_bytes());
        assert_eq!(run(&file_with(full(b"stsz", &stsz))), Ok(()));
    }

    #[test]
    fn a_table_claiming_more_entries_than_it_holds_is_refused() {
        // The fuzzer's find: 3.3 billion stts entries in a few bytes.
        let mut stts = 0xC700_0000u32.to_be_bytes().to_vec();
        stts.extend([0u8; 16]);
        let err = run(&file_with(full(b"stts", &stts))).unwrap_err();
        assert!(err.contains("'stts' claims 3338665984 entries"), "{err}");
        for (kind, entry) in [(b"stsc", 12), (b"stco", 4), (b"co64", 8), (b"ctts", 8)] {
            let mut t = 3u32.to_be_bytes().to_vec();
            t.extend(vec![0u8; 2 * entry]);
            assert!(run(&file_with(full(kind, &t))).is_err(), "{kind:?}");
        }
    }

    #[test]
    fn huge_packets_and_boxes_are_refused() {
        let mut stsz = 0x4000_0000u32.to_be_bytes().to_vec(); // every sample 1 GiB
        stsz.extend(10u32.to_be_bytes());
        let err = run(&file_with(full(b"stsz", &stsz))).unwrap_err();
        assert!(err.contains("packet of 1073741824 bytes"), "{err}");
        // A box inside moov claiming more bytes than moov has.
        let mut bad = boxed(b"hdlr", &[0u8; 24]);
        bad[0..4].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        let err = run(&file_with(bad)).unwrap_err();
        assert!(err.contains("box 'hdlr' claims 4294967280 bytes"), "{err}");
    }

    #[test]
    fn a_truncated_media_box_at_the_top_is_fine() {
        let mut f = file_with(full(b"stss", &0u32.to_be_bytes()));
        let mut mdat = boxed(b"mdat", &[0u8; 8]);
        mdat[0..4].copy_from_slice(&1_000_000u32.to_be_bytes());
        f.extend(mdat);
        assert_eq!(run(&f), Ok(()));
    }
}
