//! Files written atomically (subtitles, cache metadata, refs, pipeline cache) get the permissions
//! of a plain new file: 0666 less the umask, not the 0600 of a bare temporary file.
//!
//! The umask is per process, so the cases run one after another in this one test.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;

use dattavani_asr::testing::{atomic_file, output};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn atomic_writes_honour_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    for (umask, expected) in [(0o022, 0o644), (0o027, 0o640)] {
        // SAFETY: umask only swaps the process's file-creation mask; no memory is involved.
        let old = unsafe { libc::umask(umask) };
        let fresh = dir.path().join(format!("fresh-{umask:o}.srt"));
        atomic_file::write(&fresh, b"1\n").unwrap();
        // Replacing an existing file gives the new one the same permissions.
        let replaced = dir.path().join(format!("sub/replaced-{umask:o}.txt"));
        output::write_atomic(&replaced, b"old\n").unwrap();
        output::write_atomic(&replaced, b"new\n").unwrap();
        unsafe { libc::umask(old) };

        assert_eq!(std::fs::read(&fresh).unwrap(), b"1\n");
        assert_eq!(std::fs::read(&replaced).unwrap(), b"new\n");
        assert_eq!(
            mode(&fresh),
            expected,
            "umask {umask:o}: {}",
            fresh.display()
        );
        assert_eq!(
            mode(&replaced),
            expected,
            "umask {umask:o}: {}",
            replaced.display()
        );
    }
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}
