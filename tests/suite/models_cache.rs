//! The model cache: metadata, integrity checks, locks, list/rm/gc, and the `models` CLI, on
//! small synthetic checkpoints in temporary caches (no network).

use crate::synth;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use dattavani_asr::testing::model::cache::{self, Meta, Source};
use dattavani_asr::testing::model::{ct2, hub};
use dattavani_asr::Error;

/// A CTranslate2 source directory for the synthetic model, under `root/name`.
fn ct2_src(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(format!("src-{name}"));
    synth::write_ct2_dir(&dir, &synth::synthetic_whisper(), false);
    dir
}

/// Import the synthetic model as `name` into `cache`.
fn import(root: &Path, cache: &Path, name: &str) -> PathBuf {
    let src = ct2_src(root, name);
    hub::import_in(&src, name, cache).unwrap().dir
}

fn repo_dir(cache: &Path, name: &str) -> PathBuf {
    hub::repo_cache_dir(cache, &cache::repo_of(name).unwrap())
}

fn set_last_used(cache: &Path, name: &str, t: u64) {
    let rd = repo_dir(cache, name);
    let mut m = cache::read_meta(&rd).unwrap();
    m.last_used = t;
    cache::write_meta(&rd, &m).unwrap();
}

fn names(cache: &Path) -> Vec<String> {
    cache::list_in(cache)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

#[test]
fn sizes_parse_in_decimal_and_binary_units() {
    let ok = [
        ("0", 0u64),
        ("1000", 1000),
        ("2GB", 2_000_000_000),
        ("2gb", 2_000_000_000),
        ("2 G", 2_000_000_000),
        ("500MiB", 500 * 1024 * 1024),
        ("1.5GiB", 1536 * 1024 * 1024),
        ("10k", 10_000),
        ("10KiB", 10_240),
        (" 3 MB ", 3_000_000),
        ("1TB", 1_000_000_000_000),
        ("7B", 7),
    ];
    for (s, want) in ok {
        assert_eq!(cache::parse_size(s), Ok(want), "{s}");
    }
    for bad in ["", "GB", "-1GB", "1.2.3G", "12 parsecs", "1e9", "NaN"] {
        let e = cache::parse_size(bad).unwrap_err();
        assert!(e.contains("invalid size"), "{bad}: {e}");
    }
    assert_eq!(cache::format_size(512), "512 B");
    assert_eq!(cache::format_size(1536 * 1024), "1.5 MiB");
    assert_eq!(cache::format_time(0), "1970-01-01 00:00:00Z");
    assert_eq!(cache::format_time(1_795_499_895), "2026-11-24 05:58:15Z");
    assert_eq!(cache::format_time(951_782_400), "2000-02-29 00:00:00Z");
}

#[test]
fn import_writes_metadata_atomically_and_list_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("hub");
    let before = cache::now();
    let snap = import(tmp.path(), &cache_dir, "synth-a");
    let rd = repo_dir(&cache_dir, "synth-a");
    let meta = cache::read_meta(&rd).expect("metadata written");
    assert_eq!(meta.name, "synth-a");
    assert_eq!(meta.repo, "local/synth-a");
    assert_eq!(meta.revision, hub::IMPORT_REV);
    assert_eq!(meta.source, Source::Ctranslate2Import);
    assert_eq!(
        meta.sha256.as_deref(),
        Some(
            cache::sha256_file(&snap.join("model.safetensors"), None)
                .unwrap()
                .as_str()
        )
    );
    assert!(meta.created >= before && meta.last_used >= meta.created);
    assert_eq!(meta.dtype, "F16+F32"); // f16 weights, f32 layer norms and int8 dequantized to f32
                                       // Metadata lives beside snapshots/ and refs/, which stay the Hugging Face layout.
    let mut top: Vec<String> = std::fs::read_dir(&rd)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["dattavani.json", "refs", "snapshots"]);

    let list = cache::list_in(&cache_dir).unwrap();
    assert_eq!(list.len(), 1);
    let e = &list[0];
    assert_eq!(
        (e.name.as_str(), e.repo.as_str()),
        ("synth-a", "local/synth-a")
    );
    assert_eq!(e.last_used, Some(meta.last_used));
    assert!(!e.default);
    assert!(e.size_bytes > 0 && e.size_bytes == cache::dir_size(&rd));
    assert_eq!(e.path, snap);

    // Atomic rewrite: a reader racing many writers always sees a whole file.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let rd = rd.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(rd.join(cache::META_FILE)).unwrap();
                serde_json::from_str::<Meta>(&text).expect("whole metadata file");
                reads += 1;
            }
            reads
        })
    };
    for i in 0..200 {
        let mut m = meta.clone();
        m.origin = Some("x".repeat(i * 50));
        cache::write_meta(&rd, &m).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let leftovers: Vec<_> = std::fs::read_dir(&rd)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn resolve_stamps_last_used_without_rehashing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("hub");
    import(tmp.path(), &cache_dir, "synth-a");
    set_last_used(&cache_dir, "synth-a", 1000);
    let rd = repo_dir(&cache_dir, "synth-a");
    // A wrong recorded hash is not noticed while size and mtime are unchanged (no re-hash)...
    let mut m = cache::read_meta(&rd).unwrap();
    m.sha256 = Some("0".repeat(64));
    cache::write_meta(&rd, &m).unwrap();
    let files = hub::resolve_in("synth-a", &cache_dir).unwrap();
    let after = cache::read_meta(&rd).unwrap();
    assert!(after.last_used > 1000);
    assert_eq!(after.sha256, m.sha256);
    drop(files);
    // ...but `verify` re-hashes and reports it with the repair command.
    let e = cache::verify_in(&cache_dir, "synth-a", false).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Model { .. }), "{e:?}");
    assert!(msg.contains("sha256 mismatch"), "{msg}");
    assert!(
        msg.contains("dattavani-asr models pull synth-a --force"),
        "{msg}"
    );
}

