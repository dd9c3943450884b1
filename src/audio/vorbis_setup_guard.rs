//! A check of a Vorbis setup header's codebooks before symphonia's Vorbis decoder reads them.
//!
//! symphonia-codec-vorbis 0.5 builds every codebook of the setup header when the decoder is
//! made, at the sizes the header claims: a codebook of `entries` (24 bits) codewords, each of
//! `dimensions` (16 bits) values, gets a lookup table of entries × dimensions floats, filled at
//! once. Codeword lengths can be run-length coded, so 21 bytes claim a 2-GB table and a
//! 256-codebook header claims half a terabyte (a crafted WebM or Ogg file a few KB long).
//! Here the codebook headers are read as symphonia reads them (`VorbisCodebook::read`) and
//! refused when
//! - one codebook passes libvorbis's own limit: ilog(dimensions) + ilog(entries) <= 24 (the
//!   reference decoder, `vorbis_staticbook_unpack`, refuses such a book too), or
//! - all codebooks together claim more than [`MAX_TOTAL_ENTRIES`] codewords or
//!   [`MAX_TOTAL_VALUES`] lookup values: both far above what an encoder writes (ffmpeg's
//!   libvorbis at quality 3: 4,289 codewords, 8,500 values; files of qualities -1 to 10 at 8-48
//!   kHz pass) and a bound on what the decoder holds.
//!
//! A header cut short is passed on (the decoder then reports it). Written by hand: no crate
//! reads only this.

use super::comment_guard::Place;

/// Codewords of all codebooks together (each costs symphonia about a dozen bytes).
pub(crate) const MAX_TOTAL_ENTRIES: u64 = 1 << 20;

/// Lookup-table values (f32) of all codebooks together: 16 MiB.
pub(crate) const MAX_TOTAL_VALUES: u64 = 1 << 22;

/// Bits read least significant first, as Vorbis packs them (symphonia's `BitReaderRtl`).
struct Bits<'a> {
    bytes: &'a [u8],
    /// The next bit, counted from the start.
    pos: u64,
}

impl Bits<'_> {
    /// `n` (at most 32) bits, or None past the end.
    fn read(&mut self, n: u32) -> Option<u32> {
        if self.pos + u64::from(n) > self.bytes.len() as u64 * 8 {
            return None;
        }
        let mut value = 0u32;
        for i in 0..n {
            let at = self.pos + u64::from(i);
            let bit = (self.bytes[(at / 8) as usize] >> (at % 8)) & 1;
            value |= u32::from(bit) << i;
        }
        self.pos += u64::from(n);
        Some(value)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        self.pos = self.pos.checked_add(n)?;
        (self.pos <= self.bytes.len() as u64 * 8).then_some(())
    }
}

fn ilog(x: u32) -> u32 {
    32 - x.leading_zeros()
}

/// What the codebooks of a setup header claim, summed.
#[derive(Debug, Default, PartialEq)]
struct Claims {
    entries: u64,
    values: u64,
}

/// Check the setup header `packet` (packet type 5, "vorbis", then the codebooks); `place`
/// names it for the error ("Ogg Vorbis setup header").
pub(crate) fn check_vorbis_setup(packet: &[u8], place: Place) -> Result<(), String> {
    let Some(body) = packet.strip_prefix(b"\x05vorbis") else {
        return Ok(());
    };
    read_codebooks(body)
        .map(|_| ())
        .map_err(|e| format!("malformed {place}: {e}"))
}

/// Read the codebooks as symphonia does, refusing a claim past the limits; the claims read
/// before the header ended.
fn read_codebooks(body: &[u8]) -> Result<Claims, String> {
    let mut bits = Bits {
        bytes: body,
        pos: 0,
    };
    let mut claims = Claims::default();
    let Some(count) = bits.read(8) else {
        return Ok(claims);
    };
    for book in 0..=count {
        if codebook(&mut bits, book, &mut claims)?.is_none() {
            break;
        }
    }
    Ok(claims)
}

