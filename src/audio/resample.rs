//! Band-limited sinc resampling with rubato: a whole mono clip at once, or a stream chunk by chunk
//! (same filter, same alignment, same output).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Indexing, Resampler, SincInterpolationParameters, SincInterpolationType,
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

    let Plan {
        mut resampler,
        pad,
        extra,
    } = plan(from, to)?;
    let inv = from as f64 / to as f64;
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

const SINC_LEN: usize = 256;
const OVERSAMPLING: usize = 256;
/// Input frames per resampler call.
const CHUNK: usize = 1024;

/// A resampler and how to align its output: prepend `pad` zeros, then drop `extra` frames on top
/// of rubato's own output delay.
struct Plan {
    resampler: Async<f32>,
    pad: usize,
    extra: usize,
}

fn plan(from: u32, to: u32) -> Result<Plan, String> {
    let params = SincInterpolationParameters {
        sinc_len: SINC_LEN,
        f_cutoff: Some(0.95),
        interpolation: SincInterpolationType::Cubic,
        oversampling_factor: OVERSAMPLING,
        window: WindowFunction::BlackmanHarris2,
    };
    let ratio = to as f64 / from as f64;
    let resampler = Async::<f32>::new_sinc(ratio, 1.0, &params, CHUNK, 1, FixedAsync::Input)
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
    Ok(Plan {
        resampler,
        pad,
        extra,
    })
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resample a mono stream incrementally, with output identical to `resample` on the whole
/// stream: the same resampler fed the same zero-padded input in the same 1024-frame chunks
/// (which is what `process_all` does), the same frames dropped at the start, and
/// `round(len * to / from)` frames in all.
pub struct StreamResampler {
    resampler: Async<f32>,
    from: u32,
    to: u32,
    /// Input not yet given to the resampler (starts with the alignment zeros).
    pending: Vec<f32>,
    /// Output frames still to drop at the start (rubato's delay plus the alignment `extra`).
    to_drop: usize,
    out_buf: Vec<f32>,
    samples_in: u64,
    emitted: u64,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, String> {
        if from == 0 || to == 0 {
            return Err("sample rates must be positive".into());
        }
        let Plan {
            resampler,
            pad,
            extra,
        } = plan(from, to)?;
        let to_drop = resampler.output_delay() + extra;
        let out_len = resampler.output_frames_max();
        Ok(StreamResampler {
            resampler,
            from,
            to,
            pending: vec![0.0; pad],
            to_drop,
            out_buf: vec![0.0; out_len],
            samples_in: 0,
            emitted: 0,
        })
    }

    /// Frames the whole stream resamples to, for `n` input frames (as [`resample`]).
    fn target_len(&self, n: u64) -> u64 {
        ((n as u128 * self.to as u128 * 2 + self.from as u128) / (2 * self.from as u128)) as u64
    }

    /// Run full chunks while more than one chunk is pending; append kept output to `out`.
    fn run(&mut self, out: &mut Vec<f32>, limit: u64) -> Result<(), String> {
        let mut used = 0;
        while self.pending.len() - used >= CHUNK && self.emitted < limit {
            let input = InterleavedSlice::new(&self.pending[used..used + CHUNK], 1, CHUNK)
                .map_err(|e| e.to_string())?;
            let frames = self.out_buf.len();
            let mut output = InterleavedSlice::new_mut(&mut self.out_buf[..], 1, frames)
                .map_err(|e| e.to_string())?;
            let (n_in, n_out) = self
                .resampler
                .process_into_buffer(&input, &mut output, None::<&Indexing>)
                .map_err(|e| e.to_string())?;
            used += n_in;
            let mut produced = &self.out_buf[..n_out];
            let drop = self.to_drop.min(produced.len());
            self.to_drop -= drop;
            produced = &produced[drop..];
            let room = (limit - self.emitted).min(produced.len() as u64) as usize;
            out.extend_from_slice(&produced[..room]);
            self.emitted += room as u64;
        }
        self.pending.drain(..used);
        Ok(())
    }

    /// Feed input; returns the output that is final already.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<f32>, String> {
        self.samples_in += samples.len() as u64;
        self.pending.extend_from_slice(samples);
        // Output j is final once the input around time j / ratio is in; holding back everything
        // past round(n * ratio) - 1 also keeps the total at or under the final length.
        let limit = self.target_len(self.samples_in).saturating_sub(1);
        let mut out = Vec::new();
        self.run(&mut out, limit)?;
        Ok(out)
    }

    /// The end of the input: returns the rest of the output.
    pub fn finish(&mut self) -> Result<Vec<f32>, String> {
        let target = self.target_len(self.samples_in);
        let mut out = Vec::new();
        if self.samples_in == 0 {
            return Ok(out);
        }
        // Pad with zeros (as `resample` pads its tail) until all output is out.
        let mut guard = 0;
        while self.emitted < target {
            let fill = CHUNK - self.pending.len() % CHUNK;
            self.pending.resize(self.pending.len() + fill, 0.0);
            self.run(&mut out, target)?;
            guard += 1;
            if guard > 64 + SINC_LEN {
                break;
            }
        }
        let missing = target.saturating_sub(self.emitted) as usize;
        out.resize(out.len() + missing, 0.0);
        self.emitted += missing as u64;
        Ok(out)
    }
}
