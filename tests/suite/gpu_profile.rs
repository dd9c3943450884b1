//! The per-kernel profile (`Kernels::enable_profiling`, `bench`'s kernel table): a known
//! sequence of dispatches is counted call for call with the FLOPs its shapes imply and positive
//! times, profiling changes no result, and a profiled tiny.en encoder and decoder step list
//! every linear layer. Skips (see tests/common/gpu.rs) without an adapter, and says so on one
//! without timestamp queries inside passes.

use crate::models;

use crate::gpu_adapter;
use crate::npy;

use dattavani_asr::testing::backend::gpu::{
    KernelConfig, KernelProfile, KernelTime, Kernels, MatmulVariant, WeightType,
};
use dattavani_asr::testing::backend::Diagnostics;

fn row<'a>(p: &'a KernelProfile, name: &str) -> &'a KernelTime {
    p.kernels
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no {name} in {p:#?}"))
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * scale)
        .collect()
}

#[test]
fn profile_counts_a_known_dispatch_sequence() {
    let Some(ctx) = gpu_adapter::gpu() else {
        return;
    };
    // Register-blocked matmul above 4 rows, GEMV up to 4, and a 16 KiB binding limit so that a
    // [300, 64] f32 weight (256 B rows) is processed as ranges of 64 rows: 5 dispatches per call;
    // f16 rows are 128 B, so ranges of 128 rows: 3 dispatches.
    let config = KernelConfig {
        matmul: MatmulVariant::Register,
        gemv_max_rows: 4,
        max_binding_override: Some(64 * 64 * 4),
        ..KernelConfig::for_adapter(&ctx)
    };
    let mut k = Kernels::new(&ctx, config).expect("kernels compile");
    let (m, n, kk) = (37, 300, 64);
    let x = ramp(m * kk, 0.01);
    let w = ramp(n * kk, 0.02);
    let plain = k
        .run_linear(&ctx, &x, m, kk, &w, WeightType::F32, n, None, false)
        .unwrap();
    assert!(k.take_profile().unwrap().is_none(), "off by default");
    if !k.enable_profiling() {
        eprintln!("skipped: adapter without timestamp queries inside passes");
        return;
    }
    let profiled = k
        .run_linear(&ctx, &x, m, kk, &w, WeightType::F32, n, None, false)
        .unwrap();
    assert_eq!(profiled, plain, "profiling changes no result");
    k.run_linear(
        &ctx,
        &x[..2 * kk],
        2,
        kk,
        &w,
        WeightType::F32,
        n,
        None,
        false,
    )
    .unwrap();
    k.run_linear(&ctx, &x, m, kk, &w, WeightType::F16, n, None, false)
        .unwrap();
    let (rows, cols) = (1500, 384);
    let ln_in = ramp(rows * cols, 0.1);
    let ones = vec![1.0; cols];
    k.run_layer_norm(&ctx, &ln_in, rows, cols, &ones, &ones)
        .unwrap();
    k.run_layer_norm(&ctx, &ln_in, rows, cols, &ones, &ones)
        .unwrap();
    k.run_softmax(&ctx, &ln_in, rows, cols, None).unwrap();
    let p = k.take_profile().unwrap().expect("profiling is on");
    eprintln!("{p:#?}");

    let flops = |m: usize| 2.0 * (m * n * kk) as f64;
    let mm = row(&p, "matmul_reg");
    assert_eq!(mm.calls, 5);
    assert_eq!(mm.flops, flops(m));
    // Each range reads its weight rows once and all of x; the output once.
    assert_eq!(mm.bytes, (n * kk * 4 + 5 * m * kk * 4 + m * n * 4) as f64);
    let gemv = row(&p, "gemv");
    assert_eq!((gemv.calls, gemv.flops), (5, flops(2)));
    let half = row(&p, "matmul_reg (f16)");
    assert_eq!((half.calls, half.flops), (3, flops(m)));
    assert_eq!(half.bytes, (n * kk * 2 + 3 * m * kk * 4 + m * n * 4) as f64);
    assert_eq!(row(&p, "layer_norm").calls, 2);
    assert_eq!(row(&p, "softmax").calls, 1);
    assert_eq!(p.kernels.len(), 5, "{p:#?}");
    assert_eq!(p.dispatches, 16);
    for r in &p.kernels {
        assert!(r.total_ms > 0.0, "{}: {} ms", r.name, r.total_ms);
    }
    assert!((p.total_ms - p.kernels.iter().map(|r| r.total_ms).sum::<f64>()).abs() < 1e-9);
    for w in p.kernels.windows(2) {
        assert!(w[0].total_ms >= w[1].total_ms, "sorted by total time");
    }
    // Taking the profile starts a new one.
    let empty = k.take_profile().unwrap().unwrap();
    assert_eq!((empty.dispatches, empty.kernels.len()), (0, 0));
    k.disable_profiling();
    assert!(k.take_profile().unwrap().is_none());
}

