//! Inputs whose claims symphonia 0.5 would trust (counts, sizes, lengths it allocates before
//! reading), found by `fuzz/` (target audio_stream) or by reading its readers: each is refused
//! by a structure check in src/audio/*_guard.rs with a one-line error naming the input, never
//! an abort or a multi-gigabyte allocation; sound files with the same structures still decode.

use dattavani_asr::testing::audio::{load_audio, OpenOptions};

#[path = "common/audio_fixtures.rs"]
#[allow(dead_code)]
mod audio_fixtures;
use audio_fixtures::{fixture, from_reader, jfk, stream_error};

/// Found by `fuzz/` (target audio_stream): a 4-KB M4A whose `stts` box claims 3.3 billion
/// entries made symphonia reserve 26 GB and the process abort. The box tree is checked first
/// (src/audio/mp4_guard.rs): a one-line error naming the file, from a file and from a stream.
#[test]
fn an_mp4_claiming_huge_tables_is_an_error_not_an_abort() {
    let path = fixture("malformed_stts.m4a");
    let err = load_audio(&path).unwrap_err().to_string();
    assert!(
        err.contains("malformed_stts.m4a") && err.contains("'stts' claims") && !err.contains('\n'),
        "{err}"
    );
    let err = from_reader(std::fs::read(&path).unwrap(), &OpenOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("-: ") && err.contains("'stts' claims"),
        "{err}"
    );
}

/// Found by `fuzz/` right after: a 3-KB WebM whose block claims ~35 PB, which symphonia's
/// Matroska demuxer allocates before reading. Element headers are checked first
/// (src/audio/ebml_guard.rs): from a file an error naming it, from a stream the part before
/// the bad header at most; never an abort.
#[test]
fn a_webm_claiming_a_huge_element_is_an_error_not_an_abort() {
    webm_is_refused("malformed_block.webm", "malformed Matroska/WebM");
}

/// From a file: a one-line error naming it and saying `refusal`. From a stream the gate stops
/// at the bad header or block: the blocks before it decode (a damaged stream's readable part,
/// as for any cut stream), or the open fails with `refusal`; never an abort.
fn webm_is_refused(name: &str, refusal: &str) {
    let path = fixture(name);
    let err = load_audio(&path).unwrap_err().to_string();
    assert!(
        err.contains(name) && err.contains(refusal) && !err.contains('\n'),
        "{err}"
    );
    match from_reader(std::fs::read(&path).unwrap(), &OpenOptions::default()) {
        Ok(samples) => assert!(samples.len() < 16_000, "{}", samples.len()),
        Err(e) => assert!(
            e.to_string().starts_with("-: ") && e.to_string().contains(refusal),
            "{e}"
        ),
    }
}

/// Found by `fuzz/` (a 600-s audio_stream run after the FLAC/Ogg/CAF/WAV/ID3 checks): a 2-KB
/// WebM whose EBML-laced SimpleBlock claims a 26-GB frame, which symphonia's
/// `lacing::extract_frames` allocates before reading. Each block's lacing header is checked
/// first (src/audio/ebml_guard.rs): a one-line error naming the file; from a stream the blocks
/// before it at most; never an abort.
#[test]
fn a_webm_lace_claiming_26_gb_is_an_error_not_an_allocation() {
    webm_is_refused(
        "malformed_lacing.webm",
        "claims laced frames of 26005605902 bytes, past its end",
    );
}

/// Found by reading symphonia-format-mkv 0.5: a Vorbis track's CodecPrivate is a count and
/// Xiph-laced sizes of the three Vorbis headers, and `vorbis_extra_data_from_codec_private`
/// allocates each claimed size before reading it (up to 255 times the element: 16 GB for one
/// of 64 MB). vorbis.webm (ffmpeg's) decodes; the same file with the first size turned into a
/// run of twenty 255s (5 KB claimed in a 3.3-KB element) is refused by the check of the
/// TrackEntry (src/audio/ebml_guard.rs), from a file and from a stream, before any block.
#[test]
fn a_vorbis_webm_whose_headers_claim_past_their_element_is_refused() {
    let sound = std::fs::read(fixture("vorbis.webm")).unwrap();
    assert!(load_audio(&fixture("vorbis.webm")).unwrap().len() > 30_000);
    // The CodecPrivate element: ID 63 A2, a size vint, then the count byte (2: three packets).
    let at = sound.windows(2).position(|w| w == [0x63, 0xA2]).unwrap();
    let size_len = sound[at + 2].leading_zeros() as usize + 1;
    let data = at + 2 + size_len;
    assert_eq!(sound[data], 2, "the Vorbis CodecPrivate's packet count");
    let mut broken = sound.clone();
    broken[data + 1..data + 21].fill(0xFF);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vorbis_private.webm");
    std::fs::write(&path, &broken).unwrap();
    let refusal = "Vorbis codec private data at byte";
    let err = load_audio(&path).unwrap_err().to_string();
    assert!(
        err.contains("vorbis_private.webm")
            && err.contains(refusal)
            && err.contains("claims header packets of")
            && !err.contains('\n'),
        "{err}"
    );
    let err = stream_error(broken);
    assert!(err.starts_with("-: ") && err.contains(refusal), "{err}");
}

