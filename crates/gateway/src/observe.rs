//! The request id and the request span around every request of both listeners (the
//! proxy, the gateway's own routes and `{prefix}/verify`): see [`sallyport_observe`].
//!
//! The client's `X-Request-Id` and `traceparent` are believed only with
//! `trust_request_id`; otherwise the request gets a new id and a new trace. The id is
//! returned in the response's `X-Request-Id`, and sent upstream (`proxy::rewrite`, the
//! one place request headers are decided) and to the token backend
//! (`sallyport_backend`).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sallyport_observe::{RequestId, X_REQUEST_ID};
use tracing::Instrument;

use crate::Gateway;

/// The middleware: decides the id, runs the request inside its span and id scope, and
/// returns the id on the response.
pub(crate) async fn track(State(gw): State<Gateway>, mut req: Request, next: Next) -> Response {
    // The request's one configuration, taken here and handed to the handler
    // (`Gateway::for_request`): the trust decision and everything after it agree even
    // when a reload lands mid-request, and the proxy path loads it once.
    let current = gw.current();
    let trusted = current.settings.header_policy.trusts_request_id();
    req.extensions_mut().insert(crate::RequestConfig(current));
    let id = RequestId::from_headers(req.headers(), trusted);
    let span = sallyport_observe::request_span(
        req.method(),
        req.uri().path(),
        &id,
        trusted.then_some(req.headers()),
    );
    let mut resp = sallyport_observe::scope(id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    sallyport_observe::record_status(&span, resp.status());
    resp.headers_mut().insert(X_REQUEST_ID.clone(), id.header());
    resp
}
