// Numerically stable softmax of each row of x [rows, cols], in place, with an optional causal
// mask: with causal = 1, row i keeps columns 0 ..= offset + i and the others become exactly 0
// (as if they were -inf before the softmax, the convention of ops::attention). A row with no
// visible column (impossible for the decoder) is all zeros.
// One workgroup per row (workgroup_id.x + workgroup_id.y * 65535); SM_WG threads (a power of
// two) stride over the columns, max and sum are workgroup reductions.

// `p: Params` (rows, cols, causal, offset) is declared by the host from `SoftmaxParams` in kernels/softmax.rs.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

var<workgroup> red: array<f32, SM_WG>;

@compute @workgroup_size(SM_WG, 1, 1)
fn softmax(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x + wid.y * 65535u;
    let tid = lid.x;
    let base = select(0u, row * p.cols, row < p.rows);
    var visible = p.cols;
    if (p.causal != 0u) {
        visible = min(p.cols, p.offset + row + 1u);
    }
    // max
    var m = -3.4028234e38;
    for (var c = tid; c < visible; c += SM_WG) {
        m = max(m, x[base + c]);
    }
    red[tid] = m;
    workgroupBarrier();
    for (var s = SM_WG / 2u; s > 0u; s /= 2u) {
        if (tid < s) {
            red[tid] = max(red[tid], red[tid + s]);
        }
        workgroupBarrier();
    }
    let mx = red[0];
    workgroupBarrier();
    // sum of exp
    var sum = 0.0;
    for (var c = tid; c < visible; c += SM_WG) {
        sum += exp(x[base + c] - mx);
    }
    red[tid] = sum;
    workgroupBarrier();
    for (var s = SM_WG / 2u; s > 0u; s /= 2u) {
        if (tid < s) {
            red[tid] += red[tid + s];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    if (row < p.rows) {
        for (var c = tid; c < p.cols; c += SM_WG) {
            var v = 0.0;
            if (c < visible) {
                v = exp(x[base + c] - mx) * inv;
            }
            x[base + c] = v;
        }
    }
}
