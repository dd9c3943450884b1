//! Band-limited sinc resampling of a whole mono clip with rubato.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Resample `samples` from `from` Hz to `to` Hz; output has `round(len * to / from)` samples,
/// time-aligned with the input. Errors are messages without a file name.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == 0 || to == 0 {
        return Err("sample rates must be positive".into());
    }
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let target_len =
        ((samples.len() as u128 * to as u128 * 2 + from as u128) / (2 * from as u128)) as usize;

    const SINC_LEN: usize = 256;
    const OVERSAMPLING: usize = 256;
    let params = SincInterpolationParameters {
        sinc_len: SINC_LEN,
        f_cutoff: Some(0.95),
        interpolation: SincInterpolationType::Cubic,
        oversampling_factor: OVERSAMPLING,
        window: WindowFunction::BlackmanHarris2,
    };
    let ratio = to as f64 / from as f64;
    let mut resampler = Async::<f32>::new_sinc(ratio, 1.0, &params, 1024, 1, FixedAsync::Input)
        .map_err(|e| e.to_string())?;

    // Alignment. rubato's async sinc resampler computes output frame m (counting from the first
    // frame of the first chunk) at input position
    //     P(m) = (m + 1) / ratio - SINC_LEN / 2 + 1 / OVERSAMPLING
    // (the history starts at -(SINC_LEN - 1), each frame advances by 1 / ratio, the sinc table
    // is centred at SINC_LEN / 2 - 1 + (subindex + 1) / OVERSAMPLING). `process_all` then drops
    // trim = floor(SINC_LEN * ratio / 2) frames, which leaves up to one output frame of
    // misalignment. Instead we prepend `pad` zeros and drop `skip` frames in total, with
    //     (skip + 1) / ratio - SINC_LEN / 2 + 1 / OVERSAMPLING - pad  ~= 0,
    // so output j samples input time j / ratio to within gcd(from, to) / (2 * to) input samples.
    let trim = (SINC_LEN as f64 * ratio / 2.0) as usize;
    let half = SINC_LEN as f64 / 2.0 - 1.0 / OVERSAMPLING as f64;
    let inv = from as f64 / to as f64;
    let max_skip = trim + (to / gcd(from, to)) as usize + 1;
    let (mut skip, mut pad, mut best) = (trim, 0usize, f64::INFINITY);
    for s in trim..=max_skip {
        let k = ((s + 1) as f64 * inv - half).round();
        if k < 0.0 {
            continue;
        }
        let err = ((s + 1) as f64 * inv - half - k).abs();
        if err < best - 1e-9 {
            (skip, pad, best) = (s, k as usize, err);
            if err < 1e-6 {
                break;
            }
        }
    }
    let extra = skip - trim;
    // Enough trailing zeros that the filter sees the end of the clip and `extra + target_len`
    // frames come out.
    let tail = ((extra + 2) as f64 * inv).ceil() as usize + SINC_LEN;
    let mut padded = vec![0.0f32; pad + samples.len() + tail];
    padded[pad..pad + samples.len()].copy_from_slice(samples);

    let input = InterleavedSlice::new(&padded[..], 1, padded.len()).map_err(|e| e.to_string())?;
    let out = resampler
        .process_all(&input, padded.len(), None)
        .map_err(|e| e.to_string())?;
    let out = out.take_data();
    let mut out: Vec<f32> = out.into_iter().skip(extra).take(target_len).collect();
    out.resize(target_len, 0.0);
    Ok(out)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
