//! Fused (`attention.rs`) and unfused (`attn_mm.rs`) attention against `ops::attention`.
//! Kernels: `src/backend/gpu/kernels/{attention,attn_mm}.rs`, `shaders/{attention,attn_mm}.wgsl`;
//! twin: `src/backend/cpu/ops/attention.rs`.

use super::*;

/// (queries, keys, heads, causal offset) of one attention call.
type Shape = (usize, usize, usize, Option<usize>);

/// Fused (or unfused) attention of random q, k, v of `shape` against `ops::attention`.
fn check_attention(ctx: &GpuContext, kern: &Kernels, rng: &mut Lcg, shape: Shape, unfused: bool) {
    let (n_q, n_kv, n_head, causal) = shape;
    let d = n_head * 64;
    let q = rng.vec(n_q * d);
    let k = rng.vec(n_kv * d);
    let v = rng.vec(n_kv * d);
    let got = kern
        .run_attention(ctx, [&q, &k, &v], (n_q, n_kv, n_head, causal), unfused)
        .unwrap();
    let mut want = vec![0.0; n_q * d];
    ops::attention(
        ops::Products::F32,
        &q,
        &k,
        &v,
        ops::KvLayout::Rows,
        n_q,
        n_kv,
        d,
        n_head,
        causal,
        &mut want,
    );
    // Scores: 64-term dot products (≈ 64·ε·16 ≈ 1e-4 worst case, ~1e-6 typical) then exp and
    // sums over n_kv; outputs are convex combinations of |v| ≤ 1, so absolute error ≈ score
    // error + n_kv·ε. 2e-5 + n_kv·ε covers both with margin.
    let tol = 2e-5 + n_kv as f32 * f32::EPSILON;
    let e = max_abs_err(&got, &want);
    assert!(
        e <= tol,
        "attention {shape:?} (n_q, n_kv, heads, causal) unfused {unfused}: err {e} > {tol}"
    );
}

#[test]
fn attention_unfused_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    // The lavapipe default (chunks of 256 query rows) and 64-row chunks, so that several chunks
    // and a partial last one run; the same tolerance as the fused kernel (same f32 sums).
    for chunk in [256, 64] {
        let kern = kernels_with(&ctx, |c| c.attn_chunk = chunk);
        let mut rng = Lcg(12);
        for (n_q, n_kv, n_head) in [(300, 300, 6), (65, 1500, 6), (7, 20, 2), (1, 8, 1)] {
            check_attention(&ctx, &kern, &mut rng, (n_q, n_kv, n_head, None), true);
        }
    }
}

/// `check_attention` of the fused kernels under the adapter's config over `shapes`, with data
/// from seed `seed`.
fn check_fused(seed: u64, shapes: &[(usize, usize, usize, Option<usize>)]) {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    let mut rng = Lcg(seed);
    for &shape in shapes {
        check_attention(&ctx, &kern, &mut rng, shape, false);
    }
}

#[test]
fn attention_encoder_shapes_match_cpu() {
    check_fused(
        10,
        &[
            (300, 300, 6, None),
            (65, 1500, 6, None),  // cross-attention shape
            (7, 20, 2, Some(13)), // several prompt tokens, cache
            (63, 63, 1, Some(0)), // causal prefix
        ],
    );
}

#[test]
fn attention_decoder_shapes_match_cpu() {
    check_fused(
        11,
        &[
            (1, 37, 6, Some(36)), // self-attention, one new token
            (1, 1500, 6, None),   // cross-attention, one token
            (3, 3, 6, Some(0)),   // initial prompt
            (1, 1, 6, Some(0)),
        ],
    );
}
