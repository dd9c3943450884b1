//! Is a checkpoint intact? The sha256 of its weights, a cheap safetensors header check (a
//! truncated file fails it), and the full check of a Hugging Face Whisper directory against the
//! tensor schema its config implies.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::error::{Error, Result};

/// sha256 of a file, lowercase hex.
pub fn sha256_file(
    path: &Path,
    progress: Option<&crate::model::cache::ByteProgress>,
) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        if let Some(p) = progress {
            p.inc(n as u64);
        }
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What the safetensors header says, read without mapping the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The file length the header implies.
    pub expected_len: u64,
    /// Storage dtypes, largest share first, joined with '+'.
    pub dtype: String,
}

/// Read and check the safetensors header of `path`: it must parse and its tensors must end
/// exactly at the end of the file. Errors are one-line descriptions (without the path).
pub fn read_header(path: &Path) -> std::result::Result<HeaderInfo, String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut n8 = [0u8; 8];
    f.read_exact(&mut n8)
        .map_err(|_| format!("truncated: {len} bytes, too short for a safetensors header"))?;
    let n = u64::from_le_bytes(n8);
    if n > 100_000_000 || 8 + n > len {
        return Err(format!(
            "truncated or not safetensors: header length {n}, file {len} bytes"
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| format!("cannot read header: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| format!("corrupt safetensors header: {e}"))?;
    let obj = v.as_object().ok_or("corrupt safetensors header")?;
    let mut end = 0u64;
    let mut by_dtype: Vec<(String, u64)> = Vec::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let offs = t
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .ok_or_else(|| format!("corrupt safetensors header: tensor '{name}'"))?;
        end = end.max(offs.1);
        let dt = t.get("dtype").and_then(|d| d.as_str()).unwrap_or("?");
        let bytes = offs.1.saturating_sub(offs.0);
        match by_dtype.iter_mut().find(|(d, _)| d == dt) {
            Some(e) => e.1 += bytes,
            None => by_dtype.push((dt.to_string(), bytes)),
        }
    }
    by_dtype.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let expected_len = 8 + n + end;
    if expected_len != len {
        return Err(format!(
            "{} safetensors file: {len} bytes, its header says {expected_len}",
            if len < expected_len {
                "truncated"
            } else {
                "corrupt"
            }
        ));
    }
    Ok(HeaderInfo {
        expected_len,
        dtype: by_dtype
            .into_iter()
            .map(|d| d.0)
            .collect::<Vec<_>>()
            .join("+"),
    })
}

/// The sha256 the hub gave the file: the name of the blob `model.safetensors` links to.
pub(crate) fn blob_sha256(weights: &Path) -> Option<String> {
    let md = std::fs::symlink_metadata(weights).ok()?;
    if !md.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(weights).ok()?;
    let name = target.file_name()?.to_str()?;
    (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| name.to_ascii_lowercase())
}

pub(crate) fn stat_weights(weights: &Path) -> Result<(u64, u64)> {
    let md = std::fs::metadata(weights).map_err(|e| Error::io(weights, e))?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Ok((md.len(), mtime))
}

/// Check a Hugging Face Whisper directory: its config parses, `model.safetensors` is intact and
/// holds every tensor the config implies with the right shape, and no extra layers.
pub fn check_whisper_dir(dir: &Path) -> Result<()> {
    let cfg = crate::model::config::ModelConfig::from_dir(dir)?;
    let weights_path = dir.join("model.safetensors");
    read_header(&weights_path).map_err(|e| Error::model(&weights_path, e))?;
    let weights = crate::model::weights::Weights::open(&weights_path)?;
    for t in crate::model::schema::tensors(&cfg.dims) {
        let got = weights.shape(&t.name).map_err(|_| {
            Error::model(
                &weights_path,
                format!("missing tensor '{}' (config.json implies it)", t.name),
            )
        })?;
        if got != t.shape {
            return Err(Error::model(
                &weights_path,
                format!(
                    "tensor '{}' has shape {got:?}, config.json implies {:?}",
                    t.name, t.shape
                ),
            ));
        }
    }
    crate::model::schema::check_no_extra_layers(&weights, &cfg.dims)?;
    if !dir.join("tokenizer.json").is_file() {
        return Err(Error::model(dir, "lacks tokenizer.json"));
    }
    Ok(())
}
