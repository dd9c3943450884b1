//! Fused multi-head attention for many queries (encoder self-attention, cross-attention of
//! prompts and batched passes), AVX-512 or AVX2 + FMA, head_dim 64 (every Whisper size): the FlashAttention
//! scheme on the CPU. Per task, a tile of [`TILE_ROWS`] queries of one head walks the keys in
//! blocks of [`KEY_BLOCK`]: scores `q · kᵀ` into a small block (registers, then L1), an online
//! softmax (running max and sum per query; earlier partial results rescaled when the max grows),
//! then `p · v` accumulated into the tile's output. The `[n_q, n_kv]` score matrix is never
//! formed, and each key block is read while it is in cache.
//!
//! Keys are first transposed per head into tiles of 32 keys × 64 dimensions (`[tile][t][32]`),
//! so the score kernel loads two 16-key vectors per dimension and broadcasts the query's value.
//! The f32 sums run in another order than the unfused path (`attention.rs` on `gemm`): results
//! agree to f32 rounding (tested against f64 in `attention.rs`'s tests).
//!
//! The two instruction sets share the layout, the tile sizes and the tile's driver
//! (`tile_driver!`); their kernels differ in width: AVX-512 scores 12 rows × 32 keys and weighs
//! values 6 rows × 64 dimensions at a time in its 32 registers, AVX2 (16 registers of 8 lanes)
//! 6 rows × 16 keys and 3 rows × 32 dimensions.
//!
//! With [`Products::Bf16`] on a CPU with AVX-512 BF16, the products run in bf16 with f32 sums
//! (module `bf16`), and with [`Products::Bf16x3`] as three bf16 products of split operands
//! (near f32); elsewhere those requests run the f32 kernels.
//!
//! Where the CPU lacks AVX2 + FMA or heads are not 64 wide, [`fused_attention`] declines and
//! the caller takes the unfused path.

use super::attention::AttnShape;
use crate::backend::cpu::isa::{isa, Isa};

#[cfg(target_arch = "x86_64")]
mod bf16;

/// Dimensions per head this kernel handles.
pub(super) const HEAD_DIM: usize = 64;
/// Queries per task (a tile): 12 rows × 2 vectors of 16 keys are 24 accumulators.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const TILE_ROWS: usize = 12;
/// Keys per online-softmax step (a multiple of [`KEY_TILE`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const KEY_BLOCK: usize = 128;
/// Keys per transposed tile of the score kernel.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const KEY_TILE: usize = 32;

thread_local! {
    /// The transposed keys of one call (taken out for the call, so a rayon task that this thread
    /// runs meanwhile never finds it borrowed).
    static KEYS_T: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// The bf16 kernel's packed keys and values of one call, taken out as `KEYS_T`.
    static PACKED_BF16: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The precision of attention's products (queries × keys, weights × values); every sum is f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Products {
    /// f32 products: the reference.
    F32,
    /// Operands rounded to bf16 (8 significant bits), where the CPU has AVX-512 BF16 (else
    /// f32): twice the multiply-adds per instruction.
    Bf16,
    /// Operands split into two bf16 (`hi + lo`, 16 significant bits) and three bf16 products
    /// each, where the CPU has AVX-512 BF16 (else f32): about 2^-16 of each product lost, near
    /// f32. Faster than f32 on AMX tiles only (three `tdpbf16ps` against f32 multiply-adds;
    /// with `vdpbf16ps`, three bf16 products cost more than one f32 multiply-add).
    Bf16x3,
    /// Queries × keys in f32, and softmax weights × values with both operands rounded to bf16,
    /// where the CPU has AVX-512 BF16 (else f32). The scores, which the softmax exponentiates,
    /// keep f32; the weighted sum of values, whose result the int8 output projection quantizes
    /// to 8 bits next, takes bf16's 8 significant bits and half the instructions.
    Bf16Values,
}

