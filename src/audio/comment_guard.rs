//! The Vorbis-comment and FLAC-picture checks shared by `flac_guard` and `ogg_guard`.
//!
//! symphonia-metadata 0.5 reads a comment's or a picture's claimed length into a zeroed buffer
//! of that size before reading the bytes (`read_comment_no_framing`, `read_picture_block`): a
//! 916-byte FLAC whose comment claims 4 GiB reserves 4 GiB (found by `fuzz/` target
//! `audio_stream`). The same layout reaches it from a FLAC VORBIS_COMMENT or PICTURE block, an
//! Ogg Vorbis comment header, OpusTags, Ogg FLAC metadata packets, and the base64 picture of a
//! `METADATA_BLOCK_PICTURE` comment. Here every length it will allocate is checked against the
//! bytes of the block or packet that holds it, which the caller has read in whole.
//! Written by hand: no crate does only this check.

/// Where the bytes were found, for messages: "FLAC VORBIS_COMMENT block", "Opus comment header".
pub(crate) type Place<'a> = &'a str;

/// A little-endian (`le`) or big-endian u32 at `at`, or None past the end.
fn u32_at(body: &[u8], at: usize, le: bool) -> Option<u32> {
    let b: [u8; 4] = body.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if le {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    })
}

/// The bytes the length field at `*at` claims, moving `*at` past them: Ok(None) when the field
/// itself is cut (symphonia's read error, no allocation), Err((claim, bytes left)) when they
/// are not all there.
fn claimed<'a>(body: &'a [u8], at: &mut usize, le: bool) -> Result<Option<&'a [u8]>, (u32, usize)> {
    let Some(len) = u32_at(body, *at, le) else {
        return Ok(None);
    };
    *at += 4;
    let left = body.len() - *at;
    if len as usize > left {
        return Err((len, left));
    }
    let bytes = &body[*at..*at + len as usize];
    *at += len as usize;
    Ok(Some(bytes))
}

/// Check a Vorbis comment body (vendor length, vendor, count, then length-prefixed comments;
/// little-endian) as `read_comment_no_framing` reads it: every comment length fits in `body`,
/// and every `METADATA_BLOCK_PICTURE` comment's picture passes [`check_picture`].
pub(crate) fn check_vorbis_comment(body: &[u8], place: Place) -> Result<(), String> {
    // symphonia skips the vendor string without allocating it, and a read past the end is
    // its error (no allocation): only comment lengths and pictures need a check.
    let Some(vendor_len) = u32_at(body, 0, true) else {
        return Ok(());
    };
    let Some(mut at) = 4usize.checked_add(vendor_len as usize) else {
        return Ok(());
    };
    let Some(count) = u32_at(body, at, true) else {
        return Ok(());
    };
    at += 4;
    for index in 0..count {
        let Some(comment) = claimed(body, &mut at, true).map_err(|(len, left)| {
            format!("malformed {place}: comment {index} claims {len} bytes, only {left} left in it")
        })?
        else {
            return Ok(());
        };
        if let Some(picture) = base64_picture(comment) {
            check_picture(&picture, &format!("{place} (METADATA_BLOCK_PICTURE)"))?;
        }
    }
    Ok(())
}

/// Check a FLAC picture block body (big-endian lengths) as `read_picture_block` reads it: the
/// media type, description and picture data lengths fit in `body`.
pub(crate) fn check_picture(body: &[u8], place: Place) -> Result<(), String> {
    // Picture type, then the media type length.
    let mut at = 4;
    // The fields after each allocated one: 0 after the media type, 16 (width, height, depth,
    // colours) after the description, none after the data.
    for (field, skip_after) in [("media type", 0), ("description", 16), ("data", 0)] {
        let claim = claimed(body, &mut at, false).map_err(|(len, left)| {
            format!("malformed {place}: picture {field} claims {len} bytes, only {left} left in it")
        })?;
        if claim.is_none() {
            return Ok(());
        }
        at += skip_after;
    }
    Ok(())
}

/// The decoded picture of a `METADATA_BLOCK_PICTURE=<base64>` comment, as symphonia decodes it
/// (the key compared after `to_lowercase`, as it does; None where it would not decode one).
fn base64_picture(comment: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(comment);
    let (key, value) = text.split_once('=')?;
    if key.to_lowercase() != "metadata_block_picture" {
        return None;
    }
    base64_decode(value.trim_end_matches('=').as_bytes())
}

