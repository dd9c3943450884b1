//! Compressed audio and every container but plain WAV, through symphonia; Opus packets through
//! libopus ([`super::opus`]), since symphonia has no Opus decoder.

use std::panic::{catch_unwind, AssertUnwindSafe};

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{
    CodecType, Decoder, DecoderOptions, CODEC_TYPE_NULL, CODEC_TYPE_OPUS,
};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::{Hint, Probe};
use symphonia::default::formats;

use super::opus::{OpusDecoder, OpusHead, OPUS_RATE};
use super::sniff::Container;
use super::stream::{FrameSource, SourceFormat};

/// Damaged packets in a row after which we stop decoding (and keep what was decoded): a bound
/// so that a file of garbage after a valid header cannot spin for long.
const MAX_CONSECUTIVE_ERRORS: usize = 32;

enum TrackDecoder {
    Symphonia(Box<dyn Decoder>, Option<SampleBuffer<f32>>),
    /// libopus, with the pre-skip samples still to drop from the start. Symphonia trims neither
    /// Ogg's nor Matroska's Opus pre-skip (its Ogg gapless logic reads Vorbis-style granules), so
    /// we do, in both; the end padding is trimmed through `trim_end` where the demuxer knows it
    /// (a seekable Ogg file).
    Opus(OpusDecoder, usize),
}

pub(crate) struct SymphoniaSource {
    reader: Box<dyn FormatReader>,
    track_id: u32,
    decoder: TrackDecoder,
    format: SourceFormat,
    damage: Option<String>,
    errors_in_row: usize,
    frames_out: u64,
    done: bool,
}

