//! The test suite's one rule for checkpoints it needs: a test that needs a model the cache
//! lacks is skipped with a line saying how to fetch it, except under CI (`CI=true`), where the
//! model must have been fetched first and its absence fails the test.

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
