//! Local sources: a Hugging Face directory given as `--model DIR`, and `models import`, which
//! converts a CTranslate2 directory (or copies a Hugging Face one) into the cache once.

use std::path::Path;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::cache::{self, Source};
use crate::model::ct2::{self, Placement};
use crate::model::names::{
    cache_dir, is_complete, repo_cache_dir, repo_for, valid_local_name, valid_repo_id, write_ref,
    IMPORT_REV, LOCAL_IMPORT_REV, REQUIRED_FILES,
};
use crate::model::ModelFiles;

pub(crate) fn local_dir(spec: &str, path: &Path) -> Result<ModelFiles> {
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

/// Convert a CTranslate2 directory into the cache so that `--model NAME` finds it: under
/// `repo_for(NAME)` for aliases and repo ids, else under `local/NAME`. Uses [`cache_dir`].
pub fn import(ct2_dir: &Path, name: &str) -> Result<ModelFiles> {
    import_in(ct2_dir, name, &cache_dir())
}

/// [`import`] with an explicit cache directory. An earlier import of the same name is replaced.
///
/// `dir` is either a CTranslate2 directory (`model.bin` or split parts, converted) or a Hugging
/// Face directory (`config.json`, `model.safetensors`, `tokenizer.json`, copied). Either way the
/// tensor names and shapes are checked against the config before the snapshot is accepted. A
/// cache size cap is then enforced (the import itself is never evicted).
pub fn import_in(dir: &Path, name: &str, cache: &Path) -> Result<ModelFiles> {
    let repo = match repo_for(name) {
        Some(r) if valid_repo_id(&r) => r,
        None if valid_local_name(name) => format!("local/{name}"),
        _ => {
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

pub(crate) fn import_locked(
    src: &Path,
    name: &str,
    repo: &str,
    cache: &Path,
) -> Result<ModelFiles> {
    let origin = std::fs::canonicalize(src)
        .unwrap_or_else(|_| src.to_path_buf())
        .display()
        .to_string();
    let repo_dir = repo_cache_dir(cache, repo);
    let started = Instant::now();
    let (rev, source, tmp) = if let Ok(parts) = ct2::model_bin_parts(src) {
        let dest = repo_dir.join("snapshots").join(IMPORT_REV);
        let bar = cache::ByteProgress::begin(ct2::parts_len(&parts), &format!("converting {name}"));
        let tmp = ct2::convert_to_temp(
            src,
            &parts,
            &dest,
            &format!("CTranslate2 {}", src.display()),
            &bar,
        );
        drop(bar);
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
