//! A look at decoded samples before they are transcribed: a file of NaNs (silenced by the
//! decoders) or one whose float samples are far outside [-1, 1] would otherwise come out as an
//! empty transcript or garbage with no word of why.

/// Peak magnitude above which samples cannot be audio scaled to [-1, 1]: 40 dB over full scale
/// (float files a little over 1 after processing are common and transcribe fine).
const LOUD_PEAK: f32 = 100.0;

/// The warning `samples` deserve, if any. `nonfinite` is how many NaN/infinite samples the
/// decoder silenced (`total` decoded before that).
pub(crate) fn level_warning(samples: &[f32], nonfinite: usize, total: usize) -> Option<String> {
    let peak = samples.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    warning_for(peak, nonfinite, total)
}

/// [`level_warning`] from a streamed decode's running figures: the peak magnitude of the finite
/// samples, how many were NaN or infinite, and how many there were in all.
pub(crate) fn warning_for(peak: f32, nonfinite: usize, total: usize) -> Option<String> {
    if total > 0 && nonfinite == total {
        return Some(format!(
            "every sample ({total}) is NaN or infinite: the file transcribes as silence"
        ));
    }
    if nonfinite > 0 {
        return Some(format!(
            "{nonfinite} of {total} samples are NaN or infinite (silenced)"
        ));
    }
    (peak > LOUD_PEAK).then(|| {
        format!(
            "samples peak at {peak:.3e}, far outside [-1, 1] ({:.0} dB over full scale): float \
             audio scaled wrongly; the transcript is likely garbage",
            20.0 * peak.log10()
        )
    })
}

/// NaN or infinite values among the float samples of a WAV data chunk (`bytes` per sample).
pub(crate) fn count_nonfinite(data: &[u8], bytes: usize) -> usize {
    match bytes {
        4 => data
            .chunks_exact(4)
            .filter(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite())
            .count(),
        8 => data
            .chunks_exact(8)
            .filter(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                !f64::from_le_bytes(a).is_finite()
            })
            .count(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_loud_files_are_named() {
        assert!(level_warning(&[0.0; 4], 4, 4)
            .unwrap()
            .contains("every sample"));
        assert!(level_warning(&[0.1; 4], 1, 4).unwrap().contains("1 of 4"));
        assert!(level_warning(&[0.5, -3e4], 0, 2)
            .unwrap()
            .contains("far outside"));
        assert_eq!(level_warning(&[0.5, -1.2], 0, 2), None);
    }

    #[test]
    fn counts_nonfinite_floats() {
        let data: Vec<u8> = [1.0f32, f32::NAN, f32::INFINITY, -0.5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(count_nonfinite(&data, 4), 2);
        assert_eq!(count_nonfinite(&data, 2), 0);
    }
}