/// One codebook; Ok(None) when the header ends inside it.
fn codebook(bits: &mut Bits, book: u32, claims: &mut Claims) -> Result<Option<()>, String> {
    let Some(_sync) = bits.read(24) else {
        return Ok(None);
    };
    let (Some(dimensions), Some(entries)) = (bits.read(16), bits.read(24)) else {
        return Ok(None);
    };
    if ilog(dimensions) + ilog(entries) > 24 {
        return Err(format!(
            "codebook {book} claims {entries} entries of {dimensions} dimensions (libvorbis's \
             limit is ilog(entries) + ilog(dimensions) <= 24)"
        ));
    }
    claims.entries += u64::from(entries);
    if claims.entries > MAX_TOTAL_ENTRIES {
        return Err(format!(
            "its codebooks claim more than {MAX_TOTAL_ENTRIES} entries in all (codebook {book} \
             reaches {})",
            claims.entries
        ));
    }
    if code_lengths(bits, entries).is_none() {
        return Ok(None);
    }
    let Some(lookup_type) = bits.read(4) else {
        return Ok(None);
    };
    if !matches!(lookup_type, 1 | 2) {
        // 0: no lookup table; anything else symphonia refuses itself.
        return Ok(Some(()));
    }
    // symphonia builds entries × dimensions values for both lookup types.
    claims.values += u64::from(entries) * u64::from(dimensions);
    if claims.values > MAX_TOTAL_VALUES {
        return Err(format!(
            "its codebooks claim lookup tables of more than {MAX_TOTAL_VALUES} values in all \
             (codebook {book} reaches {})",
            claims.values
        ));
    }
    let (Some(_min), Some(_delta), Some(value_bits), Some(_sequence)) =
        (bits.read(32), bits.read(32), bits.read(4), bits.read(1))
    else {
        return Ok(None);
    };
    let lookup_values = if lookup_type == 1 {
        lookup1_values(entries, dimensions)
    } else {
        u64::from(entries) * u64::from(dimensions)
    };
    Ok(bits.skip(lookup_values * u64::from(value_bits + 1)))
}

/// Pass over the codeword lengths of a codebook of `entries` codewords (ordered: runs; else
/// one 5-bit length per entry, sparse ones flagged first). None: the header ends first.
fn code_lengths(bits: &mut Bits, entries: u32) -> Option<()> {
    if bits.read(1)? == 1 {
        let _first_length = bits.read(5)?;
        let mut entry = 0u32;
        while entry < entries {
            let run = bits.read(ilog(entries - entry))?;
            entry = entry.checked_add(run)?;
        }
        // Runs past `entries` are symphonia's "invalid codebook" error: nothing more is read.
        (entry == entries).then_some(())
    } else {
        let sparse = bits.read(1)? == 1;
        for _ in 0..entries {
            if !sparse || bits.read(1)? == 1 {
                bits.read(5)?;
            }
        }
        Some(())
    }
}

