//! Compute pipelines (created once per device), a uniform-parameter arena, and host functions
//! that record dispatches into a caller's `wgpu::CommandEncoder`, so a whole forward pass can go
//! into one command buffer. `oneshot.rs` builds "upload, run one kernel, read back" on top of
//! these for tests and benchmarks.
//!
//! One module per kernel family, beside its WGSL file of the same name in `shaders/`. Each holds
//! the family's typed parameter block (`wgsl_params!`, fields named and ordered as the WGSL
//! `struct Params`), its compile step, its record functions with their shape guards, and its work
//! model (FLOPs and bytes per dispatch, for the profile). Its doc comment names the CPU twin in
//! `backend/cpu/ops/` and the test in `tests/kernels_vs_cpu/`.
//!
//! | family | WGSL | entry points |
//! | --- | --- | --- |
//! | `matmul` | `matmul.wgsl` | matmul_tiled, matmul_reg, gemv (f32 / f16 / int8 weights) |
//! | `conv1d` | `conv1d.wgsl` | conv1d_k3 |
//! | `layernorm` | `layernorm.wgsl` | layer_norm |
//! | `elementwise` | `elementwise.wgsl` | gelu, add, transpose, kv_append |
//! | `softmax` | `softmax.wgsl` | softmax |
//! | `attention` | `attention.wgsl` | attn_tiled, attn_split (fused) |
//! | `attn_mm` | `attn_mm.wgsl` | attn_qk, attn_pv (unfused attention) |
//! | `attn_scores` | `attn_scores.wgsl` | attn_scores (cross-attention weights) |
//! | `embed` | `embed.wgsl` | embed (f32 / int8 tables) |
//! | `argmax` | `argmax.wgsl` | argmax, greedy_pick |
//! | `mel` | `mel.wgsl` | mel_frames, mel_power, mel_log, mel_norm |
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

use super::context::GpuContext;
use super::profile::{KernelProfile, KernelTag, Profiler, Work};

mod build;
mod config;
mod matrix;
mod op;

mod argmax;
mod attention;
mod attn_mm;
mod attn_scores;
mod conv1d;
mod elementwise;
mod embed;
mod layernorm;
mod matmul;
mod mel;
mod softmax;

pub use config::{KernelConfig, MatmulTile, MatmulVariant};
pub use matrix::{pack_f16, pack_i8, pad_cols, GpuMatrix, MatrixRef, WeightType};
pub use op::Op;

pub use argmax::{Argmax, GreedyPick};
pub use attention::Attention;
pub use attn_mm::AttentionUnfused;
pub use attn_scores::AttnScores;
pub use conv1d::Conv1d;
pub use elementwise::{Add, Gelu, KvAppend, Transpose};
pub use embed::Embed;
pub use layernorm::LayerNorm;
pub use matmul::Linear;
pub use mel::{MelFrames, MelLog, MelNorm, MelPower};
pub use softmax::Softmax;

/// Size of every kernel's parameter block (8 × 32-bit words).
const PARAM_BYTES: u64 = 32;
const PARAM_WORDS: usize = PARAM_BYTES as usize / 4;
/// Parameter slots per arena (one per dispatch between two `begin` calls).
const PARAM_SLOTS: u32 = 4096;

/// The head dimension the attention kernels are compiled for (every Whisper size uses 64).
pub const HEAD_DIM: usize = 64;

/// A family's uniform parameter block: `#[repr(C)]`, eight 32-bit words (the named fields, then
/// padding). The WGSL `struct Params` is generated from it (`wgsl_struct`) and prepended to the
/// family's shader at compile time, so the two cannot drift apart.
pub(crate) trait WgslParams: bytemuck::Pod {
    /// The family's WGSL source (which uses, but does not declare, `struct Params`).
    const SHADER: &'static str;
    /// (name, WGSL type) of each named field, in order.
    const FIELDS: &'static [(&'static str, &'static str)];

    /// The WGSL declaration of `struct Params`: the named fields, then `u32` padding words up
    /// to the arena slot size.
    fn wgsl_struct() -> String {
        let mut s = String::from("struct Params {\n");
        for (name, ty) in Self::FIELDS {
            s.push_str(&format!("    {name}: {ty},\n"));
        }
        for i in Self::FIELDS.len()..PARAM_WORDS {
            s.push_str(&format!("    _p{}: u32,\n", i - Self::FIELDS.len()));
        }
        s.push_str("}\n");
        s
    }
}

/// Declares a family's parameter block from the WGSL file that uses it: the struct with its
/// named fields padded to one arena slot (a compile-time check that they fit), and its
/// `WgslParams` description. `in "family.wgsl" + "snippet.wgsl"` appends shared WGSL functions
/// from `shaders/` to the family's source.
macro_rules! wgsl_params {
    ($(#[$meta:meta])* $name:ident in $file:literal $(+ $snippet:literal)* {
        $($(#[$fmeta:meta])* $field:ident: $ty:ident),* $(,)?
    }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Unused words up to the slot size (`_p0 ..` in the WGSL struct).
            pub _pad: [u32; super::PARAM_WORDS - [$(stringify!($field)),*].len()],
        }

        const _: () = assert!(std::mem::size_of::<$name>() == super::PARAM_BYTES as usize);

        impl super::WgslParams for $name {
            const SHADER: &'static str = concat!(
                include_str!(concat!("../../../../shaders/", $file)),
                $(include_str!(concat!("../../../../shaders/", $snippet)),)*
            );
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }
    };
}
pub(crate) use wgsl_params;