/// Found by reading symphonia-codec-vorbis 0.5: the decoder builds each codebook of the setup
/// header at its claimed size, so 21 bytes claiming 16 777 215 entries of 31 dimensions made it
/// fill a 2-GB table (2.06 GB resident for this 20-KB file before the check; 256 such books
/// would need 512 GB), then fail as "unsupported codec". The codebooks are checked first
/// (src/audio/vorbis_setup_guard.rs, called by the Ogg and Matroska checks): a one-line error
/// naming the file, from a file and from a stream. A header within the limits that still makes
/// symphonia panic (255 dimensions overflow its `lookup1_values`) is an error too.
#[test]
fn vorbis_setup_headers_claiming_gigabytes_are_refused() {
    let claim = "claims 16777215 entries of 31 dimensions";
    for (name, refusal) in [
        (
            "malformed_setup.ogg",
            "malformed Ogg Vorbis setup header: codebook 0",
        ),
        (
            "malformed_setup.webm",
            "malformed Matroska/WebM Vorbis setup header: codebook 0",
        ),
        ("panicking_setup.webm", "damaged Vorbis headers"),
    ] {
        let path = fixture(name);
        let err = load_audio(&path).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains(refusal) && !err.contains('\n'),
            "{err}"
        );
        assert_eq!(err.contains(claim), name.starts_with("malformed"), "{err}");
        let err = stream_error(std::fs::read(&path).unwrap());
        assert!(err.starts_with("-: ") && err.contains(refusal), "{err}");
    }
}

/// Found by reading symphonia-codec-alac 0.5: the decoder allocates buffers of the frame length
/// its configuration claims when it is made. alac_16k.m4a (84 KB) with that length set to ~4
/// billion took 16.8 GB and 52 s; the MP4 check (and the CAF one, for a `kuki` cookie) refuses
/// more than 2^20 frames: a one-line error naming the file, from a file and from a stream.
/// Likewise the PCM decoder allocates a packet's worth of frames, and a QuickTime version-2
/// PCM entry says how many: a 4.5-KB MOV claiming 4 billion frames of 8 channels of f64 asked
/// for 275 GB and aborted the process. At most 65 536 are accepted (real files say 1).
#[test]
fn decoder_configurations_claiming_huge_frames_are_refused() {
    for (name, refusal) in [
        (
            "malformed_alac.m4a",
            "malformed MP4 'alac' box: ALAC frames of 4294967280 samples",
        ),
        (
            "malformed_lpcm.mov",
            "malformed MP4: a PCM sample entry claims 4294967280 frames per packet",
        ),
    ] {
        let err = load_audio(&fixture(name)).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains(refusal) && !err.contains('\n'),
            "{err}"
        );
        let err = stream_error(std::fs::read(fixture(name)).unwrap());
        assert!(err.starts_with("-: ") && err.contains(refusal), "{err}");
    }
}

/// Laced blocks are sound Matroska (mkvmerge laces audio; ffmpeg never does): opus_32k.webm
/// with its frames regrouped into Xiph- and EBML-laced SimpleBlocks of three
/// (tests/data/formats/relace_webm.py) passes the lacing check and decodes to the very samples
/// of the unlaced file, from a file and from a stream.
#[test]
fn a_laced_webm_decodes_like_the_unlaced_one() {
    let unlaced = load_audio(&fixture("opus_32k.webm")).unwrap();
    let laced = load_audio(&fixture("laced_opus.webm")).unwrap();
    assert!(unlaced.len() > 16_000, "{}", unlaced.len());
    assert_eq!(laced, unlaced);
    let bytes = std::fs::read(fixture("laced_opus.webm")).unwrap();
    assert_eq!(
        from_reader(bytes, &OpenOptions::default()).unwrap(),
        unlaced
    );
}

/// Found by `fuzz/` after the MP4 and WebM fixes: a 916-byte FLAC whose Vorbis comment claims
/// 4 GiB, which symphonia-metadata allocates before reading it. Ogg Vorbis and Opus comment
/// headers reach the same reader (the two `.ogg`/`.opus` fixtures are ffmpeg's 0.5-s files
/// with their first comment's length set to 0xFFFFFFFF and the page CRC redone). The comment
/// and picture lengths are checked first (src/audio/flac_guard.rs, ogg_guard.rs,
/// comment_guard.rs): a one-line error naming the file, from a file and from a stream, and the
/// message says the check refused it (so nothing was allocated).
#[test]
fn comments_claiming_4_gib_are_an_error_not_an_allocation() {
    for (name, refusal) in [
        (
            "malformed_comment.flac",
            "malformed FLAC VORBIS_COMMENT block: comment 0 claims 4294967295 bytes",
        ),
        (
            "malformed_comment.opus",
            "malformed Ogg Opus comment header: comment 0 claims 4294967295 bytes",
        ),
        (
            "malformed_comment.ogg",
            "malformed Ogg Vorbis comment header: comment 0 claims 4294967295 bytes",
        ),
    ] {
        let path = fixture(name);
        let err = load_audio(&path).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains(refusal) && !err.contains('\n'),
            "{err}"
        );
        let err = stream_error(std::fs::read(&path).unwrap());
        assert!(err.starts_with("-: ") && err.contains(refusal), "{err}");
    }
}