#[test]
fn corrupted_weights_are_detected_on_load_with_the_repair_command() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("hub");
    let snap = import(tmp.path(), &cache_dir, "synth-a");
    let weights = snap.join("model.safetensors");
    let good = std::fs::read(&weights).unwrap();

    // Truncated: the header disagrees with the file length.
    std::fs::write(&weights, &good[..good.len() - 100]).unwrap();
    let e = hub::resolve_in("synth-a", &cache_dir).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.exit_code(), 3);
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
    assert!(
        msg.contains("dattavani-asr models pull synth-a --force"),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1);

    // Same length, one byte changed (mtime changes with the write): hash mismatch.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&weights, &bad).unwrap();
    let msg = hub::resolve_in("synth-a", &cache_dir)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("sha256 mismatch"), "{msg}");
    assert!(msg.contains("models pull synth-a --force"), "{msg}");

    // The repair: pull --force imports it again from where it came from.
    let r = hub::pull_in("synth-a", &cache_dir, None, true).unwrap();
    assert!(r.fetched);
    assert_eq!(std::fs::read(&weights).unwrap(), good);
    hub::resolve_in("synth-a", &cache_dir).unwrap();
    // A plain pull of a cached model reuses it.
    let r = hub::pull_in("synth-a", &cache_dir, None, false).unwrap();
    assert!(!r.fetched);
}

#[test]
fn rm_removes_and_refuses_unknown_or_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("hub");
    import(tmp.path(), &cache_dir, "synth-a");
    import(tmp.path(), &cache_dir, "synth-b");
    assert_eq!(names(&cache_dir), ["synth-a", "synth-b"]);

    let in_use = hub::resolve_in("synth-a", &cache_dir).unwrap();
    let e = cache::remove_in(&cache_dir, "synth-a").unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    assert!(repo_dir(&cache_dir, "synth-a").is_dir());
    drop(in_use);

    let freed = cache::remove_in(&cache_dir, "synth-a").unwrap();
    assert!(freed > 0);
    assert!(!repo_dir(&cache_dir, "synth-a").exists());
    assert_eq!(names(&cache_dir), ["synth-b"]);
    let e = cache::remove_in(&cache_dir, "synth-a").unwrap_err();
    assert!(e.to_string().contains("not in the cache"), "{e}");
    assert_eq!(e.exit_code(), 3);
    assert!(hub::resolve_in("synth-a", &cache_dir).is_err());
}

