//! The driver's compiled pipelines kept on disk between runs (wgpu `PIPELINE_CACHE`, Vulkan
//! only), so a second start skips the SPIR-V → machine-code step the first one paid for.
//!
//! One file per adapter, named by `wgpu::util::pipeline_cache_key` (vendor and device), in
//! `$DATTAVANI_PIPELINE_CACHE` when that is a path, else `$XDG_CACHE_HOME/dattavani-asr/pipelines`,
//! else `~/.cache/dattavani-asr/pipelines`; `DATTAVANI_PIPELINE_CACHE=0` (or `off`, `false`,
//! `no`) turns it off.
//!
//! File format: `MAGIC`, the SHA-256 of the rest, the adapter's driver string (length-prefixed),
//! then the bytes `PipelineCache::get_data` returned. wgpu checks its own header (wgpu version,
//! adapter, driver validation key) but not the payload, and the driver trusts it: the digest
//! keeps a truncated or damaged file from ever reaching the driver. Any mismatch, and every IO
//! error, only means "start with an empty cache" (logged at debug / warn), never a failed run.
//! Writes go to a temporary file in the same directory that is then renamed over the old one,
//! so concurrent processes each see a whole file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Environment variable: a directory for the cache files, or 0 / off / false / no.
pub const ENV: &str = "DATTAVANI_PIPELINE_CACHE";

const MAGIC: &[u8; 8] = b"DTVPLC01";
const DIGEST_LEN: usize = 32;

/// Where `GpuContext` keeps the pipeline cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipelineCacheDir {
    /// `DATTAVANI_PIPELINE_CACHE`, else the user cache directory (see the module docs).
    FromEnv,
    /// No cache: every start compiles every pipeline.
    Off,
    /// This directory.
    At(PathBuf),
}

impl PipelineCacheDir {
    /// The directory this setting names, `None` when off (or no home directory is known).
    pub fn resolve(&self) -> Option<PathBuf> {
        match self {
            PipelineCacheDir::Off => None,
            PipelineCacheDir::At(p) => Some(p.clone()),
            PipelineCacheDir::FromEnv => {
                let v = std::env::var_os(ENV).filter(|v| !v.is_empty());
                match v.as_ref().and_then(|v| v.to_str()) {
                    Some(s) if is_off(s) => return None,
                    Some(s) if is_on(s) => {}
                    _ => {
                        if let Some(p) = v {
                            return Some(PathBuf::from(p));
                        }
                    }
                }
                default_dir()
            }
        }
    }
}

fn is_off(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "0" | "off" | "false" | "no"
    )
}

fn is_on(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "1" | "on" | "true" | "yes"
    )
}

fn default_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let base = nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("dattavani-asr").join("pipelines"))
}

/// An open device's pipeline cache and the file it came from.
pub(crate) struct DiskPipelineCache {
    pub cache: wgpu::PipelineCache,
    path: PathBuf,
    driver: String,
    /// Digest of the payload last read or written, to skip writing an unchanged cache.
    saved: Mutex<Option<[u8; DIGEST_LEN]>>,
}

