//! The one client for Sallyport's token backend, used by the gateway and by
//! `sallyport-client`.
//!
//! It speaks the two protocols a backend may offer — the JSON contract of the
//! Sallyport issuer (`POST login_url {username, password}`, `POST refresh_url
//! {refresh_token}`, `POST logout_url {refresh_token}`) and OAuth 2.0 (RFC 6749
//! `password` and `refresh_token` grants, RFC 7009 revocation) — and turns every
//! answer into a [`Grant`] or a typed [`Error`].
//!
//! The rule the error type carries: only the backend's considered "no" (HTTP 400,
//! 401 or 403) is a refusal. Everything else — unreachable, timed out, 5xx, a stray
//! redirect or 404, an unreadable or oversized answer, and `invalid_client` (the
//! caller's own credentials are wrong: an operator's problem, not the user's) — is
//! [`Error::Unavailable`], and a caller keeps the session over it.
//!
//! Every call is bounded in time ([`Config::timeout`], from connecting until the
//! last byte of the body) and in size ([`Config::max_body_bytes`]): a backend that
//! answers with megabytes, or with a chunked body that never ends, is refused as
//! unavailable after at most that many bytes.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use sallyport_backend::parse_retry_after;
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
//! let date = http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:30 GMT");
//! assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
//! let secs = http::HeaderValue::from_static("120");
//! assert_eq!(parse_retry_after(&secs, now), Some(Duration::from_secs(120)));
//! ```

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue, StatusCode, header};
pub use reqwest::Url;
use sallyport_proto::{codes, grant_types};
use serde_json::{Map, Value};
use tracing::Instrument;

/// Default for [`Config::max_body_bytes`]: token answers are a few KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest `Retry-After` passed on: a backend's "come back in a century" (a bug, or
/// a hostile answer) is passed on as a day, never as a value a caller sleeps on or
/// a browser is told verbatim.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Which protocol the backend speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// JSON bodies with these field names (the issuer's contract by default).
    Json(JsonFields),
    /// RFC 6749 token endpoint (form-encoded) and RFC 7009 revocation.
    OAuth2 {
        /// Sent as `scope` with the password grant when set.
        scope: Option<String>,
    },
}

/// Field names of the JSON protocol. Deserializable, so a configuration (the gateway's
/// `[backend.fields]`) can take it as it is; missing keys keep their defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonFields {
    /// Login request: username field.
    pub username: String,
    /// Login request: password field.
    pub password: String,
    /// Refresh and logout requests: refresh-token field.
    pub refresh_request: String,
    /// Responses: access-token field.
    pub access_token: String,
    /// Responses: refresh-token field.
    pub refresh_token: String,
    /// Responses: lifetime field (seconds).
    pub expires_in: String,
}

impl Default for JsonFields {
    /// The Sallyport issuer's (and the article's) contract.
    fn default() -> Self {
        Self {
            username: "username".into(),
            password: "password".into(),
            refresh_request: "refresh_token".into(),
            access_token: "accessToken".into(),
            refresh_token: "refreshToken".into(),
            expires_in: "expiresIn".into(),
        }
    }
}

/// How an OAuth 2.0 client authenticates at the token and revocation endpoints
/// (RFC 6749 §2.3.1). Ignored by the JSON protocol.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client credentials.
    None,
    /// `client_id` / `client_secret` in the form body (`client_secret_post`).
    Post {
        /// Sent as `client_id` when set.
        id: Option<String>,
        /// Sent as `client_secret` when set. Never printed.
        secret: Option<String>,
    },
    /// HTTP Basic (`client_secret_basic`).
    Basic {
        /// The client id.
        id: String,
        /// The client secret. Never printed.
        secret: Option<String>,
    },
    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): `client_id` and a
    /// freshly signed `client_assertion` in the form body.
    PrivateKeyJwt {
        /// The client id.
        id: String,
        /// Makes one assertion per call.
        assertion: Assertion,
    },
}

