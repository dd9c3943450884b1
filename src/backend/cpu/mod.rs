//! The CPU reference backend.

pub mod ops;