thread_local! {
    /// Set while this thread runs symphonia code under `contained`.
    static IN_DEMUXER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run symphonia code, turning a panic inside it into `None`. Symphonia 0.5 asserts (`expect`)
/// on some malformed input, e.g. a damaged Matroska EBML header; a damaged file must give an
/// error, not end the process. The panic hook installed once here stays silent for those
/// panics only and hands every other panic to the hook that was there before.
fn contained<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_DEMUXER.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
    IN_DEMUXER.with(|c| c.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_DEMUXER.with(|c| c.set(false));
    if result.is_err() {
        tracing::debug!("symphonia panicked on malformed input (contained)");
    }
    result.ok()
}

/// A readable name for a codec id, for `info` and for "unsupported codec" errors.
/// A probe that knows only the demuxer of the container sniffed (and no metadata reader).
/// symphonia's default probe scans up to 1 MiB for the marker of any format it knows and reads
/// every ID3v2 tag it meets on the way: a file sniffed as one container (an ID3v2 tag, then a
/// FLAC) could be opened as another, past that one's structure check, and ID3v2 frames are
/// allocated at their claimed size (up to 4 GiB). Leading ID3v2 tags are skipped before
/// (`id3_guard`), and what follows them is sniffed again.
fn probe_for(container: Container) -> Probe {
    let mut probe = Probe::default();
    match container {
        Container::Wav => probe.register_all::<formats::WavReader>(),
        Container::Aiff => probe.register_all::<formats::AiffReader>(),
        Container::Caf => probe.register_all::<formats::CafReader>(),
        Container::Flac => probe.register_all::<formats::FlacReader>(),
        Container::Ogg => probe.register_all::<formats::OggReader>(),
        Container::Matroska => probe.register_all::<formats::MkvReader>(),
        Container::Mp4 => probe.register_all::<formats::IsoMp4Reader>(),
        Container::Mpeg => probe.register_all::<formats::MpaReader>(),
        Container::Adts => probe.register_all::<formats::AdtsReader>(),
    }
    probe
}

fn codec_name(codec: CodecType) -> String {
    use symphonia::core::codecs as c;
    let known = [
        (CODEC_TYPE_OPUS, "Opus"),
        (c::CODEC_TYPE_AC4, "AC-4"),
        (c::CODEC_TYPE_EAC3, "E-AC-3 (Dolby Digital Plus)"),
        (c::CODEC_TYPE_DCA, "DTS"),
        (c::CODEC_TYPE_WAVPACK, "WavPack"),
        (c::CODEC_TYPE_MP1, "MPEG Layer 1"),
        (c::CODEC_TYPE_MP2, "MPEG Layer 2"),
        (c::CODEC_TYPE_SPEEX, "Speex"),
        (c::CODEC_TYPE_MUSEPACK, "Musepack"),
        (c::CODEC_TYPE_TTA, "TTA"),
        (c::CODEC_TYPE_ATRAC3, "ATRAC3"),
        (c::CODEC_TYPE_WMA, "Windows Media Audio"),
    ];
    if let Some((_, name)) = known.iter().find(|(k, _)| *k == codec) {
        return (*name).into();
    }
    match symphonia::default::get_codecs().get_codec(codec) {
        Some(d) => d.long_name.to_string(),
        None => format!("codec id {codec}"),
    }
}

impl SymphoniaSource {
    /// Probe `mss` (whose first bytes were sniffed as `container`) and set up the decoder for
    /// audio track `track` (0-based among the audio tracks; None: the first).
    pub(crate) fn open(
        mss: MediaSourceStream,
        container: Container,
        track: Option<usize>,
    ) -> Result<Self, String> {
        let mut hint = Hint::new();
        hint.with_extension(container.extension());
        let fmt_opts = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        // Symphonia asserts on some malformed headers (e.g. a damaged Matroska EBML header):
        // contain that as an error rather than let it take the process down.
        let probed = contained(|| {
            probe_for(container).format(&hint, mss, &fmt_opts, &MetadataOptions::default())
        })
        .ok_or_else(|| {
            format!(
                "malformed {} header (the demuxer gave up)",
                container.name()
            )
        })?
        .map_err(|e| match e {
            SymError::Unsupported(_) => format!(
                "unsupported or malformed {} container ({e})",
                container.name()
            ),
            // A structure check's refusal (see flac_guard, ogg_guard, ebml_guard): its message.
            SymError::IoError(e) if e.kind() == std::io::ErrorKind::InvalidData => e.to_string(),
            SymError::IoError(_) => format!(
                "truncated or malformed {}: the stream ends inside its header",
                container.name()
            ),
            _ => format!("malformed {}: {e}", container.name()),
        })?;
        let reader = probed.format;
        let tracks = reader.tracks();
        let audio: Vec<_> = tracks
            .iter()
            .filter(|t| {
                t.codec_params.codec != CODEC_TYPE_NULL
                    && (t.codec_params.sample_rate.is_some()
                        || t.codec_params.codec == CODEC_TYPE_OPUS)
            })
            .collect();
        if audio.is_empty() {
            if let Some(t) = tracks.iter().find(|t| t.codec_params.sample_rate.is_some()) {
                let codec = t.codec_params.codec;
                return Err(if codec == CODEC_TYPE_NULL {
                    format!(
                        "unsupported codec (the {}'s audio track is in a codec its demuxer \
                         does not know)",
                        container.name()
                    )
                } else {
                    format!("unsupported codec {}", codec_name(codec))
                });
            }
            return Err(format!(
                "no audio track (the {} holds {} track(s), none of them audio we can decode)",
                container.name(),
                tracks.len()
            ));
        }
        let chosen = match track {
            None => audio[0],
            Some(i) => *audio.get(i).ok_or_else(|| {
                format!(
                    "audio track {i} does not exist (the file has {} audio track(s), numbered from 0)",
                    audio.len()
                )
            })?,
        };
        let params = chosen.codec_params.clone();
        let track_id = chosen.id;
        let (decoder, rate, channels) = if params.codec == CODEC_TYPE_OPUS {
            let extra = params
                .extra_data
                .as_deref()
                .ok_or("Opus track without its OpusHead header")?;
            let head = OpusHead::parse(extra)?;
            let dec = OpusDecoder::new(&head)?;
            let skip = head.pre_skip as usize;
            (
                TrackDecoder::Opus(dec, skip),
                OPUS_RATE,
                head.channels as u16,
            )
        } else {
            let codecs = symphonia::default::get_codecs();
            if codecs.get_codec(params.codec).is_none() {
                return Err(format!("unsupported codec {}", codec_name(params.codec)));
            }
            // A decoder reads its headers (Vorbis: the setup header) when made, and may
            // panic on a damaged one, as the demuxers may.
            let dec = contained(|| codecs.make(&params, &DecoderOptions::default()))
                .ok_or_else(|| format!("damaged {} headers", codec_name(params.codec)))?
                .map_err(|e| {
                    format!("cannot read its {} headers: {e}", codec_name(params.codec))
                })?;
            let rate = params
                .sample_rate
                .ok_or("audio track without a sample rate")?;
            let channels = params.channels.map(|c| c.count() as u16).unwrap_or(0);
            (TrackDecoder::Symphonia(dec, None), rate, channels)
        };
        if !(1_000..=1_536_000).contains(&rate) {
            return Err(format!("unsupported sample rate {rate} Hz"));
        }
        let total_frames = if params.codec == CODEC_TYPE_OPUS {
            None
        } else {
            params.n_frames
        };
        let format = SourceFormat {
            container: container.name().into(),
            codec: codec_name(params.codec),
            sample_rate: rate,
            channels,
            bits_per_sample: if params.codec == CODEC_TYPE_OPUS {
                None
            } else {
                params.bits_per_sample
            },
            total_frames,
        };
        Ok(SymphoniaSource {
            reader,
            track_id,
            decoder,
            format,
            damage: None,
            errors_in_row: 0,
            frames_out: 0,
            done: false,
        })
    }

    fn stop(&mut self, why: String) {
        self.done = true;
        if self.damage.is_none() {
            self.damage = Some(why);
        }
    }
}

impl FrameSource for SymphoniaSource {
    fn format(&self) -> &SourceFormat {
        &self.format
    }

    fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    fn next_block(&mut self, out: &mut Vec<f32>) -> Result<bool, String> {
        out.clear();
        while !self.done {
            let next = contained(|| self.reader.next_packet());
            let Some(next) = next else {
                self.stop("damaged container (the demuxer gave up); using what is readable".into());
                break;
            };
            let packet = match next {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.done = true;
                    if let Some(total) = self.format.total_frames {
                        // Allow for codec padding and priming: only a clear shortfall is damage.
                        if self.frames_out + (total / 100).max(4096) < total {
                            self.damage = Some(format!(
                                "truncated: decoded {} of the {} frames its header declares; \
                                 using what is readable",
                                self.frames_out, total
                            ));
                        }
                    }
                    break;
                }
                Err(SymError::ResetRequired) => {
                    self.stop("the stream changes format midway; decoding stopped there".into());
                    break;
                }
                Err(e) => {
                    self.stop(format!("damaged container ({e}); using what is readable"));
                    break;
                }
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            let channels_hint = self.format.channels as usize;
            let decoded = match &mut self.decoder {
                TrackDecoder::Opus(dec, skip) => {
                    let ch = dec.channels();
                    match dec.decode(&packet.data) {
                        Ok(pcm) => {
                            let frames = pcm.len() / ch;
                            let start = (packet.trim_start as usize + *skip).min(frames);
                            *skip -= (*skip).min(frames);
                            let end = frames.saturating_sub(packet.trim_end as usize).max(start);
                            out.extend_from_slice(&pcm[start * ch..end * ch]);
                            Ok(())
                        }
                        Err(e) => Err((false, e)),
                    }
                }
                TrackDecoder::Symphonia(dec, buf) => match contained(|| {
                    dec.decode(&packet).map(|a| {
                        let spec = *a.spec();
                        let need = a.capacity();
                        if buf.as_ref().is_none_or(|b| b.capacity() < need) {
                            *buf = Some(SampleBuffer::new(need as u64, spec));
                        }
                        let b = buf.as_mut().expect("allocated above");
                        b.copy_interleaved_ref(a);
                        spec.channels.count()
                    })
                })
                .unwrap_or(Err(SymError::DecodeError("decoder gave up on a packet")))
                {
                    Ok(count) => {
                        let b = buf.as_ref().expect("filled by the decode above");
                        if count != channels_hint && channels_hint != 0 {
                            Err((
                                true,
                                format!("channel count changed from {channels_hint} to {}", count),
                            ))
                        } else {
                            if channels_hint == 0 {
                                self.format.channels = count as u16;
                            }
                            out.extend_from_slice(b.samples());
                            Ok(())
                        }
                    }
                    Err(SymError::DecodeError(e)) => Err((false, format!("damaged packet: {e}"))),
                    Err(SymError::IoError(e)) => Err((false, format!("damaged packet: {e}"))),
                    Err(e) => Err((true, format!("decoding stopped: {e}"))),
                },
            };
            match decoded {
                Ok(()) => {
                    self.errors_in_row = 0;
                    if !out.is_empty() {
                        let ch = self.format.channels.max(1) as usize;
                        // Non-finite samples would poison the mel's global max: silence them.
                        for x in out.iter_mut() {
                            if !x.is_finite() {
                                *x = 0.0;
                            }
                        }
                        self.frames_out += (out.len() / ch) as u64;
                        return Ok(true);
                    }
                }
                Err((true, e)) => {
                    self.stop(e);
                    break;
                }
                Err((false, e)) => {
                    self.errors_in_row += 1;
                    if self.damage.is_none() {
                        self.damage = Some(format!("{e}; skipped"));
                    }
                    if self.errors_in_row >= MAX_CONSECUTIVE_ERRORS {
                        self.stop(format!(
                            "{MAX_CONSECUTIVE_ERRORS} damaged packets in a row; decoding stopped"
                        ));
                        self.done = true;
                    }
                }
            }
        }
        Ok(false)
    }
}
