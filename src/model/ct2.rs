//! CTranslate2 (faster-whisper) `model.bin` reader and importer into the Hugging Face layout.
//!
//! [`Ct2Model`] reads the binary format (versions 1-6, see `docs/MODELS.md`): variables with
//! their shape, dtype and raw little-endian bytes, plus aliases (which may chain). A model split
//! into several part files is read as one stream, in order, without concatenating on disk.
//!
//! [`convert`] turns a CTranslate2 Whisper directory (`model.bin` or its parts, `config.json`,
//! `tokenizer.json`) into a Hugging Face `openai/whisper-*` style directory: `model.safetensors`
//! with the Hugging Face tensor names, `config.json`, `generation_config.json` and
//! `tokenizer.json`. Dimensions are derived from tensor shapes and cross-checked.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, View};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::config::ModelDims;
use crate::model::schema;

/// Newest `model.bin` format version this reader understands.
pub const MAX_BINARY_VERSION: u32 = 6;

/// Storage type of a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl Ct2Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Ct2Dtype::F32,
            1 => Ct2Dtype::I8,
            2 => Ct2Dtype::I16,
            3 => Ct2Dtype::I32,
            4 => Ct2Dtype::F16,
            5 => Ct2Dtype::BF16,
            _ => return None,
        })
    }

    /// Format versions < 4 store only the item size; CTranslate2 maps it like this.
    fn from_item_size(size: u8) -> Option<Self> {
        Some(match size {
            4 => Ct2Dtype::F32,
            2 => Ct2Dtype::I16,
            1 => Ct2Dtype::I8,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Ct2Dtype::F32 | Ct2Dtype::I32 => 4,
            Ct2Dtype::I16 | Ct2Dtype::F16 | Ct2Dtype::BF16 => 2,
            Ct2Dtype::I8 => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Ct2Dtype::F32 => "float32",
            Ct2Dtype::I8 => "int8",
            Ct2Dtype::I16 => "int16",
            Ct2Dtype::I32 => "int32",
            Ct2Dtype::F16 => "float16",
            Ct2Dtype::BF16 => "bfloat16",
        }
    }
}

/// One variable of a `model.bin`: raw little-endian bytes with shape and dtype.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Ct2Dtype,
    pub data: Vec<u8>,
}

impl Variable {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32, without dequantization (integers are cast).
    pub fn values_f32(&self) -> Vec<f32> {
        let d = &self.data;
        match self.dtype {
            Ct2Dtype::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Ct2Dtype::F16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Ct2Dtype::BF16 => d
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Ct2Dtype::I8 => d.iter().map(|&b| b as i8 as f32).collect(),
            Ct2Dtype::I16 => d
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)
                .collect(),
            Ct2Dtype::I32 => d
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
        }
    }

    /// A scalar integer variable (e.g. `encoder/num_heads`), whatever its integer width.
    pub fn as_i64(&self) -> Option<i64> {
        if self.numel() != 1 {
            return None;
        }
        let d = &self.data;
        Some(match self.dtype {
            Ct2Dtype::I8 => d[0] as i8 as i64,
            Ct2Dtype::I16 => i16::from_le_bytes([d[0], d[1]]) as i64,
            Ct2Dtype::I32 => i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64,
            _ => return None,
        })
    }
}

/// A parsed CTranslate2 `model.bin` (possibly read from several part files).
#[derive(Debug, Clone)]
pub struct Ct2Model {
    /// For messages: the file, or the parts joined with " + ".
    pub path: PathBuf,
    pub version: u32,
    /// `spec_name` (version >= 2), e.g. "WhisperSpec".
    pub spec_name: Option<String>,
    pub spec_revision: Option<u32>,
    variables: BTreeMap<String, Variable>,
    aliases: BTreeMap<String, String>,
}

/// A byte stream over one or more files with a known total length, so that a short read can say
/// exactly how many bytes were needed and how many were left.
struct Stream<'a> {
    inner: Box<dyn Read + 'a>,
    pos: u64,
    total: u64,
    label: &'a Path,
    /// Advanced to `pos` after each read.
    progress: Option<&'a indicatif::ProgressBar>,
}

