//! The CPU forward pass against reference tensors computed by an independent implementation
//! (CTranslate2, float32) on the same tiny.en weights.

#[path = "common/models.rs"]
mod models;

#[path = "common/npy.rs"]
mod npy;

use dattavani_asr::testing::backend::{cpu::CpuModel, Backend};
use dattavani_asr::testing::model::{config::ModelConfig, hub, weights::Weights};

/// Encoder output for the reference jfk mel. Tolerance 1e-3 absolute (the bound): four
/// pre-LN blocks of f32 GEMMs whose summation order differs from CTranslate2's; we reach ~6e-5.
#[test]
fn cpu_encoder_matches_reference_on_jfk() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let files = hub::resolve("tiny.en").unwrap();
    let config = ModelConfig::from_dir(&files.dir).unwrap();
    let weights = Weights::open(&files.weights()).unwrap();
    let mut model = CpuModel::load(&weights, &config.dims).unwrap();
    let (mel_shape, mel) = npy::read_npy_f32("tests/data/reference/jfk_mel.npy");
    assert_eq!(mel_shape, vec![80, 3000]);
    model.encode(&mel).unwrap();
    let got = model.encoder_output().unwrap();
    let (shape, want) = npy::read_npy_f32("tests/data/reference/jfk_encoder.npy");
    assert_eq!(shape, vec![1500, 384]);
    assert_eq!(got.len(), want.len());
    let max_err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("encoder max abs error vs reference: {max_err:.2e}");
    assert!(max_err <= 1e-3, "encoder max abs error {max_err}");
}
