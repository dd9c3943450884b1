//! `transcribe --vad`: Silero VAD before transcription, with faster-whisper's option names and
//! defaults. One flattened clap struct, so the transcribe flags stay one block.

use dattavani_asr::vad::{self, VadModel, VadOptions, VadPath, VadTranscript};
use dattavani_asr::{Error, Hooks, Result, Transcriber};

#[derive(clap::Args, Debug, Clone, Default, serde::Serialize)]
pub struct VadArgs {
    /// Skip non-speech with Silero VAD (v6, run natively) before transcribing; times stay in the
    /// original timeline. With --batch-size N > 1 or --without-timestamps the speech is packed
    /// into spans of at most 30 s decoded independently, N at a time. The weights come from
    /// `models pull silero-vad` (fetched on first use when online).
    #[arg(long)]
    vad: bool,
    /// Windows with a speech probability at or above this are speech [default: 0.5].
    #[arg(long, value_name = "P")]
    vad_threshold: Option<f32>,
    /// While in speech, windows below this are silence [default: threshold - 0.15, at least
    /// 0.01].
    #[arg(long, value_name = "P")]
    vad_neg_threshold: Option<f32>,
    /// Speech segments this short or shorter are dropped [default: 0].
    #[arg(long, value_name = "MS")]
    vad_min_speech_duration_ms: Option<u32>,
    /// Silence must last this long to end a speech segment [default: 2000; 160 in batched
    /// mode when no --vad-* option is given, as faster-whisper's batched pipeline].
    #[arg(long, value_name = "MS")]
    vad_min_silence_duration_ms: Option<u32>,
    /// Each speech segment is widened by this much on both sides [default: 400].
    #[arg(long, value_name = "MS")]
    vad_speech_pad_ms: Option<u32>,
    /// Longer speech is split [default: no limit; always 30 in batched mode].
    #[arg(long, value_name = "S")]
    vad_max_speech_duration_s: Option<f32>,
}

impl VadArgs {
    fn any_option(&self) -> bool {
        self.vad_threshold.is_some()
            || self.vad_neg_threshold.is_some()
            || self.vad_min_speech_duration_ms.is_some()
            || self.vad_min_silence_duration_ms.is_some()
            || self.vad_speech_pad_ms.is_some()
            || self.vad_max_speech_duration_s.is_some()
    }

    /// The VAD options: faster-whisper's defaults (in batched mode, with no `--vad-*` option,
    /// its batched pipeline's), with the options given applied.
    pub fn options(&self, batched: bool) -> Result<VadOptions> {
        let mut o = if batched && !self.any_option() {
            VadOptions::batched(vad::CHUNK_LENGTH_S)
        } else {
            VadOptions::default()
        };
        let probability = |flag: &str, p: f32| {
            if (0.0..=1.0).contains(&p) {
                Ok(p)
            } else {
                Err(Error::Usage(format!(
                    "{flag} must be between 0 and 1, not {p}"
                )))
            }
        };
        if let Some(p) = self.vad_threshold {
            o.threshold = probability("--vad-threshold", p)?;
        }
        if let Some(p) = self.vad_neg_threshold {
            o.neg_threshold = Some(probability("--vad-neg-threshold", p)?);
        }
        if let Some(ms) = self.vad_min_speech_duration_ms {
            o.min_speech_duration_ms = ms;
        }
        if let Some(ms) = self.vad_min_silence_duration_ms {
            o.min_silence_duration_ms = ms;
        }
        if let Some(ms) = self.vad_speech_pad_ms {
            o.speech_pad_ms = ms;
        }
        if let Some(s) = self.vad_max_speech_duration_s {
            if s.is_nan() || s <= 0.0 {
                return Err(Error::Usage(format!(
                    "--vad-max-speech-duration-s must be above 0, not {s}"
                )));
            }
            o.max_speech_duration_s = s;
        }
        Ok(o)
    }

    /// Check the flags before any model loads; the VAD model when `--vad` is on.
    pub fn load(&self) -> Result<Option<VadModel>> {
        if !self.vad {
            if self.any_option() {
                return Err(Error::Usage("the --vad-* options need --vad".into()));
            }
            return Ok(None);
        }
        self.options(false)?;
        VadModel::load().map(Some)
    }
}

/// Transcribe one clip's speech (16 kHz mono samples), by the path the transcription options
/// call for ([`VadPath::for_options`]).
pub fn transcribe_samples(
    transcriber: &mut Transcriber,
    samples: &[f32],
    model: &VadModel,
    args: &VadArgs,
    hooks: Hooks<'_>,
) -> Result<VadTranscript> {
    let path = VadPath::for_options(transcriber.options());
    let options = args.options(path == VadPath::Batched)?;
    vad::transcribe_speech(transcriber, samples, model, &options, path, hooks)
}

/// The json writer's object with a `vad` member added: `removed_duration` (seconds of audio
/// not transcribed) and `speech_duration` (seconds transcribed), next to `duration`.
pub fn json_with_vad(rendered: &str, removed_duration: f64, duration: f64) -> String {
    let removed = removed_duration.max(0.0);
    let vad = format!(
        "\"vad\":{{\"removed_duration\":{},\"speech_duration\":{}}}",
        round_ms(removed),
        round_ms((duration - removed).max(0.0))
    );
    // The writer renders one JSON object (a JSON line on stdout with several files): add the
    // member before its closing brace, keeping what follows it.
    let object = rendered.trim_end();
    let tail = &rendered[object.len()..];
    match object.strip_suffix('}') {
        Some(body) if body.trim_end().ends_with('{') => format!("{body}{vad}}}{tail}"),
        Some(body) => format!("{body},{vad}}}{tail}"),
        None => rendered.to_string(),
    }
}

fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}
