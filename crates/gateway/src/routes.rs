//! The gateway's own routes under `{prefix}`, plus (on the admin listener) verify,
//! health, readiness and metrics.

use axum::body::Body;
use std::net::{IpAddr, SocketAddr};

use axum::Extension;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use sallyport_proto::{AuthErrorCode, SessionView};
use serde::Deserialize;

use crate::auth::{Authn, attach_cookies, is_page_navigation, no_store};
use crate::backend::BackendError;
use crate::error::{Asker, Kind, RequestError};
use crate::page::LoginContext;
use crate::state::SessionData;
use crate::{Gateway, Inner, guard};

/// Largest login/logout body accepted.
const FORM_LIMIT: usize = 16 * 1024;
/// Longest username or password accepted (longer ones are not sent to the backend).
const FIELD_LIMIT: usize = 1024;

const CLIENT_JS: &str = include_str!("../../../web/client.js");

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// `GET {prefix}/login`
pub(crate) async fn login_page(State(gw): State<Gateway>, Query(q): Query<NextQuery>) -> Response {
    let next = q
        .next
        .as_deref()
        .and_then(guard::safe_next)
        .unwrap_or_else(|| "/".into());
    // OpenID Connect: no password form; the login happens at the provider.
    let inner = gw.current();
    if let Some(oidc) = &inner.oidc {
        return crate::oidc::flow::start(&inner, oidc, &next);
    }
    render_login(&inner, StatusCode::OK, &next, "", None)
}

/// The login form (again, with `error`, after a failed login).
pub(crate) fn render_login(
    inner: &Inner,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let action = format!("{}/login", inner.settings.prefix);
    match inner.page.render(&LoginContext {
        action: &action,
        next,
        username,
        error,
    }) {
        Ok(html) => {
            let mut r = (
                status,
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::X_FRAME_OPTIONS, "DENY"),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
                    ),
                ],
                html,
            )
                .into_response();
            no_store(r.headers_mut());
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "login page failed to render");
            RequestError::LoginPageUnavailable.respond(inner, &Asker::api())
        }
    }
}

#[derive(Deserialize, Default)]
struct LoginInput {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.to_ascii_lowercase();
            v.starts_with("application/json") || v.contains("+json")
        })
}

/// Whether the caller is an HTML form (as opposed to a JSON client).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// The client's address as the gateway sees it (the TCP peer), for the backend.
fn peer_ip(conn: Option<&ConnectInfo<SocketAddr>>) -> Option<IpAddr> {
    conn.map(|c| c.0.ip())
}

/// `POST {prefix}/login`: read the request, ask the backend, seal the session, answer.
pub(crate) async fn login_submit(State(gw): State<Gateway>, req: Request<Body>) -> Response {
    let current = gw.current();
    let inner = &*current;
    let headers = req.headers().clone();
    let client = peer_ip(req.extensions().get::<ConnectInfo<SocketAddr>>());
    let login = match read_login(inner, req).await {
        Ok(login) => login,
        Err(e) => return e.respond(inner, &Asker::api()),
    };
    let now_ms = inner.clock.now_ms();
    let session = match login.check() {
        Ok(()) => sign_in(inner, &login, now_ms, client).await,
        Err(e) => Err(e),
    };
    let sealed = session.and_then(|data| Ok((seal(inner, &data, &headers, now_ms)?, data)));
    match sealed {
        Ok((cookies, data)) => logged_in(inner, &login, &data, cookies),
        Err(e) => e.respond(
            inner,
            &Asker::login(login.form, &login.next, &login.keep_user),
        ),
    }
}

/// A login request as read.
struct Login {
    /// An HTML form (answers are pages), else JSON.
    form: bool,
    /// Where to go after the login (a safe local path).
    next: String,
    username: String,
    password: String,
    /// The username shown again in the form after a failure.
    keep_user: String,
}

/// Refuses a cross-site login (login CSRF: a cross-site form must not log the victim
/// into the attacker's account), a password login at an oidc gateway, and a body that
/// is not a small JSON or form body with the fields.
async fn read_login(inner: &Inner, req: Request<Body>) -> Result<Login, RequestError> {
    if guard::is_cross_site(req.headers(), inner.expected_origin()) {
        return Err(RequestError::CrossSite);
    }
    if inner.oidc.is_some() {
        return Err(RequestError::PasswordLoginDisabled);
    }
    let json = is_json(req.headers());
    if !json && !is_form(req.headers()) {
        return Err(RequestError::UnsupportedMediaType);
    }
    let bytes = axum::body::to_bytes(req.into_body(), FORM_LIMIT)
        .await
        .map_err(|_| RequestError::LoginTooLarge)?;
    let input: LoginInput = if json {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(&bytes).map_err(|e| e.to_string())
    }
    .map_err(RequestError::MalformedLogin)?;
    let username = input.username.trim().to_owned();
    Ok(Login {
        form: !json,
        next: input
            .next
            .as_deref()
            .and_then(guard::safe_next)
            .unwrap_or_else(|| "/".into()),
        keep_user: username.chars().take(FIELD_LIMIT).collect(),
        username,
        password: input.password,
    })
}

