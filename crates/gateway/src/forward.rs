//! The middleware for everything that is not a gateway route: steps 1–7 of docs/design.md,
//! then the proxy, then (step 6) one renewal and one replay when upstream rejects an
//! idempotent request's token (the rule: [`crate::renew`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, StatusCode};
use tracing::Instrument;

use crate::auth::{Authn, attach_cookies};
use crate::error::{Asker, RequestError};
use crate::proxy::{self, Credentials, Rewrite};
use crate::renew::Replay;
use crate::state::SessionData;
use crate::{Inner, guard};

/// Every request that is not a gateway route ([`crate::Gateway::handler`]), under the
/// configuration `current`: screen it, then either forward it to a public path or admit
/// its session (CSRF, then authenticate and renew) and forward it with that.
pub(crate) async fn handle(
    current: Arc<Inner>,
    req: Request<Body>,
    client_addr: Option<SocketAddr>,
) -> Response {
    let inner = &*current;
    let now_ms = inner.clock.now_ms();
    let screened = match screen(inner, &req) {
        Ok(s) => s,
        Err(e) => return e.respond(inner, &Asker::api()),
    };
    if screened.public {
        let session = public_session(inner, req.headers(), now_ms, screened.forged).await;
        return forward(
            inner,
            req,
            client_addr,
            screened.upgrade,
            session.as_deref(),
            None,
        )
        .await;
    }
    match admit(inner, req.headers(), screened.forged, now_ms, client_addr).await {
        Ok(session) => {
            forward_with_session(inner, req, client_addr, screened.upgrade, session, now_ms).await
        }
        Err(e) => {
            let next = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            e.respond(inner, &Asker::of(req.method(), req.headers(), next))
        }
    }
}

/// What [`screen`] found out about a request.
struct Screened {
    /// A public path under every reading.
    public: bool,
    /// An allowed protocol upgrade.
    upgrade: bool,
    /// Cross-site and state-changing (an upgrade counts as state-changing).
    forged: bool,
}

/// Refuses what no session can make acceptable, and classifies the rest.
fn screen(inner: &Inner, req: &Request<Body>) -> Result<Screened, RequestError> {
    // A path that upstream could read differently (dot-segments, encoded slashes) is
    // refused outright; one is public only if every reading of it is (`;` parameters,
    // percent-decoding: see `guard::public_path`).
    let public = guard::public_path(req.uri().path(), &inner.settings.public)
        .ok_or(RequestError::BadPath)?;
    // Only the configured upgrade protocols (WebSocket by default) reach upstream;
    // `h2c` and the like are refused before anything else happens.
    let upgrade = proxy::is_upgrade(req.headers());
    if upgrade && !proxy::upgrade_allowed(req.headers(), &inner.settings.allowed_upgrades) {
        return Err(RequestError::UpgradeRefused);
    }
    // Step 7 for upgrades: a WebSocket handshake is a GET, but a cross-site page opening
    // one with the user's cookie is the same attack as a forged POST (CSWSH).
    let forged = (upgrade || !guard::is_safe_method(req.method()))
        && guard::is_cross_site(req.headers(), inner.expected_origin());
    Ok(Screened {
        public,
        upgrade,
        forged,
    })
}

/// A request's session on a protected path, as [`admit`] lets it through.
struct Admitted {
    data: Arc<SessionData>,
    /// The response must set the cookie (renewed or re-sealed).
    write: bool,
    /// Renewed during this request.
    renewed: bool,
}

/// Steps 7, then 2–5 (`headers`: the request's; a `&Request` is not `Sync`): a forged request is refused before anything can renew (its
/// response would not carry the new cookie, see [`crate::renew`]); then the session,
/// renewed when due.
async fn admit(
    inner: &Inner,
    headers: &HeaderMap,
    forged: bool,
    now_ms: u64,
    client_addr: Option<SocketAddr>,
) -> Result<Admitted, RequestError> {
    if forged {
        // Boxed: rare, and it would add its size to every request's future.
        return Err(Box::pin(refuse_cross_site(inner, headers, now_ms)).await);
    }
    match inner
        .authenticate(headers, now_ms, client_addr.map(|a| a.ip()))
        .await
    {
        Authn::Session {
            data,
            write,
            renewed,
        } => Ok(Admitted {
            data,
            write,
            renewed,
        }),
        Authn::Refused(e) => Err(e),
    }
}

/// Forwards with the session's token, replays once after upstream's 401 (rule 5 of
/// [`crate::renew`]), and sets the cookie when the session changed and was not logged
/// out meanwhile.
async fn forward_with_session(
    inner: &Inner,
    req: Request<Body>,
    client_addr: Option<SocketAddr>,
    upgrade: bool,
    session: Admitted,
    now_ms: u64,
) -> Response {
    let Admitted {
        mut data,
        write,
        renewed,
    } = session;
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
    let sent = Some(&*data);
    let mut resp = forward(inner, req, client_addr, upgrade, sent, cookies.as_deref()).await;

    if resp.status() == StatusCode::UNAUTHORIZED
        && let Some(replay) = replay
    {
        // Boxed: rare, and a second upstream call inline would double the size of every
        // request's future.
        let replayed = Box::pin(async {
            let new = inner
                .renew_after_upstream_401(&data, renewed, client_addr.map(|a| a.ip()))
                .await?;
            let cookies = inner.cookie_for(&new, &replay.headers, now_ms);
            let resp = forward(
                inner,
                replay.into_request(),
                client_addr,
                false,
                Some(&new),
                cookies.as_deref(),
            )
            .await;
            Some((new, cookies, resp))
        })
        .await;
        if let Some((new, new_cookies, new_resp)) = replayed {
            (data, cookies, resp) = (Arc::new(new), new_cookies, new_resp);
        }
    }

    // Re-check at response time: a logout that happened while this request was upstream
    // must not be undone by its response.
    if let Some(c) = cookies
        && !inner.logged_out.seen_here(&data, inner.clock.now_ms())
    {
        attach_cookies(resp.headers_mut(), c);
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
) -> Option<Arc<SessionData>> {
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
    // The upstream call's span: the `traceparent` upstream gets names it as the parent.
    let span = tracing::info_span!(
        "upstream",
        otel.name = "upstream",
        otel.kind = "client",
        http.response.status_code = tracing::field::Empty,
    );
    let rw = Rewrite {
        settings: &inner.settings,
        client: &inner.client,
        cookies: &inner.cookies,
        client_addr,
        upgrade,
        credentials,
        new_cookie,
        span: &span,
    };
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
        Err(e) => RequestError::Upstream(e).respond(inner, &Asker::api()),
    }
}
