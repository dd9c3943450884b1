//! Audio decoding and resampling: every supported WAV format, channel averaging, resampling
//! quality and alignment, and a clear one-line error (naming the file) for every bad input.

#[path = "common/wav.rs"]
mod wav;

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use dattavani_asr::testing::audio::{decode_wav, load_audio, resample, SAMPLE_RATE};

const FREQ: f64 = 1000.0;
const AMP: f64 = 0.5;

fn sine(rate: u32, secs: f64, freq: f64, amp: f64) -> Vec<f64> {
    let n = (rate as f64 * secs).round() as usize;
    (0..n)
        .map(|i| amp * (2.0 * PI * freq * i as f64 / rate as f64).sin())
        .collect()
}

/// Write a WAV by hand (independent of the decoder), interleaving `chans`.
/// `tag` 1 = PCM, 3 = float; `extensible` wraps it in WAVE_FORMAT_EXTENSIBLE.
fn write_wav(path: &Path, rate: u32, bits: u16, tag: u16, extensible: bool, chans: &[Vec<f64>]) {
    let nch = chans.len();
    let frames = chans[0].len();
    let bytes_per = (bits / 8) as usize;
    let mut data = Vec::with_capacity(frames * nch * bytes_per);
    for i in 0..frames {
        for ch in chans {
            let x = ch[i];
            match (tag, bits) {
                (1, 8) => data.push(((x * 128.0).round().clamp(-128.0, 127.0) as i32 + 128) as u8),
                (1, 16) => data.extend_from_slice(
                    &((x * 32768.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes(),
                ),
                (1, 24) => {
                    let v = (x * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
                    data.extend_from_slice(&v.to_le_bytes()[..3]);
                }
                (1, 32) => data.extend_from_slice(
                    &((x * 2_147_483_648.0)
                        .round()
                        .clamp(-2_147_483_648.0, 2_147_483_647.0) as i32)
                        .to_le_bytes(),
                ),
                (3, 32) => data.extend_from_slice(&(x as f32).to_le_bytes()),
                (3, 64) => data.extend_from_slice(&x.to_le_bytes()),
                _ => panic!("test writer: unsupported {tag}/{bits}"),
            }
        }
    }
    let format_tag = if extensible { 0xFFFE } else { tag };
    let mut fmt = wav::fmt_chunk(format_tag, nch as u16, rate, bits);
    if extensible {
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt.extend_from_slice(&0u32.to_le_bytes());
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
        ]);
    } else if tag == 3 {
        fmt.extend_from_slice(&0u16.to_le_bytes());
    }
    // An unrelated chunk with an odd size between the two (must be skipped with its pad byte).
    let out = wav::riff_wave(&[(b"fmt ", &fmt), (b"LIST", &[1, 2, 3]), (b"data", &data)]);
    std::fs::write(path, out).unwrap();
}

/// Normalised correlation and RMS ratio of `got` against `want`, skipping `edge` samples at both ends.
fn compare(got: &[f32], want: &[f64], edge: usize) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "length");
    let (mut gw, mut gg, mut ww) = (0.0, 0.0, 0.0);
    for i in edge..got.len() - edge {
        let g = got[i] as f64;
        gw += g * want[i];
        gg += g * g;
        ww += want[i] * want[i];
    }
    (gw / (gg * ww).sqrt(), (gg / ww).sqrt())
}

