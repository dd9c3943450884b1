//! The device: instance, adapter selection, device + queue with the adapter's own limits, error
//! capture (validation / out-of-memory / device loss become `Error::Device`, never a panic), and
//! small upload / read-back helpers.

use std::sync::{Arc, Mutex, OnceLock};

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};

use super::pipeline_cache::{DiskPipelineCache, PipelineCacheDir};

/// Which adapter `GpuContext::new` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdapterSelector {
    /// A hardware adapter, discrete before integrated (then virtual); never a software one.
    /// Fails with "no hardware GPU adapter" so the caller can fall back to the CPU path.
    Auto,
    /// Any adapter, a software rasteriser (lavapipe / llvmpipe) included: hardware first.
    AnyGpu,
    /// The adapter at this index of `list_adapters()`.
    Index(usize),
    /// The first adapter whose name contains this text (case-insensitive).
    Name(String),
}

impl AdapterSelector {
    /// Parses an `--adapter` value: a number is an index, anything else a name fragment.
    pub fn from_adapter_arg(s: &str) -> Self {
        match s.trim().parse::<usize>() {
            Ok(i) => AdapterSelector::Index(i),
            Err(_) => AdapterSelector::Name(s.trim().to_string()),
        }
    }
}

/// What `devices` prints for one adapter.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub subgroup_size: (u32, u32),
    pub timestamp_query: bool,
    pub max_storage_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_workgroup_storage: u32,
    pub max_invocations_per_workgroup: u32,
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "[{}] {} ({}, {}), driver {} {}; f16 {}, subgroups {} ({}..{}), timestamps {}; \
             max storage binding {:.0} MiB, max buffer {:.0} MiB, workgroup storage {} KiB, {} invocations/workgroup",
            self.index,
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            self.driver_info,
            yes(self.shader_f16),
            yes(self.subgroups),
            self.subgroup_size.0,
            self.subgroup_size.1,
            yes(self.timestamp_query),
            mib(self.max_storage_binding_size),
            mib(self.max_buffer_size),
            self.max_workgroup_storage / 1024,
            self.max_invocations_per_workgroup
        )
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Vulkan, Metal, DX12 (and browser WebGPU): never GL, which wgpu could otherwise pick silently on
/// llvmpipe (no f16, no subgroups).
///
/// One instance for the whole process, held by a static and so never destroyed. Destroying the
/// last Vulkan instance makes the Vulkan loader unload the driver's library. On an NVIDIA H200
/// (driver 580.159.04) about half of the `transcribe --device gpu` runs on two pinned cores wrote
/// their transcripts and then died with SIGSEGV at exit, and the kernel logged an instruction
/// fetch from an unmapped page. That is what a driver thread still running inside the unloaded
/// library looks like (wgpu issues #1439 and #8365 report crashes at exit with the same driver).
/// Keeping the instance keeps the library loaded until the process ends. Devices are still
/// created and destroyed per `GpuContext`.
fn instance() -> wgpu::Instance {
    static INSTANCE: OnceLock<wgpu::Instance> = OnceLock::new();
    INSTANCE
        .get_or_init(|| {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = wgpu::Backends::PRIMARY;
            wgpu::Instance::new(desc)
        })
        .clone()
}

fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
}

fn report(index: usize, a: &wgpu::Adapter) -> AdapterReport {
    let info = a.get_info();
    let f = a.features();
    let l = a.limits();
    AdapterReport {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP),
        subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
        timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        max_storage_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_workgroup_storage: l.max_compute_workgroup_storage_size,
        max_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
    }
}

/// Every adapter on the primary backends, in enumeration order (the indices `--adapter N` uses).
pub fn list_adapters() -> Vec<AdapterReport> {
    let inst = instance();
    enumerate(&inst)
        .iter()
        .enumerate()
        .map(|(i, a)| report(i, a))
        .collect()
}

fn hw_rank(t: wgpu::DeviceType) -> Option<u8> {
    match t {
        wgpu::DeviceType::DiscreteGpu => Some(0),
        wgpu::DeviceType::IntegratedGpu => Some(1),
        wgpu::DeviceType::VirtualGpu => Some(2),
        wgpu::DeviceType::Other => Some(3),
        wgpu::DeviceType::Cpu => None,
    }
}

/// Errors the device reported outside an error scope, and device loss; checked after each submit.
#[derive(Default)]
struct ErrorSink {
    first: Option<String>,
}

/// One opened device.
pub struct GpuContext {
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    sink: Arc<Mutex<ErrorSink>>,
    /// Compiled pipelines kept on disk between runs (`pipeline_cache`), when the adapter can.
    pipelines: Option<DiskPipelineCache>,
}

impl GpuContext {
    /// Opens the adapter `sel` picks, with the adapter's own limits and SHADER_F16 when present,
    /// and the pipeline cache `DATTAVANI_PIPELINE_CACHE` names (see `pipeline_cache`).
    pub fn new(sel: &AdapterSelector) -> Result<Self> {
        Self::with_pipeline_cache(sel, &PipelineCacheDir::FromEnv)
    }

    /// `new` with the pipeline cache in `dir` (or none).
    pub fn with_pipeline_cache(sel: &AdapterSelector, dir: &PipelineCacheDir) -> Result<Self> {
        let instance = instance();
        let adapters = enumerate(&instance);
        if adapters.is_empty() {
            return Err(Error::Device(
                "no GPU adapter found (no Vulkan/Metal/DX12 driver; on Linux install mesa-vulkan-drivers for the software one)"
                    .into(),
            ));
        }
        let adapter = pick(adapters, sel)?;
        Self::from_adapter(instance, adapter, dir)
    }

