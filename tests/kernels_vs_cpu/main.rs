//! Every WGSL kernel against its CPU twin in `backend::cpu::ops` (or a twin written here where
//! ops has none: masked softmax), on random seeded data and shapes that are not multiples of any
//! tile. One module per kernel family, named as the family's WGSL file (`shaders/<family>.wgsl`),
//! host code (`src/backend/gpu/kernels/<family>.rs`) and CPU twin (`src/backend/cpu/ops/`). Runs on whatever adapter exists (lavapipe in CI). With no adapter, each test prints
//! "skipped: no GPU adapter" and passes, unless DATTAVANI_REQUIRE_GPU=1 (CI), where it fails.
//!
//! Tolerances. f32 sums of K products accumulated in different orders (GPU: vec4 lanes then K/4
//! partial sums; CPU: gemm's blocked order) differ by at most γ_K·Σ|x_k w_k| ≈ K·ε·Σ|x_k w_k|
//! (ε = 1.19e-7). With data uniform in [-1, 1), Σ|x_k w_k| ≈ K/4, so the worst case is
//! ≈ K²ε/4 (4.4e-3 at K = 385); rounding errors are random-signed, so real differences are
//! ≈ √K·ε·Σ|x w| (≈ 1e-5). We allow 3·K·ε·√K·(1 + |ref|)/4-ish, written as `k_tol(K)` below:
//! far above the observed error, far below the O(0.1) error of any indexing bug (a missing or
//! duplicated product changes a result by |x_k w_k| ≈ 0.25 on average).

use dattavani_asr::testing::backend::cpu::ops;
use dattavani_asr::testing::backend::gpu::kernels::{Add, Linear, MatrixRef};
use dattavani_asr::testing::backend::gpu::{
    pack_i8, AdapterSelector, GpuContext, KernelConfig, Kernels, MatmulVariant, WeightType,
};
use dattavani_asr::testing::error::Error;
use dattavani_asr::testing::model::quant::QuantizedMatrix;

#[path = "../common/gpu.rs"]
mod gpu_adapter;
#[path = "../common/npy.rs"]
mod npy;
use gpu_adapter::{gpu, max_abs_err};

fn kernels(ctx: &GpuContext) -> Kernels {
    kernels_with(ctx, |_| ())
}

/// The kernels under the adapter's config as `change` alters it.
fn kernels_with(ctx: &GpuContext, change: impl FnOnce(&mut KernelConfig)) -> Kernels {
    kernels_from(ctx, KernelConfig::for_adapter(ctx), change)
}

/// The kernels under `base` as `change` alters it.
fn kernels_from(
    ctx: &GpuContext,
    mut base: KernelConfig,
    change: impl FnOnce(&mut KernelConfig),
) -> Kernels {
    change(&mut base);
    Kernels::new(ctx, base).expect("kernels compile")
}

/// Deterministic uniform [-1, 1) numbers (64-bit LCG, Knuth's constants).
struct Lcg(u64);
impl Lcg {
    fn f(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as u32
    }
}

/// Largest |a - b| / (1 + |b|).
fn max_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

fn k_tol(k: usize) -> f32 {
    let k = k as f32;
    (3.0 * k * f32::EPSILON * k.sqrt() / 4.0).max(1e-5)
}

mod argmax;
mod attention;
mod conv1d;
mod device;
mod elementwise;
mod embed;
mod layernorm;
mod matmul;
mod model;
mod softmax;
