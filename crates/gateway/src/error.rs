//! The crate's two error types: [`Error`] for start-up (configuration, binding) and the
//! few internal failures reported to the operator, and [`RequestError`] for every refusal
//! a request is answered with — the one place where statuses, error codes and their
//! page or JSON rendering are chosen.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use sallyport_proto::{ApiError, AuthErrorCode, OAuthError, codes};

use crate::Inner;
use crate::proxy::UpstreamError;

/// Everything that can go wrong in the gateway outside of request handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or invalid; `setting` names it the way the operator writes it.
    #[error("invalid setting `{setting}`: {message}")]
    Config {
        /// The TOML key (and environment variable, where there is one).
        setting: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The configuration sources could not be read or parsed.
    #[error("could not load configuration: {0}")]
    Load(String),
    /// The login-page template could not be parsed or rendered.
    #[error("login page template: {0}")]
    Template(String),
    /// Building an HTTP client failed.
    #[error("HTTP client: {0}")]
    HttpClient(String),
    /// Sealing the session cookie failed (for instance, the session is too large).
    #[error("session cookie: {0}")]
    Cookie(String),
    /// The server socket failed.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The name the cross-crate contract uses for start-up configuration errors.
pub type ConfigError = Error;

impl Error {
    pub(crate) fn config(setting: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            setting,
            message: message.into(),
        }
    }
}

/// Every refusal the gateway answers a request with, and the one place that turns a
/// refusal into a response ([`RequestError::respond`]).
///
/// The answer depends on who asked ([`Asker`]): a browser navigating to a page gets a
/// page — the login redirect (with `next`) for a missing session, the login form again
/// for a failed password login, an HTML page for an unavailable sign-in service or a
/// failed OpenID Connect sign-in — and everything else gets JSON,
/// `{"error": <code>, "message": <text>}` ([`sallyport_proto::ApiError`]), with
/// `WWW-Authenticate` on a missing session's 401 and `Retry-After` on 429 and on a
/// renewal's 503. The back-channel logout endpoint answers its provider in the
/// RFC 6749 §5.2 shape its specification asks for (`{"error", "error_description"}`).
/// Every answer is `Cache-Control: private, no-store` (the back-channel's `no-store`).
///
/// The error codes, statuses and metric labels appear here and nowhere else in the crate.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// No usable session (`code`: `session_expired`, or `reauth_required` when the
    /// backend refused it). `clear`: expire the cookie.
    NoSession {
        /// Why, as the API client sees it.
        code: AuthErrorCode,
        /// Whether the answer expires the session cookie.
        clear: bool,
    },
    /// The access token has expired and the backend cannot renew it now; session kept.
    Unavailable {
        /// Seconds for `Retry-After`.
        retry_after: u64,
    },
    /// A cross-site state-changing request (CSRF), or a cross-site login.
    CrossSite,
    /// A path upstream could read differently (see [`crate::guard::canonical_path`]).
    BadPath,
    /// A protocol upgrade not in `proxy.allowed_upgrades`.
    UpgradeRefused,
    /// The request body broke off while it was being read for a replay.
    BodyUnreadable,
    /// A password login at a gateway that signs in at an OpenID provider.
    PasswordLoginDisabled,
    /// A login body that is neither JSON nor a form.
    UnsupportedMediaType,
    /// A login body over the limit.
    LoginTooLarge,
    /// A login body that does not parse.
    MalformedLogin(String),
    /// A login without a username or password (or with one that is too long).
    MissingCredentials,
    /// The backend refused the username and password.
    InvalidCredentials,
    /// The backend limits login attempts.
    RateLimited {
        /// Seconds for `Retry-After`.
        retry_after: u64,
    },
    /// The backend could not be asked about a login.
    LoginUnavailable,
    /// The new session does not fit in the cookie.
    SessionTooLarge,
    /// The login page template failed to render.
    LoginPageUnavailable,
    /// No such route (`what`: the listener's wording).
    NotFound(&'static str),
    /// An OpenID Connect sign-in could not start or finish.
    SignIn(SignInFailure),
    /// A back-channel logout request that is refused.
    BackChannel(BackChannelFailure),
    /// Upstream gave no response (502, or 504 for a timeout), in plain text.
    Upstream(UpstreamError),
    /// `/readyz`: the backend does not answer (503, plain text for probes).
    NotReady,
}

