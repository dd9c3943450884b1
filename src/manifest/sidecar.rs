//! The sidecar written next to every output of a manifest run (`out.txt` ->
//! `out.txt.dattavani.json`), and the rule that decides whether a rerun may skip the item.
//!
//! The output is written first and the sidecar second, each atomically, so a task killed
//! between the two leaves an output without a sidecar, which the next run redoes. An item is
//! skipped only when every one of its outputs exists with a sidecar recording the same input
//! (size and sha256; the mtime is recorded but does not decide, because copying an archive
//! to another file system changes mtimes, not contents), the same model (repository and
//! snapshot revision; for a model directory, its path) and the same options.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the sidecar says about the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub path: String,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 when the file system has none).
    pub mtime_ns: u64,
    /// Lowercase hex sha256 of the file's bytes.
    pub sha256: String,
}

/// Which checkpoint produced an output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The name given (`--model`).
    pub name: String,
    /// Hugging Face repository (`openai/whisper-tiny.en`), when the model came from the cache.
    pub repo: Option<String>,
    /// Snapshot revision directory in the cache (a commit hash, or the name of an import).
    pub revision: Option<String>,
    /// The directory the weights were read from.
    pub dir: String,
}

impl ModelRecord {
    /// The record of the checkpoint in `dir` (a cache snapshot `.../models--org--name/
    /// snapshots/REV`, or any model directory) asked for as `name`.
    pub fn of_dir(name: &str, dir: &Path) -> ModelRecord {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let parent = dir.parent();
        let in_cache = parent
            .and_then(Path::file_name)
            .is_some_and(|n| n == "snapshots");
        let (repo, revision) = if in_cache {
            let repo = parent
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("models--"))
                .map(|n| n.replacen("--", "/", 1));
            let rev = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            (repo, rev)
        } else {
            (None, None)
        };
        ModelRecord {
            name: name.to_string(),
            repo,
            revision,
            dir: dir.display().to_string(),
        }
    }

    /// Same checkpoint: same repository and revision for cached models (the cache may sit at
    /// another path on another node), else the same directory.
    pub fn same_checkpoint(&self, other: &ModelRecord) -> bool {
        match (&self.repo, &self.revision, &other.repo, &other.revision) {
            (Some(a), Some(ra), Some(b), Some(rb)) => a == b && ra == rb,
            _ => self.dir == other.dir,
        }
    }

    fn describe(&self) -> String {
        match (&self.repo, &self.revision) {
            (Some(repo), Some(rev)) => format!("{repo}@{rev}"),
            _ => self.dir.clone(),
        }
    }
}

/// The model `spec` names as it is cached now, found without downloading or loading anything:
/// a model directory, or an alias / repository id with a complete snapshot in the Hugging Face
/// cache. `None` when it is not there yet (the run resolves, and may fetch, it).
pub fn cached_model(spec: &str) -> Option<ModelRecord> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Some(ModelRecord::of_dir(spec, path));
    }
    let repo = crate::model::names::repo_for(spec)?;
    let cache = crate::model::names::cache_dir();
    crate::model::cache::snapshot_of(&cache, &repo).map(|dir| ModelRecord::of_dir(spec, &dir))
}

/// Resolve `spec` as a transcription would (the cache, else a download) without loading the
/// weights: the files to hand to `Transcriber::builder().model_files(..)` and their record.
pub fn resolve_model(spec: &str) -> Result<(crate::model::ModelFiles, ModelRecord)> {
    let files = crate::model::hub::resolve(spec)?;
    let record = ModelRecord::of_dir(spec, &files.dir);
    Ok((files, record))
}

/// Everything recorded beside one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Layout version of this file.
    pub sidecar_version: u32,
    /// The program that wrote it (`dattavani-asr 0.1.0`); informative, not compared.
    pub writer: String,
    pub input: InputRecord,
    pub model: ModelRecord,
    /// The options the output was made with (as the caller records them; compared as a whole).
    pub options: serde_json::Value,
    /// The output file this sidecar describes.
    pub output: String,
}

pub const SIDECAR_VERSION: u32 = 1;

impl Sidecar {
    pub fn new(
        input: InputRecord,
        model: ModelRecord,
        options: serde_json::Value,
        output: &Path,
    ) -> Sidecar {
        Sidecar {
            sidecar_version: SIDECAR_VERSION,
            writer: concat!("dattavani-asr ", env!("CARGO_PKG_VERSION")).to_string(),
            input,
            model,
            options,
            output: output.display().to_string(),
        }
    }

    /// Write it beside `output`, atomically.
    pub fn write(&self, output: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("sidecar: {e}")))?;
        text.push('\n');
        crate::atomic_file::write(&sidecar_path(output), text.as_bytes())
    }
}

/// `out.txt` -> `out.txt.dattavani.json`.
pub fn sidecar_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_os_string();
    name.push(".dattavani.json");
    PathBuf::from(name)
}

