//! Wire types shared by the Sallyport issuer, gateway and clients.
//!
//! Every struct here is what travels on the wire, with the exact JSON (or form)
//! field names of the contract in `docs/design.md`, so the issuer, the gateway's
//! backend adapters and `sallyport-client` cannot drift apart. The types derive
//! [`utoipa::ToSchema`] so the issuer can generate its OpenAPI document from them.
//!
//! The crate is deliberately dependency-light (serde, serde_json, utoipa): it
//! holds no logic beyond (de)serialisation and small helpers.
//!
//! Secrets (passwords, access and refresh tokens) never appear in `Debug`
//! output: the types that carry them implement `Debug` by hand and print
//! `"[redacted]"` instead, so a stray `tracing::debug!(?request)` cannot leak them.
//!
//! ```
//! use sallyport_proto::{AuthErrorCode, TokenResponse};
//!
//! let body = r#"{"accessToken":"a.b.c","refreshToken":"r","tokenType":"Bearer",
//!                "expiresIn":900,"refreshTokenExpiresIn":2592000}"#;
//! let tokens: TokenResponse = serde_json::from_str(body).unwrap();
//! assert_eq!(tokens.expires_in, 900);
//! assert!(!format!("{tokens:?}").contains("a.b.c"));
//! assert_eq!(AuthErrorCode::SessionExpired.as_str(), "session_expired");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What `Debug` prints in place of a secret.
const REDACTED: &str = "[redacted]";

/// Prints `Some("[redacted]")` / `None` for an optional secret, so that
/// whether a secret is present is still visible when debugging.
fn redact_opt(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| REDACTED)
}

// ---------------------------------------------------------------------------
// Stable error codes
// ---------------------------------------------------------------------------

/// The `error` strings used in JSON error bodies across Sallyport.
///
/// They are constants rather than an enum because backends we do not control
/// send codes we have never seen; consumers match on the ones they know.
pub mod codes {
    /// Unknown user or wrong password (identical for both, by design).
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    /// Refresh token unknown, expired, revoked or reused (RFC 6749 §5.2).
    pub const INVALID_GRANT: &str = "invalid_grant";
    /// Malformed request: bad JSON, missing field, wrong content type.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// Client authentication failed (OAuth 2.0 token endpoint).
    pub const INVALID_CLIENT: &str = "invalid_client";
    /// The grant type is not supported (OAuth 2.0 token endpoint).
    pub const UNSUPPORTED_GRANT_TYPE: &str = "unsupported_grant_type";
    /// The token type hint is not supported (RFC 7009).
    pub const UNSUPPORTED_TOKEN_TYPE: &str = "unsupported_token_type";
    /// Missing, malformed, expired or forged bearer token (RFC 6750 §3.1).
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// The account exists but is disabled.
    pub const ACCOUNT_DISABLED: &str = "account_disabled";
    /// Too many attempts; see `Retry-After`.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The request body exceeded the size limit (413).
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// No such route or resource.
    pub const NOT_FOUND: &str = "not_found";
    /// A state-changing request failed the same-origin (CSRF) check.
    pub const FORBIDDEN: &str = "forbidden";
    /// Something failed on our side; details are in the server log only.
    pub const INTERNAL: &str = "internal_error";
    /// See [`super::AuthErrorCode::SessionExpired`].
    pub const SESSION_EXPIRED: &str = "session_expired";
    /// See [`super::AuthErrorCode::ReauthRequired`].
    pub const REAUTH_REQUIRED: &str = "reauth_required";
    /// See [`super::AuthErrorCode::BackendUnavailable`].
    pub const BACKEND_UNAVAILABLE: &str = "backend_unavailable";
}

