//! The lacing check of a Matroska/WebM block (and of a Vorbis CodecPrivate, laced the same
//! way): see [`LaceCheck`].

use super::unseen;

/// Where the check of a block's header stands; the block's bytes come one at a time, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum LaceStage {
    /// The first byte of the track number (an EBML vint).
    Track,
    /// Bytes to pass over before the flags: the rest of the track number, the 2-byte timecode.
    Skip(u8),
    Flags,
    /// The byte holding the number of lace sizes that follow (frames - 1).
    Count {
        ebml: bool,
    },
    /// A Xiph lace size: 255-byte prefixes so far.
    Xiph {
        prefixes: u64,
    },
    /// An EBML lace size: the value so far, bytes still to come, its length (0: not started).
    Ebml {
        value: u64,
        left: u8,
        len: u8,
    },
    /// Nothing more to check: no lacing or fixed-size lacing (every frame is an equal share of
    /// the block), or every size read and within the block.
    Done,
}

/// The check of one SimpleBlock/Block's lacing header, read as symphonia-format-mkv 0.5's
/// `lacing::extract_frames` reads it: track number (vint), timecode (2 bytes), flags (lacing
/// in bits 0x06: none, Xiph, fixed-size, EBML); for Xiph and EBML lacing a count byte and that
/// many frame sizes (Xiph: runs of 255 plus a last byte; EBML: an unsigned vint, then signed
/// vint deltas), the last frame being the rest of the block. Symphonia allocates each claimed
/// size before reading it, so the sizes' sum may not pass the block's end.
///
/// A Vorbis CodecPrivate is read the same way from its count byte on (symphonia's
/// `vorbis_extra_data_from_codec_private` calls the same `read_xiph_sizes`), the last packet
/// being the rest of the element.
#[derive(Debug)]
pub(super) struct LaceCheck {
    /// What is checked and what its sizes measure, for the error: "block" and "laced frames",
    /// "Vorbis codec private data" and "header packets".
    what: &'static str,
    parts: &'static str,
    /// Stream positions: the element's header, its data's end, the next byte to check.
    pub(super) at: u64,
    pub(super) end: u64,
    pub(super) next: u64,
    stage: LaceStage,
    ebml: bool,
    /// Sizes still to read, sizes read, the last one, their sum.
    sizes_left: u8,
    sizes_read: u32,
    last: u64,
    sum: u64,
    /// A refusal, kept: the same answer if more bytes come.
    pub(super) refused: Option<String>,
}

impl LaceCheck {
    /// A SimpleBlock's or Block's data: from the track number on.
    pub(super) fn block(at: u64, data: u64, end: u64) -> Self {
        Self::new(("block", "laced frames"), LaceStage::Track, at, data, end)
    }

    /// A CodecPrivate read as Vorbis's: the count byte, then Xiph sizes.
    pub(super) fn vorbis_private(at: u64, data: u64, end: u64) -> Self {
        let count = LaceStage::Count { ebml: false };
        let what = ("Vorbis codec private data", "header packets");
        Self::new(what, count, at, data, end)
    }

