// Index of the largest value of each row of x [rows, n] (the first index on ties, like
// ops::argmax; NaNs never win a comparison). One workgroup per row: AM_WG threads scan strided
// elements keeping (value, index), then a tree reduction in workgroup memory that prefers the
// larger value and, on equal values, the smaller index. Writes one u32 per row.

// `p: Params` (n, rows, mask_word) is declared by the host from `ArgmaxParams` in kernels/argmax.rs.

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

// Greedy decoding's token choice, for one row: the argmax of x with the ids whose bit is set in
// `mask` excluded, and its log-probability under the masked distribution,
// x[best] - log(sum(exp(x[i]))) over unmasked i. Each thread keeps (value, index) and an online
// (max, sum of exp) over its strided elements; the tree reduction merges both. Writes
// out[0] = index, out[1] = bitcast<u32>(log-probability): two numbers come back per token
// instead of the vocabulary's logits. p.mask_word is the mask row's first word.
@group(0) @binding(3) var<storage, read> mask: array<u32>;

var<workgroup> bm: array<f32, AM_WG>;
var<workgroup> bs: array<f32, AM_WG>;

@compute @workgroup_size(AM_WG, 1, 1)
fn greedy_pick(@builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.x;
    var best = -3.4028235e38;
    var idx = 0xffffffffu;
    var m = -3.4028235e38;
    var s = 0.0;
    for (var i = tid; i < p.n; i += AM_WG) {
        if (((mask[p.mask_word + i / 32u] >> (i % 32u)) & 1u) != 0u) {
            continue;
        }
        let v = x[i];
        if (v > best || (idx == 0xffffffffu && v == best)) {
            best = v;
            idx = i;
        }
        if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s += exp(v - m);
        }
    }
    bv[tid] = best;
    bi[tid] = idx;
    bm[tid] = m;
    bs[tid] = s;
    workgroupBarrier();
    for (var w = AM_WG / 2u; w > 0u; w /= 2u) {
        if (tid < w) {
            let ov = bv[tid + w];
            let oi = bi[tid + w];
            let mv = bv[tid];
            let mi = bi[tid];
            if (oi != 0xffffffffu && (mi == 0xffffffffu || ov > mv || (ov == mv && oi < mi))) {
                bv[tid] = ov;
                bi[tid] = oi;
            }
            let m1 = bm[tid];
            let m2 = bm[tid + w];
            let mx = max(m1, m2);
            bs[tid] = bs[tid] * exp(m1 - mx) + bs[tid + w] * exp(m2 - mx);
            bm[tid] = mx;
        }
        workgroupBarrier();
    }
    if (tid == 0u) {
        out[0] = select(bi[0], 0u, bi[0] == 0xffffffffu);
        out[1] = bitcast<u32>(bv[0] - (bm[0] + log(bs[0])));
    }
}
