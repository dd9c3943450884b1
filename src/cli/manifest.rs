//! `transcribe --manifest LIST [--shard I/N|auto] [--status FILE] [--dry-run]`: one task of a
//! batch job (a Slurm array task, a Kubernetes Indexed Job pod, a torchrun rank). The list, the
//! sharding rule and the sidecars are the library's ([`dattavani_asr::manifest`]); this file
//! maps them onto the transcribe flags, writes the outputs and the status lines.
//!
//! Order of work, so that what can fail cheaply fails first: parse the manifest and every
//! item's options, refuse colliding outputs (across the whole manifest, not only this shard, so
//! two shards can never write one file), resolve the model (no weights loaded), hash this
//! shard's inputs and compare sidecars; the model is loaded only when some item needs work.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dattavani_asr::manifest::{
    self, fingerprint, redo_reason, shard_from_env, Manifest, ManifestItem, ModelRecord, Shard,
    Sidecar, StatusLine,
};
use dattavani_asr::writers::{self as output, OutputFormat};
use dattavani_asr::{Error, Result, TranscribeOptions};

use super::checks;
use super::stdout::{out, outln};
use super::transcribe::{transcribe_one, Input, TranscribeArgs};

#[derive(clap::Args, Default)]
pub struct ManifestArgs {
    /// Batch over a manifest instead of FILES: a text file of audio paths, or JSON Lines of
    /// {"audio": ..., "output": ..., "language", "task", "output_format", "word_timestamps",
    /// "initial_prompt", "temperature", "beam_size"}. Outputs are written atomically with a
    /// sidecar (<output>.dattavani.json); a rerun skips items whose sidecars match.
    #[arg(long, value_name = "LIST", conflicts_with = "files")]
    pub manifest: Option<PathBuf>,
    /// This task's share: I/N (0-based; item k belongs to shard k mod N), or auto from
    /// SLURM_ARRAY_TASK_ID/COUNT, JOB_COMPLETION_INDEX or RANK/WORLD_SIZE. Default: every item.
    #[arg(long, value_name = "I/N|auto", requires = "manifest")]
    pub shard: Option<String>,
    /// Shard count for --shard auto (a Kubernetes Indexed Job's completions; without it there,
    /// one item per index).
    #[arg(long, value_name = "N", requires = "manifest")]
    pub shard_count: Option<usize>,
    /// Append the status lines (one JSON object per item) to FILE instead of stdout.
    #[arg(long, value_name = "FILE", requires = "manifest")]
    pub status: Option<PathBuf>,
    /// Print the plan (item, shard, outputs, run or skip and why) and stop; no model is loaded
    /// or fetched.
    #[arg(long, requires = "manifest")]
    pub dry_run: bool,
}

/// One manifest item with everything its run needs, worked out before any model work.
struct Planned<'a> {
    item: &'a ManifestItem,
    options: TranscribeOptions,
    formats: Vec<OutputFormat>,
    subtitles: output::SubtitleOptions,
    outputs: Vec<PathBuf>,
    /// What the sidecars record as the options (compared whole on a rerun).
    record: serde_json::Value,
}

/// The shard this task takes.
fn shard_of(args: &ManifestArgs, manifest_len: usize) -> Result<Shard> {
    match (args.shard.as_deref(), args.shard_count) {
        (None, None) => Ok(Shard::ALL),
        (None, Some(_)) => Err(Error::Usage("--shard-count goes with --shard auto".into())),
        (Some("auto"), count) => {
            let (shard, from) = shard_from_env(&|k| std::env::var(k).ok(), count, manifest_len)?;
            tracing::info!("shard {shard} (from {from})");
            Ok(shard)
        }
        (Some(text), count) => {
            let shard = Shard::parse(text)?;
            match count {
                Some(n) if n != shard.count => Err(Error::Usage(format!(
                    "--shard {text} and --shard-count {n} disagree"
                ))),
                _ => Ok(shard),
            }
        }
    }
}

