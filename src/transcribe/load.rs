//! Loading a model for transcription: [`TranscriberBuilder`] resolves the model, builds the
//! thread pool, and puts the weights on the chosen device.

use std::time::Instant;

use super::options::{Device, Dtype, Timings, TranscribeOptions};
use super::Transcriber;
use crate::backend::cpu::{model::CpuWeights, ops, CpuModel};
#[cfg(feature = "gpu")]
use crate::backend::gpu::{AdapterSelector, GpuContext, GpuModel, KernelConfig, WeightType};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::weights::Weights;
use crate::model::ModelFiles;
use crate::tokenizer::{is_multilingual, WhisperTokenizer};

/// Builds a [`Transcriber`]: `Transcriber::builder().model("tiny.en").build()?`.
#[derive(Debug, Clone)]
pub struct TranscriberBuilder {
    model: String,
    files: Option<ModelFiles>,
    device: Device,
    adapter: Option<String>,
    threads: Option<usize>,
    options: TranscribeOptions,
}

impl Default for TranscriberBuilder {
    fn default() -> Self {
        TranscriberBuilder {
            model: crate::model::DEFAULT_MODEL.to_string(),
            files: None,
            device: Device::Auto,
            adapter: None,
            threads: None,
            options: TranscribeOptions::default(),
        }
    }
}

impl TranscriberBuilder {
    /// The model: a directory holding `config.json`, `model.safetensors` and
    /// `tokenizer.json`; with the `hub` feature also an alias (`tiny`, `tiny.en`, `base`, ...,
    /// `large-v3-turbo`) or a Hugging Face repo id, found in the cache or downloaded.
    /// Default: `tiny.en`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self.files = None;
        self
    }

    /// Already resolved model files (tests, callers with their own cache).
    #[doc(hidden)]
    pub fn model_files(mut self, files: ModelFiles) -> Self {
        self.model = files.name.clone();
        self.files = Some(files);
        self
    }

    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The GPU adapter: an index or part of a name, as `dattavani-asr devices` lists them.
    /// Implies the GPU with `Device::Auto`; an error with `Device::Cpu`.
    pub fn adapter(mut self, adapter: impl Into<String>) -> Self {
        self.adapter = Some(adapter.into());
        self
    }

    /// How the matrix weights are stored (default [`Dtype::Auto`]: int8 on a CPU with AVX-512
    /// VNNI, int8-bf16v with AVX-512 BF16 too, f32 on other CPUs, f16 on a GPU; [`Dtype::F32`]
    /// is the reference).
    pub fn dtype(mut self, dtype: Dtype) -> Self {
        self.options.weights_dtype = Some(dtype);
        self
    }

    /// CPU threads of this transcriber's own pool (default: rayon's global pool, one thread
    /// per core).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// The transcription options (default: OpenAI's CLI defaults). Its `weights_dtype` is
    /// replaced by [`dtype`](Self::dtype) when that is given after it.
    pub fn options(mut self, options: TranscribeOptions) -> Self {
        let dtype = self.options.weights_dtype;
        self.options = options;
        self.options.weights_dtype = self.options.weights_dtype.or(dtype);
        self
    }

    /// Resolve the model and load it.
    pub fn build(self) -> Result<Transcriber> {
        self.options.validate()?;
        let pool = match self.threads {
            Some(0) => return Err(Error::Usage("threads must be at least 1".into())),
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| Error::Internal(format!("thread pool: {e}")))?,
            ),
            None => None,
        };
        let files = match self.files {
            Some(files) => files,
            None => resolve(&self.model)?,
        };
        let load = || load(&files, self.device, self.adapter.as_deref(), self.options);
        let mut t = match &pool {
            Some(pool) => pool.install(load)?,
            None => load()?,
        };
        t.pool = pool;
        Ok(t)
    }
}

/// A model name to its files: the hub's resolution (aliases, cache, download, offline import).
#[cfg(feature = "hub")]
fn resolve(model: &str) -> Result<ModelFiles> {
    crate::model::hub::resolve(model)
}

