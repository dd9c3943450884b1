//! `transcribe --manifest` (issue 17): shards cover every item exactly once, `--shard auto`
//! reads each batch engine's variables, colliding outputs are refused before any model work,
//! and a rerun skips finished items and redoes missing or changed ones. The dry-run tests need
//! no model; the runs use tiny.en (greedy, to be quick) on three short clips.

#[path = "common/models.rs"]
mod models;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Every variable `--shard auto` reads, cleared so a test run inside a Slurm job or a pod is not
/// steered by its own environment.
const ENGINE_VARS: [&str; 8] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
];

const CLIPS: [&str; 3] = ["jfk.wav", "ps_goforward.wav", "ast_tt-allbusy.wav"];

fn clip(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/speech")
        .join(name)
}

/// A directory holding copies of the speech clips `names` for a real run, or `None` (the test
/// is skipped) when tiny.en is not cached.
fn dir_with_clips(names: &[&str]) -> Option<tempfile::TempDir> {
    models::cached_dir("tiny.en")?;
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(clip(name), dir.path().join(name)).unwrap();
    }
    Some(dir)
}

/// The binary in `dir`, quiet, with the engine variables cleared and `env` set.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dattavani-asr"));
    c.arg("--quiet").args(args).current_dir(dir);
    for v in ENGINE_VARS {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    c.output().expect("binary runs")
}

