//! Per-kernel device times from timestamp queries: `bench`'s kernel table.
//!
//! With profiling on (`Kernels::enable_profiling`, adapters with `TIMESTAMP_QUERY_INSIDE_PASSES`)
//! every dispatch is bracketed by two `write_timestamp`s and tagged with its kernel's name and the
//! floating-point operations and bytes its shape implies (its family's work model in
//! `kernels/<family>.rs`). The records of one command
//! buffer are committed when its parameters are flushed (it is about to be submitted) and read
//! back at the next `Kernels::begin` or `Kernels::take_profile`: one resolve, one map. Off, the
//! only cost is a `None` check per dispatch.
//!
//! On Vulkan the timestamps are taken at the bottom of the pipe, when all earlier work has
//! finished, so a dispatch's interval runs from the end of the work before it to its own end:
//! the intervals never overlap (their sum stays within the wall time), and when dispatches run
//! concurrently (independent ones on a real GPU) the overlap is charged to the later one. The FLOP
//! and byte counts are the algorithm's (each operand read once, each output written once), not
//! the memory traffic the kernel really causes.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::{Error, Result};

/// Query pairs per query set (wgpu allows at most `QUERY_SET_MAX_QUERIES` queries per set).
const PAIRS_PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// One kernel's share of the profiled work.
#[derive(Clone, Debug, Serialize)]
pub struct KernelTime {
    /// The WGSL entry point, with the weight storage for the f16 variants: "matmul_reg (f16)".
    pub name: String,
    pub calls: u64,
    pub total_ms: f64,
    /// Floating-point operations over all calls (multiply-add = 2); 0 where not meaningful.
    pub flops: f64,
    /// Bytes the calls read and write (each operand once).
    pub bytes: f64,
}

impl KernelTime {
    /// GFLOP/s over the kernel's time, `None` for kernels without a FLOP count.
    pub fn gflops(&self) -> Option<f64> {
        (self.flops > 0.0 && self.total_ms > 0.0).then(|| self.flops / self.total_ms / 1e6)
    }

    /// GB/s over the kernel's time.
    pub fn gbytes_per_s(&self) -> Option<f64> {
        (self.bytes > 0.0 && self.total_ms > 0.0).then(|| self.bytes / self.total_ms / 1e6)
    }
}

/// Device time by kernel, the largest total first.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KernelProfile {
    pub kernels: Vec<KernelTime>,
    /// Sum of every dispatch's time.
    pub total_ms: f64,
    pub dispatches: u64,
}

/// What one dispatch computes and moves: each kernel family's work model (`kernels/<family>.rs`)
/// gives it for the dispatches it records.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Work {
    pub flops: f64,
    pub bytes: f64,
}

impl Work {
    pub(crate) const fn new(flops: f64, bytes: f64) -> Self {
        Work { flops, bytes }
    }

    /// `values` values, each costing `flops` operations and moving `bytes` bytes (elementwise
    /// and per-row kernels).
    pub(crate) fn per_value(values: f64, flops: f64, bytes: f64) -> Self {
        Work::new(flops * values, bytes * values)
    }
}

/// A kernel's label in the profile.
#[derive(Clone, Debug)]
pub(crate) struct KernelTag {
    pub name: String,
}

impl KernelTag {
    /// The tag of entry point `entry` of the module labelled `module`: a weight-storage variant's
    /// module is labelled "<family> <storage> (<variant>)" ("matmul f16 (tiled)"), and its
    /// kernels are named "<entry> (<storage>)".
    pub fn new(module: &str, entry: &'static str) -> Self {
        let storage = module
            .split_whitespace()
            .nth(1)
            .filter(|w| !w.starts_with('('));
        KernelTag {
            name: match storage {
                Some(s) => format!("{entry} ({s})"),
                None => entry.to_string(),
            },
        }
    }
}

struct Pending {
    tag: usize,
    work: Work,
}

#[derive(Default, Clone, Copy)]
struct Sum {
    calls: u64,
    ns: f64,
    flops: f64,
    bytes: f64,
}

/// The timestamp queries of one `Kernels` instance and what they add up to.
pub(crate) struct Profiler {
    device: wgpu::Device,
    queue: wgpu::Queue,
    sets: Vec<wgpu::QuerySet>,
    resolve: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// Dispatches of the command buffer being recorded.
    recording: Vec<Pending>,
    /// Dispatches of command buffers submitted and not yet read back.
    submitted: Vec<Pending>,
    sums: HashMap<usize, Sum>,
    /// The first failure reading queries back (reported by `take`).
    error: Option<String>,
}