/// Why a request could not be authenticated — the one error model of the
/// gateway, `client.js` and the Rust client (docs/design.md, "One error model").
///
/// The distinction matters to the caller: the first two mean "send the user
/// to the login page", the third means "try again later, the session is kept".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthErrorCode {
    /// There is no usable session (none, expired, logged out): log in again.
    SessionExpired,
    /// The backend refused the session (refresh token revoked, reused,
    /// account disabled): log in again.
    ReauthRequired,
    /// The backend could not be reached, timed out or failed (5xx). The
    /// session is kept; retry later (honour `Retry-After`).
    BackendUnavailable,
}

impl AuthErrorCode {
    /// The wire form (`session_expired`, `reauth_required`, `backend_unavailable`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SessionExpired => codes::SESSION_EXPIRED,
            Self::ReauthRequired => codes::REAUTH_REQUIRED,
            Self::BackendUnavailable => codes::BACKEND_UNAVAILABLE,
        }
    }

    /// Whether the user must log in again (true for all but
    /// [`AuthErrorCode::BackendUnavailable`]).
    pub const fn requires_login(self) -> bool {
        !matches!(self, Self::BackendUnavailable)
    }
}

impl fmt::Display for AuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned by [`AuthErrorCode::from_str`] for an unknown code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAuthErrorCode(pub String);

impl fmt::Display for UnknownAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown auth error code {:?}", self.0)
    }
}

impl std::error::Error for UnknownAuthErrorCode {}

impl FromStr for AuthErrorCode {
    type Err = UnknownAuthErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            codes::SESSION_EXPIRED => Ok(Self::SessionExpired),
            codes::REAUTH_REQUIRED => Ok(Self::ReauthRequired),
            codes::BACKEND_UNAVAILABLE => Ok(Self::BackendUnavailable),
            other => Err(UnknownAuthErrorCode(other.to_owned())),
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The JSON error body used everywhere outside the OAuth endpoints:
/// `{"error": "<code>", "message": "<human text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// A stable machine-readable code, see [`codes`].
    #[schema(example = "invalid_credentials")]
    pub error: String,
    /// A human-readable explanation; not meant for matching.
    #[schema(example = "invalid username or password")]
    pub message: String,
}

impl ApiError {
    /// Builds an error body.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
        }
    }

    /// The [`AuthErrorCode`] in `error`, if it is one.
    pub fn auth_code(&self) -> Option<AuthErrorCode> {
        self.error.parse().ok()
    }
}

/// The RFC 6749 §5.2 error body of the OAuth endpoints:
/// `{"error": "invalid_grant", "error_description": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unauthorized_client`, `unsupported_grant_type` or `invalid_scope`.
    #[schema(example = "invalid_grant")]
    pub error: String,
    /// Human-readable text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl OAuthError {
    /// Builds an error body with a description.
    pub fn new(error: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            error_description: Some(description.into()),
        }
    }
}

// ---------------------------------------------------------------------------
// JSON backend (the article's contract): /api/login, /api/refresh-token, /api/logout
// ---------------------------------------------------------------------------

/// `POST /api/login` body.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The account name.
    #[schema(example = "alice")]
    pub username: String,
    /// The password, in clear (the transport is TLS). Never logged.
    #[schema(example = "correct horse battery staple", format = Password)]
    pub password: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &REDACTED)
            .finish()
    }
}

/// `POST /api/refresh-token` and `POST /api/logout` body. The field name is
/// snake_case on purpose: it is the article's contract.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token from the last [`TokenResponse`]. Never logged.
    pub refresh_token: String,
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("refresh_token", &REDACTED)
            .finish()
    }
}

/// `POST /api/logout` body: the same shape as [`RefreshRequest`].
pub type LogoutRequest = RefreshRequest;

/// The default `tokenType`.
fn bearer() -> String {
    "Bearer".to_owned()
}

