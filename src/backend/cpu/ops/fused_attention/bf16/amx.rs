//! The bf16 attention on AMX tiles (`tdpbf16ps`, Intel Sapphire Rapids and later): the
//! module above's scheme, operands and layouts, with both products on the tiles. One
//! `tdpbf16ps` is 16 × 16 × 32 bf16 multiply-adds, 256 `vdpbf16ps`' worth.
//!
//! A task is 16 queries of one head (one tile's rows). Its query pairs stay in two tiles
//! (A: pairs 0-15 and 16-31 of each row, 128 bytes apart). Per block of [`KEY_BLOCK`] keys:
//! - scores: 4 accumulators of 16 queries × 16 keys at a time, each the sum of two products
//!   with a key tile (B: 16 pairs × 16 keys, read straight from the packed keys, whose rows
//!   are 32 keys = 128 bytes apart), stored to the block's score rows;
//! - the online softmax of the module above (`block_max`, `exp_weights`), which writes the
//!   weights as bf16 in key order: 32 keys of 16 rows are one A tile (rows 256 bytes apart);
//! - values: 4 accumulators of 16 queries × 16 dimensions, each the sum over the block's key
//!   pairs of the weight tile times a value tile (B: 16 key pairs × 16 dimensions of the
//!   packed values, rows 256 bytes apart), stored, then `o = o · alpha + pv` per row.
//!
//! Sums are f32 in the tiles' order, not the AVX-512 kernel's: results agree to f32 rounding,
//! not to the bit (tested against f64 like the module above, and on the CPU's tiles against
//! the AVX-512 kernel once per process before the first use).

use super::super::{HEAD_DIM, KEY_BLOCK, KEY_TILE};
use super::{Softmax, Task, PAIRS};
pub(in super::super) use crate::backend::cpu::amx::CpuTiles;
#[cfg(test)]
use crate::backend::cpu::amx::TileFile;
use crate::backend::cpu::amx::{self as tiles, tile_load, tile_store, Feature, Tiles};
use crate::backend::cpu::amx::{TILE_ROWS, TILE_ROW_BYTES};
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Queries per task: one tile's rows.
pub(in super::super) const QUERY_ROWS: usize = TILE_ROWS;
/// bf16 pairs per tile row.
const TILE_PAIRS: usize = TILE_ROW_BYTES / 4;

/// The tile operations of this kernel, besides [`Tiles`]'. Registers: accumulators `C(g)` =
/// tmm`g` (g < 4), the query pairs `Q(half)` = tmm`4 + half`, the key or value tile tmm6, the
/// weights tmm7. A unit is made per task ([`Tiles::new`]) with the query pairs, the packed
/// keys, the packed values, the scores, the weights and the values' accumulators as its
/// buffers.
pub(in super::super) trait TileUnit: Tiles {
    /// Load Q(half) from 16 rows of 16 pairs, `stride` bytes apart.
    unsafe fn load_queries(&mut self, half: usize, src: *const u32, stride: usize);
    /// Load tmm6 from `keys` (16 rows of 16 pairs, `stride` bytes apart), then
    /// `C(g) += Q(half) · tmm6`.
    unsafe fn score(&mut self, g: usize, half: usize, keys: *const u32, stride: usize);
    /// Load tmm7 (the weights) from 16 rows of 16 pairs, `stride` bytes apart.
    unsafe fn load_weights(&mut self, src: *const u32, stride: usize);
    /// Load tmm6 from `values` (16 key pairs × 16 dimensions, rows `stride` bytes apart),
    /// then `C(c) += tmm7 · tmm6`.
    unsafe fn weigh(&mut self, c: usize, values: *const u32, stride: usize);
    /// Store C(g) to 16 rows of 16 f32, `stride` bytes apart.
    unsafe fn store(&mut self, g: usize, dst: *mut f32, stride: usize);
}

/// Whether the bf16 attention runs on AMX tiles: the module above's kernel exists here (its
/// packing, softmax and the check below use it), the tiles are usable for bf16
/// (`cpu::amx::usable`), and the CPU's tiles matched the AVX-512 kernel on a check. Decided
/// once.
pub(in super::super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        tiles::decide(
            Feature::Bf16,
            super::available(),
            self_check,
            "bf16 attention products",
        )
    })
}

