//! The on-disk pipeline cache (`backend::gpu::pipeline_cache`): a first load in an empty
//! directory writes the cache file, a second load from it computes exactly what the first did,
//! and a damaged or foreign file is ignored rather than failing the load.
//!
//! Runs tiny.en's encoder and greedy decoder steps on jfk, three times, on whatever adapter
//! (lavapipe in CI; see tests/common/gpu.rs for the skip rule). A backend without pipeline caches
//! (anything but Vulkan) must leave the directory empty.

use crate::models;

use crate::gpu_adapter;
use crate::npy;

use std::path::Path;

use dattavani_asr::testing::backend::gpu::{
    AdapterSelector, GpuContext, GpuModel, PipelineCacheDir,
};
use dattavani_asr::testing::backend::Backend;
use dattavani_asr::testing::model::{config::ModelConfig, hub, weights::Weights};

/// Encoder output, the logits of the first step and two greedy tokens.
fn run(dir: &Path, weights: &Weights, config: &ModelConfig) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let ctx = GpuContext::with_pipeline_cache(
        &AdapterSelector::AnyGpu,
        &PipelineCacheDir::At(dir.to_path_buf()),
    )
    .expect("the adapter opens again");
    let mut gpu = GpuModel::load(ctx, weights, &config.dims).expect("tiny.en loads");
    let (_, mel) = npy::read_npy_f32("tests/data/reference/jfk_mel.npy");
    gpu.encode(&mel).unwrap();
    let enc = gpu.encoder_output().unwrap();
    let mut logits = vec![0.0; config.dims.n_vocab];
    gpu.begin_decode(1).unwrap();
    // <|startoftranscript|><|notimestamps|> for tiny.en.
    gpu.decode(&[50257, 50362], &mut logits).unwrap();
    let first = logits.clone();
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let next = dattavani_asr::testing::backend::cpu::ops::argmax(&logits) as u32;
        tokens.push(next);
        gpu.decode(&[next], &mut logits).unwrap();
    }
    (enc, first, tokens)
}

#[test]
fn second_load_uses_the_file_and_computes_the_same() {
    let Some(probe) = gpu_adapter::gpu() else {
        return;
    };
    let cached = probe.features.contains(wgpu::Features::PIPELINE_CACHE)
        && wgpu::util::pipeline_cache_key(&probe.info).is_some();
    let adapter_info = probe.info.clone();
    drop(probe);
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let files = hub::resolve("tiny.en").expect("tiny.en is cached");
    let config = ModelConfig::from_dir(&files.dir).unwrap();
    let weights = Weights::open(&files.weights()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache_files = || {
        std::fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_else(|_| Vec::new())
    };

    let first = run(dir.path(), &weights, &config);
    let written: Vec<_> = cache_files();
    if !cached {
        assert!(written.is_empty(), "no pipeline cache here: {written:?}");
        eprintln!("adapter without a pipeline cache: nothing written");
        return;
    }
    assert_eq!(written.len(), 1, "one cache file per adapter: {written:?}");
    let file = &written[0];
    let bytes = std::fs::read(file).unwrap();
    assert!(!bytes.is_empty());
    let modified = std::fs::metadata(file).unwrap().modified().unwrap();
    eprintln!("{}: {} bytes", file.display(), bytes.len());

    // Same pipelines, same inputs: bit-identical results.
    let second = run(dir.path(), &weights, &config);
    assert_eq!(second, first, "second load (from the cache file)");
    assert_eq!(cache_files(), written, "no stray temporary files");
    // Nothing new was compiled into the cache, so it is not rewritten.
    assert_eq!(std::fs::read(file).unwrap(), bytes);
    assert_eq!(
        std::fs::metadata(file).unwrap().modified().unwrap(),
        modified
    );

    // A damaged file (one flipped byte: its checksum fails) and a foreign one (well-formed, with
    // a driver payload wgpu does not recognise, as from another wgpu version: wgpu falls back to
    // an empty cache) are ignored and replaced. Format: see `pipeline_cache`'s module docs.
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let driver = format!(
        "{} {} {}",
        adapter_info.name, adapter_info.driver, adapter_info.driver_info
    );
    let mut body = (driver.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(driver.as_bytes());
    body.extend_from_slice(&[0x5A; 300]);
    let mut foreign = b"DTVPLC01".to_vec();
    foreign.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
    foreign.extend_from_slice(&body);
    for damaged in [flipped, foreign] {
        std::fs::write(file, &damaged).unwrap();
        let again = run(dir.path(), &weights, &config);
        assert_eq!(again, first, "load with a damaged cache file");
        let rewritten = std::fs::read(file).unwrap();
        assert!(
            !rewritten.is_empty() && rewritten != damaged,
            "the damaged file is replaced"
        );
    }

    let ctx =
        GpuContext::with_pipeline_cache(&AdapterSelector::AnyGpu, &PipelineCacheDir::Off).unwrap();
    assert!(ctx.pipeline_cache().is_none() && ctx.pipeline_cache_file().is_none());
}
