//! Batch jobs over a manifest (`transcribe --manifest LIST`): the list of items, which task of
//! an array job takes which item ([`shard`]), and the sidecar that lets a rerun skip finished
//! items and redo changed ones ([`sidecar`]). Scheduling stays with the batch engine (Slurm,
//! Kubernetes, torchrun); this only makes a task's work deterministic and restartable.
//!
//! A manifest is either a text file of audio paths (one per line; blank lines and lines starting
//! with `#` are skipped) or JSON Lines of objects `{"audio": ..., "output": ..., <options>}`
//! (chosen when the first non-blank line starts with `{`). Relative paths are relative to the
//! manifest's directory, so a job finds the same files whatever its working directory.

pub mod shard;
pub mod sidecar;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::output::FormatChoice;
use crate::tokenizer::Task;

pub use shard::{shard_from_env, Shard};
pub use sidecar::{
    cached_model, fingerprint, redo_reason, resolve_model, sidecar_path, ModelRecord, Sidecar,
    StatusLine,
};

/// The options one manifest item may set; each overrides the command line's flag of the same
/// name for that item only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ItemOptions {
    pub language: Option<String>,
    pub task: Option<Task>,
    pub output_format: Option<FormatChoice>,
    pub word_timestamps: Option<bool>,
    pub initial_prompt: Option<String>,
    pub temperature: Option<f32>,
    pub beam_size: Option<usize>,
}

/// One JSON line as written. Unknown keys are refused (a misspelt option would otherwise be
/// silently ignored for a whole archive): what `options` does not take lands in `unknown`.
#[derive(Deserialize)]
struct JsonItem {
    audio: PathBuf,
    output: Option<PathBuf>,
    #[serde(flatten)]
    options: ItemOptions,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde::de::IgnoredAny>,
}

/// Every key a JSON line may have, for the message about one it may not.
const JSON_KEYS: &[&str] = &[
    "audio",
    "output",
    "language",
    "task",
    "output_format",
    "word_timestamps",
    "initial_prompt",
    "temperature",
    "beam_size",
];

/// One item of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestItem {
    /// 0-based position among the items (what sharding and status lines use).
    pub index: usize,
    /// 1-based line of the manifest file, for messages.
    pub line: usize,
    pub audio: PathBuf,
    /// Where the output goes: its extension is replaced by each format's. `None`: the
    /// command's `--output-dir`, named after the audio file.
    pub output: Option<PathBuf>,
    pub options: ItemOptions,
}

/// A parsed manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub items: Vec<ManifestItem>,
}

impl Manifest {
    /// Read and parse `path`; any bad line is an error naming the file and line.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        // `Path::new("").join(p)` is `p`: a manifest in the working directory keeps its paths.
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse(path, &text, base)
    }

    /// Parse manifest `text`; relative paths are joined to `base`; `path` names the manifest in
    /// messages.
    pub fn parse(path: &Path, text: &str, base: &Path) -> Result<Manifest> {
        let json = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .is_some_and(|l| l.starts_with('{'));
        let at = |line: usize, msg: String| {
            Error::Usage(format!("manifest {}:{line}: {msg}", path.display()))
        };
        let resolve = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let mut items = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || (!json && trimmed.starts_with('#')) {
                continue;
            }
            let (audio, output, options) = if json {
                let item: JsonItem =
                    serde_json::from_str(trimmed).map_err(|e| at(line, e.to_string()))?;
                if let Some(key) = item.unknown.keys().next() {
                    let e: serde_json::Error = serde::de::Error::unknown_field(key, JSON_KEYS);
                    return Err(at(line, e.to_string()));
                }
                (item.audio, item.output, item.options)
            } else {
                (PathBuf::from(trimmed), None, ItemOptions::default())
            };
            if audio.as_os_str().is_empty() || audio.as_os_str() == "-" {
                return Err(at(
                    line,
                    "\"audio\" must name a file (standard input cannot be a manifest item)".into(),
                ));
            }
            if output.as_ref().is_some_and(|o| o.file_name().is_none()) {
                return Err(at(line, "\"output\" must name a file".into()));
            }
            items.push(ManifestItem {
                index: items.len(),
                line,
                audio: resolve(audio),
                output: output.map(resolve),
                options,
            });
        }
        if items.is_empty() {
            return Err(Error::Usage(format!(
                "manifest {}: no items (a text file of audio paths, or JSON Lines of \
                 {{\"audio\": ..., \"output\": ...}})",
                path.display()
            )));
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(Path::new("m.jsonl"), text, Path::new("/data"))
    }

    #[test]
    fn text_list_with_comments_and_relative_paths() {
        let m = parse("# clips\na.wav\n\n/abs/b.flac\n").unwrap();
        let audio: Vec<_> = m.items.iter().map(|i| i.audio.clone()).collect();
        assert_eq!(
            audio,
            [PathBuf::from("/data/a.wav"), PathBuf::from("/abs/b.flac")]
        );
        assert_eq!(m.items[1].index, 1);
        assert_eq!(m.items[1].line, 4);
    }

    #[test]
    fn jsonl_with_options() {
        let m = parse(
            "{\"audio\": \"a.wav\", \"output\": \"out/a.txt\", \"language\": \"de\", \
             \"task\": \"translate\", \"output_format\": \"srt\", \"word_timestamps\": true}\n\
             {\"audio\": \"b.wav\"}\n",
        )
        .unwrap();
        let a = &m.items[0];
        assert_eq!(a.output.as_deref(), Some(Path::new("/data/out/a.txt")));
        assert_eq!(a.options.language.as_deref(), Some("de"));
        assert_eq!(a.options.task, Some(Task::Translate));
        assert_eq!(a.options.output_format, Some(FormatChoice::Srt));
        assert_eq!(a.options.word_timestamps, Some(true));
        assert_eq!(m.items[1].options, ItemOptions::default());
    }

    #[test]
    fn unknown_keys_and_bad_lines_name_the_line() {
        let e = parse("{\"audio\": \"a.wav\"}\n{\"audio\": \"b.wav\", \"langauge\": \"de\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.jsonl:2") && e.contains("langauge"), "{e}");
        let e = parse("{\"audio\": \"a.wav\"}\nb.wav\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.jsonl:2"), "{e}");
        let e = parse("{\"audio\": \"a.wav\", \"task\": \"summarise\"}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.jsonl:1") && e.contains("summarise"), "{e}");
        assert!(parse("-\n").is_err());
        assert!(parse("\n# nothing\n").is_err());
    }
}
