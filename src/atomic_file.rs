//! Replacing a file atomically: readers see the old contents or the new, never half a file.
//!
//! The new contents go to a temporary file in the same directory (a rename is atomic only within
//! one file system), are flushed to disk, then renamed over the target. The temporary file is
//! created with mode 0666 less the process umask, as `File::create` would: `tempfile` on its own
//! creates 0600 files, which would hide subtitles and a shared model cache from other users.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Write `contents` to `path` atomically (temporary file in the same directory, write, fsync,
/// rename), creating the directory if needed. The file ends with the permissions a plain
/// `File::create` would give it (0644 under umask 022).
pub fn write(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".dattavani-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The mode given to open(2), so the kernel applies the umask as for any new file.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(contents).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
