//! The crate's internals, for its own tests, benches and examples only: no stability promise.
//! Paths mirror the private modules (`testing::backend::gpu::GpuModel` is
//! `crate::backend::gpu::GpuModel`).

pub mod audio {
    pub use crate::audio::*;
}
pub mod backend {
    pub use crate::backend::*;
}
pub mod decode {
    pub use crate::decode::*;
}
pub mod error {
    pub use crate::error::*;
}
pub mod mel {
    pub use crate::mel::*;
}
pub mod model {
    pub use crate::model::*;
}
pub mod output {
    pub use crate::output::*;
}
pub mod tokenizer {
    pub use crate::tokenizer::*;
}
pub mod transcribe {
    pub use crate::transcribe::*;
}
pub mod atomic_file {
    pub use crate::atomic_file::*;
}
