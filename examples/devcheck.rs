use dattavani_asr::backend::{cpu::CpuModel, Backend};
use dattavani_asr::model::{config::ModelConfig, weights::Weights};
fn npy(p: &str) -> Vec<f32> {
    let b = std::fs::read(p).unwrap();
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    b[10 + hl..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
fn main() {
    let dir = std::path::Path::new("/tmp/tinyen_hf");
    let cfg = ModelConfig::from_dir(dir).unwrap();
    let t = std::time::Instant::now();
    let w = Weights::open(&dir.join("model.safetensors")).unwrap();
    let mut m = CpuModel::load(&w, &cfg.dims).unwrap();
    println!("load {:?}", t.elapsed());
    let mel = npy("tests/data/reference/jfk_mel.npy");
    let t = std::time::Instant::now();
    m.encode(&mel).unwrap();
    println!("encode {:?}", t.elapsed());
    let enc = m.encoder_output().unwrap();
    let r = npy("tests/data/reference/jfk_encoder.npy");
    let err = enc
        .iter()
        .zip(&r)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("max abs err {err}");
    let tok = dattavani_asr::tokenizer::WhisperTokenizer::from_file(
        &dir.join("tokenizer.json"),
        cfg.dims.n_vocab,
    )
    .unwrap();
    let mut logits = vec![0.0; cfg.dims.n_vocab];
    let mut toks = vec![tok.sot, tok.no_timestamps];
    let mut feed = toks.clone();
    let t = std::time::Instant::now();
    for step in 0..100 {
        m.decode(&feed, &mut logits).unwrap();
        if step == 0 {
            for &s in &cfg.begin_suppress_tokens {
                logits[s as usize] = f32::NEG_INFINITY;
            }
        }
        for &s in &cfg.suppress_tokens {
            logits[s as usize] = f32::NEG_INFINITY;
        }
        let next = dattavani_asr::backend::cpu::ops::argmax(&logits) as u32;
        if next == tok.eot {
            break;
        }
        toks.push(next);
        feed = vec![next];
    }
    println!("decode {:?} {:?}", t.elapsed(), &toks[2..]);
    println!("{}", tok.decode(&toks).unwrap());
}