impl Login {
    /// Both fields present and not over [`FIELD_LIMIT`] (longer ones never reach the
    /// backend).
    fn check(&self) -> Result<(), RequestError> {
        let bad = |s: &str| s.is_empty() || s.len() > FIELD_LIMIT;
        if bad(&self.username) || bad(&self.password) {
            return Err(RequestError::MissingCredentials);
        }
        Ok(())
    }
}

/// Asks the backend; a refusal is "incorrect username or password" whatever the
/// backend's reason.
async fn sign_in(
    inner: &Inner,
    login: &Login,
    now_ms: u64,
    client: Option<IpAddr>,
) -> Result<SessionData, RequestError> {
    let tokens = inner
        .backend
        .login(&login.username, &login.password, now_ms / 1000, client)
        .await
        .map_err(|e| match e {
            BackendError::InvalidCredentials | BackendError::Refused(_) => {
                RequestError::InvalidCredentials
            }
            BackendError::RateLimited(r) => RequestError::RateLimited {
                retry_after: r.unwrap_or(crate::renew::DEFAULT_RETRY_AFTER),
            },
            BackendError::Unavailable(why) => {
                tracing::warn!(%why, "login: backend unavailable");
                RequestError::LoginUnavailable
            }
        })?;
    inner.metrics.login("ok");
    Ok(SessionData::from_tokens(&tokens))
}

/// The new session's cookie.
fn seal(
    inner: &Inner,
    data: &SessionData,
    headers: &HeaderMap,
    now_ms: u64,
) -> Result<Vec<HeaderValue>, RequestError> {
    inner.cookies.encode(data, headers, now_ms).map_err(|e| {
        tracing::error!(error = %e, "session does not fit in the cookie");
        RequestError::SessionTooLarge
    })
}

/// The answer to a login: the session view for JSON, a 303 to `next` for a form.
fn logged_in(
    inner: &Inner,
    login: &Login,
    data: &SessionData,
    cookies: Vec<HeaderValue>,
) -> Response {
    let mut resp = if login.form {
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&login.next) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    } else {
        let view = data.view(
            inner.settings.expose_access_token,
            inner.settings.ttl.as_secs(),
        );
        axum::Json(view).into_response()
    };
    attach_cookies(resp.headers_mut(), cookies);
    resp
}

/// `POST {prefix}/logout`
pub(crate) async fn logout(
    State(gw): State<Gateway>,
    conn: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let current = gw.current();
    let inner = &*current;
    let client = peer_ip(conn.as_ref().map(|c| &c.0));
    if guard::is_cross_site(&headers, inner.expected_origin()) {
        return RequestError::CrossSite.respond(inner, &Asker::api());
    }
    let now_ms = inner.clock.now_ms();
    // Read even an expired-token session: it still has a refresh token to revoke.
    let loaded = inner.cookies.read::<SessionData>(&headers, now_ms);
    let mut provider_logout = None;
    if let Some(loaded) = loaded {
        let data = loaded.value;
        // OpenID Connect: RP-initiated logout at the provider, for a browser form.
        if let Some(oidc) = &inner.oidc {
            provider_logout = oidc.end_session_url(data.oidc.as_ref());
        }
        // An unreachable shared store does not fail the logout (see store.rs).
        inner.logged_out.remember(&data, now_ms).await;
        if let Some(rt) = data.refresh_token.clone() {
            let backend = inner.backend.clone();
            let metrics = inner.metrics.clone();
            let bound = backend.timeout();
            // Best effort and bounded: a slow backend must not keep the user signed in.
            let task = tokio::spawn(sallyport_observe::carry(async move {
                let outcome =
                    tokio::time::timeout(bound, backend.revoke(&rt, now_ms / 1000, client)).await;
                match outcome {
                    Ok(Ok(())) => metrics.logout("ok"),
                    Ok(Err(e)) => {
                        tracing::warn!(error = ?e, "logout: revocation failed");
                        metrics.logout("failed");
                    }
                    Err(_) => {
                        tracing::warn!("logout: revocation timed out");
                        metrics.logout("timeout");
                    }
                }
            }));
            let _ = task.await;
        }
    }
    let cleared = inner.cookies.clear(&headers);
    let form =
        is_form(&headers) || is_page_navigation(&Method::GET, &headers) && !is_json(&headers);
    let mut resp = if form {
        let mut r = StatusCode::SEE_OTHER.into_response();
        let to = provider_logout.unwrap_or_else(|| format!("{}/login", inner.settings.prefix));
        if let Ok(v) = HeaderValue::from_str(&to) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    no_store(resp.headers_mut());
    attach_cookies(resp.headers_mut(), cleared);
    resp.headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"cache\""));
    resp
}