/// Why an OpenID Connect sign-in failed: each is an HTML page with a link that starts a
/// new login (never an automatic redirect, so a failing provider cannot cause a loop).
#[derive(Debug)]
pub(crate) enum SignInFailure {
    /// The login could not start (`message` says why, for the user).
    Start(&'static str),
    /// No `state`, no cookie for it, or a cookie that does not unseal to it.
    State,
    /// The `state` was redeemed before.
    Replayed,
    /// RFC 9207: `iss` missing (the provider promised it) or naming another issuer.
    Issuer,
    /// The provider's own error (`access_denied`, …).
    Provider(String),
    /// The code was refused at the token endpoint.
    Code,
    /// The ID token is not valid (signature, claims, nonce; logged where found).
    IdToken,
    /// The provider is down or answered with something unreadable.
    Unavailable,
}

/// Why a back-channel logout request was refused.
#[derive(Debug)]
pub(crate) enum BackChannelFailure {
    /// This gateway has no oidc backend (501).
    NotOidc,
    /// The request is not a well-formed logout request (400).
    Request(&'static str),
    /// The logout token is not valid (400).
    Token(String),
    /// The provider's keys could not be fetched (503: the provider retries).
    KeysUnavailable,
}

/// Who asked, as far as the shape of a refusal goes: a page navigation or an API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A browser navigating to a page: redirects and HTML.
    Page,
    /// fetch/XHR or any other client: JSON.
    Api,
}

impl Kind {
    /// A browser navigating to a page (GET/HEAD with `Sec-Fetch-Mode: navigate`, or
    /// without that header an `Accept` naming `text/html`), else an API call.
    pub(crate) fn of(method: &Method, headers: &HeaderMap) -> Self {
        if crate::auth::is_page_navigation(method, headers) {
            Self::Page
        } else {
            Self::Api
        }
    }
}

/// What a refusal's answer needs to know about its request.
pub(crate) struct Asker<'a> {
    /// Page or API.
    pub(crate) kind: Kind,
    /// Where a login should return to (path and query; made safe before use).
    pub(crate) next: &'a str,
    /// The request's headers (the session cookie's chunks to expire), if at hand.
    pub(crate) headers: Option<&'a HeaderMap>,
    /// A password login's username, kept in the form shown again.
    pub(crate) username: &'a str,
}

impl<'a> Asker<'a> {
    /// An API call (or a request whose answer is JSON whatever it is).
    pub(crate) fn api() -> Self {
        Self::new(Kind::Api, "/", None)
    }

    /// `kind` with `next` and the request's headers.
    pub(crate) fn new(kind: Kind, next: &'a str, headers: Option<&'a HeaderMap>) -> Self {
        Self {
            kind,
            next,
            headers,
            username: "",
        }
    }

    /// A request whose kind follows from its method and headers ([`Kind::of`]).
    pub(crate) fn of(method: &Method, headers: &'a HeaderMap, next: &'a str) -> Self {
        Self::new(Kind::of(method, headers), next, Some(headers))
    }

    /// A password login (a form is a page, JSON an API call).
    pub(crate) fn login(form: bool, next: &'a str, username: &'a str) -> Self {
        let kind = if form { Kind::Page } else { Kind::Api };
        Self {
            username,
            ..Self::new(kind, next, None)
        }
    }
}

