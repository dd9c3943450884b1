//! Transcribe an audio file with the library API, printing each segment as soon as it is final.
//!
//! `cargo run --release --example transcribe -- samples/jfk.wav [MODEL]` (MODEL: an alias such
//! as tiny.en, a Hugging Face repo id, or a model directory; default tiny.en). Ctrl-C is not
//! handled here; [`dattavani_asr::CancelHandle`] is how another thread would stop the work.

use dattavani_asr::{Device, Hooks, Transcriber};

fn main() -> Result<(), dattavani_asr::Error> {
    let mut args = std::env::args().skip(1);
    let file = args.next().unwrap_or_else(|| "samples/jfk.wav".to_string());
    let model = args.next().unwrap_or_else(|| "tiny.en".to_string());

    let mut transcriber = Transcriber::builder()
        .model(model)
        .device(Device::Auto)
        .build()?;
    let hooks = Hooks::default().on_segment(|s| {
        println!("[{:7.2} -> {:7.2}] {}", s.start, s.end, s.text.trim());
    });
    let transcript = transcriber.transcribe_file_with(&file, hooks)?;
    eprintln!(
        "{file}: {:.1} s of {} audio, {} segment(s)",
        transcript.duration,
        transcript.language,
        transcript.segments.len()
    );
    Ok(())
}
