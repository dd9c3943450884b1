//! Int8 matrix products of the CPU path (`--dtype int8`), as CTranslate2 runs its int8 models:
//! weights row-scaled int8 ([`QuantizedMatrix`]), each activation row quantized the same way on
//! the fly, products summed exactly in i32, then `y = acc · sx · sw + bias` in f32.
//!
//! Three kernels compute the same integers, so their outputs are bit-identical:
//! - `amx` (Intel Sapphire Rapids and later, module `amx`): the VNNI layout and epilogue, with
//!   `tdpbusd` tiles for all rows but the last `m % 16`, which VNNI takes;
//! - `avx512vnni` (x86-64 with AVX-512 VNNI): `vpdpbusd` multiplies unsigned by signed bytes,
//!   so activations are shifted to `u8` (`x + 128`) and `128 · Σ w` is subtracted after; the
//!   weights are packed in panels of 64 output columns × 4 inputs per 64-byte vector, and a
//!   tile of up to 6 activation rows × 64 columns lives in 24 registers;
//! - rows: plain `i8 × i8 → i32` dot products, which the compiler vectorises; built for AVX2
//!   where our ISA allows it (2x the baseline x86-64 build's encoder: still 1.6x slower than
//!   f32 there, so `auto` keeps f32 on CPUs without VNNI), else for the baseline.
//!
//! Decoder steps (a few rows) are bound by reading the weights: int8 reads a quarter of f32's
//! bytes. Encoder products (1500 rows) are bound by arithmetic: one `vpdpbusd` does 64
//! multiply-adds where an f32 FMA does 16.

use super::ops::SendPtr;
use crate::model::quant::{quantize_row_with, QuantizedMatrix};
use rayon::prelude::*;

/// Output columns per packed panel: four 16-lane i32 vectors.
const PANEL: usize = 64;
/// Activation rows per register tile (6 × 4 accumulators + 4 weight vectors + 1 broadcast fit
/// the 32 vector registers).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const TILE_ROWS: usize = 6;
/// Below this many multiply-adds a product stays on one thread.
const PARALLEL_MIN: usize = 1 << 20;

/// How the int8 values are laid out for the kernel in use.
#[derive(Debug, Clone)]
enum Layout {
    /// `[n, k]` as quantized (portable kernel).
    Rows,
    /// Panels of [`PANEL`] columns: element (j, t) at
    /// `(j / 64) * k4 * 64 + (t / 4) * 256 + (j % 64) * 4 + t % 4`, with `n` padded to a
    /// multiple of 64 and `k` to a multiple of 4 by zeros (`avx512vnni` kernel).
    Panels {
        k4: usize,
        #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
        n_pad: usize,
    },
}

/// A weight matrix `[n, k]` (PyTorch's `[out, in]`) stored as row-scaled int8 for
/// [`linear`].
#[derive(Debug, Clone)]
pub struct Int8Matrix {
    n: usize,
    k: usize,
    data: Vec<i8>,
    /// Per output column of the product (row of the weight): `w ≈ q · scale`.
    scale: Vec<f32>,
    /// `128 · Σ_t q[j, t]`: what the `u8` shift of the activations adds to column j (panel
    /// layout only; empty otherwise).
    shift_comp: Vec<i32>,
    layout: Layout,
}

