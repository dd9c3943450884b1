//! The int8 kernels against the quantized product in f64, and against each other.

use super::*;
use crate::backend::cpu::ops::test_data as data;
use crate::model::quant::quantize_row;

/// The exact result of the quantized arithmetic, in f64.
fn reference(x: &[f32], m: usize, q: &QuantizedMatrix, bias: &[f32]) -> Vec<f64> {
    let (n, k) = (q.rows, q.cols);
    let mut out = vec![0.0; m * n];
    let mut xq = vec![0i8; k];
    for i in 0..m {
        let sx = quantize_row(&x[i * k..(i + 1) * k], &mut xq);
        for j in 0..n {
            let acc: i64 = (0..k).map(|t| xq[t] as i64 * q.q[j * k + t] as i64).sum();
            out[i * n + j] = acc as f64 * sx as f64 * q.scale[j] as f64 + bias[j] as f64;
        }
    }
    out
}

#[test]
fn shared_products_give_each_products_bits() {
    // Products of one input and widths that split into row blocks (1500 rows) and not.
    for &(m, k, ns) in &[
        (1500, 384, &[384, 384, 7][..]),
        (13, 385, &[130, 1, 64][..]),
    ] {
        let x = data(1, m * k);
        let mats: Vec<(Int8Matrix, Vec<f32>)> = ns
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let w = data(10 + i as u32, n * k);
                (Int8Matrix::quantize(&w, n, k), data(20 + i as u32, n))
            })
            .collect();
        let mut outs: Vec<Vec<f32>> = ns.iter().map(|&n| vec![f32::NAN; m * n]).collect();
        let mut products: Vec<Product> = mats
            .iter()
            .zip(outs.iter_mut())
            .map(|((w, b), out)| Product {
                w,
                bias: Some(b),
                out,
                layout: OutLayout::Rows,
            })
            .collect();
        linear_shared(&x, m, &mut products);
        for ((w, b), out) in mats.iter().zip(&outs) {
            let mut alone = vec![f32::NAN; m * w.n];
            linear(&x, m, w, Some(b), &mut alone);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(bits(out) == bits(&alone), "{m}x{k}x{}", w.n);
        }
    }
}

/// [`OutLayout::Blocks64`] (the cross-attention's head-major keys and values): every output
/// has the bits of the row layout, each 64-column block's rows together. Written by the VNNI
/// kernel, by the AMX kernel on the tile emulator (32-row tile pairs, then rows past them on
/// VNNI), and through a copy by the rows kernel; products split into row blocks (1500 rows)
/// and not.
#[test]
fn blocks_of_64_columns_hold_the_rows_bits() {
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for &(m, k, n) in &[(37, 100, 128), (1500, 384, 384), (5, 64, 64)] {
        let (x, w, b) = (data(31, m * k), data(32, n * k), data(33, n));
        let q = QuantizedMatrix::quantize(&w, n, k);
        let mut kernels = vec![("rows kernel", Int8Matrix::from_quantized(q.clone(), false))];
        if has_vnni() {
            kernels.push(("vnni", Int8Matrix::from_quantized(q, true)));
        }
        for (name, mat) in &kernels {
            let mut rows = vec![f32::NAN; m * n];
            linear(&x, m, mat, Some(&b), &mut rows);
            let mut want = vec![f32::NAN; m * n];
            crate::backend::cpu::ops::write_head_major(&rows, m, n, n / PANEL, &mut want);
            let mut got = vec![f32::NAN; m * n];
            let (w, bias, layout) = (mat, Some(&b[..]), OutLayout::Blocks64);
            let out = &mut got;
            linear_shared(
                &x,
                m,
                &mut [Product {
                    w,
                    bias,
                    out,
                    layout,
                }],
            );
            assert!(bits(&got) == bits(&want), "{name} {m}x{k}x{n}");
            #[cfg(target_arch = "x86_64")]
            if *name == "vnni" && k.is_multiple_of(64) {
                let mut emulated = vec![f32::NAN; m * n];
                let out = &mut emulated;
                let products = &mut [Product {
                    w,
                    bias,
                    out,
                    layout,
                }];
                linear_panels_shared::<crate::backend::cpu::amx::TileFile>(&x, m, products, true);
                assert!(bits(&emulated) == bits(&want), "emulated tiles {m}x{k}x{n}");
            }
        }
    }
}

#[test]
fn both_kernels_give_the_quantized_product_on_odd_shapes() {
    for &(m, k, n) in &[
        (1, 384, 384),
        (5, 385, 7),
        (7, 6, 65),
        (13, 384, 130),
        (1, 1, 1),
    ] {
        let (x, w, b) = (data(1, m * k), data(2, n * k), data(3, n));
        let q = QuantizedMatrix::quantize(&w, n, k);
        let want = reference(&x, m, &q, &b);
        let mut layouts = vec![false];
        if has_vnni() {
            layouts.push(true);
        }
        let mut results = Vec::new();
        for panels in layouts {
            let mat = Int8Matrix::from_quantized(q.clone(), panels);
            let mut out = vec![f32::NAN; m * n];
            linear(&x, m, &mat, Some(&b), &mut out);
            for (idx, (&g, &r)) in out.iter().zip(&want).enumerate() {
                // Exact integer sums; the f32 epilogue rounds twice (product, bias add).
                assert!(
                    (g as f64 - r).abs() <= 1e-6 * (1.0 + r.abs()),
                    "{m}x{k}x{n} panels={panels} [{idx}]: {g} vs {r}"
                );
            }
            // Embedding rows come back from either layout.
            let mut row = vec![0.0; k];
            mat.row_f32(n - 1, &mut row);
            assert_eq!(row, q.dequantize()[(n - 1) * k..n * k]);
            results.push(out);
        }
        // The two kernels agree to the bit.
        if results.len() == 2 {
            let bits = |v: &Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&results[0]), bits(&results[1]), "{m}x{k}x{n}");
        }
    }
}

