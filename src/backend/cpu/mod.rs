//! The CPU reference backend.

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
pub mod int8;
pub mod isa;
pub mod model;
pub mod ops;

pub use model::CpuModel;
