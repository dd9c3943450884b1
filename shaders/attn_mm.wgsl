// Unfused multi-head attention for CPU-type adapters (lavapipe), as three dispatches per chunk
// of query rows: scores S = Q_h·K_hᵀ·scale (attn_qk), a row softmax (softmax.wgsl), then
// O_h = P·V_h (attn_pv). Both products are register-blocked like `matmul_reg` (no workgroup
// memory or barriers, which cost more than they buy on a CPU), reading the per-head operands in
// place: head h is columns h·64 .. h·64 + 64 of q / k / v / out, rows d4 vec4s apart. The score
// chunk is [n_head, n_q, n_kv] (n_q ≤ the chunk size, so memory stays bounded: 256 query rows ×
// 1500 keys × 6 heads is 9 MB). The fused online-softmax kernel (attention.wgsl) remains the
// one for real GPUs; `KernelConfig::attn_unfused` picks.
//
// Constants (prepended by the host): AM_WG_X, AM_WG_Y workgroup shape; AM_TM query rows per
// thread; AM_TN keys per thread (attn_qk); AM_TN4 output vec4 columns per thread (attn_pv);
// AT_HD4 = head_dim / 4.
//
// Bounds: loads clamp row / key indices to n_q − 1 / n_kv − 1 (clamped results are never
// stored); stores are guarded. attn_pv needs n_kv % 4 == 0 (score rows read as vec4s), which the
// host checks; it falls back to the fused kernel otherwise.

// `p: Params` (n_q, n_kv, d4, row0, scale) is declared by the host from `AttnMmParams` in kernels/attn_mm.rs.

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;   // q (qk) or scores (pv)
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;   // k (qk) or v (pv)
@group(0) @binding(2) var<storage, read> unused: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // scores (qk) or out (pv)
@group(0) @binding(4) var<uniform> p: Params;

// S[h, r, j] = scale · q[row0 + r, head h] · k[j, head h]; workgroup_id.z = h.
@compute @workgroup_size(AM_WG_X, AM_WG_Y, 1)
fn attn_qk(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.z;
    let r0 = gid.y * AM_TM;
    let j0 = gid.x * AM_TN;
    if (r0 >= p.n_q || j0 >= p.n_kv) {
        return;
    }
    let col = h * AT_HD4;
    var qo: array<u32, AM_TM>;
    var ko: array<u32, AM_TN>;
    for (var i = 0u; i < AM_TM; i++) {
        qo[i] = (p.row0 + min(r0 + i, p.n_q - 1u)) * p.d4 + col;
    }
    for (var j = 0u; j < AM_TN; j++) {
        ko[j] = min(j0 + j, p.n_kv - 1u) * p.d4 + col;
    }
    var acc: array<array<f32, AM_TN>, AM_TM>;
    for (var i = 0u; i < AM_TM; i++) {
        for (var j = 0u; j < AM_TN; j++) {
            acc[i][j] = 0.0;
        }
    }
    for (var c = 0u; c < AT_HD4; c++) {
        var kv: array<vec4<f32>, AM_TN>;
        for (var j = 0u; j < AM_TN; j++) {
            kv[j] = b[ko[j] + c];
        }
        for (var i = 0u; i < AM_TM; i++) {
            let qv = a[qo[i] + c];
            for (var j = 0u; j < AM_TN; j++) {
                acc[i][j] += dot(qv, kv[j]);
            }
        }
    }
    for (var i = 0u; i < AM_TM; i++) {
        let r = r0 + i;
        for (var j = 0u; j < AM_TN; j++) {
            let key = j0 + j;
            if (r < p.n_q && key < p.n_kv) {
                out[(h * p.n_q + r) * p.n_kv + key] = acc[i][j] * p.scale;
            }
        }
    }
}

// out[row0 + r, head h] = Σ_j P[h, r, j] · v[j, head h]; thread owns AM_TM rows and AM_TN4
// vec4 columns of the head's 64; workgroup_id.z = h.
@compute @workgroup_size(AM_WG_X, AM_WG_Y, 1)
fn attn_pv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.z;
    let r0 = gid.y * AM_TM;
    let c0 = gid.x * AM_TN4;
    if (r0 >= p.n_q || c0 >= AT_HD4) {
        return;
    }
    let kv4 = p.n_kv / 4u;
    let col = h * AT_HD4;
    var po: array<u32, AM_TM>;
    for (var i = 0u; i < AM_TM; i++) {
        po[i] = (h * p.n_q + min(r0 + i, p.n_q - 1u)) * kv4;
    }
    var acc: array<array<vec4<f32>, AM_TN4>, AM_TM>;
    for (var i = 0u; i < AM_TM; i++) {
        for (var t = 0u; t < AM_TN4; t++) {
            acc[i][t] = vec4<f32>(0.0);
        }
    }
    for (var j4 = 0u; j4 < kv4; j4++) {
        var vv: array<array<vec4<f32>, AM_TN4>, 4>;
        for (var jj = 0u; jj < 4u; jj++) {
            let vrow = (j4 * 4u + jj) * p.d4 + col;
            for (var t = 0u; t < AM_TN4; t++) {
                vv[jj][t] = b[vrow + min(c0 + t, AT_HD4 - 1u)];
            }
        }
        for (var i = 0u; i < AM_TM; i++) {
            let pr = a[po[i] + j4];
            for (var t = 0u; t < AM_TN4; t++) {
                acc[i][t] += pr.x * vv[0][t] + pr.y * vv[1][t] + pr.z * vv[2][t] + pr.w * vv[3][t];
            }
        }
    }
    for (var i = 0u; i < AM_TM; i++) {
        let r = r0 + i;
        if (r < p.n_q) {
            for (var t = 0u; t < AM_TN4; t++) {
                let c = c0 + t;
                if (c < AT_HD4) {
                    let o = (p.row0 + r) * p.d4 * 4u + (col + c) * 4u;
                    out[o] = acc[i][t].x;
                    out[o + 1u] = acc[i][t].y;
                    out[o + 2u] = acc[i][t].z;
                    out[o + 3u] = acc[i][t].w;
                }
            }
        }
    }
}
