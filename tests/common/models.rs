//! The test suite's one rule for checkpoints it needs: a test that needs a model the cache
//! lacks is skipped with a line saying how to fetch it, except under CI (`CI=true`), where the
//! model must have been fetched first and its absence fails the test.

#![allow(dead_code)]

use std::path::PathBuf;

use dattavani_asr::testing::model::hub;

/// The cached snapshot directory of `name` (an alias such as `tiny.en`), or `None` when the
/// test is to be skipped (one line on stderr says so and how to fetch it).
pub fn cached_dir(name: &str) -> Option<PathBuf> {
    let cache = hub::cache_dir();
    let found = hub::repo_for(name).and_then(|repo| hub::find_in_cache(&cache, &repo));
    if found.is_some() {
        return found;
    }
    let fetch = format!("cargo run --release -- models pull {name}");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "{name} is not in the model cache {}; CI fetches it first: {fetch}",
            cache.display()
        );
    }
    eprintln!("skipped: {name} is not in the model cache (fetch it: {fetch})");
    None
}

/// `cached_dir(name)` for tests that take turns with one model: `Some` holds `lock` (a test
/// that panicked while holding it does not poison it for the rest), `None` skips.
pub fn cached_and_locked(
    name: &str,
    lock: &'static std::sync::Mutex<()>,
) -> Option<std::sync::MutexGuard<'static, ()>> {
    cached_dir(name)?;
    Some(lock.lock().unwrap_or_else(|e| e.into_inner()))
}
