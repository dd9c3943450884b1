//! The command line as a user runs it: exact output, files written, bad input reported on one
//! line with the documented exit code and no panic.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/models.rs"]
mod models;

use std::path::Path;
use std::process::Output;

use cli::{assert_clean_error, root, run, run_line, stderr};

use dattavani_asr::testing::model::hub;

const JFK: &str = "And so my fellow Americans ask not what your country can do for you, ask what you can do for your country.";

/// `dattavani-asr <command> samples/jfk.wav --device cpu <flags>`.
fn run_jfk_on_cpu(command: &str, flags: &[&str]) -> Output {
    let mut args = vec![command, "samples/jfk.wav", "--device", "cpu"];
    args.extend_from_slice(flags);
    run(&args)
}

/// Greedy, no timestamps: the decode CTranslate2's reference tokens were made with.
#[test]
fn transcribes_jfk_to_stdout_greedy_plain() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let o = run_jfk_on_cpu("transcribe", &["--beam-size", "1", "--without-timestamps"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), JFK);
}

/// OpenAI's defaults (beam 5, timestamps): one line per segment. faster-whisper 1.2.1 gives the
/// same two segments (0.0-8.0 s, 8.0-11.0 s) and texts on the same weights.
#[test]
fn transcribes_jfk_with_default_settings_as_segments() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let o = run(&["transcribe", "samples/jfk.wav"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "And so, my fellow Americans ask not what your country can do for you\nask what you can do for your country.\n"
    );
}

#[test]
fn writes_json_into_output_dir_and_reports_failed_files() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.wav");
    let o = run(&[
        "transcribe",
        missing.to_str().unwrap(),
        "samples/jfk.wav",
        "--beam-size",
        "1",
        "--without-timestamps",
        "--output-format",
        "json",
        "--output-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_clean_error(&o, 1, "missing.wav");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("jfk.json")).unwrap())
            .unwrap();
    assert_eq!(json["text"].as_str().unwrap().trim(), JFK);
    assert_eq!(json["segments"].as_array().unwrap().len(), 1);
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("jfk.json")]);
}

#[test]
fn bad_audio_files_give_one_line_each() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let empty = write("empty.wav", b"");
    let noise = write(
        "noise.wav",
        &(0..4000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<_>>(),
    );
    let jfk = std::fs::read(root().join("samples/jfk.wav")).unwrap();
    let truncated = write("truncated.wav", &jfk[..20]);
    // A valid 44-byte header that declares zero samples.
    let mut header = jfk[..44].to_vec();
    header[40..44].copy_from_slice(&0u32.to_le_bytes());
    header[4..8].copy_from_slice(&36u32.to_le_bytes());
    let zero = write("zero.wav", &header);
    for (path, name) in [
        (&empty, "empty.wav"),
        (&noise, "noise.wav"),
        (&truncated, "truncated.wav"),
        (&zero, "zero.wav"),
    ] {
        let o = run(&["transcribe", path.to_str().unwrap()]);
        assert_clean_error(&o, 1, name);
    }
}

/// A GPU request that cannot be met is a device error (exit 4), never a silent CPU run.
#[test]
fn gpu_device_is_not_silently_replaced() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let o = run_line("transcribe samples/jfk.wav --device gpu --adapter no-such-adapter");
    assert_clean_error(&o, 4, "device");
}

/// A copy of the real tiny.en directory with one file spoiled by `spoil`.
fn spoiled_model(spoil: impl FnOnce(&Path)) -> tempfile::TempDir {
    let real = hub::resolve("tiny.en").unwrap().dir;
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "model.safetensors",
    ] {
        if real.join(name).exists() {
            std::fs::copy(real.join(name), dir.path().join(name)).unwrap();
        }
    }
    spoil(dir.path());
    dir
}

#[test]
fn bad_models_give_one_line_and_exit_3() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let truncated = spoiled_model(|d| {
        let p = d.join("model.safetensors");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    });
    let garbage = spoiled_model(|d| {
        std::fs::write(d.join("model.safetensors"), b"not a safetensors file").unwrap()
    });
    let wrong_dims = spoiled_model(|d| {
        let p = d.join("config.json");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["encoder_ffn_dim"] = serde_json::json!(2048);
        std::fs::write(&p, v.to_string()).unwrap();
    });
    let no_tokenizer = spoiled_model(|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    for (dir, needle) in [
        (&truncated, "model.safetensors"),
        (&garbage, "model.safetensors"),
        (&wrong_dims, "shape"),
        (&no_tokenizer, "tokenizer.json"),
    ] {
        let o = run(&[
            "transcribe",
            "samples/jfk.wav",
            "--model",
            dir.path().to_str().unwrap(),
        ]);
        assert_clean_error(&o, 3, needle);
    }
}

