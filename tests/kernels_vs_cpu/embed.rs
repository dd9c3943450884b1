//! Embedding gather (f32 and int8 tables, split tables) against `ops::embed`. Kernel:
//! `src/backend/gpu/kernels/embed.rs`, `shaders/embed.wgsl`; twin: `src/backend/cpu/ops/embed.rs`.

use super::*;

/// `run_embed` of 13 ids (9 random, then the table's first and last rows and both sides of a
/// 64-row range boundary) at position 5 from a `[1000, 384]` table stored as `ty`, with and
/// without a binding limit of `split` bytes, against `ops::embed` of what the device's table
/// holds (`on_device`: the table as `ty` stores it); `check(got, want, what)`.
fn check_embed(
    seed: u64,
    (ty, split): (WeightType, u64),
    shape_rows: impl Fn(usize, &mut [f32]),
    on_device: impl Fn(&[f32]) -> Vec<f32>,
    check: impl Fn(&[f32], &[f32], &str),
) {
    let Some(ctx) = gpu() else { return };
    let mut rng = Lcg(seed);
    let (vocab, d, n_ctx) = (1000, 384, 448);
    let mut table = rng.vec(vocab * d);
    for (r, row) in table.chunks_exact_mut(d).enumerate() {
        shape_rows(r, row);
    }
    let pos = rng.vec(n_ctx * d);
    let stored = on_device(&table);
    let mut ids: Vec<u32> = (0..9).map(|_| rng.below(vocab as u32)).collect();
    ids.extend_from_slice(&[0, 999, 64, 63]);
    for over in [None, Some(split)] {
        let kern = kernels_with(&ctx, |c| c.max_binding_override = over);
        let got = kern.run_embed(&ctx, &table, ty, &pos, d, &ids, 5).unwrap();
        let mut want = vec![0.0; ids.len() * d];
        ops::embed(&stored, &pos, d, &ids, 5, &mut want);
        check(
            &got,
            &want,
            &format!("{} embed (binding override {over:?})", ty.name()),
        );
    }
}

#[test]
fn embed_matches_cpu_including_split_table() {
    // One addition each: exact.
    let exact = |got: &[f32], want: &[f32], what: &str| assert_eq!(got, want, "{what}");
    check_embed(
        12,
        (WeightType::F32, 64 * 384 * 4),
        |_, _| {},
        <[f32]>::to_vec,
        exact,
    );
}

/// The int8 table (the model's token embedding under `--dtype int8`): each element is
/// `q · scale + pos`, as the CPU computes it from the dequantized table, except that the device
/// may fuse the multiply and add (one rounding instead of two): at most ε·(|q·scale| + |pos|)
/// apart, bounded by 2ε·(1 + |ref|) with values below 2. Also split into row ranges (64 rows of
/// 96 quads per binding: table and scales bound at offsets).
#[test]
fn embed_int8_table_matches_cpu_including_split_table() {
    // Rows of different magnitudes, so the row scales differ.
    let rows = |r: usize, row: &mut [f32]| row.iter_mut().for_each(|v| *v /= (1 + r % 4) as f32);
    let dequantized = |t: &[f32]| QuantizedMatrix::quantize(t, t.len() / 384, 384).dequantize();
    let fused = |got: &[f32], want: &[f32], what: &str| {
        let e = max_err(got, want);
        assert!(e <= 2.0 * f32::EPSILON, "{what}: {e}");
    };
    check_embed(22, (WeightType::Int8, 64 * 384), rows, dequantized, fused);
}
