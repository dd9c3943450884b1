// Token embedding + learned positions: out[i, :] = table[ids[i] - row_base, :] + pos[pos0 + i, :]
// for the tokens whose id lies in [row_base, row_base + table_rows). Batched: the tokens are
// n_tok / per_seq sequences of per_seq each, all starting at position pos0.
// The table binding may be one row range of a larger table (whisper-small's f32 token table is
// 159 MB, more than lavapipe's 128 MiB storage binding): the host records one dispatch per range
// and every token is written by exactly the one dispatch whose range holds it.
// Thread (x = column, y = token); ids outside the range are skipped; indices guarded.
//
// The table's binding 1 and `fn tload(r, c) -> f32` (element c of row r of this range) are
// prepended by the host (see `kernels.rs`): f32 rows of `row_stride` values, or int8 rows of
// `row_stride` u32 quads with an f32 scale per row (binding 5, bound over the same row range),
// dequantized as q·scale — the int8 token embedding is also the logits projection's weight.

// `p: Params` (n_tok, d, pos0, row_base, table_rows, per_seq, row_stride) is declared by the host from `EmbedParams` in kernels/embed.rs.

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> pos: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(EM_WG, 1, 1)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let i = gid.y;
    if (c >= p.d || i >= p.n_tok) {
        return;
    }
    let id = ids[i];
    if (id < p.row_base || id - p.row_base >= p.table_rows) {
        return;
    }
    let r = id - p.row_base;
    out[i * p.d + c] = tload(r, c) + pos[(p.pos0 + i % p.per_seq) * p.d + c];
}
