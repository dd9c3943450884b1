//! Synthetic Whisper checkpoints for tests: a CTranslate2 `model.bin` writer and a tiny
//! Whisper-shaped model (d_model 8, one layer each side), shared by tests/suite/model_import.rs and
//! tests/suite/models_cache.rs.
//!
//! Use with `#[path = "common/synth.rs"] mod synth;`.

#![allow(dead_code)]

use std::path::Path;

// ---------------------------------------------------------------- a model.bin writer

pub const F32: u8 = 0;
pub const I8: u8 = 1;
pub const I16: u8 = 2;
pub const F16: u8 = 4;

pub struct Var {
    pub name: String,
    pub shape: Vec<u32>,
    pub dtype: u8,
    pub data: Vec<u8>,
}

#[derive(Default)]
pub struct Writer {
    pub vars: Vec<Var>,
    pub aliases: Vec<(String, String)>,
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect()
}

impl Writer {
    pub fn var(&mut self, name: &str, shape: &[u32], dtype: u8, data: Vec<u8>) -> &mut Self {
        self.vars.push(Var {
            name: name.into(),
            shape: shape.to_vec(),
            dtype,
            data,
        });
        self
    }
    pub fn f32(&mut self, name: &str, shape: &[u32], v: &[f32]) -> &mut Self {
        self.var(name, shape, F32, f32_bytes(v))
    }
    pub fn f16(&mut self, name: &str, shape: &[u32], v: &[f32]) -> &mut Self {
        self.var(name, shape, F16, f16_bytes(v))
    }
    pub fn i16_scalar(&mut self, name: &str, x: i16) -> &mut Self {
        self.var(name, &[], I16, x.to_le_bytes().to_vec())
    }
    pub fn alias(&mut self, a: &str, t: &str) -> &mut Self {
        self.aliases.push((a.into(), t.into()));
        self
    }
    pub fn bytes(&self, version: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&version.to_le_bytes());
        if version >= 2 {
            put_str(&mut out, "WhisperSpec");
            out.extend_from_slice(&3u32.to_le_bytes());
        }
        out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
        for v in &self.vars {
            put_str(&mut out, &v.name);
            out.push(v.shape.len() as u8);
            for d in &v.shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
            if version >= 4 {
                out.push(v.dtype);
                out.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
            } else {
                let item = match v.dtype {
                    F32 => 4u8,
                    I16 | F16 => 2,
                    _ => 1,
                };
                out.push(item);
                out.extend_from_slice(&((v.data.len() / item as usize) as u32).to_le_bytes());
            }
            out.extend_from_slice(&v.data);
        }
        if version >= 3 {
            out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
            for (a, t) in &self.aliases {
                put_str(&mut out, a);
                put_str(&mut out, t);
            }
        }
        out
    }
}

pub fn ramp(n: usize, start: f32, step: f32) -> Vec<f32> {
    (0..n).map(|i| start + step * i as f32).collect()
}

// ---------------------------------------------------------------- synthetic Whisper

pub const D: usize = 8;
pub const FFN: usize = 16;
pub const MELS: usize = 80;
pub const AUDIO_CTX: usize = 6;
pub const TEXT_CTX: usize = 5;
pub const BASE_VOCAB: usize = 10;
pub const SPECIALS: &[&str] = &[
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|de|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
];
pub const VOCAB: usize = BASE_VOCAB + SPECIALS.len();

pub fn tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = (0..BASE_VOCAB)
        .map(|i| (format!("t{i}"), serde_json::json!(i)))
        .collect();
    let added: Vec<serde_json::Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, c)| serde_json::json!({"id": BASE_VOCAB + i, "content": c, "special": true}))
        .collect();
    serde_json::json!({"version": "1.0", "added_tokens": added, "model": {"type": "BPE", "vocab": vocab, "merges": []}})
        .to_string()
}

