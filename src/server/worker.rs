//! Device workers: one thread per `--device`, each owning a [`Transcriber`] per served model,
//! and a scheduler that steps every active request together.
//!
//! Each request keeps OpenAI's sequential seek loop (its own prompt, its own position). A step
//! takes the next 30-s window of up to `max_batch` active requests that share a model and the
//! transcriber-wide options (temperature schedule, word timestamps), encodes them in one
//! `encode_batch` and decodes each ([`Transcriber::step_windows`]).
//!
//! Which requests share a step (see [`Scheduler::pick`]): new requests are admitted between
//! any two steps; the lead is the request with the fewest windows left (shortest remaining
//! first), so a short clip that arrives while a long file is transcribed waits for at most
//! the step in progress; it is batched only with requests that have as many windows left
//! (equals finish together, so nobody waits for a longer request's decoding). Fairness: a
//! request passed over `STARVE_STEPS` times in a row leads the next step, so a long file
//! still progresses under a stream of short clips.
//!
//! Jobs for a model that is not loaded (one of the cache's, served on demand: see
//! [`super::models`]) wait in the queue while a loader thread loads it; the worker steps the
//! other jobs meanwhile.
//!
//! A request that arrives while one job's window is being decoded alone, and that has fewer
//! windows than that job has left, interrupts the window (its decoding is thrown away and
//! redone later, with the same tokens: a cancelled step leaves a seek loop as it was), so it
//! does not wait for a long file's window. A job is interrupted at most `STARVE_STEPS` times
//! in a row.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::metrics as m;
use super::models::{self, ModelSet};
use super::places::{Place, Places};
use crate::audio::SpooledMel;
use crate::decode::CancelHandle;
use crate::error::{Error, Result};
use crate::mel::MelSource;
use crate::transcribe::{Device, SeekLoop, Segment, TranscribeOptions, Transcriber, Transcript};

/// What a worker reports about a job, in order: segments as they become final, then one
/// `Done` or `Failed`.
pub enum JobEvent {
    Segment(Segment),
    Done(Transcript),
    Failed(Error),
}

/// A request ready for the scheduler: its audio already decoded into a spooled mel.
pub struct Job {
    pub request_id: String,
    pub model: String,
    pub options: TranscribeOptions,
    pub mel: SpooledMel,
    pub events: UnboundedSender<JobEvent>,
    /// Cancelled when the client goes away (or the request times out).
    pub cancel: CancelHandle,
    /// A live step: each window's unfinished tail is kept, not decoded again
    /// ([`SeekLoop::keep_tails`]), so a step of at most 30 s is one window.
    pub keep_tails: bool,
}

/// What reaches a worker: a job, or the end of a model load it asked for.
enum Msg {
    Job(Box<Job>),
    Loaded {
        name: String,
        result: Result<Box<Transcriber>>,
        seconds: f64,
    },
}

/// A model as loaded: what the HTTP side needs before it queues a job.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub n_mels: usize,
    pub multilingual: bool,
}

/// The window a worker is decoding alone, which a shorter arrival may interrupt.
struct RunningStep {
    request_id: String,
    windows_left: usize,
    interrupt: CancelHandle,
}

/// Shared by a worker and the HTTP side: the interruptible step in progress, if any.
#[derive(Default)]
pub struct StepSlot(Mutex<Option<RunningStep>>);

impl StepSlot {
    /// Interrupt the step in progress if it is `request_id`'s (its client went away).
    pub fn interrupt_for(&self, request_id: &str) {
        if let Some(step) = &*self.0.lock().unwrap() {
            if step.request_id == request_id {
                step.interrupt.cancel();
            }
        }
    }

    /// Interrupt the step in progress if it has more windows left than `windows`.
    fn interrupt_longer_than(&self, windows: usize) {
        if let Some(step) = &*self.0.lock().unwrap() {
            if step.windows_left > windows {
                step.interrupt.cancel();
            }
        }
    }
}