/// Time offset (in 16 kHz samples) of a `freq` sine in `got` relative to sin(2*pi*freq*j/16000),
/// from a least-squares fit of a*sin + b*cos away from the edges. Positive = output is late.
fn sine_lag(got: &[f32], freq: f64, edge: usize) -> f64 {
    let w = 2.0 * PI * freq / SAMPLE_RATE as f64;
    let (mut ss, mut cc, mut sc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (j, &y) in got.iter().enumerate().take(got.len() - edge).skip(edge) {
        let (s, c) = (w * j as f64).sin_cos();
        ss += s * s;
        cc += c * c;
        sc += s * c;
        ys += y as f64 * s;
        yc += y as f64 * c;
    }
    let det = ss * cc - sc * sc;
    let a = (ys * cc - yc * sc) / det;
    let b = (yc * ss - ys * sc) / det;
    // a*sin(wj) + b*cos(wj) = r*sin(w(j - lag)) with b = -r*sin(w*lag).
    (-b).atan2(a) / w
}

fn check_sine_file(dir: &Path, name: &str, rate: u32, bits: u16, tag: u16, extensible: bool) {
    let path = dir.join(name);
    let s = sine(rate, 1.0, FREQ, AMP);
    write_wav(&path, rate, bits, tag, extensible, &[s]);
    let (raw, r) = decode_wav(&path).unwrap();
    assert_eq!(r, rate);
    assert_eq!(raw.len(), rate as usize);
    let got = load_audio(&path).unwrap();
    let want = sine(SAMPLE_RATE, 1.0, FREQ, AMP);
    let (corr, gain) = compare(&got, &want, 400);
    let lag = sine_lag(&got, FREQ, 400);
    println!("{name}: corr {corr:.6} gain {gain:.5} lag {lag:+.5} samples");
    assert!(lag.abs() < 0.01, "{name}: output is {lag} samples late");
    // 8-bit quantisation noise (~ -48 dB) still leaves correlation well above 0.99.
    assert!(corr > 0.999, "{name}: correlation {corr}");
    assert!((gain - 1.0).abs() < 0.01, "{name}: gain {gain}");
}

#[test]
fn every_sample_format_at_16k() {
    let dir = tempfile::tempdir().unwrap();
    // (file, bits, tag: 1 PCM / 3 float, as WAVE_FORMAT_EXTENSIBLE)
    for (name, bits, tag, extensible) in [
        ("u8.wav", 8, 1, false),
        ("i16.wav", 16, 1, false),
        ("i24.wav", 24, 1, false),
        ("i32.wav", 32, 1, false),
        ("f32.wav", 32, 3, false),
        ("f64.wav", 64, 3, false),
        ("ext_i16.wav", 16, 1, true),
        ("ext_i24.wav", 24, 1, true),
        ("ext_f32.wav", 32, 3, true),
        ("ext_f64.wav", 64, 3, true),
    ] {
        check_sine_file(dir.path(), name, 16000, bits, tag, extensible);
    }
}

#[test]
fn resampled_formats() {
    let dir = tempfile::tempdir().unwrap();
    check_sine_file(dir.path(), "i16_44k.wav", 44100, 16, 1, false);
    check_sine_file(dir.path(), "f32_48k.wav", 48000, 32, 3, false);
    check_sine_file(dir.path(), "i24_22k.wav", 22050, 24, 1, false);
    check_sine_file(dir.path(), "i16_8k.wav", 8000, 16, 1, false);
    check_sine_file(dir.path(), "f64_11k.wav", 11025, 64, 3, true);
    check_sine_file(dir.path(), "u8_32k.wav", 32000, 8, 1, false);
}

#[test]
fn hound_written_files_decode() {
    // Files written by an independent encoder (hound), including its EXTENSIBLE headers.
    let dir = tempfile::tempdir().unwrap();
    let s = sine(16000, 0.5, FREQ, AMP);
    for (bits, float) in [
        (8u16, false),
        (16, false),
        (24, false),
        (32, false),
        (32, true),
    ] {
        for channels in [1u16, 3] {
            let path = dir
                .path()
                .join(format!("hound_{bits}_{float}_{channels}.wav"));
            let spec = hound::WavSpec {
                channels,
                sample_rate: 16000,
                bits_per_sample: bits,
                sample_format: if float {
                    hound::SampleFormat::Float
                } else {
                    hound::SampleFormat::Int
                },
            };
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            let scale = (1i64 << (bits - 1)) as f64;
            for &x in &s {
                for _ in 0..channels {
                    if float {
                        w.write_sample(x as f32).unwrap();
                    } else {
                        w.write_sample((x * scale).round() as i32).unwrap();
                    }
                }
            }
            w.finalize().unwrap();
            let got = load_audio(&path).unwrap();
            let (corr, gain) = compare(&got, &s, 0);
            assert!(
                corr > 0.9999 && (gain - 1.0).abs() < 0.01,
                "{}: corr {corr} gain {gain}",
                path.display()
            );
        }
    }
}

#[test]
fn stereo_is_averaged() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [16000u32, 44100] {
        let path = dir.path().join(format!("stereo_{rate}.wav"));
        let l = sine(rate, 1.0, FREQ, AMP);
        let r: Vec<f64> = l.iter().map(|x| 0.5 * x).collect();
        write_wav(&path, rate, 16, 1, false, &[l, r]);
        let got = load_audio(&path).unwrap();
        let want = sine(SAMPLE_RATE, 1.0, FREQ, 0.75 * AMP);
        let (corr, gain) = compare(&got, &want, 400);
        println!("stereo {rate}: corr {corr:.6} gain {gain:.5}");
        assert!(corr > 0.999, "corr {corr}");
        assert!((gain - 1.0).abs() < 0.01, "gain {gain}");
    }
}