/// Makes a signed client assertion (a JWT) for one call; `None` when it cannot (the
/// call then goes without one and the server refuses it as `invalid_client`).
#[derive(Clone)]
pub struct Assertion(pub std::sync::Arc<dyn Fn() -> Option<String> + Send + Sync>);

impl PartialEq for Assertion {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Assertion {}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Assertion")
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "[redacted]");
        match self {
            Self::None => f.write_str("None"),
            Self::Post { id, secret } => f
                .debug_struct("Post")
                .field("id", id)
                .field("secret", &redact(secret))
                .finish(),
            Self::Basic { id, secret } => f
                .debug_struct("Basic")
                .field("id", id)
                .field("secret", &redact(secret))
                .finish(),
            Self::PrivateKeyJwt { id, .. } => {
                f.debug_struct("PrivateKeyJwt").field("id", id).finish()
            }
        }
    }
}

/// Everything the client needs to know about the backend.
#[derive(Debug, Clone)]
pub struct Config {
    /// JSON or OAuth 2.0.
    pub protocol: Protocol,
    /// Where the password grant / login goes (OAuth 2.0: the token endpoint).
    pub login_url: Url,
    /// Where the refresh grant goes (OAuth 2.0: the token endpoint).
    pub refresh_url: Url,
    /// JSON logout or RFC 7009 revocation endpoint; `None`: nothing to revoke.
    pub logout_url: Option<Url>,
    /// OAuth 2.0 client authentication.
    pub client_auth: ClientAuth,
    /// Header that tells the backend which client a call is for (so its login
    /// limits key on the client, not on the caller); `None`: not sent.
    pub client_address_header: Option<HeaderName>,
    /// Bound on each call, from connecting until the last byte of the answer.
    pub timeout: Duration,
    /// Largest answer read; a longer one is refused as [`Error::Unavailable`].
    pub max_body_bytes: usize,
}

impl Config {
    /// A config for `protocol` at these URLs, without client authentication or
    /// client-address header, with a 10 s bound and [`DEFAULT_MAX_BODY_BYTES`].
    pub fn new(protocol: Protocol, login_url: Url, refresh_url: Url) -> Self {
        Self {
            protocol,
            login_url,
            refresh_url,
            logout_url: None,
            client_auth: ClientAuth::None,
            client_address_header: None,
            timeout: Duration::from_secs(10),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The moment and the party a call is made for.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// Now: a `Retry-After` date is measured from it.
    pub now: SystemTime,
    /// The end client the call is made for, sent in
    /// [`Config::client_address_header`] when both are set.
    pub client: Option<IpAddr>,
}

impl Call {
    /// A call at `now_s` (seconds since the Unix epoch), for no particular client.
    pub fn at_unix_secs(now_s: u64) -> Self {
        Self {
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(now_s),
            client: None,
        }
    }

    /// The same call on behalf of `client`.
    #[must_use]
    pub fn for_client(self, client: Option<IpAddr>) -> Self {
        Self { client, ..self }
    }
}

/// A successful token answer, normalised over both protocols.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The access token (never empty).
    pub access_token: String,
    /// A new refresh token, if the backend sent one (a backend that does not
    /// rotate sends none; the old one stays valid).
    pub refresh_token: Option<String>,
    /// The access token's lifetime in seconds, if sent.
    pub expires_in: Option<u64>,
    /// OpenID Connect: the `id_token` of an OAuth 2.0 answer, if sent (unverified: the
    /// caller validates it). Always `None` for the JSON protocol.
    pub id_token: Option<String>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Why a backend call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Login (or revocation): unknown user, wrong password, or an unknown token.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Login (or revocation): the account is disabled (403 or `account_disabled`).
    #[error("the account is disabled")]
    AccountDisabled,
    /// The backend refused (HTTP 400, 401 or 403). For a renewal this ends the
    /// session; for a login it is an answer this client does not interpret further.
    #[error("refused by the backend: HTTP {status} {code}")]
    Refused {
        /// HTTP status (400, 401 or 403).
        status: u16,
        /// The body's `error` member, empty if none.
        code: String,
        /// The body's `message` / `error_description`, empty if none.
        message: String,
    },
    /// HTTP 429.
    #[error("rate limited by the backend")]
    RateLimited {
        /// The backend's `Retry-After` (either form), if it sent one.
        retry_after: Option<Duration>,
    },
    /// Unreachable, timed out, 5xx, any other unexpected status, an unreadable
    /// or oversized answer, or `invalid_client`. Not the user's fault: a session
    /// is kept over it.
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The backend's `Retry-After` (either form), if it sent one.
        retry_after: Option<Duration>,
    },
}