/// `200` answer of `POST /api/login` and `POST /api/refresh-token`
/// (camelCase, the article's contract).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// The access token, a JWT (`typ: at+jwt`).
    pub access_token: String,
    /// The new refresh token. Refresh tokens are single-use: always replace
    /// the stored one with this.
    pub refresh_token: String,
    /// Always `"Bearer"`.
    #[serde(default = "bearer")]
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Seconds until the refresh token expires if unused (idle expiry,
    /// capped by the absolute session lifetime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 2_592_000)]
    pub refresh_token_expires_in: Option<u64>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &REDACTED)
            .field("refresh_token", &REDACTED)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .finish()
    }
}

/// `GET /api/me`: the authenticated user's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    /// The user's stable id.
    pub id: String,
    /// The JWT subject; equal to `id` for the issuer's own tokens.
    pub sub: String,
    /// The login name.
    #[schema(example = "alice")]
    pub username: String,
    /// Display name, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Alice Liddell")]
    pub name: Option<String>,
    /// Roles granted to the user.
    #[serde(default)]
    pub roles: Vec<String>,
}

// ---------------------------------------------------------------------------
// OAuth 2.0 (RFC 6749 / RFC 7009)
// ---------------------------------------------------------------------------

/// Grant types of `POST /oauth/token` (form field `grant_type`).
pub mod grant_types {
    /// RFC 6749 §4.3.
    pub const PASSWORD: &str = "password";
    /// RFC 6749 §6.
    pub const REFRESH_TOKEN: &str = "refresh_token";
}

/// `POST /oauth/token` form body (`application/x-www-form-urlencoded`).
///
/// One struct for both grants because the form is flat; which fields are
/// required depends on `grant_type` and is checked by the server.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OAuthTokenRequest {
    /// `password` or `refresh_token`.
    #[schema(example = "password")]
    pub grant_type: String,
    /// For `grant_type=password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// For `grant_type=password`. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// For `grant_type=refresh_token`. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Requested scope (space-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Client id, when the client authenticates in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client secret, when the client authenticates in the body. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl OAuthTokenRequest {
    /// A `grant_type=password` request.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            grant_type: grant_types::PASSWORD.to_owned(),
            username: Some(username.into()),
            password: Some(password.into()),
            ..Self::default()
        }
    }

    /// A `grant_type=refresh_token` request.
    pub fn refresh(refresh_token: impl Into<String>) -> Self {
        Self {
            grant_type: grant_types::REFRESH_TOKEN.to_owned(),
            refresh_token: Some(refresh_token.into()),
            ..Self::default()
        }
    }
}

impl fmt::Debug for OAuthTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthTokenRequest")
            .field("grant_type", &self.grant_type)
            .field("username", &self.username)
            .field("password", &redact_opt(&self.password))
            .field("refresh_token", &redact_opt(&self.refresh_token))
            .field("scope", &self.scope)
            .field("client_id", &self.client_id)
            .field("client_secret", &redact_opt(&self.client_secret))
            .finish()
    }
}

/// `200` answer of `POST /oauth/token` (RFC 6749 §5.1, snake_case).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OAuthTokenResponse {
    /// The access token, a JWT.
    pub access_token: String,
    /// Always `"Bearer"`.
    #[serde(default = "bearer")]
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Lifetime of the access token in seconds (RECOMMENDED by RFC 6749).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 900)]
    pub expires_in: Option<u64>,
    /// The new refresh token, if one was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Granted scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl fmt::Debug for OAuthTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthTokenResponse")
            .field("access_token", &REDACTED)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &redact_opt(&self.refresh_token))
            .field("scope", &self.scope)
            .finish()
    }
}

impl From<TokenResponse> for OAuthTokenResponse {
    fn from(t: TokenResponse) -> Self {
        Self {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_in: Some(t.expires_in),
            refresh_token: Some(t.refresh_token),
            scope: None,
        }
    }
}