/// A Whisper-shaped CTranslate2 model: f16 mostly, one int8 weight, f32 layer norms.
pub fn synthetic_whisper() -> Writer {
    let mut w = Writer::default();
    let mut seed = 0.0f32;
    let mut next = |n: usize| {
        seed += 1.0;
        ramp(n, seed, 0.001)
    };
    let d = D as u32;
    w.f16(
        "encoder/conv1/weight",
        &[d, MELS as u32, 3],
        &next(D * MELS * 3),
    );
    w.f16("encoder/conv1/bias", &[d], &next(D));
    w.f16("encoder/conv2/weight", &[d, d, 3], &next(D * D * 3));
    w.f16("encoder/conv2/bias", &[d], &next(D));
    w.f16(
        "encoder/position_encodings/encodings",
        &[AUDIO_CTX as u32, d],
        &next(AUDIO_CTX * D),
    );
    w.i16_scalar("encoder/num_heads", 2);
    w.i16_scalar("decoder/num_heads", 2);
    for side in ["encoder", "decoder"] {
        let p = format!("{side}/layer_0");
        // Fused q/k/v: rows 0..8 = 1.x, 8..16 = 2.x, 16..24 = 3.x; k bias zero as in CTranslate2.
        let qkv: Vec<f32> = (0..3 * D * D)
            .map(|i| (1 + i / (D * D)) as f32 + (i % (D * D)) as f32 / 1000.0)
            .collect();
        w.f16(
            &format!("{p}/self_attention/linear_0/weight"),
            &[3 * d, d],
            &qkv,
        );
        let mut qkv_b = ramp(3 * D, 0.5, 0.01);
        qkv_b[D..2 * D].iter_mut().for_each(|x| *x = 0.0);
        w.f16(
            &format!("{p}/self_attention/linear_0/bias"),
            &[3 * d],
            &qkv_b,
        );
        w.f16(
            &format!("{p}/self_attention/linear_1/weight"),
            &[d, d],
            &next(D * D),
        );
        w.f16(&format!("{p}/self_attention/linear_1/bias"), &[d], &next(D));
        w.f32(
            &format!("{p}/self_attention/layer_norm/gamma"),
            &[d],
            &next(D),
        );
        w.f32(
            &format!("{p}/self_attention/layer_norm/beta"),
            &[d],
            &next(D),
        );
        // fc1 as int8 with per-row scales 2.0: dequantized values q / 2.
        let q: Vec<u8> = (0..FFN * D).map(|i| (i % 100) as i8 as u8).collect();
        w.var(&format!("{p}/ffn/linear_0/weight"), &[FFN as u32, d], I8, q);
        w.f32(
            &format!("{p}/ffn/linear_0/weight_scale"),
            &[FFN as u32],
            &[2.0; FFN],
        );
        w.f16(&format!("{p}/ffn/linear_0/bias"), &[FFN as u32], &next(FFN));
        w.f16(
            &format!("{p}/ffn/linear_1/weight"),
            &[d, FFN as u32],
            &next(D * FFN),
        );
        w.f16(&format!("{p}/ffn/linear_1/bias"), &[d], &next(D));
        w.f32(&format!("{p}/ffn/layer_norm/gamma"), &[d], &next(D));
        w.f32(&format!("{p}/ffn/layer_norm/beta"), &[d], &next(D));
        if side == "decoder" {
            w.f16(
                &format!("{p}/attention/linear_0/weight"),
                &[d, d],
                &next(D * D),
            );
            w.f16(&format!("{p}/attention/linear_0/bias"), &[d], &next(D));
            let kv: Vec<f32> = (0..2 * D * D).map(|i| (4 + i / (D * D)) as f32).collect();
            w.f16(&format!("{p}/attention/linear_1/weight"), &[2 * d, d], &kv);
            w.f16(
                &format!("{p}/attention/linear_1/bias"),
                &[2 * d],
                &ramp(2 * D, 0.25, 0.0),
            );
            w.f16(
                &format!("{p}/attention/linear_2/weight"),
                &[d, d],
                &next(D * D),
            );
            w.f16(&format!("{p}/attention/linear_2/bias"), &[d], &next(D));
            w.f32(&format!("{p}/attention/layer_norm/gamma"), &[d], &next(D));
            w.f32(&format!("{p}/attention/layer_norm/beta"), &[d], &next(D));
        }
        w.f32(&format!("{side}/layer_norm/gamma"), &[d], &next(D));
        w.f32(&format!("{side}/layer_norm/beta"), &[d], &next(D));
    }
    w.f16(
        "decoder/embeddings/weight",
        &[VOCAB as u32, d],
        &next(VOCAB * D),
    );
    w.f16(
        "decoder/position_encodings/encodings",
        &[TEXT_CTX as u32, d],
        &next(TEXT_CTX * D),
    );
    w.alias("decoder/projection/weight", "decoder/embeddings/weight");
    w
}

pub fn write_ct2_dir(dir: &Path, w: &Writer, split: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let bytes = w.bytes(6);
    if split {
        let mid = bytes.len() / 2;
        std::fs::write(dir.join("model.bin.part1"), &bytes[..mid]).unwrap();
        std::fs::write(dir.join("model.bin.part2"), &bytes[mid..]).unwrap();
    } else {
        std::fs::write(dir.join("model.bin"), &bytes).unwrap();
    }
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
    let cfg = serde_json::json!({
        "alignment_heads": [[0, 1]],
        "lang_ids": [12, 13],
        "suppress_ids": [1, 2],
        "suppress_ids_begin": [3, 10],
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}
