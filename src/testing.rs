//! The crate's internals, for its own tests, benches and examples only: no stability promise.
//! Paths mirror the private modules (`testing::backend::gpu::GpuModel` is
//! `crate::backend::gpu::GpuModel`).

/// `pub mod m { pub use crate::m::*; }` for each module named.
macro_rules! mirror {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module {
            pub use crate::$module::*;
        })*
    };
}

mirror!(
    audio,
    backend,
    decode,
    error,
    mel,
    model,
    output,
    tokenizer,
    transcribe,
    atomic_file,
);