impl Stream<'_> {
    fn left(&self) -> u64 {
        self.total.saturating_sub(self.pos)
    }

    fn bytes(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<Vec<u8>> {
        if n > self.left() {
            return Err(Error::model(
                self.label,
                format!(
                    "truncated: {} needs {n} bytes, {} left",
                    what(),
                    self.left()
                ),
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::model(
                    self.label,
                    format!("truncated while reading {} (file shrank?)", what()),
                )
            } else {
                Error::io(self.label, e)
            }
        })?;
        self.pos += n;
        if let Some(p) = self.progress {
            p.set_position(self.pos);
        }
        Ok(buf)
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8> {
        Ok(self.bytes(1, what)?[0])
    }
    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u16(what)? as u64;
        if len == 0 {
            return Err(Error::model(
                self.label,
                format!("corrupt: {} has length 0 (no NUL terminator)", what()),
            ));
        }
        let mut b = self.bytes(len, what)?;
        if b.pop() != Some(0) {
            return Err(Error::model(
                self.label,
                format!("corrupt: {} is not NUL-terminated", what()),
            ));
        }
        String::from_utf8(b).map_err(|_| {
            Error::model(
                self.label,
                format!("corrupt: {} is not valid UTF-8", what()),
            )
        })
    }
}

impl Ct2Model {
    /// Read a single `model.bin`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_parts(&[path.to_path_buf()])
    }

    /// Read a model split into parts, concatenated in the given order (streamed, not copied).
    pub fn open_parts(parts: &[PathBuf]) -> Result<Self> {
        Self::open_parts_with_progress(parts, None)
    }

    /// `open_parts`, moving `progress` to the bytes read (its length set to their total).
    pub fn open_parts_with_progress(
        parts: &[PathBuf],
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Self> {
        if parts.is_empty() {
            return Err(Error::Internal(
                "Ct2Model::open_parts called with no files".into(),
            ));
        }
        let label: PathBuf = if parts.len() == 1 {
            parts[0].clone()
        } else {
            let names: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if i == 0 {
                        p.display().to_string()
                    } else {
                        p.file_name().map_or_else(
                            || p.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        )
                    }
                })
                .collect();
            PathBuf::from(names.join(" + "))
        };
        let mut total = 0u64;
        let mut reader: Box<dyn Read> = Box::new(std::io::empty());
        for p in parts {
            let f = File::open(p).map_err(|e| Error::io(p, e))?;
            total += f.metadata().map_err(|e| Error::io(p, e))?.len();
            reader = Box::new(reader.chain(BufReader::with_capacity(1 << 20, f)));
        }
        if let Some(p) = progress {
            p.set_length(total);
        }
        Self::parse(&label, reader, total, progress)
    }

    /// Parse from an in-memory buffer; `label` names it in error messages.
    pub fn from_bytes(label: &Path, bytes: &[u8]) -> Result<Self> {
        Self::parse(label, Box::new(bytes), bytes.len() as u64, None)
    }

    fn parse<'a>(
        label: &'a Path,
        inner: Box<dyn Read + 'a>,
        total: u64,
        progress: Option<&'a indicatif::ProgressBar>,
    ) -> Result<Self> {
        let mut s = Stream {
            inner,
            pos: 0,
            total,
            label,
            progress,
        };
        let version = s.u32(&|| "the format version".to_string())?;
        if version == 0 || version > MAX_BINARY_VERSION {
            return Err(Error::model(
                label,
                format!(
                    "not a CTranslate2 model.bin: format version {version} (0x{version:08x}) is not 1-{MAX_BINARY_VERSION}"
                ),
            ));
        }
        let (spec_name, spec_revision) = if version >= 2 {
            let name = s.string(&|| "the spec name".to_string())?;
            let rev = s.u32(&|| "the spec revision".to_string())?;
            (Some(name), Some(rev))
        } else {
            (None, None)
        };
        let n_vars = s.u32(&|| "the variable count".to_string())?;
        let mut variables = BTreeMap::new();
        for i in 0..n_vars {
            let name = s.string(&|| format!("the name of variable {i} of {n_vars}"))?;
            let rank = s.u8(&|| format!("the rank of variable '{name}'"))?;
            let mut shape = Vec::with_capacity(rank as usize);
            for _ in 0..rank {
                shape.push(s.u32(&|| format!("the shape of variable '{name}'"))? as usize);
            }
            let (dtype, n_bytes) = if version >= 4 {
                let id = s.u8(&|| format!("the dtype of variable '{name}'"))?;
                let dtype = Ct2Dtype::from_id(id).ok_or_else(|| {
                    Error::model(
                        label,
                        format!("corrupt: variable '{name}' has unknown dtype id {id}"),
                    )
                })?;
                let n = s.u32(&|| format!("the byte count of variable '{name}'"))? as u64;
                (dtype, n)
            } else {
                let size = s.u8(&|| format!("the item size of variable '{name}'"))?;
                let dtype = Ct2Dtype::from_item_size(size).ok_or_else(|| {
                    Error::model(
                        label,
                        format!("corrupt: variable '{name}' has unsupported item size {size}"),
                    )
                })?;
                let n = s.u32(&|| format!("the element count of variable '{name}'"))? as u64;
                (dtype, n * size as u64)
            };
            let numel: u64 = shape.iter().map(|&d| d as u64).product();
            if numel * dtype.size() as u64 != n_bytes {
                return Err(Error::model(
                    label,
                    format!(
                        "corrupt: variable '{name}' has shape {shape:?} of {} ({} bytes) but declares {n_bytes} bytes",
                        dtype.name(),
                        numel * dtype.size() as u64
                    ),
                ));
            }
            let data = s.bytes(n_bytes, &|| format!("variable '{name}'"))?;
            if variables.contains_key(&name) {
                return Err(Error::model(
                    label,
                    format!("corrupt: variable '{name}' appears twice"),
                ));
            }
            variables.insert(
                name.clone(),
                Variable {
                    name,
                    shape,
                    dtype,
                    data,
                },
            );
        }
        let mut aliases = BTreeMap::new();
        if version >= 3 {
            let n_aliases = s.u32(&|| "the alias count".to_string())?;
            for i in 0..n_aliases {
                let alias = s.string(&|| format!("alias {i} of {n_aliases}"))?;
                let target = s.string(&|| format!("the target of alias '{alias}'"))?;
                aliases.insert(alias, target);
            }
        }
        if s.left() > 0 {
            return Err(Error::model(
                label,
                format!(
                    "corrupt: {} unexpected bytes after the last {}",
                    s.left(),
                    if version >= 3 { "alias" } else { "variable" }
                ),
            ));
        }
        let model = Ct2Model {
            path: label.to_path_buf(),
            version,
            spec_name,
            spec_revision,
            variables,
            aliases,
        };
        // Every alias must end at a variable, without cycles.
        for alias in model.aliases.keys() {
            model.resolve_name(alias)?;
        }
        Ok(model)
    }

    /// Follow aliases from `name` to a variable name.
    fn resolve_name<'s>(&'s self, name: &'s str) -> Result<&'s str> {
        let mut cur = name;
        for _ in 0..=self.aliases.len() {
            if self.variables.contains_key(cur) {
                return Ok(cur);
            }
            match self.aliases.get(cur) {
                Some(t) => cur = t,
                None => {
                    return Err(if cur == name {
                        Error::model(&self.path, format!("no variable '{name}'"))
                    } else {
                        Error::model(
                            &self.path,
                            format!("alias '{name}' leads to '{cur}', which is not a variable"),
                        )
                    })
                }
            }
        }
        Err(Error::model(
            &self.path,
            format!("alias '{name}' is part of a cycle"),
        ))
    }

    /// The variable `name`, following aliases.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        self.resolve_name(name)
            .ok()
            .and_then(|n| self.variables.get(n))
    }

    fn require(&self, name: &str) -> Result<&Variable> {
        let n = self.resolve_name(name)?;
        Ok(&self.variables[n])
    }

    /// Names of the stored variables (not aliases), sorted.
    pub fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }

    /// Alias -> target pairs as stored (targets may themselves be aliases).
    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }

    /// An integer scalar such as `encoder/num_heads`.
    pub fn scalar_i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Variable::as_i64)
    }

    /// The variable as f32. Int8/int16 variables with a `{name}_scale` companion are
    /// dequantized (`w = q / scale`, one scale per output row, or one for the whole tensor).
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        let v = self.require(name)?;
        match v.dtype {
            Ct2Dtype::I8 | Ct2Dtype::I16 => {
                let Some(scale) = self.get(&format!("{name}_scale")) else {
                    return Ok(v.values_f32());
                };
                self.dequantize(name, v, scale)
            }
            _ => Ok(v.values_f32()),
        }
    }

    fn dequantize(&self, name: &str, v: &Variable, scale: &Variable) -> Result<Vec<f32>> {
        let scales = scale.values_f32();
        let q = v.values_f32();
        let rows = v.shape.first().copied().unwrap_or(1).max(1);
        if scales.len() == 1 {
            return Ok(q.into_iter().map(|x| x / scales[0]).collect());
        }
        if scales.len() != rows || !q.len().is_multiple_of(rows) {
            return Err(Error::model(
                &self.path,
                format!(
                    "'{name}_scale' has {} values but '{name}' has shape {:?} ({rows} rows)",
                    scales.len(),
                    v.shape
                ),
            ));
        }
        let per_row = q.len() / rows;
        let mut out = q;
        for (row, s) in out.chunks_mut(per_row.max(1)).zip(&scales) {
            for x in row {
                *x /= *s;
            }
        }
        Ok(out)
    }

    /// The variable in a safetensors-compatible storage type: floats as stored, quantized
    /// integers dequantized to f32.
    fn tensor(&self, name: &str) -> Result<OutTensor<'_>> {
        let v = self.require(name)?;
        let (dtype, data) = match v.dtype {
            Ct2Dtype::F32 => (Dtype::F32, Cow::Borrowed(&v.data[..])),
            Ct2Dtype::F16 => (Dtype::F16, Cow::Borrowed(&v.data[..])),
            Ct2Dtype::BF16 => (Dtype::BF16, Cow::Borrowed(&v.data[..])),
            Ct2Dtype::I8 | Ct2Dtype::I16 => {
                if self.get(&format!("{name}_scale")).is_none() {
                    return Err(Error::model(
                        &self.path,
                        format!(
                            "'{name}' is {} but has no '{name}_scale' to dequantize it",
                            v.dtype.name()
                        ),
                    ));
                }
                let vals = self.f32(name)?;
                (
                    Dtype::F32,
                    Cow::Owned(vals.iter().flat_map(|x| x.to_le_bytes()).collect()),
                )
            }
            Ct2Dtype::I32 => {
                return Err(Error::model(
                    &self.path,
                    format!("'{name}' is int32, expected a float weight"),
                ));
            }
        };
        Ok(OutTensor {
            dtype,
            shape: v.shape.clone(),
            data,
        })
    }
}

