//! Token plus positional embedding.
//!
//! GPU twin: `backend/gpu/kernels/embed.rs` (`shaders/embed.wgsl`). Test:
//! `tests/kernels_vs_cpu/embed.rs`.

/// Token embedding plus learned position embedding: `out[i] = tokens[ids[i]] + positions[pos0 + i]`.
pub fn embed(
    table: &[f32],
    positions: &[f32],
    d: usize,
    ids: &[u32],
    pos0: usize,
    out: &mut [f32],
) {
    for (i, &id) in ids.iter().enumerate() {
        let t = &table[id as usize * d..(id as usize + 1) * d];
        let p = &positions[(pos0 + i) * d..(pos0 + i + 1) * d];
        for j in 0..d {
            out[i * d + j] = t[j] + p[j];
        }
    }
}