/// Whether this CPU runs the `avx512vnni` kernel (not where [`super::isa::isa`] is capped
/// below AVX-512).
pub fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::isa::isa() >= super::isa::Isa::Avx512
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs int8 products of 16+ rows on AMX tiles (see module `amx`: the CPU
/// has AMX int8, Linux granted the tile data, `DATTAVANI_AMX` does not turn AMX off, and the
/// tiles gave VNNI's bits on a check product).
pub fn has_amx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        amx::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Int8Matrix {
    /// Quantize `w` (`[n, k]`) for the fastest kernel this CPU has.
    pub fn quantize(w: &[f32], n: usize, k: usize) -> Self {
        Self::from_quantized(QuantizedMatrix::quantize(w, n, k), has_vnni())
    }

    /// Lay `m` out for the VNNI kernel (`panels`) or the portable one.
    pub fn from_quantized(m: QuantizedMatrix, panels: bool) -> Self {
        let (n, k) = (m.rows, m.cols);
        // Only the VNNI kernel shifts its activations.
        let shift_comp = if panels {
            m.q.chunks_exact(k.max(1))
                .map(|row| 128 * row.iter().map(|&v| v as i32).sum::<i32>())
                .collect()
        } else {
            Vec::new()
        };
        let (data, layout) = if panels {
            let (k4, n_pad) = (k.div_ceil(4) * 4, n.div_ceil(PANEL) * PANEL);
            let mut data = vec![0i8; n_pad * k4];
            data.par_chunks_exact_mut(k4 * PANEL)
                .enumerate()
                .for_each(|(p, panel)| {
                    for jj in 0..PANEL.min(n.saturating_sub(p * PANEL)) {
                        let row = &m.q[(p * PANEL + jj) * k..(p * PANEL + jj + 1) * k];
                        // Inputs 4g..4g + 4 of row jj are word jj of the panel's group g
                        // (a last partial group padded with the panel's zeros).
                        let quads = row.chunks_exact(4);
                        let (g_end, rest) = (k / 4, quads.remainder());
                        for (g, quad) in quads.enumerate() {
                            let at = g * PANEL * 4 + jj * 4;
                            panel[at..at + 4].copy_from_slice(quad);
                        }
                        if !rest.is_empty() {
                            let at = g_end * PANEL * 4 + jj * 4;
                            panel[at..at + rest.len()].copy_from_slice(rest);
                        }
                    }
                });
            (data, Layout::Panels { k4, n_pad })
        } else {
            (m.q, Layout::Rows)
        };
        Int8Matrix {
            n,
            k,
            data,
            scale: m.scale,
            shift_comp,
            layout,
        }
    }

    pub fn rows(&self) -> usize {
        self.n
    }

    pub fn cols(&self) -> usize {
        self.k
    }

    /// Whether its products write [`OutLayout::Blocks64`] directly (the panel kernels: VNNI,
    /// AMX), not through a copy of the rows (the rows kernel).
    pub fn writes_blocks64(&self) -> bool {
        matches!(self.layout, Layout::Panels { .. })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * (self.scale.len() + self.shift_comp.len())
    }

    /// Weight row `j` in f32 (`out.len() == k`): embedding lookups of a quantized table.
    pub fn row_f32(&self, j: usize, out: &mut [f32]) {
        let s = self.scale[j];
        match self.layout {
            Layout::Rows => {
                for (o, &q) in out.iter_mut().zip(&self.data[j * self.k..(j + 1) * self.k]) {
                    *o = q as f32 * s;
                }
            }
            Layout::Panels { k4, .. } => {
                let base = (j / PANEL) * k4 * PANEL + (j % PANEL) * 4;
                for (t, o) in out.iter_mut().enumerate().take(self.k) {
                    *o = self.data[base + (t / 4) * PANEL * 4 + t % 4] as f32 * s;
                }
            }
        }
    }
}

/// Activations of one call, quantized per row: `x[i] ≈ (q[i] - 128) · scale[i]` for the VNNI
/// kernel (`u8` shifted), `x[i] ≈ q[i] · scale[i]` (`i8` bits) for the portable one. Rows are
/// `stride` bytes (`k` rounded up to 4; the padding bytes meet zero weights).
#[derive(Default)]
struct QuantizedRows {
    q: Vec<u8>,
    scale: Vec<f32>,
}

thread_local! {
    static ROWS: std::cell::Cell<QuantizedRows> = std::cell::Cell::new(QuantizedRows::default());
}

impl QuantizedRows {
    /// Quantize the `m` rows of `x` (rows in parallel when there are many).
    fn fill(&mut self, x: &[f32], m: usize, k: usize, stride: usize, shifted: bool) {
        // Each row's first k bytes are written below, its padding here: no pass over the
        // whole buffer first (the buffer is kept from call to call).
        let pad = if shifted { 128 } else { 0 };
        self.q.resize(m * stride, pad);
        self.scale.resize(m, 0.0);
        let one = |(i, (dst, s)): (usize, (&mut [u8], &mut f32))| {
            dst[k..].fill(pad);
            let src = &x[i * k..(i + 1) * k];
            #[cfg(target_arch = "x86_64")]
            if shifted {
                // SAFETY: shifted rows are only asked for by the VNNI kernel, which runs only
                // when the CPU has AVX-512.
                *s = unsafe { vnni::quantize_row_shifted(src, &mut dst[..k]) };
                return;
            }
            *s = quantize_activation_row(src, &mut dst[..k], shifted);
        };
        if m * k >= PARALLEL_MIN / 8 && rayon::current_num_threads() > 1 {
            self.q
                .par_chunks_exact_mut(stride)
                .zip(self.scale.par_iter_mut())
                .enumerate()
                .with_min_len(16)
                .for_each(one);
        } else {
            self.q
                .chunks_exact_mut(stride)
                .zip(self.scale.iter_mut())
                .enumerate()
                .for_each(one);
        }
    }
}

/// [`quantize_row_with`] into `u8` bits: `x + 128` when `shifted` (VNNI), else the `i8` bits.
fn quantize_activation_row(src: &[f32], dst: &mut [u8], shifted: bool) -> f32 {
    let bias = if shifted { 128 } else { 0 };
    quantize_row_with(src, dst, |q| (q + bias) as u8)
}

/// `out[m, n] = x[m, k] · wᵀ + bias` with `w` int8 (see the module comment).
pub fn linear(x: &[f32], m: usize, w: &Int8Matrix, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    assert!(
        x.len() >= m * k && out.len() >= m * n,
        "int8 linear: short buffers"
    );
    if let Some(b) = bias {
        assert!(b.len() >= n, "int8 linear: short bias");
    }
    if m == 0 || n == 0 {
        return;
    }
    match w.layout {
        Layout::Rows => linear_rows(x, m, w, bias, out),
        #[cfg(target_arch = "x86_64")]
        Layout::Panels { .. } => {
            linear_panels::<amx::CpuTiles>(x, m, w, bias, out, amx::available())
        }
        #[cfg(not(target_arch = "x86_64"))]
        Layout::Panels { .. } => unreachable!("panel layout is only built on x86-64 with VNNI"),
    }
}

/// The rows scratch of this thread, taken out of the thread-local for a call (so a rayon task
/// that this thread runs while waiting can never find it borrowed) and put back after.
fn with_rows<R>(f: impl FnOnce(&mut QuantizedRows) -> R) -> R {
    let mut rows = ROWS.take();
    let r = f(&mut rows);
    ROWS.set(rows);
    r
}

/// Whether a product of these dimensions is worth splitting across threads.
fn parallel(m: usize, n: usize, k: usize) -> bool {
    m * n * k >= PARALLEL_MIN && rayon::current_num_threads() > 1
}

/// [`linear`] for the row layout (portable kernel): blocks of 64 columns in parallel.
fn linear_rows(x: &[f32], m: usize, w: &Int8Matrix, bias: Option<&[f32]>, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    with_rows(|rows| {
        rows.fill(x, m, k, k, false);
        let xq = &*rows;
        let dot = rows_dot();
        let out_ptr = SendPtr(out.as_mut_ptr());
        let blocks = n.div_ceil(PANEL);
        let run = |b: usize| {
            let (j0, j1) = (b * PANEL, ((b + 1) * PANEL).min(n));
            for j in j0..j1 {
                let wj = &w.data[j * k..(j + 1) * k];
                for i in 0..m {
                    let xi = &xq.q[i * k..(i + 1) * k];
                    let acc = dot(xi, wj);
                    let y = epilogue(acc, xq.scale[i], w.scale[j], bias.map_or(0.0, |b| b[j]));
                    // SAFETY: column j < n of row i < m is in `out` (asserted) and written
                    // by this block only.
                    unsafe { *out_ptr.get().add(i * n + j) = y };
                }
            }
        };
        if parallel(m, n, k) {
            (0..blocks).into_par_iter().for_each(run);
        } else {
            (0..blocks).for_each(run);
        }
    })
}

/// One product of [`linear_shared`]: `out = x · wᵀ + bias`, laid out as `layout`.
pub struct Product<'a> {
    pub w: &'a Int8Matrix,
    pub bias: Option<&'a [f32]>,
    pub out: &'a mut [f32],
    pub layout: OutLayout,
}

