//! The Ledger API only on the active replica: a wrapper around each service that answers
//! every call UNAVAILABLE, naming the active replica, while this replica does not serve
//! (passive, or still resuming after winning the lease). Clients retry elsewhere.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use crate::node::Shared;

/// `inner`, served only while this replica serves.
#[derive(Clone)]
pub struct ActiveOnly<S> {
    shared: Arc<Shared>,
    inner: S,
}

impl<S> ActiveOnly<S> {
    pub fn new(shared: Arc<Shared>, inner: S) -> Self {
        Self { shared, inner }
    }
}

impl<S: NamedService> NamedService for ActiveOnly<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for ActiveOnly<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if self.shared.serving_term().is_some() {
            let future = self.inner.call(request);
            return Box::pin(future);
        }
        let shared = self.shared.clone();
        Box::pin(async move {
            let message = shared.unavailable_message().await;
            Ok(
                ordo_proto::errors::status(ordo_proto::errors::PASSIVE_REPLICA, message, None)
                    .into_http(),
            )
        })
    }
}