/// The item's options: the command line's, with the item's own on top. Errors name the line.
fn plan_item<'a>(
    args: &TranscribeArgs,
    base: &TranscribeOptions,
    manifest_path: &Path,
    item: &'a ManifestItem,
) -> Result<Planned<'a>> {
    let at = |e: Error| {
        Error::Usage(format!(
            "manifest {}:{}: {e}",
            manifest_path.display(),
            item.line
        ))
    };
    let o = &item.options;
    let mut options = base.clone();
    if let Some(language) = &o.language {
        options.decode.language = checks::language_code(language).map_err(at)?;
    }
    if let Some(task) = o.task {
        options.decode.task = task;
    }
    if let Some(w) = o.word_timestamps {
        options.word_timestamps = w;
    }
    if let Some(prompt) = &o.initial_prompt {
        options.initial_prompt = Some(prompt.clone());
    }
    if let Some(t) = o.temperature {
        options.temperature = t;
    }
    if let Some(beams) = o.beam_size {
        options.decode.beam_size = Some(beams);
    }
    options.validate().map_err(at)?;
    checks::check_options(&options, args.model()).map_err(at)?;
    let formats = o
        .output_format
        .map_or_else(|| args.formats(), |f| f.formats());
    let subtitles = args
        .subtitles
        .options(options.word_timestamps)
        .map_err(at)?;
    // One format: the item's "output" exactly as given; several: its extension per format.
    let outputs = match (&item.output, args.output_dir()) {
        (Some(out), _) if formats.len() == 1 => vec![out.clone()],
        (Some(out), _) => formats
            .iter()
            .map(|f| out.with_extension(f.extension()))
            .collect(),
        (None, Some(dir)) => formats
            .iter()
            .map(|&f| output::output_path(dir, &item.audio, f))
            .collect(),
        (None, None) => {
            return Err(at(Error::Usage(
                "no \"output\" for this item and no --output-dir".into(),
            )))
        }
    };
    let record = serde_json::json!({
        "transcribe": options,
        "output_formats": formats.iter().map(|f| f.extension()).collect::<Vec<_>>(),
        "subtitles": subtitles,
        "vad": args.vad,
        "audio_input": format!("{:?}", args.input.open_options()?),
    });
    Ok(Planned {
        item,
        options,
        formats,
        subtitles,
        outputs,
        record,
    })
}

/// Where the status lines go: stdout, or appended to `--status FILE` (a requeued task adds its
/// lines after the earlier attempt's).
enum StatusSink {
    Stdout,
    File(PathBuf, std::fs::File),
}

impl StatusSink {
    fn open(path: Option<&Path>) -> Result<StatusSink> {
        let Some(path) = path else {
            return Ok(StatusSink::Stdout);
        };
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(StatusSink::File(path.to_path_buf(), file))
    }

    /// One line, written in a single call so concurrent tasks sharing a file do not interleave.
    fn write(&mut self, line: &StatusLine) -> Result<()> {
        let text = serde_json::to_string(line).expect("status lines serialize") + "\n";
        match self {
            StatusSink::Stdout => {
                out!("{text}");
                Ok(())
            }
            StatusSink::File(path, f) => f
                .write_all(text.as_bytes())
                .and_then(|()| f.flush())
                .map_err(|e| Error::io(path, e)),
        }
    }
}

fn display_all(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}