/// `POST {prefix}/refresh`: forces a renewal (see [`crate::renew`]).
pub(crate) async fn refresh(
    State(gw): State<Gateway>,
    conn: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let current = gw.current();
    let inner = &*current;
    let client = peer_ip(conn.as_ref().map(|c| &c.0));
    if guard::is_cross_site(&headers, inner.expected_origin()) {
        return RequestError::CrossSite.respond(inner, &Asker::api());
    }
    let now_ms = inner.clock.now_ms();
    match inner.renew_on_request(&headers, now_ms, client).await {
        Ok(data) => {
            let mut resp = axum::Json(data.view(
                inner.settings.expose_access_token,
                inner.settings.ttl.as_secs(),
            ))
            .into_response();
            no_store(resp.headers_mut());
            if let Some(c) = inner.cookie_for(&data, &headers, now_ms) {
                attach_cookies(resp.headers_mut(), c);
            }
            resp
        }
        Err(e) => e.respond(inner, &Asker::new(Kind::Api, "/", Some(&headers))),
    }
}

/// `GET {prefix}/session`: read-only, never extends or re-seals the session.
pub(crate) async fn session(State(gw): State<Gateway>, headers: HeaderMap) -> Response {
    let current = gw.current();
    let inner = &*current;
    let now_ms = inner.clock.now_ms();
    let loaded = inner.live_session(&headers, now_ms).await;
    let view = match loaded {
        Some(l) => l.value.view(
            inner.settings.expose_access_token,
            inner.settings.ttl.as_secs(),
        ),
        None if inner.has_cookie(&headers) => {
            SessionView::logged_out(Some(AuthErrorCode::SessionExpired))
        }
        None => SessionView::logged_out(None),
    };
    let mut resp = axum::Json(view).into_response();
    no_store(resp.headers_mut());
    resp
}

/// `{prefix}/verify`, on the admin listener only: for nginx `auth_request`, Traefik
/// `forwardAuth`, Caddy `forward_auth`. 200 with `Authorization` and identity headers
/// (and a renewed cookie when it renewed), or 401 — or, with `admin.forward_auth` =
/// traefik or caddy, the 303 to the login page for an anonymous page navigation.
///
/// What it believes of the fronting proxy's headers, and why:
///
/// * the original method from `X-Original-Method` (nginx) *and* `X-Forwarded-Method`
///   (Traefik, Caddy): each proxy sets its own and passes the client's copy of the
///   other one through, so neither can be preferred. The request counts as
///   state-changing (CSRF-checked) if either names a non-safe method, or the verify
///   request itself is one, or it asks for an upgrade — a spoofed header can only make
///   the check stricter;
/// * the original URI from `X-Original-URI` and `X-Forwarded-Uri`, for the same
///   reason: the request is public only if every one present is a public path under
///   every reading ([`guard::public_path`]); a path that could be read differently is
///   refused with 400;
/// * `Origin`, `Sec-Fetch-Site`, `Host` and (with `trust_forwarded_headers`)
///   `X-Forwarded-Proto/-Host` for the CSRF origin, as on the public listener —
///   set `public_origin` so that nothing depends on them.
///
/// The token goes out as `Authorization` for the proxy to forward; the extra
/// `X-Auth-Request-Access-Token` copy (oauth2-proxy's name) only with
/// `session.expose_access_token`.
pub(crate) async fn verify(
    State(gw): State<Gateway>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let current = gw.current();
    let inner = &*current;
    let now_ms = inner.clock.now_ms();
    let claimed_methods = ["x-original-method", "x-forwarded-method"].map(|n| headers.get(n));
    let state_changing = !guard::is_safe_method(&method)
        || crate::proxy::is_upgrade(&headers)
        || claimed_methods
            .iter()
            .flatten()
            .any(|v| Method::from_bytes(v.as_bytes()).map_or(true, |m| !guard::is_safe_method(&m)));
    // A value that is not text is no path (`\` is refused by `public_path`).
    let uris = ["x-original-uri", "x-forwarded-uri"]
        .map(|n| headers.get(n).map(|v| v.to_str().unwrap_or("\\invalid")));
    let mut public = uris.iter().any(Option::is_some);
    for uri in uris.iter().flatten() {
        let path = uri.split(['?', '#']).next().unwrap_or_default();
        match guard::public_path(path, &inner.settings.public) {
            Some(p) => public &= p,
            None => return RequestError::BadPath.respond(inner, &Asker::api()),
        }
    }
    // For `next`: the header this proxy sets (Traefik and Caddy set X-Forwarded-Uri and
    // pass a client's X-Original-URI through; nginx the other way round).
    let own = if inner.settings.verify_redirects {
        "x-forwarded-uri"
    } else {
        "x-original-uri"
    };
    let original = headers
        .get(own)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uris.into_iter().flatten().next())
        .unwrap_or("/");
    let cross_site = state_changing && guard::is_cross_site(&headers, inner.expected_origin());

    if public {
        // As on the public listener: a session's still-valid token is attached,
        // nothing is renewed, a forged request gets no token.
        let session = crate::forward::public_session(inner, &headers, now_ms, cross_site).await;
        let mut resp = StatusCode::OK.into_response();
        if let Some(d) = &session {
            verified_headers(inner, resp.headers_mut(), d);
        }
        no_store(resp.headers_mut());
        return resp;
    }

    // Refusals first: a refused sub-request must not renew (see crate::renew).
    if cross_site {
        return crate::forward::refuse_cross_site(inner, &headers, now_ms)
            .await
            .respond(inner, &Asker::new(Kind::Api, original, Some(&headers)));
    }
    // The peer here is the reverse proxy asking, not the client: no address is sent.
    match inner.authenticate(&headers, now_ms, None).await {
        Authn::Session { data, write, .. } => {
            let mut resp = StatusCode::OK.into_response();
            verified_headers(inner, resp.headers_mut(), &data);
            no_store(resp.headers_mut());
            if write && let Some(c) = inner.cookie_for(&data, &headers, now_ms) {
                attach_cookies(resp.headers_mut(), c);
            }
            resp
        }
        // nginx's sub-request cannot redirect (nginx maps the 401 to the login page);
        // Traefik and Caddy hand the answer to the browser as it is, so with
        // `admin.forward_auth` naming one of them a page navigation gets the 303 to the
        // login page. A request any header calls state-changing never does.
        Authn::Refused(e) => {
            let kind = answer_as(inner, state_changing, &headers);
            e.respond(inner, &Asker::new(kind, original, Some(&headers)))
        }
    }
}

