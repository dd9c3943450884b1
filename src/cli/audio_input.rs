//! The audio input flags `transcribe` shares with `info`: raw PCM and the audio track. The
//! container itself is always sniffed from the first bytes; these only say what a header would.

use dattavani_asr::audio_io::{OpenOptions, RawEncoding, RawPcm};
use dattavani_asr::{Error, Result};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct AudioInputArgs {
    /// Read the input as headerless PCM of this encoding (what `arecord -f S16_LE -t raw` and
    /// `ffmpeg -f s16le -` write); needs --input-rate (--input-channels defaults to 1).
    #[arg(long, value_name = "s16le|f32le", value_parser = parse_encoding)]
    input_format: Option<RawEncoding>,
    /// Sample rate of raw PCM input, Hz (with --input-format).
    #[arg(long, value_name = "HZ", requires = "input_format")]
    input_rate: Option<u32>,
    /// Interleaved channels of raw PCM input (with --input-format); they are averaged.
    #[arg(long, value_name = "N", requires = "input_format")]
    input_channels: Option<u16>,
    /// Which audio track of a multi-track file (video, MKV with several languages), counted
    /// from 0 among the audio tracks; default: the first.
    #[arg(long, value_name = "N")]
    audio_track: Option<usize>,
}

fn parse_encoding(s: &str) -> std::result::Result<RawEncoding, String> {
    s.parse()
}

impl AudioInputArgs {
    /// The decoder's options for every input of the command.
    pub fn open_options(&self) -> Result<OpenOptions> {
        let raw = match self.input_format {
            None => None,
            Some(encoding) => {
                let sample_rate = self.input_rate.ok_or_else(|| {
                    Error::Usage(
                        "--input-format needs --input-rate (raw PCM has no header to say it)"
                            .into(),
                    )
                })?;
                Some(RawPcm {
                    encoding,
                    sample_rate,
                    channels: self.input_channels.unwrap_or(1),
                })
            }
        };
        Ok(OpenOptions {
            raw,
            audio_track: self.audio_track,
        })
    }
}
