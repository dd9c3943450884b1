//! Every container and codec the audio front door reads, on small fixtures made once from
//! tests/data/speech/jfk.wav with ffmpeg (tests/data/formats/README.md has each command; the
//! suite does not need ffmpeg):
//! - lossless fixtures decode bit-exactly to the WAV's samples;
//! - lossy fixtures match ffmpeg's own decode (committed as 16-bit `.ref.s16`) at SNR >= 35 dB;
//! - transcripts (tiny.en, greedy) equal the WAV's (lossless) or are within one word (lossy);
//! - truncated and corrupted copies give a one-line error or a partial result, never a panic;
//! - stdin (a `Read` that is not `Seek`) and raw PCM; `info` fields; the streaming resampler and
//!   the spooled mel are identical to their whole-clip twins.

use std::io::Read;
use std::path::Path;

use dattavani_asr::testing::audio::{
    audio_info, load_audio, load_audio_with, resample, AudioStream, MelSource, OpenOptions,
    RawEncoding, RawPcm, SpooledMel, StreamResampler,
};
use dattavani_asr::testing::mel::log_mel_spectrogram;

#[path = "common/wav.rs"]
mod wav;
#[path = "common/wer.rs"]
#[allow(dead_code)]
mod wer;

#[path = "common/audio_fixtures.rs"]
#[allow(dead_code)]
mod audio_fixtures;
use audio_fixtures::{data, fixture, from_reader, jfk, NotSeek};

/// Samples of the two clip lengths the fixtures were cut to (`-t 2.28`, `-t 4.42`).
const SHORT: usize = 36_480;
const LONG: usize = 70_720;

/// (fixture, samples of jfk.wav it holds): lossless, decoded bit-exactly.
const LOSSLESS: &[(&str, usize)] = &[
    ("flac_s16_16k.flac", LONG),
    ("alac_16k.m4a", LONG),
    ("pcm_s16be.aiff", SHORT),
    ("pcm_s16le_16k.caf", SHORT),
];

/// Lossy fixtures with ffmpeg's decode at 16 kHz (first 2.28 s).
const LOSSY_16K: &[&str] = &[
    "mp3_48k.mp3",
    "aac_48k.m4a",
    "aac_48k.aac",
    "video_aac.mp4",
    "vorbis.ogg",
    "vorbis.webm",
    "adpcm_ima.wav",
    "alaw.wav",
];

/// Opus fixtures with ffmpeg's decode at 48 kHz (first second; ffmpeg using libopus, the RFC
/// reference decoder: ffmpeg's own Opus decoder lags libopus by 2 samples at 48 kHz), and the
/// audio track.
const LOSSY_OPUS: &[(&str, &str, Option<usize>)] = &[
    ("opus_32k.opus", "opus_32k.opus.ref.s16", None),
    ("opus_32k.webm", "opus_32k.webm.ref.s16", None),
    ("two_tracks.mkv", "two_tracks.mkv.track1.ref.s16", Some(1)),
];

fn read_s16(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect()
}

/// SNR (dB) of `got` against `want` over `want`'s length, at the best lag within +-`max_lag`
/// (decoders differ in how much codec priming they trim: AAC's 1024 frames in ADTS, Opus's
/// pre-skip in WebM). Returns (snr, lag).
fn best_snr(got: &[f32], want: &[f32], max_lag: isize) -> (f64, isize) {
    let mut best = (f64::NEG_INFINITY, 0);
    for lag in -max_lag..=max_lag {
        let (mut sig, mut err) = (0.0f64, 0.0f64);
        for (i, &w) in want.iter().enumerate() {
            let j = i as isize + lag;
            let g = if j >= 0 && (j as usize) < got.len() {
                got[j as usize] as f64
            } else {
                0.0
            };
            sig += (w as f64).powi(2);
            err += (g - w as f64).powi(2);
        }
        let snr = 10.0 * (sig / err.max(1e-30)).log10();
        if snr > best.0 {
            best = (snr, lag);
        }
    }
    best
}

#[test]
fn lossless_fixtures_decode_bit_exactly() {
    for &(name, n) in LOSSLESS {
        let want = jfk(n);
        let got = load_audio(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), want.len(), "{name}: length");
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{name}: {diff} samples differ from the WAV");
    }
}

