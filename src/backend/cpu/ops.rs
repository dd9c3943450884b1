//! The CPU reference ops. Each is the twin of a WGSL kernel in `shaders/` and is written to be
//! checked by eye; speed comes from the `gemm` crate for every matrix product.
//!
//! Layout conventions (all row-major):
//! - activations are `[rows, cols]`, e.g. `[n_ctx, n_state]`;
//! - linear weights are PyTorch's `[out_features, in_features]`;
//! - conv1d weights are `[c_out, c_in, kernel]`.

use gemm::Parallelism;

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

/// `out[m, n] = a[m, k] · b[k, n]`.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    gemm_strided(
        m,
        n,
        k,
        out,
        ROW_MAJOR(n),
        a,
        ROW_MAJOR(k),
        b,
        ROW_MAJOR(n),
        parallelism(m, n, k),
    );
}

/// A fully connected layer: `out[m, n] = x[m, k] · wᵀ + bias`, with `w` as `[n, k]`.
pub fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    debug_assert_eq!(w.len(), n * k);
    gemm_strided(
        m,
        n,
        k,
        out,
        ROW_MAJOR(n),
        x,
        ROW_MAJOR(k),
        w,
        TRANSPOSED(k),
        parallelism(m, n, k),
    );
    if let Some(b) = bias {
        for row in out[..m * n].chunks_exact_mut(n) {
            for (o, b) in row.iter_mut().zip(b) {
                *o += b;
            }
        }
    }
}

/// Layer normalisation over each row of `x` (`cols` wide), eps as PyTorch's default 1e-5.
pub fn layer_norm(x: &[f32], cols: usize, gamma: &[f32], beta: &[f32], out: &mut [f32]) {
    const EPS: f32 = 1e-5;
    for (row, o) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let mean = row.iter().sum::<f32>() / cols as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / cols as f32;
        let inv = 1.0 / (var + EPS).sqrt();
        for i in 0..cols {
            o[i] = (row[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
}

/// GELU in the exact erf form OpenAI's Whisper uses (`torch.nn.functional.gelu`, no tanh).
pub fn gelu(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + libm::erff(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// `a += b`, elementwise.
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
}

/// Numerically stable softmax of each `cols`-wide row, in place.
pub fn softmax_rows(x: &mut [f32], cols: usize) {
    for row in x.chunks_exact_mut(cols) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Output length of a kernel-3, padding-1 convolution.
pub fn conv1d_out_len(t_in: usize, stride: usize) -> usize {
    (t_in + 2 - 3) / stride + 1
}

/// 1-D convolution, kernel 3, padding 1, as Whisper's encoder stem.
/// `input` is `[c_in, t_in]` (channels first, as the mel is); the result is written transposed,
/// `[t_out, c_out]`, because the transformer that follows wants time-major rows.
pub fn conv1d_k3(
    input: &[f32],
    c_in: usize,
    t_in: usize,
    weight: &[f32],
    bias: &[f32],
    c_out: usize,
    stride: usize,
    out: &mut [f32],
) {
    let t_out = conv1d_out_len(t_in, stride);
    // im2col, time-major: row t holds input[c, t*stride + j - 1] for every (c, j).
    let mut cols = vec![0.0f32; t_out * c_in * 3];
    for t in 0..t_out {
        let row = &mut cols[t * c_in * 3..(t + 1) * c_in * 3];
        for c in 0..c_in {
            for j in 0..3 {
                let src = (t * stride + j) as isize - 1;
                if src >= 0 && (src as usize) < t_in {
                    row[c * 3 + j] = input[c * t_in + src as usize];
                }
            }
        }
    }
    linear(&cols, t_out, c_in * 3, weight, c_out, Some(bias), out);
}

/// Multi-head scaled dot-product attention.
///
/// `q` is `[n_q, d]`, `k` and `v` are `[n_kv, d]` with `d = n_head * head_dim`; heads are
/// contiguous column blocks. With `causal_offset = Some(p)`, query `i` sits at absolute position
/// `p + i` and sees keys `0..=p + i` (the decoder's self-attention over its KV cache); `None`
/// lets every query see every key (encoder self-attention, cross-attention).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_q: usize,
    n_kv: usize,
    d: usize,
    n_head: usize,
    causal_offset: Option<usize>,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    let hd = d / n_head;
    let scale = 1.0 / (hd as f32).sqrt();
    // One task per head; each computes its [n_q, n_kv] score block single-threaded, so the
    // heads themselves are the parallelism.
    let heads: Vec<Vec<f32>> = (0..n_head)
        .into_par_iter()
        .map(|h| {
            let mut scores = vec![0.0f32; n_q * n_kv];
            let q_h = &q[h * hd..];
            let k_h = &k[h * hd..];
            let v_h = &v[h * hd..];
            // scores = q_h · k_hᵀ
            gemm_strided(
                n_q,
                n_kv,
                hd,
                &mut scores,
                ROW_MAJOR(n_kv),
                q_h,
                View {
                    rs: d as isize,
                    cs: 1,
                },
                k_h,
                View {
                    rs: 1,
                    cs: d as isize,
                },
                Parallelism::None,
            );
            for (i, row) in scores.chunks_exact_mut(n_kv).enumerate() {
                for s in row.iter_mut() {
                    *s *= scale;
                }
                if let Some(p) = causal_offset {
                    for s in row.iter_mut().skip(p + i + 1) {
                        *s = f32::NEG_INFINITY;
                    }
                }
            }
            softmax_rows(&mut scores, n_kv);
            let mut o = vec![0.0f32; n_q * hd];
            gemm_strided(
                n_q,
                hd,
                n_kv,
                &mut o,
                ROW_MAJOR(hd),
                &scores,
                ROW_MAJOR(n_kv),
                v_h,
                View {
                    rs: d as isize,
                    cs: 1,
                },
                Parallelism::None,
            );
            o
        })
        .collect();
    for (h, o) in heads.iter().enumerate() {
        for i in 0..n_q {
            out[i * d + h * hd..i * d + (h + 1) * hd].copy_from_slice(&o[i * hd..(i + 1) * hd]);
        }
    }
}

/// Index of the largest value (the first one on ties), as the GPU argmax kernel returns.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Token embedding plus learned position embedding: `out[i] = tokens[ids[i]] + positions[pos0 + i]`.
pub fn embed(
    table: &[f32],
    positions: &[f32],
    d: usize,
    ids: &[u32],
    pos0: usize,
    out: &mut [f32],
) {
    for (i, &id) in ids.iter().enumerate() {
        let t = &table[id as usize * d..(id as usize + 1) * d];
        let p = &positions[(pos0 + i) * d..(pos0 + i + 1) * d];
        for j in 0..d {
            out[i * d + j] = t[j] + p[j];
        }
    }
}