/// A response's status, JSON code and human text.
struct Parts {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl RequestError {
    /// The answer to `asker` (the one edge where a refusal becomes a response); counts
    /// the refusal in the metrics where it is counted.
    pub(crate) fn respond(self, inner: &Inner, asker: &Asker<'_>) -> Response {
        self.count(&inner.metrics);
        let mut resp = match (&self, asker.kind) {
            (Self::BackChannel(f), _) => return back_channel(f),
            (Self::Upstream(e), _) => return upstream(e),
            (Self::NotReady, _) => return plain(self.parts()),
            (Self::NoSession { .. }, Kind::Page) => login_redirect(inner, asker.next),
            (Self::Unavailable { .. }, Kind::Page) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                crate::page::unavailable_page(),
            )
                .into_response(),
            (
                Self::MissingCredentials
                | Self::InvalidCredentials
                | Self::RateLimited { .. }
                | Self::LoginUnavailable,
                Kind::Page,
            ) => {
                let p = self.parts();
                crate::routes::render_login(
                    inner,
                    p.status,
                    asker.next,
                    asker.username,
                    Some(&p.message),
                )
            }
            // A sign-in failure is a page whatever asked: the callback is a redirect.
            (Self::SignIn(_), _) => {
                let p = self.parts();
                crate::page::sign_in_failed(
                    &inner.settings.prefix,
                    p.status,
                    &p.message,
                    asker.next,
                )
            }
            _ => {
                let p = self.parts();
                json(p.status, p.code, &p.message)
            }
        };
        let h = resp.headers_mut();
        match &self {
            Self::NoSession { code, clear } => {
                if asker.kind == Kind::Api
                    && let Ok(v) = HeaderValue::from_str(&format!(
                        "Bearer realm=\"sallyport\", error=\"{}\", error_description=\"{}\"",
                        codes::INVALID_TOKEN,
                        code.as_str()
                    ))
                {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
                if *clear {
                    let none = HeaderMap::new();
                    let cleared = inner.cookies.clear(asker.headers.unwrap_or(&none));
                    crate::auth::attach_cookies(h, cleared);
                }
            }
            Self::Unavailable { retry_after } | Self::RateLimited { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Self::LoginUnavailable => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(crate::renew::DEFAULT_RETRY_AFTER),
                );
            }
            _ => {}
        }
        crate::auth::no_store(h);
        resp
    }

    /// The metrics this refusal counts.
    fn count(&self, metrics: &crate::metrics::Metrics) {
        match self {
            Self::NoSession { code, .. } => metrics.rejected(code.as_str()),
            Self::Unavailable { .. } => metrics.rejected(codes::BACKEND_UNAVAILABLE),
            Self::CrossSite => metrics.rejected(CSRF),
            Self::BadPath => metrics.rejected(BAD_PATH),
            Self::UpgradeRefused => metrics.rejected("upgrade"),
            Self::InvalidCredentials => metrics.login(codes::INVALID_CREDENTIALS),
            Self::RateLimited { .. } => metrics.login(codes::RATE_LIMITED),
            Self::LoginUnavailable => metrics.login(codes::BACKEND_UNAVAILABLE),
            Self::SignIn(f) => {
                if let Some(label) = f.label() {
                    metrics.login(label);
                }
            }
            Self::Upstream(UpstreamError::Timeout) => metrics.proxied("timeout"),
            Self::Upstream(UpstreamError::Unreachable(_)) => metrics.proxied("bad_gateway"),
            Self::BackChannel(BackChannelFailure::Token(_)) => {
                metrics.rejected("invalid_logout_token");
            }
            _ => {}
        }
    }