/// Tolerance: 35 dB SNR against ffmpeg's decode of the same file. Two correct decoders of one
/// lossy stream differ only by float rounding and IMDCT/synthesis implementation details
/// (typically > 60 dB; the encoder's own loss, ~10-20 dB for 48 kb/s speech, is common to both
/// and cancels). A wrong frame order, gain, channel or lag drops it far below 35.
#[test]
fn lossy_fixtures_match_ffmpeg_decode() {
    for &name in LOSSY_16K {
        let want = read_s16(&fixture(&format!("{name}.ref.s16")));
        let got = load_audio(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        let (snr, lag) = best_snr(&got, &want, 1100);
        println!("{name}: SNR {snr:.1} dB at lag {lag}");
        assert!(snr >= 35.0, "{name}: SNR {snr:.1} dB < 35 dB (lag {lag})");
    }
    // Opus decodes at 48 kHz; bring ffmpeg's 48 kHz decode to 16 kHz with our resampler (the
    // same filter the pipeline applies) and compare the first 0.9 s (away from the cut end).
    for &(name, reference, track) in LOSSY_OPUS {
        let want48 = read_s16(&fixture(reference));
        let want = resample(&want48, 48_000, 16_000).unwrap();
        let want = &want[..14_400];
        let opts = OpenOptions {
            audio_track: track,
            ..Default::default()
        };
        let got = load_audio_with(&fixture(name), &opts).unwrap_or_else(|e| panic!("{e}"));
        let (snr, lag) = best_snr(&got, want, 400);
        println!("{name}: SNR {snr:.1} dB at lag {lag} (16 kHz)");
        assert!(snr >= 35.0, "{name}: SNR {snr:.1} dB < 35 dB (lag {lag})");
    }
}

fn transcriber() -> dattavani_asr::testing::transcribe::Transcriber {
    use dattavani_asr::testing::model::hub;
    use dattavani_asr::{Device, TranscribeOptions, Transcriber};
    let files = hub::resolve("tiny.en").expect("tiny.en resolves");
    // f32: the reference transcripts are CTranslate2 float32's tokens (the default is auto).
    let options = TranscribeOptions {
        weights_dtype: Some(dattavani_asr::Dtype::F32),
        ..TranscribeOptions::greedy_plain()
    };
    Transcriber::from_files(&files, Device::Cpu, options).expect("tiny.en loads")
}

#[test]
fn transcripts_match_the_wav() {
    let mut t = transcriber();
    let mut text = |samples: &[f32]| {
        t.transcribe_samples(samples, 16_000)
            .unwrap()
            .text
            .trim()
            .to_string()
    };
    let wav_short = text(&jfk(SHORT));
    let wav_long = text(&jfk(LONG));
    println!("WAV 2.28 s: {wav_short:?}\nWAV 4.42 s: {wav_long:?}");
    for &(name, n) in LOSSLESS {
        let got = text(&load_audio(&fixture(name)).unwrap());
        let want = if n == SHORT { &wav_short } else { &wav_long };
        assert_eq!(&got, want, "{name}");
    }
    let lossy = LOSSY_16K
        .iter()
        .map(|&n| (n, None))
        .chain(LOSSY_OPUS.iter().map(|&(n, _, t)| (n, t)));
    for (name, track) in lossy {
        let opts = OpenOptions {
            audio_track: track,
            ..Default::default()
        };
        let got = text(&load_audio_with(&fixture(name), &opts).unwrap());
        let want = &wav_long;
        let d = wer::edit_distance(&wer::normalize(&got), &wer::normalize(want));
        println!("{name}: {got:?} ({d} word edits)");
        assert!(d <= 1, "{name}: {got:?} vs WAV {want:?}");
    }
}

/// Every fixture cut at several points and with corrupted bytes: a one-line error naming the
/// file, or samples (with a warning); never a panic or a hang.
#[test]
fn truncated_and_corrupted_fixtures_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<&str> = LOSSLESS.iter().map(|&(n, _)| n).collect();
    names.extend(LOSSY_16K);
    names.extend(LOSSY_OPUS.iter().map(|&(n, _, _)| n));
    for name in names {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let len = bytes.len();
        let mut variants: Vec<(String, Vec<u8>)> =
            [0, 1, 4, 12, 40, 100, 700, len / 3, len / 2, len - 1]
                .iter()
                .map(|&cut| (format!("cut{cut}"), bytes[..cut.min(len)].to_vec()))
                .collect();
        for (k, &(at, span)) in [(len / 4, 64), (len / 2, 512), (60, 16), (len * 3 / 4, 4096)]
            .iter()
            .enumerate()
        {
            let mut b = bytes.clone();
            let mut x = 0x9E37_79B9u32.wrapping_mul(k as u32 + 1);
            for byte in b.iter_mut().skip(at).take(span) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *byte = x as u8;
            }
            variants.push((format!("corrupt{k}"), b));
        }
        for (tag, b) in variants {
            let path = dir.path().join(format!("{tag}_{name}"));
            std::fs::write(&path, &b).unwrap();
            match load_audio(&path) {
                Ok(s) => assert!(!s.is_empty(), "{tag} {name}: Ok but empty"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(!msg.contains('\n'), "{tag} {name}: not one line: {msg}");
                    assert!(
                        msg.contains(&format!("{tag}_{name}")),
                        "{tag} {name}: {msg}"
                    );
                }
            }
            // The streaming path over a non-seekable reader too.
            let r = AudioStream::from_reader(
                Box::new(NotSeek(std::io::Cursor::new(b))),
                Path::new("-"),
                &OpenOptions::default(),
            )
            .and_then(|s| s.read_all());
            if let Err(e) = r {
                assert!(!e.to_string().contains('\n'));
            }
        }
    }
}

