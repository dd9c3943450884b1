//! The bf16 attention on AMX tiles (`tdpbf16ps`, Intel Sapphire Rapids and later): the
//! module above's scheme, operands and layouts, with both products on the tiles. One
//! `tdpbf16ps` is 16 × 16 × 32 bf16 multiply-adds, 256 `vdpbf16ps`' worth.
//!
//! A task is 16 queries of one head (one tile's rows). Per block of [`KEY_BLOCK`] keys:
//! - scores: 4 accumulators of 16 queries × 16 keys at a time, each the sum of two products
//!   of a query tile (A: pairs 0-15, then 16-31, of each row, loaded for each 4 accumulators)
//!   with a key tile (B: 16 pairs × 16 keys, read straight from the packed keys, whose rows
//!   are 32 keys = 128 bytes apart), stored to the block's score rows;
//! - the online softmax of the module above (`block_max`, `exp_weights`), which writes the
//!   weights as bf16 in key order: 32 keys of 16 rows are one A tile (rows 256 bytes apart);
//! - values: 4 accumulators of 16 queries × 16 dimensions, each the sum over the block's key
//!   pairs of the weight tile times a value tile (B: 16 key pairs × 16 dimensions of the
//!   packed values, rows 256 bytes apart), stored, then `o = o · alpha + pv` per row.
//!
//! With split operands (`Products::Bf16x3`) every A and B tile has a `lo` twin from the
//! operand's second plane, and each product is three `tdpbf16ps` into the same accumulator
//! (`A·B + A_lo·B + A·B_lo`). A product of 16 × 16 × 32 (8192 multiply-adds) then takes 48
//! cycles at Intel's 16 per `tdpbf16ps`, where AVX-512's f32 kernel, at two 16-lane FMAs a
//! cycle, takes 256: about 5x fewer cycles for the products, before loads and the softmax.
//! Not measured: no development machine has had AMX.
//!
//! Sums are f32 in the tiles' order, not the AVX-512 kernel's: results agree to f32 rounding,
//! not to the bit (tested against f64 like the module above, and on the CPU's tiles against
//! the AVX-512 kernel once per process before the first use).

use super::super::{Products, HEAD_DIM, KEY_BLOCK, KEY_TILE};
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
/// tmm`g` (g < 4); the A operand (query pairs, or weights) `A` = tmm4 and its `lo` parts
/// `A_lo` = tmm5; the B operand (keys or values) tmm6 and its `lo` parts tmm7. A unit is made
/// per task ([`Tiles::new`]) with the query pairs, the packed keys, the packed values, the
/// scores, the weights and the values' accumulators as its buffers.
pub(in super::super) trait TileUnit: Tiles {
    /// Load tmm`t` (4 ≤ t < 8) from 16 rows of 16 pairs, `stride` bytes apart.
    unsafe fn load(&mut self, t: usize, src: *const u32, stride: usize);
    /// `C(g) += tmm[a] · tmm[b]`, for (a, b) one of (4, 6), (5, 6), (4, 7).
    unsafe fn dot(&mut self, g: usize, a: usize, b: usize);
    /// Store C(g) to 16 rows of 16 f32, `stride` bytes apart.
    unsafe fn store(&mut self, g: usize, dst: *mut f32, stride: usize);

    /// Load A from 16 rows of 16 pairs, `stride` bytes apart, and `A_lo` from `lo`'s.
    #[inline(always)]
    unsafe fn load_a(&mut self, src: *const u32, lo: Option<*const u32>, stride: usize) {
        self.load(4, src, stride);
        if let Some(lo) = lo {
            self.load(5, lo, stride);
        }
    }

    /// Load tmm6 from `b` (16 rows of 16 pairs, `stride` bytes apart), then `C(g) += A ·
    /// tmm6`; with `b_lo` (split operands) also `C(g) += A_lo · tmm6`, then tmm7 from `b_lo`
    /// and `C(g) += A · tmm7`.
    #[inline(always)]
    unsafe fn multiply(
        &mut self,
        g: usize,
        b: *const u32,
        b_lo: Option<*const u32>,
        stride: usize,
    ) {
        self.load(6, b, stride);
        self.dot(g, 4, 6);
        if let Some(b_lo) = b_lo {
            self.dot(g, 5, 6);
            self.load(7, b_lo, stride);
            self.dot(g, 4, 7);
        }
    }
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

/// One head of 19 queries and 45 keys on the CPU's tiles against the AVX-512 bf16 kernel, with
/// plain and split operands: the two sum the same rounded products in other orders, so they
/// agree to ~1e-6; a misplaced tile is off by far more than the 1e-4 allowed.
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
    let run = |kernel, products| {
        let mut out = vec![f32::NAN; n_q * HEAD_DIM];
        super::super::fused_bf16(
            kernel, products, &q, &k, &v, &head, shape, None, false, &mut out,
        );
        out
    };
    [Products::Bf16, Products::Bf16x3]
        .into_iter()
        .all(|products| {
            let avx512 = run(super::super::Bf16Kernel::Avx512, products);
            let amx = run(super::super::Bf16Kernel::Amx, products);
            avx512.iter().zip(&amx).all(|(a, b)| (a - b).abs() <= 1e-4)
        })
}

