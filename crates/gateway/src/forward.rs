//! The middleware for everything that is not a gateway route: steps 1–7 of docs/design.md,
//! then the proxy, then (step 6) one renewal and one replay when upstream rejects an
//! idempotent request's token.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tracing::Instrument;

use crate::auth::{Authn, attach_cookies};
use crate::error::{Asker, RequestError};
use crate::proxy::{self, Credentials, Rewrite};
use crate::state::SessionData;
use crate::{Gateway, Inner, guard};

/// The fallback handler.
pub async fn handle(State(gw): State<Gateway>, req: Request<Body>) -> Response {
    let current = gw.current();
    let inner = &*current;
    let now_ms = inner.clock.now_ms();
    let client_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // A path that upstream could read differently (dot-segments, encoded slashes) is
    // refused outright; one is public only if every reading of it is (`;` parameters,
    // percent-decoding: see `guard::public_path`).
    let public = match guard::public_path(req.uri().path(), &inner.settings.public) {
        Some(p) => p,
        None => return RequestError::BadPath.respond(inner, &Asker::api()),
    };
    // Only the configured upgrade protocols (WebSocket by default) reach upstream;
    // `h2c` and the like are refused before anything else happens.
    let upgrade = proxy::is_upgrade(req.headers());
    if upgrade && !proxy::upgrade_allowed(req.headers(), &inner.settings.allowed_upgrades) {
        return RequestError::UpgradeRefused.respond(inner, &Asker::api());
    }
    // Step 7 for upgrades: a WebSocket handshake is a GET, but a cross-site page opening
    // one with the user's cookie is the same attack as a forged POST (CSWSH).
    let forged = (upgrade || !guard::is_safe_method(req.method()))
        && guard::is_cross_site(req.headers(), inner.expected_origin());

    if public {
        let session = public_session(inner, req.headers(), now_ms, forged).await;
        return forward(inner, req, client_addr, upgrade, session.as_ref(), None).await;
    }

    // Step 7 (CSRF) is decided before anything can renew: a refused request must not
    // spend the refresh token, since its response would not carry the new cookie.
    if forged {
        let next = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let asker = Asker::of(req.method(), req.headers(), next);
        return refuse_cross_site(inner, req.headers(), now_ms)
            .await
            .respond(inner, &asker);
    }

    let authn = inner
        .authenticate(req.headers(), now_ms, client_addr.map(|a| a.ip()))
        .await;
    let (mut data, mut write, renewed) = match authn {
        Authn::Session {
            data,
            write,
            renewed,
        } => (*data, write, renewed),
        Authn::Refused(e) => {
            let next = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            return e.respond(inner, &Asker::of(req.method(), req.headers(), next));
        }
    };

    let mut cookies = if write {
        inner.cookie_for(&data, req.headers(), now_ms)
    } else {
        None
    };
    let (req, replay) = match Replay::prepare(req, upgrade, inner.settings.replay_body_limit).await
    {
        Ok(pair) => pair,
        Err(e) => {
            let mut resp = e.respond(inner, &Asker::api());
            // Still deliver a renewal this request made.
            if let Some(c) = cookies {
                attach_cookies(resp.headers_mut(), c);
            }
            return resp;
        }
    };
    let mut resp = forward(
        inner,
        req,
        client_addr,
        upgrade,
        Some(&data),
        cookies.as_deref(),
    )
    .await;

    // Step 6: upstream says the token is not good although we thought it was.
    if resp.status() == StatusCode::UNAUTHORIZED
        && !renewed
        && let Some(replay) = replay
    {
        let mut renewed_data = data.clone();
        if inner
            .renew(&mut renewed_data, client_addr.map(|a| a.ip()))
            .await
            .is_ok()
        {
            inner.metrics.proxied("replayed");
            data = renewed_data;
            write = true;
            cookies = inner.cookie_for(&data, &replay.headers, now_ms);
            resp = forward(
                inner,
                replay.into_request(),
                client_addr,
                false,
                Some(&data),
                cookies.as_deref(),
            )
            .await;
        }
    }

    if write {
        // Re-check at response time: a logout that happened while this request was
        // upstream must not be undone by its response.
        if let Some(c) = cookies
            && !inner.logged_out.seen_here(&data, inner.clock.now_ms())
        {
            attach_cookies(resp.headers_mut(), c);
        }
    }
    resp
}