#[test]
fn stdin_reads_containers_and_raw_pcm() {
    // Containers through a non-seekable reader decode as from the file.
    for name in [
        "flac_s16_16k.flac",
        "pcm_s16be.aiff",
        "mp3_48k.mp3",
        "aac_48k.m4a", // faststart: index before the data
        "aac_48k.aac",
        "vorbis.ogg",
        "opus_32k.opus",
        "opus_32k.webm",
        "vorbis.webm",
        "adpcm_ima.wav",
        "alaw.wav",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let got = from_reader(bytes, &OpenOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let want = load_audio(&fixture(name)).unwrap();
        if name.ends_with(".opus") || name.ends_with(".ogg") {
            // Only a seekable Ogg tells symphonia where the last page ends, so only the file
            // decode trims the codec's end padding (a few ms); the rest is the same.
            let keep = want.len() - 64;
            assert!(
                got.len() >= want.len() && got[..keep] == want[..keep],
                "{name}"
            );
        } else {
            assert_eq!(
                got, want,
                "{name}: stdin decode differs from the file decode"
            );
        }
    }
    // A WAV through stdin: same samples as the whole-file reader.
    let wav = std::fs::read(data("speech/jfk.wav")).unwrap();
    let got = from_reader(wav.clone(), &OpenOptions::default()).unwrap();
    assert_eq!(got, load_audio(&data("speech/jfk.wav")).unwrap());

    // MP4 with its index at the end: a stream is spooled to a temporary file, so it reads as
    // the file does.
    for name in ["alac_16k.m4a", "video_aac.mp4"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let got = from_reader(bytes, &OpenOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, load_audio(&fixture(name)).unwrap(), "{name}");
    }

    // Raw s16le: jfk.wav's data chunk (44-byte header) is exactly s16le 16 kHz mono.
    let raw = |encoding, channels| OpenOptions {
        raw: Some(RawPcm {
            encoding,
            sample_rate: 16_000,
            channels,
        }),
        audio_track: None,
    };
    let pcm = wav[44..].to_vec();
    let want = load_audio(&data("speech/jfk.wav")).unwrap();
    assert_eq!(
        from_reader(pcm.clone(), &raw(RawEncoding::S16le, 1)).unwrap(),
        want
    );
    // f32le, and stereo (both channels the same) averages back to the same samples.
    let mut f32s = Vec::new();
    let mut stereo = Vec::new();
    for &x in &want {
        f32s.extend_from_slice(&x.to_le_bytes());
        stereo.extend_from_slice(&x.to_le_bytes());
        stereo.extend_from_slice(&x.to_le_bytes());
    }
    assert_eq!(
        from_reader(f32s, &raw(RawEncoding::F32le, 1)).unwrap(),
        want
    );
    assert_eq!(
        from_reader(stereo, &raw(RawEncoding::F32le, 2)).unwrap(),
        want
    );
    // Raw PCM at 8 kHz is resampled like a WAV at 8 kHz.
    let opts8 = OpenOptions {
        raw: Some(RawPcm {
            encoding: RawEncoding::S16le,
            sample_rate: 8_000,
            channels: 1,
        }),
        audio_track: None,
    };
    let got8 = from_reader(pcm, &opts8).unwrap();
    assert_eq!(got8, resample(&want, 8_000, 16_000).unwrap());
    assert!("s24le".parse::<RawEncoding>().is_err());
}

/// An endless stream of zero bytes (`/dev/zero`).
struct Zeros;
impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        buf.fill(0);
        Ok(buf.len())
    }
}