#[test]
fn english_only_model_rejects_translate_and_other_languages() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    for args in [["--task", "translate"], ["--language", "de"]] {
        let o = run(&["transcribe", "samples/jfk.wav", args[0], args[1]]);
        assert_clean_error(&o, 2, "English-only");
    }
}

/// `bench --json`: one object whose figures add up (timed runs, not speed: nothing here asserts
/// how fast anything is).
#[test]
fn bench_json_reports_every_stage() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let o = run_line("bench --device cpu --runs 1 --beam-size 1 --json");
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    for key in [
        "load_cold_ms",
        "load_warm_ms",
        "mel_ms",
        "encoder_ms_per_window",
        "encoder_network_ms_per_window",
        "cross_kv_ms_per_window",
        "decoder_ms_per_window",
        "ms_per_step",
        "ms_per_seq_token",
        "total_ms",
        "real_time_factor",
    ] {
        let v = j[key].as_f64().unwrap_or(-1.0);
        assert!(v > 0.0, "{key} = {}", j[key]);
    }
    // The CPU times the cross-attention K/V apart: the network is the call less them.
    let [call, network, cross_kv] = [
        "encoder_ms_per_window",
        "encoder_network_ms_per_window",
        "cross_kv_ms_per_window",
    ]
    .map(|k| j[k].as_f64().unwrap());
    assert!(
        network < call && (network + cross_kv - call).abs() < 1e-6 * call,
        "{j}"
    );
    assert_eq!(j["windows"], 1);
    assert_eq!(j["beam_size"], 1);
    assert_eq!(j["steps"], j["seq_tokens"], "greedy: one sequence per step");
    assert!(j["steps"].as_u64().unwrap() >= j["tokens"].as_u64().unwrap());
    assert!(j["peak_rss_bytes"].as_u64().unwrap() > 50 << 20);
    assert!(j["gpu_bytes"].is_null());
    assert!(j["text"]
        .as_str()
        .unwrap()
        .contains("ask not what your country can do for you"));
    // The default (auto) is int8 where the CPU has the AVX-512 VNNI kernel (int8-bf16v where
    // it has AVX-512 BF16 too), else f32.
    use dattavani_asr::testing::backend::cpu::ops::Products;
    let auto = match dattavani_asr::testing::backend::cpu::int8::has_vnni() {
        true if Products::Bf16Values.on_this_cpu() == Products::Bf16Values => "int8-bf16v",
        true => "int8",
        false => "f32",
    };
    assert_eq!(j["dtype"], auto);
    assert!(!j["cpu_model"].as_str().unwrap().is_empty());
    assert!(j["cpu_paths"]["matmul int8"].is_string());
    let o = run(&["bench", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "a bad flag is a usage error");
}

#[test]
fn weight_dtypes_on_the_cpu() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    // int8 transcribes (tests/int8.rs checks it against f32 on the reference clips).
    let o = run_jfk_on_cpu(
        "transcribe",
        &[
            "--dtype",
            "int8",
            "--beam-size",
            "1",
            "--without-timestamps",
        ],
    );
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ask not what your country can do for you"),
        "{out}"
    );
    // f16 is a GPU storage format.
    let o = run_jfk_on_cpu("transcribe", &["--dtype", "f16"]);
    assert_clean_error(&o, 2, "f16");
}

/// `--batch-size`: 0 is a usage error (exit 2); 2 transcribes jfk (one chunk) with timestamps as
/// segments, and `bench --batch-size` reports it.
#[test]
fn batch_size_flag() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let o = run(&["transcribe", "samples/jfk.wav", "--batch-size", "0"]);
    assert_clean_error(&o, 2, "--batch-size");
    let o = run_jfk_on_cpu(
        "transcribe",
        &["--beam-size", "1", "--batch-size", "2", "-f", "json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = json["text"].as_str().unwrap();
    assert!(
        text.contains("ask not what your country can do for you"),
        "{text}"
    );
    assert!(json["segments"].as_array().unwrap().len() >= 2);
    let o = run_jfk_on_cpu(
        "bench",
        &[
            "--beam-size",
            "1",
            "--batch-size",
            "2",
            "--runs",
            "1",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["batch_size"], 2);
    assert_eq!(json["windows"], 1);
}
