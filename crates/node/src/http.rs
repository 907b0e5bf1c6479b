//! HTTP endpoints: Prometheus `/metrics`, `/livez`, `/readyz`.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle. Several nodes may run in one process (tests,
/// benchmarks), so the recorder is installed once, and only when no other is installed.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = crate::metrics::with_buckets(PrometheusBuilder::new())
                .expect("bucket lists are not empty")
                .build_recorder();
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