impl Products {
    /// What `products` runs on this CPU: the bf16 kinds only where the bf16 kernels exist.
    pub fn on_this_cpu(self) -> Products {
        #[cfg(target_arch = "x86_64")]
        if self != Products::F32 && bf16::available() {
            return self;
        }
        Products::F32
    }
}

/// Multi-head attention as [`super::attention`] with `n_q` above the few-query kernel's
/// limit, on the kernels of `simd` (capped at what the CPU has: tests force the AVX2 kernels on
/// an AVX-512 CPU with it); `head_rows(h)` gives (offset of head `h`'s first key/value row,
/// distance between rows). Returns false, having written nothing, where this kernel does not
/// apply (no AVX2, or heads not [`HEAD_DIM`] wide).
#[allow(clippy::too_many_arguments)]
pub(super) fn fused_attention(
    simd: Isa,
    products: Products,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    head_rows: impl Fn(usize) -> (usize, usize) + Sync,
    shape: AttnShape,
    causal_offset: Option<usize>,
    out: &mut [f32],
) -> bool {
    let AttnShape {
        n_q,
        n_kv,
        d,
        n_head,
    } = shape;
    let simd = simd.min(isa());
    if simd < Isa::Avx2 || d != n_head * HEAD_DIM || n_kv == 0 {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert!(q.len() >= n_q * d && out.len() >= n_q * d);
        for h in 0..n_head {
            let (off, rs) = head_rows(h);
            assert!(
                k.len() >= off + (n_kv - 1) * rs + HEAD_DIM
                    && v.len() >= off + (n_kv - 1) * rs + HEAD_DIM,
                "attention keys/values too small"
            );
        }
        let parallel =
            n_q * n_kv * d >= super::PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1;
        let products = products.on_this_cpu();
        if simd >= Isa::Avx512 && products != Products::F32 {
            // The AMX kernel has bf16 scores only.
            let kernel = if bf16::amx::available() && products != Products::Bf16Values {
                Bf16Kernel::Amx
            } else {
                Bf16Kernel::Avx512
            };
            fused_bf16(
                kernel,
                products,
                q,
                k,
                v,
                &head_rows,
                shape,
                causal_offset,
                parallel,
                out,
            );
            return true;
        }
        let head_len = keys_t_len(n_kv);
        // Every element is written by the transposition (the padding keys zero): the buffer is
        // kept from call to call, not cleared first.
        let mut keys_t = KEYS_T.take();
        keys_t.resize(n_head * head_len, 0.0);
        let transpose =
            |(h, kt): (usize, &mut [f32])| transpose_keys(k, head_rows(h), n_kv, kt, |x| x);
        per_head(&mut keys_t, head_len, parallel, transpose);
        let q_tiles = n_q.div_ceil(TILE_ROWS);
        let out_ptr = super::SendPtr(out.as_mut_ptr());
        let kt = &keys_t;
        let tile_fn: TileFn = if simd >= Isa::Avx512 {
            avx512::tile
        } else {
            avx2::tile
        };
        let run = |h: usize, tile: usize| {
            let (off, rs) = head_rows(h);
            // SAFETY: the CPU has `simd` (capped above); the asserts above bound every key and
            // value row read; the task writes rows tile*12.. (< n_q) of head h's columns only.
            unsafe {
                tile_fn(
                    q,
                    d,
                    h,
                    tile * TILE_ROWS,
                    (n_q - tile * TILE_ROWS).min(TILE_ROWS),
                    &kt[h * head_len..(h + 1) * head_len],
                    v[off..].as_ptr(),
                    rs,
                    n_kv,
                    causal_offset,
                    out_ptr,
                )
            }
        };
        per_tile(n_head, q_tiles, parallel, run);
        KEYS_T.set(keys_t);
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (q, k, v, head_rows, n_q, causal_offset, out, products);
        unreachable!("Isa::Avx2 is only detected on x86-64")
    }
}