    /// Status, code and text of the answer.
    fn parts(&self) -> Parts {
        let p = |status, code, message: &str| Parts {
            status,
            code,
            message: message.to_owned(),
        };
        match self {
            Self::NoSession {
                code: code @ AuthErrorCode::ReauthRequired,
                ..
            } => p(
                StatusCode::UNAUTHORIZED,
                code.as_str(),
                "the session was ended by the sign-in service; log in again",
            ),
            Self::NoSession { code, .. } => p(
                StatusCode::UNAUTHORIZED,
                code.as_str(),
                "no valid session; log in",
            ),
            Self::Unavailable { .. } => p(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::BACKEND_UNAVAILABLE,
                "the sign-in service is unavailable; the session is kept, try again shortly",
            ),
            Self::CrossSite => p(
                StatusCode::FORBIDDEN,
                CSRF,
                "cross-site request refused: state-changing requests must come from this site",
            ),
            Self::BadPath => p(
                StatusCode::BAD_REQUEST,
                BAD_PATH,
                "the request path contains dot-segments, encoded slashes or backslashes, or control characters",
            ),
            Self::UpgradeRefused => p(
                StatusCode::BAD_REQUEST,
                "upgrade_refused",
                "this protocol upgrade is not allowed (see proxy.allowed_upgrades)",
            ),
            Self::BodyUnreadable => p(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                "request body could not be read",
            ),
            Self::PasswordLoginDisabled => p(
                StatusCode::METHOD_NOT_ALLOWED,
                "password_login_disabled",
                "this gateway signs in at an OpenID provider: open the login page with GET instead of posting a password",
            ),
            Self::UnsupportedMediaType => p(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json or application/x-www-form-urlencoded",
            ),
            Self::LoginTooLarge => p(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::PAYLOAD_TOO_LARGE,
                "login request too large",
            ),
            Self::MalformedLogin(e) => p(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                &format!("malformed login request: {e}"),
            ),
            Self::MissingCredentials => p(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                "Enter your username and password.",
            ),
            Self::InvalidCredentials => p(
                StatusCode::UNAUTHORIZED,
                codes::INVALID_CREDENTIALS,
                "Incorrect username or password.",
            ),
            Self::RateLimited { .. } => p(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                "Too many sign-in attempts. Please wait a moment and try again.",
            ),
            Self::LoginUnavailable => p(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::BACKEND_UNAVAILABLE,
                "The sign-in service is unavailable. Please try again shortly.",
            ),
            Self::SessionTooLarge => p(
                StatusCode::INTERNAL_SERVER_ERROR,
                "session_too_large",
                "the session cannot be stored in a cookie",
            ),
            Self::LoginPageUnavailable => p(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "login page unavailable",
            ),
            Self::NotFound(what) => p(StatusCode::NOT_FOUND, codes::NOT_FOUND, what),
            Self::SignIn(f) => f.parts(),
            Self::BackChannel(f) => f.parts(),
            Self::Upstream(e) => upstream_parts(e),
            Self::NotReady => p(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::BACKEND_UNAVAILABLE,
                "backend unreachable\n",
            ),
        }
    }
}

/// Why a renewed ID token ended a session (the refusal's code, and the failed
/// sign-in's metric label).
pub(crate) const INVALID_ID_TOKEN: &str = "invalid_id_token";

/// The `error` code of a CSRF refusal (and its metric label).
const CSRF: &str = "csrf";
/// The `error` code of a refused path (and its metric label).
const BAD_PATH: &str = "bad_path";

impl SignInFailure {
    /// The `sallyport_gateway_logins_total` outcome (none for a login that never started).
    fn label(&self) -> Option<&'static str> {
        Some(match self {
            Self::Start(_) => return None,
            Self::State => "invalid_state",
            Self::Replayed => "replayed_state",
            Self::Issuer => "wrong_issuer",
            Self::Provider(_) => "provider_error",
            Self::Code => "invalid_code",
            Self::IdToken => INVALID_ID_TOKEN,
            Self::Unavailable => codes::BACKEND_UNAVAILABLE,
        })
    }

    fn parts(&self) -> Parts {
        let (status, message) = match self {
            Self::Start(m) => (StatusCode::INTERNAL_SERVER_ERROR, (*m).to_owned()),
            Self::State => (
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid in this browser, or it has expired.".into(),
            ),
            Self::Replayed => (
                StatusCode::BAD_REQUEST,
                "This sign-in link has already been used.".into(),
            ),
            Self::Issuer => (
                StatusCode::BAD_REQUEST,
                "The sign-in answer did not come from the expected identity provider.".into(),
            ),
            Self::Provider(code) if code == "access_denied" => (
                StatusCode::FORBIDDEN,
                "Sign-in was cancelled or refused by the identity provider.".into(),
            ),
            Self::Provider(code) => (
                StatusCode::FORBIDDEN,
                format!("The identity provider could not sign you in ({code})."),
            ),
            Self::Code => (
                StatusCode::BAD_REQUEST,
                "The sign-in code was refused by the identity provider; it may have expired."
                    .into(),
            ),
            Self::IdToken => (
                StatusCode::BAD_REQUEST,
                "The identity provider's answer could not be verified.".into(),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The identity provider is unavailable. Please try again shortly.".into(),
            ),
        };
        Parts {
            status,
            code: self.label().unwrap_or(codes::INTERNAL),
            message,
        }
    }
}