#[test]
fn gc_evicts_least_recently_used_first_until_under_the_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("hub");
    for n in ["synth-a", "synth-b", "synth-c", "synth-d"] {
        import(tmp.path(), &cache_dir, n);
    }
    // Last use: b oldest, then d, a, c.
    for (n, t) in [
        ("synth-a", 300),
        ("synth-b", 100),
        ("synth-c", 400),
        ("synth-d", 200),
    ] {
        set_last_used(&cache_dir, n, t);
    }
    // A model of another kind sharing the cache is neither listed nor evicted.
    let other = cache_dir.join("models--org--bert/snapshots/abc");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::write(other.join(f), r#"{"model_type": "bert"}"#).unwrap();
    }
    let list = cache::list_in(&cache_dir).unwrap();
    assert_eq!(list.len(), 4);
    let one = list[0].size_bytes;
    let total: u64 = list.iter().map(|e| e.size_bytes).sum();

    // Under the cap: nothing happens.
    let r = cache::gc_in(&cache_dir, total, None).unwrap();
    assert!(r.evicted.is_empty() && r.before == total && r.after == total);

    // Room for two and a half: the two least recently used go, oldest first.
    let r = cache::gc_in(&cache_dir, 2 * one + one / 2, None).unwrap();
    let evicted: Vec<&str> = r.evicted.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(evicted, ["synth-b", "synth-d"]);
    assert!(!r.over_cap());
    assert_eq!(names(&cache_dir), ["synth-a", "synth-c"]);

    // `keep` protects the checkpoint a pull just fetched.
    let r = cache::gc_in(&cache_dir, 0, Some("local/synth-a")).unwrap();
    assert_eq!(r.evicted.len(), 1);
    assert_eq!(r.evicted[0].0, "synth-c");
    assert!(r.over_cap());
    assert_eq!(names(&cache_dir), ["synth-a"]);
    assert!(other.join("config.json").is_file());
}

#[test]
fn a_checkpoint_in_use_is_never_evicted() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("hub");
    for n in ["synth-a", "synth-b"] {
        import(tmp.path(), &cache_dir, n);
    }
    set_last_used(&cache_dir, "synth-a", 1);
    set_last_used(&cache_dir, "synth-b", 2);
    // Loading synth-a stamps it as used now; stamp it back so it is the LRU candidate.
    let files = hub::resolve_in("synth-a", &cache_dir).unwrap();
    assert!(files.lock.is_some());
    set_last_used(&cache_dir, "synth-a", 1);
    let r = cache::gc_in(&cache_dir, 0, None).unwrap();
    assert_eq!(r.in_use, ["synth-a"]);
    assert_eq!(
        r.evicted.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["synth-b"]
    );
    assert!(files.dir.join("model.safetensors").is_file());
    // A clone keeps the lock; dropping every copy releases it.
    let clone = files.clone();
    drop(files);
    assert_eq!(
        cache::gc_in(&cache_dir, 0, None).unwrap().in_use,
        ["synth-a"]
    );
    drop(clone);
    let r = cache::gc_in(&cache_dir, 0, None).unwrap();
    assert_eq!(r.evicted[0].0, "synth-a");
    assert!(names(&cache_dir).is_empty());
}

#[test]
fn a_second_pull_waits_for_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("hub");
    let held = cache::lock_pull(&cache_dir, "openai/whisper-tiny.en").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let c = cache_dir.clone();
    let t = std::thread::spawn(move || {
        let _l = cache::lock_pull(&c, "openai/whisper-tiny.en").unwrap();
        tx.send(()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "not waiting"
    );
    drop(held);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("proceeds once released");
    t.join().unwrap();
    // Another repo's pull lock is independent.
    let _a = cache::lock_pull(&cache_dir, "openai/whisper-base").unwrap();
    let _b = cache::lock_pull(&cache_dir, "openai/whisper-small").unwrap();
}

#[test]
fn imports_a_hugging_face_directory_after_checking_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("hub");
    let hf = tmp.path().join("hf");
    ct2::convert(&ct2_src(tmp.path(), "x"), &hf).unwrap();
    let files = hub::import_in(&hf, "hf-model", &cache_dir).unwrap();
    assert!(files.dir.ends_with("snapshots/local-import"));
    let m = cache::read_meta(&repo_dir(&cache_dir, "hf-model")).unwrap();
    assert_eq!(m.source, Source::Local);
    assert_eq!(
        m.origin.as_deref(),
        Some(std::fs::canonicalize(&hf).unwrap().to_str().unwrap())
    );
    hub::resolve_in("hf-model", &cache_dir).unwrap();

    // A config that disagrees with the tensors is refused, and nothing is added.
    let cfg_path = hf.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["decoder_layers"] = serde_json::json!(2);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = hub::import_in(&hf, "hf-bad", &cache_dir).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Model { .. }), "{e:?}");
    assert!(
        msg.contains("not accepted") && msg.contains("model.decoder.layers.1"),
        "{msg}"
    );
    assert_eq!(names(&cache_dir), ["hf-model"]);

    // A directory that is neither format.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let msg = hub::import_in(&empty, "e", &cache_dir)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("neither a CTranslate2 model"), "{msg}");
}

