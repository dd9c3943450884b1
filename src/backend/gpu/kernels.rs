//! Compute pipelines (created once per device), a uniform-parameter arena, and one host function
//! per kernel that records a dispatch into a caller's `wgpu::CommandEncoder`, so a whole forward
//! pass can go into one command buffer. `oneshot.rs` builds "upload, run one kernel, read back"
//! on top of these for tests and benchmarks.
//!
//! Tile sizes are parameters (`KernelConfig`), prepended to each WGSL file as `const`s, so they can
//! be tuned per adapter without touching the shaders.
//!
//! Oversize tensors: a storage binding is limited to `max_storage_buffer_binding_size` (128 MiB
//! on lavapipe) while a buffer may be larger (2 GiB there). Linear weights `[n, k]` larger than
//! one binding (whisper-small's 159 MB f32 token embedding used as the logits projection) are
//! processed as row ranges: `linear` records one dispatch per range, binding the weight (and the
//! bias) at a byte offset and writing that range's output columns. The embedding gather does the
//! same (`embed`). Ranges are multiples of 64 rows so every offset is 256-byte aligned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::model::quant::QuantizedMatrix;

use super::context::GpuContext;
use super::profile::{self, KernelProfile, KernelTag, Profiler};

/// Which matrix-multiply kernel `linear` uses for more than `gemv_max_rows` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// Shared-memory tiling (`matmul_tiled`): the design for real GPUs.
    Tiled,
    /// Register blocking without workgroup memory or barriers (`matmul_reg`): for CPU-type
    /// adapters (lavapipe), where barriers cost more than the reuse they buy.
    Register,
}

/// Storage type of `linear` weights; arithmetic is f32 either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    F32,
    /// IEEE half, two per u32 (element 2i in the low 16 bits), unpacked with
    /// `unpack2x16float`: works on every adapter, `shader-f16` not required.
    F16,
    /// Row-scaled int8 (`crate::model::quant`, CTranslate2's int8 layout): four two's-complement
    /// bytes per u32 (element 4i in the low byte, `pack_i8`), unpacked with `unpack4xI8`, and an
    /// f32 scale per row in a second buffer. The kernels sum `x · q` in f32 and multiply by the
    /// row's scale once, in the epilogue (the scale of output column n is constant along K).
    Int8,
}

impl WeightType {
    /// Bytes per stored weight (scales not counted).
    fn bytes(self) -> usize {
        match self {
            WeightType::F32 => 4,
            WeightType::F16 => 2,
            WeightType::Int8 => 1,
        }
    }

    /// "f32", "f16" or "int8" (as `--dtype` spells them).
    pub fn name(self) -> &'static str {
        match self {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::Int8 => "int8",
        }
    }
}

/// `[rows, k]` f32 weights (k even) as f16 pairs packed in u32, the layout of `WeightType::F16`
/// (round to nearest even).
pub fn pack_f16(w: &[f32]) -> Vec<u32> {
    w.chunks(2)
        .map(|p| {
            let lo = half::f16::from_f32(p[0]).to_bits() as u32;
            let hi = p
                .get(1)
                .map_or(0, |&v| half::f16::from_f32(v).to_bits() as u32);
            lo | (hi << 16)
        })
        .collect()
}

/// int8 values four per u32 (element 4i in the low byte; a short tail is zero-filled), the
/// layout of `WeightType::Int8` and what WGSL's `unpack4xI8` reads.
pub fn pack_i8(q: &[i8]) -> Vec<u32> {
    q.chunks(4)
        .map(|b| {
            b.iter()
                .enumerate()
                .fold(0u32, |acc, (i, &v)| acc | ((v as u8 as u32) << (8 * i)))
        })
        .collect()
}

/// A `[rows, cols]` weight matrix on the device in one storage type: `cols` is the source's
/// column count rounded up to a multiple of 4 (zero padding, which adds nothing to a dot
/// product), as the matmul kernels read rows in groups of four. For `Int8`, `scale` holds the
/// f32 scale of each row.
pub struct GpuMatrix {
    pub data: wgpu::Buffer,
    pub scale: Option<wgpu::Buffer>,
    pub ty: WeightType,
    pub rows: usize,
    pub cols: usize,
}

impl GpuMatrix {
    /// Converts `w` (`rows x cols`, row-major f32) to `ty` and uploads it; `Int8` quantizes with
    /// `QuantizedMatrix::quantize` (per-row absmax / 127), the quantizer the CPU path shares.
    pub fn upload(
        ctx: &GpuContext,
        label: &str,
        w: &[f32],
        rows: usize,
        cols: usize,
        ty: WeightType,
    ) -> Self {
        assert_eq!(w.len(), rows * cols, "{label}: data is not rows x cols");
        let padded = cols.next_multiple_of(4);
        // No copy when no padding is needed: the token embedding is tens of MB.
        let w: std::borrow::Cow<[f32]> = if padded == cols {
            w.into()
        } else {
            crate::backend::gpu::oneshot::pad_cols(w, rows, cols)
                .0
                .into()
        };
        let (data, scale) = match ty {
            WeightType::F32 => (ctx.upload(label, &w), None),
            WeightType::F16 => (ctx.upload(label, &pack_f16(&w)), None),
            WeightType::Int8 => {
                let q = QuantizedMatrix::quantize(&w, rows, padded);
                (
                    ctx.upload(label, &pack_i8(&q.q)),
                    Some(ctx.upload(label, &q.scale)),
                )
            }
        };
        GpuMatrix {
            data,
            scale,
            ty,
            rows,
            cols: padded,
        }
    }

    /// The view the record functions take.
    pub fn view(&self) -> MatrixRef<'_> {
        MatrixRef {
            data: &self.data,
            scale: self.scale.as_ref(),
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Device bytes of the values and scales.
    pub fn device_bytes(&self) -> u64 {
        self.data.size() + self.scale.as_ref().map_or(0, |s| s.size())
    }
}

/// A `[rows, cols]` weight matrix as `linear_typed` and `embed_batched` read it (cols a
/// multiple of 4 for `linear_typed`): storage buffer, type, and for `Int8` the row scales.
#[derive(Clone, Copy)]
pub struct MatrixRef<'a> {
    pub data: &'a wgpu::Buffer,
    pub scale: Option<&'a wgpu::Buffer>,
    pub ty: WeightType,
    pub rows: usize,
    pub cols: usize,
}

impl<'a> MatrixRef<'a> {
    /// An f32 matrix in `data`.
    pub fn f32(data: &'a wgpu::Buffer, rows: usize, cols: usize) -> Self {
        MatrixRef {
            data,
            scale: None,
            ty: WeightType::F32,
            rows,
            cols,
        }
    }

    /// The row scales of an `Int8` matrix (checked to hold `rows` values), `None` otherwise.
    fn scales(&self, what: &str) -> Result<Option<&'a wgpu::Buffer>> {
        match (self.ty, self.scale) {
            (WeightType::Int8, Some(s)) => {
                need(s, self.rows, what)?;
                Ok(Some(s))
            }
            (WeightType::Int8, None) => Err(Error::Device(format!("{what}: int8 without scales"))),
            _ => Ok(None),
        }
    }

    /// Bytes of one stored row.
    fn row_bytes(&self) -> usize {
        self.cols * self.ty.bytes()
    }
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
            gemv_max_rows: 4,
            gemv_lanes: 32,
            gemv_rows: 8,
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

/// Size of every kernel's parameter block (8 × 32-bit words).
const PARAM_BYTES: u64 = 32;
/// Parameter slots per arena (one per dispatch between two `begin` calls).
const PARAM_SLOTS: u32 = 4096;

/// The head dimension the attention kernels are compiled for (every Whisper size uses 64).
pub const HEAD_DIM: usize = 64;

