//! The CPU reference backend.

pub mod int8;
pub mod isa;
pub mod model;
pub mod ops;

pub use model::CpuModel;