impl Profiler {
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        Profiler {
            device: device.clone(),
            queue: queue.clone(),
            sets: Vec::new(),
            resolve: None,
            recording: Vec::new(),
            submitted: Vec::new(),
            sums: HashMap::new(),
            error: None,
        }
    }

    /// The query set and first query index for the next dispatch's begin / end pair.
    pub fn next_pair(&mut self) -> (&wgpu::QuerySet, u32) {
        let i = (self.submitted.len() + self.recording.len()) as u32;
        let set = (i / PAIRS_PER_SET) as usize;
        while self.sets.len() <= set {
            self.sets
                .push(self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: PAIRS_PER_SET * 2,
                }));
        }
        (&self.sets[set], 2 * (i % PAIRS_PER_SET))
    }

    /// Notes the dispatch whose timestamps `next_pair` just placed.
    pub fn record(&mut self, tag: usize, work: Work) {
        self.recording.push(Pending { tag, work });
    }

    /// The dispatches recorded so far are about to be submitted.
    pub fn commit(&mut self) {
        self.submitted.append(&mut self.recording);
    }

    /// Forgets dispatches recorded but never submitted (their queries were never written, and
    /// resolving them would wait forever), then reads back those that were.
    pub fn collect(&mut self) {
        self.recording.clear();
        if self.submitted.is_empty() {
            return;
        }
        if let Err(e) = self.read_back() {
            self.error.get_or_insert(e.to_string());
        }
        self.submitted.clear();
    }

    fn read_back(&mut self) -> Result<()> {
        let pairs = self.submitted.len() as u32;
        let bytes = PAIRS_PER_SET as u64 * 2 * 8;
        let (resolve, staging) = self.resolve.get_or_insert_with(|| {
            let buf = |label, usage| {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            (
                buf(
                    "timestamp resolve",
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                ),
                buf(
                    "timestamp read-back",
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                ),
            )
        });
        let period = self.queue.get_timestamp_period() as f64;
        let mut first = 0u32;
        for set in &self.sets {
            if first >= pairs {
                break;
            }
            let n = (pairs - first).min(PAIRS_PER_SET);
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("timestamp resolve"),
                });
            enc.resolve_query_set(set, 0..2 * n, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, staging, 0, n as u64 * 16);
            self.queue.submit([enc.finish()]);
            let slice = staging.slice(..n as u64 * 16);
            let (tx, rx) = std::sync::mpsc::channel();
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: None,
                    timeout: None,
                })
                .map_err(|e| Error::Device(format!("reading timestamps: {e}")))?;
            if !matches!(rx.recv(), Ok(Ok(()))) {
                return Err(Error::Device("cannot map the timestamps".into()));
            }
            {
                let view = slice
                    .get_mapped_range()
                    .map_err(|e| Error::Device(format!("timestamps: {e}")))?;
                let ticks: &[u64] = bytemuck::cast_slice(&view[..]);
                for (j, p) in self.submitted[first as usize..(first + n) as usize]
                    .iter()
                    .enumerate()
                {
                    let (t0, t1) = (ticks[2 * j], ticks[2 * j + 1]);
                    let s = self.sums.entry(p.tag).or_default();
                    s.calls += 1;
                    s.ns += t1.saturating_sub(t0) as f64 * period;
                    s.flops += p.work.flops;
                    s.bytes += p.work.bytes;
                }
            }
            staging.unmap();
            first += n;
        }
        Ok(())
    }

    /// Everything read back so far as a table (and starts a new one).
    pub fn take(&mut self, tags: &[KernelTag]) -> Result<KernelProfile> {
        self.collect();
        let sums = std::mem::take(&mut self.sums);
        if let Some(e) = self.error.take() {
            return Err(Error::Device(format!("kernel profile: {e}")));
        }
        // f16 and f32 variants of one entry point stay separate rows; equal names merge.
        let mut rows: Vec<KernelTime> = Vec::new();
        for (tag, s) in sums {
            let name = tags.get(tag).map_or("?", |t| t.name.as_str());
            match rows.iter_mut().find(|r| r.name == name) {
                Some(r) => {
                    r.calls += s.calls;
                    r.total_ms += s.ns / 1e6;
                    r.flops += s.flops;
                    r.bytes += s.bytes;
                }
                None => rows.push(KernelTime {
                    name: name.to_string(),
                    calls: s.calls,
                    total_ms: s.ns / 1e6,
                    flops: s.flops,
                    bytes: s.bytes,
                }),
            }
        }
        rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then(a.name.cmp(&b.name)));
        Ok(KernelProfile {
            total_ms: rows.iter().map(|r| r.total_ms).sum(),
            dispatches: rows.iter().map(|r| r.calls).sum(),
            kernels: rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_storage_variants() {
        let t = KernelTag::new("matmul f16 (register)", "matmul_reg");
        assert_eq!(t.name, "matmul_reg (f16)");
        let t = KernelTag::new("matmul int8 (tiled)", "gemv");
        assert_eq!(t.name, "gemv (int8)");
        let t = KernelTag::new("matmul (register)", "matmul_reg");
        assert_eq!(t.name, "matmul_reg");
        let t = KernelTag::new("attention", "attn_split");
        assert_eq!(t.name, "attn_split");
    }
}