/// How a product's `m × n` outputs are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutLayout {
    /// `[m, n]`.
    Rows,
    /// `[n / 64, m, 64]`: each block of 64 columns with its rows together, `n` a multiple of
    /// 64. For 64-wide attention heads this is the head-major layout
    /// (`ops::KvLayout::Heads`); the VNNI and AMX kernels write it directly (a block is one of
    /// their panels), the rows kernel through a copy.
    Blocks64,
}

/// Where one panel's outputs go: its first column of row 0, and the step from row to row.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct PanelOut {
    first: *mut f32,
    row_stride: usize,
}

#[cfg(target_arch = "x86_64")]
impl PanelOut {
    /// Panel `p` of a product's `out` (`m` rows, `n` columns) in `layout`.
    ///
    /// # Safety
    /// `out` holds the product's `m * n` outputs.
    unsafe fn of(out: *mut f32, layout: OutLayout, p: usize, m: usize, n: usize) -> Self {
        match layout {
            OutLayout::Rows => PanelOut {
                first: out.add(p * PANEL),
                row_stride: n,
            },
            OutLayout::Blocks64 => PanelOut {
                first: out.add(p * m * PANEL),
                row_stride: PANEL,
            },
        }
    }
}

/// [`linear`] of one input by several matrices of its width (the attention's query, key and
/// value projections; the decoder layers' cross-attention keys and values): the rows are
/// quantized once, and the products' tasks share the thread pool. Each output has the bits
/// [`linear`] gives it (the same kernel on the same quantized rows).
pub fn linear_shared(x: &[f32], m: usize, products: &mut [Product]) {
    let k = products.first().map_or(0, |p| p.w.k);
    for p in products.iter() {
        assert!(
            p.layout == OutLayout::Rows || p.w.n.is_multiple_of(PANEL),
            "int8 linear: 64-column blocks of {} columns",
            p.w.n
        );
    }
    let panels = products.iter().all(|p| {
        p.w.k == k && matches!(p.w.layout, Layout::Panels { .. }) && p.out.len() >= m * p.w.n
    });
    #[cfg(target_arch = "x86_64")]
    if panels && m > 0 && x.len() >= m * k {
        for p in products.iter() {
            if let Some(b) = p.bias {
                assert!(b.len() >= p.w.n, "int8 linear: short bias");
            }
        }
        return linear_panels_shared::<amx::CpuTiles>(x, m, products, amx::available());
    }
    let _ = panels;
    for p in products {
        match p.layout {
            OutLayout::Rows => linear(x, m, p.w, p.bias, p.out),
            OutLayout::Blocks64 => {
                let mut rows = vec![0.0; m * p.w.n];
                linear(x, m, p.w, p.bias, &mut rows);
                // Blocks of 64 columns are the head-major layout of 64-wide heads.
                super::ops::write_head_major(&rows, m, p.w.n, p.w.n / PANEL, p.out);
            }
        }
    }
}