impl Error {
    fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// What a call was for: the same status means different things for each.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Login,
    Refresh,
    Revoke,
}

/// The span of one backend call (`backend.login`, `backend.refresh`, `backend.revoke`);
/// it names no user and holds no credential.
fn call_span(purpose: Purpose) -> tracing::Span {
    let name = match purpose {
        Purpose::Login => "backend.login",
        Purpose::Refresh => "backend.refresh",
        Purpose::Revoke => "backend.revoke",
    };
    tracing::info_span!(
        "backend",
        call = name,
        otel.name = name,
        otel.kind = "client",
        http.response.status_code = tracing::field::Empty,
    )
}

/// The token-backend client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    config: Config,
    http: reqwest::Client,
}

impl Client {
    /// A client using `http`. Each call is still bounded by [`Config::timeout`],
    /// whatever `http` was built with.
    pub fn new(config: Config, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    /// An HTTP client suited to a token backend: bounded connect and total time,
    /// and no redirects (a redirected grant would resend credentials elsewhere).
    pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The underlying HTTP client (e.g. for a readiness probe).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Exchanges a username and password for tokens.
    pub async fn login(&self, username: &str, password: &str, call: Call) -> Result<Grant, Error> {
        self.login_inner(username, password, call)
            .instrument(call_span(Purpose::Login))
            .await
    }

    async fn login_inner(
        &self,
        username: &str,
        password: &str,
        call: Call,
    ) -> Result<Grant, Error> {
        let url = &self.config.login_url;
        let req = match &self.config.protocol {
            Protocol::Json(f) => self.json(url, [(&f.username, username), (&f.password, password)]),
            Protocol::OAuth2 { scope } => {
                let mut form = vec![
                    ("grant_type", grant_types::PASSWORD),
                    ("username", username),
                    ("password", password),
                ];
                if let Some(scope) = scope {
                    form.push(("scope", scope));
                }
                self.oauth(url, form)
            }
        };
        let mut resp = self.send(req, Purpose::Login, call).await?;
        let body = read_limited(&mut resp, self.config.max_body_bytes).await?;
        self.grant(&body)
    }

    /// Redeems a refresh token.
    pub async fn refresh(&self, refresh_token: &str, call: Call) -> Result<Grant, Error> {
        self.refresh_inner(refresh_token, call)
            .instrument(call_span(Purpose::Refresh))
            .await
    }

    async fn refresh_inner(&self, refresh_token: &str, call: Call) -> Result<Grant, Error> {
        let url = &self.config.refresh_url;
        let req = match &self.config.protocol {
            Protocol::Json(f) => self.json(url, [(&f.refresh_request, refresh_token)]),
            Protocol::OAuth2 { .. } => self.oauth(
                url,
                vec![
                    ("grant_type", grant_types::REFRESH_TOKEN),
                    ("refresh_token", refresh_token),
                ],
            ),
        };
        let mut resp = self.send(req, Purpose::Refresh, call).await?;
        let body = read_limited(&mut resp, self.config.max_body_bytes).await?;
        self.grant(&body)
    }

    /// Redeems an authorization code (RFC 6749 §4.1.3, with the PKCE `code_verifier` of
    /// RFC 7636) at the token endpoint ([`Config::refresh_url`]). OAuth 2.0 only; a
    /// refusal (`invalid_grant`: a used or expired code) is [`Error::Refused`].
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        call: Call,
    ) -> Result<Grant, Error> {
        if !matches!(self.config.protocol, Protocol::OAuth2 { .. }) {
            return Err(Error::unavailable(
                "the authorization-code grant needs the OAuth 2.0 protocol",
            ));
        }
        let req = self.oauth(
            &self.config.refresh_url,
            vec![
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", code_verifier),
            ],
        );
        let mut resp = self.send(req, Purpose::Refresh, call).await?;
        let body = read_limited(&mut resp, self.config.max_body_bytes).await?;
        self.grant(&body)
    }

