//! Prometheus metrics: one recorder per process (installed by the first server started), the
//! names in one place.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the recorder (once per process); `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("asr_batch_size".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("asr_real_time_factor".into()),
                        &[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0],
                    )
                });
            match builder.map(|b| b.install_recorder()) {
                Ok(Ok(handle)) => {
                    // The gauges an autoscaler reads exist from the start (at 0), not only
                    // after the first request: an HPA with no value holds the replica count.
                    gauge!("asr_queue_depth").set(0.0);
                    gauge!("asr_in_flight").set(0.0);
                    Some(handle)
                }
                Ok(Err(e)) => {
                    tracing::warn!("metrics recorder not installed: {e}");
                    None
                }
                Err(e) => {
                    tracing::warn!("metrics buckets: {e}");
                    None
                }
            }
        })
        .clone()
}

/// One answered HTTP request.
pub fn request(route: &str, status: u16, seconds: f64) {
    counter!("asr_requests_total", "route" => route.to_string(), "status" => status.to_string())
        .increment(1);
    histogram!("asr_request_duration_seconds", "route" => route.to_string()).record(seconds);
}

/// Jobs admitted and not finished (waiting or active).
pub fn queue_depth(n: usize) {
    gauge!("asr_queue_depth").set(n as f64);
}

/// Jobs in a seek loop on some worker.
pub fn in_flight_add(delta: f64) {
    gauge!("asr_in_flight").increment(delta);
}

/// Windows in one scheduler step.
pub fn batch_size(n: usize) {
    histogram!("asr_batch_size").record(n as f64);
}

/// A finished transcription: audio seconds, processing seconds (from its first step), and
/// their ratio.
pub fn transcribed(audio_seconds: f64, seconds: f64) {
    histogram!("asr_audio_duration_seconds").record(audio_seconds);
    histogram!("asr_processing_seconds").record(seconds);
    if audio_seconds > 0.0 {
        histogram!("asr_real_time_factor").record(seconds / audio_seconds);
    }
}

pub fn model_load(model: &str, seconds: f64) {
    gauge!("asr_model_load_seconds", "model" => model.to_string()).set(seconds);
}

/// Live sessions open (`/v1/audio/stream`, `/v1/realtime`).
pub fn stream_sessions(n: usize) {
    gauge!("asr_stream_sessions").set(n as f64);
}

/// A live session's step started.
pub fn stream_step() {
    counter!("asr_stream_steps_total").increment(1);
}

/// A live step from its request to its transcript (mel, queue, worker).
pub fn stream_step_seconds(seconds: f64) {
    histogram!("asr_stream_step_seconds").record(seconds);
}

/// From the arrival of a committed piece's last sample to its `committed` event.
pub fn stream_commit_latency(seconds: f64) {
    histogram!("asr_stream_commit_latency_seconds").record(seconds);
}
