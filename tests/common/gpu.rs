//! The GPU tests' adapter rule: any adapter (lavapipe in CI). With none, a test prints
//! "skipped: no GPU adapter" and passes, unless DATTAVANI_REQUIRE_GPU=1 (CI), where it fails.
//!
//! Use with `#[path = "common/gpu.rs"] mod gpu_adapter;`.
#![allow(dead_code)]

use dattavani_asr::testing::backend::gpu::{AdapterSelector, GpuContext};

pub fn gpu() -> Option<GpuContext> {
    match GpuContext::new(&AdapterSelector::AnyGpu) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            if std::env::var("DATTAVANI_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("DATTAVANI_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("skipped: no GPU adapter ({e})");
            None
        }
    }
}

/// Largest |a - b| of two results of the same length (a device's and the CPU's).
pub fn max_abs_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
