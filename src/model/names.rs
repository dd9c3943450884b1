//! Names and the cache layout: the aliases of the Whisper checkpoints, the repo ids they stand
//! for, and where a checkpoint lives in the Hugging Face cache. A leaf: everything else in
//! `model/` builds on it, and it builds on nothing there.
//!
//! Layout written and read: `{cache}/models--{org}--{name}/snapshots/{rev}/` holding
//! `config.json`, `model.safetensors`, `tokenizer.json` (and `generation_config.json`), with
//! `{cache}/models--{org}--{name}/refs/main` holding `rev`, as the Hugging Face tools do.
//! Imported models live under the repo id `local/NAME`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
pub(crate) fn alias_of(repo: &str) -> Option<&'static str> {
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

/// A name usable as `local/NAME` for imported models.
pub(crate) fn valid_local_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Point `refs/main` of a cached repo at `rev` (temp file + rename).
pub(crate) fn write_ref(repo_dir: &Path, rev: &str) -> Result<()> {
    let refs = repo_dir.join("refs");
    std::fs::create_dir_all(&refs).map_err(|e| Error::io(&refs, e))?;
    let main = refs.join("main");
    if std::fs::read_to_string(&main).is_ok_and(|r| r.trim() == rev) {
        return Ok(());
    }
    crate::atomic_file::write(&main, rev.as_bytes())
}

/// The revision name given to snapshots made by `models import` of a CTranslate2 directory.
pub const IMPORT_REV: &str = "ct2-import";

/// The revision name given to snapshots imported from a Hugging Face directory.
pub const LOCAL_IMPORT_REV: &str = "local-import";

/// `{cache}/.locks/models--{org}--{name}/dattavani.{kind}.lock`.
pub(crate) fn lock_path(cache: &Path, repo: &str, kind: &str) -> PathBuf {
    cache
        .join(".locks")
        .join(format!("models--{}", repo.replace('/', "--")))
        .join(format!("dattavani.{kind}.lock"))
}

/// The repo id a user-facing name stands for: alias or repo id, else `local/NAME`.
pub fn repo_of(name: &str) -> Option<String> {
    repo_for(name).or_else(|| valid_local_name(name).then(|| format!("local/{name}")))
}

/// The short name of a repo id: the alias of `openai/whisper-<alias>`, `NAME` of `local/NAME`,
/// else the repo id.
pub fn name_of(repo: &str) -> String {
    if let Some(a) = repo
        .strip_prefix("openai/whisper-")
        .filter(|a| ALIASES.contains(a))
    {
        return a.to_string();
    }
    if let Some(n) = repo.strip_prefix("local/") {
        return n.to_string();
    }
    repo.to_string()
}

/// `models--org--name` -> `org/name`.
pub(crate) fn repo_of_dir_name(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix("models--")?;
    let (org, name) = rest.split_once("--")?;
    Some(format!("{org}/{}", name.replace("--", "/")))
}

/// A Hugging Face repo id: `org/name`, each part letters, digits, '.', '-', '_', neither empty
/// nor starting with '.' (so never `..`, and nothing that climbs out of the cache).
pub(crate) fn valid_repo_id(repo: &str) -> bool {
    match repo.split_once('/') {
        Some((org, name)) => valid_local_name(org) && valid_local_name(name),
        None => false,
    }
}

/// The alias a mistyped name most likely meant (`tiny-en`, `Base`, `tiny_en`, `smal`): the same
/// letters and digits ignoring case and punctuation, else at most two edits away.
pub(crate) fn suggest_alias(name: &str) -> Option<&'static str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let wanted = squash(name);
    if let Some(a) = ALIASES.iter().find(|a| squash(a) == wanted) {
        return Some(a);
    }
    ALIASES
        .iter()
        .map(|a| (edit_distance(&name.to_ascii_lowercase(), a), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod name_check_tests {
    use super::*;

    #[test]
    fn repo_ids_cannot_climb_out() {
        assert!(valid_repo_id("openai/whisper-tiny.en"));
        for bad in [
            "../../evil",
            "../x",
            "a/../b",
            "a/b/c",
            "/abs",
            "org/",
            ".x/y",
        ] {
            assert!(!valid_repo_id(bad), "{bad}");
        }
    }

    #[test]
    fn mistyped_aliases_are_suggested() {
        assert_eq!(suggest_alias("tiny-en"), Some("tiny.en"));
        assert_eq!(suggest_alias("TINY_EN"), Some("tiny.en"));
        assert_eq!(suggest_alias("smal"), Some("small"));
        assert_eq!(suggest_alias("my-finetune"), None);
    }
}