#[test]
fn non_audio_is_rejected_from_the_first_bytes() {
    let err = AudioStream::from_reader(Box::new(Zeros), Path::new("zero"), &OpenOptions::default())
        .err()
        .expect("zeros are rejected")
        .to_string();
    assert!(err.contains("zero") && err.contains("not audio"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.mp3");
    std::fs::write(&p, "hello, this is not audio\n").unwrap();
    let err = load_audio(&p).unwrap_err().to_string();
    assert!(err.contains("notes.mp3") && err.contains("text"), "{err}");
}

#[test]
fn container_errors_name_the_problem() {
    let err = load_audio(&fixture("video_only.mp4"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("video_only.mp4") && err.contains("no audio track"),
        "{err}"
    );
    let err = load_audio(&fixture("ac3.mkv")).unwrap_err().to_string();
    assert!(
        err.contains("ac3.mkv") && err.contains("unsupported codec"),
        "{err}"
    );
    let opts = OpenOptions {
        audio_track: Some(2),
        ..Default::default()
    };
    let err = load_audio_with(&fixture("two_tracks.mkv"), &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("audio track 2 does not exist"), "{err}");
    // The first audio track of the two is the 440 Hz tone, not the speech.
    let tone = load_audio(&fixture("two_tracks.mkv")).unwrap();
    let speech = load_audio_with(
        &fixture("two_tracks.mkv"),
        &OpenOptions {
            audio_track: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(tone.len(), 0);
    let (snr, _) = best_snr(&tone, &speech[..16_000], 0);
    assert!(snr < 3.0, "track 0 should not be the speech ({snr} dB)");
}

#[test]
fn info_fields_on_a_known_fixture() {
    let info = audio_info(&fixture("pcm_s16be.aiff"), &OpenOptions::default()).unwrap();
    let s = jfk(SHORT);
    let n = s.len() as f64;
    let peak = s.iter().fold(0f32, |m, &x| m.max(x.abs())) as f64;
    let rms = (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n).sqrt();
    let dc = s.iter().map(|&x| x as f64).sum::<f64>() / n;
    assert_eq!(info.container, "AIFF");
    assert!(info.codec.contains("16-bit"), "{}", info.codec);
    assert_eq!(info.sample_rate, 16_000);
    assert_eq!(info.channels, 1);
    assert_eq!(info.bits_per_sample, Some(16));
    assert!((info.duration_s - 2.28).abs() < 1e-9);
    assert!((info.peak_dbfs.unwrap() - 20.0 * peak.log10()).abs() < 1e-9);
    assert!((info.rms_dbfs.unwrap() - 20.0 * rms.log10()).abs() < 1e-6);
    assert!((info.dc_offset - dc).abs() < 1e-9);
    assert_eq!(info.clipped_share, 0.0);
    assert!(info.longest_silence_s >= 0.0 && info.longest_silence_s < 1.0);
    assert!(info.warning.is_none());
    let json: serde_json::Value = serde_json::to_value(&info).unwrap();
    for key in [
        "container",
        "codec",
        "duration_s",
        "sample_rate",
        "channels",
        "bits_per_sample",
        "peak_dbfs",
        "rms_dbfs",
        "clipped_share",
        "dc_offset",
        "longest_silence_s",
    ] {
        assert!(json.get(key).is_some(), "json lacks {key}");
    }
    // A lossy file has no bit depth; a WAV with a silent second and a clipped stretch.
    let mp3 = audio_info(&fixture("mp3_48k.mp3"), &OpenOptions::default()).unwrap();
    assert_eq!((mp3.bits_per_sample, mp3.sample_rate), (None, 16_000));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("clip.wav");
    let mut w = hound::WavWriter::create(
        &p,
        hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    )
    .unwrap();
    for i in 0..48_000 {
        let v = match i {
            0..16_000 => 0,
            16_000..16_160 => 32767,
            _ => ((i as f32 * 0.3).sin() * 8000.0) as i16,
        };
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
    let info = audio_info(&p, &OpenOptions::default()).unwrap();
    assert!((info.longest_silence_s - 1.0).abs() < 1e-9, "{info:?}");
    assert!(
        (info.clipped_share - 160.0 / 48_000.0).abs() < 1e-12,
        "{info:?}"
    );
    assert!(info.peak_dbfs.unwrap() > -0.001);
}

#[test]
fn stream_resampler_equals_whole_clip_resampling() {
    let signal = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.0123).sin() * 0.5 + (i as f32 * 0.31).cos() * 0.2)
            .collect()
    };
    for (from, n, chunk) in [
        (44_100, 100_000, 4096),
        (48_000, 47_999, 1000),
        (22_050, 30_000, 777),
        (8_000, 12_345, 100),
        (48_000, 50, 7),
        (44_100, 1, 1),
    ] {
        let x = signal(n);
        let want = resample(&x, from, 16_000).unwrap();
        let mut r = StreamResampler::new(from, 16_000).unwrap();
        let mut got = Vec::new();
        for c in x.chunks(chunk) {
            got.extend(r.push(c).unwrap());
        }
        got.extend(r.finish().unwrap());
        assert_eq!(got.len(), want.len(), "{from} Hz, {n} samples");
        assert!(
            got == want,
            "{from} Hz, {n} samples: streamed output differs"
        );
    }
}

/// The spooled mel gives bit-identical windows to `log_mel_spectrogram` + `LogMel::window`.
#[test]
fn spooled_mel_windows_are_bit_identical() {
    let long = load_audio(&data("speech/long_concat.wav")).unwrap();
    let cases: Vec<Vec<f32>> = vec![
        long.clone(),
        long[..12_345].to_vec(),
        long[..150].to_vec(),
        vec![0.25; 1],
        Vec::new(),
        // Longer than one 2048-frame pass-1 batch and not a multiple of the hop.
        long.iter()
            .chain(long.iter())
            .copied()
            .take(700_001)
            .collect(),
    ];
    for samples in cases {
        for n_mels in [80, 128] {
            let whole = log_mel_spectrogram(&samples, n_mels);
            let mut spooled = SpooledMel::from_samples(&samples, n_mels, Path::new("t")).unwrap();
            assert_eq!(spooled.content_frames(), whole.content_frames());
            assert_eq!(spooled.n_mels(), n_mels);
            let cf = whole.content_frames();
            for start in [
                0,
                1,
                2999,
                3000,
                4567,
                cf.saturating_sub(1),
                cf,
                cf + 3000,
                cf + 10_000,
            ] {
                let a = whole.window(start);
                let b = spooled.window(start).unwrap();
                let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same && a.len() == b.len(),
                    "{} samples, {n_mels} mels, window at {start} differs",
                    samples.len()
                );
            }
        }
    }
    // Through the decoder from a file, too (a resampled, stereo-mixed input).
    let mut from_file =
        SpooledMel::open(&fixture("opus_32k.opus"), &OpenOptions::default(), 80).unwrap();
    let samples = load_audio(&fixture("opus_32k.opus")).unwrap();
    let whole = log_mel_spectrogram(&samples, 80);
    assert_eq!(from_file.content_frames(), whole.content_frames());
    assert_eq!(from_file.window(0).unwrap(), whole.window(0));
}

/// A truncated file with a declared length gives what is readable and says so (the warning the
/// CLI logs once), for a streamed WAV and a compressed container alike.
#[test]
fn truncated_files_give_the_readable_part_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    for (name, full) in [("flac_s16_16k.flac", LONG), ("pcm_s16be.aiff", SHORT)] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let path = dir.path().join(format!("half_{name}"));
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let mut stream = AudioStream::open(&path, &OpenOptions::default()).unwrap();
        let mut got = Vec::new();
        while let Some(c) = stream.next_chunk().unwrap() {
            got.extend(c);
        }
        assert!(
            got.len() > full / 4 && got.len() < full,
            "{name}: {}",
            got.len()
        );
        assert_eq!(
            got[..],
            jfk(got.len())[..],
            "{name}: the readable part is exact"
        );
        let why = stream
            .damage()
            .unwrap_or_else(|| panic!("{name}: no warning"));
        assert!(why.contains("truncated"), "{name}: {why}");
    }
    // A streamed WAV (through a pipe-like reader) cut mid-data.
    let wav = std::fs::read(data("speech/jfk.wav")).unwrap();
    let cut = wav[..wav.len() / 2 + 1].to_vec();
    let mut stream = AudioStream::from_reader(
        Box::new(NotSeek(std::io::Cursor::new(cut))),
        Path::new("-"),
        &OpenOptions::default(),
    )
    .unwrap();
    let mut n = 0;
    while let Some(c) = stream.next_chunk().unwrap() {
        n += c.len();
    }
    assert_eq!(n, (wav.len() / 2 + 1 - 44) / 2);
    assert!(stream.damage().unwrap().contains("truncated"));
}