/// Whether [`Products::Bf16`] and [`Products::Bf16x3`] run on AMX tiles here (module
/// `bf16::amx`).
pub fn bf16_amx_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        bf16::amx::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which kernel runs the bf16 products (module `bf16`).
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bf16Kernel {
    /// `vdpbf16ps`, 12 queries per task.
    Avx512,
    /// The CPU's AMX tiles (`tdpbf16ps`), 16 queries per task.
    Amx,
    /// The AMX kernel on the tile emulator (tests).
    #[cfg(test)]
    AmxEmulated,
}

/// [`fused_attention`] with bf16 `products` (not [`Products::F32`]) on `kernel`: every head's
/// keys and values packed (module `bf16`; keys transposed in f32 for
/// [`Products::Bf16Values`]), then one task per head and tile of queries. The caller checked
/// what [`fused_attention`] checks, and that `kernel` runs here (the AVX-512 BF16 kernel for
/// all three; `bf16::amx::available()` for [`Bf16Kernel::Amx`], which takes bf16 scores only).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(super) fn fused_bf16(
    kernel: Bf16Kernel,
    products: Products,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    head_rows: &(impl Fn(usize) -> (usize, usize) + Sync),
    shape: AttnShape,
    causal_offset: Option<usize>,
    parallel: bool,
    out: &mut [f32],
) {
    let AttnShape {
        n_q,
        n_kv,
        d,
        n_head,
    } = shape;
    assert!(products != Products::F32, "fused_bf16 takes bf16 products");
    let (split, f32_scores) = (
        products == Products::Bf16x3,
        products == Products::Bf16Values,
    );
    assert!(
        !f32_scores || kernel == Bf16Kernel::Avx512,
        "AMX has bf16 scores only"
    );
    let planes = bf16::planes(split);
    // f32 keys are kept as their bits, read back as f32 by the score kernel.
    let keys_len = if f32_scores {
        keys_t_len(n_kv)
    } else {
        planes * bf16::keys_len(n_kv)
    };
    let head_len = keys_len + planes * bf16::values_len(n_kv);
    // Every element is written by the packing (the padding zero): kept, not cleared first.
    let mut packed = PACKED_BF16.take();
    packed.resize(n_head * head_len, 0);
    let pack = |(h, dst): (usize, &mut [u32])| {
        let (keys, values) = dst.split_at_mut(keys_len);
        // SAFETY: `Products::on_this_cpu` found the bf16 kernel's features; the caller checked
        // that `k` and `v` hold every row of every head.
        unsafe {
            if f32_scores {
                transpose_keys(k, head_rows(h), n_kv, keys, f32::to_bits);
            } else {
                bf16::pack_keys(k, head_rows(h), n_kv, split, keys);
            }
            bf16::pack_values(v, head_rows(h), n_kv, split, values);
        }
    };
    per_head(&mut packed, head_len, parallel, pack);
    let tile_rows = match kernel {
        Bf16Kernel::Avx512 => TILE_ROWS,
        _ => bf16::amx::QUERY_ROWS,
    };
    let q_tiles = n_q.div_ceil(tile_rows);
    let out_ptr = super::SendPtr(out.as_mut_ptr());
    let packed_ref = &packed;
    let run = |h: usize, tile: usize| {
        let (keys, values) = packed_ref[h * head_len..(h + 1) * head_len].split_at(keys_len);
        let (i0, rows) = (tile * tile_rows, (n_q - tile * tile_rows).min(tile_rows));
        let task = bf16::Task {
            q,
            d,
            h,
            i0,
            rows,
            keys,
            values,
            n_kv,
            causal_offset,
            split,
            f32_scores,
            out: out_ptr,
        };
        // SAFETY: as `pack`, and the caller checked that `kernel` runs here; the task writes
        // rows i0..i0 + rows (< n_q) of head h's columns only.
        unsafe {
            match kernel {
                Bf16Kernel::Avx512 => bf16::tile(&task),
                Bf16Kernel::Amx => bf16::amx::tile::<bf16::amx::CpuTiles>(&task),
                #[cfg(test)]
                Bf16Kernel::AmxEmulated => {
                    bf16::amx::tile::<crate::backend::cpu::amx::TileFile>(&task)
                }
            }
        }
    };
    per_tile(n_head, q_tiles, parallel, run);
    PACKED_BF16.set(packed);
}

