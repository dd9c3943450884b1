//! openai-whisper's subtitle layout flags for `transcribe` (srt and vtt; they need word
//! timestamps, as there).

use dattavani_asr::writers::SubtitleOptions;
use dattavani_asr::{Error, Result};

#[derive(clap::Args)]
pub struct SubtitleArgs {
    /// srt/vtt: characters in a line before it breaks (needs --word-timestamps).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_line_width: Option<u32>,
    /// srt/vtt: lines in a cue, with --max-line-width (needs --word-timestamps).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_line_count: Option<u32>,
    /// srt/vtt: underline each word while it is spoken (needs --word-timestamps).
    #[arg(long)]
    highlight_words: bool,
}

impl SubtitleArgs {
    /// The writers' options; each flag without `--word-timestamps` is a usage error, as in
    /// openai-whisper.
    pub fn options(&self, word_timestamps: bool) -> Result<SubtitleOptions> {
        let opts = SubtitleOptions {
            max_line_width: self.max_line_width.map(|n| n as usize),
            max_line_count: self.max_line_count.map(|n| n as usize),
            highlight_words: self.highlight_words,
        };
        if opts.uses_words() && !word_timestamps {
            let flag = if opts.max_line_width.is_some() {
                "--max-line-width"
            } else if opts.max_line_count.is_some() {
                "--max-line-count"
            } else {
                "--highlight-words"
            };
            return Err(Error::Usage(format!("{flag} needs --word-timestamps")));
        }
        if opts.max_line_count.is_some() && opts.max_line_width.is_none() {
            tracing::warn!("--max-line-count has no effect without --max-line-width");
        }
        Ok(opts)
    }
}