/// RFC 4648 base64 without padding, as symphonia-metadata's decoder reads it: any symbol
/// outside the alphabet makes it None, a lone last symbol is dropped.
fn base64_decode(symbols: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(symbols.len() * 3 / 4);
    let mut chunks = symbols.chunks(4);
    for chunk in &mut chunks {
        if chunk.len() == 1 {
            break;
        }
        let mut bits = 0u32;
        for &c in chunk {
            bits = (bits << 6) | value(c)?;
        }
        // A whole chunk has 24 bits (3 bytes); 2 or 3 symbols give 1 or 2 bytes.
        let bytes = chunk.len() - 1;
        bits <<= 6 * (4 - chunk.len());
        out.extend_from_slice(&bits.to_be_bytes()[1..1 + bytes]);
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Vorbis comment body with `comments`, each written with its true length.
    pub(crate) fn comment_body(comments: &[&[u8]]) -> Vec<u8> {
        let mut b = 3u32.to_le_bytes().to_vec();
        b.extend_from_slice(b"abc");
        b.extend_from_slice(&(comments.len() as u32).to_le_bytes());
        for c in comments {
            b.extend_from_slice(&(c.len() as u32).to_le_bytes());
            b.extend_from_slice(c);
        }
        b
    }

    /// The fuzzer's find, in small: one 7-byte comment whose length says 4 GiB.
    pub(crate) fn comment_claiming_4_gib() -> Vec<u8> {
        let mut body = comment_body(&[b"TITLE=a"]);
        body[11..15].copy_from_slice(&u32::MAX.to_le_bytes());
        body
    }

    fn picture(mime: &[u8], desc: &[u8], data: &[u8]) -> Vec<u8> {
        let mut b = 3u32.to_be_bytes().to_vec();
        for (i, field) in [mime, desc, data].into_iter().enumerate() {
            b.extend_from_slice(&(field.len() as u32).to_be_bytes());
            b.extend_from_slice(field);
            if i == 1 {
                b.extend_from_slice(&[0u8; 16]);
            }
        }
        b
    }

    fn base64(bytes: &[u8]) -> String {
        const SYM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for chunk in bytes.chunks(3) {
            let mut v = [0u8; 3];
            v[..chunk.len()].copy_from_slice(chunk);
            let n = u32::from_be_bytes([0, v[0], v[1], v[2]]);
            for i in 0..=chunk.len() {
                s.push(SYM[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        s
    }

    #[test]
    fn sound_comments_and_pictures_pass() {
        let long = vec![b'x'; 100_000];
        assert_eq!(
            check_vorbis_comment(&comment_body(&[b"TITLE=a", &long, b""]), "t"),
            Ok(())
        );
        let pic = picture(b"image/png", b"cover", &[7; 300]);
        assert_eq!(check_picture(&pic, "t"), Ok(()));
        let tag = format!("METADATA_BLOCK_PICTURE={}", base64(&pic));
        assert_eq!(base64_picture(tag.as_bytes()), Some(pic));
        assert_eq!(
            check_vorbis_comment(&comment_body(&[tag.as_bytes()]), "t"),
            Ok(())
        );
        // Cut anywhere: a read past the end is symphonia's error, not an allocation.
        let body = comment_body(&[b"TITLE=a", b"ARTIST=b"]);
        for cut in 0..body.len() {
            // ...unless the cut leaves a whole length claiming more than is left (the
            // lengths are at 11 and 22, the comments at 15 and 26).
            let claims_too_much = (15..22).contains(&cut) || (26..body.len()).contains(&cut);
            let checked = check_vorbis_comment(&body[..cut], "t");
            assert_eq!(checked.is_err(), claims_too_much, "cut {cut}");
        }
    }

    #[test]
    fn lengths_past_their_block_are_refused() {
        let err = check_vorbis_comment(&comment_claiming_4_gib(), "FLAC VORBIS_COMMENT block")
            .unwrap_err();
        assert_eq!(
            err,
            "malformed FLAC VORBIS_COMMENT block: comment 0 claims 4294967295 bytes, only 7 \
             left in it"
        );
        let mut pic = picture(b"image/png", b"", &[1, 2, 3]);
        let data_len_at = pic.len() - 7;
        pic[data_len_at..data_len_at + 4].copy_from_slice(&4_000_000_000u32.to_be_bytes());
        let err = check_picture(&pic, "p").unwrap_err();
        assert!(
            err.contains("picture data claims 4000000000 bytes"),
            "{err}"
        );
        // Inside a base64 picture comment, key in any case.
        let tag = format!("metadata_block_Picture={}", base64(&pic));
        let err = check_vorbis_comment(&comment_body(&[tag.as_bytes()]), "c").unwrap_err();
        assert!(
            err.starts_with("malformed c (METADATA_BLOCK_PICTURE): picture data claims"),
            "{err}"
        );
        let mut pic = picture(b"image/png", b"", &[]);
        pic[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(check_picture(&pic, "p")
            .unwrap_err()
            .contains("media type claims"));
    }
}
