//! Models beyond the `--model` ones: any checkpoint already in the local model cache (an
//! alias such as `base`, a repo id, or an imported name) is served on demand. A worker loads it
//! when the first request for it reaches the worker (that request, and any that follow, wait
//! for the load: OpenAI's clients wait for a response far longer than a cached checkpoint takes
//! to load, whereas a 503 would spend their few retries), and keeps at most `--max-models`
//! models: the `--model` ones always, on-demand ones evicted least recently used first when no
//! request needs them. A request never reaches the network: a name not in the cache is a 404.

use std::path::PathBuf;
use std::time::Instant;

use super::worker::ModelInfo;
use crate::error::{Error, Result};
use crate::model::{cache, config::ModelConfig, names, ModelFiles};
use crate::transcribe::{Device, Transcriber};

/// A checkpoint of the cache that `name` names: its canonical name (the alias of an OpenAI
/// checkpoint, else the repo id or imported name) and its snapshot directory. Paths are not
/// model names here (a client does not choose files on the server's disk).
fn cached(name: &str) -> Option<(String, String, PathBuf)> {
    let name = name.trim();
    if name.is_empty()
        || name.starts_with(['.', '/', '~'])
        || name.contains('\\')
        || name.matches('/').count() > 1
    {
        return None;
    }
    let repo = names::repo_of(name)?;
    let dir = cache::snapshot_of(&names::cache_dir(), &repo)?;
    Some((names::name_of(&repo), repo, dir))
}

/// What the HTTP side needs of a cached checkpoint that is not loaded (read from its
/// `config.json`, without loading the weights), under its canonical name.
pub(crate) fn cached_info(name: &str) -> Option<ModelInfo> {
    let (canonical, _, dir) = cached(name)?;
    let config = ModelConfig::from_dir(&dir).ok()?;
    Some(ModelInfo {
        name: canonical,
        n_mels: config.dims.n_mels,
        // The tokenizer's rule (`WhisperTokenizer::multilingual`).
        multilingual: crate::tokenizer::is_multilingual(config.dims.n_vocab),
    })
}

/// The canonical names of the OpenAI checkpoints in the cache (for `GET /v1/models`).
pub(crate) fn cached_aliases() -> Vec<String> {
    let cache = names::cache_dir();
    names::ALIASES
        .iter()
        .filter(|a| {
            names::repo_for(a).is_some_and(|repo| cache::snapshot_of(&cache, &repo).is_some())
        })
        .map(|a| a.to_string())
        .collect()
}

/// Load cached checkpoint `name` on `device`: checked and locked as `transcribe` does, and
/// never fetched (an error when it left the cache since the request was accepted).
pub(crate) fn load(name: &str, device: Device) -> Result<Transcriber> {
    let (_, repo, dir) =
        cached(name).ok_or_else(|| Error::resolve(name, "no longer in the model cache"))?;
    let cache_dir = names::cache_dir();
    cache::check_on_load(&cache_dir, &repo, &dir)?;
    let lock = cache::lock_use(&cache_dir, &repo).ok();
    Transcriber::builder()
        .model_files(ModelFiles::new(name, dir).with_lock(lock))
        .device(device)
        .build()
}

/// The models a worker holds: the `--model` ones (loaded at start, never evicted) first, then
/// those loaded on demand, and at most one load in progress. (Generic so that its rules are
/// tested without loading models.)
pub(crate) struct ModelSet<T = Transcriber> {
    loaded: Vec<(String, T)>,
    /// The first `served` of `loaded` are the `--model` ones.
    served: usize,
    /// Most models held at once, the one loading included.
    max: usize,
    /// On-demand models by last use, least recent first.
    recency: Vec<(String, Instant)>,
    loading: Option<String>,
}

