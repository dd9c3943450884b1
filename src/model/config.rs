//! Model dimensions and decoding defaults, read from a Hugging Face `config.json` (and
//! `generation_config.json` when present). Field names follow OpenAI's `ModelDimensions`; the
//! Hugging Face key each comes from is named beside it.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The shape of a Whisper checkpoint (OpenAI's `ModelDimensions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDims {
    /// `num_mel_bins`: 80, or 128 for large-v3.
    pub n_mels: usize,
    /// `max_source_positions`: encoder frames after the stride-2 conv (1500).
    pub n_audio_ctx: usize,
    /// `d_model`
    pub n_audio_state: usize,
    /// `encoder_attention_heads`
    pub n_audio_head: usize,
    /// `encoder_layers`
    pub n_audio_layer: usize,
    /// `encoder_ffn_dim`
    pub n_audio_ffn: usize,
    /// `vocab_size`
    pub n_vocab: usize,
    /// `max_target_positions` (448)
    pub n_text_ctx: usize,
    /// `d_model`
    pub n_text_state: usize,
    /// `decoder_attention_heads`
    pub n_text_head: usize,
    /// `decoder_layers`
    pub n_text_layer: usize,
    /// `decoder_ffn_dim`
    pub n_text_ffn: usize,
}

/// Everything the engine needs from the config files besides the tokenizer.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub dims: ModelDims,
    /// Token ids never sampled (`suppress_tokens`).
    pub suppress_tokens: Vec<u32>,
    /// Token ids suppressed at the first sampled position (`begin_suppress_tokens`).
    pub begin_suppress_tokens: Vec<u32>,
    /// (layer, head) pairs of the decoder's cross-attention used for word alignment.
    pub alignment_heads: Vec<(usize, usize)>,
}

fn get_usize(v: &Value, key: &str, path: &Path) -> Result<usize> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|x| x as usize)
        .ok_or_else(|| Error::model(path, format!("config.json lacks integer field '{key}'")))
}

fn get_ids(v: &Value, key: &str) -> Option<Vec<u32>> {
    v.get(key)?.as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect()
    })
}

fn get_pairs(v: &Value, key: &str) -> Option<Vec<(usize, usize)>> {
    let arr = v.get(key)?.as_array()?;
    Some(
        arr.iter()
            .filter_map(|p| {
                let p = p.as_array()?;
                Some((p.first()?.as_u64()? as usize, p.get(1)?.as_u64()? as usize))
            })
            .collect(),
    )
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::model(path, format!("invalid JSON: {e}")))
}

impl ModelConfig {
    /// Read `config.json` (required) and `generation_config.json` (optional) from a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let cfg = read_json(&cfg_path)?;
        let dim = |key: &str| get_usize(&cfg, key, &cfg_path);
        let d_model = dim("d_model")?;
        // Encoder and decoder stacks are described alike: (heads, layers, ffn width).
        let stack = |side: &str| -> Result<(usize, usize, usize)> {
            let heads = dim(&format!("{side}_attention_heads"))?;
            if heads == 0 || d_model % heads != 0 {
                return Err(Error::model(
                    &cfg_path,
                    format!("d_model {d_model} is not divisible by {side}_attention_heads {heads}"),
                ));
            }
            Ok((
                heads,
                dim(&format!("{side}_layers"))?,
                dim(&format!("{side}_ffn_dim"))?,
            ))
        };
        let (n_mels, n_audio_ctx) = (dim("num_mel_bins")?, dim("max_source_positions")?);
        let (n_audio_head, n_audio_layer, n_audio_ffn) = stack("encoder")?;
        let (n_vocab, n_text_ctx) = (dim("vocab_size")?, dim("max_target_positions")?);
        let (n_text_head, n_text_layer, n_text_ffn) = stack("decoder")?;
        let dims = ModelDims {
            n_mels,
            n_audio_ctx,
            n_audio_state: d_model,
            n_audio_head,
            n_audio_layer,
            n_audio_ffn,
            n_vocab,
            n_text_ctx,
            n_text_state: d_model,
            n_text_head,
            n_text_layer,
            n_text_ffn,
        };
        let gen_path = dir.join("generation_config.json");
        let gen = if gen_path.exists() {
            Some(read_json(&gen_path)?)
        } else {
            None
        };
        // generation_config.json wins where both files carry a field (newer transformers
        // versions moved these keys there).
        let pick_ids = |key: &str| {
            gen.as_ref()
                .and_then(|g| get_ids(g, key))
                .or_else(|| get_ids(&cfg, key))
                .unwrap_or_default()
        };
        let alignment_heads = gen
            .as_ref()
            .and_then(|g| get_pairs(g, "alignment_heads"))
            .or_else(|| get_pairs(&cfg, "alignment_heads"))
            .unwrap_or_default();
        Ok(ModelConfig {
            dims,
            suppress_tokens: pick_ids("suppress_tokens"),
            begin_suppress_tokens: pick_ids("begin_suppress_tokens"),
            alignment_heads,
        })
    }
}