    fn new(
        (what, parts): (&'static str, &'static str),
        stage: LaceStage,
        at: u64,
        data: u64,
        end: u64,
    ) -> Self {
        LaceCheck {
            what,
            parts,
            at,
            end,
            next: data,
            stage,
            ebml: false,
            sizes_left: 0,
            sizes_read: 0,
            last: 0,
            sum: 0,
            refused: None,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.stage == LaceStage::Done || self.refused.is_some()
    }

    /// Check `bytes`, which start at stream position `from`; bytes before the next unchecked
    /// one (the element header, bytes seen already) are passed over.
    pub(super) fn feed(&mut self, from: u64, bytes: &[u8]) -> Result<(), String> {
        if let Some(e) = &self.refused {
            return Err(e.clone());
        }
        for &b in unseen(bytes, from, self.next, self.end) {
            if self.stage == LaceStage::Done {
                break;
            }
            self.next += 1;
            match self.step(b) {
                Ok(stage) => self.stage = stage,
                Err(e) => {
                    let e = format!(
                        "malformed Matroska/WebM: the {} at byte {} {e}",
                        self.what, self.at
                    );
                    self.refused = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The stage after byte `b` (already counted in `self.next`).
    fn step(&mut self, b: u8) -> Result<LaceStage, String> {
        Ok(match self.stage {
            LaceStage::Track => match b {
                0 => return Err("has an invalid track number".into()),
                // Symphonia reads a lone 0xFF as a one-byte vint ("unknown").
                0xFF => LaceStage::Skip(2),
                _ => LaceStage::Skip(b.leading_zeros() as u8 + 2),
            },
            LaceStage::Skip(1) => LaceStage::Flags,
            LaceStage::Skip(n) => LaceStage::Skip(n - 1),
            LaceStage::Flags => match (b >> 1) & 0b11 {
                0b01 => LaceStage::Count { ebml: false },
                0b11 => LaceStage::Count { ebml: true },
                _ => LaceStage::Done,
            },
            LaceStage::Count { ebml } => {
                self.ebml = ebml;
                self.sizes_left = b;
                self.next_size()
            }
            LaceStage::Xiph { prefixes } if b == 255 => {
                // The size is at least the prefixes' 255s: refuse a run longer than the block.
                self.claim(self.sum + (prefixes + 1) * 255)?;
                LaceStage::Xiph {
                    prefixes: prefixes + 1,
                }
            }
            LaceStage::Xiph { prefixes } => self.size(prefixes * 255 + u64::from(b))?,
            LaceStage::Ebml { len: 0, .. } => match b {
                0 => return Err("has an invalid lace size".into()),
                0xFF => self.ebml_size(u64::MAX, 1)?,
                _ => {
                    let width = b.leading_zeros() as u8;
                    let value = u64::from(b & (0x7F >> width));
                    if width == 0 {
                        self.ebml_size(value, 1)?
                    } else {
                        LaceStage::Ebml {
                            value,
                            left: width,
                            len: width + 1,
                        }
                    }
                }
            },
            LaceStage::Ebml { value, left, len } => {
                let value = (value << 8) | u64::from(b);
                if left == 1 {
                    self.ebml_size(value, len)?
                } else {
                    LaceStage::Ebml {
                        value,
                        left: left - 1,
                        len,
                    }
                }
            }
            LaceStage::Done => LaceStage::Done,
        })
    }

    fn next_size(&self) -> LaceStage {
        match (self.sizes_left, self.ebml) {
            (0, _) => LaceStage::Done,
            (_, false) => LaceStage::Xiph { prefixes: 0 },
            (_, true) => LaceStage::Ebml {
                value: 0,
                left: 0,
                len: 0,
            },
        }
    }

    /// An EBML lace size read as symphonia reads it: the first unsigned, the others signed
    /// deltas from the one before (the vint minus half its range).
    fn ebml_size(&mut self, value: u64, len: u8) -> Result<LaceStage, String> {
        if self.sizes_read == 0 {
            return self.size(value);
        }
        let half_range = (1i64 << (u32::from(len) * 7 - 1)) - 1;
        // `last` is within the block (at most MAX_ELEMENT) and the delta under 2^56: no overflow.
        let size = self.last as i64 + (value as i64).wrapping_sub(half_range);
        match u64::try_from(size) {
            Ok(size) => self.size(size),
            Err(_) => Err(format!(
                "has a negative lace size ({size}) for frame {}",
                self.sizes_read + 1
            )),
        }
    }

    fn size(&mut self, size: u64) -> Result<LaceStage, String> {
        self.claim(self.sum.saturating_add(size))?;
        self.sum += size;
        self.last = size;
        self.sizes_read += 1;
        self.sizes_left -= 1;
        Ok(self.next_size())
    }

    /// Refuse frames of `sum` bytes if they pass the block's end.
    fn claim(&self, sum: u64) -> Result<(), String> {
        let room = self.end - self.next;
        if sum > room {
            return Err(format!(
                "claims {} of {sum} bytes, past its end ({room} bytes left)",
                self.parts
            ));
        }
        Ok(())
    }
}