/// Pipelines and layouts for one device.
pub struct Kernels {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pub config: KernelConfig,
    max_binding: u64,
    align: u64,
    /// Matmul kernels per weight type (`WeightType as usize`).
    matmul: [matmul::Pipelines; 3],
    /// Embedding gather for f32 and int8 tables.
    embed: embed::Pipelines,
    conv1d: build::Kernel,
    layernorm: build::Kernel,
    elementwise: elementwise::Pipelines,
    softmax: build::Kernel,
    attention: attention::Pipelines,
    attn_scores: build::Kernel,
    attn_mm: attn_mm::Pipelines,
    argmax: argmax::Pipelines,
    mel: mel::Pipelines,
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

/// Most bindings of any kernel.
const MAX_BINDINGS: usize = 6;

/// A bind group's identity: its layout and each binding's (buffer, offset, size).
type BindKey = (
    wgpu::BindGroupLayout,
    [Option<(wgpu::Buffer, u64, u64)>; MAX_BINDINGS],
);

/// `(first, len)` of the consecutive ranges of `chunk` (the last possibly shorter) that cover
/// `0..n`: the row ranges of a tensor processed one binding or one chunk at a time.
fn ranges(n: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    let chunk = chunk.max(1);
    (0..n)
        .step_by(chunk)
        .map(move |first| (first, chunk.min(n - first)))
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
        if c.gemv_batch == 0 {
            return Err(Error::Device(
                "kernel config: gemv_batch must be at least 1".into(),
            ));
        }
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
        let layouts = build::Layouts::new(device);
        let b = build::Builder::new(ctx, &c, &layouts);
        let matmul = [
            matmul::compile(&b, WeightType::F32),
            matmul::compile(&b, WeightType::F16),
            matmul::compile(&b, WeightType::Int8),
        ];
        let embed = embed::compile(&b);
        let conv1d = conv1d::compile(&b);
        let layernorm = layernorm::compile(&b);
        let elementwise = elementwise::compile(&b);
        let softmax = softmax::compile(&b);
        let attention = attention::compile(&b);
        let attn_scores = attn_scores::compile(&b);
        let attn_mm = attn_mm::compile(&b);
        let argmax = argmax::compile(&b);
        let mel = mel::compile(&b);
        let tags = b.into_tags();

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
        Ok(Kernels {
            matmul,
            embed,
            conv1d,
            layernorm,
            elementwise,
            softmax,
            attention,
            attn_scores,
            attn_mm,
            argmax,
            mel,
            device: device.clone(),
            queue: ctx.queue.clone(),
            max_binding,
            align: ctx.limits.min_storage_buffer_offset_alignment as u64,
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
            tags,
            profiler: None,
        })
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
    fn param<P: WgslParams>(&self, params: &P) -> Result<wgpu::BufferBinding<'_>> {
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
            let words: [u32; PARAM_WORDS] = bytemuck::cast(*params);
            host[w0..w0 + PARAM_WORDS].copy_from_slice(&words);
        }
        Ok(wgpu::BufferBinding {
            buffer: &self.params,
            offset,
            size: wgpu::BufferSize::new(PARAM_BYTES),
        })
    }

    /// Records one dispatch of `kernel` over the grid `wg` with `params` in the next arena slot
    /// and `storage` bound, in order, to the layout's storage bindings. `work` (what the
    /// dispatch computes and moves, from its family's work model) is asked for only while
    /// profiling.
    fn launch<P: WgslParams>(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        kernel: &build::Kernel,
        params: &P,
        storage: &[wgpu::BufferBinding<'_>],
        wg: (u32, u32, u32),
        work: impl FnOnce() -> Work,
    ) -> Result<()> {
        let n = storage.len() + 1;
        let at = kernel.layout.uniform;
        if n > MAX_BINDINGS || at >= n {
            return Err(Error::Device(format!(
                "{} storage bindings for a layout with the uniform at {at}",
                storage.len()
            )));
        }
        let p = self.param(params)?;
        let bindings: [wgpu::BufferBinding<'_>; MAX_BINDINGS] =
            std::array::from_fn(|i| match i.cmp(&at) {
                std::cmp::Ordering::Less => storage[i].clone(),
                std::cmp::Ordering::Equal => p.clone(),
                std::cmp::Ordering::Greater => storage.get(i - 1).unwrap_or(&p).clone(),
            });
        let (pipeline, layout) = (&kernel.pipeline, &kernel.layout.group);
        let bindings = &bindings[..n];
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
                let work = work();
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

#[cfg(test)]
mod tests {
    use super::WgslParams;

    /// Every shader uses the generated `struct Params` and does not declare its own, and each
    /// block's WGSL struct has one line per 32-bit word.
    fn check<P: WgslParams>() {
        let name = std::any::type_name::<P>();
        assert!(
            !P::SHADER.contains("struct Params"),
            "{name}: shader declares Params"
        );
        assert!(
            P::SHADER.contains("var<uniform> p: Params;"),
            "{name}: no uniform p"
        );
        let wgsl = P::wgsl_struct();
        assert_eq!(
            wgsl.lines().count(),
            super::PARAM_WORDS + 2,
            "{name}:\n{wgsl}"
        );
        for (field, ty) in P::FIELDS {
            assert!(
                wgsl.contains(&format!("    {field}: {ty},\n")),
                "{name}: {field}"
            );
        }
    }

    #[test]
    fn params_are_generated_for_every_family() {
        check::<super::argmax::ArgmaxParams>();
        check::<super::attention::AttentionParams>();
        check::<super::attn_mm::AttnMmParams>();
        check::<super::attn_scores::AttnScoresParams>();
        check::<super::conv1d::Conv1dParams>();
        check::<super::elementwise::ElementwiseParams>();
        check::<super::embed::EmbedParams>();
        check::<super::layernorm::LayerNormParams>();
        check::<super::matmul::MatmulParams>();
        check::<super::mel::MelParams>();
        check::<super::softmax::SoftmaxParams>();
    }
}
