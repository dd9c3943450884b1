//! Tell the container from the first bytes of the input (never from the file name), and reject
//! what is not audio before reading any further.

/// Bytes read before deciding. Enough for every magic number below and an ID3v2 header.
pub const SNIFF_LEN: usize = 64;

/// A container recognised from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Wav,
    Aiff,
    Caf,
    Flac,
    Ogg,
    Matroska,
    Mp4,
    /// MPEG audio frames (mp3, mp2), possibly behind an ID3v2 tag.
    Mpeg,
    /// Raw AAC in ADTS frames.
    Adts,
}

impl Container {
    /// A file extension symphonia's probe associates with this container.
    pub fn extension(self) -> &'static str {
        match self {
            Container::Wav => "wav",
            Container::Aiff => "aiff",
            Container::Caf => "caf",
            Container::Flac => "flac",
            Container::Ogg => "ogg",
            Container::Matroska => "mkv",
            Container::Mp4 => "mp4",
            Container::Mpeg => "mp3",
            Container::Adts => "aac",
        }
    }

    /// A short human name, as `info` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Container::Wav => "WAV",
            Container::Aiff => "AIFF",
            Container::Caf => "CAF",
            Container::Flac => "FLAC",
            Container::Ogg => "Ogg",
            Container::Matroska => "Matroska/WebM",
            Container::Mp4 => "MP4/M4A/MOV",
            Container::Mpeg => "MP3/MPEG audio",
            Container::Adts => "AAC (ADTS)",
        }
    }
}

/// Identify `head` (the first up-to-`SNIFF_LEN` bytes). The error is a one-line description
/// of what the bytes look like instead, without the file name.
pub fn sniff(head: &[u8]) -> Result<Container, String> {
    if head.is_empty() {
        return Err("file is empty (0 bytes)".into());
    }
    let starts = |m: &[u8]| head.len() >= m.len() && &head[..m.len()] == m;
    let at = |o: usize, m: &[u8]| head.len() >= o + m.len() && &head[o..o + m.len()] == m;
    if starts(b"RIFF") || (head.len() < 4 && b"RIFF".starts_with(head)) {
        // The WAV reader gives the precise message for a short or non-WAVE RIFF.
        return Ok(Container::Wav);
    }
    if starts(b"RF64") || starts(b"BW64") {
        return Err("unsupported audio format (RF64/BW64 64-bit WAV)".into());
    }
    if starts(b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        return Ok(Container::Aiff);
    }
    if starts(b"caff") {
        return Ok(Container::Caf);
    }
    if starts(b"fLaC") {
        return Ok(Container::Flac);
    }
    if starts(b"OggS") {
        return Ok(Container::Ogg);
    }
    if starts(b"\x1A\x45\xDF\xA3") {
        return Ok(Container::Matroska);
    }
    if at(4, b"ftyp") || at(4, b"moov") || at(4, b"mdat") || at(4, b"wide") || at(4, b"free") {
        return Ok(Container::Mp4);
    }
    if starts(b"ID3") {
        // ID3v2 usually precedes MPEG audio; symphonia's probe skips the tag and finds out.
        return Ok(Container::Mpeg);
    }
    if head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0 {
        // Frame sync. Layer bits 00 are reserved for MPEG audio and mean ADTS AAC.
        return Ok(if head[1] & 0x06 == 0 {
            Container::Adts
        } else {
            Container::Mpeg
        });
    }
    let text = head
        .iter()
        .all(|&c| c == b'\n' || c == b'\r' || c == b'\t' || (0x20..0x7F).contains(&c));
    if text {
        return Err("not audio: the file is text".into());
    }
    if head.iter().all(|&c| c == 0) {
        return Err("not audio: the file starts with zero bytes, not a known audio header".into());
    }
    Err(format!(
        "not a recognised audio format (first bytes {}); supported: WAV, MP3, AAC/M4A/MP4/MOV, \
         FLAC, ALAC, Ogg Vorbis/Opus, WebM/MKV, AIFF, CAF, or raw PCM with --input-format",
        head.iter()
            .take(8)
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" ")
    ))
}
