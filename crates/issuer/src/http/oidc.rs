//! The OpenID provider's browser endpoints: `/oauth/authorize` (code flow with PKCE,
//! a server-rendered login form) and `/oauth/logout` (RP-initiated logout).
//!
//! Errors found before the client and its redirect URI are known to be valid are shown
//! on a page, never redirected (an open redirector would hand codes or errors to any
//! site); later errors go back to the client's redirect URI with `error`, `state` and
//! `iss` (RFC 9207, so a client talking to several providers cannot be confused).

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::Ctx;
use crate::oidc::AuthorizationRequest;
use crate::token::RefreshSecret;
use crate::{Issuer, LoginError};
use sallyport_serve::html::escape as esc;

/// Cookie holding the login form's CSRF token (double submit: the form must carry
/// the same value). `SameSite=Strict`, so a cross-site form post never carries it.
const CSRF_COOKIE: &str = "sallyport_authorize_csrf";
/// Scopes the provider knows; others are ignored (RFC 6749 §3.3 lets the server
/// grant less than asked).
pub(crate) const SCOPES: &[&str] = &["openid", "profile", "offline_access"];
const MAX_STATE_CHARS: usize = 2048;
const MAX_NONCE_CHARS: usize = 512;
const MAX_SCOPE_CHARS: usize = 1024;

/// Parameters of a request, each at most once (RFC 6749 §3.1).
type Params = HashMap<String, String>;

fn parse_params(raw: &[u8]) -> Result<Params, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(raw).map_err(|_| "malformed parameters".to_owned())?;
    let mut map = HashMap::new();
    for (k, v) in pairs {
        if map.contains_key(&k) {
            return Err(format!("parameter `{k}` given more than once"));
        }
        map.insert(k, v);
    }
    Ok(map)
}

