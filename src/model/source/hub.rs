//! The Hugging Face hub: downloading a checkpoint's files into the cache with hf-hub, after a
//! quick reachability probe so that an offline machine fails fast.
//!
//! Without the `hub` feature only the error saying so is reachable; the probe and its helpers
//! stay compiled (they hold no hf-hub types) but unused.
#![cfg_attr(not(feature = "hub"), allow(dead_code, unused_imports))]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::model::cache;
use crate::model::names::is_complete;

/// How long the hub reachability probe may take before the hub is declared unreachable.
const HUB_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn env_true(key: &str) -> bool {
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
pub(crate) fn download_from_hub(
    _repo: &str,
    _cache: &Path,
    _revision: Option<&str>,
) -> std::result::Result<PathBuf, String> {
    Err("skipped: built without the `hub` feature".into())
}

/// Download the model files of `repo` with hf-hub into the cache. Skipped (fast) when
/// `HF_HUB_OFFLINE` is set or the hub does not answer a TCP probe within a few seconds.
#[cfg(feature = "hub")]
pub(crate) fn download_from_hub(
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

/// hf-hub's download hook reporting to [`cache::set_progress`]'s sink.
#[cfg(feature = "hub")]
#[derive(Default)]
struct HubProgress {
    bar: Option<cache::ByteProgress>,
}

#[cfg(feature = "hub")]
impl hf_hub::api::Progress for HubProgress {
    fn init(&mut self, size: usize, filename: &str) {
        self.bar = Some(cache::ByteProgress::begin(size as u64, filename));
    }

    fn update(&mut self, size: usize) {
        if let Some(b) = &self.bar {
            b.inc(size as u64);
        }
    }

    fn finish(&mut self) {
        self.bar = None;
    }
}