/// The AMX kernel's addressing and blocking, run on the tile emulator (every AVX-512 VNNI
/// machine), and on the CPU's tiles where `amx::available()`: VNNI's bits on odd shapes
/// (row tails of 1-15 past the tiles, one or two row tiles, partial panels, `k4` not a
/// multiple of 64, which stays on VNNI).
#[cfg(target_arch = "x86_64")]
#[test]
fn amx_tiles_give_the_vnni_bits_on_odd_shapes() {
    use crate::backend::cpu::amx::{assert_tiles_ran_if_required, Feature};
    if !has_vnni() {
        assert_tiles_ran_if_required(Feature::Int8, false);
        eprintln!("no AVX-512 VNNI here: the AMX kernel's epilogue needs it; not run");
        return;
    }
    let on_cpu_tiles = amx::available();
    assert_tiles_ran_if_required(Feature::Int8, on_cpu_tiles);
    // Four threads, so the larger products also split their rows into blocks (the last
    // one with a tail of rows off the tiles).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    for &(m, k, n) in &[
        (16, 64, 7),
        (17, 64, 64),
        (31, 192, 65),
        (32, 128, 33),
        (53, 384, 130),
        (100, 256, 200),
        (40, 100, 70),
        (300, 64, 70),
        (500, 128, 130),
    ] {
        let (x, w, b) = (data(11, m * k), data(12, n * k), data(13, n));
        let q = QuantizedMatrix::quantize(&w, n, k);
        let want = reference(&x, m, &q, &b);
        let mat = Int8Matrix::from_quantized(q, true);
        let run_on = |tiles: Option<bool>| {
            let mut out = vec![f32::NAN; m * n];
            match tiles {
                None => linear_panels::<amx::CpuTiles>(&x, m, &mat, Some(&b), &mut out, false),
                Some(false) => linear_panels::<crate::backend::cpu::amx::TileFile>(
                    &x,
                    m,
                    &mat,
                    Some(&b),
                    &mut out,
                    true,
                ),
                Some(true) => linear_panels::<amx::CpuTiles>(&x, m, &mat, Some(&b), &mut out, true),
            }
            out.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        };
        let run = |tiles: Option<bool>| pool.install(|| run_on(tiles));
        let vnni = run(None);
        for (idx, (&g, &r)) in vnni.iter().zip(&want).enumerate() {
            let g = f32::from_bits(g) as f64;
            assert!(
                (g - r).abs() <= 1e-6 * (1.0 + r.abs()),
                "{m}x{k}x{n} [{idx}]"
            );
        }
        assert_eq!(run(Some(false)), vnni, "emulated tiles, {m}x{k}x{n}");
        if on_cpu_tiles {
            assert_eq!(run(Some(true)), vnni, "the CPU's tiles, {m}x{k}x{n}");
        }
    }
    if !on_cpu_tiles {
        eprintln!("no usable AMX here: the CPU's tiles not run (the emulator's were)");
    }
}

#[test]
fn the_avx2_dot_product_gives_the_same_integers() {
    #[cfg(target_arch = "x86_64")]
    if crate::backend::cpu::isa::isa() >= crate::backend::cpu::isa::Isa::Avx2 {
        // Extremes included: -128 and 127 on both sides.
        let bytes = |seed: u32, n: usize| -> Vec<u8> {
            (0..n as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
                .chain([0x80, 0x7F, 0x80])
                .collect()
        };
        for n in [0, 1, 15, 16, 17, 31, 33, 384, 1000] {
            let a = bytes(1, n);
            let b: Vec<i8> = bytes(2, n).into_iter().map(|v| v as i8).collect();
            // SAFETY: isa() found AVX2.
            assert_eq!(unsafe { dot_i8_avx2(&a, &b) }, dot_i8(&a, &b), "n = {n}");
        }
    }
}

#[test]
fn close_to_f32_product() {
    // Quantization error: each product term is off by at most about (|x|·sw + |w|·sx)/2,
    // so |error| ≲ √k · (amax_x · amax_w / 127) for random signs; check 4× that.
    let (m, k, n) = (3, 384, 50);
    let (x, w) = (data(7, m * k), data(8, n * k));
    let mat = Int8Matrix::quantize(&w, n, k);
    let mut out = vec![0.0; m * n];
    linear(&x, m, &mat, None, &mut out);
    let bound = 4.0 * (k as f32).sqrt() * 0.5 * 0.5 / 127.0;
    for i in 0..m {
        for j in 0..n {
            let exact: f32 = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum();
            assert!((out[i * n + j] - exact).abs() < bound, "[{i},{j}]");
        }
    }
}