impl DiskPipelineCache {
    /// The cache for `device` (which must have `PIPELINE_CACHE`), seeded from its file when the
    /// file is intact and was written for this driver. `None` when `dir` is off or the adapter's
    /// backend has no pipeline cache (`pipeline_cache_key` is Vulkan-only).
    pub fn open(
        device: &wgpu::Device,
        info: &wgpu::AdapterInfo,
        dir: &PipelineCacheDir,
    ) -> Option<Self> {
        let dir = dir.resolve()?;
        let key = wgpu::util::pipeline_cache_key(info)?;
        let path = dir.join(format!("{key}.bin"));
        let driver = format!("{} {} {}", info.name, info.driver, info.driver_info);
        let payload = match std::fs::read(&path) {
            Ok(bytes) => match unwrap_file(&bytes, &driver) {
                Ok(p) => Some(p.to_vec()),
                Err(why) => {
                    tracing::debug!("pipeline cache {}: {why}; starting empty", path.display());
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!("pipeline cache {}: {e}; starting empty", path.display());
                None
            }
        };
        // SAFETY: `payload` is exactly what `PipelineCache::get_data` returned for an adapter
        // with this cache key and driver string (the file's SHA-256 and driver string were
        // checked above); wgpu validates its own header as well and, with `fallback`, starts
        // empty when that header does not match.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("dattavani pipelines"),
                data: payload.as_deref(),
                fallback: true,
            })
        };
        tracing::debug!(
            "pipeline cache {}: {}",
            path.display(),
            match &payload {
                Some(p) => format!("{} bytes loaded", p.len()),
                None => "empty".into(),
            }
        );
        Some(DiskPipelineCache {
            cache,
            path,
            driver,
            saved: Mutex::new(payload.as_deref().map(digest)),
        })
    }

    /// Writes the cache's current data to its file when it differs from what was last read or
    /// written. Failures are logged and otherwise ignored.
    pub fn save(&self) {
        let Some(data) = self.cache.get_data() else {
            return;
        };
        let d = digest(&data);
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if *saved == Some(d) {
            return;
        }
        match crate::atomic_file::write(&self.path, &wrap_file(&data, &self.driver)) {
            Ok(()) => {
                tracing::debug!(
                    "pipeline cache {}: {} bytes written",
                    self.path.display(),
                    data.len()
                );
                *saved = Some(d);
            }
            // `e` names the file.
            Err(e) => tracing::warn!("pipeline cache not saved: {e}"),
        }
    }

    /// The file this cache is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn digest(data: &[u8]) -> [u8; DIGEST_LEN] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(d.as_ref());
    out
}

/// `MAGIC`, SHA-256 of what follows, driver length (u32 LE), driver, payload.
fn wrap_file(payload: &[u8], driver: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + driver.len() + payload.len());
    body.extend_from_slice(&(driver.len() as u32).to_le_bytes());
    body.extend_from_slice(driver.as_bytes());
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(MAGIC.len() + DIGEST_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&digest(&body));
    out.extend_from_slice(&body);
    out
}

/// The payload of a file `wrap_file` wrote for `driver`, or why it cannot be used.
fn unwrap_file<'a>(file: &'a [u8], driver: &str) -> Result<&'a [u8], &'static str> {
    let head = MAGIC.len() + DIGEST_LEN;
    if file.len() < head + 4 || &file[..MAGIC.len()] != MAGIC {
        return Err("not a pipeline cache file of this version");
    }
    let body = &file[head..];
    if digest(body)[..] != file[MAGIC.len()..head] {
        return Err("checksum mismatch (truncated or damaged)");
    }
    let n = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    let rest = &body[4..];
    if rest.len() < n || &rest[..n] != driver.as_bytes() {
        return Err("written for another driver");
    }
    Ok(&rest[n..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_rejections() {
        let payload = b"WGPUPLCH and some driver bytes".to_vec();
        let file = wrap_file(&payload, "llvmpipe Mesa 22");
        assert_eq!(unwrap_file(&file, "llvmpipe Mesa 22"), Ok(&payload[..]));
        assert!(unwrap_file(&file, "llvmpipe Mesa 23").is_err());
        assert!(unwrap_file(&file[..file.len() - 1], "llvmpipe Mesa 22").is_err());
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(unwrap_file(&flipped, "llvmpipe Mesa 22").is_err());
        assert!(unwrap_file(b"", "x").is_err());
        assert!(unwrap_file(&[0u8; 100], "x").is_err());
    }

    #[test]
    fn env_values() {
        for off in ["0", "off", "OFF", "false", "no"] {
            assert!(is_off(off), "{off}");
        }
        for on in ["1", "on", "true", "yes"] {
            assert!(is_on(on), "{on}");
        }
        assert_eq!(PipelineCacheDir::Off.resolve(), None);
        assert_eq!(
            PipelineCacheDir::At("/x".into()).resolve(),
            Some(PathBuf::from("/x"))
        );
    }
}