/// Without the `hub` feature, a model is a directory.
#[cfg(not(feature = "hub"))]
fn resolve(model: &str) -> Result<ModelFiles> {
    let dir = std::path::Path::new(model);
    if dir.join("config.json").is_file() {
        Ok(ModelFiles::new(model, dir))
    } else {
        Err(Error::resolve(
            model,
            "not a model directory (config.json, model.safetensors, tokenizer.json); names \
             and repo ids need the `hub` feature",
        ))
    }
}

/// Why `Device::Auto` fell back to the CPU, for its one log line.
#[cfg(feature = "gpu")]
fn auto_reason(e: &Error) -> String {
    let m = match e {
        Error::Device(m) => m.clone(),
        other => other.to_string(),
    };
    if m.starts_with("no hardware GPU adapter") {
        format!("{m}; software adapters run only with --device gpu")
    } else {
        m
    }
}

/// Load `files` on `device`. `adapter` (an index into `dattavani-asr devices` or part of a
/// name) picks the GPU adapter and implies the GPU; without it, `Gpu` takes the best adapter,
/// software ones included, and `Auto` a hardware adapter if there is one, else the CPU.
/// A damaged config.json or tokenizer.json of a cached checkpoint says how to repair it, as the
/// weights' damage errors do; a directory the user gave is theirs to fix.
fn with_repair_hint(e: Error, files: &ModelFiles) -> Error {
    if files.lock.is_none() {
        return e;
    }
    let hint = format!(
        "repair with `dattavani-asr models pull {} --force`",
        files.name
    );
    match e {
        Error::Model { path, msg } => Error::Model {
            path,
            msg: format!("{msg}; {hint}"),
        },
        Error::Tokenizer { path, msg } => Error::Tokenizer {
            path,
            msg: format!("{msg}; {hint}"),
        },
        other => other,
    }
}

