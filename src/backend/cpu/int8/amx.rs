//! AMX int8 tiles (Intel Sapphire Rapids and later) for the many-row products of `--dtype
//! int8`: the encoder's linear layers, 1500 rows per window.
//!
//! `tdpbusd` multiplies unsigned by signed bytes exactly as `vpdpbusd` does, so this kernel
//! reads the VNNI kernel's operands unchanged and sums the same integers: activation rows
//! shifted to `u8` (stride `k4`), weight panels of 64 columns whose 4-input groups are 256
//! bytes apart (one 16-column B tile is 16 groups × 64 bytes at stride 256), then the same
//! [`Epilogue`]. Outputs are bit-identical to VNNI's, so int8 tokens do not move.
//!
//! Blocking: 8 tile registers of 16 rows × 64 bytes hold 2 × 2 i32 accumulators (32 rows ×
//! 32 columns), 2 activation tiles and 2 weight tiles; each `tdpbusd` is 16 × 16 × 64
//! multiply-adds, 256 `vpdpbusd`s' worth. Rows past the last multiple of 16, and products whose
//! `k4` is not a multiple of 64 (no Whisper size has one), stay on the VNNI kernel.
//!
//! The kernel drives a [`TileUnit`]: the CPU's tiles ([`CpuTiles`], inline asm, since Rust's
//! AMX intrinsics are unstable) or, in tests, the emulator `cpu::amx::TileFile` (Intel's
//! pseudo-code for each instruction, every row it touches checked against the buffers). That
//! runs the kernel's addressing on every AVX-512 machine; the CPU's tiles run only on AMX
//! machines, and [`available`] checks them against VNNI once per process before the first use.

use super::vnni::Epilogue;
use super::{Int8Matrix, PanelOut, QuantizedRows, PANEL};
pub(super) use crate::backend::cpu::amx::CpuTiles;
#[cfg(test)]
use crate::backend::cpu::amx::TileFile;
pub(super) use crate::backend::cpu::amx::TILE_ROWS as TILE_M;
use crate::backend::cpu::amx::TILE_ROW_BYTES;
use crate::backend::cpu::amx::{self as tiles, tile_load, tile_store, Feature, Tiles};
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Bytes between two 4-input groups of a weight panel (64 columns × 4 bytes).
const GROUP_BYTES: usize = PANEL * 4;

/// The tile operations of this kernel, besides [`Tiles`]'. Registers: `C(r, c)` = tmm`2r + c`
/// (i32 accumulators), `A(r)` = tmm`4 + r` (activations), `B(c)` = tmm`6 + c` (weights). A
/// unit is made per panel ([`Tiles::new`]) with the activations, the weights and the
/// [`Accumulators`] as its buffers.
pub(super) trait TileUnit: Tiles {
    /// Load A(r) (`r` < 2) from 16 rows of 64 bytes, `stride` bytes apart (`tileloadd`).
    unsafe fn load_a(&mut self, r: usize, src: *const u8, stride: usize);
    /// Load B(c) (`c` < 2) likewise.
    unsafe fn load_b(&mut self, c: usize, src: *const i8, stride: usize);
    /// `C(r, c) += A(r) · B(c)` for all four (`tdpbusd`).
    unsafe fn multiply_accumulate(&mut self);
    /// Store C(r, c) to 16 rows of 64 bytes (16 i32), `stride` bytes apart (`tilestored`).
    unsafe fn store(&mut self, r: usize, c: usize, dst: *mut i32, stride: usize);
}

/// Whether the int8 products run AMX tiles for their first `16·⌊m/16⌋` rows: the tiles are
/// usable for int8 (`cpu::amx::usable`: the CPU, the tile permission, `DATTAVANI_AMX`), VNNI
/// runs the epilogue and the other rows, and a product on the CPU's tiles gave VNNI's bits.
/// Decided once.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let what = "int8 products of 16+ rows";
        tiles::decide(Feature::Int8, super::has_vnni(), self_check, what)
    })
}

/// One product of odd shape on the CPU's tiles against VNNI, bit for bit: a tile kernel that
/// has never run on this CPU model gets one chance to disagree before it is used.
fn self_check() -> bool {
    let (m, k, n) = (16 * 3 + 5, 64 * 3, PANEL + 7);
    // Small integers in every byte position, extremes included, so a misplaced byte shows.
    let value = |i: usize, salt: usize| (((i * 2_654_435_761 + salt) >> 7) % 255) as f32 - 127.0;
    let x: Vec<f32> = (0..m * k).map(|i| value(i, 1) / 127.0).collect();
    let w: Vec<f32> = (0..n * k).map(|i| value(i, 2) / 64.0).collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 / 8.0).collect();
    let q = crate::model::quant::QuantizedMatrix::quantize(&w, n, k);
    let mat = Int8Matrix::from_quantized(q, true);
    let (mut vnni, mut amx) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
    super::linear_panels::<CpuTiles>(&x, m, &mat, Some(&bias), &mut vnni, false);
    super::linear_panels::<CpuTiles>(&x, m, &mat, Some(&bias), &mut amx, true);
    vnni.iter()
        .zip(&amx)
        .all(|(a, b)| a.to_bits() == b.to_bits())
}

/// The accumulators of 32 rows × a panel's 64 columns, out of the tiles (a caller's buffer,
/// so that the emulator knows it).
pub(super) type Accumulators = [[i32; PANEL]; 2 * TILE_M];