impl BackChannelFailure {
    fn parts(&self) -> Parts {
        let (status, message) = match self {
            Self::NotOidc => (
                StatusCode::NOT_IMPLEMENTED,
                "back-channel logout needs backend.kind = \"oidc\"".to_owned(),
            ),
            Self::Request(why) => (StatusCode::BAD_REQUEST, (*why).to_owned()),
            Self::Token(why) => (StatusCode::BAD_REQUEST, why.clone()),
            Self::KeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the provider's keys are unavailable".to_owned(),
            ),
        };
        Parts {
            status,
            code: codes::INVALID_REQUEST,
            message,
        }
    }
}

/// The back-channel logout's answer (Back-Channel Logout 1.0 §2.8: RFC 6749 §5.2 body).
fn back_channel(f: &BackChannelFailure) -> Response {
    let p = f.parts();
    let body = OAuthError {
        error: p.code.to_owned(),
        error_description: Some(p.message),
    };
    let mut r = (
        p.status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&body).unwrap_or_default(),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn upstream_parts(e: &UpstreamError) -> Parts {
    let (status, code, text) = match e {
        UpstreamError::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_timeout",
            "504 Gateway Timeout: the application behind this gateway did not answer in time.\n",
        ),
        UpstreamError::Unreachable(_) => (
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            "502 Bad Gateway: the application behind this gateway is not reachable.\n",
        ),
    };
    Parts {
        status,
        code,
        message: text.to_owned(),
    }
}

/// Upstream's failure as plain text (the answer a browser shows as it is), logged.
fn upstream(e: &UpstreamError) -> Response {
    match e {
        UpstreamError::Unreachable(why) => tracing::warn!(error = %why, "upstream unreachable"),
        UpstreamError::Timeout => tracing::warn!("upstream timed out"),
    }
    plain(upstream_parts(e))
}

/// Plain text (`text/plain; charset=utf-8`, the body as it is), never cached: for
/// probes and for what a browser shows as it is.
fn plain(p: Parts) -> Response {
    (p.status, [(header::CACHE_CONTROL, "no-store")], p.message).into_response()
}

impl IntoResponse for UpstreamError {
    /// Without the metrics: for the upgrade splice, which has no gateway at hand.
    fn into_response(self) -> Response {
        upstream(&self)
    }
}

