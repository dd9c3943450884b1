//! Kernel benchmarks: GFLOP/s or GB/s per kernel and shape, GPU (whatever adapter `--device gpu`
//! would take) and the CPU reference ops side by side. Plain timing loop: one warm-up, then the
//! median of `BENCH_ITERS` (default 5) runs. A GPU run is `reps` dispatches recorded into one
//! command buffer, submitted and waited for, divided by `reps` (so small kernels are not all
//! submit overhead). Run: `cargo bench --bench kernels`.

use std::time::Instant;

use dattavani_asr::testing::backend::cpu::ops;
use dattavani_asr::testing::backend::gpu::kernels::{
    Argmax, Attention, AttentionUnfused, Conv1d, Gelu, LayerNorm, Linear, MatrixRef,
};
use dattavani_asr::testing::backend::gpu::{
    AdapterSelector, GpuContext, GpuMatrix, KernelConfig, Kernels, MatmulVariant, Op, WeightType,
};

#[path = "common/rand.rs"]
mod rand_data;
use rand_data::rand_vec;

fn iters() -> usize {
    std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Seconds per call of `f`, median.
fn time_cpu(mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..iters())
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Seconds per dispatch: `reps` records of `op` in one compute pass, submit + wait, median.
fn time_gpu(ctx: &GpuContext, k: &Kernels, reps: usize, op: &impl Op) -> f64 {
    let record = |pass: &mut wgpu::ComputePass<'_>| (0..reps).try_for_each(|_| k.record(pass, op));
    let run = || {
        k.submit_pass(ctx, ("bench", true), record, |_| {})
            .expect("gpu run")
    };
    run();
    median(
        (0..iters())
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed().as_secs_f64() / reps as f64
            })
            .collect(),
    )
}

fn row(kernel: &str, shape: &str, unit: &str, work: f64, gpu: &[(&str, f64)], cpu: f64) {
    let rate = |s: f64| work / s / 1e9;
    let g: Vec<String> = gpu
        .iter()
        .map(|(n, s)| format!("{n} {:.2} {unit} ({:.2} ms)", rate(*s), s * 1e3))
        .collect();
    println!(
        "| {kernel} | {shape} | {} | {:.2} {unit} ({:.2} ms) |",
        g.join("; "),
        rate(cpu),
        cpu * 1e3
    );
}

