//! A check of the RIFF chunks a WAV hands to symphonia (encodings our reader leaves to it:
//! ADPCM, A-law, mu-law, ...).
//!
//! symphonia-format-riff 0.5 reads each entry of a `LIST`/`INFO` chunk into a zeroed buffer of
//! its claimed size; the claim is bounded only by the claimed sizes of the enclosing chunks
//! (up to 4 GiB, and a RIFF size of 0xFFFFFFFF is accepted as "unknown"). Here the top-level
//! chunks before `data` are walked as its demuxer walks them (word-aligned), and a `LIST`
//! chunk may claim at most [`MAX_LIST`] bytes, which bounds every entry in it.

use std::io::{Read, Seek};

use super::header_gate::{self, refused, take_into, HeaderGate, HeaderWalk};

/// The largest `LIST` chunk before the audio: tags and labels take a few KB.
pub(crate) const MAX_LIST: u32 = 16 << 20;

#[derive(Default)]
pub(crate) struct RiffWalk {
    /// Past the 12-byte RIFF header.
    in_chunks: bool,
    /// The size of the last chunk was odd: a pad byte precedes the next header.
    pad: bool,
}

/// `inner` (a WAV from its first byte) behind the `LIST` check.
pub(crate) fn gate<R: Read>(inner: R) -> HeaderGate<R, RiffWalk> {
    HeaderGate::new(inner, RiffWalk::default())
}

impl HeaderWalk for RiffWalk {
    fn step(&mut self, inner: &mut dyn Read, unit: &mut Vec<u8>) -> std::io::Result<(u64, bool)> {
        if !self.in_chunks {
            self.in_chunks = true;
            take_into(inner, 12, unit)?;
            return Ok((0, unit.len() == 12));
        }
        let head_len = 8 + usize::from(self.pad);
        if take_into(inner, head_len as u64, unit)? < head_len {
            return Ok((0, false));
        }
        let head = &unit[usize::from(self.pad)..];
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        match &head[..4] {
            // The demuxer reads no chunk after the audio's.
            b"data" => return Ok((0, false)),
            b"LIST" if size > MAX_LIST => {
                return Err(refused(format!(
                    "malformed WAV: 'LIST' chunk claims {size} bytes (at most {MAX_LIST} are \
                     read before the audio)"
                )))
            }
            _ => {}
        }
        self.pad = size & 1 == 1;
        Ok((u64::from(size), true))
    }
}

/// Check the chunks before the audio of the WAV file `r`, then rewind it.
pub(crate) fn check_file<R: Read + Seek>(r: &mut R) -> Result<(), String> {
    header_gate::check_file(r, RiffWalk::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::header_gate::read_in_pieces;
    use std::io::Cursor;

    fn chunk(id: &[u8; 4], size: u32, body: &[u8]) -> Vec<u8> {
        [id.as_slice(), &size.to_le_bytes(), body].concat()
    }

    fn wav(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut f = chunk(b"RIFF", u32::MAX, b"WAVE");
        for c in chunks {
            f.extend(c);
        }
        f
    }

    fn both(bytes: &[u8]) -> (Result<(), String>, Result<Vec<u8>, String>) {
        let file = check_file(&mut Cursor::new(bytes));
        (file, read_in_pieces(gate(Cursor::new(bytes)), 5))
    }

    #[test]
    fn sound_files_pass_unchanged() {
        let f = wav(&[
            chunk(b"fmt ", 16, &[1; 16]),
            chunk(b"LIST", 13, b"INFOINAM\x01\0\0\0a\0"), // odd: a pad byte follows
            chunk(b"data", 4, &[0; 4]),
            chunk(b"LIST", u32::MAX, b""), // after the audio: not read
        ]);
        for cut in 0..=f.len() {
            let (file, stream) = both(&f[..cut]);
            assert_eq!(file, Ok(()), "cut {cut}");
            assert_eq!(stream.as_deref(), Ok(&f[..cut]), "cut {cut}");
        }
    }

    #[test]
    fn a_list_claiming_gigabytes_is_refused() {
        let f = wav(&[
            chunk(b"fmt ", 16, &[1; 16]),
            chunk(b"LIST", 0xFFFF_FFF0, b"INFO"),
        ]);
        let (file, stream) = both(&f);
        let want = "malformed WAV: 'LIST' chunk claims 4294967280 bytes (at most 16777216 are \
                    read before the audio)";
        assert_eq!(file.unwrap_err(), want);
        assert_eq!(stream.unwrap_err(), want);
    }
}
