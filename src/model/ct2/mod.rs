//! Importing CTranslate2 (faster-whisper) Whisper models into the Hugging Face layout. The
//! `model.bin` format itself is read by [`reader`] ([`Ct2Model`]); this module maps its
//! variables to Whisper: dimensions, tensor names (from [`crate::model::schema`]), special
//! tokens.
//!
//! [`convert`] turns a CTranslate2 Whisper directory (`model.bin` or its parts, `config.json`,
//! `tokenizer.json`) into a Hugging Face `openai/whisper-*` style directory: `model.safetensors`
//! with the Hugging Face tensor names, `config.json`, `generation_config.json` and
//! `tokenizer.json`. Dimensions are derived from tensor shapes and cross-checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::config::ModelDims;
use crate::model::schema;

pub mod reader;

pub(crate) use reader::parts_len;
use reader::OutTensor;
pub use reader::{model_bin_parts, Ct2Dtype, Ct2Model, Variable, MAX_BINARY_VERSION};

/// Whisper dimensions derived from CTranslate2 tensor shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct2WhisperDims {
    pub d_model: usize,
    pub num_mel_bins: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub decoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub decoder_ffn_dim: usize,
    pub vocab_size: usize,
    pub max_source_positions: usize,
    pub max_target_positions: usize,
}

fn layer_count(m: &Ct2Model, prefix: &str) -> Result<usize> {
    let mut idx = BTreeSet::new();
    for name in m.variable_names() {
        if let Some(rest) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("/layer_"))
        {
            if let Some(n) = rest.split('/').next().and_then(|n| n.parse::<usize>().ok()) {
                idx.insert(n);
            }
        }
    }
    let n = idx.len();
    if n == 0 {
        return Err(Error::model(
            &m.path,
            format!("no {prefix} layers (no '{prefix}/layer_N/...' variables)"),
        ));
    }
    if idx.iter().copied().ne(0..n) {
        return Err(Error::model(
            &m.path,
            format!("{prefix} layer numbers are not 0..{}: {idx:?}", n - 1),
        ));
    }
    Ok(n)
}

fn shape_of<'m>(m: &'m Ct2Model, name: &str, rank: usize) -> Result<&'m [usize]> {
    let v = m.require(name)?;
    if v.shape.len() != rank {
        return Err(Error::model(
            &m.path,
            format!("'{name}' has shape {:?}, expected rank {rank}", v.shape),
        ));
    }
    Ok(&v.shape)
}

fn heads(m: &Ct2Model, side: &str, d_model: usize) -> Result<usize> {
    let h = match m.scalar_i64(&format!("{side}/num_heads")) {
        Some(h) if h > 0 => h as usize,
        Some(h) => return Err(Error::model(&m.path, format!("{side}/num_heads is {h}"))),
        None => d_model / 64,
    };
    if h == 0 || !d_model.is_multiple_of(h) {
        return Err(Error::model(
            &m.path,
            format!("d_model {d_model} is not divisible by {side} head count {h}"),
        ));
    }
    Ok(h)
}