/// Whom verify answers a refusal for: a page navigation (the login redirect or the HTML
/// page) only when the proxy passes refusals to the browser and the request is a GET
/// navigation by its headers.
fn answer_as(inner: &Inner, state_changing: bool, headers: &HeaderMap) -> Kind {
    if inner.settings.verify_redirects && !state_changing {
        Kind::of(&Method::GET, headers)
    } else {
        Kind::Api
    }
}

/// The token and identity headers of a 200 from verify.
fn verified_headers(inner: &Inner, h: &mut HeaderMap, data: &SessionData) {
    if let Some(at) = &data.access_token {
        if let Some(v) = crate::proxy::bearer(at) {
            h.insert(inner.settings.auth_header.clone(), v);
        }
        if inner.settings.expose_access_token
            && let Ok(v) = HeaderValue::from_str(at)
        {
            h.insert(
                http::HeaderName::from_static("x-auth-request-access-token"),
                v,
            );
        }
    }
    if let Some(u) = data.identity() {
        crate::proxy::insert_identity(h, &inner.settings.header_policy, &u);
    }
}

/// `GET {prefix}/client.js`
pub(crate) async fn client_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CLIENT_JS,
    )
        .into_response()
}

/// The 404 text for a path under the prefix that is no route.
pub(crate) const NO_SUCH_ROUTE: &str = "no such gateway route";

/// Anything else under the prefix. A path that escapes the prefix (`/auth/../app`) gets
/// the same 400 as in the middleware, so no path-based decision differs by route.
pub(crate) async fn not_found(State(gw): State<Gateway>, uri: http::Uri) -> Response {
    if guard::canonical_path(uri.path()).is_none() {
        return RequestError::BadPath.respond(&gw.current(), &Asker::api());
    }
    RequestError::NotFound(NO_SUCH_ROUTE).respond(&gw.current(), &Asker::api())
}

/// Anything on the admin listener that is not an admin route.
pub(crate) async fn admin_not_found(State(gw): State<Gateway>) -> Response {
    RequestError::NotFound("no such admin route").respond(&gw.current(), &Asker::api())
}

/// `/healthz`: the process is alive.
pub(crate) async fn healthz() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], "ok\n").into_response()
}

/// `/readyz`: the backend answers.
pub(crate) async fn readyz(State(gw): State<Gateway>) -> Response {
    let inner = gw.current();
    if inner.backend.probe().await {
        ([(header::CACHE_CONTROL, "no-store")], "ready\n").into_response()
    } else {
        RequestError::NotReady.respond(&inner, &Asker::api())
    }
}

/// `/metrics`: Prometheus text format.
pub(crate) async fn metrics(State(gw): State<Gateway>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gw.current().metrics.render(),
    )
        .into_response()
}