/// A WAV whose data chunk comes before its fmt chunk: a file still decodes (whole-file reader),
/// a stream cannot seek back and says so in one line.
#[test]
fn wav_with_data_before_fmt() {
    let want = jfk(1600);
    let mut data = Vec::new();
    for &x in &want {
        data.extend_from_slice(&((x * 32768.0) as i16).to_le_bytes());
    }
    let fmt = wav::fmt_chunk(1, 1, 16_000, 16);
    let wav = wav::riff_wave(&[(b"data", &data), (b"fmt ", &fmt)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late_fmt.wav");
    std::fs::write(&path, &wav).unwrap();
    let streamed = AudioStream::open(&path, &OpenOptions::default())
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(streamed, want);
    assert_eq!(load_audio(&path).unwrap(), want);
    let err = from_reader(wav, &OpenOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("-: ") && err.contains("before its 'fmt '"),
        "{err}"
    );
}

/// A pipe fed as audio arrives (the live case): bytes come in pieces.
struct Pipe {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    left: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left.is_empty() {
            match self.rx.recv_timeout(std::time::Duration::from_secs(5)) {
                Ok(b) => self.left = b,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(format!("waited for more: {e}"))),
            }
        }
        let n = buf.len().min(self.left.len());
        buf[..n].copy_from_slice(&self.left[..n]);
        self.left.drain(..n);
        Ok(n)
    }
}

/// Raw PCM from a live source comes out as it arrives: 100 ms in gives 100 ms out, before any
/// more is sent (a decoder that waited for a full block would time out here).
#[test]
fn raw_pcm_is_handed_on_as_it_arrives() {
    let (tx, rx) = std::sync::mpsc::channel();
    let opts = OpenOptions {
        raw: Some(RawPcm {
            encoding: RawEncoding::S16le,
            sample_rate: 16_000,
            channels: 1,
        }),
        audio_track: None,
    };
    let mut stream = AudioStream::from_reader(
        Box::new(Pipe {
            rx,
            left: Vec::new(),
        }),
        Path::new("-"),
        &opts,
    )
    .unwrap();
    let want = jfk(4800);
    let bytes: Vec<u8> = want
        .iter()
        .flat_map(|&x| ((x * 32768.0) as i16).to_le_bytes())
        .collect();
    let mut got = Vec::new();
    for piece in bytes.chunks(3201) {
        tx.send(piece.to_vec()).unwrap();
        got.extend(stream.next_chunk().unwrap().unwrap());
    }
    drop(tx);
    while let Some(c) = stream.next_chunk().unwrap() {
        got.extend(c);
    }
    assert_eq!(got, want);
    assert!(stream.damage().is_none());
}