#[test]
fn sixteen_k_i16_is_bit_exact() {
    let path = Path::new("tests/data/speech/jfk.wav");
    let bytes = std::fs::read(path).unwrap();
    let data = &bytes[44..];
    let want: Vec<f32> = data
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect();
    let got = load_audio(path).unwrap();
    assert_eq!(got.len(), 176_000);
    assert_eq!(got.len(), want.len());
    assert!(got
        .iter()
        .zip(&want)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn resample_lengths_and_alignment() {
    for (from, n) in [
        (44100u32, 44100usize),
        (44100, 12345),
        (8000, 8001),
        (48000, 7),
        (22050, 1),
    ] {
        let x = vec![0.1f32; n];
        let y = resample(&x, from, 16000).unwrap();
        let want = ((n as f64) * 16000.0 / from as f64).round() as usize;
        assert_eq!(y.len(), want, "{from} Hz x {n}");
    }
    assert_eq!(
        resample(&[0.25, -0.5], 16000, 16000).unwrap(),
        vec![0.25, -0.5]
    );
    assert!(resample(&[0.0; 10], 0, 16000).is_err());

    // An impulse in the middle lands at the same time instant after resampling.
    let from = 44100u32;
    let mut x = vec![0.0f32; 44100];
    let at = 22050usize; // 0.5 s
    x[at] = 1.0;
    let y = resample(&x, from, 16000).unwrap();
    let peak = y
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(
        peak, 8000,
        "impulse at 0.5 s should peak at output sample 8000"
    );
}

#[test]
fn truncated_data_chunk_reads_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wav");
    write_wav(&path, 16000, 16, 1, false, &[sine(16000, 0.1, FREQ, AMP)]);
    let bytes = std::fs::read(&path).unwrap();
    // Cut in the middle of a sample: 1600 samples declared, 500.5 present.
    let cut = bytes.len() - 2 * 1600 + 1001;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let got = load_audio(&path).unwrap();
    assert_eq!(got.len(), 500);
}

fn expect_err(path: &Path, needle: &str) {
    let err = match load_audio(path) {
        Ok(s) => panic!(
            "{}: expected an error, got {} samples",
            path.display(),
            s.len()
        ),
        Err(e) => e.to_string(),
    };
    println!("{err}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "error does not name the file: {err}");
    assert!(!err.contains('\n'), "error is not one line: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "error {err:?} lacks {needle:?}"
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| -> PathBuf { dir.path().join(n) };

    expect_err(&p("missing.wav"), "not found");

    std::fs::write(p("empty.wav"), b"").unwrap();
    expect_err(&p("empty.wav"), "empty");

    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    std::fs::write(p("noise.wav"), &noise).unwrap();
    expect_err(&p("noise.wav"), "not a recognised audio format");

    write_wav(
        &p("good.wav"),
        16000,
        16,
        1,
        false,
        &[sine(16000, 0.1, FREQ, AMP)],
    );
    let good = std::fs::read(p("good.wav")).unwrap();
    std::fs::write(p("trunc6.wav"), &good[..6]).unwrap();
    expect_err(&p("trunc6.wav"), "truncated");
    std::fs::write(p("trunc2.wav"), &good[..2]).unwrap();
    expect_err(&p("trunc2.wav"), "truncated");
    std::fs::write(p("trunc20.wav"), &good[..20]).unwrap();
    expect_err(&p("trunc20.wav"), "truncated");
    std::fs::write(p("trunc40.wav"), &good[..40]).unwrap();
    expect_err(&p("trunc40.wav"), "truncated");

    write_wav(&p("nosamples.wav"), 16000, 16, 1, false, &[vec![]]);
    expect_err(&p("nosamples.wav"), "contains no audio samples");
    write_wav(
        &p("nosamples_f64.wav"),
        44100,
        64,
        3,
        false,
        &[vec![], vec![]],
    );
    expect_err(&p("nosamples_f64.wav"), "contains no audio samples");

    let mut mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    mp3.extend_from_slice(&[0xFF, 0xFB, 0x90, 0x64, 0, 0, 0, 0]);
    std::fs::write(p("song.mp3"), &mp3).unwrap();
    // Other formats are decoded now (tests/audio_formats.rs); a broken one is a clear error.
    expect_err(&p("song.mp3"), "MP3");
    expect_err(&p("song.mp3"), "truncated or malformed");
    std::fs::write(p("frame.mp3"), [0xFF, 0xFB, 0x90, 0x64, 0, 0, 0, 0]).unwrap();
    expect_err(&p("frame.mp3"), "truncated or malformed MP3");

    std::fs::write(p("notes.txt"), "hello, this is not audio\n").unwrap();
    expect_err(&p("notes.txt"), "not audio");
    std::fs::write(p("notes.wav"), "hello, this is not audio\n").unwrap();
    expect_err(&p("notes.wav"), "text");

    std::fs::write(p("a.flac"), b"fLaC\0\0\0\x22").unwrap();
    expect_err(&p("a.flac"), "FLAC");

    // A RIFF that is not WAVE.
    std::fs::write(p("movie.wav"), b"RIFF\x04\0\0\0AVI ").unwrap();
    expect_err(&p("movie.wav"), "not WAVE");

    // A-law is decoded now (symphonia; tests/audio_formats.rs), but not with 16-bit samples.
    let mut alaw = good.clone();
    alaw[20] = 6;
    std::fs::write(p("alaw.wav"), &alaw).unwrap();
    expect_err(&p("alaw.wav"), "malformed");

    // A corrupt sample rate (2 Hz).
    let mut slow = good.clone();
    slow[24..28].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(p("slow.wav"), &slow).unwrap();
    expect_err(&p("slow.wav"), "unsupported sample rate 2 Hz");

    // A directory named like a WAV.
    std::fs::create_dir(p("dir.wav")).unwrap();
    expect_err(&p("dir.wav"), "cannot read");
}

#[test]
fn no_panic_on_any_truncation_or_header_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.wav");
    for (bits, tag, ext) in [(16u16, 1u16, false), (24, 1, true), (64, 3, true)] {
        write_wav(
            &path,
            22050,
            bits,
            tag,
            ext,
            &[sine(22050, 0.01, FREQ, AMP), sine(22050, 0.01, FREQ, AMP)],
        );
        let good = std::fs::read(&path).unwrap();
        for cut in 0..good.len() {
            let _ = dattavani_asr::testing::audio::decode_wav_bytes(&good[..cut]);
        }
        // Every header byte set to a few awkward values.
        for i in 0..80.min(good.len()) {
            for v in [0u8, 1, 0x7F, 0x80, 0xFF] {
                let mut b = good.clone();
                b[i] = v;
                if let Ok(d) = dattavani_asr::testing::audio::decode_wav_bytes(&b) {
                    assert!(!d.samples.is_empty());
                }
            }
        }
    }
}