impl Ct2WhisperDims {
    /// Derive and cross-check the dimensions of a Whisper checkpoint.
    pub fn from_model(m: &Ct2Model) -> Result<Self> {
        let conv1 = shape_of(m, "encoder/conv1/weight", 3)?;
        let (d_model, num_mel_bins) = (conv1[0], conv1[1]);
        let emb = shape_of(m, "decoder/embeddings/weight", 2)?;
        let vocab_size = emb[0];
        let max_source_positions = shape_of(m, "encoder/position_encodings/encodings", 2)?[0];
        let max_target_positions = shape_of(m, "decoder/position_encodings/encodings", 2)?[0];
        let encoder_ffn_dim = shape_of(m, "encoder/layer_0/ffn/linear_0/weight", 2)?[0];
        let decoder_ffn_dim = shape_of(m, "decoder/layer_0/ffn/linear_0/weight", 2)?[0];
        let dims = Ct2WhisperDims {
            d_model,
            num_mel_bins,
            encoder_layers: layer_count(m, "encoder")?,
            decoder_layers: layer_count(m, "decoder")?,
            encoder_attention_heads: heads(m, "encoder", d_model)?,
            decoder_attention_heads: heads(m, "decoder", d_model)?,
            encoder_ffn_dim,
            decoder_ffn_dim,
            vocab_size,
            max_source_positions,
            max_target_positions,
        };
        // Check every tensor the conversion writes against the shape these dims imply.
        for (name, expected) in dims.expected_shapes() {
            let v = m.require(&name)?;
            if v.shape != expected {
                return Err(Error::model(
                    &m.path,
                    format!("'{name}' has shape {:?}, expected {expected:?} (from d_model {d_model}, {num_mel_bins} mels, vocab {vocab_size})", v.shape),
                ));
            }
        }
        Ok(dims)
    }

    /// The same dimensions in the engine's terms.
    pub fn model_dims(&self) -> ModelDims {
        ModelDims {
            n_mels: self.num_mel_bins,
            n_audio_ctx: self.max_source_positions,
            n_audio_state: self.d_model,
            n_audio_head: self.encoder_attention_heads,
            n_audio_layer: self.encoder_layers,
            n_audio_ffn: self.encoder_ffn_dim,
            n_vocab: self.vocab_size,
            n_text_ctx: self.max_target_positions,
            n_text_state: self.d_model,
            n_text_head: self.decoder_attention_heads,
            n_text_layer: self.decoder_layers,
            n_text_ffn: self.decoder_ffn_dim,
        }
    }

    /// CTranslate2 names and shapes of every tensor the conversion reads: the schema's tensors
    /// where CTranslate2 keeps them, a fused projection as the whole fused variable (`of` times
    /// the rows; its key bias, absent in Hugging Face, is zeros of the same length).
    fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut seen = BTreeSet::new();
        let mut v = Vec::new();
        for m in schema::modules(&self.model_dims()) {
            for t in m.tensors() {
                if seen.insert(t.ct2_name.clone()) {
                    let mut shape = t.shape.clone();
                    shape[0] *= t.ct2_rows.1;
                    v.push((t.ct2_name.clone(), shape));
                }
            }
            // A fused projection whose first part has no bias (cross-attention K/V) still has a
            // fused CTranslate2 bias.
            if let (None, (_, of)) = (&m.bias, m.weight.ct2_rows) {
                if of > 1 {
                    let bias = m.weight.ct2_name.replace("/weight", "/bias");
                    if seen.insert(bias.clone()) {
                        v.push((bias, vec![m.weight.shape[0] * of]));
                    }
                }
            }
        }
        v
    }
}

/// Build the Hugging Face tensors from a CTranslate2 Whisper model, each from where the schema
/// says CTranslate2 keeps it (a row block of a fused projection split off).
fn hf_tensors<'m>(m: &'m Ct2Model, dims: &Ct2WhisperDims) -> Result<Vec<(String, OutTensor<'m>)>> {
    // A fused variable is read (and dequantized) once and kept until its last block is taken.
    let mut fused: HashMap<String, OutTensor<'m>> = HashMap::new();
    let mut out = Vec::new();
    for t in schema::tensors(&dims.model_dims()) {
        let (part, of) = t.ct2_rows;
        let tensor = if of == 1 {
            m.tensor(&t.ct2_name)?
        } else {
            if !fused.contains_key(&t.ct2_name) {
                fused.insert(t.ct2_name.clone(), m.tensor(&t.ct2_name)?);
            }
            let block = fused[&t.ct2_name].row_block(part, of);
            if part + 1 == of {
                fused.remove(&t.ct2_name);
            }
            block
        };
        out.push((t.name, tensor));
    }
    Ok(out)
}

