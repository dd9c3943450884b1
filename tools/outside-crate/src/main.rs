//! Transcribes a file with a local model directory in a thread this program spawns, using only
//! `dattavani_asr`'s root re-exports.

use dattavani_asr::{Device, Hooks, TranscribeOptions, Transcriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_dir, audio] = args.as_slice() else {
        return Err("usage: outside-crate MODEL_DIR AUDIO".into());
    };
    let mut options = TranscribeOptions::default();
    options.decode.beam_size = Some(1);
    let transcriber = Transcriber::builder()
        .model(model_dir)
        .device(Device::Cpu)
        .options(options)
        .build()?;
    let audio = audio.clone();
    let text = std::thread::spawn(move || -> Result<String, dattavani_asr::Error> {
        let mut transcriber = transcriber;
        let hooks = Hooks::default().on_segment(|s| eprintln!("[{:.2} -> {:.2}]{}", s.start, s.end, s.text));
        Ok(transcriber.transcribe_file_with(&audio, hooks)?.text)
    })
    .join()
    .map_err(|_| "the transcription thread panicked")??;
    println!("{}", text.trim());
    Ok(())
}
