// Multi-head scaled dot-product attention, fused: softmax(q kᵀ * scale [+ causal mask]) v,
// without materialising the [n_q, n_kv] score matrix (online softmax, FlashAttention style).
// q is [n_q, d], k and v are [n_kv, d], out is [n_q, d], d = n_head * head_dim, heads are
// contiguous column blocks (the twin is ops::attention). Bound as vec4s: head_dim = 4 * AT_HD4
// (64 for every Whisper size). With causal = 1, query i sits at absolute position offset + i and
// sees keys 0 ..= offset + i (the decoder's self-attention over its KV cache).
//
// Batched: workgroup_id.z is a sequence; its queries are rows z * n_q .. of q / out and its keys
// rows z * kv_stride .. of k / v (the decoder's per-sequence self-attention caches; kv_stride = 0
// lets every sequence read the same keys, the cross-attention over one window). Unbatched
// dispatches have z = 0.
//
// Bounds: key rows are clamped to n_kv - 1 for loads (masked keys get score -inf-like and weight
// exactly 0), query rows past n_q compute on a clamped row and are not stored.

// `p: Params` (n_q, n_kv, d4, n_head, causal, offset, scale, kv_stride) is declared by the host from `AttentionParams` in kernels/attention.rs.

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;

const NEG: f32 = -3.0e38;

fn keys_visible(qi: u32) -> u32 {
    if (p.causal != 0u) {
        return min(p.n_kv, p.offset + qi + 1u);
    }
    return p.n_kv;
}

// ---------------------------------------------------------------------------------------------
// Tiled kernel (encoder self-attention, cross-attention with many queries): a workgroup owns
// AT_BQ queries of one head (one query per thread, its q row and output accumulator in
// registers) and walks the keys in blocks of AT_BK, each block of K and V staged once in
// workgroup memory and shared by all AT_BQ queries. Per block: AT_BK scores, one rescale of the
// accumulator (online softmax), AT_BK fused multiply-adds of V rows.
var<workgroup> ks: array<vec4<f32>, AT_BK * AT_HD4>;
var<workgroup> vs: array<vec4<f32>, AT_BK * AT_HD4>;

@compute @workgroup_size(AT_BQ, 1, 1)
fn attn_tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.x;
    let h = wid.y;
    let qi = wid.x * AT_BQ + tid;
    let qrow = min(qi, p.n_q - 1u);
    let q0 = wid.z * p.n_q * p.d4;
    let k0 = wid.z * p.kv_stride * p.d4;
    let col = h * AT_HD4;
    var qv: array<vec4<f32>, AT_HD4>;
    var acc: array<vec4<f32>, AT_HD4>;
    for (var c = 0u; c < AT_HD4; c++) {
        qv[c] = q[q0 + qrow * p.d4 + col + c] * p.scale;
        acc[c] = vec4<f32>(0.0);
    }
    var m = NEG;
    var l = 0.0;
    let mine = keys_visible(qrow);
    // keys any query of this workgroup can see (uniform across the workgroup)
    let last_q = min(wid.x * AT_BQ + AT_BQ, p.n_q) - 1u;
    let kv_end = keys_visible(last_q);
    for (var kb = 0u; kb < kv_end; kb += AT_BK) {
        for (var e = tid; e < AT_BK * AT_HD4; e += AT_BQ) {
            let key = min(kb + e / AT_HD4, p.n_kv - 1u);
            let src = k0 + key * p.d4 + col + e % AT_HD4;
            ks[e] = k[src];
            vs[e] = v[src];
        }
        workgroupBarrier();
        if (kb < mine) {
            var s: array<f32, AT_BK>;
            var bmax = NEG;
            for (var j = 0u; j < AT_BK; j++) {
                var d = vec4<f32>(0.0);
                for (var c = 0u; c < AT_HD4; c++) {
                    d += qv[c] * ks[j * AT_HD4 + c];
                }
                let sc = select(NEG, d.x + d.y + d.z + d.w, kb + j < mine);
                s[j] = sc;
                bmax = max(bmax, sc);
            }
            let m_new = max(m, bmax);
            let corr = exp(m - m_new);
            l *= corr;
            for (var c = 0u; c < AT_HD4; c++) {
                acc[c] *= corr;
            }
            for (var j = 0u; j < AT_BK; j++) {
                let pj = exp(s[j] - m_new);
                l += pj;
                for (var c = 0u; c < AT_HD4; c++) {
                    acc[c] += pj * vs[j * AT_HD4 + c];
                }
            }
            m = m_new;
        }
        workgroupBarrier();
    }
    if (qi < p.n_q) {
        let inv = 1.0 / l;
        for (var c = 0u; c < AT_HD4; c++) {
            out[q0 + qi * p.d4 + col + c] = acc[c] * inv;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Few-query kernel (decoder steps: one new token against the self-attention cache or the 1500
// encoder frames): workgroup (head, query) = (workgroup_id.x, workgroup_id.y); its AD_WG threads
// split the keys (thread t takes keys t, t + AD_WG, ...), each keeping its own online-softmax
// state, then the partial states are merged in workgroup memory.
var<workgroup> dm: array<f32, AD_WG>;
var<workgroup> dl: array<f32, AD_WG>;
var<workgroup> dacc: array<vec4<f32>, AD_WG * AT_HD4>;

@compute @workgroup_size(AD_WG, 1, 1)
fn attn_split(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.x;
    let h = wid.x;
    let qi = wid.y;
    let qrow = min(qi, p.n_q - 1u);
    let q0 = wid.z * p.n_q * p.d4;
    let k0 = wid.z * p.kv_stride * p.d4;
    let col = h * AT_HD4;
    var qv: array<vec4<f32>, AT_HD4>;
    var acc: array<vec4<f32>, AT_HD4>;
    for (var c = 0u; c < AT_HD4; c++) {
        qv[c] = q[q0 + qrow * p.d4 + col + c] * p.scale;
        acc[c] = vec4<f32>(0.0);
    }
    var m = NEG;
    var l = 0.0;
    let mine = keys_visible(qrow);
    for (var j = tid; j < mine; j += AD_WG) {
        let base = k0 + j * p.d4 + col;
        var d = vec4<f32>(0.0);
        for (var c = 0u; c < AT_HD4; c++) {
            d += qv[c] * k[base + c];
        }
        let s = d.x + d.y + d.z + d.w;
        let m_new = max(m, s);
        let corr = exp(m - m_new);
        let pj = exp(s - m_new);
        l = l * corr + pj;
        for (var c = 0u; c < AT_HD4; c++) {
            acc[c] = acc[c] * corr + pj * v[base + c];
        }
        m = m_new;
    }
    dm[tid] = m;
    dl[tid] = l;
    for (var c = 0u; c < AT_HD4; c++) {
        dacc[tid * AT_HD4 + c] = acc[c];
    }
    workgroupBarrier();
    var gm = NEG;
    for (var t = 0u; t < AD_WG; t++) {
        gm = max(gm, dm[t]);
    }
    var gl = 0.0;
    for (var t = 0u; t < AD_WG; t++) {
        gl += dl[t] * exp(dm[t] - gm);
    }
    let inv = 1.0 / gl;
    for (var c = tid; c < AT_HD4; c += AD_WG) {
        var s = vec4<f32>(0.0);
        for (var t = 0u; t < AD_WG; t++) {
            s += dacc[t * AT_HD4 + c] * exp(dm[t] - gm);
        }
        if (qi < p.n_q) {
            out[q0 + qi * p.d4 + col + c] = s * inv;
        }
    }
}

