//! What every Ledger API call goes through, on the active replica and the passive one
//! alike: its request id and its metrics.
//!
//! - **Request id**: the call's `x-request-id` metadata (the gateway sends the id of the
//!   HTTP request it serves), or a fresh one when it has none or an unusable one. The call
//!   is handled in a `ledger_api` span with `request_id` and `method`, so every log line
//!   the call writes carries them, and the response echoes the id in `x-request-id`.
//! - **Metrics**: `ordo_participant_ledger_api_requests_total{method,code}`,
//!   `ordo_participant_ledger_api_request_duration_seconds{method}` and
//!   `ordo_participant_ledger_api_requests_in_flight`, taken when the response headers are
//!   ready. A unary call's status is then known (an error comes in the headers, OK in the
//!   trailers, so no `grpc-status` header means OK); a stream has only opened, and counts
//!   OK unless it was refused at once: its later end is not counted.
//!
//! The `method` label is `Service/Method` (`CommandService/SubmitAndWait`) for the methods
//! of `ordo.ledger.v1`, and `unknown` for any other path, so that callers cannot create
//! series at will.

use std::convert::Infallible;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tracing::Instrument;

/// The header (gRPC metadata) that carries a request id.
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
/// The longest request id taken from a caller; a longer one is replaced.
const MAX_REQUEST_ID: usize = 128;

const REQUESTS: &str = "ordo_participant_ledger_api_requests_total";
const DURATION: &str = "ordo_participant_ledger_api_request_duration_seconds";
const IN_FLIGHT: &str = "ordo_participant_ledger_api_requests_in_flight";

/// `inner` with its calls observed.
#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
}

impl<S> Observed<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S: NamedService> NamedService for Observed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Observed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let method = method_label(request.uri().path());
        let id = request_id(request.headers());
        request.headers_mut().insert(REQUEST_ID, id.clone());
        let span = tracing::info_span!(
            "ledger_api",
            method,
            request_id = %String::from_utf8_lossy(id.as_bytes())
        );
        let in_flight = InFlight::enter();
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(async move {
            let mut response = future.instrument(span).await?;
            drop(in_flight);
            let code = code_name(status_code(&response));
            metrics::counter!(REQUESTS, "method" => method, "code" => code).increment(1);
            metrics::histogram!(DURATION, "method" => method)
                .record(started.elapsed().as_secs_f64());
            response.headers_mut().insert(REQUEST_ID, id);
            Ok(response)
        })
    }
}

/// Counts a call in flight until dropped (also when the call is dropped unanswered).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!(IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}

/// The caller's request id if it is usable in a log line (1 to 128 visible ASCII
/// characters), else a fresh one.
pub fn request_id(headers: &http::HeaderMap) -> http::HeaderValue {
    headers
        .get(&REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// A random id in the form of a UUID v4.
fn new_request_id() -> http::HeaderValue {
    let r: u128 = rand::random();
    // Version 4, variant 10xx.
    let r = (r & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{r:032x}");
    let id = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    http::HeaderValue::from_str(&id).expect("hex digits and dashes are a header value")
}

/// Every method of the Ledger API as `Service/Method`, read from the descriptor set the
/// services are generated from.
pub fn methods() -> &'static [&'static str] {
    static METHODS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        descriptor::ledger_methods()
            .into_iter()
            .map(|m| &*Box::leak(m.into_boxed_str()))
            .collect()
    });
    &METHODS
}

/// `Service/Method` for a path `/ordo.ledger.v1.Service/Method` of a known method, else
/// `unknown`.
fn method_label(path: &str) -> &'static str {
    let Some(method) = path.strip_prefix("/ordo.ledger.v1.") else {
        return "unknown";
    };
    methods()
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("unknown")
}