impl<T> ModelSet<T> {
    pub fn new(served: Vec<(String, T)>, max: usize) -> Self {
        ModelSet {
            served: served.len(),
            max: max.max(served.len()),
            loaded: served,
            recency: Vec::new(),
            loading: None,
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        if let Some(r) = self.recency.iter_mut().find(|(n, _)| n == name) {
            r.1 = Instant::now();
        }
        self.loaded
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    pub fn get(&self, name: &str) -> Option<&T> {
        self.loaded.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    pub fn is_loaded(&self, name: &str) -> bool {
        self.loaded.iter().any(|(n, _)| n == name)
    }

    /// Whether models beyond the `--model` ones may be loaded.
    pub fn loads_on_demand(&self) -> bool {
        self.max > self.served
    }

    pub fn loading(&self) -> Option<&str> {
        self.loading.as_deref()
    }

    /// Make room for loading `name` (evicting the least recently used on-demand model that
    /// `in_use` says no request needs) and mark it loading. False when a load is already in
    /// progress or every model held is needed.
    pub fn begin_load(&mut self, name: &str, in_use: impl Fn(&str) -> bool) -> bool {
        if self.loading.is_some() {
            return false;
        }
        if self.loaded.len() >= self.max {
            self.recency.sort_by_key(|(_, used)| *used);
            let Some(at) = self.recency.iter().position(|(n, _)| !in_use(n)) else {
                return false;
            };
            let (evicted, _) = self.recency.remove(at);
            self.loaded.retain(|(n, _)| *n != evicted);
            tracing::info!("unloaded {evicted} (least recently used) to load {name}");
        }
        self.loading = Some(name.to_string());
        true
    }

    /// The load in progress ended; a loaded model joins the set.
    pub fn end_load(&mut self, name: &str, transcriber: Option<T>) {
        if self.loading.as_deref() == Some(name) {
            self.loading = None;
        }
        if let Some(t) = transcriber {
            self.recency.push((name.to_string(), Instant::now()));
            self.loaded.push((name.to_string(), t));
        }
        debug_assert!(self.loaded.len() >= self.served);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &ModelSet<u32>) -> Vec<&str> {
        set.loaded.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn on_demand_models_are_evicted_least_recently_used_and_only_when_unneeded() {
        let mut set = ModelSet::new(vec![("tiny.en".to_string(), 0u32)], 3);
        assert!(set.loads_on_demand());
        assert!(set.begin_load("base", |_| false));
        // One load at a time.
        assert!(!set.begin_load("small", |_| false));
        set.end_load("base", Some(1));
        assert!(set.begin_load("small", |_| false));
        set.end_load("small", Some(2));
        assert_eq!(names(&set), ["tiny.en", "base", "small"]);
        // Full: `base` was used last, so `small` goes; never the served model.
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(set.get_mut("base"), Some(&mut 1));
        assert!(set.begin_load("medium", |_| false));
        set.end_load("medium", None);
        assert_eq!(names(&set), ["tiny.en", "base"]);
        assert!(set.begin_load("small", |_| false));
        set.end_load("small", Some(2));
        // Every on-demand model needed by a request: no room, nothing evicted.
        assert!(!set.begin_load("medium", |n| n == "base" || n == "small"));
        assert_eq!(names(&set), ["tiny.en", "base", "small"]);
        assert!(set.loading().is_none());
        // `base` is needed, `small` not: `small` goes although `base` is older.
        assert!(set.begin_load("medium", |n| n == "base"));
        assert_eq!(names(&set), ["tiny.en", "base"]);
        assert_eq!(set.loading(), Some("medium"));
    }

    #[test]
    fn without_room_beyond_the_served_models_nothing_loads() {
        let mut set = ModelSet::new(vec![("a".to_string(), 0u32), ("b".to_string(), 1)], 1);
        assert!(!set.loads_on_demand());
        assert!(!set.begin_load("c", |_| false));
        assert_eq!(names(&set), ["a", "b"]);
    }

    #[test]
    fn names_that_are_paths_are_not_models() {
        for name in ["", "/etc", "../x", "~/m", "a/b/c", "a\\b", ".hidden"] {
            assert!(cached(name).is_none(), "{name}");
        }
    }
}
