//! Per-kernel device times from timestamp queries: `bench`'s kernel table.
//!
//! With profiling on (`Kernels::enable_profiling`, adapters with `TIMESTAMP_QUERY_INSIDE_PASSES`)
//! every dispatch is bracketed by two `write_timestamp`s and tagged with its kernel's name and the
//! floating-point operations and bytes its shape implies (`work`). The records of one command
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

/// What one dispatch computes and moves.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Work {
    pub flops: f64,
    pub bytes: f64,
}

/// Work of one dispatch of entry point `entry` with parameter words `w` (the layouts the record
/// functions in `kernels.rs` write) and workgroup grid `wg`; `weight_bytes` is the size of one
/// linear weight (4 for f32, 2 for f16). Unknown entry points count no work.
pub(crate) fn work(entry: &str, weight_bytes: f64, w: &[u32; 8], wg: (u32, u32, u32)) -> Work {
    let f = |i: usize| w[i] as f64;
    let (flops, bytes) = match entry {
        // [m, rows, k / 4, flags, n, n0]: this dispatch's `rows` output columns.
        "matmul_tiled" | "matmul_reg" | "gemv" => {
            let (m, rows, k) = (f(0), f(1), 4.0 * f(2));
            let bias = if w[3] & 1 != 0 { rows * 4.0 } else { 0.0 };
            (
                2.0 * m * rows * k,
                rows * k * weight_bytes + m * k * 4.0 + m * rows * 4.0 + bias,
            )
        }
        // [c_in, t_in, c_out, t_out, stride, gelu]
        "conv1d_k3" => {
            let (c_in, t_in, c_out, t_out) = (f(0), f(1), f(2), f(3));
            (
                2.0 * 3.0 * c_in * c_out * t_out,
                4.0 * (c_in * t_in + 3.0 * c_in * c_out + c_out + t_out * c_out),
            )
        }
        // [rows, cols, ..]: read and write each value, ~8 operations per value.
        "layer_norm" => (8.0 * f(0) * f(1), 8.0 * f(0) * f(1)),
        "softmax" => (4.0 * f(0) * f(1), 8.0 * f(0) * f(1)),
        // [n, ..]
        "gelu" | "transpose" | "kv_append" => (0.0, 8.0 * f(0)),
        "add" => (f(0), 12.0 * f(0)),
        // [n_q, n_kv, d / 4, n_head, causal, pos0, scale, kv_stride], grid z = sequences.
        "attn_tiled" | "attn_split" => {
            let (n_q, n_kv, d, seqs) = (f(0), f(1), 4.0 * f(2), wg.2 as f64);
            // Keys each query sees: all, or (causal) those up to its position.
            let pairs = if w[4] != 0 {
                (0..w[0])
                    .map(|i| (w[5] as f64 + i as f64 + 1.0).min(n_kv))
                    .sum()
            } else {
                n_q * n_kv
            };
            (
                seqs * 4.0 * pairs * d,
                seqs * 4.0 * (2.0 * n_q * d + 2.0 * n_kv * d),
            )
        }
        // [n_q, n_kv, d / 4, head, row0, scale]: one head's scores.
        "attn_scores" => {
            let (n_q, n_kv, hd) = (f(0), f(1), super::kernels::HEAD_DIM as f64);
            (
                2.0 * n_q * n_kv * hd,
                4.0 * (n_q * hd + n_kv * hd + n_q * n_kv),
            )
        }
        // [rows, n_kv, d / 4, r0, scale], grid z = heads: Q·Kᵀ into the scores, scores·V out.
        "attn_qk" | "attn_pv" => {
            let (rows, n_kv, d, heads) = (f(0), f(1), 4.0 * f(2), wg.2 as f64);
            (
                2.0 * rows * n_kv * d,
                4.0 * (rows * d + n_kv * d + heads * rows * n_kv),
            )
        }
        // [n_tok, d, ..]: table row, position row, output row per token.
        "embed" => (f(0) * f(1), 4.0 * (f(0) + 3.0 * f(0) * f(1))),
        // [n, rows]
        "argmax" => (0.0, 4.0 * f(0) * f(1)),
        // [n, 1, mask_word]: the logits and their suppression bits.
        "greedy_pick" => (0.0, 4.0 * f(0) + f(0) / 8.0),
        // [n, s0, len, t0, rows]: 400-sample windowed frames.
        "mel_frames" => {
            let v = f(4) * crate::mel::N_FFT as f64;
            (v, 8.0 * v)
        }
        // [rows]: 201 complex bins in, 201 powers out (rows padded to 402 / 204 values).
        "mel_power" => (3.0 * f(0) * 201.0, 4.0 * f(0) * (402.0 + 204.0)),
        // [count]
        "mel_log" => (f(0), 8.0 * f(0)),
        // [rows, live, n_mels]
        "mel_norm" => (2.0 * f(0) * f(2), 4.0 * (f(1) + f(0)) * f(2)),
        _ => (0.0, 0.0),
    };
    Work { flops, bytes }
}

/// A kernel's label in the profile and what `work` needs to know about it.
#[derive(Clone, Debug)]
pub(crate) struct KernelTag {
    pub name: String,
    pub entry: &'static str,
    pub weight_bytes: f64,
}

impl KernelTag {
    /// The tag of entry point `entry` of the module labelled `module`: a weight-storage variant's
    /// module is labelled "<family> <storage> (<variant>)" ("matmul f16 (tiled)"), and its
    /// kernels are named "<entry> (<storage>)" with that storage's bytes per weight.
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
            entry,
            weight_bytes: match storage {
                Some("f16") => 2.0,
                Some("int8" | "i8" | "q8") => 1.0,
                _ => 4.0,
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
    fn matmul_work_counts_the_range() {
        // 3 rows of x [3, 8] against 5 weight rows (f16), no bias.
        let w = work("matmul_reg", 2.0, &[3, 5, 2, 0, 10, 5, 0, 0], (1, 1, 1));
        assert_eq!(w.flops, 2.0 * 3.0 * 5.0 * 8.0);
        assert_eq!(w.bytes, 5.0 * 8.0 * 2.0 + 3.0 * 8.0 * 4.0 + 3.0 * 5.0 * 4.0);
    }

    #[test]
    fn tags_name_storage_variants() {
        let t = KernelTag::new("matmul f16 (register)", "matmul_reg");
        assert_eq!((t.name.as_str(), t.weight_bytes), ("matmul_reg (f16)", 2.0));
        let t = KernelTag::new("matmul (register)", "matmul_reg");
        assert_eq!((t.name.as_str(), t.weight_bytes), ("matmul_reg", 4.0));
        let t = KernelTag::new("attention", "attn_split");
        assert_eq!((t.name.as_str(), t.weight_bytes), ("attn_split", 4.0));
    }

    #[test]
    fn causal_attention_counts_visible_keys() {
        // 3 queries at positions 2, 3, 4 of 5 keys, head dim 64, two sequences.
        let w = work("attn_tiled", 4.0, &[3, 5, 16, 1, 1, 2, 0, 0], (1, 1, 2));
        assert_eq!(w.flops, 2.0 * 4.0 * (3.0 + 4.0 + 5.0) * 64.0);
        assert_eq!(
            work("no_such_kernel", 4.0, &[1; 8], (1, 1, 1)),
            Work::default()
        );
    }
}