pub(crate) fn load(
    files: &ModelFiles,
    device: Device,
    adapter: Option<&str>,
    options: TranscribeOptions,
) -> Result<Transcriber> {
    let t0 = Instant::now();
    let config = ModelConfig::from_dir(&files.dir).map_err(|e| with_repair_hint(e, files))?;
    // Fail on a bad language/task request before the weights, not at the first window.
    let (language, task) = (options.decode.language.as_deref(), options.decode.task);
    crate::tokenizer::check_request(is_multilingual(config.dims.n_vocab), language, task)?;
    // The tokenizer (tens of ms of JSON) is read on a thread of its own beside the weights;
    // its errors still come first, as when it was read before them.
    let (tokenizer, backend) = std::thread::scope(|s| {
        let tokenizer = s.spawn(|| {
            let tokenizer = WhisperTokenizer::from_file(&files.tokenizer(), config.dims.n_vocab)
                .map_err(|e| with_repair_hint(e, files))?;
            tokenizer.sot_sequence(language, task)?;
            Ok::<_, Error>(tokenizer)
        });
        let backend = load_backend(files, &config, device, adapter, options.weights_dtype);
        let tokenizer = tokenizer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok::<_, Error>((tokenizer, backend?))
    })?;
    tracing::info!(
        "model {} loaded on {} in {:.0} ms",
        files.name,
        backend.device_name(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    Ok(Transcriber {
        backend,
        tokenizer,
        config,
        options,
        timings: Timings::default(),
        pool: None,
        _model_lock: files.lock.clone(),
    })
}

/// The model's weights on `device` (and `adapter`), stored as `dtype` asks.
fn load_backend(
    files: &ModelFiles,
    config: &ModelConfig,
    device: Device,
    adapter: Option<&str>,
    dtype: Option<Dtype>,
) -> Result<Box<dyn Backend + Send>> {
    let weights = Weights::open(&files.weights())?;
    // The GPU stores f16 unless f32 or int8 is asked for; the CPU holds f32 or int8.
    #[cfg(feature = "gpu")]
    let load_gpu = |ctx: GpuContext| {
        let mut kc = KernelConfig::for_adapter(&ctx);
        match dtype {
            Some(Dtype::F32) => kc.weights = WeightType::F32,
            Some(Dtype::Int8 | Dtype::Int8Bf16 | Dtype::Int8Bf16x3 | Dtype::Int8Bf16V) => {
                kc.weights = WeightType::Int8
            }
            Some(Dtype::F16) | Some(Dtype::Auto) | None => {}
        }
        GpuModel::load_with_config(ctx, &weights, &config.dims, kc)
    };
    let load_cpu = || {
        let dtype = Dtype::resolve_cpu(dtype);
        if dtype == Dtype::F16 {
            return Err(Error::Usage(
                "--dtype f16 is a GPU storage format; the CPU path holds f32 or int8 weights"
                    .into(),
            ));
        }
        let (cpu_dtype, attention) = match dtype {
            Dtype::Int8 => (CpuWeights::Int8, ops::Products::F32),
            // `with_encoder_attention` keeps bf16 only where the CPU runs it.
            Dtype::Int8Bf16 => (CpuWeights::Int8, ops::Products::Bf16),
            Dtype::Int8Bf16x3 => (CpuWeights::Int8, ops::Products::Bf16x3),
            Dtype::Int8Bf16V => (CpuWeights::Int8, ops::Products::Bf16Values),
            _ => (CpuWeights::F32, ops::Products::F32),
        };
        Ok(CpuModel::load_with(&weights, &config.dims, cpu_dtype)?
            .with_encoder_attention(attention))
    };
    let backend: Box<dyn Backend + Send> = match (device, adapter) {
        (Device::Cpu, Some(_)) => {
            return Err(Error::Usage(
                "--adapter selects a GPU: not with --device cpu".into(),
            ))
        }
        (Device::Cpu, None) => Box::new(load_cpu()?),
        #[cfg(feature = "gpu")]
        (Device::Gpu, _) | (Device::Auto, Some(_)) => {
            let sel = adapter.map_or(AdapterSelector::AnyGpu, AdapterSelector::from_adapter_arg);
            let ctx = GpuContext::new(&sel)?;
            Box::new(load_gpu(ctx)?)
        }
        #[cfg(feature = "gpu")]
        (Device::Auto, None) => {
            let gpu = GpuContext::new(&AdapterSelector::Auto).and_then(|ctx| {
                let name = ctx.describe();
                Ok((name, load_gpu(ctx)?))
            });
            match gpu {
                Ok((name, model)) => {
                    tracing::info!("device: gpu {name} (a hardware adapter)");
                    Box::new(model)
                }
                Err(e) => {
                    tracing::info!("device: cpu ({})", auto_reason(&e));
                    Box::new(load_cpu()?)
                }
            }
        }
        #[cfg(not(feature = "gpu"))]
        (Device::Gpu, _) | (Device::Auto, Some(_)) => {
            return Err(Error::Device(
                "this build has no GPU support (the `gpu` feature is off)".into(),
            ))
        }
        #[cfg(not(feature = "gpu"))]
        (Device::Auto, None) => {
            tracing::info!("device: cpu (built without the `gpu` feature)");
            Box::new(load_cpu()?)
        }
    };
    Ok(backend)
}

#[cfg(test)]
mod repair_hint_tests {
    use super::*;

    #[test]
    fn damaged_cached_files_say_how_to_repair() {
        let mut files = ModelFiles::new("tiny.en", "/cache/snap");
        let e = || Error::Tokenizer {
            path: "/cache/snap/tokenizer.json".into(),
            msg: "expected value at line 1".into(),
        };
        // A directory the user gave: no cache command to suggest.
        assert!(!with_repair_hint(e(), &files).to_string().contains("repair"));
        let dir = tempfile::tempdir().unwrap();
        let lock = crate::model::locks::lock_use(dir.path(), "openai/whisper-tiny.en").unwrap();
        files.lock = Some(lock);
        let msg = with_repair_hint(e(), &files).to_string();
        assert!(msg.contains("models pull tiny.en --force"), "{msg}");
    }
}