/// `POST /oauth/revoke` form body (RFC 7009 §2.1).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OAuthRevokeRequest {
    /// The token to revoke. Never logged.
    pub token: String,
    /// `refresh_token` or `access_token`; a hint only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<String>,
    /// Client id, when the client authenticates in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client secret, when the client authenticates in the body. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl fmt::Debug for OAuthRevokeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthRevokeRequest")
            .field("token", &REDACTED)
            .field("token_type_hint", &self.token_type_hint)
            .field("client_id", &self.client_id)
            .field("client_secret", &redact_opt(&self.client_secret))
            .finish()
    }
}

/// `GET /.well-known/openid-configuration` (the subset the issuer serves;
/// RFC 8414 / OpenID Connect Discovery names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiscoveryDocument {
    /// The `iss` of the tokens.
    pub issuer: String,
    /// Where the public keys are.
    pub jwks_uri: String,
    /// `POST /oauth/token`.
    pub token_endpoint: String,
    /// `POST /oauth/revoke`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// `GET /api/me`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    /// `["password", "refresh_token"]`.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// `["ES256", "EdDSA"]`.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Token endpoint client authentication methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Response types (empty: no authorization endpoint).
    #[serde(default)]
    pub response_types_supported: Vec<String>,
}

// ---------------------------------------------------------------------------
// The gateway's session view
// ---------------------------------------------------------------------------

/// The identity part of a [`SessionView`], taken from the access token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionUser {
    /// The JWT `sub`.
    pub sub: String,
    /// The JWT `name` claim, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The JWT `roles` claim.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `GET /auth/session` (and the JSON answers of `POST /auth/login` and
/// `POST /auth/refresh`): what the browser may know about its session.
///
/// It never contains a refresh token. The access token is included only when
/// the operator opts in. Times are Unix **seconds**, like JWT `exp`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Whether there is a usable session.
    pub is_logged_in: bool,
    /// Who is logged in; `null` when not logged in.
    #[serde(default)]
    pub user: Option<SessionUser>,
    /// When the current access token expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<u64>,
    /// When the access token was last obtained or renewed (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renewed_at: Option<u64>,
    /// When the session (cookie) itself expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expires_at: Option<u64>,
    /// Why there is no usable session, when there is a reason to tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AuthErrorCode>,
    /// The access token itself — only when the operator opts in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

impl SessionView {
    /// The view of "no session", optionally with the reason.
    pub fn logged_out(error: Option<AuthErrorCode>) -> Self {
        Self {
            error,
            ..Self::default()
        }
    }
}