    fn from_adapter(
        instance: wgpu::Instance,
        adapter: wgpu::Adapter,
        cache_dir: &PipelineCacheDir,
    ) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Timestamps inside passes serve the kernel profile (`Kernels::enable_profiling`), which
        // is off unless asked for; requesting the features costs nothing until queries are
        // written.
        let features = adapter.features()
            & (wgpu::Features::SHADER_F16
                | wgpu::Features::PIPELINE_CACHE
                | wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
        let desc = wgpu::DeviceDescriptor {
            label: Some("dattavani"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::Device(format!("{}: cannot open device: {e}", info.name)))?;
        let sink = Arc::new(Mutex::new(ErrorSink::default()));
        {
            let s = sink.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
                if g.first.is_none() {
                    g.first = Some(one_line(&e.to_string()));
                }
            }));
            let s = sink.clone();
            device.set_device_lost_callback(move |reason, msg| {
                let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
                if g.first.is_none() && reason != wgpu::DeviceLostReason::Destroyed {
                    g.first = Some(format!("device lost ({reason:?}): {}", one_line(&msg)));
                }
            });
        }
        let pipelines = if features.contains(wgpu::Features::PIPELINE_CACHE) {
            DiskPipelineCache::open(&device, &info, cache_dir)
        } else {
            None
        };
        Ok(GpuContext {
            instance,
            adapter,
            device,
            queue,
            info,
            limits,
            features,
            sink,
            pipelines,
        })
    }

    /// The pipeline cache to create compute pipelines with (`None`: no cache).
    pub fn pipeline_cache(&self) -> Option<&wgpu::PipelineCache> {
        self.pipelines.as_ref().map(|p| &p.cache)
    }

    /// The file the pipeline cache is kept in (`None`: no cache).
    pub fn pipeline_cache_file(&self) -> Option<&std::path::Path> {
        self.pipelines.as_ref().map(|p| p.path())
    }

    /// Writes the pipeline cache back to its file if pipelines created since changed it (IO
    /// errors are logged, never returned: the cache only saves time).
    pub fn save_pipeline_cache(&self) {
        if let Some(p) = &self.pipelines {
            p.save();
        }
    }

    /// "name (backend, type)" for logs.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The first uncaptured device error or device loss since the device was opened.
    pub fn check(&self) -> Result<()> {
        let g = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        match &g.first {
            Some(m) => Err(Error::Device(format!("{}: {m}", self.info.name))),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes; any error becomes `Error::Device`.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v.or(o) {
            return Err(Error::Device(format!(
                "{}: {what}: {}",
                self.info.name,
                one_line(&e.to_string())
            )));
        }
        self.check()?;
        r
    }

    /// A storage buffer holding `data` (also usable as a copy source and destination).
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        // wgpu rejects zero-sized bindings: keep at least one 16-byte vector.
        if bytes.len() < 16 {
            let mut padded = [0u8; 16];
            padded[..bytes.len()].copy_from_slice(bytes);
            return self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: &padded,
                    usage: storage_usage(),
                });
        }
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: storage_usage(),
            })
    }

    /// An uninitialised (zeroed) storage buffer of `bytes` bytes (at least 16).
    pub fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).next_multiple_of(4),
            usage: storage_usage(),
            mapped_at_creation: false,
        })
    }

    /// Submits `enc` and waits for the device to finish it.
    pub fn submit_wait(&self, enc: wgpu::CommandEncoder) -> Result<()> {
        let idx = self.queue.submit([enc.finish()]);
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map_err(|e| {
                Error::Device(format!("{}: waiting for the device: {e}", self.info.name))
            })?;
        self.check()
    }

    /// Copies `len` values of `T` from the start of `src` back to the host (waits).
    pub fn read<T: bytemuck::Pod>(&self, src: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let size = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.submit_wait(enc)?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| Error::Device(format!("{}: mapping a buffer: {e}", self.info.name)))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            _ => {
                return Err(Error::Device(format!(
                    "{}: cannot map a read-back buffer",
                    self.info.name
                )))
            }
        }
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Device(format!("{}: read-back: {e}", self.info.name)))?;
            bytemuck::pod_collect_to_vec::<u8, T>(&view[..bytes as usize])
        };
        staging.unmap();
        Ok(out)
    }
}

pub(crate) fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn pick(adapters: Vec<wgpu::Adapter>, sel: &AdapterSelector) -> Result<wgpu::Adapter> {
    let names = || {
        adapters
            .iter()
            .enumerate()
            .map(|(i, a)| format!("[{i}] {}", a.get_info().name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match sel {
        AdapterSelector::Auto | AdapterSelector::AnyGpu => {
            let mut best: Option<(u8, usize)> = None;
            for (i, a) in adapters.iter().enumerate() {
                let rank = match hw_rank(a.get_info().device_type) {
                    Some(r) => r,
                    None if *sel == AdapterSelector::AnyGpu => 4,
                    None => continue,
                };
                if best.is_none_or(|(r, _)| rank < r) {
                    best = Some((rank, i));
                }
            }
            match best {
                Some((_, i)) => Ok(adapters.into_iter().nth(i).expect("index from enumerate")),
                None => Err(Error::Device(format!(
                    "no hardware GPU adapter (found only: {})",
                    names()
                ))),
            }
        }
        AdapterSelector::Index(i) => {
            let n = adapters.len();
            let desc = names();
            adapters.into_iter().nth(*i).ok_or_else(|| {
                Error::Device(format!(
                    "adapter index {i} out of range: {n} adapter(s): {desc}"
                ))
            })
        }
        AdapterSelector::Name(s) => {
            let want = s.to_lowercase();
            let desc = names();
            adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&want))
                .ok_or_else(|| Error::Device(format!("no adapter named like '{s}' (have: {desc})")))
        }
    }
}
