//! The CPU reference backend.

pub mod int8;
pub mod model;
pub mod ops;

pub use model::CpuModel;