/// tiny.en on the reference jfk mel: the encoder's and one decoder step's linear layers, counted
/// from the model's dimensions, each with positive time; the device time within the wall time.
#[test]
fn profiled_encoder_and_decoder_step_list_every_linear() {
    use dattavani_asr::testing::backend::{gpu::GpuModel, Backend};
    use dattavani_asr::testing::model::{config::ModelConfig, hub, weights::Weights};
    let Some(ctx) = gpu_adapter::gpu() else {
        return;
    };
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let files = hub::resolve("tiny.en").expect("tiny.en is cached");
    let config = ModelConfig::from_dir(&files.dir).unwrap();
    let dims = &config.dims;
    let weights = Weights::open(&files.weights()).unwrap();
    let (d, vocab) = (dims.n_text_state, dims.n_vocab);
    // The logits projection reads the f32 token table in ranges that fit one binding.
    let range_rows = (ctx.limits.max_storage_buffer_binding_size as usize / (d * 4)) / 64 * 64;
    let logits_dispatches = vocab.div_ceil(range_rows) as u64;
    let mut gpu = GpuModel::load(ctx, &weights, dims).unwrap();
    if !gpu.set_kernel_profiling(true) {
        eprintln!("skipped: adapter without timestamp queries inside passes");
        return;
    }
    let linear_calls = |p: &KernelProfile| -> u64 {
        p.kernels
            .iter()
            .filter(|k| k.name.starts_with("matmul") || k.name.starts_with("gemv"))
            .map(|k| k.calls)
            .sum()
    };
    let (_, mel) = npy::read_npy_f32("tests/data/reference/jfk_mel.npy");
    let t = std::time::Instant::now();
    gpu.encode(&mel).unwrap();
    let wall_ms = t.elapsed().as_secs_f64() * 1e3;
    let enc = gpu.take_kernel_profile().unwrap().unwrap();
    eprintln!("encoder, {wall_ms:.0} ms wall: {enc:#?}");
    // q, k, v, o, fc1, fc2 per encoder layer; cross-attention K and V per decoder layer.
    let (el, dl) = (dims.n_audio_layer as u64, dims.n_text_layer as u64);
    assert_eq!(linear_calls(&enc), 6 * el + 2 * dl);
    assert_eq!(row(&enc, "conv1d_k3").calls, 2);
    assert_eq!(row(&enc, "transpose").calls, 1);
    assert_eq!(row(&enc, "layer_norm").calls, 2 * el + 1);
    for r in &enc.kernels {
        assert!(r.total_ms > 0.0, "{}: {} ms", r.name, r.total_ms);
    }
    assert!(
        enc.total_ms > 0.0 && enc.total_ms <= wall_ms,
        "device {} ms within {wall_ms} ms wall",
        enc.total_ms
    );
    let gflops = |p: &KernelProfile| {
        p.kernels
            .iter()
            .filter(|k| k.name.starts_with("matmul"))
            .map(|k| k.flops)
            .sum::<f64>()
    };
    // The encoder's linear layers: 1500 rows of (4 d² + 2 d·ffn) per layer, and the cross K/V.
    let n = dims.n_audio_ctx as f64;
    let want = 2.0 * n * el as f64 * (4.0 * (d * d) as f64 + 2.0 * (d * dims.n_audio_ffn) as f64)
        + 2.0 * n * dl as f64 * 2.0 * (d * d) as f64;
    assert_eq!(gflops(&enc), want);

    let mut logits = vec![0.0; vocab];
    gpu.begin_decode(1).unwrap();
    gpu.decode(&[50257, 50362], &mut logits).unwrap();
    let step = gpu.take_kernel_profile().unwrap().unwrap();
    eprintln!("decoder prompt step: {step:#?}");
    // Self q, k, v, o, cross q, o, fc1, fc2 per layer, then the logits.
    assert_eq!(linear_calls(&step), 8 * dl + logits_dispatches);
    assert_eq!(row(&step, "embed").calls, 1);
    assert_eq!(row(&step, "kv_append").calls, 2 * dl);
    assert_eq!(row(&step, "layer_norm").calls, 3 * dl + 1);
    assert!(step.kernels.iter().all(|r| r.total_ms > 0.0), "{step:#?}");

    // Off again: nothing recorded, the step's logits unchanged by having profiled.
    gpu.set_kernel_profiling(false);
    assert!(gpu.take_kernel_profile().unwrap().is_none());
    let mut again = vec![0.0; vocab];
    gpu.begin_decode(1).unwrap();
    gpu.decode(&[50257, 50362], &mut again).unwrap();
    assert_eq!(again, logits);
}
