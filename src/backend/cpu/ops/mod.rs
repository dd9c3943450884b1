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

/// Define `fn` twice, for the baseline instruction set and with AVX2, and pick at run time:
/// the loops of these element-wise ops vectorise 8 wide instead of 4. Rust never fuses a
/// multiply and an add on its own, so both versions compute the same bits.
macro_rules! with_avx2 {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($a: $t),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($a: $t),*) $(-> $ret)? {
                    body($($a),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($a),*) };
                }
            }
            body($($a),*)
        }
    };
}

mod argmax;
mod attention;
mod conv1d;
mod elementwise;
mod embed;
mod layernorm;
mod math;
mod matmul;
mod softmax;

pub use argmax::argmax;
pub use attention::{
    attention, attention_in, attention_weights, attention_weights_in, to_head_major, KvLayout,
};
pub use conv1d::{conv1d_k3, conv1d_out_len};
pub use elementwise::{add_assign, gelu};
pub use embed::embed;
pub use layernorm::layer_norm;
pub use math::{erf, exp};
pub use matmul::{linear, linear_small_m, matmul, SMALL_M};
pub use softmax::{log_sum_exp, softmax_rows};

/// Below this many multiply-adds a matrix product runs on one thread: thread hand-off costs more
/// than it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

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
