//! The small test files in one binary (each test binary links the whole library, so ten files
//! as ten binaries cost ten links). Each module is one former `tests/<name>.rs`, unchanged but
//! for taking `tests/common/` from here (declared once); its tests run as
//! `cargo test --test suite <name>::`.

#[path = "../common/gpu.rs"]
mod gpu_adapter;
#[path = "../common/models.rs"]
mod models;
#[path = "../common/npy.rs"]
mod npy;
#[path = "../common/synth.rs"]
mod synth;

mod atomic_write;
mod checkpoint_shapes;
mod gpu_greedy_pick;
mod gpu_mel;
mod gpu_pipeline_cache;
mod gpu_profile;
mod mel;
mod model_import;
mod models_cache;
mod pypi_progress;