/// One task (`task.rows <= 16`) on `U`'s tiles: as the module above's `tile`.
///
/// # Safety
/// The module above's kernel is available and `U`'s tiles are usable (for [`CpuTiles`]:
/// [`available`], or its check); `out` is valid for `(i0 + rows) * d` floats, and no one else
/// writes rows `i0..i0 + rows` of head `h`'s columns meanwhile.
#[target_feature(enable = "avx512f,avx512dq,avx512bf16,fma")]
pub(in super::super) unsafe fn tile<U: TileUnit>(task: &Task) {
    assert!(!task.f32_scores, "the AMX kernel has bf16 scores only");
    let (kt, vp, split) = (task.keys, task.values, task.split);
    let (keys_plane, values_plane) = (super::keys_len(task.n_kv), super::values_len(task.n_kv));
    debug_assert!(kt.len() >= super::planes(split) * keys_plane);
    debug_assert!(vp.len() >= super::planes(split) * values_plane);
    const QN: usize = QUERY_ROWS * PAIRS;
    let qp: [u32; 2 * QN] = task.queries();
    let visible = task.visible_keys::<QUERY_ROWS>();
    let kv_end = visible.iter().copied().max().unwrap_or(0);
    let mut s = [0.0f32; QUERY_ROWS * KEY_BLOCK];
    // The block's weights per row as bf16 (u16 pairs): KEY_BLOCK / 2 `u32` per row; the `lo`
    // parts after them.
    const WN: usize = QUERY_ROWS * KEY_BLOCK / 2;
    let mut w = [0u32; 2 * WN];
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
    // The `lo` plane of an operand at `hi` (`plane` u32 further), when split.
    let lo = |hi: *const u32, plane: usize| split.then(|| hi.add(plane));
    unit.configure();
    for j0 in (0..kv_end).step_by(KEY_BLOCK) {
        let cb = KEY_BLOCK.min(kv_end - j0);
        // Scores, 16 keys per accumulator, 4 accumulators at a time.
        let groups = cb.div_ceil(16);
        for g0 in (0..groups).step_by(4) {
            let live = (groups - g0).min(4);
            unit.zero_accumulators();
            for half in 0..2 {
                let queries = qp.as_ptr().add(half * TILE_PAIRS);
                unit.load_a(queries, lo(queries, QN), pair_row);
                for g in 0..live {
                    let key = j0 + (g0 + g) * 16;
                    let tile = (key / KEY_TILE) * KEY_TILE * PAIRS;
                    let src = kt
                        .as_ptr()
                        .add(tile + half * TILE_PAIRS * KEY_TILE + key % KEY_TILE);
                    unit.multiply(g, src, lo(src, keys_plane), key_row);
                }
            }
            for g in 0..live {
                unit.store(g, s.as_mut_ptr().add((g0 + g) * 16), score_row);
            }
        }
        softmax.block(&s, &mut w, &visible, j0, cb, split);
        // Values: 16 key pairs per step (zero weights past the block's keys meet the zero
        // padding of the packed values).
        unit.zero_accumulators();
        for step in 0..cb.div_ceil(2).div_ceil(TILE_PAIRS) {
            let weights = w.as_ptr().add(step * TILE_PAIRS);
            unit.load_a(weights, lo(weights, WN), weight_row);
            let pairs = vp.as_ptr().add((j0 / 2 + step * TILE_PAIRS) * HEAD_DIM);
            for c in 0..HEAD_DIM / 16 {
                let src = pairs.add(c * 16);
                unit.multiply(c, src, lo(src, values_plane), value_row);
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

/// `tdpbf16ps tmm$g, tmm$a, tmm$b` for an accumulator `$g` (< 4) known at run time.
macro_rules! tdpbf16ps {
    ($g:expr, $a:literal, $b:literal) => {
        match $g {
            0 => std::arch::asm!(
                concat!("tdpbf16ps tmm0, tmm", $a, ", tmm", $b),
                options(nostack, nomem)
            ),
            1 => std::arch::asm!(
                concat!("tdpbf16ps tmm1, tmm", $a, ", tmm", $b),
                options(nostack, nomem)
            ),
            2 => std::arch::asm!(
                concat!("tdpbf16ps tmm2, tmm", $a, ", tmm", $b),
                options(nostack, nomem)
            ),
            _ => std::arch::asm!(
                concat!("tdpbf16ps tmm3, tmm", $a, ", tmm", $b),
                options(nostack, nomem)
            ),
        }
    };
}

impl TileUnit for CpuTiles {
    #[inline(always)]
    unsafe fn load(&mut self, t: usize, src: *const u32, stride: usize) {
        match t {
            4 => tile_load!(4, src, stride),
            5 => tile_load!(5, src, stride),
            6 => tile_load!(6, src, stride),
            _ => tile_load!(7, src, stride),
        }
    }

    #[inline(always)]
    unsafe fn dot(&mut self, g: usize, a: usize, b: usize) {
        match (a, b) {
            (4, 6) => tdpbf16ps!(g, 4, 6),
            (5, 6) => tdpbf16ps!(g, 5, 6),
            _ => tdpbf16ps!(g, 4, 7),
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
    unsafe fn load(&mut self, t: usize, src: *const u32, stride: usize) {
        TileFile::load(self, t, src.cast(), stride);
    }

    unsafe fn dot(&mut self, g: usize, a: usize, b: usize) {
        self.dpbf16ps(g, a, b);
    }

    unsafe fn store(&mut self, g: usize, dst: *mut f32, stride: usize) {
        TileFile::store(self, g, dst.cast(), stride);
    }
}
