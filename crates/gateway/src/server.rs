//! The HTTP server: the `/v1` API behind the tower-http layers, `/livez`, `/readyz` and
//! `/metrics`, and the readiness check; the cache's feeds and the following of
//! network.json run beside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use ordo_participant::auth::Authenticator;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::cache::{self, Cache};
use crate::config::{GatewayConfig, NODE};
use crate::error::GatewayError;
use crate::network_file::NetworkFile;
use crate::state::Gateway;

/// How often readiness is checked until the gateway is ready.
const READY_POLL: Duration = Duration::from_millis(200);

/// Serves the gateway on `listener` until `shutdown` resolves, then drains in-flight
/// requests, stops the cache's feeds and closes the cache. Fails at once on a bad
/// configuration, an unreadable network file, or a cache file another gateway uses.
pub async fn run(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    config.validate()?;
    let network = NetworkFile::load(&config.network_file)?;
    crate::metrics::describe(&network.current().shards());
    // With a certificate of its own the gateway presents it to the participants, rather
    // than the operator's that network.json names.
    if let Some(own) =
        ordo_node::config::client_tls(config.tls.as_ref()).map_err(|e| e.of(crate::config::NODE))?
    {
        ordo_node::tls::trust(own);
    }
    let auth = config.effective_auth(&network.current())?;
    let authenticator = Authenticator::new(&auth)
        .map_err(|e| ordo_node::config::ConfigError { node: NODE, ..e })?;
    let token = cache::FeedToken::open(&config.cache, &auth, &authenticator)?;
    let cache = Cache::open(&config.cache.file, token, config.cache_wait_limit()).await?;
    let gateway = Arc::new(
        Gateway::new(network, authenticator, cache)
            .with_retry_deadline(config.retry_deadline)
            .with_token_limit(config.limits.token_requests)
            .with_heartbeat(config.websocket_heartbeat),
    );
    let (ready_tx, ready_rx) = watch::channel(false);
    let readiness = tokio::spawn(become_ready(gateway.clone(), ready_tx));
    let following = tokio::spawn(gateway.clone().follow_network());
    let (stop_feeds, feeds_stopped) = oneshot::channel();
    let feeds = tokio::spawn(cache::feed_shards(gateway.clone(), feeds_stopped));
    let app = app(&config, gateway.clone(), ready_rx);
    tracing::info!(addr = %listener.local_addr()?, network = %config.network_file.display(), "gateway serving");
    let tls = config
        .tls
        .as_ref()
        .map(ordo_node::tls::ServerTls::load)
        .transpose()
        .map_err(|e| ordo_node::config::Invalid::new("tls", e.to_string()).of(NODE))?;
    let incoming = ordo_node::tls::accept(listener, tls, "json-api");
    ordo_node::tls::serve_http(incoming, app, shutdown).await;
    readiness.abort();
    following.abort();
    let _ = stop_feeds.send(());
    let _ = feeds.await;
    gateway.cache.close().await;
    Ok(())
}

/// The whole service: the API and the node endpoints behind the shared layers.
fn app(config: &GatewayConfig, gateway: Arc<Gateway>, ready: watch::Receiver<bool>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let api = crate::api::routes()
        .route_layer(axum::middleware::from_fn(carry_request_id))
        .route_layer(axum::middleware::from_fn(track))
        .with_state(gateway);
    let mut app = api.merge(ordo_node::router(ready)).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(
                |req: &Request| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
                },
            ))
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(CompressionLayer::new())
            .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                config.request_timeout,
            ))
            .layer(DefaultBodyLimit::max(config.max_body_bytes)),
    );
    if let Some(cors) = cors(&config.cors_allowed_origins) {
        app = app.layer(cors);
    }
    app
}

/// CORS for the configured origins; `None` when none are (no CORS headers at all).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked by `GatewayConfig::validate`.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(Any)
            .max_age(Duration::from_secs(3600)),
    )
}

/// Sends the request's id (`X-Request-Id`, set by `SetRequestIdLayer` when the caller gave
/// none) as `x-request-id` metadata on every Ledger API call made while handling it, so
/// that the participant logs those calls under it.
async fn carry_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ordo_ledger_client::request_id::scope(&id, next.run(req)).await
}

/// Counts requests by route and status, and times them by route.
async fn track(path: MatchedPath, req: Request, next: Next) -> Response {
    let route = path.as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("ordo_gateway_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("ordo_gateway_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Ready once the topology manager (or, without one, a participant) has answered for the
/// network's parties (the gateway can route), and the cache has caught up with the ledger
/// end each shard had when the gateway started (queries answer without waiting).
async fn become_ready(gateway: Arc<Gateway>, ready: watch::Sender<bool>) {
    let shards = gateway.network().shards();
    loop {
        match gateway.network().parties().await {
            Ok(parties) => {
                for p in parties {
                    gateway.remember(&p.party, &p.shard);
                }
                tracing::info!("topology answered");
                break;
            }
            Err(e) => tracing::debug!(error = %e, "gateway not ready yet"),
        }
        tokio::time::sleep(READY_POLL).await;
    }
    let caught_up = shards
        .iter()
        .map(|shard| cache::caught_up_at_start(&gateway, shard, READY_POLL));
    futures::future::join_all(caught_up).await;
    tracing::info!(
        ?shards,
        "gateway ready: topology answered and the cache caught up"
    );
    ready.send_replace(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_only_when_origins_are_configured() {
        assert!(cors(&[]).is_none());
        assert!(cors(&["*".into()]).is_some());
        assert!(cors(&["https://app.example".into()]).is_some());
    }
}
