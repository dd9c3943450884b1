//! Checks the CLI makes before any model work (issue 13): numbers in range, language names,
//! inputs that exist, an output directory that can be written and names that do not collide.
//! Each failure is a usage error (exit 2) naming the flag, except unreadable inputs, which are
//! per-file failures (exit 1) as they would be later.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dattavani_asr::writers::{self as output, OutputFormat};
use dattavani_asr::{Error, Result, TranscribeOptions, LANGUAGES};

/// Largest `--beam-size` / `--best-of`: every beam (or sampled candidate) keeps its own
/// key/value caches, so memory grows linearly (a beam of 4000 was killed at 23.6 GB).
/// openai-whisper's default is 5; quality stops improving long before 32.
pub const MAX_CANDIDATES: usize = 32;

/// Whisper's largest vocabulary (large-v3); token ids at or past it cannot be suppressed.
/// The model's own vocabulary is checked once it is loaded ([`check_suppress_tokens`]).
const MAX_VOCAB: u32 = 51866;

/// Text context and audio context of every Whisper model.
const TEXT_CTX: u64 = 448;
const AUDIO_CTX: u64 = 1500;

/// (decoder layers, width) of the model the name most likely means; the largest when unknown,
/// so the estimate errs high.
fn decoder_dims(model: &str) -> (u64, u64) {
    let m = model.to_ascii_lowercase();
    if m.contains("tiny") {
        (4, 384)
    } else if m.contains("base") {
        (6, 512)
    } else if m.contains("small") {
        (12, 768)
    } else if m.contains("medium") {
        (24, 1024)
    } else if m.contains("turbo") {
        (4, 1280)
    } else {
        (32, 1280)
    }
}

/// Bytes of key/value cache one decoding candidate holds: self-attention over the text context
/// and cross-attention over the audio context, f32.
pub fn kv_bytes_per_candidate(model: &str) -> u64 {
    let (layers, width) = decoder_dims(model);
    2 * layers * (TEXT_CTX + AUDIO_CTX) * width * 4
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Candidate counts, temperatures, thresholds and token ids of `options`, with the flag names.
pub fn check_options(options: &TranscribeOptions, model: &str) -> Result<()> {
    let usage = |msg: String| Err(Error::Usage(msg));
    let d = &options.decode;
    for (flag, n) in [("--beam-size", d.beam_size), ("--best-of", d.best_of)] {
        let n = n.unwrap_or(1);
        if n > MAX_CANDIDATES {
            let per = kv_bytes_per_candidate(model);
            return usage(format!(
                "{flag} {n} is past the limit of {MAX_CANDIDATES}: each candidate keeps its own \
                 key/value caches, about {} MiB on {model}, so {n} would need about {} (times \
                 --batch-size {})",
                per >> 20,
                gib(per * n as u64),
                options.batch_size
            ));
        }
    }
    let t = options.temperature;
    if !(0.0..=1.0).contains(&t) {
        return usage(format!(
            "--temperature {t}: must be a number from 0 to 1 (0 decodes deterministically)"
        ));
    }
    let inc = options.temperature_increment_on_fallback;
    if !(0.0..=1.0).contains(&inc) {
        return usage(format!(
            "--temperature-increment-on-fallback {inc}: must be a number from 0 to 1 (0 disables \
             fallback)"
        ));
    }
    if let Some(p) = options.no_speech_threshold {
        if !(0.0..=1.0).contains(&p) {
            return usage(format!(
                "--no-speech-threshold {p}: must be a probability from 0 to 1"
            ));
        }
    }
    if let Some(r) = options.compression_ratio_threshold {
        if !(r.is_finite() && r > 0.0) {
            return usage(format!(
                "--compression-ratio-threshold {r}: must be a positive number"
            ));
        }
    }
    if let Some(l) = options.logprob_threshold {
        if !(l.is_finite() && l <= 0.0) {
            return usage(format!(
                "--logprob-threshold {l}: must be a log-probability (0 or below)"
            ));
        }
    }
    if let Some(p) = d.patience {
        if !(p.is_finite() && p > 0.0) {
            return usage(format!("--patience {p}: must be a positive number"));
        }
    }
    if let Some(a) = d.length_penalty {
        // Any finite alpha ranks candidates (negative ones favour shorter texts).
        if !a.is_finite() {
            return usage(format!("--length-penalty {a}: must be a finite number"));
        }
    }
    if let Some(ts) = d.max_initial_timestamp {
        if !(ts.is_finite() && ts >= 0.0) {
            return usage(format!(
                "--max-initial-timestamp {ts}: must be 0 seconds or more"
            ));
        }
    }
    check_suppress_tokens(&d.suppress_tokens, MAX_VOCAB as usize, "any Whisper model")
}

/// `--suppress-tokens` ids against a vocabulary of `n_vocab` tokens (`whose`: "this model").
pub fn check_suppress_tokens(ids: &[u32], n_vocab: usize, whose: &str) -> Result<()> {
    match ids.iter().find(|&&id| id as usize >= n_vocab) {
        Some(id) => Err(Error::Usage(format!(
            "--suppress-tokens: {id} is not a token id of {whose} (ids run from 0 to {})",
            n_vocab.saturating_sub(1)
        ))),
        None => Ok(()),
    }
}

/// `--language`: `auto`, a code (`en`) or a name (`English`, any case) to the code.
pub fn language_code(input: &str) -> Result<Option<String>> {
    let wanted = input.trim().to_lowercase();
    if wanted == "auto" {
        return Ok(None);
    }
    LANGUAGES
        .iter()
        .find(|(code, name)| *code == wanted || *name == wanted)
        .map(|(code, _)| Some(code.to_string()))
        .ok_or_else(|| {
            let list: Vec<String> = LANGUAGES
                .iter()
                .map(|(code, name)| format!("{code} ({name})"))
                .collect();
            Error::Usage(format!(
                "--language '{input}': not a language Whisper knows; give auto, or one of: {}",
                list.join(", ")
            ))
        })
}

/// `--seed`: a non-negative integer, with a message that says so for `-1`.
pub fn parse_seed(s: &str) -> std::result::Result<u64, String> {
    s.trim().parse::<u64>().map_err(|_| {
        format!(
            "'{s}' is not a seed: give a whole number from 0 to {}",
            u64::MAX
        )
    })
}

/// The input files that can be opened; each other one gets its error line now, before any model
/// is fetched. `-` (stdin) is taken as it is.
pub fn readable_inputs(files: &[PathBuf]) -> (Vec<PathBuf>, usize) {
    let mut ok = Vec::new();
    let mut failed = 0;
    for f in files {
        if f.as_os_str() == "-" {
            ok.push(f.clone());
            continue;
        }
        let problem = match std::fs::metadata(f) {
            Err(e) => Some(Error::io(f, e)),
            Ok(m) if m.is_dir() => Some(Error::audio(f, "is a directory, not an audio file")),
            Ok(_) => std::fs::File::open(f).err().map(|e| Error::io(f, e)),
        };
        match problem {
            Some(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
            None => ok.push(f.clone()),
        }
    }
    (ok, failed)
}

/// `--output-dir`: create it when missing and prove it writable, so that a path that is a file
/// or a directory without write permission fails now, not after the transcription.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Usage(format!(
            "--output-dir {}: exists and is not a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    tempfile::Builder::new()
        .prefix(".dattavani-write-test")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            Error::Usage(format!(
                "--output-dir {}: cannot write there: {e}",
                dir.display()
            ))
        })
}