/// Floats of one head's transposed keys ([`transpose_keys`]).
#[cfg(target_arch = "x86_64")]
fn keys_t_len(n_kv: usize) -> usize {
    n_kv.div_ceil(KEY_TILE) * KEY_TILE * HEAD_DIM
}

/// Head keys `k[off + j * rs..][..64]` (`j < n_kv`) transposed into `out` ([`keys_t_len`]):
/// tiles of [`KEY_TILE`] keys, `[tile][t][32]`, the keys past `n_kv` zero.
#[cfg(target_arch = "x86_64")]
fn transpose_keys<T: Copy>(
    k: &[f32],
    (off, rs): (usize, usize),
    n_kv: usize,
    out: &mut [T],
    to: impl Fn(f32) -> T,
) {
    for j in 0..n_kv.next_multiple_of(KEY_TILE) {
        let tile = &mut out[(j / KEY_TILE) * KEY_TILE * HEAD_DIM..];
        for t in 0..HEAD_DIM {
            let x = if j < n_kv { k[off + j * rs + t] } else { 0.0 };
            tile[t * KEY_TILE + j % KEY_TILE] = to(x);
        }
    }
}

/// Queries `i0..i0 + rows` (`rows <= TILE_ROWS`) of head `h` (rows `d` wide), scaled by
/// 1/√64 = 1/8 (exact: a power of two), as `[TILE_ROWS][64]`, rows past `rows` zero.
#[cfg(target_arch = "x86_64")]
fn scaled_queries(
    q: &[f32],
    d: usize,
    h: usize,
    i0: usize,
    rows: usize,
) -> [f32; TILE_ROWS * HEAD_DIM] {
    let mut qs = [0.0f32; TILE_ROWS * HEAD_DIM];
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    for r in 0..rows {
        let src = &q[(i0 + r) * d + h * HEAD_DIM..][..HEAD_DIM];
        for (dst, &x) in qs[r * HEAD_DIM..(r + 1) * HEAD_DIM].iter_mut().zip(src) {
            *dst = x * scale;
        }
    }
    qs
}

/// `f((h, chunk))` for each `head_len`-long chunk of `buf` (head `h`'s), on the rayon pool when
/// `parallel`.
#[cfg(target_arch = "x86_64")]
fn per_head<T: Send>(
    buf: &mut [T],
    head_len: usize,
    parallel: bool,
    f: impl Fn((usize, &mut [T])) + Sync + Send,
) {
    use rayon::prelude::*;
    if parallel {
        buf.par_chunks_mut(head_len).enumerate().for_each(f);
    } else {
        buf.chunks_mut(head_len).enumerate().for_each(f);
    }
}

/// `f(h, tile)` for every head `h < n_head` and tile of queries `tile < q_tiles`, on the rayon
/// pool when `parallel`.
#[cfg(target_arch = "x86_64")]
fn per_tile(n_head: usize, q_tiles: usize, parallel: bool, f: impl Fn(usize, usize) + Sync) {
    use rayon::prelude::*;
    let task = |t: usize| f(t / q_tiles, t % q_tiles);
    if parallel {
        (0..n_head * q_tiles).into_par_iter().for_each(task);
    } else {
        (0..n_head * q_tiles).for_each(task);
    }
}

/// Keys each of a tile's rows `i0..i0 + rows` sees: all `n_kv`, or the causal prefix; none for
/// the padding rows past `rows`.
#[cfg(target_arch = "x86_64")]
fn visible_keys<const ROWS: usize>(
    rows: usize,
    i0: usize,
    n_kv: usize,
    causal_offset: Option<usize>,
) -> [usize; ROWS] {
    std::array::from_fn(|r| match (r < rows, causal_offset) {
        (false, _) => 0,
        (true, None) => n_kv,
        (true, Some(p)) => (p + i0 + r + 1).min(n_kv),
    })
}