/// [`linear`] for the panel layout: [`linear_panels_shared`] of one product.
#[cfg(target_arch = "x86_64")]
fn linear_panels<U: amx::TileUnit>(
    x: &[f32],
    m: usize,
    w: &Int8Matrix,
    bias: Option<&[f32]>,
    out: &mut [f32],
    amx: bool,
) {
    let layout = OutLayout::Rows;
    linear_panels_shared::<U>(
        x,
        m,
        &mut [Product {
            w,
            bias,
            out,
            layout,
        }],
        amx,
    );
}

/// [`linear_shared`] for the panel layout (every matrix in it, of one `k`): rows in multiples
/// of 16 on AMX tiles when `amx` (and `k4` is a multiple of 64), the rest on the VNNI kernel;
/// panels (and blocks of rows, for narrow products on many threads) in parallel. `U` is the
/// CPU's tiles, or the emulator of tests.
#[cfg(target_arch = "x86_64")]
fn linear_panels_shared<U: amx::TileUnit>(
    x: &[f32],
    m: usize,
    products: &mut [Product],
    amx: bool,
) {
    let Some(first) = products.first() else {
        return;
    };
    let Layout::Panels { k4, .. } = first.w.layout else {
        unreachable!("linear_panels takes the panel layout");
    };
    let k = first.w.k;
    let amx = amx && k4.is_multiple_of(64);
    // Per product: (panels, rows per task, first task), its tasks being (panel, block of rows).
    // Narrow products have few panels (6 for tiny's 384 columns), too few for many threads:
    // their rows are split too, into blocks of a multiple of 32 rows (whole AMX blocks) and at
    // least 96. Every output is computed the same way whatever the split.
    let mut spread = false;
    let mut tasks = 0;
    let plans: Vec<(usize, usize, usize)> = products
        .iter()
        .map(|p| {
            let Layout::Panels { k4: pk4, n_pad } = p.w.layout else {
                unreachable!("linear_panels takes the panel layout");
            };
            assert_eq!(pk4, k4, "products of one input have its width");
            let panels = n_pad / PANEL;
            let parallel = parallel(m, p.w.n, k);
            spread |= parallel;
            let row_blocks = if parallel {
                let wanted = (2 * rayon::current_num_threads()).div_ceil(panels);
                wanted.min(m / 96).max(1)
            } else {
                1
            };
            let block_rows = m.div_ceil(row_blocks).next_multiple_of(2 * amx::TILE_M);
            let plan = (panels, block_rows, tasks);
            tasks += panels * m.div_ceil(block_rows);
            plan
        })
        .collect();
    let outs: Vec<SendPtr> = products
        .iter_mut()
        .map(|p| SendPtr(p.out.as_mut_ptr()))
        .collect();
    let products = &*products;
    with_rows(|rows| {
        rows.fill(x, m, k, k4, true);
        let xq = &*rows;
        let run = |task: usize| {
            let i = plans.partition_point(|&(_, _, first)| first <= task) - 1;
            let (panels, block_rows, first) = plans[i];
            let Product {
                w, bias, layout, ..
            } = products[i];
            let (p, b) = ((task - first) % panels, (task - first) / panels);
            let (r0, r1) = (b * block_rows, ((b + 1) * block_rows).min(m));
            // Whole tiles of 16 rows on AMX, the rest of the block on VNNI.
            let amx_end = if amx {
                r0 + (r1 - r0) / amx::TILE_M * amx::TILE_M
            } else {
                r0
            };
            // SAFETY: `out` holds the product's m * n outputs.
            let o = unsafe { PanelOut::of(outs[i].get(), layout, p, m, w.n) };
            // SAFETY: VNNI is present (panels are only built when `has_vnni()`), and the CPU's
            // tiles are only asked for when `amx::available()` (or by its self-check, which
            // runs after the tile permission was granted); the task writes rows r0..r1 of
            // columns p*64.. of its product's `out` (bounded by n inside, `out` holding m * n),
            // which no other task touches.
            unsafe {
                if amx_end > r0 {
                    let mut acc: amx::Accumulators = [[0; PANEL]; 2 * amx::TILE_M];
                    let span = |p: usize, bytes: usize| (p, bytes);
                    let mut tiles = U::new(&[
                        span(xq.q.as_ptr() as usize, xq.q.len()),
                        span(w.data.as_ptr() as usize, w.data.len()),
                        span(acc.as_ptr() as usize, std::mem::size_of_val(&acc)),
                    ]);
                    amx::panel(&mut tiles, &mut acc, xq, r0..amx_end, k4, w, p, bias, o);
                }
                if r1 > amx_end {
                    vnni::panel(xq, amx_end..r1, k4, w, p, bias, o)
                }
            }
        };
        if spread {
            (0..tasks).into_par_iter().for_each(run);
        } else {
            (0..tasks).for_each(run);
        }
    })
}

