//! Errors: [`ApiError`], what a request is answered with (`{"status": N, "errors": [..]}`),
//! and the one mapping from the Ledger API's gRPC codes to HTTP statuses; and
//! [`GatewayError`], why the gateway could not start or stopped.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ordo_ledger_client::LedgerError;

use crate::cache::CacheError;
use ordo_node::config::ConfigError;
use serde_json::json;
use tonic::Code;

/// Why the gateway could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Network(#[from] LedgerError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("HTTP server: {0}")]
    Serve(#[from] std::io::Error),
}

/// A request's failure: its HTTP status and what to tell the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The error code id (docs/errors.md), in the body's `code`.
    pub code: String,
    /// Seconds after which a retry can pass (`Retry-After`), for 429 answers.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: code_of_http(status).id.to_owned(),
            retry_after: None,
        }
    }

    /// 429 for a caller over `throttled`'s limit, with `Retry-After`.
    pub fn throttled(who: &str, throttled: &ordo_node::limits::Throttled) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "{who} is over its {} limit: retry after {} ms",
                throttled.limit,
                throttled.retry_after_ms()
            ),
            code: ordo_proto::errors::THROTTLED.id.to_owned(),
            retry_after: Some(throttled.retry_after_secs()),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
}

/// The HTTP status of a Ledger API failure. The one place the gateway maps codes: every
/// handler's ledger error goes through here.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        // Not active, locked by a pending transaction, or a duplicate command id.
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        let code = e
            .error_code()
            .map(str::to_owned)
            .unwrap_or_else(|| ordo_proto::errors::generic(e.code()).id.to_owned());
        Self {
            code,
            ..Self::new(http_status(e.code()), e.message())
        }
    }
}

/// The error code of an answer the gateway makes itself, by its HTTP status.
fn code_of_http(status: StatusCode) -> ordo_proto::errors::ErrorCode {
    use ordo_proto::errors as e;
    match status.as_u16() {
        400 => e::INVALID_ARGUMENT,
        401 => e::UNAUTHENTICATED,
        403 => e::PERMISSION_DENIED,
        404 => e::NOT_FOUND,
        408 => e::REQUEST_TIMEOUT,
        409 => e::FAILED_PRECONDITION,
        413 => e::LIMIT_EXCEEDED,
        429 => e::THROTTLED,
        503 => e::UNAVAILABLE,
        _ => e::INTERNAL,
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let body = json!({
            "status": self.status.as_u16(),
            "code": self.code,
            "errors": [self.message],
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_codes_map_to_the_documented_statuses() {
        for (code, status) in [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::FailedPrecondition, 409),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 503),
        ] {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
        let e = ApiError::from(LedgerError::from(ordo_proto::errors::status(
            ordo_proto::errors::DUPLICATE_COMMAND,
            "command c1 was already submitted",
            None,
        )));
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.code, "DUPLICATE_COMMAND", "the server's code is kept");
        let e = ApiError::from(LedgerError::Status {
            code: Code::FailedPrecondition,
            message: "contract 12 is not active".into(),
            error_code: None,
        });
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.message, "contract 12 is not active");
        assert_eq!(e.code, "FAILED_PRECONDITION");
        assert_eq!(ApiError::unauthorized("x").code, "UNAUTHENTICATED");
        let c = ApiError::from(LedgerError::Connect {
            endpoint: "http://127.0.0.1:1".into(),
            reason: "refused".into(),
        });
        assert_eq!(c.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