/// Special token ids and language tokens read from `tokenizer.json`'s `added_tokens`.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    pub eot: u32,
    pub sot: u32,
    pub no_timestamps: u32,
    pub translate: Option<u32>,
    pub transcribe: Option<u32>,
    /// `<|xx|>` -> id, for the language tokens between `<|startoftranscript|>` and `<|translate|>`.
    pub langs: BTreeMap<String, u32>,
    /// Highest token id in the tokenizer.
    pub max_id: u32,
}

impl SpecialTokens {
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let v = read_json(path)?;
        let mut by_content: HashMap<String, u32> = HashMap::new();
        let mut max_id = 0u32;
        if let Some(added) = v.get("added_tokens").and_then(Value::as_array) {
            for t in added {
                if let (Some(c), Some(id)) = (
                    t.get("content").and_then(Value::as_str),
                    t.get("id").and_then(Value::as_u64),
                ) {
                    by_content.insert(c.to_string(), id as u32);
                    max_id = max_id.max(id as u32);
                }
            }
        }
        if let Some(vocab) = v.pointer("/model/vocab").and_then(Value::as_object) {
            max_id = vocab
                .values()
                .filter_map(Value::as_u64)
                .fold(max_id, |a, b| a.max(b as u32));
        }
        let need = |c: &str| {
            by_content.get(c).copied().ok_or_else(|| {
                Error::model(
                    path,
                    format!("added_tokens has no '{c}'; not a Whisper tokenizer?"),
                )
            })
        };
        let eot = need("<|endoftext|>")?;
        let sot = need("<|startoftranscript|>")?;
        let no_timestamps = need("<|notimestamps|>")?;
        let translate = by_content.get("<|translate|>").copied();
        let transcribe = by_content.get("<|transcribe|>").copied();
        let mut langs = BTreeMap::new();
        if let Some(tr) = translate {
            for (c, &id) in &by_content {
                if id > sot && id < tr && c.starts_with("<|") && c.ends_with("|>") {
                    langs.insert(c.clone(), id);
                }
            }
        }
        Ok(SpecialTokens {
            eot,
            sot,
            no_timestamps,
            translate,
            transcribe,
            langs,
            max_id,
        })
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::model(path, format!("invalid JSON: {e}")))
}

fn ids(v: &Value, key: &str) -> Vec<u64> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Convert a CTranslate2 Whisper directory into a Hugging Face style directory `out_dir`
/// (`model.safetensors`, `config.json`, `generation_config.json`, `tokenizer.json`).
///
/// Everything is written to a temporary directory beside `out_dir` and renamed into place at
/// the end. `out_dir` must not exist, or be empty.
pub fn convert(ct2_dir: &Path, out_dir: &Path) -> Result<()> {
    if out_dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::model(
            out_dir,
            "output directory already exists and is not empty",
        ));
    }
    let parts = model_bin_parts(ct2_dir)?;
    let source = format!("CTranslate2 {}", ct2_dir.display());
    let tmp = convert_to_temp(
        ct2_dir,
        &parts,
        out_dir,
        &source,
        &crate::model::cache::ByteProgress::hidden(),
    )?;
    match place_dir(tmp, out_dir, Placement::KeepExisting)? {
        true => Ok(()),
        false => Err(Error::model(
            out_dir,
            "output directory appeared during conversion; left it untouched",
        )),
    }
}

/// Convert `parts` (with the JSON files of `ct2_dir`) into a new temporary directory in the
/// parent of `dest`. The caller renames it into place with [`place_dir`]. `progress` counts the
/// bytes of `model.bin` read and then of `model.safetensors` written (the caller finishes it).
pub(crate) fn convert_to_temp(
    ct2_dir: &Path,
    parts: &[PathBuf],
    dest: &Path,
    source: &str,
    progress: &crate::model::cache::ByteProgress,
) -> Result<tempfile::TempDir> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-convert-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    write_hf(ct2_dir, parts, tmp.path(), source, progress)?;
    Ok(tmp)
}

/// What to do when the destination of [`place_dir`] already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Keep the existing directory and delete ours (another process won the race).
    KeepExisting,
    /// Move the existing directory aside and replace it.
    Replace,
}