/// Size, mtime and sha256 (streamed) of `path`.
pub fn fingerprint(path: &Path) -> Result<InputRecord> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::audio(path, "is a directory, not an audio file"));
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(InputRecord {
        path: path.display().to_string(),
        size: meta.len(),
        mtime_ns,
        sha256: crate::model::integrity::sha256_file(path, None)?,
    })
}

/// Why an item whose outputs are `outputs` must be (re)done, or `None` when every output has a
/// sidecar matching `input`, `model` and `options`. `model` is `None` when the model is not
/// cached yet (nothing made with it can exist).
pub fn redo_reason(
    outputs: &[PathBuf],
    input: &InputRecord,
    model: Option<&ModelRecord>,
    options: &serde_json::Value,
) -> Option<String> {
    for output in outputs {
        if !output.exists() {
            return Some(format!("{} not written yet", output.display()));
        }
        let side = sidecar_path(output);
        let text = match std::fs::read_to_string(&side) {
            Ok(t) => t,
            Err(_) => {
                return Some(format!(
                    "{} has no sidecar (interrupted, or written by another run)",
                    output.display()
                ))
            }
        };
        let Ok(old) = serde_json::from_str::<Sidecar>(&text) else {
            return Some(format!(
                "{} is not a sidecar this version reads",
                side.display()
            ));
        };
        if old.input.size != input.size || old.input.sha256 != input.sha256 {
            return Some(format!(
                "input changed since {} was written ({} -> {} bytes, sha256 {} -> {})",
                output.display(),
                old.input.size,
                input.size,
                &old.input.sha256[..old.input.sha256.len().min(12)],
                &input.sha256[..input.sha256.len().min(12)]
            ));
        }
        let Some(model) = model else {
            return Some("model not cached yet".into());
        };
        if !old.model.same_checkpoint(model) {
            return Some(format!(
                "model changed ({} -> {})",
                old.model.describe(),
                model.describe()
            ));
        }
        if &old.options != options {
            return Some(format!(
                "options changed since {} was written",
                output.display()
            ));
        }
    }
    None
}

/// One line of the status stream (`--status FILE` or stdout), one per item of the shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusLine {
    /// 0-based position in the manifest.
    pub item: usize,
    pub audio: String,
    /// `ok`, `error` or `skipped`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    pub outputs: Vec<String>,
    /// Wall-clock seconds the item took (not for skipped items).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub seconds: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelRecord {
        ModelRecord {
            name: "tiny.en".into(),
            repo: Some("openai/whisper-tiny.en".into()),
            revision: Some("abc".into()),
            dir: "/cache/x".into(),
        }
    }

    #[test]
    fn cache_snapshot_dirs_name_repo_and_revision() {
        let r = ModelRecord::of_dir(
            "tiny.en",
            Path::new("/nonexistent/models--openai--whisper-tiny.en/snapshots/r1"),
        );
        assert_eq!(r.repo.as_deref(), Some("openai/whisper-tiny.en"));
        assert_eq!(r.revision.as_deref(), Some("r1"));
        let moved = ModelRecord {
            dir: "/elsewhere".into(),
            ..r.clone()
        };
        assert!(r.same_checkpoint(&moved));
        let other = ModelRecord {
            revision: Some("r2".into()),
            ..r.clone()
        };
        assert!(!r.same_checkpoint(&other));
    }

    #[test]
    fn skip_only_when_every_sidecar_matches() {
        let dir = tempfile::tempdir().unwrap();
        let audio = dir.path().join("a.wav");
        std::fs::write(&audio, b"RIFF one").unwrap();
        let out = dir.path().join("a.txt");
        let input = fingerprint(&audio).unwrap();
        let options = serde_json::json!({"beam_size": 5});
        let outputs = [out.clone()];
        assert!(redo_reason(&outputs, &input, Some(&model()), &options)
            .unwrap()
            .contains("not written yet"));
        std::fs::write(&out, "text").unwrap();
        assert!(redo_reason(&outputs, &input, Some(&model()), &options)
            .unwrap()
            .contains("no sidecar"));
        Sidecar::new(input.clone(), model(), options.clone(), &out)
            .write(&out)
            .unwrap();
        assert_eq!(
            redo_reason(&outputs, &input, Some(&model()), &options),
            None
        );
        let other_options = serde_json::json!({"beam_size": 1});
        assert!(
            redo_reason(&outputs, &input, Some(&model()), &other_options)
                .unwrap()
                .contains("options changed")
        );
        let mut other_model = model();
        other_model.revision = Some("def".into());
        assert!(redo_reason(&outputs, &input, Some(&other_model), &options)
            .unwrap()
            .contains("model changed"));
        // Same size, other bytes: the hash decides.
        std::fs::write(&audio, b"RIFF two").unwrap();
        let changed = fingerprint(&audio).unwrap();
        assert_eq!(changed.size, input.size);
        assert!(redo_reason(&outputs, &changed, Some(&model()), &options)
            .unwrap()
            .contains("input changed"));
    }
}
