//! The CTranslate2 (faster-whisper) `model.bin` format, versions 1-6 (see `docs/MODELS.md`):
//! variables with their shape, dtype and raw little-endian bytes, plus aliases (which may
//! chain). A model split into several part files is read as one stream, in order, without
//! concatenating on disk. Nothing here knows Whisper; [`super`] maps the variables to it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, View};

use crate::error::{Error, Result};
use crate::model::weights::{le_bf16s, le_f16s, le_f32s};

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
            Ct2Dtype::F32 => le_f32s(d),
            Ct2Dtype::F16 => le_f16s(d),
            Ct2Dtype::BF16 => le_bf16s(d),
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
    progress: Option<&'a crate::model::cache::ByteProgress>,
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
        progress: Option<&crate::model::cache::ByteProgress>,
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
        progress: Option<&'a crate::model::cache::ByteProgress>,
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
            let corrupt =
                |what: String| Error::model(label, format!("corrupt: variable '{name}' {what}"));
            let (dtype, n_bytes) = if version >= 4 {
                let id = s.u8(&|| format!("the dtype of variable '{name}'"))?;
                let dtype = Ct2Dtype::from_id(id)
                    .ok_or_else(|| corrupt(format!("has unknown dtype id {id}")))?;
                let n = s.u32(&|| format!("the byte count of variable '{name}'"))? as u64;
                (dtype, n)
            } else {
                let size = s.u8(&|| format!("the item size of variable '{name}'"))?;
                let dtype = Ct2Dtype::from_item_size(size)
                    .ok_or_else(|| corrupt(format!("has unsupported item size {size}")))?;
                let n = s.u32(&|| format!("the element count of variable '{name}'"))? as u64;
                (dtype, n * size as u64)
            };
            let numel: u64 = shape.iter().map(|&d| d as u64).product();
            if numel * dtype.size() as u64 != n_bytes {
                return Err(corrupt(format!(
                    "has shape {shape:?} of {} ({} bytes) but declares {n_bytes} bytes",
                    dtype.name(),
                    numel * dtype.size() as u64
                )));
            }
            let data = s.bytes(n_bytes, &|| format!("variable '{name}'"))?;
            if variables.contains_key(&name) {
                return Err(corrupt("appears twice".into()));
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

    pub(crate) fn require(&self, name: &str) -> Result<&Variable> {
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
    pub(crate) fn tensor(&self, name: &str) -> Result<OutTensor<'_>> {
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
pub(crate) struct OutTensor<'a> {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Cow<'a, [u8]>,
}

impl OutTensor<'_> {
    /// Row block `i` of `n` equal parts along the first axis.
    pub(crate) fn row_block(&self, i: usize, n: usize) -> OutTensor<'static> {
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

/// Bytes of the `model.bin` parts (0 for those that cannot be read): what a conversion's
/// progress starts with.
pub(crate) fn parts_len(parts: &[PathBuf]) -> u64 {
    parts
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}
