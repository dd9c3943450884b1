//! A structural check of CAF files before symphonia reads them.
//!
//! symphonia-format-caf 0.5 trusts three claims: a magic cookie (`kuki`) chunk is read into a
//! zeroed buffer of its 64-bit size; the packet table (`pakt`) reserves room for its claimed
//! packet count before reading an entry; each packet is read into a buffer of the size its
//! table entry claims. A few bytes could reserve terabytes, which aborts the process. Here the
//! chunks are walked as the demuxer walks them (including its reading of the bytes after an
//! audio chunk of unknown size as more chunks), and every such claim must fit in the file:
//! the cookie in the bytes left, the packet count in the table's bytes left (an entry takes at
//! least one byte), each packet size in the file. An ALAC cookie's frame length is checked as
//! in MP4 (`mp4_guard::check_alac_frame_length`: the decoder allocates that many frames).
//!
//! CAF is read from files only (a stream is spooled to a temporary file first, as MP4 is).
//! Written by hand: no crate does only this check.

use std::io::{BufReader, Read, Seek, SeekFrom};

use super::mp4_guard::check_alac_frame_length;

/// The CAF file header: "caff", version, flags.
const FILE_HEADER: u64 = 8;
const CHUNK_HEADER: u64 = 12;

/// Walk the chunks of the CAF file `r` (`len` bytes), then rewind it.
pub(crate) fn check_file<R: Read + Seek>(r: &mut R, len: u64) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot read: {e}");
    let mut at = FILE_HEADER;
    // bytes and frames per packet, from the description chunk.
    let mut packet_shape = None;
    let mut alac = false;
    while at + CHUNK_HEADER <= len {
        r.seek(SeekFrom::Start(at)).map_err(io)?;
        let mut header = [0u8; CHUNK_HEADER as usize];
        r.read_exact(&mut header).map_err(io)?;
        let kind = &header[..4];
        let size = i64::from_be_bytes(header[4..].try_into().expect("8 bytes"));
        let body = at + CHUNK_HEADER;
        let left = len - body;
        let name = String::from_utf8_lossy(kind);
        match (kind, u64::try_from(size)) {
            // Unknown size: the demuxer reads the edit count, then goes on reading chunks.
            (b"data", Err(_)) if size == -1 => {
                at = body + 4;
                continue;
            }
            (b"kuki", Ok(size)) if size > left => {
                return Err(format!(
                    "malformed CAF: '{name}' chunk at byte {at} claims {size} bytes, only {left} \
                     left in the file"
                ));
            }
            // symphonia reads a 24- or 48-byte cookie of an ALAC track as ALAC's configuration.
            (b"kuki", Ok(24 | 48)) if alac => {
                r.seek(SeekFrom::Start(body)).map_err(io)?;
                let mut frames = [0u8; 4];
                r.read_exact(&mut frames).map_err(io)?;
                check_alac_frame_length(u32::from_be_bytes(frames), "CAF 'kuki' chunk")?;
            }
            (b"desc", _) if packet_shape.is_none() && left >= 24 => {
                // Sample rate (8), format ID, format flags, bytes and frames per packet.
                r.seek(SeekFrom::Start(body + 8)).map_err(io)?;
                let mut desc = [0u8; 16];
                r.read_exact(&mut desc).map_err(io)?;
                let word = |i: usize| u32::from_be_bytes(desc[i..i + 4].try_into().expect("4"));
                alac = &desc[..4] == b"alac";
                packet_shape = Some((word(8), word(12)));
            }
            (b"pakt", _) => {
                // Without a description first, the demuxer stops before any table.
                let Some(shape) = packet_shape else { break };
                r.seek(SeekFrom::Start(body)).map_err(io)?;
                check_packet_table(&mut *r, shape, left, len, at)?;
            }
            // Any other negative size is the demuxer's error: it reads no further.
            (_, Err(_)) => break,
            _ => {}
        }
        match u64::try_from(size) {
            Ok(size) => at = body.saturating_add(size),
            Err(_) => break,
        }
    }
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(())
}

/// Check the packet table whose body starts where `r` is, `left` bytes before the file's end:
/// the packet count fits in those bytes, and every packet size in the file (`len` bytes).
/// `shape` (bytes, frames per packet; 0 = variable) says which fields each entry has.
fn check_packet_table<R: Read>(
    r: R,
    shape: (u32, u32),
    left: u64,
    len: u64,
    at: u64,
) -> Result<(), String> {
    let mut r = BufReader::new(r.take(left));
    let mut fields = [0u8; 24];
    if r.read_exact(&mut fields).is_err() {
        return Ok(());
    }
    // Negative: the demuxer's error, before it reserves anything.
    let Ok(packets) = u64::try_from(i64::from_be_bytes(fields[..8].try_into().expect("8 bytes")))
    else {
        return Ok(());
    };
    let table_left = left - 24;
    if packets > table_left {
        return Err(format!(
            "malformed CAF: packet table at byte {at} claims {packets} packets, only \
             {table_left} bytes left for them"
        ));
    }
    let (with_size, with_frames) = match shape {
        (0, 0) => (true, true),
        (0, _) => (true, false),
        (_, 0) => (false, true),
        _ => return Ok(()),
    };
    for packet in 0..packets {
        if with_size {
            let Some(size) = read_varint(&mut r) else {
                return Ok(());
            };
            if size > len {
                return Err(format!(
                    "malformed CAF: packet table at byte {at}: packet {packet} claims {size} \
                     bytes, more than the file's {len}"
                ));
            }
        }
        if with_frames && read_varint(&mut r).is_none() {
            return Ok(());
        }
    }
    Ok(())
}

