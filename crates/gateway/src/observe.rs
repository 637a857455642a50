//! The request id and the request span around every request of both listeners (the
//! proxy, the gateway's own routes and `{prefix}/verify`): see [`sallyport_observe`].
//!
//! The client's `X-Request-Id` and `traceparent` are believed only with
//! `trust_request_id`; otherwise the request gets a new id and a new trace. The id is
//! returned in the response's `X-Request-Id`, and sent upstream (`proxy::rewrite`, the
//! one place request headers are decided) and to the token backend
//! (`sallyport_backend`).

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sallyport_observe::{RequestId, X_REQUEST_ID};
use tracing::Instrument;

use crate::{Gateway, Inner};

/// The admin listener's middleware: [`tracked`] around its router.
pub(crate) async fn track(State(gw): State<Gateway>, req: Request, next: Next) -> Response {
    tracked(gw.current(), req, |req, _| next.run(req)).await
}

/// Decides the request's id, runs `run` inside its span and id scope, and returns the id
/// on the response. `current` is the configuration in force, and `run` gets it back with
/// the request: the trust decision is made under it and the proxy path uses it
/// throughout, so everything it decides agrees even when a reload lands mid-request,
/// and it loads the configuration once.
pub(crate) async fn tracked<F, Fut>(current: Arc<Inner>, req: Request, run: F) -> Response
where
    F: FnOnce(Request, Arc<Inner>) -> Fut,
    Fut: Future<Output = Response>,
{
    let trusted = current.settings.header_policy.trusts_request_id();
    let id = RequestId::from_headers(req.headers(), trusted);
    let span = sallyport_observe::request_span(
        req.method(),
        req.uri().path(),
        &id,
        trusted.then_some(req.headers()),
    );
    let mut resp = sallyport_observe::scope(id.clone(), run(req, current))
        .instrument(span.clone())
        .await;
    sallyport_observe::record_status(&span, resp.status());
    resp.headers_mut().insert(X_REQUEST_ID.clone(), id.header());
    resp
}