/// A tensor ready for safetensors serialization.
struct OutTensor<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Cow<'a, [u8]>,
}

impl OutTensor<'_> {
    /// Row block `i` of `n` equal parts along the first axis.
    fn row_block(&self, i: usize, n: usize) -> OutTensor<'static> {
        let mut shape = self.shape.clone();
        shape[0] /= n;
        let part_len = self.data.len() / n;
        OutTensor {
            dtype: self.dtype,
            shape,
            data: Cow::Owned(self.data[i * part_len..(i + 1) * part_len].to_vec()),
        }
    }
}

impl View for &OutTensor<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

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

/// The `model.bin` of a CTranslate2 directory, or its parts in order: `model.bin.part1`,
/// `model.bin.part2`, ... (also `.001`-style and `model.bin.partaa`-style suffixes, sorted
/// naturally by their suffix).
pub fn model_bin_parts(ct2_dir: &Path) -> Result<Vec<PathBuf>> {
    let single = ct2_dir.join("model.bin");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let entries = std::fs::read_dir(ct2_dir).map_err(|e| Error::io(ct2_dir, e))?;
    let mut parts: Vec<(Vec<u64>, String, PathBuf)> = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(ct2_dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(suffix) = name.strip_prefix("model.bin") {
            if !suffix.is_empty() && e.path().is_file() {
                parts.push((natural_key(suffix), suffix.to_string(), e.path()));
            }
        }
    }
    if parts.is_empty() {
        return Err(Error::model(
            ct2_dir,
            "no model.bin (nor model.bin.partN files): not a CTranslate2 model directory",
        ));
    }
    parts.sort();
    Ok(parts.into_iter().map(|p| p.2).collect())
}

