//! The cache's lock files, in `{cache}/.locks/models--{org}--{name}/` beside the Hugging Face
//! tools' own (the cache module says what each lock guards).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::names::{lock_path, name_of};

/// A lock held while a checkpoint is in use; released when dropped (or the process exits).
#[derive(Debug)]
pub struct UseLock {
    _file: File,
    pub path: PathBuf,
}

fn open_lock(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Take the shared "in use" lock of `repo` (waits while `rm`/`gc` hold it exclusively, which
/// they do only while deleting).
pub fn lock_use(cache: &Path, repo: &str) -> Result<Arc<UseLock>> {
    let path = lock_path(cache, repo, "use");
    let file = open_lock(&path)?;
    file.lock_shared().map_err(|e| Error::io(&path, e))?;
    Ok(Arc::new(UseLock { _file: file, path }))
}

/// The exclusive "in use" lock of `repo` when no process uses it; `None` when one does.
pub(crate) fn try_lock_unused(cache: &Path, repo: &str) -> Result<Option<File>> {
    let path = lock_path(cache, repo, "use");
    let file = open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// The exclusive "pull" lock of `repo`: waits (saying so) while another process fetches it.
pub fn lock_pull(cache: &Path, repo: &str) -> Result<File> {
    let path = lock_path(cache, repo, "pull");
    let file = open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            tracing::info!(
                "model {}: another process is fetching it; waiting ({})",
                name_of(repo),
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    file.lock().map_err(|e| Error::io(&path, e))?;
    Ok(file)
}