#[derive(Clone, Copy)]
enum Slot {
    Ro,
    Rw,
    Uniform,
}

/// Pipelines and layouts for one device.
pub struct Kernels {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pub config: KernelConfig,
    max_binding: u64,
    align: u64,
    l_3ro_rw: wgpu::BindGroupLayout,
    l_rw_ro: wgpu::BindGroupLayout,
    l_rw: wgpu::BindGroupLayout,
    l_ro_rw: wgpu::BindGroupLayout,
    l_ro_rw_ro: wgpu::BindGroupLayout,
    l_ro_2rw: wgpu::BindGroupLayout,
    /// Matmul and embedding kernels: x / table, w, bias / positions, out, params, row scales.
    l_weights: wgpu::BindGroupLayout,
    /// Matmul kernels per weight type (`WeightType as usize`).
    matmul: [MatmulPipelines; 3],
    /// Embedding gather for f32 and int8 tables.
    embed: [wgpu::ComputePipeline; 2],
    conv1d: wgpu::ComputePipeline,
    layernorm: wgpu::ComputePipeline,
    gelu: wgpu::ComputePipeline,
    add: wgpu::ComputePipeline,
    transpose: wgpu::ComputePipeline,
    softmax: wgpu::ComputePipeline,
    attn_tiled: wgpu::ComputePipeline,
    attn_split: wgpu::ComputePipeline,
    attn_scores: wgpu::ComputePipeline,
    attn_qk: wgpu::ComputePipeline,
    attn_pv: wgpu::ComputePipeline,
    kv_append: wgpu::ComputePipeline,
    argmax: wgpu::ComputePipeline,
    greedy_pick: wgpu::ComputePipeline,
    mel_frames: wgpu::ComputePipeline,
    mel_power: wgpu::ComputePipeline,
    mel_log: wgpu::ComputePipeline,
    mel_norm: wgpu::ComputePipeline,
    params: wgpu::Buffer,
    param_stride: u64,
    next_slot: AtomicU32,
    /// Host copy of the parameter arena (`param_stride` bytes per slot, as u32 words).
    host_params: Mutex<Vec<u32>>,
    cache_bind_groups: bool,
    /// Set while recording work on short-lived buffers (`without_bind_cache`).
    cache_suspended: AtomicBool,
    bind_cache: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
    max_workgroups: u32,
    dummy: wgpu::Buffer,
    /// Every pipeline with its profile label (looked up only while profiling).
    tags: Vec<(wgpu::ComputePipeline, KernelTag)>,
    /// Timestamp queries around each dispatch (`enable_profiling`); `None`: no cost.
    profiler: Option<Mutex<Profiler>>,
}

/// The three matmul kernels compiled for one weight type.
struct MatmulPipelines {
    tiled: wgpu::ComputePipeline,
    reg: wgpu::ComputePipeline,
    gemv: wgpu::ComputePipeline,
}

/// Most bindings of any kernel.
const MAX_BINDINGS: usize = 6;

/// A bind group's identity: its layout and each binding's (buffer, offset, size).
type BindKey = (
    wgpu::BindGroupLayout,
    [Option<(wgpu::Buffer, u64, u64)>; MAX_BINDINGS],
);

fn header(consts: &[(&str, u32)]) -> String {
    let mut s = String::from("// generated by kernels.rs\n");
    for (k, v) in consts {
        s.push_str(&format!("const {k}: u32 = {v}u;\n"));
    }
    s
}

/// What `shaders/matmul.wgsl` expects prepended for weights stored as `ty`: binding 1,
/// `wload(i)` (the i-th group of 4 weights along K, before any row scale) and `row_scaled(v, n)`
/// (the K-sum of output column n times its row's scale).
fn matmul_prelude(ty: WeightType) -> String {
    let unscaled = "fn row_scaled(v: f32, n: u32) -> f32 { return v; }\n";
    match ty {
        WeightType::F32 => format!(
            "@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;\n\
             fn wload(i: u32) -> vec4<f32> {{ return w[i]; }}\n{unscaled}"
        ),
        WeightType::F16 => format!(
            "@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>;\n\
             fn wload(i: u32) -> vec4<f32> {{\n\
             let u = w[i];\n\
             return vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y));\n}}\n{unscaled}"
        ),
        // Sign-extending unpack (naga emits bit-field extracts where the Int8 capability is
        // absent), exact conversion to f32 (|q| <= 127); the scale is applied once per output.
        WeightType::Int8 => "@group(0) @binding(1) var<storage, read> w: array<u32>;\n\
             @group(0) @binding(5) var<storage, read> w_scale: array<f32>;\n\
             fn wload(i: u32) -> vec4<f32> { return vec4<f32>(unpack4xI8(w[i])); }\n\
             fn row_scaled(v: f32, n: u32) -> f32 { return v * w_scale[n]; }\n"
            .to_string(),
    }
}

/// What `shaders/embed.wgsl` expects prepended for a table stored as `ty` (f32 or int8): binding
/// 1 and `tload(r, c)` (element c of table row r, in f32).
fn embed_prelude(ty: WeightType) -> &'static str {
    match ty {
        WeightType::Int8 => {
            "@group(0) @binding(1) var<storage, read> table: array<u32>;\n\
             @group(0) @binding(5) var<storage, read> t_scale: array<f32>;\n\
             fn tload(r: u32, c: u32) -> f32 {\n\
             let q = unpack4xI8(table[r * p.row_stride + c / 4u]);\n\
             return f32(q[c % 4u]) * t_scale[r];\n}\n"
        }
        WeightType::F32 | WeightType::F16 => {
            "@group(0) @binding(1) var<storage, read> table: array<f32>;\n\
             fn tload(r: u32, c: u32) -> f32 { return table[r * p.row_stride + c]; }\n"
        }
    }
}

fn groups(n: usize, per: u32) -> u32 {
    n.div_ceil(per as usize) as u32
}

impl Kernels {
    /// Compiles every kernel for `ctx`'s device (inside an error scope: a shader or pipeline the
    /// driver rejects becomes `Error::Device`), through the context's pipeline cache, which is
    /// then written back if compiling added to it.
    pub fn new(ctx: &GpuContext, config: KernelConfig) -> Result<Self> {
        let t = std::time::Instant::now();
        let k = ctx.scoped("compiling kernels", || Self::build(ctx, config))?;
        tracing::debug!(
            "kernels compiled in {:.0} ms (pipeline cache: {})",
            t.elapsed().as_secs_f64() * 1e3,
            ctx.pipeline_cache_file()
                .map_or("off".into(), |p| p.display().to_string())
        );
        ctx.save_pipeline_cache();
        Ok(k)
    }