struct WorkerHandle {
    device: Device,
    jobs: mpsc::Sender<Msg>,
    step: Arc<StepSlot>,
    /// Jobs sent to this worker and not yet finished.
    load: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// The workers, the admission count and the loaded models.
pub struct Pool {
    workers: Mutex<Vec<WorkerHandle>>,
    /// Jobs admitted and not finished (waiting in a queue or active), all workers together.
    admitted: Places,
    models: Mutex<Vec<ModelInfo>>,
    loaded: AtomicUsize,
    n_workers: usize,
    ready: AtomicBool,
    load_error: Mutex<Option<String>>,
}

/// A place in the pool: returned to it when dropped.
pub type Admission = Place;

impl Pool {
    /// Start one worker per device; each loads `models` (the first is the default) and then
    /// serves, loading other cached models on demand while it holds fewer than `max_models`
    /// (never fewer than `models`). [`Pool::is_ready`] turns true when all have loaded `models`.
    pub fn start(
        models: &[String],
        devices: &[Device],
        max_batch: usize,
        max_queue: usize,
        max_models: usize,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            workers: Mutex::new(Vec::new()),
            admitted: Places::new(devices.len() * max_batch + max_queue, m::queue_depth),
            models: Mutex::new(Vec::new()),
            loaded: AtomicUsize::new(0),
            n_workers: devices.len(),
            ready: AtomicBool::new(false),
            load_error: Mutex::new(None),
        });
        let mut handles = Vec::new();
        for (index, &device) in devices.iter().enumerate() {
            let (tx, rx) = mpsc::channel::<Msg>();
            let (loads_tx, loads_rx) = mpsc::channel::<Msg>();
            let load = Arc::new(AtomicUsize::new(0));
            let worker_load = load.clone();
            let step = Arc::new(StepSlot::default());
            let worker_step = step.clone();
            let worker_pool = pool.clone();
            let names = models.to_vec();
            let thread = std::thread::Builder::new()
                .name(format!("asr-worker-{index}"))
                .spawn(move || {
                    let transcribers = match load_models(&names, device, &worker_pool) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!("worker {index} ({device:?}): {e}");
                            *worker_pool.load_error.lock().unwrap() = Some(e.to_string());
                            return;
                        }
                    };
                    drop(worker_pool);
                    Scheduler {
                        models: ModelSet::new(transcribers, max_models),
                        device,
                        loads: loads_tx,
                        max_batch: max_batch.max(1),
                        load: worker_load,
                        step: worker_step,
                        active: Vec::new(),
                    }
                    .run(rx, loads_rx);
                })
                .expect("spawn worker thread");
            handles.push(WorkerHandle {
                device,
                jobs: tx,
                step,
                load,
                thread: Some(thread),
            });
        }
        *pool.workers.lock().unwrap() = handles;
        pool
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The error of a worker that failed to load its models.
    pub fn load_error(&self) -> Option<String> {
        self.load_error.lock().unwrap().clone()
    }

    /// The loaded models, the default first (empty until ready).
    pub fn models(&self) -> Vec<ModelInfo> {
        self.models.lock().unwrap().clone()
    }

    /// A place for one more job, or `None` when waiting and active jobs fill the capacity
    /// (`devices x max_batch + max_queue`).
    pub fn admit(&self) -> Option<Admission> {
        self.admitted.try_take()
    }

    /// Hand `job` to the worker with the fewest jobs; returns that worker's step slot (for
    /// interrupting the job's step when its client goes away).
    pub fn submit(&self, job: Job) -> Result<Arc<StepSlot>> {
        let workers = self.workers.lock().unwrap();
        let worker = workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::SeqCst))
            .ok_or_else(|| Error::Internal("no worker is running".into()))?;
        worker.load.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(request_id = %job.request_id, "queued on {:?}", worker.device);
        let windows = job.mel.content_frames().div_ceil(crate::mel::N_FRAMES);
        worker.jobs.send(Msg::Job(Box::new(job))).map_err(|_| {
            worker.load.fetch_sub(1, Ordering::SeqCst);
            Error::Internal("the worker has stopped".into())
        })?;
        // After the send, so the worker finds the job when it looks again.
        worker.step.interrupt_longer_than(windows);
        Ok(worker.step.clone())
    }

    /// Stop the workers once their queues are empty, and wait for them.
    pub fn shutdown(&self) {
        let mut workers = std::mem::take(&mut *self.workers.lock().unwrap());
        for w in &mut workers {
            // Dropping the sender ends the worker's loop after its last job.
            let (dead, _) = mpsc::channel();
            drop(std::mem::replace(&mut w.jobs, dead));
        }
        for w in &mut workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Load every model on `device`; the first worker to finish publishes the model list.
fn load_models(
    names: &[String],
    device: Device,
    pool: &Pool,
) -> Result<Vec<(String, Transcriber)>> {
    let mut out = Vec::new();
    for name in names {
        let start = Instant::now();
        let transcriber = Transcriber::builder()
            .model(name.as_str())
            .device(device)
            .build()?;
        let seconds = start.elapsed().as_secs_f64();
        m::model_load(name, seconds);
        tracing::info!(
            "loaded {name} on {} in {seconds:.1} s",
            transcriber.device_name()
        );
        out.push((name.clone(), transcriber));
    }
    let infos = out
        .iter()
        .map(|(name, t)| ModelInfo {
            name: name.clone(),
            n_mels: t.dims().n_mels,
            multilingual: t.tokenizer().multilingual,
        })
        .collect();
    {
        let mut models = pool.models.lock().unwrap();
        if models.is_empty() {
            *models = infos;
        }
    }
    if pool.loaded.fetch_add(1, Ordering::SeqCst) + 1 == pool.n_workers {
        pool.ready.store(true, Ordering::SeqCst);
        tracing::info!("ready");
    }
    Ok(out)
}

/// A job in progress on a worker.
struct Active {
    job: Job,
    seek: SeekLoop,
    started: Instant,
    /// Steps in a row this job was ready for and not part of.
    passed_over: usize,
    /// Steps of this job interrupted in a row by shorter arrivals.
    interrupted: usize,
}

impl Active {
    /// The 30-s windows still to transcribe (an upper bound: a window may advance less than
    /// 30 s when its last segment is cut off, more windows are then needed).
    fn windows_left(&self) -> usize {
        let left = self.seek.content_frames() - self.seek.position();
        left.div_ceil(crate::mel::N_FRAMES)
    }
}

/// A job passed over this many steps in a row leads the next one, whatever its length.
const STARVE_STEPS: usize = 4;

struct Scheduler {
    models: ModelSet,
    device: Device,
    /// Loader threads report here.
    loads: mpsc::Sender<Msg>,
    max_batch: usize,
    load: Arc<AtomicUsize>,
    step: Arc<StepSlot>,
    active: Vec<Active>,
}

impl Scheduler {
    /// Until the pool drops the job channel and the last job has finished.
    fn run(mut self, jobs: mpsc::Receiver<Msg>, loads: mpsc::Receiver<Msg>) {
        let mut waiting: VecDeque<Job> = VecDeque::new();
        let mut open = true;
        loop {
            // Nothing to step: wait for a job, or for the load the waiting jobs need (polled,
            // so that jobs for loaded models start meanwhile).
            let idle =
                self.active.is_empty() && waiting.iter().all(|j| !self.models.is_loaded(&j.model));
            if idle {
                if self.models.loading().is_some() {
                    let poll = Duration::from_millis(20);
                    let msg = if open {
                        match jobs.recv_timeout(poll) {
                            Err(RecvTimeoutError::Disconnected) => {
                                open = false;
                                None
                            }
                            r => r.ok(),
                        }
                    } else {
                        loads.recv_timeout(poll).ok()
                    };
                    if let Some(msg) = msg {
                        self.take(msg, &mut waiting);
                    }
                } else if !open {
                    return;
                } else {
                    match jobs.recv() {
                        Ok(msg) => self.take(msg, &mut waiting),
                        Err(_) => open = false,
                    }
                }
            }
            while open {
                match jobs.try_recv() {
                    Ok(msg) => self.take(msg, &mut waiting),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            while let Ok(msg) = loads.try_recv() {
                self.take(msg, &mut waiting);
            }
            self.drop_cancelled(&mut waiting);
            self.start_waiting(&mut waiting);
            if !self.active.is_empty() {
                self.step();
            }
        }
    }

    /// A job joins the queue; a finished load joins the models (or fails the jobs waiting
    /// for it).
    fn take(&mut self, msg: Msg, waiting: &mut VecDeque<Job>) {
        match msg {
            Msg::Job(job) => waiting.push_back(*job),
            Msg::Loaded {
                name,
                result,
                seconds,
            } => match result {
                Ok(t) => {
                    m::model_load(&name, seconds);
                    tracing::info!(
                        "loaded {name} on {} in {seconds:.1} s (on demand)",
                        t.device_name()
                    );
                    self.models.end_load(&name, Some(*t));
                }
                Err(e) => {
                    tracing::error!("loading {name} on demand: {e}");
                    self.models.end_load(&name, None);
                    let (failed, kept) = waiting.drain(..).partition(|j| j.model == name);
                    *waiting = kept;
                    for job in failed {
                        let msg = format!("the model {name} could not be loaded: {e}");
                        self.finish_job(&job, JobEvent::Failed(Error::Internal(msg)));
                    }
                }
            },
        }
    }

    /// Start waiting jobs in order while fewer than `max_batch` are active; for a job whose
    /// model is not loaded, start loading it (when no other load is in progress and there is
    /// room) and let the job wait.
    fn start_waiting(&mut self, waiting: &mut VecDeque<Job>) {
        let needed: Vec<String> = self
            .active
            .iter()
            .map(|a| &a.job.model)
            .chain(waiting.iter().map(|j| &j.model))
            .cloned()
            .collect();
        let mut kept = VecDeque::new();
        while let Some(job) = waiting.pop_front() {
            if self.models.is_loaded(&job.model) {
                if self.active.len() < self.max_batch {
                    self.begin(job);
                } else {
                    kept.push_back(job);
                }
            } else if self.models.loading().is_some() {
                kept.push_back(job);
            } else if !self.models.loads_on_demand() {
                let msg = format!("model {} is not loaded", job.model);
                self.finish_job(&job, JobEvent::Failed(Error::Internal(msg)));
            } else {
                if self
                    .models
                    .begin_load(&job.model, |n| needed.iter().any(|m| m == n))
                {
                    self.spawn_load(&job.model);
                }
                kept.push_back(job);
            }
        }
        *waiting = kept;
    }

    /// Load `name` on a thread of its own; the worker hears the result on `loads`.
    fn spawn_load(&self, name: &str) {
        tracing::info!("loading {name} on demand");
        let (name, device, tx) = (name.to_string(), self.device, self.loads.clone());
        let spawned = std::thread::Builder::new()
            .name("asr-model-load".into())
            .spawn({
                let name = name.clone();
                let tx = tx.clone();
                move || {
                    let start = Instant::now();
                    let result = models::load(&name, device).map(Box::new);
                    let seconds = start.elapsed().as_secs_f64();
                    let _ = tx.send(Msg::Loaded {
                        name,
                        result,
                        seconds,
                    });
                }
            });
        if let Err(e) = spawned {
            let _ = tx.send(Msg::Loaded {
                name,
                result: Err(Error::Internal(format!(
                    "cannot start a loader thread: {e}"
                ))),
                seconds: 0.0,
            });
        }
    }

    fn finish_job(&self, job: &Job, event: JobEvent) {
        let _ = job.events.send(event);
        self.load.fetch_sub(1, Ordering::SeqCst);
    }

    /// Jobs whose client went away leave without another step.
    fn drop_cancelled(&mut self, waiting: &mut VecDeque<Job>) {
        let mut kept = VecDeque::new();
        for job in waiting.drain(..) {
            if job.cancel.is_cancelled() || job.events.is_closed() {
                tracing::info!(request_id = %job.request_id, "cancelled before it started");
                self.finish_job(&job, JobEvent::Failed(Error::Cancelled));
            } else {
                kept.push_back(job);
            }
        }
        *waiting = kept;
        let mut i = 0;
        while i < self.active.len() {
            let job = &self.active[i].job;
            if job.cancel.is_cancelled() || job.events.is_closed() {
                let a = self.active.remove(i);
                tracing::info!(request_id = %a.job.request_id, "cancelled");
                m::in_flight_add(-1.0);
                self.finish_job(&a.job, JobEvent::Failed(Error::Cancelled));
            } else {
                i += 1;
            }
        }
    }

    /// Start a job's seek loop (language detection runs here on multilingual models).
    fn begin(&mut self, mut job: Job) {
        let options = job.options.clone();
        let model = job.model.clone();
        let result = match self.models.get_mut(&model) {
            Some(t) => t
                .set_options(options)
                .and_then(|()| t.begin_seek(&mut job.mel)),
            None => Err(Error::Internal(format!("model {model} is not loaded"))),
        };
        match result {
            Ok(mut seek) => {
                if job.keep_tails {
                    seek.keep_tails();
                }
                // Detection ran the encoder: what other loops left encoded is gone.
                for a in &mut self.active {
                    a.seek.forget_encoded();
                }
                m::in_flight_add(1.0);
                self.active.push(Active {
                    job,
                    seek,
                    started: Instant::now(),
                    passed_over: 0,
                    interrupted: 0,
                });
            }
            Err(e) => {
                tracing::warn!(request_id = %job.request_id, "{e}");
                self.finish_job(&job, JobEvent::Failed(e));
            }
        }
    }

    /// The active jobs (indices) that share the next step, the lead first: the job passed
    /// over longest once that reaches `STARVE_STEPS`, else the one with the fewest windows
    /// left (ties: the oldest); then up to `max_batch - 1` jobs with the same step key and as
    /// many windows left.
    fn pick(&self) -> Vec<usize> {
        let starved = (0..self.active.len())
            .filter(|&i| self.active[i].passed_over >= STARVE_STEPS)
            .max_by_key(|&i| self.active[i].passed_over);
        let lead = starved.unwrap_or_else(|| {
            (0..self.active.len())
                .min_by_key(|&i| (self.active[i].windows_left(), self.active[i].started))
                .expect("a step has an active job")
        });
        let key = step_key(&self.active[lead].job);
        let windows = self.active[lead].windows_left();
        let mut members = vec![lead];
        for i in 0..self.active.len() {
            if members.len() >= self.max_batch {
                break;
            }
            let a = &self.active[i];
            if i != lead && a.windows_left() == windows && step_key(&a.job) == key {
                members.push(i);
            }
        }
        members
    }

    /// One window of the jobs [`pick`](Self::pick) chooses.
    fn step(&mut self) {
        let members = self.pick();
        for (i, a) in self.active.iter_mut().enumerate() {
            if members.contains(&i) {
                a.passed_over = 0;
            } else {
                a.passed_over += 1;
            }
        }
        let lead = members[0];
        m::batch_size(members.len());
        let model = self.active[lead].job.model.clone();
        let options = self.active[lead].job.options.clone();
        // A job stepped alone can be stopped mid-window (by a shorter arrival, or when its
        // client goes away); in a shared step a cancelled job leaves at the next step, not
        // stopping the others. Word timestamps align after decoding, which an interruption
        // could leave half done: those steps run to the end.
        let interruptible = members.len() == 1
            && self.active[lead].interrupted < STARVE_STEPS
            && self.active.len() < self.max_batch
            && !options.word_timestamps;
        let cancel = (members.len() == 1).then(|| {
            if !interruptible {
                return self.active[lead].job.cancel.clone();
            }
            let interrupt = CancelHandle::new();
            *self.step.0.lock().unwrap() = Some(RunningStep {
                request_id: self.active[lead].job.request_id.clone(),
                windows_left: self.active[lead].windows_left(),
                interrupt: interrupt.clone(),
            });
            // Cancelled before the slot was set: keep the client's cancellation.
            if self.active[lead].job.cancel.is_cancelled() {
                interrupt.cancel();
            }
            interrupt
        });
        let mut chosen: Vec<&mut Active> = Vec::with_capacity(members.len());
        let mut others: Vec<&mut Active> = Vec::new();
        for (i, a) in self.active.iter_mut().enumerate() {
            if members.contains(&i) {
                chosen.push(a);
            } else {
                others.push(a);
            }
        }
        let transcriber = self
            .models
            .get_mut(&model)
            .expect("jobs only start on loaded models");
        let result = transcriber.set_options(options).and_then(|()| {
            transcriber.reset_timings();
            let mut loops: Vec<(&mut SeekLoop, &mut dyn MelSource)> = chosen
                .iter_mut()
                .map(|a| (&mut a.seek, &mut a.job.mel as &mut dyn MelSource))
                .collect();
            transcriber.step_windows(&mut loops, cancel.as_ref())
        });
        for a in others {
            a.seek.forget_encoded();
        }
        *self.step.0.lock().unwrap() = None;
        if interruptible && matches!(result, Err(Error::Cancelled)) {
            // The step's one job: gone (its client left), or interrupted by a shorter
            // request, and then its window is redone at a later step.
            let a = &mut chosen[0];
            if !(a.job.cancel.is_cancelled() || a.job.events.is_closed()) {
                a.interrupted += 1;
                a.seek.forget_encoded();
                tracing::debug!(request_id = %a.job.request_id, "window interrupted");
                return;
            }
        }
        if result.is_ok() {
            for a in chosen.iter_mut() {
                a.interrupted = 0;
            }
        }
        match result {
            Ok(new) => {
                for (a, segments) in chosen.iter().zip(new) {
                    for s in segments {
                        let _ = a.job.events.send(JobEvent::Segment(s));
                    }
                }
            }
            Err(e) => {
                // One failing window fails the jobs of that step (a cancellation only its
                // own, since a cancellable step has one job).
                match &e {
                    Error::Cancelled => tracing::info!("step cancelled: its client went away"),
                    _ => tracing::warn!("step failed: {e}"),
                }
                self.remove_failed(&members, e);
                return;
            }
        }
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].seek.is_done() {
                let a = self.active.remove(i);
                self.finish_done(a);
            } else {
                i += 1;
            }
        }
    }

    fn remove_failed(&mut self, members: &[usize], e: Error) {
        let mut sorted = members.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        for i in sorted {
            let a = self.active.remove(i);
            m::in_flight_add(-1.0);
            let err = match &e {
                Error::Cancelled => Error::Cancelled,
                Error::Audio { path, msg } => Error::audio(path, msg.clone()),
                Error::Usage(msg) => Error::Usage(msg.clone()),
                other => Error::Internal(other.to_string()),
            };
            self.finish_job(&a.job, JobEvent::Failed(err));
        }
    }

    fn finish_done(&mut self, a: Active) {
        m::in_flight_add(-1.0);
        let model = a.job.model.clone();
        let transcriber = self
            .models
            .get(&model)
            .expect("jobs only start on loaded models");
        let event = match transcriber.finish_seek(a.seek) {
            Ok(t) => {
                let seconds = a.started.elapsed().as_secs_f64();
                m::transcribed(t.duration, seconds);
                tracing::info!(
                    request_id = %a.job.request_id,
                    "{:.1} s of audio in {seconds:.2} s",
                    t.duration
                );
                JobEvent::Done(t)
            }
            Err(e) => JobEvent::Failed(e),
        };
        self.finish_job(&a.job, event);
    }
}

/// What jobs must share to be stepped together: the model and the options a step reads from
/// the transcriber (the temperature schedule, thresholds, word timestamps). Language, task
/// and prompt live in each job's seek loop.
fn step_key(job: &Job) -> (String, String) {
    let o = &job.options;
    (
        job.model.clone(),
        format!(
            "{:?}|{}|{:?}|{:?}|{:?}|{}|{:?}|{:?}",
            o.temperatures(),
            o.word_timestamps,
            o.compression_ratio_threshold,
            o.logprob_threshold,
            o.no_speech_threshold,
            o.seed,
            o.decode.beam_size,
            o.decode.best_of
        ),
    )
}