/// Returns the exit code: 0 when every item of the shard is ok or skipped, 1 when any failed.
pub fn manifest_command(args: TranscribeArgs, quiet: bool) -> Result<i32> {
    let batch = &args.batch;
    let path = batch.manifest.as_deref().expect("called with --manifest");
    let manifest = Manifest::load(path)?;
    let shard = shard_of(batch, manifest.items.len())?;
    let base = args.options()?;
    let open = args.input.open_options()?;
    let plans = manifest
        .items
        .iter()
        .map(|item| plan_item(&args, &base, path, item))
        .collect::<Result<Vec<_>>>()?;
    let pairs = plans.iter().flat_map(|p| {
        p.outputs
            .iter()
            .map(move |o| (o.clone(), p.item.audio.as_path()))
    });
    checks::refuse_shared_outputs(pairs, "give the items distinct \"output\" paths")?;
    let inputs: std::collections::HashSet<PathBuf> = plans
        .iter()
        .map(|p| p.item.audio.components().collect())
        .collect();
    for p in &plans {
        if let Some(o) = p
            .outputs
            .iter()
            .find(|o| inputs.contains(&o.components().collect::<PathBuf>()))
        {
            return Err(Error::Usage(format!(
                "manifest {}:{}: output {} is an input of this manifest",
                path.display(),
                p.item.line,
                o.display()
            )));
        }
    }
    // The dry run only looks in the cache; a real run resolves (and may fetch) the model, but
    // loads its weights only if some item needs them.
    let (files, model) = if batch.dry_run {
        (None, manifest::cached_model(args.model()))
    } else {
        let (files, record) = manifest::resolve_model(args.model())?;
        (Some(files), Some(record))
    };
    let mine: Vec<&Planned> = plans.iter().filter(|p| shard.owns(p.item.index)).collect();
    tracing::info!(
        "manifest {}: {} items, {} in shard {shard}",
        path.display(),
        plans.len(),
        mine.len()
    );
    // For each item of the shard: the input's fingerprint and why it must run (None: skip).
    let decided: Vec<(
        &Planned,
        Result<manifest::sidecar::InputRecord>,
        Option<String>,
    )> = mine
        .into_iter()
        .map(|p| {
            let input = fingerprint(&p.item.audio);
            let reason = match &input {
                Ok(input) => redo_reason(&p.outputs, input, model.as_ref(), &p.record),
                Err(e) => Some(e.to_string()),
            };
            (p, input, reason)
        })
        .collect();
    if batch.dry_run {
        return dry_run(&plans, shard, &decided, model.as_ref());
    }
    let model = model.expect("resolved above");
    let mut status = StatusSink::open(batch.status.as_deref())?;
    let mut failed = 0;
    let mut todo = Vec::new();
    for (p, input, reason) in decided {
        let line = |status: &str, message: Option<String>| StatusLine {
            item: p.item.index,
            audio: p.item.audio.display().to_string(),
            status: status.into(),
            message,
            outputs: display_all(&p.outputs),
            seconds: None,
        };
        match (input, reason) {
            (Err(e), _) => {
                eprintln!("error: {e}");
                failed += 1;
                status.write(&line("error", Some(e.to_string())))?;
            }
            (Ok(_), None) => status.write(&line("skipped", Some("outputs up to date".into())))?,
            (Ok(input), Some(reason)) => {
                tracing::info!(
                    "item {} ({}): {reason}",
                    p.item.index,
                    p.item.audio.display()
                );
                todo.push((p, input));
            }
        }
    }
    if todo.is_empty() {
        return Ok(if failed > 0 { 1 } else { 0 });
    }
    let vad_model = args.vad.load()?;
    let files = files.expect("resolved above");
    let mut transcriber = args.builder(base.clone()).model_files(files).build()?;
    checks::check_suppress_tokens(
        &transcriber.options().decode.suppress_tokens,
        transcriber.dims().n_vocab,
        "this model",
    )?;
    for (p, input) in todo {
        let started = Instant::now();
        let result = run_item(
            &mut transcriber,
            p,
            &input,
            &model,
            &open,
            quiet,
            vad_model.as_ref().map(|m| (m, &args.vad)),
        );
        let (state, message) = match result {
            Ok(()) => ("ok", None),
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                ("error", Some(e.to_string()))
            }
        };
        status.write(&StatusLine {
            item: p.item.index,
            audio: p.item.audio.display().to_string(),
            status: state.into(),
            message,
            outputs: display_all(&p.outputs),
            seconds: Some((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
        })?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// Transcribe one item and write each output, then its sidecar, atomically.
fn run_item(
    t: &mut dattavani_asr::Transcriber,
    p: &Planned,
    input: &manifest::sidecar::InputRecord,
    model: &ModelRecord,
    open: &dattavani_asr::audio_io::OpenOptions,
    quiet: bool,
    vad: Option<(&dattavani_asr::vad::VadModel, &super::vad::VadArgs)>,
) -> Result<()> {
    if open.raw.is_none() {
        dattavani_asr::audio_io::sniff_file(&p.item.audio)?;
    }
    t.set_options(p.options.clone())?;
    let (transcript, removed) = transcribe_one(t, Input::Path(&p.item.audio), open, quiet, vad)?;
    for (&format, out) in p.formats.iter().zip(&p.outputs) {
        let mut text = output::render_with(&transcript, format, &p.subtitles);
        if let (OutputFormat::Json, Some(removed)) = (format, removed) {
            text = super::vad::json_with_vad(&text, removed, transcript.duration);
        }
        output::write_atomic(out, text.as_bytes())?;
        Sidecar::new(input.clone(), model.clone(), p.record.clone(), out).write(out)?;
        tracing::info!("{} -> {}", p.item.audio.display(), out.display());
    }
    Ok(())
}

/// `--dry-run`: one JSON line per manifest item: its shard, outputs, and for this shard's
/// items whether it would run and why.
fn dry_run(
    plans: &[Planned],
    shard: Shard,
    decided: &[(
        &Planned,
        Result<manifest::sidecar::InputRecord>,
        Option<String>,
    )],
    model: Option<&ModelRecord>,
) -> Result<i32> {
    match model {
        Some(m) => tracing::info!("model {} ({})", m.name, m.dir),
        None => tracing::info!("model not cached: a run would resolve (fetch) it first"),
    }
    for p in plans {
        let owner = Shard {
            index: shard.of(p.item.index),
            count: shard.count,
        };
        let mine = decided
            .iter()
            .find(|(d, _, _)| d.item.index == p.item.index);
        let (action, reason) = match mine {
            None => ("other shard", None),
            Some((_, Err(_), reason)) => ("error", reason.clone()),
            Some((_, Ok(_), None)) => ("skip", Some("outputs up to date".to_string())),
            Some((_, Ok(_), Some(reason))) => ("run", Some(reason.clone())),
        };
        let mut line = serde_json::json!({
            "item": p.item.index,
            "audio": p.item.audio.display().to_string(),
            "shard": owner.to_string(),
            "outputs": display_all(&p.outputs),
            "action": action,
        });
        if let Some(reason) = reason {
            line["reason"] = reason.into();
        }
        outln!("{line}");
    }
    Ok(0)
}