    fn build(ctx: &GpuContext, c: KernelConfig) -> Result<Self> {
        let device = &ctx.device;
        for (name, v) in [
            ("gemv_lanes", c.gemv_lanes),
            ("layernorm_wg", c.layernorm_wg),
            ("softmax_wg", c.softmax_wg),
            ("argmax_wg", c.argmax_wg),
        ] {
            if !v.is_power_of_two() {
                return Err(Error::Device(format!(
                    "kernel config: {name} = {v} must be a power of two"
                )));
            }
        }
        let layout = |label: &str, slots: &[Slot]| {
            let entries: Vec<wgpu::BindGroupLayoutEntry> = slots
                .iter()
                .enumerate()
                .map(|(i, s)| wgpu::BindGroupLayoutEntry {
                    binding: i as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: match s {
                        Slot::Ro => wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only: true },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        Slot::Rw => wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only: false },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        Slot::Uniform => wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Uniform,
                            has_dynamic_offset: false,
                            min_binding_size: wgpu::BufferSize::new(PARAM_BYTES),
                        },
                    },
                    count: None,
                })
                .collect();
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries: &entries,
            })
        };
        use Slot::*;
        let l_3ro_rw = layout("3ro+rw+u", &[Ro, Ro, Ro, Rw, Uniform]);
        let l_rw_ro = layout("rw+ro+u", &[Rw, Ro, Uniform]);
        let l_rw = layout("rw+u", &[Rw, Uniform]);
        let l_ro_rw = layout("ro+rw+u", &[Ro, Rw, Uniform]);
        let l_ro_rw_ro = layout("ro+rw+u+ro", &[Ro, Rw, Uniform, Ro]);
        let l_ro_2rw = layout("ro+2rw+u", &[Ro, Rw, Rw, Uniform]);
        let l_weights = layout("3ro+rw+u+ro", &[Ro, Ro, Ro, Rw, Uniform, Ro]);

        // A module with its label. Weight-storage variants are labelled "<family> <storage>
        // (<variant>)", e.g. "matmul f16 (tiled)": the profile names them by that storage word.
        let module = |label: &'static str, consts: &[(&str, u32)], src: &str| {
            let code = format!("{}\n{}", header(consts), src);
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(code.into()),
            };
            let m = if c.trusted {
                // SAFETY: every kernel clamps or guards each index against its shape parameters,
                // and the record functions check buffer sizes against those parameters (see
                // `KernelConfig::trusted`).
                unsafe {
                    device
                        .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
                }
            } else {
                device.create_shader_module(desc)
            };
            (m, label)
        };
        let tags = std::cell::RefCell::new(Vec::new());
        let pipeline = |(m, label): &(wgpu::ShaderModule, &str),
                        entry: &'static str,
                        l: &wgpu::BindGroupLayout| {
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(l)],
                immediate_size: 0,
            });
            let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pl),
                module: m,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: ctx.pipeline_cache(),
            });
            tags.borrow_mut()
                .push((p.clone(), KernelTag::new(label, entry)));
            p
        };
        let mm_consts = |t: &MatmulTile| {
            vec![
                ("MM_WG_X", t.wg_x),
                ("MM_WG_Y", t.wg_y),
                ("MM_TM", t.tm),
                ("MM_TN", t.tn),
                ("MM_BK4", t.bk4),
                ("GV_LANES", c.gemv_lanes),
                ("GV_ROWS", c.gemv_rows),
            ]
        };
        let mm_src = include_str!("../../../shaders/matmul.wgsl");
        let matmul_for = |ty: WeightType| {
            // f32 keeps the plain labels (profile names "matmul_reg", not "... (f32)").
            let (tiled, reg) = match ty {
                WeightType::F32 => ("matmul (tiled)", "matmul (register)"),
                WeightType::F16 => ("matmul f16 (tiled)", "matmul f16 (register)"),
                WeightType::Int8 => ("matmul int8 (tiled)", "matmul int8 (register)"),
            };
            let src = format!("{}{mm_src}", matmul_prelude(ty));
            let tiled = module(tiled, &mm_consts(&c.tiled), &src);
            let reg = module(reg, &mm_consts(&c.register), &src);
            MatmulPipelines {
                tiled: pipeline(&tiled, "matmul_tiled", &l_weights),
                reg: pipeline(&reg, "matmul_reg", &l_weights),
                gemv: pipeline(&tiled, "gemv", &l_weights),
            }
        };
        let matmul = [
            matmul_for(WeightType::F32),
            matmul_for(WeightType::F16),
            matmul_for(WeightType::Int8),
        ];
        let conv = module(
            "conv1d",
            &[
                ("CV_WG_X", c.conv_wg.0),
                ("CV_WG_Y", c.conv_wg.1),
                ("CV_TT", c.conv_tt),
                ("CV_TC", c.conv_tc),
            ],
            include_str!("../../../shaders/conv1d.wgsl"),
        );
        let ln = module(
            "layernorm",
            &[("LN_WG", c.layernorm_wg)],
            include_str!("../../../shaders/layernorm.wgsl"),
        );
        let ew = module(
            "elementwise",
            &[("EW_WG", c.elementwise_wg)],
            include_str!("../../../shaders/elementwise.wgsl"),
        );
        let sm = module(
            "softmax",
            &[("SM_WG", c.softmax_wg)],
            include_str!("../../../shaders/softmax.wgsl"),
        );
        let at = module(
            "attention",
            &[
                ("AT_BQ", c.attn_bq),
                ("AT_BK", c.attn_bk),
                ("AT_HD4", (HEAD_DIM / 4) as u32),
                ("AD_WG", c.attn_split_wg),
            ],
            include_str!("../../../shaders/attention.wgsl"),
        );
        let sc = module(
            "attn_scores",
            &[("AT_HD4", (HEAD_DIM / 4) as u32)],
            include_str!("../../../shaders/attn_scores.wgsl"),
        );
        let amm = module(
            "attn_mm",
            &[
                ("AM_WG_X", c.attn_mm_wg.0),
                ("AM_WG_Y", c.attn_mm_wg.1),
                ("AM_TM", c.attn_mm_tm),
                ("AM_TN", c.attn_mm_tn),
                ("AM_TN4", c.attn_mm_tn4),
                ("AT_HD4", (HEAD_DIM / 4) as u32),
            ],
            include_str!("../../../shaders/attn_mm.wgsl"),
        );
        let em_src = include_str!("../../../shaders/embed.wgsl");
        let em = module(
            "embed",
            &[("EM_WG", c.embed_wg)],
            &format!("{}{em_src}", embed_prelude(WeightType::F32)),
        );
        let em8 = module(
            "embed int8",
            &[("EM_WG", c.embed_wg)],
            &format!("{}{em_src}", embed_prelude(WeightType::Int8)),
        );
        let am = module(
            "argmax",
            &[("AM_WG", c.argmax_wg)],
            include_str!("../../../shaders/argmax.wgsl"),
        );
        let mel = module(
            "mel",
            &[("MEL_WG", c.elementwise_wg)],
            include_str!("../../../shaders/mel.wgsl"),
        );

        let align = ctx
            .limits
            .min_uniform_buffer_offset_alignment
            .max(PARAM_BYTES as u32) as u64;
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel params"),
            size: align * PARAM_SLOTS as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let max_binding = c
            .max_binding_override
            .unwrap_or(ctx.limits.max_storage_buffer_binding_size);
        let mut k = Kernels {
            matmul,
            embed: [
                pipeline(&em, "embed", &l_weights),
                pipeline(&em8, "embed", &l_weights),
            ],
            conv1d: pipeline(&conv, "conv1d_k3", &l_3ro_rw),
            layernorm: pipeline(&ln, "layer_norm", &l_3ro_rw),
            gelu: pipeline(&ew, "gelu", &l_rw_ro),
            add: pipeline(&ew, "add", &l_rw_ro),
            transpose: pipeline(&ew, "transpose", &l_rw_ro),
            softmax: pipeline(&sm, "softmax", &l_rw),
            attn_tiled: pipeline(&at, "attn_tiled", &l_3ro_rw),
            attn_split: pipeline(&at, "attn_split", &l_3ro_rw),
            attn_scores: pipeline(&sc, "attn_scores", &l_3ro_rw),
            attn_qk: pipeline(&amm, "attn_qk", &l_3ro_rw),
            attn_pv: pipeline(&amm, "attn_pv", &l_3ro_rw),
            kv_append: pipeline(&ew, "kv_append", &l_rw_ro),
            argmax: pipeline(&am, "argmax", &l_ro_rw),
            greedy_pick: pipeline(&am, "greedy_pick", &l_ro_rw_ro),
            mel_frames: pipeline(&mel, "mel_frames", &l_ro_2rw),
            mel_power: pipeline(&mel, "mel_power", &l_ro_2rw),
            mel_log: pipeline(&mel, "mel_log", &l_ro_2rw),
            mel_norm: pipeline(&mel, "mel_norm", &l_ro_2rw),
            device: device.clone(),
            queue: ctx.queue.clone(),
            max_binding,
            align: ctx.limits.min_storage_buffer_offset_alignment as u64,
            l_3ro_rw,
            l_rw_ro,
            l_rw,
            l_ro_rw,
            l_ro_rw_ro,
            l_ro_2rw,
            l_weights,
            params,
            param_stride: align,
            next_slot: AtomicU32::new(0),
            host_params: Mutex::new(vec![0; (align * PARAM_SLOTS as u64 / 4) as usize]),
            cache_bind_groups: false,
            cache_suspended: AtomicBool::new(false),
            bind_cache: Mutex::new(HashMap::new()),
            max_workgroups: ctx.limits.max_compute_workgroups_per_dimension,
            dummy: ctx.storage("dummy", 16),
            config: c,
            tags: Vec::new(),
            profiler: None,
        };
        k.tags = tags.into_inner();
        Ok(k)
    }

    /// The matmul kernels for weights stored as `ty`.
    fn matmul_pipelines(&self, ty: WeightType) -> &MatmulPipelines {
        &self.matmul[ty as usize]
    }

    /// The embedding gather for a table stored as `ty` (f32 or int8; `embed_batched` rejects
    /// other tables before asking).
    fn embed_pipeline(&self, ty: WeightType) -> &wgpu::ComputePipeline {
        match ty {
            WeightType::Int8 => &self.embed[1],
            WeightType::F32 | WeightType::F16 => &self.embed[0],
        }
    }

    /// Starts a new command buffer's worth of dispatches: parameter slots are reused from here.
    /// Call it before recording, and `flush_params` then submit what was recorded before calling
    /// it again.
    pub fn begin(&self) {
        self.next_slot.store(0, Ordering::Relaxed);
        if let Some(p) = &self.profiler {
            p.lock().unwrap_or_else(|p| p.into_inner()).collect();
        }
    }

    /// Uploads the parameters of every dispatch recorded since `begin` (one `write_buffer`).
    /// Call it after recording and before submitting.
    pub fn flush_params(&self) {
        if let Some(p) = &self.profiler {
            p.lock().unwrap_or_else(|p| p.into_inner()).commit();
        }
        let used = self.next_slot.load(Ordering::Relaxed).min(PARAM_SLOTS) as usize;
        if used == 0 {
            return;
        }
        let host = self.host_params.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = (used - 1) * self.param_stride as usize + PARAM_BYTES as usize;
        self.queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&host[..bytes / 4]));
    }

    /// Brackets every dispatch recorded from now on with timestamp queries, for
    /// `take_profile`. Returns false (and changes nothing) when the device lacks
    /// `TIMESTAMP_QUERY_INSIDE_PASSES`. Each command buffer's timestamps are read back at the
    /// next `begin` (one extra submit and wait), so profiled runs are slower than plain ones.
    pub fn enable_profiling(&mut self) -> bool {
        let need = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !self.device.features().contains(need) {
            return false;
        }
        if self.profiler.is_none() {
            self.profiler = Some(Mutex::new(Profiler::new(&self.device, &self.queue)));
        }
        true
    }

    /// Stops profiling; what was measured is dropped.
    pub fn disable_profiling(&mut self) {
        self.profiler = None;
    }

    /// Device time per kernel since profiling was enabled or the last `take_profile` (which
    /// starts a new table); `None` when profiling is off. Call it after the last submission
    /// of the work to measure.
    pub fn take_profile(&self) -> Result<Option<KernelProfile>> {
        match &self.profiler {
            Some(p) => {
                let tags: Vec<KernelTag> = self.tags.iter().map(|(_, t)| t.clone()).collect();
                let mut p = p.lock().unwrap_or_else(|p| p.into_inner());
                p.take(&tags).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Keep every bind group this instance creates, keyed by its layout and bindings, and reuse
    /// it when a later dispatch binds the same buffer ranges and parameter slot (a model's
    /// buffers are fixed, and its passes record the same dispatches in the same order, so after
    /// the first encoder run and decoder step nothing is created). Only for an instance whose
    /// buffers live long: the cache holds them until `clear_bind_cache`.
    pub fn enable_bind_cache(&mut self) {
        self.cache_bind_groups = true;
    }

    /// Runs `f` with the bind-group cache off: for dispatches on buffers that live for one call
    /// (the mel's), which the cache would otherwise keep alive.
    pub fn without_bind_cache<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = self.cache_suspended.swap(true, Ordering::Relaxed);
        let r = f();
        self.cache_suspended.store(was, Ordering::Relaxed);
        r
    }

    /// Values per binding-range step: ranges start at multiples of this so byte offsets meet
    /// the storage offset alignment.
    pub(crate) fn row_step(&self) -> usize {
        (self.align / 4).max(64) as usize
    }

    /// Drops the cached bind groups (after replacing buffers they bind).
    pub fn clear_bind_cache(&self) {
        self.bind_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Writes one dispatch's parameters into the next arena slot (host copy, uploaded by
    /// `flush_params`) and returns its binding.
    fn param(&self, words: [u32; 8]) -> Result<wgpu::BufferBinding<'_>> {
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        if slot >= PARAM_SLOTS {
            return Err(Error::Device(format!(
                "more than {PARAM_SLOTS} dispatches recorded without Kernels::begin()"
            )));
        }
        let offset = slot as u64 * self.param_stride;
        {
            let mut host = self.host_params.lock().unwrap_or_else(|p| p.into_inner());
            let w0 = (offset / 4) as usize;
            host[w0..w0 + 8].copy_from_slice(&words);
        }
        Ok(wgpu::BufferBinding {
            buffer: &self.params,
            offset,
            size: wgpu::BufferSize::new(PARAM_BYTES),
        })
    }

    fn dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        pipeline: &wgpu::ComputePipeline,
        layout: &wgpu::BindGroupLayout,
        bindings: &[wgpu::BufferBinding<'_>],
        wg: (u32, u32, u32),
    ) -> Result<()> {
        if wg.0 == 0 || wg.1 == 0 || wg.2 == 0 {
            return Ok(());
        }
        let max = self.max_workgroups;
        if wg.0 > max || wg.1 > max || wg.2 > max {
            return Err(Error::Device(format!(
                "dispatch {wg:?} exceeds {max} workgroups per dimension"
            )));
        }
        // Only on a cache miss (or without the cache): the Vec is not on the steady-state path.
        let make = || {
            let entries: Vec<wgpu::BindGroupEntry> = bindings
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: wgpu::BindingResource::Buffer(b.clone()),
                })
                .collect();
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout,
                entries: &entries,
            })
        };
        pass.set_pipeline(pipeline);
        if self.cache_bind_groups && !self.cache_suspended.load(Ordering::Relaxed) {
            let mut key: BindKey = (layout.clone(), Default::default());
            for (i, b) in bindings.iter().enumerate() {
                key.1[i] = Some((b.buffer.clone(), b.offset, b.size.map_or(0, |s| s.get())));
            }
            let mut cache = self.bind_cache.lock().unwrap_or_else(|p| p.into_inner());
            let bg = cache.entry(key).or_insert_with(make);
            pass.set_bind_group(0, &*bg, &[]);
        } else {
            pass.set_bind_group(0, &make(), &[]);
        }
        match &self.profiler {
            None => pass.dispatch_workgroups(wg.0, wg.1, wg.2),
            Some(p) => {
                let tag = self.tags.iter().position(|(pl, _)| pl == pipeline);
                let words =
                    bindings
                        .iter()
                        .find(|b| b.buffer == &self.params)
                        .map_or([0; 8], |b| {
                            let host = self.host_params.lock().unwrap_or_else(|p| p.into_inner());
                            let w0 = (b.offset / 4) as usize;
                            let mut w = [0u32; 8];
                            w.copy_from_slice(&host[w0..w0 + 8]);
                            w
                        });
                let work = tag.map_or(Default::default(), |t| {
                    let t = &self.tags[t].1;
                    profile::work(t.entry, t.weight_bytes, &words, wg)
                });
                let mut p = p.lock().unwrap_or_else(|p| p.into_inner());
                let (set, q) = p.next_pair();
                pass.write_timestamp(set, q);
                pass.dispatch_workgroups(wg.0, wg.1, wg.2);
                pass.write_timestamp(set, q + 1);
                p.record(tag.unwrap_or(usize::MAX), work);
            }
        }
        Ok(())
    }

    /// 2-D dispatch shape for a 1-D grid of `n` workgroups (x ≤ 65535, y = the rest).
    fn grid(n: usize) -> (u32, u32, u32) {
        let n = n.max(1);
        if n <= 65535 {
            (n as u32, 1, 1)
        } else {
            (65535, n.div_ceil(65535) as u32, 1)
        }
    }

    /// Rows of a `[rows, row_bytes]` tensor that fit one binding, a multiple of 64 (so offsets
    /// stay 256-byte aligned).
    pub(crate) fn rows_per_binding(&self, row_bytes: u64) -> usize {
        let rows = (self.max_binding / row_bytes.max(1)) as usize;
        let step = (self.align / 4).max(64) as usize;
        (rows / step * step).max(step)
    }

    /// Bytes one storage binding may span here (the adapter's limit or the test override).
    pub fn max_binding(&self) -> u64 {
        self.max_binding
    }

    /// `out[m, n] = act(x[m, k] · wᵀ + bias)`, w PyTorch's `[n, k]`, k a multiple of 4 (zero-pad
    /// rows otherwise). GEMV for `m ≤ gemv_max_rows`, else the configured matmul variant.
    /// Weights larger than one storage binding are processed in row ranges (see module docs).
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        out: &wgpu::Buffer,
        m: usize,
        n: usize,
        k: usize,
        gelu: bool,
    ) -> Result<()> {
        self.linear_typed(pass, x, MatrixRef::f32(w, n, k), bias, out, m, gelu)
    }

    /// `linear` with the weights `w` (`[n, k]`, n = `w.rows`, k = `w.cols`) stored in any
    /// `WeightType` (see `GpuMatrix`).
    #[allow(clippy::too_many_arguments)]
    pub fn linear_typed(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        w: MatrixRef<'_>,
        bias: Option<&wgpu::Buffer>,
        out: &wgpu::Buffer,
        m: usize,
        gelu: bool,
    ) -> Result<()> {
        let (n, k) = (w.rows, w.cols);
        let wbytes = w.ty.bytes();
        if !k.is_multiple_of(4) {
            return Err(Error::Device(format!(
                "linear: k = {k} is not a multiple of 4 (zero-pad the rows)"
            )));
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        need(x, m * k, "linear x")?;
        need(w.data, n * k * wbytes / 4, "linear w")?;
        need(out, m * n, "linear out")?;
        if let Some(b) = bias {
            need(b, n, "linear bias")?;
        }
        let scale = w.scales("linear scales")?;
        let c = &self.config;
        let use_gemv = m <= c.gemv_max_rows;
        let chunk = self.rows_per_binding(w.row_bytes() as u64).min(n);
        let pipes = self.matmul_pipelines(w.ty);
        let mut n0 = 0;
        while n0 < n {
            let rows = chunk.min(n - n0);
            let flags = bias.is_some() as u32 | ((gelu as u32) << 1);
            let p = self.param([
                m as u32,
                rows as u32,
                (k / 4) as u32,
                flags,
                n as u32,
                n0 as u32,
                0,
                0,
            ])?;
            let wb = binding(w.data, (n0 * k * wbytes) as u64, (rows * k * wbytes) as u64);
            // Bias and scales of this row range: offsets n0 · 4 bytes, aligned as n0 is a
            // multiple of `row_step`.
            let bb = match bias {
                Some(b) => binding(b, (n0 * 4) as u64, (rows * 4) as u64),
                None => whole(&self.dummy),
            };
            let sb = match scale {
                Some(s) => binding(s, (n0 * 4) as u64, (rows * 4) as u64),
                None => whole(&self.dummy),
            };
            let binds = [whole(x), wb, bb, whole(out), p, sb];
            let (pl, wg) = if use_gemv {
                (&pipes.gemv, (groups(rows, c.gemv_rows), m as u32, 1))
            } else {
                let (pl, t) = match c.matmul {
                    MatmulVariant::Tiled => (&pipes.tiled, c.tiled),
                    MatmulVariant::Register => (&pipes.reg, c.register),
                };
                (
                    pl,
                    (groups(rows, t.wg_x * t.tn), groups(m, t.wg_y * t.tm), 1),
                )
            };
            self.dispatch(pass, pl, &self.l_weights, &binds, wg)?;
            n0 += rows;
        }
        Ok(())
    }

    /// Kernel-3, padding-1 convolution: input `[c_in, t_in]`, weight `[c_out, c_in, 3]`,
    /// out `[t_out, c_out]` (time-major), optional GELU; as `ops::conv1d_k3`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv1d_k3(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        input: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        out: &wgpu::Buffer,
        c_in: usize,
        t_in: usize,
        c_out: usize,
        stride: usize,
        gelu: bool,
    ) -> Result<()> {
        if stride == 0 || t_in == 0 || c_in == 0 || c_out == 0 {
            return Err(Error::Device("conv1d: empty shape or zero stride".into()));
        }
        let t_out = crate::backend::cpu::ops::conv1d_out_len(t_in, stride);
        need(input, c_in * t_in, "conv1d input")?;
        need(weight, c_out * c_in * 3, "conv1d weight")?;
        need(bias, c_out, "conv1d bias")?;
        need(out, t_out * c_out, "conv1d out")?;
        let c = &self.config;
        let p = self.param([
            c_in as u32,
            t_in as u32,
            c_out as u32,
            t_out as u32,
            stride as u32,
            gelu as u32,
            0,
            0,
        ])?;
        let wg = (
            groups(c_out, c.conv_wg.0 * c.conv_tc),
            groups(t_out, c.conv_wg.1 * c.conv_tt),
            1,
        );
        self.dispatch(
            pass,
            &self.conv1d,
            &self.l_3ro_rw,
            &[whole(input), whole(weight), whole(bias), whole(out), p],
            wg,
        )
    }

    /// Layer norm of each `cols`-wide row (eps 1e-5), out-of-place; as `ops::layer_norm`.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        gamma: &wgpu::Buffer,
        beta: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        self.layer_norm_rows(pass, x, gamma, beta, out, rows, cols, 1, 0)
    }

    /// Layer norm of input rows `first + r * step` (r < `rows`) into output rows r: the
    /// decoder's last position of each sequence (`step` = tokens per sequence).
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_rows(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        gamma: &wgpu::Buffer,
        beta: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        cols: usize,
        step: usize,
        first: usize,
    ) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        need(x, ((rows - 1) * step + first + 1) * cols, "layer_norm x")?;
        need(out, rows * cols, "layer_norm out")?;
        need(gamma, cols, "layer_norm gamma")?;
        need(beta, cols, "layer_norm beta")?;
        let p = self.param([
            rows as u32,
            cols as u32,
            step as u32,
            first as u32,
            0,
            0,
            0,
            0,
        ])?;
        self.dispatch(
            pass,
            &self.layernorm,
            &self.l_3ro_rw,
            &[whole(x), whole(gamma), whole(beta), whole(out), p],
            Self::grid(rows),
        )
    }

    /// Appends `n_new` rows per sequence of `src [n_seq, n_new, d]` to the per-sequence caches
    /// `cache [.., ctx, d]` at row `pos0` of each sequence.
    #[allow(clippy::too_many_arguments)]
    pub fn kv_append(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        cache: &wgpu::Buffer,
        src: &wgpu::Buffer,
        n_seq: usize,
        n_new: usize,
        d: usize,
        ctx: usize,
        pos0: usize,
    ) -> Result<()> {
        let n = n_seq * n_new * d;
        if n == 0 {
            return Ok(());
        }
        if pos0 + n_new > ctx {
            return Err(Error::Device(format!(
                "kv_append: rows {pos0}..{} past the context of {ctx}",
                pos0 + n_new
            )));
        }
        need(src, n, "kv_append src")?;
        need(cache, n_seq * ctx * d, "kv_append cache")?;
        let p = self.param([
            n as u32,
            (n_new * d) as u32,
            (ctx * d) as u32,
            (pos0 * d) as u32,
            0,
            0,
            0,
            0,
        ])?;
        let wg = Self::grid(groups(n, self.config.elementwise_wg) as usize);
        self.dispatch(
            pass,
            &self.kv_append,
            &self.l_rw_ro,
            &[whole(cache), whole(src), p],
            wg,
        )
    }

    /// Scaled scores `q_h · k_hᵀ / √head_dim` of head `head` for `n_q` queries against `n_kv`
    /// keys into rows `out_row0 ..` of `out [.., n_kv]` (softmax them with `softmax`): the
    /// cross-attention weights, as `ops::attention_weights`.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_scores(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n_q: usize,
        n_kv: usize,
        d: usize,
        head: usize,
        out_row0: usize,
    ) -> Result<()> {
        if !d.is_multiple_of(HEAD_DIM) || (head + 1) * HEAD_DIM > d {
            return Err(Error::Device(format!(
                "attn_scores: head {head} of d = {d} with head_dim {HEAD_DIM}"
            )));
        }
        if n_q == 0 || n_kv == 0 {
            return Ok(());
        }
        need(q, n_q * d, "attn_scores q")?;
        need(k, n_kv * d, "attn_scores k")?;
        need(out, (out_row0 + n_q) * n_kv, "attn_scores out")?;
        let scale = 1.0 / (HEAD_DIM as f32).sqrt();
        let p = self.param([
            n_q as u32,
            n_kv as u32,
            (d / 4) as u32,
            head as u32,
            out_row0 as u32,
            scale.to_bits(),
            0,
            0,
        ])?;
        self.dispatch(
            pass,
            &self.attn_scores,
            &self.l_3ro_rw,
            &[whole(q), whole(k), whole(&self.dummy), whole(out), p],
            (groups(n_kv, 64), n_q as u32, 1),
        )
    }

    /// `a = gelu(a)` over the first `n` values (erf form, see `shaders/elementwise.wgsl`).
    pub fn gelu(&self, pass: &mut wgpu::ComputePass<'_>, a: &wgpu::Buffer, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        need(a, n, "gelu")?;
        let p = self.param([n as u32, 0, 0, 0, 0, 0, 0, 0])?;
        let wg = Self::grid(groups(n, self.config.elementwise_wg) as usize);
        self.dispatch(
            pass,
            &self.gelu,
            &self.l_rw_ro,
            &[whole(a), whole(&self.dummy), p],
            wg,
        )
    }

    /// `a += b` over the first `n` values (the residual add).
    pub fn add(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        n: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        need(a, n, "add a")?;
        need(b, n, "add b")?;
        let p = self.param([n as u32, 0, 0, 0, 0, 0, 0, 0])?;
        let wg = Self::grid(groups(n, self.config.elementwise_wg) as usize);
        self.dispatch(pass, &self.add, &self.l_rw_ro, &[whole(a), whole(b), p], wg)
    }

    /// `out[cols, rows] = inp[rows, cols]ᵀ` (time-major conv1 output -> channels-first conv2 input).
    pub fn transpose(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        out: &wgpu::Buffer,
        inp: &wgpu::Buffer,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let n = rows * cols;
        if n == 0 {
            return Ok(());
        }
        need(out, n, "transpose out")?;
        need(inp, n, "transpose in")?;
        let p = self.param([n as u32, rows as u32, cols as u32, 0, 0, 0, 0, 0])?;
        let wg = Self::grid(groups(n, self.config.elementwise_wg) as usize);
        self.dispatch(
            pass,
            &self.transpose,
            &self.l_rw_ro,
            &[whole(out), whole(inp), p],
            wg,
        )
    }

    /// Stable softmax of each row of `x [rows, cols]` in place; with `causal = Some(p)` row i
    /// keeps columns `0..=p + i` and the rest become 0.
    pub fn softmax(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        rows: usize,
        cols: usize,
        causal: Option<usize>,
    ) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        need(x, rows * cols, "softmax")?;
        let p = self.param([
            rows as u32,
            cols as u32,
            causal.is_some() as u32,
            causal.unwrap_or(0) as u32,
            0,
            0,
            0,
            0,
        ])?;
        self.dispatch(
            pass,
            &self.softmax,
            &self.l_rw,
            &[whole(x), p],
            Self::grid(rows),
        )
    }

    /// Fused multi-head attention, as `ops::attention` (head_dim must be `HEAD_DIM`). The
    /// few-query kernel serves `n_q ≤ attn_split_max_q` (decoder steps), the tiled one the rest.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n_q: usize,
        n_kv: usize,
        d: usize,
        n_head: usize,
        causal: Option<usize>,
    ) -> Result<()> {
        self.attention_batched(pass, q, k, v, out, n_q, n_kv, d, n_head, causal, 1, 0)
    }

    /// `attention` for `n_seq` sequences in one dispatch: sequence s has query rows
    /// `s * n_q ..` of q / out and key / value rows `s * kv_stride ..` of k / v (`kv_stride` 0:
    /// all sequences attend to the same keys).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_batched(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n_q: usize,
        n_kv: usize,
        d: usize,
        n_head: usize,
        causal: Option<usize>,
        n_seq: usize,
        kv_stride: usize,
    ) -> Result<()> {
        self.attention_batched_at(
            pass, q, k, v, out, 0, n_q, n_kv, d, n_head, causal, n_seq, kv_stride,
        )
    }

    /// `attention_batched` on the query / output rows from `row0` on (the cross-attention of
    /// one window's sequences in a batched pass): q and out are bound from there, so `row0 · d`
    /// values must be a multiple of the storage offset alignment (d is a multiple of 64).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_batched_at(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        row0: usize,
        n_q: usize,
        n_kv: usize,
        d: usize,
        n_head: usize,
        causal: Option<usize>,
        n_seq: usize,
        kv_stride: usize,
    ) -> Result<()> {
        if n_head == 0 || d != n_head * HEAD_DIM {
            return Err(Error::Device(format!(
                "attention: d = {d} with {n_head} heads; the kernels are compiled for head_dim {HEAD_DIM}"
            )));
        }
        if n_q == 0 || n_seq == 0 {
            return Ok(());
        }
        if n_kv == 0 {
            return Err(Error::Device("attention: no keys".into()));
        }
        if n_seq > 1 && kv_stride != 0 && kv_stride < n_kv {
            return Err(Error::Device(format!(
                "attention: sequences {kv_stride} rows apart hold {n_kv} keys"
            )));
        }
        need(q, (row0 + n_seq * n_q) * d, "attention q")?;
        need(k, ((n_seq - 1) * kv_stride + n_kv) * d, "attention k")?;
        need(v, ((n_seq - 1) * kv_stride + n_kv) * d, "attention v")?;
        need(out, (row0 + n_seq * n_q) * d, "attention out")?;
        let scale = 1.0 / (HEAD_DIM as f32).sqrt();
        let p = self.param([
            n_q as u32,
            n_kv as u32,
            (d / 4) as u32,
            n_head as u32,
            causal.is_some() as u32,
            causal.unwrap_or(0) as u32,
            scale.to_bits(),
            kv_stride as u32,
        ])?;
        let rows = |b| match row0 {
            0 => Ok(whole(b)),
            _ => self.range(b, row0 * d, n_seq * n_q * d, "attention rows"),
        };
        let binds = [rows(q)?, whole(k), whole(v), rows(out)?, p];
        if n_q <= self.config.attn_split_max_q {
            self.dispatch(
                pass,
                &self.attn_split,
                &self.l_3ro_rw,
                &binds,
                (n_head as u32, n_q as u32, n_seq as u32),
            )
        } else {
            self.dispatch(
                pass,
                &self.attn_tiled,
                &self.l_3ro_rw,
                &binds,
                (
                    groups(n_q, self.config.attn_bq),
                    n_head as u32,
                    n_seq as u32,
                ),
            )
        }
    }

    /// Whether `attention_unfused` serves this shape under the config (non-causal, many
    /// queries, n_kv a multiple of 4).
    pub fn use_unfused_attention(&self, n_q: usize, n_kv: usize, causal: Option<usize>) -> bool {
        self.config.attn_unfused
            && causal.is_none()
            && n_q > self.config.attn_split_max_q
            && n_kv.is_multiple_of(4)
    }

    /// Values of the score buffer `attention_unfused` needs.
    pub fn unfused_scores_len(&self, n_q: usize, n_kv: usize, n_head: usize) -> usize {
        n_head * self.config.attn_chunk.max(1).min(n_q) * n_kv
    }

    /// Non-causal multi-head attention as `attention`, unfused: per chunk of `attn_chunk` query
    /// rows, scores of every head into `scores` (`unfused_scores_len` values), a row softmax,
    /// then the product with V into the chunk's rows of `out` (see `shaders/attn_mm.wgsl`).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_unfused(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        out: &wgpu::Buffer,
        scores: &wgpu::Buffer,
        n_q: usize,
        n_kv: usize,
        d: usize,
        n_head: usize,
    ) -> Result<()> {
        if n_head == 0 || d != n_head * HEAD_DIM {
            return Err(Error::Device(format!(
                "attention: d = {d} with {n_head} heads; the kernels are compiled for head_dim {HEAD_DIM}"
            )));
        }
        if n_q == 0 {
            return Ok(());
        }
        if n_kv == 0 || !n_kv.is_multiple_of(4) {
            return Err(Error::Device(format!(
                "unfused attention: n_kv = {n_kv} must be a positive multiple of 4"
            )));
        }
        need(q, n_q * d, "attention q")?;
        need(k, n_kv * d, "attention k")?;
        need(v, n_kv * d, "attention v")?;
        need(out, n_q * d, "attention out")?;
        need(
            scores,
            self.unfused_scores_len(n_q, n_kv, n_head),
            "attention scores",
        )?;
        let c = &self.config;
        let chunk = c.attn_chunk.max(1);
        let scale = 1.0 / (HEAD_DIM as f32).sqrt();
        let (wx, wy) = c.attn_mm_wg;
        let mut r0 = 0;
        while r0 < n_q {
            let rows = chunk.min(n_q - r0);
            let words = [
                rows as u32,
                n_kv as u32,
                (d / 4) as u32,
                r0 as u32,
                scale.to_bits(),
                0,
                0,
                0,
            ];
            let p = self.param(words)?;
            self.dispatch(
                pass,
                &self.attn_qk,
                &self.l_3ro_rw,
                &[whole(q), whole(k), whole(&self.dummy), whole(scores), p],
                (
                    groups(n_kv, wx * c.attn_mm_tn),
                    groups(rows, wy * c.attn_mm_tm),
                    n_head as u32,
                ),
            )?;
            self.softmax(pass, scores, n_head * rows, n_kv, None)?;
            let p = self.param(words)?;
            self.dispatch(
                pass,
                &self.attn_pv,
                &self.l_3ro_rw,
                &[whole(scores), whole(v), whole(&self.dummy), whole(out), p],
                (
                    groups(HEAD_DIM / 4, wx * c.attn_mm_tn4),
                    groups(rows, wy * c.attn_mm_tm),
                    n_head as u32,
                ),
            )?;
            r0 += rows;
        }
        Ok(())
    }

    /// `out[i] = table[ids[i]] + pos[pos0 + i]` for `n_tok` ids (u32) into `[n_tok, d]`; `table`
    /// is `[vocab, d]` f32 and may exceed one binding (one dispatch per row range).
    #[allow(clippy::too_many_arguments)]
    pub fn embed(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        ids: &wgpu::Buffer,
        table: &wgpu::Buffer,
        pos: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n_tok: usize,
        d: usize,
        vocab: usize,
        pos0: usize,
    ) -> Result<()> {
        let table = MatrixRef::f32(table, vocab, d);
        self.embed_batched(pass, ids, table, pos, out, n_tok, d, pos0, n_tok)
    }

    /// `embed` of `n_tok / per_seq` sequences of `per_seq` tokens, each starting at `pos0`, from
    /// a table of `table.rows` tokens stored as f32 or int8 (an int8 row is dequantized as it is
    /// read); the first `d` of its `table.cols` columns are used.
    #[allow(clippy::too_many_arguments)]
    pub fn embed_batched(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        ids: &wgpu::Buffer,
        table: MatrixRef<'_>,
        pos: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n_tok: usize,
        d: usize,
        pos0: usize,
        per_seq: usize,
    ) -> Result<()> {
        if n_tok == 0 || d == 0 {
            return Ok(());
        }
        if per_seq == 0 || !n_tok.is_multiple_of(per_seq) {
            return Err(Error::Device(format!(
                "embed: {n_tok} tokens are not sequences of {per_seq}"
            )));
        }
        let row_stride = match table.ty {
            WeightType::F32 => table.cols,
            WeightType::Int8 if table.cols.is_multiple_of(4) => table.cols / 4,
            ty => {
                return Err(Error::Device(format!(
                    "embed: no kernel for a {} table of {} columns",
                    ty.name(),
                    table.cols
                )))
            }
        };
        if d > table.cols {
            return Err(Error::Device(format!(
                "embed: d = {d} exceeds the table's {} columns",
                table.cols
            )));
        }
        let pipeline = self.embed_pipeline(table.ty);
        let vocab = table.rows;
        need(ids, n_tok, "embed ids")?;
        need(table.data, vocab * table.row_bytes() / 4, "embed table")?;
        let scale = table.scales("embed scales")?;
        need(pos, (pos0 + per_seq) * d, "embed positions")?;
        need(out, n_tok * d, "embed out")?;
        let row_bytes = table.row_bytes();
        let chunk = self.rows_per_binding(row_bytes as u64).min(vocab);
        let mut r0 = 0;
        while r0 < vocab {
            let rows = chunk.min(vocab - r0);
            let p = self.param([
                n_tok as u32,
                d as u32,
                pos0 as u32,
                r0 as u32,
                rows as u32,
                per_seq as u32,
                row_stride as u32,
                0,
            ])?;
            let tb = binding(
                table.data,
                (r0 * row_bytes) as u64,
                (rows * row_bytes) as u64,
            );
            let sb = match scale {
                Some(s) => binding(s, (r0 * 4) as u64, (rows * 4) as u64),
                None => whole(&self.dummy),
            };
            let wg = (groups(d, self.config.embed_wg), n_tok as u32, 1);
            self.dispatch(
                pass,
                pipeline,
                &self.l_weights,
                &[whole(ids), tb, whole(pos), whole(out), p, sb],
                wg,
            )?;
            r0 += rows;
        }
        Ok(())
    }

    /// Index of the maximum of each row of `x [rows, n]` (first on ties) into `out[rows]` (u32).
    pub fn argmax(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        n: usize,
    ) -> Result<()> {
        if rows == 0 || n == 0 {
            return Ok(());
        }
        need(x, rows * n, "argmax x")?;
        need(out, rows, "argmax out")?;
        let p = self.param([n as u32, rows as u32, 0, 0, 0, 0, 0, 0])?;
        self.dispatch(
            pass,
            &self.argmax,
            &self.l_ro_rw,
            &[whole(x), whole(out), p],
            (rows as u32, 1, 1),
        )
    }

    /// Greedy token choice over one row of `n` logits (see `greedy_pick` in argmax.wgsl):
    /// `mask` holds bitsets of suppressed ids, the row used starting at word `mask_word`;
    /// `out` receives (index, log-probability bits).
    pub fn greedy_pick(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        x: &wgpu::Buffer,
        mask: &wgpu::Buffer,
        mask_word: usize,
        out: &wgpu::Buffer,
        n: usize,
    ) -> Result<()> {
        need(x, n, "greedy_pick x")?;
        need(mask, mask_word + n.div_ceil(32), "greedy_pick mask")?;
        need(out, 2, "greedy_pick out")?;
        let p = self.param([n as u32, 1, mask_word as u32, 0, 0, 0, 0, 0])?;
        self.dispatch(
            pass,
            &self.greedy_pick,
            &self.l_ro_rw_ro,
            &[whole(x), whole(out), p, whole(mask)],
            (1, 1, 1),
        )
    }

    /// A binding of `elems` f32 values of `b` from value `first` (`first · 4` must be a multiple
    /// of the storage offset alignment; callers start ranges at multiples of 64 values).
    pub(crate) fn range<'a>(
        &self,
        b: &'a wgpu::Buffer,
        first: usize,
        elems: usize,
        what: &str,
    ) -> Result<wgpu::BufferBinding<'a>> {
        let (off, bytes) = (first as u64 * 4, elems.max(1) as u64 * 4);
        need(b, first + elems.max(1), what)?;
        if off % self.align != 0 || bytes > self.max_binding {
            return Err(Error::Device(format!(
                "{what}: range of {bytes} bytes at {off} (alignment {}, binding limit {})",
                self.align, self.max_binding
            )));
        }
        Ok(binding(b, off, bytes))
    }

    #[allow(clippy::too_many_arguments)]
    fn mel_dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        pipeline: &wgpu::ComputePipeline,
        src: wgpu::BufferBinding<'_>,
        dst: wgpu::BufferBinding<'_>,
        gmax: &wgpu::Buffer,
        words: [u32; 8],
        threads: usize,
    ) -> Result<()> {
        let p = self.param(words)?;
        let wg = Self::grid(groups(threads, self.config.elementwise_wg) as usize);
        self.dispatch(
            pass,
            pipeline,
            &self.l_ro_2rw,
            &[src, dst, whole(gmax), p],
            wg,
        )
    }

    /// `frames [rows, 400]` of STFT frames `t0 ..` (see `shaders/mel.wgsl`); `samples` binds
    /// samples `s0 .. s0 + len` of an `n`-sample signal.
    #[allow(clippy::too_many_arguments)]
    pub fn mel_frames(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        samples: wgpu::BufferBinding<'_>,
        frames: &wgpu::Buffer,
        gmax: &wgpu::Buffer,
        n: usize,
        s0: usize,
        len: usize,
        t0: usize,
        rows: usize,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        let bound = samples
            .size
            .map_or(samples.buffer.size() - samples.offset, |s| s.get());
        if (len as u64) * 4 > bound {
            return Err(Error::Device(format!(
                "mel_frames: {len} samples in a binding of {bound} bytes"
            )));
        }
        need(frames, rows * crate::mel::N_FFT, "mel_frames out")?;
        let w = [n, s0, len, t0, rows, 0, 0, 0].map(|v| v as u32);
        self.mel_dispatch(
            pass,
            &self.mel_frames,
            samples,
            whole(frames),
            gmax,
            w,
            rows * crate::mel::N_FFT,
        )
    }

    /// `power [rows, 204] = re² + im²` of `spec [rows, 402]` (zero padding columns).
    pub fn mel_power(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        spec: &wgpu::Buffer,
        power: &wgpu::Buffer,
        gmax: &wgpu::Buffer,
        rows: usize,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        need(spec, rows * 402, "mel_power spec")?;
        need(power, rows * 204, "mel_power out")?;
        let w = [rows as u32, 0, 0, 0, 0, 0, 0, 0];
        self.mel_dispatch(
            pass,
            &self.mel_power,
            whole(spec),
            whole(power),
            gmax,
            w,
            rows * 204,
        )
    }

    /// `logs[i] = log10(max(mel[i], 1e-10))` for `count` values, folding their maximum into
    /// `gmax` (an order-preserving u32, initialised by the caller).
    pub fn mel_log(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        mel: &wgpu::Buffer,
        logs: wgpu::BufferBinding<'_>,
        gmax: &wgpu::Buffer,
        count: usize,
    ) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        need(mel, count, "mel_log in")?;
        let bound = logs
            .size
            .map_or(logs.buffer.size() - logs.offset, |s| s.get());
        if (count as u64) * 4 > bound {
            return Err(Error::Device(format!(
                "mel_log: {count} values in a binding of {bound} bytes"
            )));
        }
        let w = [count as u32, 0, 0, 0, 0, 0, 0, 0];
        // 16 values per thread (LOG_PER in the shader).
        self.mel_dispatch(
            pass,
            &self.mel_log,
            whole(mel),
            logs,
            gmax,
            w,
            count.div_ceil(16),
        )
    }

    /// One output block `out [n_mels, rows]`: normalised log-mel of `rows` frames whose first
    /// `live` have log10 values in `logs` (frame-major `[live, n_mels]`), the rest silence.
    #[allow(clippy::too_many_arguments)]
    pub fn mel_norm(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        logs: wgpu::BufferBinding<'_>,
        out: wgpu::BufferBinding<'_>,
        gmax: &wgpu::Buffer,
        rows: usize,
        live: usize,
        n_mels: usize,
    ) -> Result<()> {
        if rows == 0 || n_mels == 0 {
            return Ok(());
        }
        let size =
            |b: &wgpu::BufferBinding<'_>| b.size.map_or(b.buffer.size() - b.offset, |s| s.get());
        if (live.min(rows) * n_mels * 4) as u64 > size(&logs)
            || (rows * n_mels * 4) as u64 > size(&out)
        {
            return Err(Error::Device(format!(
                "mel_norm: {rows} x {n_mels} block with {live} live frames exceeds its bindings"
            )));
        }
        let w = [rows, live.min(rows), n_mels, 0, 0, 0, 0, 0].map(|v| v as u32);
        self.mel_dispatch(pass, &self.mel_norm, logs, out, gmax, w, rows * n_mels)
    }
}

fn whole(b: &wgpu::Buffer) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding {
        buffer: b,
        offset: 0,
        size: None,
    }
}

fn binding(b: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding {
        buffer: b,
        offset,
        size: wgpu::BufferSize::new(size.max(4)),
    }
}

/// The buffer must hold at least `elems` 4-byte values (what the kernels index up to).
fn need(b: &wgpu::Buffer, elems: usize, what: &str) -> Result<()> {
    let bytes = elems as u64 * 4;
    if b.size() < bytes {
        return Err(Error::Device(format!(
            "{what}: buffer of {} bytes, the shape needs {bytes}",
            b.size()
        )));
    }
    Ok(())
}
