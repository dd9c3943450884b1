//! Log-mel spectrogram against OpenAI Whisper's reference output and librosa's filterbank.

use crate::npy;

use std::path::Path;

use dattavani_asr::testing::audio::load_audio;
use dattavani_asr::testing::mel::{log_mel_spectrogram, mel_filters, N_FRAMES, N_SAMPLES};

#[test]
fn jfk_matches_openai_reference() {
    let samples = load_audio(Path::new("tests/data/speech/jfk.wav")).unwrap();
    let mel = log_mel_spectrogram(&samples, 80);
    assert_eq!(mel.n_mels, 80);
    assert_eq!(mel.n_frames, (samples.len() + N_SAMPLES) / 160);
    assert_eq!(mel.content_frames(), 1100);
    assert_eq!(mel.n_windows(), 1);
    let got = mel.window(0);

    let (shape, want) = npy::read_npy_f32("tests/data/reference/jfk_mel.npy");
    assert_eq!(shape, vec![80, 3000]);
    assert_eq!(got.len(), want.len());
    let (mut max_err, mut at) = (0.0f32, 0);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let e = (g - w).abs();
        if e > max_err {
            (max_err, at) = (e, i);
        }
    }
    println!(
        "jfk log-mel: max abs error {max_err:.3e} at mel {} frame {} (got {}, want {})",
        at / 3000,
        at % 3000,
        got[at],
        want[at]
    );
    assert!(max_err <= 1e-4, "max abs error {max_err}");
}

#[test]
fn window_and_counts() {
    // 45 s of a 440 Hz tone: 4500 content frames -> 2 windows; 7500 frames in all.
    let samples: Vec<f32> = (0..16000 * 45)
        .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin())
        .collect();
    let mel = log_mel_spectrogram(&samples, 128);
    assert_eq!(mel.n_mels, 128);
    assert_eq!(mel.n_frames, 7500);
    assert_eq!(mel.data.len(), 128 * 7500);
    assert_eq!(mel.content_frames(), 4500);
    assert_eq!(mel.n_windows(), 2);
    let w0 = mel.window(0);
    let w1 = mel.window(3000);
    assert_eq!(w0.len(), 128 * N_FRAMES);
    for m in 0..128 {
        assert_eq!(w0[m * N_FRAMES + 17], mel.data[m * 7500 + 17]);
        assert_eq!(w1[m * N_FRAMES + 17], mel.data[m * 7500 + 3017]);
    }
    // Past n_frames: zero columns.
    let w2 = mel.window(6000);
    for m in 0..128 {
        assert_eq!(w2[m * N_FRAMES + 1499], mel.data[m * 7500 + 7499]);
        assert!(w2[m * N_FRAMES + 1500..(m + 1) * N_FRAMES]
            .iter()
            .all(|&x| x == 0.0));
    }
    assert!(mel.window(100_000).iter().all(|&x| x == 0.0));
    // Dynamic range: max is exactly (max + 4) / 4, nothing below max - 8 (i.e. 2 lower after /4).
    let max = mel.data.iter().copied().fold(f32::MIN, f32::max);
    let min = mel.data.iter().copied().fold(f32::MAX, f32::min);
    assert!((max - min - 2.0).abs() < 1e-5, "range {min}..{max}");
    // The tone's energy sits in the mel band holding 440 Hz.
    let peak_band = (0..128)
        .max_by(|&a, &b| w0[a * N_FRAMES + 1000].total_cmp(&w0[b * N_FRAMES + 1000]))
        .unwrap();
    let f = mel_filters(128);
    let bin = 11; // 440 Hz / 40 Hz per bin
    let best_filter = (0..128)
        .max_by(|&a, &b| f[a * 201 + bin].total_cmp(&f[b * 201 + bin]))
        .unwrap();
    assert!(
        (peak_band as i32 - best_filter as i32).abs() <= 1,
        "peak band {peak_band}, filter {best_filter}"
    );
}