/// One head of 19 queries and 45 keys on the CPU's tiles against the AVX-512 bf16 kernel: the
/// two sum the same rounded products in other orders, so they agree to ~1e-6; a misplaced tile
/// is off by far more than the 1e-4 allowed.
fn self_check() -> bool {
    let (n_q, n_kv) = (QUERY_ROWS + 3, 45);
    let value =
        |i: usize, salt: usize| (((i * 2_654_435_761 + salt) >> 9) % 2001) as f32 / 1000.0 - 1.0;
    let q: Vec<f32> = (0..n_q * HEAD_DIM).map(|i| 4.0 * value(i, 1)).collect();
    let k: Vec<f32> = (0..n_kv * HEAD_DIM).map(|i| value(i, 2)).collect();
    let v: Vec<f32> = (0..n_kv * HEAD_DIM).map(|i| value(i, 3)).collect();
    let shape = crate::backend::cpu::ops::attention::AttnShape {
        n_q,
        n_kv,
        d: HEAD_DIM,
        n_head: 1,
    };
    let head = |_| (0, HEAD_DIM);
    let run = |kernel| {
        let mut out = vec![f32::NAN; n_q * HEAD_DIM];
        super::super::fused_bf16(kernel, &q, &k, &v, &head, shape, None, false, &mut out);
        out
    };
    let avx512 = run(super::super::Bf16Kernel::Avx512);
    let amx = run(super::super::Bf16Kernel::Amx);
    avx512.iter().zip(&amx).all(|(a, b)| (a - b).abs() <= 1e-4)
}

/// One task (`task.rows <= 16`) on `U`'s tiles: as the module above's `tile`.
///
/// # Safety
/// The module above's kernel is available and `U`'s tiles are usable (for [`CpuTiles`]:
/// [`available`], or its check); `out` is valid for `(i0 + rows) * d` floats, and no one else
/// writes rows `i0..i0 + rows` of head `h`'s columns meanwhile.
#[target_feature(enable = "avx512f,avx512dq,avx512bf16,fma")]
pub(in super::super) unsafe fn tile<U: TileUnit>(task: &Task) {
    let (kt, vp) = (task.keys, task.values);
    debug_assert!(
        kt.len() >= super::keys_len(task.n_kv) && vp.len() >= super::values_len(task.n_kv)
    );
    let qp: [u32; QUERY_ROWS * PAIRS] = task.queries();
    let visible = task.visible_keys::<QUERY_ROWS>();
    let kv_end = visible.iter().copied().max().unwrap_or(0);
    let mut s = [0.0f32; QUERY_ROWS * KEY_BLOCK];
    // The block's weights per row as bf16 (u16 pairs): KEY_BLOCK / 2 `u32` per row.
    let mut w = [0u32; QUERY_ROWS * KEY_BLOCK / 2];
    let mut pv = [0.0f32; QUERY_ROWS * HEAD_DIM];
    let mut o = [0.0f32; QUERY_ROWS * HEAD_DIM];
    let mut softmax = Softmax::<QUERY_ROWS>::new();
    let span = |p: *const u8, bytes: usize| (p as usize, bytes);
    let mut unit = U::new(&[
        span(qp.as_ptr().cast(), size_of_val(&qp)),
        span(kt.as_ptr().cast(), size_of_val(kt)),
        span(vp.as_ptr().cast(), size_of_val(vp)),
        span(s.as_ptr().cast(), size_of_val(&s)),
        span(w.as_ptr().cast(), size_of_val(&w)),
        span(pv.as_ptr().cast(), size_of_val(&pv)),
    ]);
    let (pair_row, weight_row, key_row) = (PAIRS * 4, KEY_BLOCK / 2 * 4, KEY_TILE * 4);
    let (score_row, value_row) = (KEY_BLOCK * 4, HEAD_DIM * 4);
    unit.configure();
    unit.load_queries(0, qp.as_ptr(), pair_row);
    unit.load_queries(1, qp.as_ptr().add(TILE_PAIRS), pair_row);
    for j0 in (0..kv_end).step_by(KEY_BLOCK) {
        let cb = KEY_BLOCK.min(kv_end - j0);
        // Scores, 16 keys per accumulator, 4 accumulators at a time.
        let groups = cb.div_ceil(16);
        for g0 in (0..groups).step_by(4) {
            let live = (groups - g0).min(4);
            unit.zero_accumulators();
            for half in 0..2 {
                for g in 0..live {
                    let key = j0 + (g0 + g) * 16;
                    let tile = (key / KEY_TILE) * KEY_TILE * PAIRS;
                    let src = kt
                        .as_ptr()
                        .add(tile + half * TILE_PAIRS * KEY_TILE + key % KEY_TILE);
                    unit.score(g, half, src, key_row);
                }
            }
            for g in 0..live {
                unit.store(g, s.as_mut_ptr().add((g0 + g) * 16), score_row);
            }
        }
        softmax.block(&s, &mut w, &visible, j0, cb);
        // Values: 16 key pairs per step (zero weights past the block's keys meet the zero
        // padding of the packed values).
        unit.zero_accumulators();
        for step in 0..cb.div_ceil(2).div_ceil(TILE_PAIRS) {
            unit.load_weights(w.as_ptr().add(step * TILE_PAIRS), weight_row);
            let pairs = vp.as_ptr().add((j0 / 2 + step * TILE_PAIRS) * HEAD_DIM);
            for c in 0..HEAD_DIM / 16 {
                unit.weigh(c, pairs.add(c * 16), value_row);
            }
        }
        for c in 0..HEAD_DIM / 16 {
            unit.store(c, pv.as_mut_ptr().add(c * 16), value_row);
        }
        for (r, &a) in softmax.alpha.iter().enumerate() {
            let a = _mm512_set1_ps(a);
            for c in 0..HEAD_DIM / 16 {
                let at = r * HEAD_DIM + c * 16;
                let acc = _mm512_loadu_ps(o.as_ptr().add(at));
                let y = _mm512_fmadd_ps(acc, a, _mm512_loadu_ps(pv.as_ptr().add(at)));
                _mm512_storeu_ps(o.as_mut_ptr().add(at), y);
            }
        }
    }
    unit.release();
    task.write(&o, &softmax.sum);
}