/// Rename a finished temporary directory to `dest`. Returns false when `dest` already existed and
/// was kept (the temporary directory is then deleted).
pub(crate) fn place_dir(tmp: tempfile::TempDir, dest: &Path, how: Placement) -> Result<bool> {
    let src = tmp.keep();
    if how == Placement::Replace && dest.exists() {
        let parent = dest.parent().unwrap_or(Path::new("."));
        let old = tempfile::Builder::new()
            .prefix(".tmp-old-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let old_path = old.path().join("x");
        std::fs::rename(dest, &old_path).map_err(|e| Error::io(dest, e))?;
        drop(old); // removes the replaced snapshot
    }
    match std::fs::rename(&src, dest) {
        Ok(()) => Ok(true),
        Err(e) if dest.is_dir() && dest.read_dir().is_ok_and(|mut d| d.next().is_some()) => {
            tracing::debug!("{}: already present ({e}); keeping it", dest.display());
            let _ = std::fs::remove_dir_all(&src);
            Ok(false)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&src);
            Err(Error::io(dest, e))
        }
    }
}

fn write_hf(
    ct2_dir: &Path,
    parts: &[PathBuf],
    out: &Path,
    source: &str,
    progress: &crate::model::cache::ByteProgress,
) -> Result<()> {
    // The model first: a truncated or incomplete model.bin is the more telling error.
    let model = Ct2Model::open_parts_with_progress(parts, Some(progress))?;
    let tok_src = ct2_dir.join("tokenizer.json");
    if !tok_src.is_file() {
        return Err(Error::model(
            &tok_src,
            "missing: a CTranslate2 Whisper directory needs tokenizer.json",
        ));
    }
    let special = SpecialTokens::from_tokenizer_json(&tok_src)?;
    let ct2_cfg_path = ct2_dir.join("config.json");
    let ct2_cfg = if ct2_cfg_path.is_file() {
        read_json(&ct2_cfg_path)?
    } else {
        tracing::warn!(
            "{}: missing; no suppress_tokens or alignment_heads",
            ct2_cfg_path.display()
        );
        json!({})
    };

    if let Some(spec) = &model.spec_name {
        if spec != "WhisperSpec" {
            return Err(Error::model(
                &model.path,
                format!("spec is '{spec}', not a Whisper model (WhisperSpec)"),
            ));
        }
    }
    let dims = Ct2WhisperDims::from_model(&model)?;
    if (special.max_id as usize) >= dims.vocab_size {
        return Err(Error::model(
            &tok_src,
            format!(
                "token id {} does not fit the model's vocabulary of {}",
                special.max_id, dims.vocab_size
            ),
        ));
    }
    let alignment_heads: Vec<(u64, u64)> = ct2_cfg
        .get("alignment_heads")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_u64()?, p.get(1)?.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    for &(l, h) in &alignment_heads {
        if l as usize >= dims.decoder_layers || h as usize >= dims.decoder_attention_heads {
            return Err(Error::model(
                &ct2_cfg_path,
                format!(
                    "alignment head ({l}, {h}) is outside {} layers x {} heads",
                    dims.decoder_layers, dims.decoder_attention_heads
                ),
            ));
        }
    }
    let suppress = ids(&ct2_cfg, "suppress_ids");
    let begin_suppress = ids(&ct2_cfg, "suppress_ids_begin");
    let mut lang_to_id = special.langs.clone();
    if lang_to_id.is_empty() {
        // No <|translate|> to bound the language range: fall back to CTranslate2's lang_ids.
        let tok = read_json(&tok_src)?;
        let by_id: HashMap<u64, String> = tok
            .get("added_tokens")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| {
                        Some((
                            t.get("id")?.as_u64()?,
                            t.get("content")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for id in ids(&ct2_cfg, "lang_ids") {
            if let Some(c) = by_id.get(&id) {
                lang_to_id.insert(c.clone(), id as u32);
            }
        }
    }

    let tensors = hf_tensors(&model, &dims)?;
    let torch_dtype = match tensors
        .iter()
        .find(|(n, _)| n == "model.decoder.embed_tokens.weight")
        .map(|t| t.1.dtype)
    {
        Some(Dtype::F16) => "float16",
        Some(Dtype::BF16) => "bfloat16",
        _ => "float32",
    };
    let st_path = out.join("model.safetensors");
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    // The bar goes on over the output's bytes (its tensor data; the header is small), read from
    // the file's size while safetensors writes it in one call.
    let read = parts_len(parts);
    let out_bytes: u64 = tensors.iter().map(|(_, t)| t.data.len() as u64).sum();
    progress.set_length(read + out_bytes);
    let writing = std::sync::atomic::AtomicBool::new(true);
    let written = std::thread::scope(|scope| {
        scope.spawn(|| {
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let n = std::fs::metadata(&st_path).map_or(0, |m| m.len());
                progress.set_position(read + n.min(out_bytes));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        let r = safetensors::serialize_to_file(
            tensors.iter().map(|(n, t)| (n.as_str(), t)),
            Some(meta),
            &st_path,
        );
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        r
    });
    written.map_err(|e| Error::model(&st_path, format!("cannot write safetensors: {e}")))?;
    progress.set_position(read + out_bytes);
    drop(tensors);
    drop(model);

    let d = &dims;
    let config = json!({
        "_name_or_path": format!("converted from {source}"),
        "model_type": "whisper",
        "architectures": ["WhisperForConditionalGeneration"],
        "d_model": d.d_model,
        "encoder_layers": d.encoder_layers,
        "encoder_attention_heads": d.encoder_attention_heads,
        "decoder_layers": d.decoder_layers,
        "decoder_attention_heads": d.decoder_attention_heads,
        "encoder_ffn_dim": d.encoder_ffn_dim,
        "decoder_ffn_dim": d.decoder_ffn_dim,
        "num_hidden_layers": d.encoder_layers,
        "num_mel_bins": d.num_mel_bins,
        "vocab_size": d.vocab_size,
        "max_source_positions": d.max_source_positions,
        "max_target_positions": d.max_target_positions,
        "max_length": d.max_target_positions,
        "activation_function": "gelu",
        "scale_embedding": false,
        "is_encoder_decoder": true,
        "tie_word_embeddings": true,
        "use_cache": true,
        "decoder_start_token_id": special.sot,
        "eos_token_id": special.eot,
        "pad_token_id": special.eot,
        "bos_token_id": special.eot,
        "suppress_tokens": suppress,
        "begin_suppress_tokens": begin_suppress,
        "torch_dtype": torch_dtype,
    });
    let mut gen = json!({
        "decoder_start_token_id": special.sot,
        "eos_token_id": special.eot,
        "pad_token_id": special.eot,
        "bos_token_id": special.eot,
        "max_length": d.max_target_positions,
        "suppress_tokens": suppress,
        "begin_suppress_tokens": begin_suppress,
        "alignment_heads": alignment_heads.iter().map(|&(l, h)| json!([l, h])).collect::<Vec<_>>(),
        "is_multilingual": crate::tokenizer::is_multilingual(d.vocab_size),
        "lang_to_id": lang_to_id,
        "no_timestamps_token_id": special.no_timestamps,
        "return_timestamps": false,
    });
    if let (Some(tr), Some(tc)) = (special.translate, special.transcribe) {
        gen["task_to_id"] = json!({ "translate": tr, "transcribe": tc });
    }
    write_json(&out.join("config.json"), &config)?;
    write_json(&out.join("generation_config.json"), &gen)?;
    let tok_dst = out.join("tokenizer.json");
    std::fs::copy(&tok_src, &tok_dst).map_err(|e| Error::io(&tok_dst, e))?;
    Ok(())
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(v).map_err(|e| Error::Internal(format!("JSON: {e}")))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}