/// Writes rows `0..rows` of a tile's output `o` (`[TILE_ROWS, 64]`), each divided by its
/// softmax sum, to rows `i0..` of head `h`'s columns of `out` (rows `d` wide).
///
/// # Safety
/// `out` is valid for `(i0 + rows) * d` floats, and no one else writes those elements meanwhile.
#[cfg(target_arch = "x86_64")]
unsafe fn write_tile(
    o: &[f32],
    sum: &[f32],
    rows: usize,
    out: super::SendPtr,
    (i0, d, h): (usize, usize, usize),
) {
    for r in 0..rows {
        let inv = 1.0 / sum[r];
        let dst = out.get().add((i0 + r) * d + h * HEAD_DIM);
        for t in 0..HEAD_DIM {
            *dst.add(t) = o[r * HEAD_DIM + t] * inv;
        }
    }
}

/// The online softmax's bookkeeping for one row whose running max is `max` and whose next
/// block's max is `block_max`: (the new running max, what to subtract from the block's scores,
/// the factor that rescales the earlier sum and output).
#[cfg(target_arch = "x86_64")]
fn online_step(max: f32, block_max: f32) -> (f32, f32, f32) {
    let new_max = max.max(block_max);
    // A row that has seen no key yet keeps max −∞; subtract 0 then, never −∞ − −∞.
    let shift = if new_max == f32::NEG_INFINITY {
        0.0
    } else {
        new_max
    };
    let alpha = if max == f32::NEG_INFINITY {
        0.0
    } else {
        (max - shift).exp()
    };
    (new_max, shift, alpha)
}

/// The part of a vector `exp` both instruction sets share, written with the intrinsics named:
/// x = n·ln2 + r and `(n, e^r)` by `math::exp`'s polynomial with fused multiply-adds. The
/// caller clamps x where its 2^n needs it, scales by 2^n and zeroes lanes below −87.3.
#[cfg(target_arch = "x86_64")]
macro_rules! exp_core {
    ($x:expr; $set1:ident, $mul:ident, $add:ident, $fmadd:ident, $fnmadd:ident,
     $round:ident) => {{
        let xc = $x;
        let n = $round($mul(xc, $set1(std::f32::consts::LOG2_E)));
        let r = $fnmadd(n, $set1(0.693_359_4), xc);
        let r = $fnmadd(n, $set1(-2.121_944_4e-4), r);
        let mut p = $set1(super::super::math::EXP_POLY[0]);
        for &c in &super::super::math::EXP_POLY[1..] {
            p = $fmadd(p, r, $set1(c));
        }
        (n, $add($fmadd(p, $mul(r, r), r), $set1(1.0)))
    }};
}

/// One ISA's `tile` (see `tile_driver!`).
#[cfg(target_arch = "x86_64")]
type TileFn = unsafe fn(
    &[f32],
    usize,
    usize,
    usize,
    usize,
    &[f32],
    *const f32,
    usize,
    usize,
    Option<usize>,
    super::SendPtr,
) -> ();