// ---------------------------------------------------------------- the CLI

fn cli(cache_dir: &Path, cfg: &Path, args: &[&str], cap: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dattavani-asr"));
    c.args(args)
        .env("HF_HUB_CACHE", cache_dir)
        .env("HF_HUB_OFFLINE", "1")
        .env("XDG_CONFIG_HOME", cfg)
        .env_remove("DATTAVANI_CACHE_MAX_SIZE")
        .env_remove("DATTAVANI_LOG");
    if let Some(cap) = cap {
        c.env("DATTAVANI_CACHE_MAX_SIZE", cap);
    }
    c.output().expect("binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_import_list_json_rm_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("hub");
    let cfg = tmp.path().join("cfg");
    let src_dir = ct2_src(tmp.path(), "a");
    let src = src_dir.to_str().unwrap();
    let run = |args: &[&str]| cli(&cache_dir, &cfg, args, None);

    let o = run(&["models", "list"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("no models in"), "{out}");

    let o = run(&["models", "import", src, "--as", "mine"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("imported "), "{out}");

    let o = run(&["models", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cache"], cache_dir.to_str().unwrap());
    assert_eq!(v["cap_bytes"], serde_json::Value::Null);
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    let m = &models[0];
    assert_eq!(m["name"], "mine");
    assert_eq!(m["repo"], "local/mine");
    assert_eq!(m["revision"], "ct2-import");
    assert_eq!(m["source"], "ctranslate2-import");
    assert_eq!(m["dtype"], "F16+F32");
    assert_eq!(m["default"], false);
    assert!(m["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["total_bytes"], m["size_bytes"]);
    assert!(m["last_used"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(m["sha256"].as_str().unwrap().len(), 64);

    let o = run(&["models", "list"]);
    let out = text(&o.stdout);
    assert!(out.starts_with("NAME "), "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("mine "), "{out}");

    // gc needs a cap; with one that fits, nothing goes.
    let o = run(&["models", "gc"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no cache size cap"));
    let o = run(&["models", "gc", "--max-size", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("invalid size 'lots'"));
    let o = run(&["models", "gc", "--max-size", "1GB"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("evicted"));

    // A second import over a cap from the config file evicts the first and says so.
    std::fs::create_dir_all(cfg.join("dattavani-asr")).unwrap();
    let size = m["size_bytes"].as_u64().unwrap();
    std::fs::write(
        cfg.join("dattavani-asr/config.json"),
        format!(r#"{{"cache_max_size": "{}B"}}"#, size + size / 2),
    )
    .unwrap();
    let o = run(&["models", "import", src, "--as", "other"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("evicted mine"), "{err}");
    // The environment variable wins over the config file.
    let o = cli(&cache_dir, &cfg, &["models", "list", "--json"], Some("5MB"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cap_bytes"], 5_000_000);
    assert_eq!(v["models"].as_array().unwrap().len(), 1);
    assert_eq!(v["models"][0]["name"], "other");

    let o = run(&["models", "rm", "other"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with("removed other"));
    let o = run(&["models", "rm", "other"]);
    assert_eq!(o.status.code(), Some(3));
    let err = text(&o.stderr);
    assert!(
        err.starts_with("error: model 'other': not in the cache"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let o = run(&["models", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["models"].as_array().unwrap().is_empty());

    // pull takes names, not directories.
    let o = run(&["models", "pull", src]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}