fn param<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// A refused authorization request.
enum AuthzError {
    /// Shown to the user: the redirect URI is not (yet) trusted.
    Page(StatusCode, String),
    /// Sent back to the client.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

/// What a valid authorization request carries besides [`AuthorizationRequest`].
struct Validated {
    request: AuthorizationRequest,
    state: Option<String>,
    login_hint: Option<String>,
}

fn validate(issuer: &Issuer, p: &Params) -> Result<Validated, AuthzError> {
    let page = |msg: &str| AuthzError::Page(StatusCode::BAD_REQUEST, msg.to_owned());
    let client_id = param(p, "client_id").ok_or_else(|| page("The request has no client_id."))?;
    let settings = issuer.settings();
    let client = settings
        .clients
        .client(client_id)
        .ok_or_else(|| page("This application is not registered with the sign-in service."))?;
    if client.redirect_uris.is_empty() {
        return Err(page(
            "This application is not registered for sign-in here (it has no redirect URIs).",
        ));
    }
    let redirect_uri =
        param(p, "redirect_uri").ok_or_else(|| page("The request has no redirect_uri."))?;
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(page(
            "The redirect_uri is not registered for this application.",
        ));
    }
    // From here on errors go back to the client.
    let state = param(p, "state").map(str::to_owned);
    let fail = |error: &'static str, description: &str| AuthzError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state
            .clone()
            .filter(|s| s.chars().count() <= MAX_STATE_CHARS),
        error,
        description: description.to_owned(),
    };
    if state
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_STATE_CHARS)
    {
        return Err(fail("invalid_request", "state is too long"));
    }
    if p.contains_key("request") {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if p.contains_key("request_uri") {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match param(p, "response_type") {
        None => return Err(fail("invalid_request", "response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if param(p, "response_mode").is_some_and(|m| m != "query") {
        return Err(fail(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    let Some(challenge) = param(p, "code_challenge") else {
        return Err(fail(
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method=S256",
        ));
    };
    if param(p, "code_challenge_method") != Some("S256") {
        return Err(fail(
            "invalid_request",
            "code_challenge_method must be S256 (plain is not accepted)",
        ));
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(fail(
            "invalid_request",
            "code_challenge must be 43 base64url characters (S256)",
        ));
    }
    let requested = param(p, "scope").unwrap_or("");
    if requested.len() > MAX_SCOPE_CHARS {
        return Err(fail("invalid_scope", "scope is too long"));
    }
    let mut scope: Vec<&str> = Vec::new();
    for s in requested.split(' ') {
        if SCOPES.contains(&s) && !scope.contains(&s) {
            scope.push(s);
        }
    }
    let nonce = param(p, "nonce").map(str::to_owned);
    if nonce
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NONCE_CHARS)
    {
        return Err(fail("invalid_request", "nonce is too long"));
    }
    if param(p, "prompt").is_some_and(|pr| pr.split(' ').any(|x| x == "none")) {
        // No browser session is kept here, so a login is always needed.
        return Err(fail("login_required", "the user must sign in"));
    }
    Ok(Validated {
        request: AuthorizationRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scope: scope.join(" "),
            nonce,
            code_challenge: challenge.to_owned(),
        },
        state,
        login_hint: param(p, "login_hint").map(|h| h.chars().take(256).collect()),
    })
}

/// `redirect_uri` plus `params` in its query (appended to a query it already has).
fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let location = if query.is_empty() {
        // Nothing to add (a post-logout redirect without `state`): the URI as registered.
        redirect_uri.to_owned()
    } else {
        let sep = if redirect_uri.contains('?') { '&' } else { '?' };
        format!("{redirect_uri}{sep}{query}")
    };
    let mut resp = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        // Registered URIs are validated URLs and the query is percent-encoded.
        Err(_) => {
            return page_response(StatusCode::INTERNAL_SERVER_ERROR, "Error", "Bad redirect.");
        }
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn authz_error(issuer: &Issuer, err: AuthzError) -> Response {
    match err {
        AuthzError::Page(status, msg) => page_response(status, "Sign-in request refused", &msg),
        AuthzError::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            issuer.metrics().authorization("request_refused");
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &state {
                params.push(("state", s));
            }
            let settings = issuer.settings();
            params.push(("iss", settings.issuer.as_str()));
            redirect_to(&redirect_uri, &params)
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The CSRF token of this browser: the cookie's if it looks like ours (several tabs
/// signing in at once keep working), else a new one.
fn csrf_token(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(existing) =
        cookie(headers, CSRF_COOKIE).filter(|v| RefreshSecret::parse(v).is_some())
    {
        return Some((existing, false));
    }
    RefreshSecret::generate().ok().map(|s| (s.encode(), true))
}

fn set_csrf_cookie(issuer: &Issuer, resp: &mut Response, token: &str) {
    let secure = if issuer.settings().issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{CSRF_COOKIE}={token}; Path=/oauth/authorize; Max-Age=1800; HttpOnly; SameSite=Strict{secure}"
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `GET /oauth/authorize`: validates the request and shows the login form.
#[utoipa::path(get, path = "/oauth/authorize", tag = "openid",
    params(
        ("response_type" = String, Query, description = "`code`"),
        ("client_id" = String, Query, description = "A registered client"),
        ("redirect_uri" = String, Query, description = "One of its `redirect_uris`, exactly"),
        ("code_challenge" = String, Query, description = "PKCE S256 challenge (required)"),
        ("code_challenge_method" = String, Query, description = "`S256`"),
        ("scope" = Option<String>, Query, description = "`openid`, `profile`, `offline_access`"),
        ("state" = Option<String>, Query, description = "Returned with the code"),
        ("nonce" = Option<String>, Query, description = "Put in the ID token"),
    ),
    responses(
        (status = 200, description = "The login page", content_type = "text/html"),
        (status = 303, description = "An error (`error`, `state`, `iss`) at the registered redirect URI"),
        (status = 400, description = "Unknown client or unregistered redirect URI: a page, never a redirect", content_type = "text/html"),
    ))]
pub(crate) async fn authorize_get(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match parse_params(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(msg) => return page_response(StatusCode::BAD_REQUEST, "Sign-in request refused", &msg),
    };
    let v = match validate(&issuer, &params) {
        Ok(v) => v,
        Err(e) => return authz_error(&issuer, e),
    };
    let Some((csrf, new)) = csrf_token(&headers) else {
        return page_response(StatusCode::SERVICE_UNAVAILABLE, "Error", "Try again.");
    };
    let hint = v.login_hint.clone().unwrap_or_default();
    let mut resp = login_page(StatusCode::OK, &v, &csrf, &hint, None);
    if new {
        set_csrf_cookie(&issuer, &mut resp, &csrf);
    }
    resp
}

/// `POST /oauth/authorize`: the login form. Same checks as the JSON login (limits,
/// client address), plus CSRF; on success a code goes to the redirect URI.
#[utoipa::path(post, path = "/oauth/authorize", tag = "openid",
    request_body(content_type = "application/x-www-form-urlencoded", description = "The authorization request's parameters, `username`, `password` and the page's `csrf`"),
    responses(
        (status = 303, description = "`code`, `state`, `iss` (or an error) at the redirect URI"),
        (status = 401, description = "Wrong username or password: the form again", content_type = "text/html"),
        (status = 403, description = "CSRF check failed, or the account is disabled", content_type = "text/html"),
        (status = 429, description = "Too many failed logins, see `Retry-After`", content_type = "text/html"),
    ))]
pub(crate) async fn authorize_post(
    State(issuer): State<Issuer>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = not_a_form(&headers, "Sign-in request refused") {
        return refused;
    }
    let params = match parse_params(&body) {
        Ok(p) => p,
        Err(msg) => return page_response(StatusCode::BAD_REQUEST, "Sign-in request refused", &msg),
    };
    let v = match validate(&issuer, &params) {
        Ok(v) => v,
        Err(e) => return authz_error(&issuer, e),
    };
    let username = params.get("username").map(String::as_str).unwrap_or("");
    // A form posted from another site: refused before any password work.
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
        || headers.get(header::ORIGIN).is_some_and(|o| {
            o.to_str()
                .ok()
                .is_none_or(|o| o != origin_of(&issuer.settings().issuer))
        });
    let form_token = params.get("csrf").map(String::as_str).unwrap_or("");
    let cookie_token = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    let csrf_ok = !cookie_token.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(
            cookie_token.as_bytes(),
            form_token.as_bytes(),
        )
        .is_ok();
    if cross_site || !csrf_ok {
        issuer.metrics().authorization("csrf_refused");
        let Some((csrf, new)) = csrf_token(&headers) else {
            return page_response(StatusCode::SERVICE_UNAVAILABLE, "Error", "Try again.");
        };
        let mut resp = login_page(
            StatusCode::FORBIDDEN,
            &v,
            &csrf,
            username,
            Some("Your sign-in form expired. Please sign in again."),
        );
        if new {
            set_csrf_cookie(&issuer, &mut resp, &csrf);
        }
        return resp;
    }
    let password = params.get("password").map(String::as_str).unwrap_or("");
    let user = match issuer.authenticate_password(username, password, &ctx).await {
        Ok(user) => user,
        Err(err) => {
            let (status, msg, retry) = match err {
                LoginError::InvalidCredentials => (
                    StatusCode::UNAUTHORIZED,
                    "Invalid username or password.".to_owned(),
                    None,
                ),
                LoginError::Disabled => (
                    StatusCode::FORBIDDEN,
                    "This account is disabled.".to_owned(),
                    None,
                ),
                LoginError::RateLimited(secs) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many failed attempts. Try again in {secs} seconds."),
                    Some(secs),
                ),
                LoginError::InvalidRequest(msg) => (StatusCode::BAD_REQUEST, msg, None),
                LoginError::Internal(e) => {
                    let overloaded = matches!(e, crate::Error::Overloaded);
                    if !overloaded {
                        tracing::error!(err = %e, "login form failed");
                    }
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The sign-in service is busy. Try again shortly.".to_owned(),
                        Some(1),
                    )
                }
            };
            let mut resp = login_page(status, &v, form_token, username, Some(&msg));
            if let Some(secs) = retry {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(super::LOGIN_CHALLENGE),
                );
            }
            return resp;
        }
    };
    let code = match issuer.issue_code(&v.request, &user, &ctx).await {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(%err, "could not store an authorization code");
            return authz_error(
                &issuer,
                AuthzError::Redirect {
                    redirect_uri: v.request.redirect_uri.clone(),
                    state: v.state.clone(),
                    error: "temporarily_unavailable",
                    description: "try again".into(),
                },
            );
        }
    };
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &v.state {
        params.push(("state", s));
    }
    let settings = issuer.settings();
    params.push(("iss", settings.issuer.as_str()));
    redirect_to(&v.request.redirect_uri, &params)
}