fn main() {
    let ctx = match GpuContext::new(&AdapterSelector::AnyGpu) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: no GPU adapter ({e})");
            return;
        }
    };
    println!("adapter: {}", ctx.describe());
    // Tuning knobs: BENCH_REG_TILE="wg_x,wg_y,tm,tn", BENCH_LN_WG=n (and those below) override
    // the defaults.
    let mut base = KernelConfig::for_adapter(&ctx);
    if let Ok(s) = std::env::var("BENCH_REG_TILE") {
        let v: Vec<u32> = s
            .split(',')
            .map(|x| x.trim().parse().expect("BENCH_REG_TILE"))
            .collect();
        base.register = dattavani_asr::testing::backend::gpu::MatmulTile {
            wg_x: v[0],
            wg_y: v[1],
            tm: v[2],
            tn: v[3],
            bk4: 4,
        };
    }
    if let Ok(s) = std::env::var("BENCH_LN_WG") {
        base.layernorm_wg = s.parse().expect("BENCH_LN_WG");
    }
    // BENCH_SM_WG=n, BENCH_ATTN_CHUNK=rows, BENCH_ATTN_TILE="wg_x,wg_y,tm,tn,tn4": softmax
    // workgroup and the unfused attention's chunk and register tiles.
    if let Ok(s) = std::env::var("BENCH_SM_WG") {
        base.softmax_wg = s.parse().expect("BENCH_SM_WG");
    }
    if let Ok(s) = std::env::var("BENCH_ATTN_CHUNK") {
        base.attn_chunk = s.parse().expect("BENCH_ATTN_CHUNK");
    }
    if let Ok(s) = std::env::var("BENCH_ATTN_TILE") {
        let v: Vec<u32> = s
            .split(',')
            .map(|x| x.trim().parse().expect("BENCH_ATTN_TILE"))
            .collect();
        base.attn_mm_wg = (v[0], v[1]);
        (base.attn_mm_tm, base.attn_mm_tn, base.attn_mm_tn4) = (v[2], v[3], v[4]);
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let reg = Kernels::new(
        &ctx,
        KernelConfig {
            matmul: MatmulVariant::Register,
            ..base.clone()
        },
    )
    .unwrap();
    let tiled = Kernels::new(
        &ctx,
        KernelConfig {
            matmul: MatmulVariant::Tiled,
            ..base.clone()
        },
    )
    .unwrap();
    let checked = Kernels::new(
        &ctx,
        KernelConfig {
            trusted: false,
            ..base.clone()
        },
    )
    .unwrap();
    let gpu_defaults = Kernels::new(&ctx, KernelConfig::gpu()).unwrap();
    let dflt = &reg;
    let mut seed = 42u64;
    println!("| kernel | shape | GPU | CPU (ops.rs) |");
    println!("|---|---|---|---|");

    let want = |name: &str| only.is_empty() || only.contains(name);
    // fc1 of tiny, base, small and large-v3 (d_model 384, 512, 768, 1280; the MLP is 4x wide).
    // The last two cost seconds per product on a software adapter: BENCH_ONLY=linear-small
    // skips them (`want("linear")` still matches).
    for &(m, k, n) in &[
        (1500usize, 384usize, 1536usize),
        (1500, 512, 2048),
        (1500, 768, 3072),
        (1500, 1280, 5120),
    ] {
        if !want("linear") || (k > 512 && only.contains("linear-small")) {
            break;
        }
        let x = rand_vec(&mut seed, m * k);
        let w = rand_vec(&mut seed, n * k);
        let b = rand_vec(&mut seed, n);
        let (xb, wb, bb) = (
            ctx.upload("x", &x),
            ctx.upload("w", &w),
            ctx.upload("b", &b),
        );
        let ob = ctx.storage("o", (m * n * 4) as u64);
        let linear = Linear {
            bias: Some(&bb),
            ..Linear::new(&xb, MatrixRef::f32(&wb, n, k), &ob, m)
        };
        let t = |kk: &Kernels| time_gpu(&ctx, kk, 1, &linear);
        let gpu = [
            ("register", t(&reg)),
            ("tiled", t(&tiled)),
            ("register checked", t(&checked)),
        ];
        let mut o = vec![0.0; m * n];
        let cpu = time_cpu(|| ops::linear(&x, m, k, &w, n, Some(&b), false, &mut o));
        row(
            "linear (+bias)",
            &format!("{m}x{k}x{n}"),
            "GFLOP/s",
            2.0 * (m * n * k) as f64,
            &gpu,
            cpu,
        );
        // The same product with the weights stored as the models store them (`--dtype`), at
        // tiny's fc1 shape.
        if (m, k, n) != (1500, 384, 1536) {
            continue;
        }
        let typed = |kk: &Kernels, ty: WeightType| {
            let wm = GpuMatrix::upload(&ctx, "w", &w, n, k, ty);
            let w = wm.view();
            time_gpu(&ctx, kk, 1, &Linear { w, ..linear })
        };
        let mut gpu = Vec::new();
        for (name, kk) in [("register", &reg), ("tiled", &tiled)] {
            for ty in [WeightType::F32, WeightType::F16, WeightType::Int8] {
                gpu.push((format!("{name} {}", ty.name()), typed(kk, ty)));
            }
        }
        let gpu: Vec<(&str, f64)> = gpu.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        row(
            "linear (+bias), weight types",
            &format!("{m}x{k}x{n}"),
            "GFLOP/s",
            2.0 * (m * n * k) as f64,
            &gpu,
            cpu,
        );
    }

    if want("gemv") {
        let (m, k, n) = (1usize, 384usize, 51864usize);
        let x = rand_vec(&mut seed, m * k);
        let w = rand_vec(&mut seed, n * k);
        let (xb, wb) = (ctx.upload("x", &x), ctx.upload("w", &w));
        let ob = ctx.storage("o", (m * n * 4) as u64);
        let gemv = Linear::new(&xb, MatrixRef::f32(&wb, n, k), &ob, m);
        let t = |kk: &Kernels| time_gpu(&ctx, kk, 1, &gemv);
        let gpu = [
            ("1 lane/output", t(dflt)),
            ("32 lanes/output", t(&gpu_defaults)),
            ("checked", t(&checked)),
        ];
        let mut o = vec![0.0; m * n];
        let cpu = time_cpu(|| ops::linear(&x, m, k, &w, n, None, false, &mut o));
        row(
            "GEMV (logits)",
            "1x384x51864",
            "GB/s",
            (n * k * 4) as f64,
            &gpu,
            cpu,
        );
        // The logits projection as each `--dtype` stores the token table (f16 models keep it
        // f32; int8 models quantize it): bandwidth counted as f32 bytes, so the rates compare
        // directly as speed.
        let mut gpu = Vec::new();
        for ty in [WeightType::F32, WeightType::F16, WeightType::Int8] {
            let wm = GpuMatrix::upload(&ctx, "w", &w, n, k, ty);
            let t = time_gpu(&ctx, dflt, 1, &Linear::new(&xb, wm.view(), &ob, m));
            gpu.push((ty.name(), t));
        }
        row(
            "GEMV (logits), weight types",
            "1x384x51864",
            "GB/s (f32 bytes)",
            (n * k * 4) as f64,
            &gpu,
            cpu,
        );
    }

    for &(n_q, n_kv, n_head) in &[(1500usize, 1500usize, 6usize), (1, 1500, 6), (1, 100, 6)] {
        if !want("attention") {
            break;
        }
        let d = n_head * 64;
        let q = rand_vec(&mut seed, n_q * d);
        let kv = rand_vec(&mut seed, n_kv * d);
        let (qb, kb) = (ctx.upload("q", &q), ctx.upload("kv", &kv));
        let ob = ctx.storage("o", (n_q * d * 4) as u64);
        let causal = (n_kv == 100).then_some(99);
        let reps = if n_q == 1 { 20 } else { 1 };
        let qkvo = [&qb, &kb, &kb, &ob];
        let fused = Attention::single(qkvo, (n_q, n_kv, d, n_head), causal);
        let g = time_gpu(&ctx, dflt, reps, &fused);
        let mut variants = vec![("fused", g)];
        if dflt.use_unfused_attention(n_q, n_kv, causal) || n_q == 1500 {
            // The unfused chain (scores -> softmax -> ·V per chunk of query rows).
            let sb = ctx.storage(
                "scores",
                (dflt.unfused_scores_len(n_q, n_kv, n_head) * 4) as u64,
            );
            let (q, k, v, out, scores) = (&qb, &kb, &kb, &ob, &sb);
            let unfused = AttentionUnfused {
                q,
                k,
                v,
                out,
                scores,
                n_kv,
                n_q,
                d,
                n_head,
            };
            let g = time_gpu(&ctx, dflt, 1, &unfused);
            variants.push(("unfused", g));
        }
        let mut o = vec![0.0; n_q * d];
        let cpu = time_cpu(|| {
            ops::attention(
                ops::Products::F32,
                &q,
                &kv,
                &kv,
                ops::KvLayout::Rows,
                n_q,
                n_kv,
                d,
                n_head,
                causal,
                &mut o,
            )
        });
        row(
            "attention",
            &format!(
                "{n_q}x{n_kv}, {n_head}x64{}",
                if causal.is_some() { " causal" } else { "" }
            ),
            "GFLOP/s",
            4.0 * (n_q * n_kv * d) as f64,
            &variants,
            cpu,
        );
    }

    for &(c_in, t_in, c_out, stride) in
        &[(80usize, 3000usize, 384usize, 1usize), (384, 3000, 384, 2)]
    {
        if !want("conv") {
            break;
        }
        let x = rand_vec(&mut seed, c_in * t_in);
        let w = rand_vec(&mut seed, c_out * c_in * 3);
        let b = rand_vec(&mut seed, c_out);
        let t_out = ops::conv1d_out_len(t_in, stride);
        let conv = Conv1d {
            input: &ctx.upload("x", &x),
            weight: &ctx.upload("w", &w),
            bias: &ctx.upload("b", &b),
            out: &ctx.storage("o", (t_out * c_out * 4) as u64),
            c_in,
            t_in,
            c_out,
            stride,
            gelu: true,
        };
        let g = time_gpu(&ctx, dflt, 1, &conv);
        let mut o = vec![0.0; t_out * c_out];
        let cpu = time_cpu(|| {
            ops::conv1d_k3(&x, c_in, t_in, &w, &b, c_out, stride, &mut o);
            ops::gelu(&mut o);
        });
        row(
            "conv1d k3 + GELU",
            &format!("{c_in}->{c_out}, t {t_in}, stride {stride}"),
            "GFLOP/s",
            2.0 * (t_out * c_out * c_in * 3) as f64,
            &[("direct", g)],
            cpu,
        );
    }

    if want("mel") {
        // Whole GPU log-mel of 30 s (upload, dispatch chain, read-back); the rate counts the
        // DFT product only (3000 frames x 402 x 400 x 2 FLOP).
        let samples = rand_vec(&mut seed, 30 * 16000);
        let mut mel = dattavani_asr::testing::backend::gpu::GpuMel::new(&ctx);
        let g = time_cpu(|| {
            mel.compute(&ctx, dflt, &samples, 80).unwrap();
        });
        let cpu = time_cpu(|| {
            dattavani_asr::testing::mel::log_mel_spectrogram(&samples, 80);
        });
        row(
            "log-mel (whole)",
            "30 s, 80 mels",
            "GFLOP/s",
            2.0 * 3000.0 * 402.0 * 400.0,
            &[("DFT as matmul", g)],
            cpu,
        );
    }

    if want("layernorm") {
        let (rows, cols) = (1500usize, 384usize);
        let x = rand_vec(&mut seed, rows * cols);
        let gm = rand_vec(&mut seed, cols);
        let bt = rand_vec(&mut seed, cols);
        let ob = ctx.storage("o", (rows * cols * 4) as u64);
        let norm = LayerNorm {
            x: &ctx.upload("x", &x),
            gamma: &ctx.upload("g", &gm),
            beta: &ctx.upload("b", &bt),
            out: &ob,
            rows,
            cols,
            in_step: 1,
            in_first: 0,
        };
        let gelu = Gelu {
            a: &ob,
            n: rows * cols,
        };
        let mut o = vec![0.0; rows * cols];
        let mut o2 = x.clone();
        // Both read and write each value once.
        let bytes = (2 * rows * cols * 4) as f64;
        let gpu = [
            time_gpu(&ctx, dflt, 20, &norm),
            time_gpu(&ctx, dflt, 20, &gelu),
        ];
        let cpu = [
            time_cpu(|| ops::layer_norm(&x, cols, &gm, &bt, &mut o)),
            time_cpu(|| ops::gelu(&mut o2)),
        ];
        for (i, name) in ["layer norm", "GELU"].into_iter().enumerate() {
            row(name, "1500x384", "GB/s", bytes, &[("", gpu[i])], cpu[i]);
        }
    }

    {
        let n = 51864usize;
        let x = rand_vec(&mut seed, n);
        let (xb, ob) = (ctx.upload("x", &x), ctx.storage("o", 4));
        let g = time_gpu(
            &ctx,
            dflt,
            20,
            &Argmax {
                x: &xb,
                out: &ob,
                n,
                rows: 1,
            },
        );
        let cpu = time_cpu(|| {
            std::hint::black_box(ops::argmax(&x));
        });
        row("argmax", "51864", "GB/s", (n * 4) as f64, &[("", g)], cpu);
    }
}