#[test]
fn empty_and_short_inputs() {
    let mel = log_mel_spectrogram(&[], 80);
    assert_eq!(mel.n_frames, 3000);
    assert_eq!(mel.content_frames(), 0);
    assert_eq!(mel.n_windows(), 1);
    // All silence: log10(1e-10) = -10 everywhere -> (-10 + 4) / 4.
    assert!(mel.data.iter().all(|&x| x == -1.5));
    let mel = log_mel_spectrogram(&[0.5, -0.25, 0.125], 80);
    assert_eq!(mel.n_frames, 3000);
    assert!(mel.data.iter().all(|x| x.is_finite()));
}

#[test]
fn filterbank_structure() {
    for n_mels in [80usize, 128] {
        let f = mel_filters(n_mels);
        assert_eq!(f.len(), n_mels * 201);
        let mut prev_peak = 0;
        for m in 0..n_mels {
            let row = &f[m * 201..(m + 1) * 201];
            assert!(row.iter().all(|&x| x >= 0.0));
            let nz: Vec<usize> = (0..201).filter(|&k| row[k] > 0.0).collect();
            assert!(!nz.is_empty(), "{n_mels} mels: row {m} is empty");
            // One contiguous triangle.
            assert_eq!(
                nz.last().unwrap() - nz[0] + 1,
                nz.len(),
                "{n_mels} mels: row {m} not contiguous"
            );
            let peak = (0..201).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            assert!(peak >= prev_peak);
            prev_peak = peak;
        }
        // The last band reaches no further than Nyquist; the DC bin is in no band.
        assert!((0..n_mels).all(|m| f[m * 201] == 0.0));
    }
    // Slaney norm: in the linear part (< 1 kHz) the triangles are 200/3 Hz wide on each side
    // per mel step, so every peak value is 2 / (2 * width) in 1/Hz.
    let f = mel_filters(80);
    let mel_step = (15.0 + (8000.0f64 / 1000.0).ln() / (6.4f64.ln() / 27.0)) / 81.0;
    let width_hz = mel_step * 200.0 / 3.0;
    let enorm = 2.0 / (2.0 * width_hz);
    // Row 0: centre at width_hz Hz, bin k at 40k Hz -> weight (1 - |40k - c| / width) * enorm.
    for (k, &got) in f.iter().enumerate().take(4).skip(1) {
        let want = (1.0 - (40.0 * k as f64 - width_hz).abs() / width_hz).max(0.0) * enorm;
        assert!(
            (got as f64 - want).abs() < 1e-6,
            "row 0 bin {k}: {got} vs {want}"
        );
    }
}

#[test]
fn filterbank_matches_librosa() {
    // librosa 0.11.0 `filters.mel(sr=16000, n_fft=400, n_mels)` (float32), sampled entries
    // (row, bin, value) and the sum of all weights. The full matrices were compared once:
    // max abs difference 3.7e-9 (1 ulp).
    type Case = (usize, f64, &'static [(usize, usize, f64)]);
    let cases: [Case; 2] = [
        (
            80,
            1.9990241527557373,
            &[
                (0, 1, 0.02486259490251541),
                (0, 2, 0.0),
                (10, 12, 0.0),
                (40, 43, 0.014735566452145576),
                (79, 192, 0.0031647118739783764),
                (79, 200, 0.0),
            ],
        ),
        (
            128,
            3.190985679626465,
            &[
                (0, 1, 0.012373986653983593),
                (0, 2, 0.0),
                (10, 12, 0.0),
                (64, 43, 0.018091518431901932),
                (127, 195, 0.005041601601988077),
                (127, 200, 0.0),
            ],
        ),
    ];
    for (n_mels, sum, entries) in cases {
        let f = mel_filters(n_mels);
        for &(r, k, want) in entries {
            let got = f[r * 201 + k] as f64;
            assert!(
                (got - want).abs() <= 1e-8,
                "{n_mels} mels [{r}, {k}]: {got} vs librosa {want}"
            );
        }
        let total: f64 = f.iter().map(|&x| x as f64).sum();
        assert!(
            (total - sum).abs() < 1e-5,
            "{n_mels} mels: sum {total} vs librosa {sum}"
        );
    }
}