    /// Revokes a refresh token (JSON: the logout URL; OAuth 2.0: RFC 7009).
    /// `Ok(false)` when no [`Config::logout_url`] is configured.
    pub async fn revoke(&self, refresh_token: &str, call: Call) -> Result<bool, Error> {
        self.revoke_inner(refresh_token, call)
            .instrument(call_span(Purpose::Revoke))
            .await
    }

    async fn revoke_inner(&self, refresh_token: &str, call: Call) -> Result<bool, Error> {
        let Some(url) = &self.config.logout_url else {
            return Ok(false);
        };
        let req = match &self.config.protocol {
            Protocol::Json(f) => self.json(url, [(&f.refresh_request, refresh_token)]),
            Protocol::OAuth2 { .. } => self.oauth(
                url,
                vec![
                    ("token", refresh_token),
                    ("token_type_hint", "refresh_token"),
                ],
            ),
        };
        self.send(req, Purpose::Revoke, call).await?;
        Ok(true)
    }

    fn post(&self, url: &Url) -> reqwest::RequestBuilder {
        self.http
            .post(url.clone())
            .timeout(self.config.timeout)
            .header(header::ACCEPT, "application/json")
    }

    fn json<'a>(
        &self,
        url: &Url,
        fields: impl IntoIterator<Item = (&'a String, &'a str)>,
    ) -> reqwest::RequestBuilder {
        let body: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.clone(), Value::from(v)))
            .collect();
        self.post(url).json(&body)
    }

    fn oauth<'a>(
        &'a self,
        url: &Url,
        mut form: Vec<(&'a str, &'a str)>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.post(url);
        match &self.config.client_auth {
            ClientAuth::None => {}
            ClientAuth::Post { id, secret } => {
                if let Some(id) = id {
                    form.push(("client_id", id));
                }
                if let Some(secret) = secret {
                    form.push(("client_secret", secret));
                }
            }
            ClientAuth::Basic { id, secret } => {
                // RFC 6749 §2.3.1: form-urlencode id and secret before Basic encoding.
                let enc = |s: &str| {
                    serde_urlencoded::to_string([("", s)])
                        .map(|x| x.trim_start_matches('=').to_owned())
                        .unwrap_or_default()
                };
                req = req.basic_auth(enc(id), secret.as_deref().map(enc));
            }
            ClientAuth::PrivateKeyJwt { id, assertion } => {
                form.push(("client_id", id));
                if let Some(jwt) = (assertion.0)() {
                    let mut owned: Vec<(&str, String)> =
                        form.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
                    owned.push((
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                    ));
                    owned.push(("client_assertion", jwt));
                    return req.form(&owned);
                }
                tracing::error!("cannot sign the client assertion (private_key_jwt)");
            }
        }
        req.form(&form)
    }

    /// Sends `req`; a success is returned unread, a failure is classified.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        purpose: Purpose,
        call: Call,
    ) -> Result<reqwest::Response, Error> {
        let req = match (&self.config.client_address_header, call.client) {
            // Set, not appended: the value is the peer the caller saw.
            (Some(name), Some(ip)) => req.header(name.clone(), ip.to_canonical().to_string()),
            _ => req,
        };
        // The request id and trace context of the request this call is made for.
        let mut propagated = http::HeaderMap::new();
        sallyport_observe::outgoing_headers(&mut propagated);
        let req = req.headers(propagated);
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, call.now));
        let (code, message) = if matches!(status.as_u16(), 400 | 401 | 403) {
            // The body only adds detail to the status: an unreadable one is ignored.
            match read_limited(&mut resp, self.config.max_body_bytes).await {
                Ok(body) => error_body(&body),
                Err(_) => Default::default(),
            }
        } else {
            Default::default()
        };
        Err(classify(purpose, status, code, message, retry_after))
    }

    fn grant(&self, body: &[u8]) -> Result<Grant, Error> {
        let body: Value = serde_json::from_slice(body)
            .map_err(|e| Error::unavailable(format!("unreadable token response: {e}")))?;
        let (at, rt, exp) = match &self.config.protocol {
            Protocol::Json(f) => (
                f.access_token.as_str(),
                f.refresh_token.as_str(),
                f.expires_in.as_str(),
            ),
            Protocol::OAuth2 { .. } => ("access_token", "refresh_token", "expires_in"),
        };
        let text = |field: &str| {
            body.get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(Grant {
            access_token: text(at)
                .ok_or_else(|| Error::unavailable(format!("token response has no `{at}`")))?,
            refresh_token: text(rt),
            expires_in: body.get(exp).and_then(Value::as_u64),
            id_token: match &self.config.protocol {
                Protocol::OAuth2 { .. } => text("id_token"),
                Protocol::Json(_) => None,
            },
        })
    }
}

