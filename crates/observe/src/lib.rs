//! Request ids and trace context, shared by the gateway, the issuer and the token-backend
//! client.
//!
//! One request gets one id: the `X-Request-Id` it came with when the sender is trusted
//! and the value is sane (at most [`MAX_REQUEST_ID_LEN`] visible ASCII characters), a new
//! UUID v4 otherwise. The id is a field of the request's `tracing` span — so every log
//! line written while the request is handled carries it — and a task-local value, so
//! the calls made for the request (upstream, token backend, also from tasks started
//! with [`carry`]) can send it on and the response can return it.
//!
//! Trace context is W3C `traceparent`/`tracestate`: an incoming one is continued only
//! when trusted (same rule as the id), and the current span's context is written on
//! every outgoing call ([`outgoing_headers`]). Without an OpenTelemetry layer installed
//! (no `OTEL_EXPORTER_OTLP_*ENDPOINT`), spans have no trace context and nothing is
//! written.

use std::future::Future;

#[cfg(feature = "testing")]
pub mod testing;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C `tracestate`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest `X-Request-Id` accepted from a trusted sender; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// One request's id: visible ASCII, 1 to [`MAX_REQUEST_ID_LEN`] characters.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RequestId {
    /// A new random id (UUID v4: 122 random bits, unguessable and unique enough to find
    /// one request in the logs of every replica).
    pub fn generate() -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        // Hex digits and dashes: always a valid header value.
        Self(HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("-")))
    }

    /// `value` as an id, if it is one: 1 to 128 bytes, each a visible ASCII character
    /// (`!` to `~`). Spaces, control characters and non-ASCII bytes are refused: the id
    /// is written into log lines and sent on to other servers, and must not be able to
    /// forge a log line or smuggle anything.
    pub fn parse(value: &HeaderValue) -> Option<Self> {
        let b = value.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter().all(|c| (0x21..=0x7e).contains(c));
        ok.then(|| Self(value.clone()))
    }

    /// The id of a request with `headers`: its single `X-Request-Id` when `trusted` and
    /// valid, else a new one. Several `X-Request-Id` headers count as invalid.
    pub fn from_headers(headers: &HeaderMap, trusted: bool) -> Self {
        if trusted {
            let mut all = headers.get_all(&X_REQUEST_ID).iter();
            if let (Some(v), None) = (all.next(), all.next())
                && let Some(id) = Self::parse(v)
            {
                return id;
            }
        }
        Self::generate()
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in (`parse`, `generate`).
        self.0.to_str().unwrap_or("-")
    }

    /// The id as a header value.
    pub fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being handled by this task, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` as part of the request `id` ([`current`] returns it inside).
///
/// A plain function returning tokio's scope future, not an `async fn`: an `async fn`
/// would keep its `fut` argument beside the scope future it moves it into, doubling the
/// size of every request's future.
pub fn scope<F: Future>(id: RequestId, fut: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(id, fut)
}

/// `fut` made part of the current request and span, for `tokio::spawn`: a spawned task
/// would otherwise lose both, and its log lines and calls would carry no request id.
pub fn carry<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let id = current();
    let fut = fut.instrument(tracing::Span::current());
    async move {
        match id {
            Some(id) => CURRENT.scope(id, fut).await,
            None => fut.await,
        }
    }
}

/// The span of one incoming request: `request{request_id=… method=… path=…}`.
/// `parent`: the request's headers when its sender is trusted, to continue the trace of
/// its `traceparent`; `None` starts a new trace. `path` should have no query string (it
/// can hold secrets).
pub fn request_span(
    method: &http::Method,
    path: &str,
    id: &RequestId,
    parent: Option<&HeaderMap>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        path = %path,
        otel.name = %format_args!("{method} {path}"),
        otel.kind = "server",
        http.response.status_code = tracing::field::Empty,
    );
    let cx = match parent {
        Some(headers) => {
            let cx = propagator().extract(&HeaderExtractor(headers));
            // An unparsable or absent traceparent: a new trace, not the ambient context.
            if cx.span().span_context().is_valid() {
                cx
            } else {
                opentelemetry::Context::new()
            }
        }
        None => opentelemetry::Context::new(),
    };
    // Explicit root even without a parent: never a child of whatever span was current
    // (e.g. a server task's span).
    let _ = span.set_parent(cx);
    span
}

/// Records the response status on a request span.
pub fn record_status(span: &tracing::Span, status: http::StatusCode) {
    span.record("http.response.status_code", status.as_u16());
}

/// Writes what an outgoing call carries for the current request: `X-Request-Id` (from
/// [`current`]) and `traceparent`/`tracestate` of the current span (replacing any already
/// there). Nothing when there is no current request or trace.
pub fn outgoing_headers(headers: &mut HeaderMap) {
    insert_request_id(headers);
    inject_trace(headers);
}

/// [`outgoing_headers`] for a call made under `span`, into `headers` that hold no trace
/// context yet (the gateway's upstream request, built fresh from the client's filtered
/// headers). Returns whether a `traceparent` was written.
///
/// Why not [`outgoing_headers`] there: it looks up the current span and removes old
/// trace headers, ≈ 800 instructions on every proxied request, most of them spent
/// finding out that there is no trace (no OpenTelemetry layer, so `span` is disabled).
pub fn outgoing_headers_under(span: &tracing::Span, headers: &mut HeaderMap) -> bool {
    insert_request_id(headers);
    inject_span(span, headers)
}

/// Writes the current span's trace context as `traceparent`/`tracestate`, removing any
/// already there. Returns whether one was written (false without an OpenTelemetry layer).
pub fn inject_trace(headers: &mut HeaderMap) -> bool {
    headers.remove(&TRACEPARENT);
    headers.remove(&TRACESTATE);
    inject_span(&tracing::Span::current(), headers)
}

/// The current request's id as `X-Request-Id`, when there is a current request.
fn insert_request_id(headers: &mut HeaderMap) {
    if let Some(id) = current() {
        headers.insert(X_REQUEST_ID.clone(), id.header());
    }
}

/// Writes `span`'s trace context; whether a `traceparent` was written.
fn inject_span(span: &tracing::Span, headers: &mut HeaderMap) -> bool {
    // A span no layer took has no trace context.
    if span.is_disabled() {
        return false;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return false;
    }
    propagator().inject_context(&cx, &mut HeaderInjector(headers));
    headers.contains_key(&TRACEPARENT)
}

fn propagator() -> opentelemetry_sdk::propagation::TraceContextPropagator {
    // W3C trace context only; no baggage is taken from or given to anyone.
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // Several `traceparent` headers: ambiguous, so none.
        let mut all = self.0.get_all(key).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn a_trusted_valid_id_is_kept() {
        let h = headers(&[("x-request-id", "abc-123_XYZ")]);
        assert_eq!(RequestId::from_headers(&h, true).as_str(), "abc-123_XYZ");
    }

    #[test]
    fn an_untrusted_id_is_replaced() {
        let h = headers(&[("x-request-id", "abc-123")]);
        let id = RequestId::from_headers(&h, false);
        assert_ne!(id.as_str(), "abc-123");
        assert!(uuid::Uuid::parse_str(id.as_str()).is_ok(), "{id}");
    }

    #[test]
    fn invalid_ids_are_replaced_even_when_trusted() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        let exact = "a".repeat(MAX_REQUEST_ID_LEN);
        assert_eq!(
            RequestId::from_headers(&headers(&[("x-request-id", &exact)]), true).as_str(),
            exact
        );
        for bad in [long.as_str(), "has space", "tab\there", ""] {
            let id = RequestId::from_headers(&headers(&[("x-request-id", bad)]), true);
            assert_ne!(id.as_str(), bad);
        }
        let non_ascii = HeaderValue::from_bytes(b"caf\xc3\xa9").expect("value");
        assert!(RequestId::parse(&non_ascii).is_none());
        let two = headers(&[("x-request-id", "one"), ("x-request-id", "two")]);
        let id = RequestId::from_headers(&two, true);
        assert!(id.as_str() != "one" && id.as_str() != "two");
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(RequestId::generate(), RequestId::generate());
    }

    #[tokio::test]
    async fn the_current_id_is_set_in_scope_and_carried_into_spawned_tasks() {
        assert!(current().is_none());
        let id = RequestId::generate();
        let seen = scope(id.clone(), async {
            tokio::spawn(carry(async { current() }))
                .await
                .expect("task")
        })
        .await;
        assert_eq!(seen, Some(id.clone()));
        let mut h = HeaderMap::new();
        scope(id.clone(), async { outgoing_headers(&mut h) }).await;
        assert_eq!(h.get(&X_REQUEST_ID), Some(&id.header()));
    }

    fn extracted(h: &HeaderMap) -> Option<String> {
        let cx = propagator().extract(&HeaderExtractor(h));
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| sc.trace_id().to_string())
    }

    #[test]
    fn only_a_well_formed_single_traceparent_is_read() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            extracted(&headers(&[("traceparent", ok)])).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert!(
                extracted(&headers(&[("traceparent", bad)])).is_none(),
                "{bad}"
            );
        }
        let two = headers(&[("traceparent", ok), ("traceparent", ok)]);
        assert!(extracted(&two).is_none());
    }
}
