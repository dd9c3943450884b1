
// ---------------------------------------------------------------------------------------------
// shaders/reduce.wgsl, appended to the families that reduce across a workgroup (`+ "reduce.wgsl"`
// in their parameter block). The shader defines RED_WG, its workgroup size (a power of two).
// Each call is a barrier-separated tree over `red` that every thread of the workgroup must
// reach (uniform control flow); all threads get the result.

var<workgroup> red: array<f32, RED_WG>;

fn reduce_sum(tid: u32, v: f32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    for (var s = RED_WG / 2u; s > 0u; s /= 2u) {
        if (tid < s) {
            red[tid] += red[tid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_max(tid: u32, v: f32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    for (var s = RED_WG / 2u; s > 0u; s /= 2u) {
        if (tid < s) {
            red[tid] = max(red[tid], red[tid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}
