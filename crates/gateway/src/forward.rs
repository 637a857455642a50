//! The middleware for everything that is not a gateway route: steps 1–7 of DESIGN.md,
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

use crate::auth::{Authn, attach_cookies};
use crate::proxy::{self, Credentials, Rewrite};
use crate::state::SessionData;
use crate::{Gateway, Inner, guard};

/// Largest body of an idempotent request that is kept for a replay after upstream's 401.
const REPLAY_BODY_LIMIT: u64 = 64 * 1024;

/// The fallback handler.
pub async fn handle(State(gw): State<Gateway>, req: Request<Body>) -> Response {
    let inner = &*gw.inner;
    let now_ms = inner.clock.now_ms();
    let client_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let public = inner.settings.public.is_match(req.uri().path());
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();

    // Step 7 for upgrades: a WebSocket handshake is a GET, but a cross-site page opening
    // one with the user's cookie is the same attack as a forged POST (CSWSH).
    let state_changing = !guard::is_safe_method(req.method()) || proxy::is_upgrade(req.headers());
    let cross_site = guard::is_cross_site(req.headers(), inner.expected_origin());

    if public {
        return forward_public(
            inner,
            req,
            client_addr,
            now_ms,
            state_changing && cross_site,
        )
        .await;
    }

    let authn = inner.authenticate(req.headers(), now_ms).await;
    let (mut data, mut write, renewed) = match authn {
        Authn::Session {
            data,
            write,
            renewed,
        } => (*data, write, renewed),
        Authn::Anonymous { code, clear } => {
            return inner.unauthenticated(
                req.method(),
                req.headers(),
                &path_and_query,
                code,
                clear,
            );
        }
        Authn::Unavailable { retry_after } => {
            return inner.unavailable(req.method(), req.headers(), retry_after);
        }
    };

    // Step 7: CSRF for state-changing requests authenticated by the cookie.
    if state_changing && cross_site {
        return inner.forbidden_cross_site();
    }

    let mut cookies = if write {
        inner.cookie_for(&data, req.headers(), now_ms)
    } else {
        None
    };
    let (req, replay) = match Replay::prepare(req).await {
        Ok(pair) => pair,
        Err(resp) => return resp,
    };
    let mut resp = forward(inner, req, client_addr, Some(&data), cookies.as_deref()).await;

    // Step 6: upstream says the token is not good although we thought it was.
    if resp.status() == StatusCode::UNAUTHORIZED
        && !renewed
        && let Some(replay) = replay
    {
        let mut renewed_data = data.clone();
        if inner.renew(&mut renewed_data, now_ms / 1000).await.is_ok() {
            inner.metrics.proxied("replayed");
            data = renewed_data;
            write = true;
            cookies = inner.cookie_for(&data, &replay.headers, now_ms);
            resp = forward(
                inner,
                replay.into_request(),
                client_addr,
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
            && !logged_out(inner, &data)
        {
            attach_cookies(resp.headers_mut(), c);
        }
    }
    resp
}

/// Step 1: a public path passes with or without a session. An existing session's token
/// is attached while it is still valid, but nothing is renewed or written here: public
/// paths are typically static assets, and a response that sets the session cookie must
/// not be cacheable (PP-16). A cross-site state-changing request gets no token (CSRF).
async fn forward_public(
    inner: &Inner,
    req: Request<Body>,
    client_addr: Option<SocketAddr>,
    now_ms: u64,
    forged: bool,
) -> Response {
    let session = if forged {
        None
    } else {
        inner
            .read_session(req.headers(), now_ms)
            .map(|l| l.value)
            .filter(|d| d.expires_at().is_none_or(|exp| now_ms / 1000 < exp))
    };
    forward(inner, req, client_addr, session.as_ref(), None).await
}

fn logged_out(inner: &Inner, data: &SessionData) -> bool {
    data.logout_key()
        .is_some_and(|k| inner.logged_out.contains_key(k))
}

/// Rewrites and sends one request; upstream failures become plain 502/504 pages.
async fn forward(
    inner: &Inner,
    mut req: Request<Body>,
    client_addr: Option<SocketAddr>,
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
    let pairs = new_cookie.map(cookie_pairs);
    let rw = Rewrite {
        settings: &inner.settings,
        client_addr,
        credentials,
        new_cookie: pairs.as_deref(),
    };
    if let Err(e) = proxy::rewrite(&mut req, &rw) {
        inner.metrics.proxied("bad_gateway");
        return e.into_response();
    }
    match proxy::send(&inner.client, &inner.settings, req).await {
        Ok(r) => {
            inner.metrics.proxied("ok");
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

/// `name=value` pairs of the non-expired cookies among `Set-Cookie` values.
fn cookie_pairs(set_cookies: &[HeaderValue]) -> Vec<(String, String)> {
    set_cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|s| !s.contains("Max-Age=0"))
        .filter_map(|s| {
            let first = s.split(';').next()?;
            let (n, v) = first.split_once('=')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect()
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
    /// `Idempotency-Key`), not an upgrade, and its body is small and of known length.
    async fn prepare(req: Request<Body>) -> Result<(Request<Body>, Option<Replay>), Response> {
        let idempotent =
            guard::is_safe_method(req.method()) || req.headers().contains_key("idempotency-key");
        if !idempotent || proxy::is_upgrade(req.headers()) {
            return Ok((req, None));
        }
        let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
        let len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let small = len.is_some_and(|n| n <= REPLAY_BODY_LIMIT);
        if !http_body::Body::is_end_stream(req.body()) && (!small || chunked) {
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
        let (parts, body) = req.into_parts();
        let limited = http_body_util::Limited::new(body, REPLAY_BODY_LIMIT as usize);
        let bytes = match limited.collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "request body could not be read\n",
                )
                    .into_response());
            }
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