/// The f32 result of one output: both kernels end with this arithmetic (the VNNI one
/// lane-wise), so they agree to the bit.
#[inline(always)]
fn epilogue(acc: i32, sx: f32, sw: f32, bias: f32) -> f32 {
    acc as f32 * (sx * sw) + bias
}

/// The rows kernel's dot product for this CPU: [`dot_i8`] built for AVX2 where our ISA allows
/// it. Integer sums are exact in any order, so every build gives the same integers.
fn rows_dot() -> fn(&[u8], &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if super::isa::isa() >= super::isa::Isa::Avx2 {
        // SAFETY: `isa()` found AVX2 on this CPU.
        return |a, b| unsafe { dot_i8_avx2(a, b) };
    }
    dot_i8
}

/// [`dot_i8`] built for AVX2 (the compiler widens to i16 and sums with `vpmaddwd`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[u8], b: &[i8]) -> i32 {
    dot_i8(a, b)
}

/// `Σ a·b` of `i8` values carried as `u8` bits, exact in i32 (|Σ| ≤ k · 127², fine for k < 2¹⁷).
#[inline(always)]
fn dot_i8(a: &[u8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..32 {
            acc[l] += (x[l] as i8 as i16 * y[l] as i16) as i32;
        }
    }
    let mut s: i32 = acc.iter().sum();
    for (&x, &y) in ta.iter().zip(tb) {
        s += x as i8 as i32 * y as i32;
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod amx;

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{Int8Matrix, PanelOut, QuantizedRows, PANEL, TILE_ROWS};
    use std::arch::x86_64::*;

    /// Rows `rows` of `xq` times panel `p` of `w` (columns `p*64 .. min(p*64+64, n)`), written
    /// to `out`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW/VNNI; `w` is in panel layout with row stride `k4` bytes in
    /// `xq`; `out` is valid for those rows and columns, which nobody else touches.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panel(
        xq: &QuantizedRows,
        rows: std::ops::Range<usize>,
        k4: usize,
        w: &Int8Matrix,
        p: usize,
        bias: Option<&[f32]>,
        out: PanelOut,
    ) {
        let panel = Panel {
            w: w.data.as_ptr().add(p * k4 * PANEL),
            k4,
            epilogue: Epilogue::new(w, bias, p * PANEL, w.n),
        };
        let n = out.row_stride;
        let mut i = rows.start;
        while i < rows.end {
            let r = (rows.end - i).min(TILE_ROWS);
            let x = xq.q.as_ptr().add(i * k4);
            let sx = xq.scale.as_ptr().add(i);
            let o = out.first.add(i * n);
            match r {
                1 => tile::<1>(x, sx, &panel, o, n),
                2 => tile::<2>(x, sx, &panel, o, n),
                3 => tile::<3>(x, sx, &panel, o, n),
                4 => tile::<4>(x, sx, &panel, o, n),
                5 => tile::<5>(x, sx, &panel, o, n),
                _ => tile::<6>(x, sx, &panel, o, n),
            }
            i += r;
        }
    }

    /// [`super::quantize_activation_row`] with `shifted`, in AVX-512: the same values for
    /// finite input (max is exact; `cvtps2dq` rounds half to even, as the portable code does).
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `dst.len() == src.len()`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_row_shifted(src: &[f32], dst: &mut [u8]) -> f32 {
        let n = src.len();
        let (full, tail) = (n / 16 * 16, n % 16);
        let tail_mask = ((1u32 << tail) - 1) as u16;
        let mut m = _mm512_setzero_ps();
        for c in (0..full).step_by(16) {
            m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(src.as_ptr().add(c))));
        }
        if tail > 0 {
            let v = _mm512_maskz_loadu_ps(tail_mask, src.as_ptr().add(full));
            m = _mm512_max_ps(m, _mm512_abs_ps(v));
        }
        let amax = _mm512_reduce_max_ps(m);
        if amax == 0.0 || !amax.is_finite() {
            dst.fill(128);
            return if amax.is_finite() { 0.0 } else { f32::NAN };
        }
        let inv = _mm512_set1_ps(127.0 / amax);
        let (lo, hi) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
        let shift = _mm512_set1_epi32(128);
        let q = |v: __m512| {
            let y = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), lo), hi);
            _mm512_add_epi32(_mm512_cvtps_epi32(y), shift)
        };
        for c in (0..full).step_by(16) {
            let b = _mm512_cvtepi32_epi8(q(_mm512_loadu_ps(src.as_ptr().add(c))));
            _mm_storeu_si128(dst.as_mut_ptr().add(c) as *mut __m128i, b);
        }
        if tail > 0 {
            let v = _mm512_maskz_loadu_ps(tail_mask, src.as_ptr().add(full));
            _mm512_mask_cvtepi32_storeu_epi8(
                dst.as_mut_ptr().add(full) as *mut i8,
                tail_mask,
                q(v),
            );
        }
        amax / 127.0
    }

    /// One 64-column panel of the weights and its epilogue terms (pointer at its first column).
    struct Panel {
        w: *const i8,
        k4: usize,
        epilogue: Epilogue,
    }

    /// The per-column terms of [`super::epilogue`] for one panel's 64 columns, as 4 vectors
    /// each (zero past the last column), and which lanes hold real columns.
    pub(super) struct Epilogue {
        comp: [__m512i; 4],
        scale: [__m512; 4],
        bias: [__m512; 4],
        masks: [u16; 4],
    }

    impl Epilogue {
        /// The terms of columns `j0 .. min(j0 + 64, n)` of `w`.
        ///
        /// # Safety
        /// The CPU has AVX-512 F; `w` has panel layout; `j0 < n`, `n` is `w`'s column count
        /// and `bias` has `n` entries.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn new(
            w: &Int8Matrix,
            bias: Option<&[f32]>,
            j0: usize,
            n: usize,
        ) -> Self {
            let cols = (n - j0).min(PANEL);
            // Lanes of each of the 4 vectors that hold real columns (the last panel is partial).
            let masks: [u16; 4] = std::array::from_fn(|v| {
                let live = cols.saturating_sub(16 * v).min(16);
                ((1u32 << live) - 1) as u16
            });
            // Masked loads: lanes past the last column are never read.
            let (comp, scale) = (w.shift_comp.as_ptr().add(j0), w.scale.as_ptr().add(j0));
            Epilogue {
                comp: std::array::from_fn(|v| _mm512_maskz_loadu_epi32(masks[v], comp.add(16 * v))),
                scale: std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], scale.add(16 * v))),
                bias: std::array::from_fn(|v| match bias {
                    Some(b) => _mm512_maskz_loadu_ps(masks[v], b.as_ptr().add(j0 + 16 * v)),
                    None => _mm512_setzero_ps(),
                }),
                masks,
            }
        }

        /// Vector `v` (columns `16v .. 16v + 16` of the panel) of one row: accumulators `acc`,
        /// activation scale `sx`, written at `out` (the row's first panel column); multiply,
        /// then add: no fused multiply-add, so the portable kernel's rounding is matched.
        ///
        /// # Safety
        /// The CPU has AVX-512 F; `out + 16v` is valid for the live lanes of vector `v`.
        #[target_feature(enable = "avx512f")]
        #[inline]
        pub(super) unsafe fn store(&self, v: usize, acc: __m512i, sx: f32, out: *mut f32) {
            let s = _mm512_mul_ps(_mm512_set1_ps(sx), self.scale[v]);
            let y = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, self.comp[v]));
            let y = _mm512_add_ps(_mm512_mul_ps(y, s), self.bias[v]);
            _mm512_mask_storeu_ps(out.add(16 * v), self.masks[v], y);
        }

        /// How many of the 4 vectors hold a real column.
        pub(super) fn live_vectors(&self) -> usize {
            self.masks.iter().take_while(|&&m| m != 0).count()
        }
    }

    /// `R` activation rows (`u8`, stride `k4`, scales `sx`) times one panel, written to `out`
    /// (row stride `n`): 4 accumulators per row, 4 weight vectors per group of 4 inputs, one
    /// broadcast per row and group; then [`Epilogue::store`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn tile<const R: usize>(
        x: *const u8,
        sx: *const f32,
        p: &Panel,
        out: *mut f32,
        n: usize,
    ) {
        let k4 = p.k4;
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        for g in 0..k4 / 4 {
            let wg = p.w.add(g * PANEL * 4);
            let w0 = _mm512_loadu_si512(wg as *const __m512i);
            let w1 = _mm512_loadu_si512(wg.add(64) as *const __m512i);
            let w2 = _mm512_loadu_si512(wg.add(128) as *const __m512i);
            let w3 = _mm512_loadu_si512(wg.add(192) as *const __m512i);
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_epi32((x.add(r * k4 + g * 4) as *const i32).read_unaligned());
                a[0] = _mm512_dpbusd_epi32(a[0], xv, w0);
                a[1] = _mm512_dpbusd_epi32(a[1], xv, w1);
                a[2] = _mm512_dpbusd_epi32(a[2], xv, w2);
                a[3] = _mm512_dpbusd_epi32(a[3], xv, w3);
            }
        }
        for v in 0..p.epilogue.live_vectors() {
            for (r, a) in acc.iter().enumerate() {
                p.epilogue.store(v, a[v], *sx.add(r), out.add(r * n));
            }
        }
    }
}

#[cfg(test)]
mod tests;
