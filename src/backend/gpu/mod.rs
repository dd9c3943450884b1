//! The wgpu backend: hand-written WGSL kernels (see `shaders/`).