/// A `415` page (titled `title`) unless the request body is a form.
fn not_a_form(headers: &HeaderMap, title: &str) -> Option<Response> {
    (!super::content_type_is(headers, "application/x-www-form-urlencoded")).then(|| {
        page_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            title,
            "Expected a form submission.",
        )
    })
}

/// `scheme://host[:port]` of a URL (what browsers send as `Origin`).
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// `GET /oauth/logout` (and the same parameters as a `POST` form): RP-initiated
/// logout. `id_token_hint` is required (the issuer keeps no browser session, so the
/// hint is the only way to know which session ends); no confirmation is asked (see
/// `docs/issuer.md`).
#[utoipa::path(get, path = "/oauth/logout", tag = "openid",
    params(
        ("id_token_hint" = String, Query, description = "An ID token of the session (expired is fine)"),
        ("post_logout_redirect_uri" = Option<String>, Query, description = "Registered for the hint's client"),
        ("state" = Option<String>, Query, description = "Returned to the post-logout URI"),
        ("client_id" = Option<String>, Query, description = "Must be the hint's audience"),
    ),
    responses(
        (status = 200, description = "Signed out (no return URI)", content_type = "text/html"),
        (status = 303, description = "To `post_logout_redirect_uri` with `state`"),
        (status = 400, description = "Bad hint or unregistered return URI; nothing revoked", content_type = "text/html"),
    ))]
