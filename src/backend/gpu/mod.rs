//! The wgpu backend: hand-written WGSL kernels (see `shaders/`), one file per kernel family.
//!
//! - `context`: adapter selection (`--device auto|gpu`, `--adapter N|NAME`), `devices` report,
//!   the device with the adapter's own limits, error scopes turning device errors into
//!   `Error::Device`, upload / read-back helpers.
//! - `kernels`: pipelines built once per device (`Kernels`), tile sizes as parameters
//!   (`KernelConfig`); one module per kernel family (`kernels/<family>.rs` beside
//!   `shaders/<family>.wgsl`) with its typed parameters, record functions and work model.
//! - `mel`: the log-mel spectrogram on the device (`GpuMel`).
//! - `oneshot`: upload, run one kernel, read back (tests, benchmarks).
//! - `pipeline_cache`: compiled pipelines kept on disk between runs (`DATTAVANI_PIPELINE_CACHE`).
//! - `profile`: per-kernel device times from timestamp queries (`bench`'s kernel table).

pub mod context;
pub mod kernels;
pub mod mel;
pub mod model;
pub mod oneshot;
pub mod pipeline_cache;
pub mod profile;

pub use context::{list_adapters, AdapterReport, AdapterSelector, GpuContext};
pub use kernels::{
    pack_f16, pack_i8, pad_cols, GpuMatrix, KernelConfig, Kernels, MatmulTile, MatmulVariant,
    MatrixRef, Op, WeightType, HEAD_DIM,
};
pub use mel::GpuMel;
pub use model::GpuModel;
pub use pipeline_cache::PipelineCacheDir;
pub use profile::{KernelProfile, KernelTime};
