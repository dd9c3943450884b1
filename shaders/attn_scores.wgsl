// Scaled attention scores of one head, before the softmax (the softmax kernel runs next): the
// cross-attention weights used for word timestamps, as ops::attention_weights.
// out[(out_row0 + i) * n_kv + j] = scale * q_h[i] · k_h[j] for query rows i < n_q of q [n_q, d]
// and key rows j < n_kv of k [n_kv, d], head h the columns h * head_dim .. (bound as vec4s:
// head_dim = 4 * AT_HD4). One thread per (key, query) = global_invocation_id (x, y), both
// guarded. Binding 2 is unused (the layout is shared with the other 3-input kernels).

// `p: Params` (n_q, n_kv, d4, head, out_row0, scale) is declared by the host from `AttnScoresParams` in kernels/attn_scores.rs.

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(64, 1, 1)
fn attn_scores(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    if (j >= p.n_kv || i >= p.n_q) {
        return;
    }
    let col = p.head * AT_HD4;
    var d = vec4<f32>(0.0);
    for (var c = 0u; c < AT_HD4; c++) {
        d += q[i * p.d4 + col + c] * k[j * p.d4 + col + c];
    }
    out[(p.out_row0 + i) * p.n_kv + j] = p.scale * (d.x + d.y + d.z + d.w);
}