/// The driver of one tile of queries, the same for every instruction set: it calls the
/// module's `scores`, `block_max`, `exp_block` and `values` kernels, compiled with `$features`.
#[cfg(target_arch = "x86_64")]
macro_rules! tile_driver {
    ($features:literal) => {
        /// Rows `i0..i0 + rows` (`rows <= TILE_ROWS`) of head `h`: see the module comment. `kt` is
        /// the head's transposed keys, `v` its first value row (rows `rs` apart).
        ///
        /// # Safety
        /// The CPU has the module's features; `v` is valid for `n_kv` rows; `out` for
        /// `(i0 + rows) * d` floats, and no one else writes rows `i0..i0 + rows` of head `h`'s
        /// columns meanwhile.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn tile(
            q: &[f32],
            d: usize,
            h: usize,
            i0: usize,
            rows: usize,
            kt: &[f32],
            v: *const f32,
            rs: usize,
            n_kv: usize,
            causal_offset: Option<usize>,
            out: SendPtr,
        ) {
            let qs = super::scaled_queries(q, d, h, i0, rows);
            let visible = super::visible_keys::<TILE_ROWS>(rows, i0, n_kv, causal_offset);
            let kv_end = visible.iter().copied().max().unwrap_or(0);
            let mut s = [0.0f32; TILE_ROWS * KEY_BLOCK];
            let mut o = [0.0f32; TILE_ROWS * HEAD_DIM];
            let mut max = [f32::NEG_INFINITY; TILE_ROWS];
            let mut sum = [0.0f32; TILE_ROWS];
            let mut alpha = [0.0f32; TILE_ROWS];
            for j0 in (0..kv_end).step_by(KEY_BLOCK) {
                let cb = KEY_BLOCK.min(kv_end - j0);
                for t in 0..cb.div_ceil(KEY_TILE) {
                    let tile_keys = kt.as_ptr().add((j0 / KEY_TILE + t) * KEY_TILE * HEAD_DIM);
                    scores(qs.as_ptr(), tile_keys, s.as_mut_ptr().add(t * KEY_TILE));
                }
                for r in 0..TILE_ROWS {
                    let valid = visible[r].saturating_sub(j0).min(cb);
                    // The online softmax: raise the running max, overwrite the row with
                    // exp(s - max) (0 past `valid`), rescale the running sum by
                    // exp(old max - new max) and add the row's; alpha rescales the output.
                    let row = s.as_mut_ptr().add(r * KEY_BLOCK);
                    let (new_max, shift, a) = super::online_step(max[r], block_max(row, valid));
                    sum[r] = sum[r] * a + exp_block(row, valid, shift);
                    (max[r], alpha[r]) = (new_max, a);
                }
                values(s.as_ptr(), v.add(j0 * rs), rs, cb, o.as_mut_ptr(), &alpha);
            }
            super::write_tile(&o, &sum, rows, out, (i0, d, h));
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::SendPtr;
    use super::{HEAD_DIM, KEY_BLOCK, KEY_TILE, TILE_ROWS};
    use std::arch::x86_64::*;

    tile_driver!("avx512f,avx512dq,fma");

    /// `o[r] = o[r] · alpha[r] + Σ_j p[r, j] · v[j]` for the [`TILE_ROWS`] rows, 6 at a time.
    #[target_feature(enable = "avx512f,fma")]
    #[inline]
    unsafe fn values(p: *const f32, v: *const f32, rs: usize, n: usize, o: *mut f32, a: &[f32]) {
        for g in 0..TILE_ROWS / 6 {
            weighted_values(
                p.add(g * 6 * KEY_BLOCK),
                v,
                rs,
                n,
                o.add(g * 6 * HEAD_DIM),
                &a[g * 6..g * 6 + 6],
            );
        }
    }

    /// `s[r, 0..32] = qs[r] · keys` for the 12 rows of `qs` (`[12, 64]`) and one transposed key
    /// tile (`[64][32]`); rows of `s` are [`KEY_BLOCK`] apart.
    #[target_feature(enable = "avx512f,fma")]
    #[inline]
    pub(super) unsafe fn scores(qs: *const f32, keys: *const f32, s: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); 2]; TILE_ROWS];
        for t in 0..HEAD_DIM {
            let k0 = _mm512_loadu_ps(keys.add(t * KEY_TILE));
            let k1 = _mm512_loadu_ps(keys.add(t * KEY_TILE + 16));
            for (r, a) in acc.iter_mut().enumerate() {
                let qb = _mm512_set1_ps(*qs.add(r * HEAD_DIM + t));
                a[0] = _mm512_fmadd_ps(qb, k0, a[0]);
                a[1] = _mm512_fmadd_ps(qb, k1, a[1]);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(s.add(r * KEY_BLOCK), a[0]);
            _mm512_storeu_ps(s.add(r * KEY_BLOCK + 16), a[1]);
        }
    }

    /// The largest of the first `valid` scores of a [`KEY_BLOCK`]-long `row` (−∞ if none).
    #[target_feature(enable = "avx512f,avx512dq")]
    #[inline]
    pub(super) unsafe fn block_max(row: *const f32, valid: usize) -> f32 {
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        for c in 0..KEY_BLOCK / 16 {
            m = _mm512_max_ps(m, masked(row, c, valid));
        }
        _mm512_reduce_max_ps(m)
    }

    /// Overwrites `row` with `exp(s - shift)` for its first `valid` scores and 0 after, and
    /// returns their sum.
    #[target_feature(enable = "avx512f,avx512dq,fma")]
    #[inline]
    unsafe fn exp_block(row: *mut f32, valid: usize, shift: f32) -> f32 {
        let shift_v = _mm512_set1_ps(shift);
        let mut total = _mm512_setzero_ps();
        for c in 0..KEY_BLOCK / 16 {
            let p = exp(_mm512_sub_ps(masked(row, c, valid), shift_v));
            _mm512_storeu_ps(row.add(c * 16), p);
            total = _mm512_add_ps(total, p);
        }
        _mm512_reduce_add_ps(total)
    }

    /// Lanes `16c..16c + 16` of `row`, −∞ from index `valid` on (not read there).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn masked(row: *const f32, c: usize, valid: usize) -> __m512 {
        let live = valid.saturating_sub(c * 16).min(16);
        let lanes = ((1u32 << live) - 1) as __mmask16;
        _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), lanes, row.add(c * 16))
    }

    /// `o[r] = o[r] · alpha[r] + Σ_j p[r, j] · v[j]` for 6 rows (`p` rows [`KEY_BLOCK`] apart,
    /// `o` rows 64 wide) over `cb` keys: 24 accumulators in registers.
    #[target_feature(enable = "avx512f,fma")]
    #[inline(never)]
    unsafe fn weighted_values(
        p: *const f32,
        v: *const f32,
        rs: usize,
        cb: usize,
        o: *mut f32,
        alpha: &[f32],
    ) {
        let mut acc: [[__m512; 4]; 6] = std::array::from_fn(|r| {
            let a = _mm512_set1_ps(alpha[r]);
            std::array::from_fn(|c| _mm512_mul_ps(a, _mm512_loadu_ps(o.add(r * HEAD_DIM + c * 16))))
        });
        for j in 0..cb {
            let vr = v.add(j * rs);
            let vv: [__m512; 4] = std::array::from_fn(|c| _mm512_loadu_ps(vr.add(c * 16)));
            for (r, a) in acc.iter_mut().enumerate() {
                let pb = _mm512_set1_ps(*p.add(r * KEY_BLOCK + j));
                for c in 0..4 {
                    a[c] = _mm512_fmadd_ps(pb, vv[c], a[c]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (c, &x) in a.iter().enumerate() {
                _mm512_storeu_ps(o.add(r * HEAD_DIM + c * 16), x);
            }
        }
    }

    /// `e^x` lane-wise: the polynomial of `math::exp` with fused multiply-adds and `vscalefps`
    /// for 2^n; 0 below −87.3 (so −∞ gives exactly 0). Relative error ≤ 2 ulp.
    #[target_feature(enable = "avx512f,fma")]
    #[inline]
    pub(super) unsafe fn exp(x: __m512) -> __m512 {
        // No clamp: lanes below −87.3 (where n would pass −126, and −∞, which gives NaN) are
        // zeroed, and the attention's x are at most 0; `vscalefps` takes any n.
        let (n, er) = exp_core! { x; _mm512_set1_ps, _mm512_mul_ps, _mm512_add_ps,
        _mm512_fmadd_ps, _mm512_fnmadd_ps, round_nearest };
        let live = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-87.3));
        _mm512_maskz_scalef_ps(live, er, n)
    }

    /// Each lane rounded to the nearest integer (ties to even).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn round_nearest(x: __m512) -> __m512 {
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2;
