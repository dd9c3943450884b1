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

use std::io::{Read, Seek};

use super::comment_guard::{check_picture, check_vorbis_comment};
use super::header_gate::{self, refused, take_into, HeaderGate, HeaderWalk};

const VORBIS_COMMENT: u8 = 4;
const PICTURE: u8 = 6;

/// The walk of FLAC metadata blocks for [`HeaderGate`]: a stream whose VORBIS_COMMENT and
/// PICTURE blocks are handed on only once checked; a failed check is a read error
/// (InvalidData), so the demuxer never reads a length it would trust.
#[derive(Default)]
pub(crate) struct FlacWalk {
    /// Past the "fLaC" marker.
    in_blocks: bool,
}

pub(crate) type FlacGate<R> = HeaderGate<R, FlacWalk>;

/// `inner` behind the FLAC metadata check.
pub(crate) fn gate<R: Read>(inner: R) -> FlacGate<R> {
    HeaderGate::new(inner, FlacWalk::default())
}

impl HeaderWalk for FlacWalk {
    fn step(&mut self, inner: &mut dyn Read, unit: &mut Vec<u8>) -> std::io::Result<(u64, bool)> {
        if !self.in_blocks {
            take_into(inner, 4, unit)?;
            self.in_blocks = true;
            // Not FLAC after all: nothing to check.
            return Ok((0, unit == b"fLaC"));
        }
        if take_into(inner, 4, unit)? < 4 {
            // The stream ends inside a header: the demuxer says so.
            return Ok((0, false));
        }
        let len = u32::from_be_bytes([0, unit[1], unit[2], unit[3]]);
        let more = unit[0] & 0x80 == 0;
        let block_type = unit[0] & 0x7F;
        if block_type != VORBIS_COMMENT && block_type != PICTURE {
            return Ok((u64::from(len), more));
        }
        take_into(inner, u64::from(len), unit)?;
        let body = &unit[4..];
        if block_type == VORBIS_COMMENT {
            check_vorbis_comment(body, "FLAC VORBIS_COMMENT block")
        } else {
            check_picture(body, "FLAC PICTURE block")
        }
        .map_err(refused)?;
        Ok((0, more))
    }
}

/// Check the metadata blocks of the FLAC file `r`, then rewind it.
pub(crate) fn check_file<R: Read + Seek>(r: &mut R) -> Result<(), String> {
    header_gate::check_file(r, FlacWalk::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::comment_guard::tests::{comment_body, comment_claiming_4_gib};
    use crate::audio::header_gate::read_in_pieces;
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
        let stream = read_in_pieces(gate(Cursor::new(bytes)), 7);
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
        let body = comment_claiming_4_gib();
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
