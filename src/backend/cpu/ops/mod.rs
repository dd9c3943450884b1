//! The CPU reference ops. Each is the twin of a WGSL kernel in `shaders/` and is written to be
//! checked by eye; speed comes from the `gemm` crate for every matrix product, except the few-row
//! products of decoder steps (`linear_small_m`: the weights read once for all rows).
//!
//! One module per kernel family, named as its GPU twin in `backend/gpu/kernels/` and its WGSL
//! file in `shaders/`: `matmul`, `conv1d`, `layernorm`, `elementwise`, `softmax`, `attention`,
//! `argmax`, `embed`; `math` holds the scalar functions they share. Every op is re-exported here,
//! so callers write `ops::linear`. The int8 GEMM is its own family, `backend/cpu/int8.rs`.
//!
//! Layout conventions (all row-major):
//! - activations are `[rows, cols]`, e.g. `[n_ctx, n_state]`;
//! - linear weights are PyTorch's `[out_features, in_features]`;
//! - conv1d weights are `[c_out, c_in, kernel]`.

use gemm::Parallelism;

/// Define `fn` for the portable instruction set and compiled again for AVX2 and for AVX-512,
/// and pick at run time from [`isa`] (detected once): the loops of these element-wise ops
/// vectorise 8 or 16 wide instead of 4. Rust never fuses a multiply and an add on its own and the
/// bodies fix their association (see `math::lanes_reduce`), so every version computes the same
/// bits. The bracketed name is the same function on a chosen instruction set (capped at what the
/// CPU has), which the tests compare against the portable one.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* [$on:ident] $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $ret)? {
            $on($crate::backend::cpu::isa::isa(), $($a),*)
        }

        #[allow(dead_code, clippy::too_many_arguments)]
        $vis fn $on(isa: $crate::backend::cpu::isa::Isa, $($a: $t),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($a: $t),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::backend::cpu::isa::Isa;
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($a: $t),*) $(-> $ret)? {
                    body($($a),*)
                }
                #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")]
                unsafe fn avx512($($a: $t),*) $(-> $ret)? {
                    body($($a),*)
                }
                match isa.min($crate::backend::cpu::isa::isa()) {
                    // SAFETY: the CPU has the instruction set (capped by what `isa()` detected).
                    Isa::Avx512 => return unsafe { avx512($($a),*) },
                    Isa::Avx2 => return unsafe { avx2($($a),*) },
                    Isa::Portable => {}
                }
            }
            let _ = isa;
            body($($a),*)
        }
    };
}

mod argmax;
mod attention;
mod conv1d;
mod elementwise;
mod embed;
mod fused_attention;
mod layernorm;
mod math;
mod matmul;
mod softmax;

pub use argmax::argmax;
pub use attention::{attention, attention_weights, to_head_major, write_head_major, KvLayout};
pub use conv1d::{conv1d_k3, conv1d_k3_from, conv1d_out_len, ConvInput};
pub use elementwise::{add_assign, gelu};
pub use embed::embed;
pub use fused_attention::{bf16_amx_available, Products};
pub use layernorm::layer_norm;
pub use math::{erf, exp};
pub use matmul::{linear, matmul, SMALL_M};
pub use softmax::{log_sum_exp, softmax_rows};

/// Below this many multiply-adds a matrix product runs on one thread: thread hand-off costs more
/// than it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// Below this many elements an element- or row-wise op (GELU, layer norm) stays on one thread.
const PARALLEL_MIN_ELEMS: usize = 1 << 16;

/// `f(offset of the chunk in x, chunk)` over chunks of `x` that are whole multiples of `unit`
/// elements: four chunks per thread of the rayon pool (so a thread held up elsewhere delays
/// little) where `x` is large enough to gain from it, else `x` whole on this thread.
pub(crate) fn par_chunks(x: &mut [f32], unit: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    if x.len() < PARALLEL_MIN_ELEMS || threads < 2 || unit == 0 {
        return f(0, x);
    }
    let chunk = (x.len() / unit).div_ceil(4 * threads) * unit;
    x.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i * chunk, c));
}

fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    if m * n * k >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    }
}

/// A strided view of a matrix for `gemm`: element (i, j) is at `ptr[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct View {
    rs: isize,
    cs: isize,
}

const ROW_MAJOR: fn(usize) -> View = |cols| View {
    rs: cols as isize,
    cs: 1,
};
const TRANSPOSED: fn(usize) -> View = |cols| View {
    rs: 1,
    cs: cols as isize,
};