/// Refuse inputs whose outputs would land on the same path (`a/x.wav b/x.wav -o out`: the
/// second would silently replace the first), naming both. Refusing keeps names predictable;
/// the user renames or runs twice.
pub fn check_collisions(dir: &Path, files: &[PathBuf], formats: &[OutputFormat]) -> Result<()> {
    let pairs = files.iter().flat_map(|f| {
        formats
            .iter()
            .map(move |&format| (output::output_path(dir, f, format), f.as_path()))
    });
    refuse_shared_outputs(
        pairs,
        "give them different names or separate --output-dir runs",
    )
}

/// The rule under [`check_collisions`] for any list of (output, input) pairs (a manifest's
/// explicit outputs too): two inputs writing one path is an error naming both, ending with
/// `hint`. Paths are compared after dropping `.` components (`out/./a.txt` is `out/a.txt`).
pub fn refuse_shared_outputs<'a>(
    pairs: impl IntoIterator<Item = (PathBuf, &'a Path)>,
    hint: &str,
) -> Result<()> {
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    for (path, f) in pairs {
        let path: PathBuf = path.components().collect();
        if let Some(first) = seen.insert(path.clone(), f) {
            return Err(Error::Usage(format!(
                "{} and {} would both be written to {}; {hint}",
                first.display(),
                f.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_by_code_or_name_in_any_case() {
        assert_eq!(language_code("English").unwrap().as_deref(), Some("en"));
        assert_eq!(language_code("de").unwrap().as_deref(), Some("de"));
        assert_eq!(language_code("AUTO").unwrap(), None);
        let e = language_code("Klingon").unwrap_err().to_string();
        assert!(e.contains("Klingon") && e.contains("en (english)"), "{e}");
    }

    #[test]
    fn beam_limit_names_the_memory() {
        let mut o = TranscribeOptions::default();
        o.decode.beam_size = Some(4000);
        let e = check_options(&o, "tiny.en").unwrap_err().to_string();
        assert!(e.contains("--beam-size 4000") && e.contains("GiB"), "{e}");
        o.decode.beam_size = Some(MAX_CANDIDATES);
        check_options(&o, "tiny.en").unwrap();
    }

    #[test]
    fn non_finite_and_out_of_range_numbers_are_refused() {
        let bad: [fn(&mut TranscribeOptions); 6] = [
            |o| o.temperature = f32::NAN,
            |o| o.temperature = -1.0,
            |o| o.temperature_increment_on_fallback = f32::INFINITY,
            |o| o.no_speech_threshold = Some(2.0),
            |o| o.logprob_threshold = Some(f32::NAN),
            |o| o.decode.suppress_tokens = vec![999_999],
        ];
        for spoil in bad {
            let mut o = TranscribeOptions::default();
            spoil(&mut o);
            assert!(matches!(check_options(&o, "base"), Err(Error::Usage(_))));
        }
        check_options(&TranscribeOptions::default(), "base").unwrap();
    }

    #[test]
    fn colliding_outputs_are_refused() {
        let files = [PathBuf::from("a/x.wav"), PathBuf::from("b/x.wav")];
        let e = check_collisions(Path::new("out"), &files, &[OutputFormat::Txt]).unwrap_err();
        assert!(e.to_string().contains("a/x.wav and b/x.wav"), "{e}");
        let files = [PathBuf::from("a/x.wav"), PathBuf::from("a/y.wav")];
        check_collisions(Path::new("out"), &files, &OutputFormat::ALL).unwrap();
    }

    #[test]
    fn output_dir_that_is_a_file_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(prepare_output_dir(f.path()), Err(Error::Usage(_))));
    }
}