pub(crate) async fn logout_get(
    State(issuer): State<Issuer>,
    Ctx(ctx): Ctx,
    RawQuery(query): RawQuery,
) -> Response {
    end_session(&issuer, &ctx, query.unwrap_or_default().as_bytes()).await
}

/// `POST /oauth/logout` with a form body.
#[utoipa::path(post, path = "/oauth/logout", tag = "openid",
    request_body(content_type = "application/x-www-form-urlencoded", description = "The parameters of `GET /oauth/logout`"),
    responses(
        (status = 200, description = "Signed out (no return URI)", content_type = "text/html"),
        (status = 303, description = "To `post_logout_redirect_uri` with `state`"),
        (status = 400, description = "Bad hint or unregistered return URI; nothing revoked", content_type = "text/html"),
    ))]
pub(crate) async fn logout_post(
    State(issuer): State<Issuer>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = not_a_form(&headers, "Sign-out refused") {
        return refused;
    }
    end_session(&issuer, &ctx, &body).await
}

async fn end_session(issuer: &Issuer, ctx: &crate::RequestContext, raw: &[u8]) -> Response {
    let refuse = |msg: &str| page_response(StatusCode::BAD_REQUEST, "Sign-out refused", msg);
    let params = match parse_params(raw) {
        Ok(p) => p,
        Err(msg) => return refuse(&msg),
    };
    let Some(hint) = param(&params, "id_token_hint") else {
        return refuse("The sign-out request has no id_token_hint.");
    };
    if hint.len() > 8192 {
        return refuse("The id_token_hint is too long.");
    }
    let Some(hint) = issuer.verify_id_token_hint(hint).await else {
        issuer.metrics().authorization("logout_refused");
        return refuse("The id_token_hint is not valid.");
    };
    if param(&params, "client_id").is_some_and(|c| c != hint.client_id) {
        return refuse("client_id does not match the id_token_hint.");
    }
    let post_logout = param(&params, "post_logout_redirect_uri");
    if let Some(uri) = post_logout {
        let registered = issuer
            .settings()
            .clients
            .client(&hint.client_id)
            .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri));
        if !registered {
            issuer.metrics().authorization("logout_refused");
            return refuse("The post_logout_redirect_uri is not registered for this application.");
        }
    }
    if let Err(err) = issuer.end_session(&hint.sid, ctx).await {
        tracing::error!(%err, "RP-initiated logout failed");
        return page_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-out failed",
            "The sign-in service is unavailable. Try again.",
        );
    }
    tracing::info!(sid = %hint.sid, sub = %hint.sub, client_id = %hint.client_id, "RP-initiated logout");
    match post_logout {
        Some(uri) => {
            let state = param(&params, "state").filter(|s| s.chars().count() <= MAX_STATE_CHARS);
            let mut q = Vec::new();
            if let Some(s) = state {
                q.push(("state", s));
            }
            redirect_to(uri, &q)
        }
        None => page_response(
            StatusCode::OK,
            "Signed out",
            "You are signed out. You can close this window.",
        ),
    }
}

// ---------------------------------------------------------------------------
// pages
// ---------------------------------------------------------------------------

