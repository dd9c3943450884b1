// Token embedding + learned positions: out[i, :] = table[ids[i] - row_base, :] + pos[pos0 + i, :]
// for the tokens whose id lies in [row_base, row_base + table_rows). Batched: the tokens are
// n_tok / per_seq sequences of per_seq each, all starting at position pos0.
// The table binding may be one row range of a larger table (whisper-small's f32 token table is
// 159 MB, more than lavapipe's 128 MiB storage binding): the host records one dispatch per range
// and every token is written by exactly the one dispatch whose range holds it.
// Thread (x = column, y = token); ids outside the range are skipped; indices guarded.

struct Params {
    n_tok: u32,
    d: u32,
    pos0: u32,
    row_base: u32,
    table_rows: u32,
    per_seq: u32,  // tokens per sequence: token i sits at position pos0 + i % per_seq
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
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
    out[i * p.d + c] = table[r * p.d + c] + pos[(p.pos0 + i % p.per_seq) * p.d + c];
}