/// `tileloadd tmm6` from `$src` (stride `$stride`), then `tdpbf16ps tmm$c, tmm$a, tmm6`.
macro_rules! load_then_multiply {
    ($c:literal, $a:literal, $src:expr, $stride:expr) => {{
        tile_load!(6, $src, $stride);
        std::arch::asm!(
            concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm6"),
            options(nostack, nomem)
        )
    }};
}

impl TileUnit for CpuTiles {
    #[inline(always)]
    unsafe fn load_queries(&mut self, half: usize, src: *const u32, stride: usize) {
        match half {
            0 => tile_load!(4, src, stride),
            _ => tile_load!(5, src, stride),
        }
    }

    #[inline(always)]
    unsafe fn score(&mut self, g: usize, half: usize, keys: *const u32, stride: usize) {
        match (g, half) {
            (0, 0) => load_then_multiply!(0, 4, keys, stride),
            (1, 0) => load_then_multiply!(1, 4, keys, stride),
            (2, 0) => load_then_multiply!(2, 4, keys, stride),
            (_, 0) => load_then_multiply!(3, 4, keys, stride),
            (0, _) => load_then_multiply!(0, 5, keys, stride),
            (1, _) => load_then_multiply!(1, 5, keys, stride),
            (2, _) => load_then_multiply!(2, 5, keys, stride),
            _ => load_then_multiply!(3, 5, keys, stride),
        }
    }

    #[inline(always)]
    unsafe fn load_weights(&mut self, src: *const u32, stride: usize) {
        tile_load!(7, src, stride);
    }

    #[inline(always)]
    unsafe fn weigh(&mut self, c: usize, values: *const u32, stride: usize) {
        match c {
            0 => load_then_multiply!(0, 7, values, stride),
            1 => load_then_multiply!(1, 7, values, stride),
            2 => load_then_multiply!(2, 7, values, stride),
            _ => load_then_multiply!(3, 7, values, stride),
        }
    }

    #[inline(always)]
    unsafe fn store(&mut self, g: usize, dst: *mut f32, stride: usize) {
        match g {
            0 => tile_store!(0, dst, stride),
            1 => tile_store!(1, dst, stride),
            2 => tile_store!(2, dst, stride),
            _ => tile_store!(3, dst, stride),
        }
    }
}

/// The emulator under this kernel's register plan.
#[cfg(test)]
impl TileUnit for TileFile {
    unsafe fn load_queries(&mut self, half: usize, src: *const u32, stride: usize) {
        self.load(4 + half, src.cast(), stride);
    }

    unsafe fn score(&mut self, g: usize, half: usize, keys: *const u32, stride: usize) {
        self.load(6, keys.cast(), stride);
        self.dpbf16ps(g, 4 + half, 6);
    }

    unsafe fn load_weights(&mut self, src: *const u32, stride: usize) {
        self.load(7, src.cast(), stride);
    }

    unsafe fn weigh(&mut self, c: usize, values: *const u32, stride: usize) {
        self.load(6, values.cast(), stride);
        self.dpbf16ps(c, 7, 6);
    }

    unsafe fn store(&mut self, g: usize, dst: *mut f32, stride: usize) {
        TileFile::store(self, g, dst.cast(), stride);
    }
}
