//! The copy of a request kept so that it can be sent again after upstream's 401 (step 6
//! of the rule in [`crate::renew`]).

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, Uri, Version};
use http_body_util::BodyExt;

use crate::error::RequestError;
use crate::guard;

/// A copy of a request that can be sent again.
pub(crate) struct Replay {
    /// The request's headers (for the new cookie).
    method: Method,
    uri: Uri,
    version: Version,
    pub(crate) headers: HeaderMap,
    body: Bytes,
}

impl Replay {
    /// Splits off a replayable copy when the request is idempotent (GET/HEAD/OPTIONS or
    /// `Idempotency-Key`) and not an `upgrade`. A body is buffered (chunked or not) up to
    /// `limit` bytes; a larger one — declared or discovered while reading — streams on
    /// untouched (the part already read goes first) and the request is not replayed.
    pub(crate) async fn prepare(
        req: Request<Body>,
        upgrade: bool,
        limit: usize,
    ) -> Result<(Request<Body>, Option<Replay>), RequestError> {
        let idempotent =
            guard::is_safe_method(req.method()) || req.headers().contains_key("idempotency-key");
        if !idempotent || upgrade {
            return Ok((req, None));
        }
        if http_body::Body::is_end_stream(req.body()) {
            // A request without a body (the common GET): nothing to buffer.
            let replay = Replay {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
                body: Bytes::new(),
            };
            return Ok((req, Some(replay)));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Ok((req, None));
        }
        // Boxed: the buffering loop is rare and large, and would otherwise make the
        // future of every proxied request (moved whole into hyper's connection state)
        // that much larger.
        Box::pin(buffer(req, limit)).await
    }

    /// The request to send again.
    pub(crate) fn into_request(self) -> Request<Body> {
        let mut r = Request::new(Body::from(self.body));
        *r.method_mut() = self.method;
        *r.uri_mut() = self.uri;
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers;
        r
    }
}

/// Reads `req`'s body into memory for a replay, up to `limit` bytes (see
/// [`Replay::prepare`]).
async fn buffer(
    req: Request<Body>,
    limit: usize,
) -> Result<(Request<Body>, Option<Replay>), RequestError> {
    let (parts, mut body) = req.into_parts();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(RequestError::BodyUnreadable);
        };
        // Trailers are not replayed (HTTP/1.1 upstreams rarely see them anyway).
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        chunks.push(data);
        if total > limit {
            // Too large to keep: send what was read, then the rest, once.
            let head = futures_util::stream::iter(chunks.into_iter().map(Ok));
            let stream = futures_util::StreamExt::chain(head, body.into_data_stream());
            return Ok((Request::from_parts(parts, Body::from_stream(stream)), None));
        }
    }
    let bytes = if chunks.len() == 1 {
        chunks.pop().unwrap_or_default()
    } else {
        let mut all = bytes::BytesMut::with_capacity(total);
        for c in &chunks {
            all.extend_from_slice(c);
        }
        all.freeze()
    };
    let replay = Replay {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
        body: bytes.clone(),
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), Some(replay)))
}