/// A real 100-KB comment (ffmpeg -metadata comment=...) is no reason to refuse a file: it
/// decodes as without it, from a file and from a stream (the Opus one spans two Ogg pages).
#[test]
fn a_long_comment_still_decodes() {
    let flac = load_audio(&fixture("long_comment.flac")).unwrap();
    assert_eq!(flac, jfk(8000));
    let opus = load_audio(&fixture("long_comment.opus")).unwrap();
    // 0.5 s, plus the end of the last Opus frame (symphonia 0.5 does not trim Ogg's end).
    assert!((8000..8400).contains(&opus.len()), "{}", opus.len());
    for (name, want) in [("long_comment.flac", flac), ("long_comment.opus", opus)] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert_eq!(
            from_reader(bytes, &OpenOptions::default()).unwrap(),
            want,
            "{name}"
        );
    }
}

/// symphonia reads ID3v2 frames at their claimed size too (an APIC frame header can claim
/// 4 GiB), and its probe, past a tag, opens whichever container's marker comes next. ID3v2
/// tags are skipped unread (src/audio/id3_guard.rs) and what follows is sniffed again, so a
/// tag before MP3 changes nothing and a tag before a FLAC does not bypass the FLAC check.
#[test]
fn id3v2_tags_are_skipped_unread() {
    let mut tag = b"ID3\x03\0\0\0\0\x01\x00".to_vec(); // 128 bytes after the header
    tag.extend(b"APIC\xFF\xFF\xFF\xFF\0\0");
    tag.resize(10 + 128, 0);
    let mp3 = std::fs::read(fixture("mp3_48k.mp3")).unwrap();
    let want = load_audio(&fixture("mp3_48k.mp3")).unwrap();
    let got = from_reader([tag.clone(), mp3].concat(), &OpenOptions::default()).unwrap();
    assert_eq!(got, want);
    let flac = std::fs::read(fixture("malformed_comment.flac")).unwrap();
    let err = stream_error([tag, flac].concat());
    assert!(
        err.contains("malformed FLAC VORBIS_COMMENT block: comment 0 claims 4294967295"),
        "{err}"
    );
}

/// symphonia's CAF demuxer reads a magic cookie, a packet table and each packet at their
/// claimed sizes (64-bit: terabytes, an abort). Chunks are walked first
/// (src/audio/caf_guard.rs); a CAF from a stream is spooled to a temporary file for it (and
/// now decodes as from the file: the demuxer needs to seek).
#[test]
fn a_caf_claiming_a_huge_cookie_is_an_error_not_an_abort() {
    let path = fixture("pcm_s16le_16k.caf");
    let caf = std::fs::read(&path).unwrap();
    let from_stream = from_reader(caf.clone(), &OpenOptions::default()).unwrap();
    assert_eq!(from_stream, load_audio(&path).unwrap());
    // After the file header (8 bytes) and the description chunk (12 + 32).
    let mut bad = caf[..52].to_vec();
    bad.extend(b"kuki");
    bad.extend((1i64 << 40).to_be_bytes());
    bad.extend(&caf[52..]);
    let err = stream_error(bad);
    assert!(
        err.starts_with("-: malformed CAF: 'kuki' chunk at byte 52 claims 1099511627776 bytes"),
        "{err}"
    );
}

/// symphonia reads each entry of a WAV's LIST/INFO chunk at its claimed size, bounded only by
/// the enclosing claims (4 GiB). For the encodings it decodes for us (A-law here), the chunks
/// before the audio are walked first (src/audio/riff_guard.rs).
#[test]
fn a_wav_list_chunk_claiming_gigabytes_is_an_error_not_an_allocation() {
    let wav = std::fs::read(fixture("alaw.wav")).unwrap();
    // After the RIFF header (12 bytes) and the 'fmt ' chunk (8 + its size).
    let fmt_end = 20 + u32::from_le_bytes(wav[16..20].try_into().unwrap()) as usize;
    let mut bad = wav[..fmt_end].to_vec();
    bad.extend(b"LIST");
    bad.extend(0xFFFF_FFF0u32.to_le_bytes());
    bad.extend(b"INFOINAM");
    bad.extend(0xFFFF_FFE0u32.to_le_bytes());
    bad.extend(&wav[fmt_end..]);
    let err = stream_error(bad);
    assert!(
        err.starts_with("-: malformed WAV: 'LIST' chunk claims 4294967280 bytes"),
        "{err}"
    );
}