/// Numbers in a string, for ordering "part2" before "part10".
fn natural_key(s: &str) -> Vec<u64> {
    let mut key = Vec::new();
    let mut cur: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            cur = Some(cur.unwrap_or(0).saturating_mul(10).saturating_add(d as u64));
        } else if let Some(n) = cur.take() {
            key.push(n);
        }
    }
    key.extend(cur);
    key
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
        &indicatif::ProgressBar::hidden(),
    )?;
    match place_dir(tmp, out_dir, Placement::KeepExisting)? {
        true => Ok(()),
        false => Err(Error::model(
            out_dir,
            "output directory appeared during conversion; left it untouched",
        )),
    }
}

/// Bytes of the `model.bin` parts (0 for those that cannot be read): what a conversion's
/// progress starts with.
pub(crate) fn parts_len(parts: &[PathBuf]) -> u64 {
    parts
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

/// Convert `parts` (with the JSON files of `ct2_dir`) into a new temporary directory in the
/// parent of `dest`. The caller renames it into place with [`place_dir`]. `progress` counts the
/// bytes of `model.bin` read and then of `model.safetensors` written (the caller finishes it).
pub(crate) fn convert_to_temp(
    ct2_dir: &Path,
    parts: &[PathBuf],
    dest: &Path,
    source: &str,
    progress: &indicatif::ProgressBar,
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
    progress: &indicatif::ProgressBar,
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
        "is_multilingual": d.vocab_size >= 51865,
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