/// Step 1: the session a request to a public path takes upstream. An existing
/// session's token is attached while it is still valid, but nothing is renewed or written
/// here: public paths are typically static assets, and a response that sets the session
/// cookie must not be cacheable (PP-16). A forged (cross-site state-changing) request
/// gets none (CSRF). Shared by the proxy and `/verify`.
pub(crate) async fn public_session(
    inner: &Inner,
    headers: &HeaderMap,
    now_ms: u64,
    forged: bool,
) -> Option<SessionData> {
    if forged {
        return None;
    }
    inner.unexpired_session(headers, now_ms).await
}

/// Step 7's refusal of a forged request to a protected path, decided without renewing:
/// 403 for a session, else the refusal for no session. Shared by the proxy and `/verify`.
pub(crate) async fn refuse_cross_site(
    inner: &Inner,
    headers: &HeaderMap,
    now_ms: u64,
) -> RequestError {
    if inner.has_session(headers, now_ms).await {
        RequestError::CrossSite
    } else {
        RequestError::NoSession {
            code: sallyport_proto::AuthErrorCode::SessionExpired,
            clear: false,
        }
    }
}

/// Rewrites and sends one request; upstream failures become plain 502/504 pages.
async fn forward(
    inner: &Inner,
    mut req: Request<Body>,
    client_addr: Option<SocketAddr>,
    upgrade: bool,
    data: Option<&SessionData>,
    new_cookie: Option<&[HeaderValue]>,
) -> Response {
    let user = if inner.settings.identity_headers {
        data.and_then(SessionData::identity)
    } else {
        None
    };
    let credentials = data.and_then(|d| {
        d.access_token.as_deref().map(|t| Credentials {
            access_token: t,
            user: user.as_ref(),
        })
    });
    let rw = Rewrite {
        settings: &inner.settings,
        client: &inner.client,
        cookies: &inner.cookies,
        client_addr,
        upgrade,
        credentials,
        new_cookie,
    };
    // The upstream call's span: the `traceparent` upstream gets names it as the parent.
    let span = tracing::info_span!(
        "upstream",
        otel.name = "upstream",
        otel.kind = "client",
        http.response.status_code = tracing::field::Empty,
    );
    let sent = async {
        proxy::rewrite(&mut req, &rw)?;
        proxy::send(&inner.client, &inner.settings, req).await
    }
    .instrument(span.clone())
    .await;
    if let Ok(r) = &sent {
        sallyport_observe::record_status(&span, r.status());
    }
    match sent {
        Ok(mut r) => {
            inner.metrics.proxied("ok");
            // An app that writes the session cookie itself (same secret): its response
            // must be as uncacheable as the gateway's own.
            if proxy::sets_session_cookie(r.headers(), &inner.cookies) {
                proxy::uncacheable(r.headers_mut());
            }
            r
        }
        Err(e) => {
            inner.metrics.proxied(match e {
                proxy::UpstreamError::Timeout => "timeout",
                proxy::UpstreamError::Unreachable(_) => "bad_gateway",
            });
            e.into_response()
        }
    }
}

/// A copy of a request that can be sent again.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Replay {
    /// Splits off a replayable copy when the request is idempotent (GET/HEAD/OPTIONS or
    /// `Idempotency-Key`) and not an `upgrade`. A body is buffered (chunked or not) up to
    /// `limit` bytes; a larger one — declared or discovered while reading — streams on
    /// untouched (the part already read goes first) and the request is not replayed.
    async fn prepare(
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

    fn into_request(self) -> Request<Body> {
        let mut r = Request::new(Body::from(self.body));
        *r.method_mut() = self.method;
        *r.uri_mut() = self.uri;
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers;
        r
    }
}
