// Elementwise kernels over n f32 values. Dispatch is 2-D (x + y * 65535 workgroups) so any n up
// to 2^32 fits the per-dimension workgroup limit; indices past n are skipped.
//
// GELU, the exact erf form OpenAI's Whisper uses: 0.5 x (1 + erf(x / sqrt 2)). WGSL has no erf;
// we use Abramowitz & Stegun 7.1.26: erf(z) ~ 1 - (a1 t + ... + a5 t^5) exp(-z^2),
// t = 1 / (1 + 0.3275911 |z|), odd extension for z < 0. Its maximum absolute error is 1.5e-7
// for erf, hence <= 0.75e-7 |x| for GELU, plus a few f32 ulps of rounding in evaluation.

struct Params {
    n: u32,      // values (one thread each)
    run: u32,    // transpose: rows of inp; kv_append: new values per sequence
    stride: u32, // transpose: columns of inp; kv_append: values between sequences in the cache
    offset: u32, // kv_append: where the new values go in each sequence's cache
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn erf_as(z: f32) -> f32 {
    let az = abs(z);
    let t = 1.0 / (1.0 + 0.3275911 * az);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-az * az);
    return select(r, -r, z < 0.0);
}

fn index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * (65535u * EW_WG);
}

// a = gelu(a), in place (b is bound but unused).
@compute @workgroup_size(EW_WG, 1, 1)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        let v = a[i];
        a[i] = 0.5 * v * (1.0 + erf_as(v * 0.70710678118654752));
    }
}

// a += b (the residual add).
@compute @workgroup_size(EW_WG, 1, 1)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        a[i] = a[i] + b[i];
    }
}

// Transpose: a = out [cols, rows], b = inp [rows, cols]; p.n = rows * cols,
// p.run = rows, p.stride = cols. One thread per output element (out row-major [cols, rows]).
@compute @workgroup_size(EW_WG, 1, 1)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        let c = i / p.run;
        let r = i % p.run;
        a[i] = b[r * p.stride + c];
    }
}

// Append new K or V rows to per-sequence caches: a = cache [n_seq, ctx, d], b = the new rows
// [n_seq, n_new, d] (sequence-major). p.n = n_seq * n_new * d, p.run = n_new * d (per
// sequence), p.stride = ctx * d (cache stride between sequences), p.offset = pos0 * d (where the
// new rows go). One thread per new value.
@compute @workgroup_size(EW_WG, 1, 1)
fn kv_append(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        let s = i / p.run;
        let r = i % p.run;
        a[s * p.stride + p.offset + r] = b[i];
    }
}