/// The one rule: 429 is rate limiting; 400/401/403 are refusals (but
/// `invalid_client`); anything else says nothing about the user or session.
fn classify(
    purpose: Purpose,
    status: StatusCode,
    code: String,
    message: String,
    retry_after: Option<Duration>,
) -> Error {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Error::RateLimited { retry_after };
    }
    if !matches!(status.as_u16(), 400 | 401 | 403) {
        return Error::Unavailable {
            message: format!("HTTP {status}"),
            retry_after,
        };
    }
    if code == codes::INVALID_CLIENT {
        // The caller's own credentials are wrong: an operator's problem, so nobody
        // is logged out (or told their password is wrong) over it.
        tracing::error!(
            "the token backend rejected this client's credentials (invalid_client); check the client id and secret"
        );
        return Error::unavailable("invalid_client: the backend rejected the client credentials");
    }
    let refused = |code, message| Error::Refused {
        status: status.as_u16(),
        code,
        message,
    };
    if purpose == Purpose::Refresh {
        return refused(code, message);
    }
    match (status, code.as_str()) {
        (_, codes::INVALID_CREDENTIALS) => Error::InvalidCredentials,
        (_, codes::ACCOUNT_DISABLED) | (StatusCode::FORBIDDEN, _) => Error::AccountDisabled,
        // OAuth 2.0: a wrong password is `invalid_grant` (RFC 6749 §5.2).
        (_, codes::INVALID_GRANT) | (StatusCode::UNAUTHORIZED, _) => Error::InvalidCredentials,
        _ => refused(code, message),
    }
}

/// `{error, message}` (JSON contract) or `{error, error_description}` (OAuth 2.0).
fn error_body(body: &[u8]) -> (String, String) {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Default::default();
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    (
        text("error").unwrap_or_default(),
        text("message")
            .or_else(|| text("error_description"))
            .unwrap_or_default(),
    )
}

/// `Retry-After` in either form of RFC 9110 §10.2.3: delay-seconds, or an
/// HTTP-date measured from `now` (a date in the past means "now": zero); at most
/// [`MAX_RETRY_AFTER`]. `None` for anything else.
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let value = value.to_str().ok()?.trim();
    let after = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(after.min(MAX_RETRY_AFTER))
}

/// Reads at most `max` bytes of body; more is an error, and the rest is not read
/// (the connection is dropped). The time bound is the request's timeout.
async fn read_limited(resp: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, Error> {
    let too_large = || Error::unavailable(format!("backend answer larger than {max} bytes"));
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport(e: reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "unreachable"
    } else {
        "failed"
    };
    Error::unavailable(format!("backend {kind}: {e}"))
}