/// `{"error": code, "message": ...}` with the given status.
fn json(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::to_vec(&ApiError::new(code, message)).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

/// 303 to the login page, which returns to `next` (when that is a safe local path).
fn login_redirect(inner: &Inner, next: &str) -> Response {
    let next = crate::guard::safe_next(next).unwrap_or_else(|| "/".into());
    let location = format!(
        "{}/login?next={}",
        inner.settings.prefix,
        percent_encoding::utf8_percent_encode(&next, crate::auth::QUERY_VALUE)
    );
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Gateway};

    async fn gateway() -> Gateway {
        let mut config = Config::default();
        config.session.secret = Some("a-test-secret-of-at-least-32-characters".into());
        config.session.secure = false;
        config.store.persist_logouts = false;
        config.backend.login_url = Some("http://127.0.0.1:9/api/login".into());
        config.backend.refresh_url = Some("http://127.0.0.1:9/api/refresh-token".into());
        Gateway::new(config.validate().expect("settings"))
            .await
            .expect("gateway")
    }

    async fn body_json(r: Response) -> serde_json::Value {
        let b = axum::body::to_bytes(r.into_body(), 64 * 1024)
            .await
            .expect("body");
        serde_json::from_slice(&b).expect("json")
    }

    fn header(r: &Response, name: header::HeaderName) -> &str {
        r.headers()
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_api_call_without_a_session_gets_401_json_with_the_bearer_challenge() {
        let g = gateway().await;
        let r = RequestError::NoSession {
            code: AuthErrorCode::SessionExpired,
            clear: false,
        }
        .respond(&g.current(), &Asker::api());
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&r, header::CONTENT_TYPE), "application/json");
        assert_eq!(header(&r, header::CACHE_CONTROL), "private, no-store");
        assert!(
            header(&r, header::WWW_AUTHENTICATE)
                .starts_with("Bearer realm=\"sallyport\", error=\"invalid_token\""),
        );
        assert!(r.headers().get(header::SET_COOKIE).is_none());
        assert_eq!(body_json(r).await["error"], "session_expired");
    }

    #[tokio::test]
    async fn a_refused_session_expires_the_cookie() {
        let g = gateway().await;
        let r = RequestError::NoSession {
            code: AuthErrorCode::ReauthRequired,
            clear: true,
        }
        .respond(&g.current(), &Asker::api());
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&r, header::SET_COOKIE).contains("Max-Age=0"));
        assert_eq!(body_json(r).await["error"], "reauth_required");
    }

    #[tokio::test]
    async fn a_page_without_a_session_is_sent_to_the_login_page_and_never_off_site() {
        let g = gateway().await;
        let inner = g.current();
        let prefix = inner.settings.prefix.clone();
        let no_session = || RequestError::NoSession {
            code: AuthErrorCode::SessionExpired,
            clear: false,
        };
        let r = no_session().respond(&inner, &Asker::new(Kind::Page, "/a?b=1", None));
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            header(&r, header::LOCATION),
            format!("{prefix}/login?next=/a%3Fb%3D1")
        );
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        // An open redirect through `next` is refused: the login returns to `/`.
        let r = no_session().respond(&inner, &Asker::new(Kind::Page, "//evil.example/", None));
        assert_eq!(
            header(&r, header::LOCATION),
            format!("{prefix}/login?next=/")
        );
    }

    #[tokio::test]
    async fn unavailable_keeps_the_session_and_says_when_to_retry() {
        let g = gateway().await;
        let inner = g.current();
        for kind in [Kind::Page, Kind::Api] {
            let r = RequestError::Unavailable { retry_after: 7 }
                .respond(&inner, &Asker::new(kind, "/", None));
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(header(&r, header::RETRY_AFTER), "7");
            assert_eq!(header(&r, header::CACHE_CONTROL), "private, no-store");
            assert!(r.headers().get(header::SET_COOKIE).is_none());
            let html = header(&r, header::CONTENT_TYPE).starts_with("text/html");
            assert_eq!(html, kind == Kind::Page);
        }
    }

    #[tokio::test]
    async fn a_failed_form_login_shows_the_form_again_and_json_gets_json() {
        let g = gateway().await;
        let inner = g.current();
        let r = RequestError::InvalidCredentials
            .respond(&inner, &Asker::login(true, "/next", "<alice>"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let b = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        let html = String::from_utf8_lossy(&b);
        assert!(html.contains("Incorrect username or password."));
        assert!(
            html.contains("&lt;alice&gt;"),
            "the username is kept, escaped"
        );

        let r = RequestError::RateLimited { retry_after: 9 }
            .respond(&inner, &Asker::login(false, "/", ""));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&r, header::RETRY_AFTER), "9");
        assert_eq!(body_json(r).await["error"], "rate_limited");
    }

    #[tokio::test]
    async fn back_channel_refusals_use_the_oauth_error_shape() {
        let g = gateway().await;
        let r = RequestError::BackChannel(BackChannelFailure::Token("iat too old".into()))
            .respond(&g.current(), &Asker::api());
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
        assert_eq!(
            body_json(r).await,
            serde_json::json!({"error": "invalid_request", "error_description": "iat too old"})
        );
    }

    #[tokio::test]
    async fn a_sign_in_failure_is_a_page_with_a_retry_link_not_a_redirect() {
        let g = gateway().await;
        let inner = g.current();
        let r = RequestError::SignIn(SignInFailure::Replayed)
            .respond(&inner, &Asker::new(Kind::Page, "/x", None));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get(header::LOCATION).is_none());
        let b = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        let html = String::from_utf8_lossy(&b);
        assert!(html.contains(&format!("{}/login?next=/x", inner.settings.prefix)));
    }

    #[tokio::test]
    async fn upstream_failures_and_not_ready_are_plain_text() {
        let g = gateway().await;
        let inner = g.current();
        for (e, status) in [
            (
                RequestError::Upstream(UpstreamError::Timeout),
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                RequestError::Upstream(UpstreamError::Unreachable("refused".into())),
                StatusCode::BAD_GATEWAY,
            ),
            (RequestError::NotReady, StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let r = e.respond(&inner, &Asker::api());
            assert_eq!(r.status(), status);
            assert_eq!(
                header(&r, header::CONTENT_TYPE),
                "text/plain; charset=utf-8"
            );
            assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
        }
    }
}
