//! `serve`: the OpenAI-compatible HTTP server (`dattavani_asr::server`) on a tokio runtime,
//! until SIGTERM or SIGINT.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, ValueEnum};
use dattavani_asr::server::{self, ServerConfig};
use dattavani_asr::{Device, Error, Result};

use super::stdout::outln;

/// `--device` of `serve` (one worker each).
#[derive(Clone, Copy, ValueEnum)]
enum ServeDevice {
    Auto,
    Cpu,
    Gpu,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// A model to serve (repeatable); the first is the default, and what `whisper-1` means.
    #[arg(long = "model", default_value = dattavani_asr::DEFAULT_MODEL)]
    models: Vec<String>,
    /// A device to run a worker on (repeatable, e.g. `--device cpu --device gpu`).
    #[arg(long = "device", value_enum, default_values_t = [ServeDevice::Cpu])]
    devices: Vec<ServeDevice>,
    /// Require `Authorization: Bearer KEY` on the API routes (also from DATTAVANI_API_KEY).
    #[arg(long, env = "DATTAVANI_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body, in MiB (413 past it).
    #[arg(long, default_value_t = 25)]
    max_upload_mb: u64,
    /// Requests that may wait beyond those in progress (429 with Retry-After past it).
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Windows of different requests decoded together per step on one device.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Cancel a request that has not finished after this many seconds (504).
    #[arg(long)]
    request_timeout: Option<u64>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    shutdown_grace: u64,
    /// Most models held per device, the `--model` ones included (default: one more than
    /// them): a request may name any other model of the local cache, which is then loaded on
    /// demand, the least recently used evicted. Equal to the `--model` count: off.
    #[arg(long)]
    max_models: Option<usize>,
    #[command(flatten)]
    live: super::serve_live::LiveArgs,
}

pub fn serve_command(args: ServeArgs) -> Result<i32> {
    if args.max_batch == 0 {
        return Err(Error::Usage("--max-batch must be at least 1".into()));
    }
    let mut config = ServerConfig::new(args.models);
    config.devices = args
        .devices
        .iter()
        .map(|d| match d {
            ServeDevice::Auto => Device::Auto,
            ServeDevice::Cpu => Device::Cpu,
            ServeDevice::Gpu => Device::Gpu,
        })
        .collect();
    config.api_key = args.api_key.filter(|k| !k.is_empty());
    config.max_upload_bytes = args.max_upload_mb.saturating_mul(1024 * 1024);
    config.max_queue = args.max_queue;
    config.max_batch = args.max_batch;
    config.request_timeout = args.request_timeout.map(Duration::from_secs);
    config.shutdown_grace = Duration::from_secs(args.shutdown_grace);
    if let Some(max) = args.max_models {
        if max < config.models.len() {
            return Err(Error::Usage(format!(
                "--max-models {max} is fewer than the {} --model given",
                config.models.len()
            )));
        }
        config.max_models = max;
    }
    args.live.apply(&mut config)?;
    let addr = SocketAddr::new(args.host, args.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("tokio runtime: {e}")))?;
    runtime.block_on(server::serve(
        config,
        addr,
        |bound| {
            tracing::info!("listening on http://{bound}");
            // The bound address on stdout, for scripts that start on port 0.
            outln!("listening on http://{bound}");
        },
        server::shutdown_signal(),
    ))?;
    tracing::info!("stopped");
    Ok(0)
}
