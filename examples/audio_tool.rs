//! Development tool for the audio front door (not a test: it prints measurements).
//!
//! ```text
//! cargo run --release --example audio_tool -- decode FILE OUT.f32 [--track N]   16 kHz mono f32le
//! cargo run --release --example audio_tool -- info FILE...                        info + speed
//! cargo run --release --example audio_tool -- mel FILE                            SpooledMel, all
//!                                                       windows read; peak RSS (VmHWM) printed
//! ```
//! "-" reads stdin; `--raw s16le:RATE:CHANNELS` reads raw PCM.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use dattavani_asr::testing::audio::{
    audio_info, AudioStream, MelSource, OpenOptions, RawPcm, SpooledMel,
};

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = OpenOptions::default();
    if let Some(i) = args.iter().position(|a| a == "--track") {
        opts.audio_track = Some(args[i + 1].parse()?);
        args.drain(i..i + 2);
    }
    if let Some(i) = args.iter().position(|a| a == "--raw") {
        let spec: Vec<&str> = args[i + 1].split(':').collect();
        opts.raw = Some(RawPcm {
            encoding: spec[0].parse()?,
            sample_rate: spec[1].parse()?,
            channels: spec[2].parse()?,
        });
        args.drain(i..i + 2);
    }
    match args.first().map(String::as_str) {
        Some("decode") => {
            let mut stream = AudioStream::open(Path::new(&args[1]), &opts)?;
            let mut out = std::io::BufWriter::new(std::fs::File::create(&args[2])?);
            while let Some(chunk) = stream.next_chunk()? {
                for x in chunk {
                    out.write_all(&x.to_le_bytes())?;
                }
            }
            eprintln!("{:?} {} samples", stream.format(), stream.samples_out());
        }
        Some("info") => {
            for f in &args[1..] {
                let t = Instant::now();
                match audio_info(Path::new(f), &opts) {
                    Ok(info) => {
                        let secs = t.elapsed().as_secs_f64();
                        println!("{}", serde_json::to_string(&info)?);
                        println!(
                            "  {:.3} s wall, {:.0}x real time",
                            secs,
                            info.duration_s / secs
                        );
                    }
                    Err(e) => println!("{e}"),
                }
            }
        }
        Some("mel") => {
            let t = Instant::now();
            let mut mel = SpooledMel::open(Path::new(&args[1]), &opts, 80)?;
            let pass1 = t.elapsed().as_secs_f64();
            let frames = mel.content_frames();
            let mut start = 0;
            let mut checksum = 0f64;
            while start < frames {
                let w = mel.window(start)?;
                checksum += w.iter().map(|&x| x as f64).sum::<f64>();
                start += 3000;
            }
            println!(
                "{}: {:.1} s audio, {} frames, pass 1 {:.1} s, total {:.1} s, checksum {:.3}, peak RSS {:.1} MB",
                args[1],
                mel.duration(),
                frames,
                pass1,
                t.elapsed().as_secs_f64(),
                checksum,
                peak_rss_mb()
            );
        }
        _ => eprintln!("usage: audio_tool decode|info|mel FILE ..."),
    }
    Ok(())
}