/// A CAF variable-length integer (7 bits a byte, high bit set on all but the last; at most 9
/// bytes, as symphonia reads it). None at the end of the bytes or on a longer one.
fn read_varint<R: Read>(r: &mut R) -> Option<u64> {
    let mut value = 0u64;
    for _ in 0..9 {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte).ok()?;
        value |= u64::from(byte[0] & 0x7F);
        if byte[0] & 0x80 == 0 {
            return Some(value);
        }
        value <<= 7;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn chunk(kind: &[u8; 4], size: i64, body: &[u8]) -> Vec<u8> {
        let mut c = kind.to_vec();
        c.extend(size.to_be_bytes());
        c.extend_from_slice(body);
        c
    }

    fn caf(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut f = b"caff\0\x01\0\0".to_vec();
        f.extend(chunk(b"desc", 32, &[0u8; 32]));
        for c in chunks {
            f.extend(c);
        }
        f
    }

    fn check(f: &[u8]) -> Result<(), String> {
        check_file(&mut Cursor::new(f), f.len() as u64)
    }

    fn table(packets: i64, entries: &[u8]) -> Vec<u8> {
        let mut t = packets.to_be_bytes().to_vec();
        t.extend([0u8; 16]);
        t.extend_from_slice(entries);
        t
    }

    #[test]
    fn sound_files_pass() {
        let t = table(2, &[0x40, 0x10, 0x20, 0x10]);
        let f = caf(&[
            chunk(b"kuki", 3, b"abc"),
            chunk(b"pakt", t.len() as i64, &t),
            chunk(b"data", 4 + 200, &[0u8; 204]),
        ]);
        assert_eq!(check(&f), Ok(()));
        // Cut anywhere but in the cookie (bytes 64..67) or the packet table (79..107), where
        // what is left is less than they claim: fine (the demuxer reports the truncation).
        let claims_more = |c: &usize| (64..67).contains(c) || (79..107).contains(c);
        for cut in (0..f.len()).filter(|c| !claims_more(c)) {
            assert_eq!(check(&f[..cut]), Ok(()), "cut {cut}");
        }
        let f = caf(&[chunk(b"data", -1, &[0u8; 100])]);
        assert_eq!(check(&f), Ok(()));
    }

    #[test]
    fn an_alac_cookie_claiming_huge_frames_is_refused() {
        // desc: sample rate, format "alac", flags, bytes/frames per packet, channels, bits.
        let mut desc = 16_000f64.to_be_bytes().to_vec();
        desc.extend(b"alac\0\0\0\0\0\0\0\0\0\0\x10\0\0\0\0\x01\0\0\0\x10");
        let cookie = |frames: u32| {
            let mut c = frames.to_be_bytes().to_vec();
            c.resize(24, 0);
            c
        };
        let with = |frames: u32| {
            let mut f = b"caff\0\x01\0\0".to_vec();
            f.extend(chunk(b"desc", 32, &desc));
            f.extend(chunk(b"kuki", 24, &cookie(frames)));
            f
        };
        assert_eq!(check(&with(4096)), Ok(()));
        assert!(check(&with(u32::MAX))
            .unwrap_err()
            .contains("malformed CAF 'kuki' chunk: ALAC frames of 4294967295 samples"));
        // The same cookie bytes in a track of another codec are not ALAC's configuration.
        let other = [&caf(&[])[..], &chunk(b"kuki", 24, &cookie(u32::MAX))].concat();
        assert_eq!(check(&other), Ok(()));
    }

    #[test]
    fn claims_past_the_file_are_refused() {
        let f = caf(&[chunk(b"kuki", 1 << 40, b"abc")]);
        assert!(check(&f)
            .unwrap_err()
            .contains("'kuki' chunk at byte 52 claims 1099511627776"));
        let t = table(1 << 50, &[1, 2]);
        let f = caf(&[chunk(b"pakt", t.len() as i64, &t)]);
        assert!(check(&f)
            .unwrap_err()
            .contains("claims 1125899906842624 packets"));
        let t = table(2, &[0x10, 1, 0xFF, 0xFF, 0xFF, 0x7F, 1]);
        let f = caf(&[chunk(b"pakt", t.len() as i64, &t)]);
        assert!(check(&f)
            .unwrap_err()
            .contains("packet 1 claims 268435455 bytes"));
        // Audio of unknown size is read as more chunks by the demuxer: checked as such.
        let mut audio = vec![0u8; 4];
        audio.extend(chunk(b"kuki", i64::MAX, b""));
        let f = caf(&[chunk(b"data", -1, &audio)]);
        assert!(check(&f).unwrap_err().contains("'kuki' chunk at byte 68"));
    }
}
