//! Writers: a transcript rendered as txt or json, written atomically (temp file in the target
//! directory, then rename), so a crash never leaves a half-written file where the user's was.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::transcribe::Transcript;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Txt,
    Json,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Txt => "txt",
            OutputFormat::Json => "json",
        }
    }
}

/// Plain text as openai-whisper's txt writer: one stripped segment per line.
pub fn render_txt(t: &Transcript) -> String {
    let mut out = String::new();
    for s in &t.segments {
        let line = s.text.trim();
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// openai-whisper's result dictionary as JSON.
pub fn render_json(t: &Transcript) -> String {
    serde_json::to_string(t).expect("a transcript always serialises")
}

pub fn render(t: &Transcript, format: OutputFormat) -> String {
    match format {
        OutputFormat::Txt => render_txt(t),
        OutputFormat::Json => render_json(t),
    }
}

/// `dir/<stem of input>.<ext>`.
pub fn output_path(dir: &Path, input: &Path, format: OutputFormat) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_else(|| "output".into());
    let mut name = stem;
    name.push(".");
    name.push(format.extension());
    dir.join(name)
}

/// Write `contents` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".dattavani-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(contents).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