/// The largest v with v^dimensions <= entries (Vorbis I, 9.2.3), in integers.
fn lookup1_values(entries: u32, dimensions: u32) -> u64 {
    if dimensions == 0 {
        return 0;
    }
    let fits = |v: u64| {
        (0..dimensions)
            .try_fold(1u64, |p, _| {
                p.checked_mul(v).filter(|&p| p <= u64::from(entries))
            })
            .is_some()
    };
    let mut v = 0u64;
    while fits(v + 1) {
        v += 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bits packed least significant first.
    #[derive(Default)]
    struct Writer {
        bits: Vec<u8>,
    }

    impl Writer {
        fn put(&mut self, value: u64, n: u32) -> &mut Self {
            self.bits.extend((0..n).map(|i| ((value >> i) & 1) as u8));
            self
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = b"\x05vorbis".to_vec();
            out.extend(
                self.bits
                    .chunks(8)
                    .map(|c| c.iter().enumerate().fold(0u8, |b, (i, &x)| b | (x << i))),
            );
            out
        }
    }

    /// A codebook with run-length (ordered) codeword lengths, all of one length, and lookup
    /// type `lookup` (1: one value of 1 bit).
    fn book(w: &mut Writer, dimensions: u64, entries: u64, lookup: u64) {
        w.put(0x564342, 24).put(dimensions, 16).put(entries, 24);
        w.put(1, 1).put(0, 5).put(entries, ilog(entries as u32));
        w.put(lookup, 4);
        if lookup == 1 {
            w.put(0, 32).put(0, 32).put(0, 4).put(0, 1);
            w.put(0, lookup1_values(entries as u32, dimensions as u32) as u32);
        }
    }

    #[test]
    fn fixture_setup_headers_pass_well_within_the_limits() {
        for (name, start) in [("vorbis.ogg", 0), ("vorbis.webm", 0)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/formats")
                .join(name);
            let bytes = std::fs::read(path).unwrap();
            let at = start
                + bytes
                    .windows(7)
                    .position(|w| w == b"\x05vorbis")
                    .expect("a setup header");
            // Ogg pages may split the packet: read what the first page holds.
            let claims = read_codebooks(&bytes[at + 7..]).unwrap();
            println!("{name}: {claims:?}");
            assert!(claims.entries > 100, "{name}: {claims:?}");
            assert!(
                claims.entries * 20 < MAX_TOTAL_ENTRIES,
                "{name}: {claims:?}"
            );
            assert!(claims.values * 20 < MAX_TOTAL_VALUES, "{name}: {claims:?}");
        }
    }

    #[test]
    fn codebooks_claiming_gigabytes_are_refused() {
        // One book: 16 777 215 entries of 31 dimensions, lookup type 1 (a 2-GB table).
        let mut w = Writer::default();
        w.put(0, 8);
        book(&mut w, 31, 0xFF_FFFF, 1);
        let err = check_vorbis_setup(&w.bytes(), "Ogg Vorbis setup header").unwrap_err();
        assert!(
            err.starts_with("malformed Ogg Vorbis setup header: codebook 0 claims 16777215"),
            "{err}"
        );
        // 256 books each within libvorbis's limit (2^20 entries, no lookup): 2^28 in all.
        let mut w = Writer::default();
        w.put(255, 8);
        for _ in 0..256 {
            book(&mut w, 1, 1 << 20, 0);
        }
        let err = check_vorbis_setup(&w.bytes(), "x").unwrap_err();
        assert!(err.contains("codebook 1 reaches 2097152"), "{err}");
        // Lookup tables: books of 2^14 entries × 2^8 dimensions (4M values each).
        let mut w = Writer::default();
        w.put(3, 8);
        for _ in 0..4 {
            book(&mut w, 1 << 8, 1 << 14, 1);
        }
        let err = check_vorbis_setup(&w.bytes(), "x").unwrap_err();
        assert!(err.contains("lookup tables"), "{err}");
    }

    #[test]
    fn small_and_cut_headers_pass() {
        let mut w = Writer::default();
        w.put(1, 8);
        book(&mut w, 2, 81, 1);
        book(&mut w, 4, 600, 0);
        let bytes = w.bytes();
        assert_eq!(
            read_codebooks(&bytes[7..]),
            Ok(Claims {
                entries: 681,
                values: 162
            })
        );
        for cut in 0..bytes.len() {
            assert_eq!(check_vorbis_setup(&bytes[..cut], "x"), Ok(()), "cut {cut}");
        }
        // Not a setup header: not ours to read.
        assert_eq!(check_vorbis_setup(b"\x03vorbis\xFF\xFF", "x"), Ok(()));
    }

    #[test]
    fn lookup1_values_is_the_integer_root() {
        assert_eq!(lookup1_values(81, 2), 9);
        assert_eq!(lookup1_values(80, 2), 8);
        assert_eq!(lookup1_values(0xFF_FFFF, 24), 1);
        assert_eq!(lookup1_values(1 << 24, 24), 2);
        assert_eq!(lookup1_values(5, 0), 0);
    }
}
