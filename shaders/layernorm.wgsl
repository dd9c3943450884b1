// Layer norm over each row of x [rows, cols]: out = (x - mean) / sqrt(var + eps) * gamma + beta,
// eps = 1e-5, biased variance, two passes (mean, then centred squares) like ops::layer_norm.
// One workgroup per row (workgroup_id.x + workgroup_id.y * 65535, so any row count fits the
// dispatch limits); LN_WG threads stride over the columns and reduce in workgroup memory
// (LN_WG must be a power of two). out may alias x only through separate buffers (it is bound
// separately), so the kernel is out-of-place. With in_step / in_first it normalises a strided
// subset of the input rows into consecutive output rows (the decoder's last row per sequence).

// `p: Params` (rows, cols, in_step, in_first) is declared by the host from `LayerNormParams` in kernels/layernorm.rs.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> red: array<f32, LN_WG>;

fn reduce_sum(tid: u32, v: f32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    for (var s = LN_WG / 2u; s > 0u; s /= 2u) {
        if (tid < s) {
            red[tid] += red[tid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(LN_WG, 1, 1)
fn layer_norm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x + wid.y * 65535u;
    let tid = lid.x;
    // Rows past the end still run the reductions (uniform control flow) but read row 0.
    let base = select(0u, (row * p.in_step + p.in_first) * p.cols, row < p.rows);
    let obase = row * p.cols;
    var s = 0.0;
    for (var c = tid; c < p.cols; c += LN_WG) {
        s += x[base + c];
    }
    let mean = reduce_sum(tid, s) / f32(p.cols);
    var q = 0.0;
    for (var c = tid; c < p.cols; c += LN_WG) {
        let d = x[base + c] - mean;
        q += d * d;
    }
    let var_ = reduce_sum(tid, q) / f32(p.cols);
    let inv = 1.0 / sqrt(var_ + 1e-5);
    if (row < p.rows) {
        for (var c = tid; c < p.cols; c += LN_WG) {
            out[obase + c] = (x[base + c] - mean) * inv * gamma[c] + beta[c];
        }
    }
}
