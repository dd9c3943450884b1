//! Every tunable of the kernels (`KernelConfig`): tile sizes, workgroup sizes, which variant of
//! a family serves which shape. Tile sizes are prepended to each WGSL file as `const`s, so they
//! can be tuned per adapter without touching the shaders.

use super::super::context::GpuContext;
use super::matrix::WeightType;

/// Which matrix-multiply kernel `linear` uses for more than `gemv_max_rows` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// Shared-memory tiling (`matmul_tiled`): the design for real GPUs.
    Tiled,
    /// Register blocking without workgroup memory or barriers (`matmul_reg`): for CPU-type
    /// adapters (lavapipe), where barriers cost more than the reuse they buy.
    Register,
}

/// Workgroup shape and per-thread tile of a matmul kernel.
#[derive(Clone, Copy, Debug)]
pub struct MatmulTile {
    pub wg_x: u32,
    pub wg_y: u32,
    /// Output rows per thread.
    pub tm: u32,
    /// Output columns per thread.
    pub tn: u32,
    /// K-tile depth in vec4s (shared-memory kernel only).
    pub bk4: u32,
}

/// Every tunable of the kernels. `for_adapter` picks defaults per adapter type.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    pub matmul: MatmulVariant,
    pub tiled: MatmulTile,
    pub register: MatmulTile,
    /// `linear` uses the GEMV kernel up to this many rows.
    pub gemv_max_rows: usize,
    /// GEMV: threads per output along K (power of two) and outputs per workgroup.
    pub gemv_lanes: u32,
    pub gemv_rows: u32,
    /// GEMV: input rows each workgroup serves from one read of its weights.
    pub gemv_batch: u32,
    /// conv1d: workgroup (x = channel blocks, y = time blocks), time steps and channels per thread.
    pub conv_wg: (u32, u32),
    pub conv_tt: u32,
    pub conv_tc: u32,
    /// Workgroup sizes (powers of two where they reduce).
    pub layernorm_wg: u32,
    pub softmax_wg: u32,
    pub elementwise_wg: u32,
    pub embed_wg: u32,
    pub argmax_wg: u32,
    /// Attention: queries per workgroup, keys per staged block, threads of the few-query kernel.
    pub attn_bq: u32,
    pub attn_bk: u32,
    pub attn_split_wg: u32,
    /// The few-query attention kernel is used up to this many queries.
    pub attn_split_max_q: usize,
    /// Run non-causal attention with many queries (the encoder's) unfused, as scores (register
    /// matmul) -> softmax -> ·V over chunks of `attn_chunk` query rows, instead of the fused
    /// online-softmax kernel (`attention_unfused`): for CPU-type adapters, where the fused
    /// kernel's barriers and one-query-per-thread layout run at ~2 GFLOP/s.
    pub attn_unfused: bool,
    pub attn_chunk: usize,
    /// Unfused attention products: workgroup shape, query rows per thread, keys per thread
    /// (scores) and output vec4 columns per thread (·V).
    pub attn_mm_wg: (u32, u32),
    pub attn_mm_tm: u32,
    pub attn_mm_tn: u32,
    pub attn_mm_tn4: u32,
    /// Compile without naga's runtime bounds checks. Sound because every kernel clamps or guards
    /// each index against its shape parameters (see the comments in `shaders/`) and every record
    /// function below checks each buffer's size against those parameters before dispatching.
    pub trusted: bool,
    /// Storage of the models' linear weights (q/k/v/o, fc1, fc2). The token embedding (also the
    /// logits projection) is int8 under `Int8` and f32 otherwise; the convolutions, positional
    /// embeddings and norms stay f32.
    pub weights: WeightType,
    /// Pretend the storage-binding limit is this many bytes (tests of the row-range split).
    pub max_binding_override: Option<u64>,
}

impl KernelConfig {
    /// Defaults for real GPUs.
    pub fn gpu() -> Self {
        KernelConfig {
            matmul: MatmulVariant::Tiled,
            tiled: MatmulTile {
                wg_x: 16,
                wg_y: 16,
                tm: 4,
                tn: 4,
                bk4: 4,
            },
            register: MatmulTile {
                wg_x: 8,
                wg_y: 8,
                tm: 8,
                tn: 4,
                bk4: 4,
            },
            // Up to 8 rows (a beam-5 step, batched greedy windows) on the GEMV, one weight read
            // per 8 rows. With 4, an H200 ran beam-5 steps' 5-row products on the 64-row tiled
            // kernel at 75 µs a call, against 9.4 µs for a one-row GEMV (stop 14's profile).
            gemv_max_rows: 8,
            gemv_lanes: 32,
            gemv_rows: 8,
            gemv_batch: 8,
            conv_wg: (16, 8),
            conv_tt: 4,
            conv_tc: 4,
            layernorm_wg: 128,
            softmax_wg: 128,
            elementwise_wg: 256,
            embed_wg: 64,
            argmax_wg: 256,
            attn_bq: 64,
            attn_bk: 16,
            attn_split_wg: 32,
            attn_split_max_q: 4,
            attn_unfused: false,
            attn_chunk: 256,
            attn_mm_wg: (8, 8),
            attn_mm_tm: 8,
            attn_mm_tn: 8,
            attn_mm_tn4: 2,
            trusted: true,
            weights: WeightType::F16,
            max_binding_override: None,
        }
    }

    /// Defaults for CPU-type adapters (lavapipe): no-barrier kernels, one thread per GEMV output.
    pub fn software() -> Self {
        // Measured on lavapipe (2 cores, noisy): 8x8 register tiles beat 8x4 (8.9-12 vs 7-9
        // GFLOP/s); 8-thread layer-norm workgroups beat 128 (13 vs 25 ms at 1500x384).
        KernelConfig {
            matmul: MatmulVariant::Register,
            register: MatmulTile {
                wg_x: 8,
                wg_y: 8,
                tm: 8,
                tn: 8,
                bk4: 4,
            },
            gemv_lanes: 1,
            gemv_rows: 64,
            layernorm_wg: 8,
            // The register matmul even for one row: 42 vs 64 ms per tiny.en decoder step (the
            // logits projection dominates; the GEMV's per-thread rows become gathers there).
            gemv_max_rows: 0,
            // Encoder self-attention unfused (1500x1500x6 heads: 570-700 ms vs 1.35-1.6 s fused
            // in the same runs, a loaded machine), its softmax with 16-thread rows (585 vs 700 ms
            // with 128).
            attn_unfused: true,
            softmax_wg: 16,
            ..Self::gpu()
        }
    }

    pub fn for_adapter(ctx: &GpuContext) -> Self {
        if ctx.is_software() {
            Self::software()
        } else {
            Self::gpu()
        }
    }
}