/// The look of the gateway's login page (`web/templates/login.html`), rendered by
/// hand: two small pages do not justify a template engine here.
const STYLE: &str = r#":root { color-scheme: light dark; --accent: #2458d6; --error: #b3261e; }
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; display: grid; place-items: center;
         font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         background: Canvas; color: CanvasText; }
  main { width: min(22rem, 92vw); padding: 2rem; border: 1px solid color-mix(in srgb, CanvasText 18%, transparent);
         border-radius: 12px; }
  h1 { margin: 0 0 1.25rem; font-size: 1.5rem; }
  label { display: block; margin: 0.9rem 0 0.3rem; font-weight: 600; }
  input[type=text], input[type=password] { width: 100%; padding: 0.6rem 0.7rem; font: inherit;
         border: 1px solid color-mix(in srgb, CanvasText 35%, transparent); border-radius: 8px;
         background: Field; color: FieldText; }
  input:focus-visible, button:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
  button { margin-top: 1.4rem; width: 100%; padding: 0.7rem; font: inherit; font-weight: 600;
           color: #fff; background: var(--accent); border: 0; border-radius: 8px; cursor: pointer; }
  .error { margin: 0 0 1rem; padding: 0.6rem 0.8rem; border-radius: 8px; color: var(--error);
           border: 1px solid currentColor; }"#;

fn html(status: StatusCode, title: &str, main: &str, form_action_extra: Option<&str>) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"same-origin\">\n<title>{}</title>\n<style>\n  {STYLE}\n</style>\n</head>\n\
         <body>\n<main>\n{main}\n</main>\n</body>\n</html>\n",
        esc(title)
    );
    // A form post that redirects to the client is subject to form-action in some
    // browsers: allow the redirect's origin as well.
    let form_action = match form_action_extra {
        Some(origin) if !origin.is_empty() && origin != "null" => format!("'self' {origin}"),
        _ => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null`
    // on the form post, which the CSRF check must refuse. Nothing leaves the origin
    // either way (the redirect to the client carries `no-referrer` itself).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// A message page (errors, "signed out").
fn page_response(status: StatusCode, title: &str, message: &str) -> Response {
    let main = format!(
        "  <h1 id=\"title\">{}</h1>\n  <p{}>{}</p>",
        esc(title),
        if status.is_success() {
            ""
        } else {
            " class=\"error\" role=\"alert\""
        },
        esc(message)
    );
    html(status, title, &main, None)
}

fn login_page(
    status: StatusCode,
    v: &Validated,
    csrf: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let r = &v.request;
    // `response_type` and `code_challenge_method` have one accepted value each.
    let mut hidden = vec![
        ("response_type", "code"),
        ("client_id", r.client_id.as_str()),
        ("redirect_uri", r.redirect_uri.as_str()),
        ("scope", r.scope.as_str()),
        ("code_challenge", r.code_challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("csrf", csrf),
    ];
    if let Some(s) = &v.state {
        hidden.push(("state", s));
    }
    if let Some(n) = &r.nonce {
        hidden.push(("nonce", n));
    }
    let hidden: String = hidden
        .iter()
        .map(|(k, v)| {
            format!(
                "    <input type=\"hidden\" name=\"{k}\" value=\"{}\">\n",
                esc(v)
            )
        })
        .collect();
    let error_html = error.map_or(String::new(), |e| {
        format!(
            "  <p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>\n",
            esc(e)
        )
    });
    let described = if error.is_some() {
        " aria-describedby=\"form-error\""
    } else {
        ""
    };
    let (user_focus, pass_focus) = if username.is_empty() {
        (" autofocus", "")
    } else {
        ("", " autofocus")
    };
    let main = format!(
        "  <h1 id=\"title\">Sign in</h1>\n{error_html}  <form method=\"post\" action=\"/oauth/authorize\" aria-labelledby=\"title\"{described}>\n{hidden}\
         <label for=\"username\">Username</label>\n\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required{user_focus}>\n\
         <label for=\"password\">Password</label>\n\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required{pass_focus}>\n\
         <button type=\"submit\">Sign in</button>\n  </form>",
        esc(username)
    );
    html(status, "Sign in", &main, Some(&origin_of(&r.redirect_uri)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        assert!(parse_params(b"a=1&b=2").is_ok());
        assert!(parse_params(b"a=1&a=2").unwrap_err().contains("`a`"));
    }
}