impl fmt::Debug for SessionView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionView")
            .field("is_logged_in", &self.is_logged_in)
            .field("user", &self.user)
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("last_renewed_at", &self.last_renewed_at)
            .field("session_expires_at", &self.session_expires_at)
            .field("error", &self.error)
            .field("access_token", &redact_opt(&self.access_token))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn token_response_uses_camel_case() {
        let t = TokenResponse {
            access_token: "at".into(),
            refresh_token: "rt".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            refresh_token_expires_in: Some(60),
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(
            v,
            json!({"accessToken":"at","refreshToken":"rt","tokenType":"Bearer",
                   "expiresIn":900,"refreshTokenExpiresIn":60})
        );
        let back: TokenResponse = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn token_response_defaults_token_type() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"accessToken":"a","refreshToken":"r","expiresIn":1}"#)
                .unwrap();
        assert_eq!(t.token_type, "Bearer");
        assert_eq!(t.refresh_token_expires_in, None);
    }

    #[test]
    fn refresh_request_is_snake_case() {
        let v = serde_json::to_value(RefreshRequest {
            refresh_token: "x".into(),
        })
        .unwrap();
        assert_eq!(v, json!({"refresh_token": "x"}));
    }

    #[test]
    fn oauth_response_is_snake_case() {
        let r: OAuthTokenResponse = TokenResponse {
            access_token: "at".into(),
            refresh_token: "rt".into(),
            token_type: "Bearer".into(),
            expires_in: 5,
            refresh_token_expires_in: None,
        }
        .into();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"access_token":"at","token_type":"Bearer","expires_in":5,"refresh_token":"rt"})
        );
    }

    #[test]
    fn oauth_request_form_encodes() {
        let form = OAuthTokenRequest::password("alice", "pw");
        let v = serde_json::to_value(&form).unwrap();
        assert_eq!(
            v,
            json!({"grant_type":"password","username":"alice","password":"pw"})
        );
    }

    #[test]
    fn auth_error_codes_round_trip() {
        for (code, s) in [
            (AuthErrorCode::SessionExpired, "session_expired"),
            (AuthErrorCode::ReauthRequired, "reauth_required"),
            (AuthErrorCode::BackendUnavailable, "backend_unavailable"),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), Value::String(s.into()));
            assert_eq!(s.parse::<AuthErrorCode>().unwrap(), code);
            assert_eq!(code.to_string(), s);
        }
        assert!("nope".parse::<AuthErrorCode>().is_err());
        assert!(AuthErrorCode::SessionExpired.requires_login());
        assert!(!AuthErrorCode::BackendUnavailable.requires_login());
        assert_eq!(
            ApiError::new("reauth_required", "x").auth_code(),
            Some(AuthErrorCode::ReauthRequired)
        );
    }

    #[test]
    fn session_view_shape() {
        let v = SessionView {
            is_logged_in: true,
            user: Some(SessionUser {
                sub: "u1".into(),
                name: Some("Alice".into()),
                roles: vec!["admin".into()],
            }),
            access_token_expires_at: Some(1_700_000_000),
            ..SessionView::default()
        };
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            json!({"isLoggedIn":true,"user":{"sub":"u1","name":"Alice","roles":["admin"]},
                   "accessTokenExpiresAt":1_700_000_000})
        );
        assert_eq!(
            serde_json::to_value(SessionView::logged_out(Some(AuthErrorCode::SessionExpired)))
                .unwrap(),
            json!({"isLoggedIn":false,"user":null,"error":"session_expired"})
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let secret = "s3cr3t-value";
        let outputs = [
            format!(
                "{:?}",
                LoginRequest {
                    username: "u".into(),
                    password: secret.into()
                }
            ),
            format!(
                "{:?}",
                RefreshRequest {
                    refresh_token: secret.into()
                }
            ),
            format!(
                "{:?}",
                TokenResponse {
                    access_token: secret.into(),
                    refresh_token: secret.into(),
                    token_type: "Bearer".into(),
                    expires_in: 1,
                    refresh_token_expires_in: None
                }
            ),
            format!("{:?}", OAuthTokenRequest::password("u", secret)),
            format!("{:?}", OAuthTokenRequest::refresh(secret)),
            format!(
                "{:?}",
                OAuthTokenResponse {
                    access_token: secret.into(),
                    token_type: "Bearer".into(),
                    expires_in: None,
                    refresh_token: Some(secret.into()),
                    scope: None
                }
            ),
            format!(
                "{:?}",
                OAuthRevokeRequest {
                    token: secret.into(),
                    client_secret: Some(secret.into()),
                    ..OAuthRevokeRequest::default()
                }
            ),
            format!(
                "{:?}",
                SessionView {
                    access_token: Some(secret.into()),
                    ..SessionView::default()
                }
            ),
        ];
        for out in outputs {
            assert!(!out.contains(secret), "leaked: {out}");
            assert!(out.contains("[redacted]"), "{out}");
        }
    }

    #[test]
    fn schemas_derive() {
        // The issuer builds its OpenAPI document from these; make sure the
        // derives produce named schemas with the wire field names.
        let schema = serde_json::to_value(<TokenResponse as utoipa::PartialSchema>::schema())
            .unwrap()
            .to_string();
        assert!(schema.contains("accessToken"), "{schema}");
        assert!(schema.contains("refreshTokenExpiresIn"), "{schema}");
        assert_eq!(<SessionView as utoipa::ToSchema>::name(), "SessionView");
    }
}