/// `dst[m, n] = lhs[m, k] · rhs[k, n]` (overwriting `dst`), with explicit strides.
#[allow(clippy::too_many_arguments)]
fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_v: View,
    lhs: &[f32],
    lhs_v: View,
    rhs: &[f32],
    rhs_v: View,
    par: Parallelism,
) {
    // Bounds: the last element each operand touches must be inside its slice.
    let last = |v: View, r: usize, c: usize| {
        (r.saturating_sub(1) as isize * v.rs + c.saturating_sub(1) as isize * v.cs) as usize
    };
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > last(dst_v, m, n), "gemm dst too small");
    if k > 0 {
        assert!(lhs.len() > last(lhs_v, m, k), "gemm lhs too small");
        assert!(rhs.len() > last(rhs_v, k, n), "gemm rhs too small");
    }
    // SAFETY: the asserts above keep every index gemm computes from (m, n, k, strides) inside
    // the slices; dst does not alias lhs or rhs (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_v.cs,
            dst_v.rs,
            false,
            lhs.as_ptr(),
            lhs_v.cs,
            lhs_v.rs,
            rhs.as_ptr(),
            rhs_v.cs,
            rhs_v.rs,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// A raw output pointer handed to tasks that write disjoint elements (`linear_small_m`,
/// `attention`, the int8 GEMM).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: see `linear_small_m`: tasks write disjoint elements through it.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Deterministic data in [-0.5, 0.5) for the unit tests of the ops.
#[cfg(test)]
pub(crate) fn test_data(seed: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
            (h >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

#[cfg(test)]
mod isa_tests {
    //! Each op compiled for AVX2 and AVX-512 against its portable version, on odd lengths: the
    //! same bits (tolerance 0), since the bodies fix their association and nothing is fused.
    use super::test_data as data;
    use super::*;
    use crate::backend::cpu::isa::Isa;

    const LENGTHS: [usize; 8] = [1, 3, 15, 16, 17, 33, 385, 1501];

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// `f` on every instruction set must give what it gives on the portable one.
    fn same_on_every_isa(f: impl Fn(Isa) -> Vec<f32>, what: &str) {
        let portable = bits(&f(Isa::Portable));
        for isa in [Isa::Avx2, Isa::Avx512] {
            assert_eq!(bits(&f(isa)), portable, "{what} on {isa:?}");
        }
    }

    #[test]
    fn element_wise_ops_are_bit_identical_across_instruction_sets() {
        for len in LENGTHS {
            // Scores of attention size, with a masked (−∞) tail and an extreme value.
            let mut x: Vec<f32> = data(1, len).iter().map(|v| v * 40.0).collect();
            x[len - 1] = if len > 2 { f32::NEG_INFINITY } else { 90.0 };
            same_on_every_isa(
                |isa| {
                    let mut y = x.clone();
                    softmax::softmax_rows_on(isa, &mut y, len);
                    y
                },
                &format!("softmax_rows {len}"),
            );
            same_on_every_isa(
                |isa| vec![softmax::log_sum_exp_on(isa, &x)],
                &format!("log_sum_exp {len}"),
            );
            same_on_every_isa(
                |isa| {
                    let mut y: Vec<f32> = data(2, len).iter().map(|v| v * 12.0).collect();
                    elementwise::gelu_on(isa, &mut y);
                    y
                },
                &format!("gelu {len}"),
            );
            same_on_every_isa(
                |isa| {
                    let mut y = data(3, len);
                    elementwise::add_assign_on(isa, &mut y, &data(4, len));
                    y
                },
                &format!("add_assign {len}"),
            );
            same_on_every_isa(
                |isa| {
                    // On AVX-512: 4 groups of 16 rows (each row's sums in a lane), one more
                    // group, and 5 rows in a masked group.
                    let rows = 85;
                    let (g, b) = (data(5, len), data(6, len));
                    let mut y = vec![0.0; rows * len];
                    layernorm::layer_norm_on(isa, &data(7, rows * len), len, &g, &b, &mut y);
                    y
                },
                &format!("layer_norm {len}"),
            );
        }
    }

    /// `exp` builds 2^n from mantissa bits instead of `n as i32`: the same values everywhere.
    #[test]
    fn exp_matches_the_integer_conversion_form() {
        // The previous body, verbatim but for the conversion.
        let old = |x: f32| {
            const ROUND: f32 = 12_582_912.0;
            let xc = x.clamp(-87.3, 88.3);
            let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
            let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
            let mut p = math::EXP_POLY[0];
            for c in &math::EXP_POLY[1..] {
                p = p * r + c;
            }
            let er = p * r * r + r + 1.0;
            let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
            if x < -87.3 {
                0.0
            } else {
                er * scale
            }
        };
        let mut x = -100.0f32;
        while x < 100.0 {
            let got = exp(x);
            assert_eq!(got.to_bits(), old(x).to_bits(), "exp({x})");
            if (-87.3..=88.3).contains(&x) {
                assert!(
                    ((got as f64) / (x as f64).exp() - 1.0).abs() < 3e-7,
                    "exp({x})"
                );
            }
            x += 0.0137;
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
    }
}
