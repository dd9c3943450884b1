// Elementwise kernels over n f32 values. Dispatch is 2-D (x + y * 65535 workgroups) so any n up
// to 2^32 fits the per-dimension workgroup limit; indices past n are skipped.
// GELU (`gelu_erf`) is shaders/gelu.wgsl, appended by the host.

// `p: Params` (n, run, stride, offset) is declared by the host from `ElementwiseParams` in kernels/elementwise.rs.

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * (65535u * EW_WG);
}

// a = gelu(a), in place (b is bound but unused).
@compute @workgroup_size(EW_WG, 1, 1)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.n) {
        let v = a[i];
        a[i] = gelu_erf(v);
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
