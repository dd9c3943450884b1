// Whisper's log-mel spectrogram (the CPU twin is `src/mel.rs::log_mel_spectrogram`), as a chain
// of dispatches the host records into one command buffer (`backend/gpu/mel.rs`):
//
//   for each chunk of frames:  mel_frames -> linear (DFT) -> mel_power -> linear (filters)
//                              -> mel_log (log10, clamp, running global max)
//   then for each output block: mel_norm (max - 8 floor, (x + 4) / 4, transposed to [mel, frame])
//
// The 400-point DFT is a matrix product with a precomputed [402, 400] matrix whose rows are
// hann[i]·cos(2πki/400) (k = 0..200) and hann[i]·sin(2πki/400): twiddles and the periodic Hann
// window computed in f64 on the host and rounded once to f32. It runs on the same `linear`
// kernels as the model (shared-memory tiles on GPUs, register tiles on lavapipe).
//
// All four kernels share one layout: src (read), dst (read-write), gmax (one atomic u32: the
// running maximum of the log10 mel values, as an order-preserving u32 encoding of the f32), p.
// Dispatch is 2-D (x + y * 65535 workgroups) so any element count fits the per-dimension limit.
//
// Bounds: every index is guarded against its shape parameter (element counts, the binding's
// sample range), and the host checks buffer sizes against those parameters before dispatching,
// so the module may be compiled without naga's runtime checks.

const N_FFT: u32 = 400u;
const HOP: u32 = 160u;
const PAD: i32 = 200;
const N_FREQS: u32 = 201u;
/// Row strides of the DFT output (re 0..200, im 201..401) and of the power spectrum (padded to a
/// multiple of 4 with zeros so it can be the K operand of `linear`).
const SPEC_COLS: u32 = 402u;
const POWER_COLS: u32 = 204u;
/// Values per thread in mel_log (one atomic per thread, not per value).
const LOG_PER: u32 = 16u;

// Each entry point reads the fields named in its comment below; the rest are 0.
// `p: Params` (n_samples, s0, s_len, t0, rows, live, n_mels, count) is declared by the host from `MelParams` in kernels/mel.rs.

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read_write> gmax: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> p: Params;

fn index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * (65535u * MEL_WG);
}

// f32 -> u32 such that a < b (as floats, no NaNs) iff ord(a) < ord(b) (as u32).
fn ord(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn unord(u: u32) -> f32 {
    return bitcast<f32>(select(~u, u & 0x7fffffffu, (u & 0x80000000u) != 0u));
}

// Frames [rows, 400] of frames t0 .. t0 + rows of the reflect-padded signal (center = True):
// frame t, sample i is original sample j = |t·160 + i − 200| (reflection at the left end;
// at the right end the signal continues into the 30 s of appended zeros, so every sample at or
// past n is 0, reflected or not). src is the sample binding holding samples s0 .. s0 + len.
// p: n_samples, s0, s_len, t0, rows.
@compute @workgroup_size(MEL_WG, 1, 1)
fn mel_frames(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = index(gid);
    if (e >= p.rows * N_FFT) {
        return;
    }
    let r = e / N_FFT;
    let i = e % N_FFT;
    let j = u32(abs(i32((p.t0 + r) * HOP + i) - PAD));
    var v = 0.0;
    if (j < p.n_samples && j >= p.s0 && j - p.s0 < p.s_len) {
        v = src[j - p.s0];
    }
    dst[e] = v;
}

// Power spectrum: dst[r, k] = re² + im² for k < 201, 0 for the padding columns.
// p: rows.
@compute @workgroup_size(MEL_WG, 1, 1)
fn mel_power(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = index(gid);
    if (e >= p.rows * POWER_COLS) {
        return;
    }
    let r = e / POWER_COLS;
    let k = e % POWER_COLS;
    var v = 0.0;
    if (k < N_FREQS) {
        let re = src[r * SPEC_COLS + k];
        let im = src[r * SPEC_COLS + N_FREQS + k];
        v = re * re + im * im;
    }
    dst[e] = v;
}

// dst[i] = log10(max(src[i], 1e-10)) for i < count, and the running maximum in gmax[0].
// p: count.
@compute @workgroup_size(MEL_WG, 1, 1)
fn mel_log(@builtin(global_invocation_id) gid: vec3<u32>) {
    let base = index(gid) * LOG_PER;
    if (base >= p.count) {
        return;
    }
    var mx = -3.4e38;
    for (var q = 0u; q < LOG_PER; q++) {
        let e = base + q;
        if (e < p.count) {
            let v = log2(max(src[e], 1e-10)) * 0.30102999566398120;
            dst[e] = v;
            mx = max(mx, v);
        }
    }
    atomicMax(&gmax[0], ord(mx));
}

// One output block of frames t0 .. t0 + rows: dst[m, t] = (max(x, gmax − 8) + 4) / 4, x the
// log10 mel of frame t0 + t (src, frame-major [live, n_mels], bound from frame t0) for
// t < live, and log10(1e-10) = −10 for the frames that hold only appended silence.
// p: rows, live (frames of this block with audio), n_mels.
@compute @workgroup_size(MEL_WG, 1, 1)
fn mel_norm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = index(gid);
    if (e >= p.rows * p.n_mels) {
        return;
    }
    let m = e / p.rows;
    let t = e % p.rows;
    var x = -10.0;
    if (t < p.live) {
        x = src[t * p.n_mels + m];
    }
    let floor = unord(atomicLoad(&gmax[0])) - 8.0;
    dst[e] = (max(x, floor) + 4.0) / 4.0;
}
