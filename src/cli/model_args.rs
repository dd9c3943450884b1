//! The flags that choose and load a model (model, device, adapter, threads, weights, language),
//! as one flattened clap struct with `transcribe`'s names and help, for the commands that load
//! one model (`stream`; the others may adopt it).

use clap::ValueEnum;

use dattavani_asr::{Device, Error, Result, Transcriber, TranscriberBuilder, DEFAULT_MODEL};

use super::DtypeArg;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Gpu,
}

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Model: alias (tiny, tiny.en, base, ..., large-v3-turbo), Hugging Face repo id, or directory.
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Compute device: auto takes a hardware GPU if there is one, else the CPU; gpu takes any
    /// adapter, a software one (lavapipe / llvmpipe) included.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// GPU adapter: an index or part of a name from `dattavani-asr devices` (implies the GPU).
    #[arg(long, value_name = "N|NAME")]
    pub adapter: Option<String>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, help = super::DTYPE_HELP)]
    pub dtype: Option<DtypeArg>,
    /// Spoken language (code such as en, de, fr, or name such as English), or `auto` to detect it
    /// (multilingual models).
    #[arg(long, default_value = "auto")]
    pub language: String,
}

impl ModelArgs {
    /// The language code asked for; None: detect (multilingual models).
    pub fn language(&self) -> Result<Option<String>> {
        super::checks::language_code(&self.language)
    }

    /// A builder with the model, device, adapter and threads (the caller adds the options,
    /// whose `weights_dtype` comes from [`dtype`](Self::dtype)).
    pub fn builder(&self) -> Result<TranscriberBuilder> {
        if self.threads == Some(0) {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        let device = match self.device {
            DeviceArg::Auto => Device::Auto,
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Gpu => Device::Gpu,
        };
        let mut builder = Transcriber::builder().model(&self.model).device(device);
        if let Some(adapter) = &self.adapter {
            builder = builder.adapter(adapter);
        }
        if let Some(n) = self.threads {
            builder = builder.threads(n);
        }
        Ok(builder)
    }

    /// `--dtype` as the library's weights storage (None: the backend's default).
    pub fn dtype(&self) -> Option<dattavani_asr::Dtype> {
        self.dtype.map(DtypeArg::dtype)
    }
}
