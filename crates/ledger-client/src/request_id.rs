//! The request id of the work a client call is part of: inside [`scope`], every Ledger API
//! call of [`crate::LedgerClient`] (and so of [`crate::ShardClient`]) sends it as
//! `x-request-id` metadata, and the participant logs the call under it. The gateway scopes
//! each HTTP request's handling by the id of its `X-Request-Id` header.
//!
//! The id is task-local: calls made by tasks the scoped work spawns carry none.

use tonic::metadata::{Ascii, MetadataValue};

/// The metadata key.
pub const KEY: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: MetadataValue<Ascii>;
}

/// Runs `work` with `id` as the request id of its calls. An empty id, or one that is no
/// valid metadata value (not printable ASCII), is left out: the participant then makes
/// up its own.
pub async fn scope<F: Future>(id: &str, work: F) -> F::Output {
    match id.parse::<MetadataValue<Ascii>>() {
        Ok(id) if !id.is_empty() => REQUEST_ID.scope(id, work).await,
        _ => work.await,
    }
}

/// The request id of the current task's work, if it has one.
pub(crate) fn current() -> Option<MetadataValue<Ascii>> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;
    use crate::client::BearerToken;

    fn sent(token: &mut BearerToken) -> Option<String> {
        let request = token.call(tonic::Request::new(())).ok()?;
        request
            .metadata()
            .get(KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn calls_in_scope_carry_the_request_id_and_others_none() {
        let mut token = BearerToken::new("t").unwrap();
        assert_eq!(sent(&mut token), None);
        let inside = scope("test-123", async { sent(&mut token.clone()) }).await;
        assert_eq!(inside.as_deref(), Some("test-123"));
        // Not metadata: the call goes without one.
        let bad = scope("line\nbreak", async { sent(&mut token.clone()) }).await;
        assert_eq!(bad, None);
        let empty = scope("", async { sent(&mut token.clone()) }).await;
        assert_eq!(empty, None);
        assert_eq!(sent(&mut token), None);
    }
}