/// `transcribe --manifest list.txt -o out`, then `extra`, in `dir` (see [`run_in`]).
fn run_list(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["transcribe", "--manifest", "list.txt", "-o", "out"];
    args.extend_from_slice(extra);
    run_in(dir, &args, env)
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A directory with `n` small files standing in for audio (the dry run hashes, never decodes)
/// and a text manifest listing them.
fn dry_run_dir(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut list = String::new();
    for i in 0..n {
        let name = format!("clip{i}.wav");
        std::fs::write(dir.path().join(&name), format!("not decoded {i}")).unwrap();
        list.push_str(&name);
        list.push('\n');
    }
    std::fs::write(dir.path().join("list.txt"), list).unwrap();
    dir
}

/// The items a `--dry-run` says this shard runs.
fn planned(dir: &Path, shard_args: &[&str], env: &[(&str, &str)]) -> Vec<u64> {
    let o = run_list(dir, &[&["--dry-run"], shard_args].concat(), env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines = json_lines(&o.stdout);
    lines
        .iter()
        .filter(|l| l["action"] == "run")
        .map(|l| l["item"].as_u64().unwrap())
        .collect()
}

#[test]
fn shards_cover_every_item_exactly_once() {
    let dir = dry_run_dir(7);
    for count in 1..=4 {
        let mut seen = BTreeMap::new();
        for index in 0..count {
            for item in planned(dir.path(), &["--shard", &format!("{index}/{count}")], &[]) {
                *seen.entry(item).or_insert(0) += 1;
                assert_eq!(
                    item as usize % count,
                    index,
                    "item {item} in shard {index}/{count}"
                );
            }
        }
        assert_eq!(seen.len(), 7, "{count} shards: {seen:?}");
        assert!(seen.values().all(|&n| n == 1), "{count} shards: {seen:?}");
    }
}

#[test]
fn shard_auto_reads_each_engine() {
    let dir = dry_run_dir(6);
    let d = dir.path();
    // Slurm: --array=1-3 gives ids 1..3 with SLURM_ARRAY_TASK_MIN 1; id 2 is shard 1/3.
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
    ];
    assert_eq!(planned(d, &["--shard", "auto"], &slurm), [1, 4]);
    // Kubernetes Indexed Job: the count from --shard-count, else one item per index.
    let k8s = [("JOB_COMPLETION_INDEX", "1")];
    assert_eq!(
        planned(d, &["--shard", "auto", "--shard-count", "2"], &k8s),
        [1, 3, 5]
    );
    assert_eq!(planned(d, &["--shard", "auto"], &k8s), [1]);
    // torchrun / MPI.
    let rank = [("RANK", "0"), ("WORLD_SIZE", "4")];
    assert_eq!(planned(d, &["--shard", "auto"], &rank), [0, 4]);
    // None set: a usage error saying what was looked for.
    let o = run_list(d, &["--shard", "auto", "--dry-run"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, RANK")
            && !err.contains("panicked"),
        "{err}"
    );
    // An index past the count is refused, not wrapped.
    let o = run_list(
        d,
        &["--shard", "auto", "--dry-run"],
        &[("RANK", "4"), ("WORLD_SIZE", "4")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn dry_run_loads_and_fetches_no_model() {
    let dir = dry_run_dir(2);
    let empty_cache = tempfile::tempdir().unwrap();
    let cache = empty_cache.path().to_str().unwrap();
    let o = run_list(
        dir.path(),
        &["--dry-run"],
        &[("HF_HUB_CACHE", cache), ("HF_HUB_OFFLINE", "1")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len(), 2);
    assert!(lines
        .iter()
        .all(|l| l["action"] == "run" && l["shard"] == "0/1"));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn colliding_outputs_are_refused_before_any_model_work() {
    let dir = dry_run_dir(2);
    // Two items in different shards aiming at one file: refused for every shard.
    std::fs::write(
        dir.path().join("m.jsonl"),
        "{\"audio\": \"clip0.wav\", \"output\": \"out/x.txt\"}\n\
         {\"audio\": \"clip1.wav\", \"output\": \"out/./x.txt\"}\n",
    )
    .unwrap();
    for shard in ["0/2", "1/2"] {
        let o = run_in(
            dir.path(),
            &[
                "transcribe",
                "--manifest",
                "m.jsonl",
                "--shard",
                shard,
                "-m",
                "no-such-model",
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("would both be written to"),
            "{}",
            stderr(&o)
        );
    }
    // An unknown key names its line.
    std::fs::write(
        dir.path().join("m.jsonl"),
        "{\"audio\": \"clip0.wav\", \"output\": \"a.txt\"}\n{\"audio\": \"clip1.wav\", \"lang\": \"en\"}\n",
    )
    .unwrap();
    let o = run_in(dir.path(), &["transcribe", "--manifest", "m.jsonl"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("m.jsonl:2") && stderr(&o).contains("lang"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("out").exists() && !dir.path().join("a.txt").exists());
}

/// One real run over `list.txt` in `dir` (greedy); the status lines by item.
fn transcribe(dir: &Path, extra: &[&str]) -> (Option<i32>, BTreeMap<u64, Value>) {
    let args = [&["--beam-size", "1", "--threads", "2"], extra].concat();
    let o = run_list(dir, &args, &[]);
    let lines = json_lines(&o.stdout)
        .into_iter()
        .map(|l| (l["item"].as_u64().unwrap(), l))
        .collect();
    (o.status.code(), lines)
}

fn statuses(lines: &BTreeMap<u64, Value>) -> Vec<(u64, String)> {
    lines
        .iter()
        .map(|(k, v)| (*k, v["status"].as_str().unwrap().to_string()))
        .collect()
}

fn st(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
    pairs.iter().map(|(k, s)| (*k, s.to_string())).collect()
}

#[test]
fn killed_shard_rerun_finishes_only_what_is_missing_and_redoes_changed_inputs() {
    let Some(dir) = dir_with_clips(&CLIPS) else {
        return;
    };
    let d = dir.path();
    std::fs::write(d.join("list.txt"), CLIPS.join("\n") + "\n").unwrap();

    // Two shards: every output written once, by its own shard.
    let (code, s0) = transcribe(d, &["--shard", "0/2"]);
    assert_eq!(code, Some(0), "{s0:?}");
    assert_eq!(statuses(&s0), st(&[(0, "ok"), (2, "ok")]));
    let (code, s1) = transcribe(d, &["--shard", "1/2"]);
    assert_eq!(code, Some(0));
    assert_eq!(statuses(&s1), st(&[(1, "ok")]));
    for name in CLIPS {
        let out = d.join("out").join(name.replace(".wav", ".txt"));
        assert!(out.is_file(), "{}", out.display());
        assert!(d
            .join("out")
            .join(name.replace(".wav", ".txt.dattavani.json"))
            .is_file());
    }
    let jfk = std::fs::read_to_string(d.join("out/jfk.txt")).unwrap();
    assert!(
        jfk.contains("ask not what your country can do for you"),
        "{jfk}"
    );
    assert!(s0[&0]["seconds"].as_f64().unwrap() > 0.0);

    // A shard killed part-way: one item lost its output and sidecar, another was stopped
    // between writing its output and its sidecar. The rerun redoes just those two.
    std::fs::remove_file(d.join("out/ps_goforward.txt")).unwrap();
    std::fs::remove_file(d.join("out/ps_goforward.txt.dattavani.json")).unwrap();
    std::fs::remove_file(d.join("out/ast_tt-allbusy.txt.dattavani.json")).unwrap();
    let jfk_written = std::fs::metadata(d.join("out/jfk.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let (code, again) = transcribe(d, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        statuses(&again),
        st(&[(0, "skipped"), (1, "ok"), (2, "ok")])
    );
    let jfk_now = std::fs::metadata(d.join("out/jfk.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(jfk_written, jfk_now, "a skipped output is not rewritten");

    // Nothing left: everything skipped.
    let (code, done) = transcribe(d, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        statuses(&done),
        st(&[(0, "skipped"), (1, "skipped"), (2, "skipped")])
    );

    // A changed input (another recording under the same name) is redone; so are all items
    // whose options change.
    std::fs::copy(clip("ps_goforward.wav"), d.join("jfk.wav")).unwrap();
    let (code, changed) = transcribe(d, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        statuses(&changed),
        st(&[(0, "ok"), (1, "skipped"), (2, "skipped")])
    );
    let jfk_redone = std::fs::read_to_string(d.join("out/jfk.txt")).unwrap();
    let goforward = std::fs::read_to_string(d.join("out/ps_goforward.txt")).unwrap();
    assert_eq!(jfk_redone, goforward);
    let (_, dry) = transcribe(d, &["--word-timestamps", "--dry-run"]);
    assert!(
        dry.values()
            .all(|l| l["action"] == "run"
                && l["reason"].as_str().unwrap().contains("options changed"))
    );

    // A missing input is an error line and exit 1; the other items still run.
    std::fs::remove_file(d.join("ast_tt-allbusy.wav")).unwrap();
    let (code, missing) = transcribe(d, &["--status", "status.jsonl"]);
    assert_eq!(code, Some(1));
    assert!(missing.is_empty(), "--status takes the lines off stdout");
    let lines = json_lines(&std::fs::read(d.join("status.jsonl")).unwrap());
    let by_item: Vec<_> = lines
        .iter()
        .map(|l| (l["item"].as_u64().unwrap(), l["status"].as_str().unwrap()))
        .collect();
    assert_eq!(by_item, [(0, "skipped"), (1, "skipped"), (2, "error")]);
    assert!(lines[2]["message"]
        .as_str()
        .unwrap()
        .contains("ast_tt-allbusy.wav"));
}

#[test]
fn jsonl_items_choose_their_output_and_format() {
    let Some(dir) = dir_with_clips(&["jfk.wav"]) else {
        return;
    };
    let d = dir.path();
    std::fs::write(d.join("noise.wav"), vec![7u8; 4096]).unwrap();
    std::fs::write(
        d.join("list.txt"),
        "{\"audio\": \"jfk.wav\", \"output\": \"subs/kennedy.srt\", \"output_format\": \"srt\"}\n\
         {\"audio\": \"noise.wav\", \"output\": \"subs/noise.txt\"}\n",
    )
    .unwrap();
    // The item that is not audio fails on its own status line; the other is written.
    let (code, lines) = transcribe(d, &[]);
    assert_eq!(code, Some(1), "{lines:?}");
    assert_eq!(lines[&1]["status"], "error");
    assert!(
        lines[&1]["message"].as_str().unwrap().contains("noise.wav"),
        "{lines:?}"
    );
    assert!(!d.join("subs/noise.txt").exists());
    assert_eq!(lines[&0]["status"], "ok");
    assert_eq!(
        lines[&0]["outputs"],
        serde_json::json!(["subs/kennedy.srt"])
    );
    let srt = std::fs::read_to_string(d.join("subs/kennedy.srt")).unwrap();
    assert!(srt.starts_with("1\n00:00:00,000 --> "), "{srt}");
    let side: Value =
        serde_json::from_slice(&std::fs::read(d.join("subs/kennedy.srt.dattavani.json")).unwrap())
            .unwrap();
    assert_eq!(
        side["input"]["size"],
        std::fs::metadata(clip("jfk.wav")).unwrap().len()
    );
    assert_eq!(side["input"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(side["model"]["repo"], "openai/whisper-tiny.en");
    assert_eq!(
        side["options"]["output_formats"],
        serde_json::json!(["srt"])
    );
}