/// The response's gRPC status code: its `grpc-status` header, or OK when it has none
/// (the status then follows in the trailers: OK for a unary call, not yet known for a
/// stream).
fn status_code(response: &http::Response<Body>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The canonical name of a gRPC status code (as grpc-go and most exporters write it).
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Registers every method's series before its first call: its count of OK calls at 0 and
/// its (empty) duration histogram.
pub fn register() {
    for method in methods() {
        metrics::counter!(REQUESTS, "method" => *method, "code" => "OK").increment(0);
        let _ = metrics::histogram!(DURATION, "method" => *method);
    }
}

/// The few fields of `google.protobuf.FileDescriptorSet` that name services and methods
/// (prost skips the others).
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    struct FileSet {
        #[prost(message, repeated, tag = "1")]
        file: Vec<File>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct File {
        #[prost(string, optional, tag = "2")]
        package: Option<String>,
        #[prost(message, repeated, tag = "6")]
        service: Vec<Service>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Service {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
        #[prost(message, repeated, tag = "2")]
        method: Vec<Method>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Method {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
    }

    /// `Service/Method` for each method of package `ordo.ledger.v1`.
    pub fn ledger_methods() -> Vec<String> {
        let Ok(set) = <FileSet as prost::Message>::decode(ordo_proto::FILE_DESCRIPTOR_SET) else {
            return Vec::new();
        };
        set.file
            .into_iter()
            .filter(|f| f.package.as_deref() == Some("ordo.ledger.v1"))
            .flat_map(|f| f.service)
            .flat_map(|s| {
                let service = s.name.unwrap_or_default();
                s.method
                    .into_iter()
                    .map(move |m| format!("{service}/{}", m.name.unwrap_or_default()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn methods_are_read_from_the_descriptor_set() {
        let methods = methods();
        assert!(
            methods.contains(&"CommandService/SubmitAndWait"),
            "{methods:?}"
        );
        assert!(
            methods.contains(&"StateService/GetActiveContracts"),
            "{methods:?}"
        );
        assert!(
            methods.contains(&"VersionService/GetLedgerApiVersion"),
            "{methods:?}"
        );
        assert_eq!(
            method_label("/ordo.ledger.v1.CommandService/SubmitAndWait"),
            "CommandService/SubmitAndWait"
        );
        for path in [
            "/ordo.ledger.v1.CommandService/NoSuchMethod",
            "/grpc.health.v1.Health/Check",
            "/",
        ] {
            assert_eq!(method_label(path), "unknown", "{path}");
        }
    }

    #[test]
    fn a_usable_request_id_is_kept_and_any_other_replaced() {
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID, http::HeaderValue::from_static("test-123"));
        assert_eq!(request_id(&headers), "test-123");
        for bad in ["", "with space", &"x".repeat(MAX_REQUEST_ID + 1)] {
            headers.insert(REQUEST_ID, http::HeaderValue::from_str(bad).unwrap());
            let id = request_id(&headers);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 36, "{id:?}");
        }
        let fresh = request_id(&http::HeaderMap::new());
        let fresh = fresh.to_str().unwrap();
        assert_eq!(fresh.as_bytes()[14], b'4', "version 4: {fresh}");
        assert!(
            matches!(fresh.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "{fresh}"
        );
        assert_ne!(fresh, request_id(&http::HeaderMap::new()));
    }

    /// A service that records the request id its handler saw (in the request and in the
    /// current span) and answers `status`.
    #[derive(Clone)]
    struct Echo {
        status: Option<tonic::Status>,
        seen: Arc<parking_lot::Mutex<Vec<String>>>,
        calls: Arc<AtomicUsize>,
    }

    impl Service<http::Request<Body>> for Echo {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            let id = request.headers().get(&REQUEST_ID).cloned();
            self.seen.lock().push(
                id.map(|v| v.to_str().unwrap_or("").to_owned())
                    .unwrap_or_default(),
            );
            self.calls.fetch_add(1, Ordering::Relaxed);
            let response = match &self.status {
                Some(s) => s.clone().into_http(),
                None => http::Response::new(Body::empty()),
            };
            Box::pin(async move { Ok(response) })
        }
    }

    fn echo(status: Option<tonic::Status>) -> Echo {
        Echo {
            status,
            seen: Arc::default(),
            calls: Arc::default(),
        }
    }

    fn call(path: &str, id: Option<&str>) -> http::Request<Body> {
        let mut request = http::Request::builder().uri(path);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn the_request_id_reaches_the_handler_and_is_echoed() {
        let inner = echo(None);
        let mut observed = Observed::new(inner.clone());
        let response = observed
            .call(call(
                "/ordo.ledger.v1.CommandService/SubmitAndWait",
                Some("test-123"),
            ))
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], "test-123");
        // Without one, the handler and the caller see the same fresh id.
        let response = observed
            .call(call("/ordo.ledger.v1.CommandService/SubmitAndWait", None))
            .await
            .unwrap();
        let fresh = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(*inner.seen.lock(), vec!["test-123".to_owned(), fresh]);
        assert_eq!(inner.calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn calls_are_counted_by_method_and_code() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let text = ordo_node::metrics::render_isolated(|| {
            runtime.block_on(async {
                let path = "/ordo.ledger.v1.StateService/GetLedgerEnd";
                let _ = Observed::new(echo(None)).call(call(path, None)).await;
                let refused = echo(Some(tonic::Status::unavailable("passive")));
                let _ = Observed::new(refused).call(call(path, None)).await;
                let unknown = echo(Some(tonic::Status::unimplemented("no such method")));
                let _ = Observed::new(unknown)
                    .call(call("/ordo.ledger.v1.StateService/Nope", None))
                    .await;
            })
        });
        for line in [
            r#"ordo_participant_ledger_api_requests_total{method="StateService/GetLedgerEnd",code="OK"} 1"#,
            r#"ordo_participant_ledger_api_requests_total{method="StateService/GetLedgerEnd",code="Unavailable"} 1"#,
            r#"ordo_participant_ledger_api_requests_total{method="unknown",code="Unimplemented"} 1"#,
            "ordo_participant_ledger_api_requests_in_flight 0",
            r#"ordo_participant_ledger_api_request_duration_seconds_bucket{method="StateService/GetLedgerEnd",le="0.005"} 2"#,
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
    }
}
