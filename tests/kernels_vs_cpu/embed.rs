//! Embedding gather (f32 and int8 tables, split tables) against `ops::embed`. Kernel:
//! `src/backend/gpu/kernels/embed.rs`, `shaders/embed.wgsl`; twin: `src/backend/cpu/ops/embed.rs`.

use super::*;

#[test]
fn embed_matches_cpu_including_split_table() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Lcg(12);
    let (vocab, d, n_ctx) = (1000, 384, 448);
    let table = rng.vec(vocab * d);
    let pos = rng.vec(n_ctx * d);
    let mut ids: Vec<u32> = (0..9).map(|_| rng.below(vocab as u32)).collect();
    ids.extend_from_slice(&[0, 999, 64, 63]);
    for over in [None, Some(64 * 384 * 4)] {
        let kern = kernels_with(&ctx, |c| c.max_binding_override = over);
        let got = kern
            .run_embed(&ctx, &table, WeightType::F32, &pos, d, &ids, 5)
            .unwrap();
        let mut want = vec![0.0; ids.len() * d];
        ops::embed(&table, &pos, d, &ids, 5, &mut want);
        assert_eq!(got, want, "embed (binding override {over:?})"); // one addition each: exact
    }
}

/// The int8 table (the model's token embedding under `--dtype int8`): each element is
/// `q · scale + pos`, as the CPU computes it from the dequantized table, except that the device
/// may fuse the multiply and add (one rounding instead of two): at most ε·(|q·scale| + |pos|)
/// apart, bounded by 2ε·(1 + |ref|) with values below 2. Also split into row ranges (64 rows of
/// 96 quads per binding: table and scales bound at offsets).
#[test]
fn embed_int8_table_matches_cpu_including_split_table() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Lcg(22);
    let (vocab, d, n_ctx) = (1000, 384, 448);
    let mut table = rng.vec(vocab * d);
    for (r, row) in table.chunks_exact_mut(d).enumerate() {
        row.iter_mut().for_each(|v| *v /= (1 + r % 4) as f32);
    }
    let pos = rng.vec(n_ctx * d);
    let dequantized = QuantizedMatrix::quantize(&table, vocab, d).dequantize();
    let mut ids: Vec<u32> = (0..9).map(|_| rng.below(vocab as u32)).collect();
    ids.extend_from_slice(&[0, 999, 64, 63]);
    for over in [None, Some(64 * 384)] {
        let kern = kernels_with(&ctx, |c| c.max_binding_override = over);
        let got = kern
            .run_embed(&ctx, &table, WeightType::Int8, &pos, d, &ids, 5)
            .unwrap();
        let mut want = vec![0.0; ids.len() * d];
        ops::embed(&dequantized, &pos, d, &ids, 5, &mut want);
        let e = max_err(&got, &want);
        assert!(
            e <= 2.0 * f32::EPSILON,
            "int8 embed (binding override {over:?}): {e}"
        );
    }
}
