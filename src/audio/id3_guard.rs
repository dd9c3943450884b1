//! Skipping the ID3v2 tags at the start of an input, unread.
//!
//! symphonia-metadata 0.5 reads an ID3v2 frame (a cover picture, a comment) into a zeroed
//! buffer of its claimed size before reading it: up to 4 GiB from an ID3v2.3 frame header, for
//! a tag of a few bytes. Nothing here uses tags, so they are not read at all: symphonia's probe
//! is given no ID3v2 reader (`codec::probe_for`), and the tags at the start are skipped as
//! symphonia skips the rest of a tag it has read (10-byte header plus the size it states; the
//! footer too, where the flags say there is one). What follows is sniffed again, as the input.

use std::io::Read;

const HEADER: usize = 10;

/// The bytes the ID3v2 tag whose header starts `head` takes, header and footer included; None
/// when `head` does not start with an ID3v2 header (as symphonia reads one: "ID3", major
/// version 2 to 4, no version byte 0xFF, a 28-bit syncsafe size).
pub(crate) fn tag_len(head: &[u8]) -> Option<u64> {
    let h = head.get(..HEADER)?;
    let syncsafe = h[6..10].iter().all(|&b| b < 0x80);
    if &h[..3] != b"ID3" || !(2..=4).contains(&h[3]) || h[4] == 0xFF || !syncsafe {
        return None;
    }
    let size = h[6..10].iter().fold(0u64, |v, &b| (v << 7) | u64::from(b));
    let footer = if h[3] == 4 && h[5] & 0x10 != 0 { 10 } else { 0 };
    Some(HEADER as u64 + size + footer)
}

/// Read past the ID3v2 tags at the start of `reader`, discarding them; Ok(None) when it does
/// not start with one, Ok(Some(rest)) with the bytes after them otherwise.
pub(crate) fn skip_tags(
    mut reader: Box<dyn Read + Send>,
) -> std::io::Result<Result<Box<dyn Read + Send>, Box<dyn Read + Send>>> {
    let mut skipped = false;
    loop {
        let mut head = Vec::with_capacity(HEADER);
        reader.by_ref().take(HEADER as u64).read_to_end(&mut head)?;
        let rest: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(head.clone()).chain(reader));
        let Some(len) = tag_len(&head) else {
            return Ok(if skipped { Ok(rest) } else { Err(rest) });
        };
        reader = rest;
        // The header is re-read with the rest of the tag, and dropped with it.
        std::io::copy(&mut reader.by_ref().take(len), &mut std::io::sink())?;
        skipped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn tag(major: u8, flags: u8, body_len: usize) -> Vec<u8> {
        let mut t = b"ID3".to_vec();
        t.extend([major, 0, flags]);
        t.extend((0..4).rev().map(|i| ((body_len >> (7 * i)) & 0x7F) as u8));
        // An APIC frame claiming 4 GiB: never read.
        t.extend(b"APIC\xFF\xFF\xFF\xFF\0\0");
        t.resize(HEADER + body_len, 0);
        t
    }

    fn rest(bytes: Vec<u8>) -> (bool, Vec<u8>) {
        let (skipped, mut r) = match skip_tags(Box::new(Cursor::new(bytes))).unwrap() {
            Ok(r) => (true, r),
            Err(r) => (false, r),
        };
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        (skipped, out)
    }

    #[test]
    fn leading_tags_are_skipped_unread_and_the_rest_kept() {
        let mut f = tag(3, 0, 300);
        f.extend(tag(4, 0x10, 200));
        f.extend([0u8; 10]); // the v2.4 footer
        f.extend(b"fLaC and more");
        assert_eq!(rest(f), (true, b"fLaC and more".to_vec()));
        // No tag, or not one symphonia would read: handed back whole.
        for f in [
            b"\xFF\xFBaudio".to_vec(),
            b"ID3\x05\0\0\0\0\0\x10xx".to_vec(),
        ] {
            assert_eq!(rest(f.clone()), (false, f));
        }
        // A tag claiming more than the stream holds: nothing after it.
        assert_eq!(rest(tag(3, 0, 20)[..15].to_vec()), (true, vec![]));
    }
}