/// Rows `rows` (a multiple of 16 of them) of `xq` times panel `p` of `w` (columns
/// `p*64 .. min(p*64+64, n)`) on `unit`'s tiles, written to `out`.
///
/// # Safety
/// The CPU has AVX-512 F (the epilogue) and `unit`'s tiles are usable (for [`CpuTiles`]:
/// [`available`]); `w` is in panel layout with `k4 % 64 == 0` and `xq` holds rows `rows` of
/// `k4` bytes; `out` is valid for these rows and columns, which nobody else touches.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn panel<U: TileUnit>(
    unit: &mut U,
    acc: &mut Accumulators,
    xq: &QuantizedRows,
    rows: std::ops::Range<usize>,
    k4: usize,
    w: &Int8Matrix,
    p: usize,
    bias: Option<&[f32]>,
    out: PanelOut,
) {
    let n = w.n;
    debug_assert!(rows.len().is_multiple_of(TILE_M) && k4.is_multiple_of(TILE_ROW_BYTES));
    let j0 = p * PANEL;
    let epilogue = Epilogue::new(w, bias, j0, n);
    let weights = w.data.as_ptr().add(p * k4 * PANEL);
    let acc_stride = PANEL * 4;
    // Column halves with a live column: 1 for a panel of ≤ 32 columns.
    let halves = (n - j0).min(PANEL).div_ceil(PANEL / 2);
    unit.configure();
    let mut i = rows.start;
    while i < rows.end {
        // Two row tiles, or one: the second then reloads the first's rows and is not stored.
        let both = rows.end - i >= 2 * TILE_M;
        let a0 = xq.q.as_ptr().add(i * k4);
        let a1 = if both { a0.add(TILE_M * k4) } else { a0 };
        for half in 0..halves {
            unit.zero_accumulators();
            for kb in 0..k4 / TILE_ROW_BYTES {
                unit.load_a(0, a0.add(kb * TILE_ROW_BYTES), k4);
                unit.load_a(1, a1.add(kb * TILE_ROW_BYTES), k4);
                // 16 groups of 4 inputs from group 16·kb, columns 32·half (+16).
                let b = weights.add(kb * TILE_M * GROUP_BYTES + half * (PANEL / 2) * 4);
                unit.load_b(0, b, GROUP_BYTES);
                unit.load_b(1, b.add(TILE_ROW_BYTES), GROUP_BYTES);
                unit.multiply_accumulate();
            }
            for r in 0..1 + both as usize {
                for c in 0..2 {
                    let dst = acc[r * TILE_M].as_mut_ptr().add(half * PANEL / 2 + c * 16);
                    unit.store(r, c, dst, acc_stride);
                }
            }
        }
        let live = epilogue.live_vectors();
        for (r, row) in acc
            .iter()
            .enumerate()
            .take(if both { 2 * TILE_M } else { TILE_M })
        {
            let sx = *xq.scale.get_unchecked(i + r);
            let o = out.first.add((i + r) * out.row_stride);
            for v in 0..live {
                let a = _mm512_loadu_si512(row.as_ptr().add(16 * v) as *const __m512i);
                epilogue.store(v, a, sx, o);
            }
        }
        i += if both { 2 * TILE_M } else { TILE_M };
    }
    unit.release();
}

impl TileUnit for CpuTiles {
    #[inline(always)]
    unsafe fn load_a(&mut self, r: usize, src: *const u8, stride: usize) {
        match r {
            0 => tile_load!(4, src, stride),
            _ => tile_load!(5, src, stride),
        }
    }

    #[inline(always)]
    unsafe fn load_b(&mut self, c: usize, src: *const i8, stride: usize) {
        match c {
            0 => tile_load!(6, src, stride),
            _ => tile_load!(7, src, stride),
        }
    }

    #[inline(always)]
    unsafe fn multiply_accumulate(&mut self) {
        // Intel syntax: destination, A (unsigned bytes), B (signed bytes).
        std::arch::asm!(
            "tdpbusd tmm0, tmm4, tmm6",
            "tdpbusd tmm1, tmm4, tmm7",
            "tdpbusd tmm2, tmm5, tmm6",
            "tdpbusd tmm3, tmm5, tmm7",
            options(nostack, nomem)
        );
    }

    #[inline(always)]
    unsafe fn store(&mut self, r: usize, c: usize, dst: *mut i32, stride: usize) {
        match (r, c) {
            (0, 0) => tile_store!(0, dst, stride),
            (0, _) => tile_store!(1, dst, stride),
            (_, 0) => tile_store!(2, dst, stride),
            _ => tile_store!(3, dst, stride),
        }
    }
}

/// The emulator under this kernel's register plan.
#[cfg(test)]
impl TileUnit for TileFile {
    unsafe fn load_a(&mut self, r: usize, src: *const u8, stride: usize) {
        self.load(4 + r, src, stride);
    }

    unsafe fn load_b(&mut self, c: usize, src: *const i8, stride: usize) {
        self.load(6 + c, src as *const u8, stride);
    }

    unsafe fn multiply_accumulate(&mut self) {
        for (c, a, b) in [(0, 4, 6), (1, 4, 7), (2, 5, 6), (3, 5, 7)] {
            self.dpbusd(c, a, b);
        }
    }

    unsafe fn store(&mut self, r: usize, c: usize, dst: *mut i32, stride: usize) {
        TileFile::store(self, 2 * r + c, dst as *mut u8, stride);
    }
}
