//! HTTP endpoints: Prometheus `/metrics`, `/livez`, `/readyz`.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Durations (`*_seconds`) and batch sizes (`*_events`) are histograms with buckets,
/// which Prometheus can aggregate across replicas and nodes (summaries cannot be).
fn with_buckets(builder: PrometheusBuilder) -> PrometheusBuilder {
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    const EVENTS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    builder
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_events".into()), EVENTS))
        .expect("bucket lists are not empty")
}

/// The process's Prometheus handle. Several nodes may run in one process (tests,
/// benchmarks), so the recorder is installed once, and only when no other is installed.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = with_buckets(PrometheusBuilder::new()).build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::info!(
                    "a metrics recorder is already installed; /metrics shows only its own"
                );
            }
            handle
        })
        .clone()
}

#[derive(Clone)]
struct HttpState {
    ready: watch::Receiver<bool>,
    metrics: PrometheusHandle,
}

pub fn router(ready: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState {
            ready,
            metrics: metrics_handle(),
        })
}

async fn metrics(State(s): State<HttpState>) -> String {
    metrics::gauge!("ordo_throttling").set(if crate::limits::throttling() {
        1.0
    } else {
        0.0
    });
    s.metrics.run_upkeep();
    s.metrics.render()
}

/// 200 when the node serves (saying so when it is refusing callers over their rate
/// limits: it is loaded, not broken), 503 otherwise.
async fn readyz(State(s): State<HttpState>) -> (StatusCode, &'static str) {
    match (*s.ready.borrow(), crate::limits::throttling()) {
        (true, false) => (StatusCode::OK, "ready"),
        (true, true) => (
            StatusCode::OK,
            "ready; throttling callers over their rate limits",
        ),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
    }
}
