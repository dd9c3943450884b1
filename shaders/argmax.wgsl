// Index of the largest value of each row of x [rows, n] (the first index on ties, like
// ops::argmax; NaNs never win a comparison). One workgroup per row: AM_WG threads scan strided
// elements keeping (value, index), then a tree reduction in workgroup memory that prefers the
// larger value and, on equal values, the smaller index. Writes one u32 per row.

struct Params {
    n: u32,
    rows: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
    _p5: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> bv: array<f32, AM_WG>;
var<workgroup> bi: array<u32, AM_WG>;

@compute @workgroup_size(AM_WG, 1, 1)
fn argmax(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x;
    let tid = lid.x;
    let base = select(0u, row * p.n, row < p.rows);
    var best = -3.4028235e38;
    var idx = 0xffffffffu;
    for (var i = tid; i < p.n; i += AM_WG) {
        let v = x[base + i];
        // strictly greater: within a thread, indices only grow, so the first max is kept
        if (v > best || (idx == 0xffffffffu && v == best)) {
            best = v;
            idx = i;
        }
    }
    bv[tid] = best;
    bi[tid] = idx;
    workgroupBarrier();
    for (var s = AM_WG / 2u; s > 0u; s /= 2u) {
        if (tid < s) {
            let ov = bv[tid + s];
            let oi = bi[tid + s];
            let mv = bv[tid];
            let mi = bi[tid];
            if (oi != 0xffffffffu && (mi == 0xffffffffu || ov > mv || (ov == mv && oi < mi))) {
                bv[tid] = ov;
                bi[tid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (tid == 0u && row < p.rows) {
        out[row] = select(bi[0], 0u, bi[0] == 0xffffffffu);
    }
}
