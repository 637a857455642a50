//! Which token backend to talk to: the article's JSON API or OAuth 2.0.
//!
//! The calls themselves (bounded in time and size, `Retry-After` in both forms) are
//! the shared [`sallyport_backend::Client`], the same one the gateway uses; this
//! module names the backend and says what its failures mean to this crate's [`Error`].

use std::time::Duration;

use reqwest::Url;
use sallyport_backend::{ClientAuth, Error as BackendError, JsonFields, Protocol};
use sallyport_proto::codes;

use crate::Error;

/// How to talk to the token backend.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// The JSON API of the Sallyport issuer (and the article):
    /// `POST login_url {username, password}`, `POST refresh_url {refresh_token}`,
    /// `POST logout_url {refresh_token}`, answers `{accessToken, refreshToken, expiresIn}`.
    Json {
        /// e.g. `https://issuer/api/login`.
        login_url: Url,
        /// e.g. `https://issuer/api/refresh-token`.
        refresh_url: Url,
        /// e.g. `https://issuer/api/logout`; `None`: logout only forgets tokens.
        logout_url: Option<Url>,
    },
    /// An RFC 6749 token endpoint (`password` and `refresh_token` grants,
    /// form-encoded) with optional RFC 7009 revocation.
    OAuth2 {
        /// e.g. `https://issuer/oauth/token`.
        token_url: Url,
        /// e.g. `https://issuer/oauth/revoke`.
        revoke_url: Option<Url>,
        /// Sent as `client_id` when set.
        client_id: Option<String>,
        /// Sent as `client_secret` when set. Never printed.
        client_secret: Option<String>,
    },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json {
                login_url,
                refresh_url,
                logout_url,
            } => f
                .debug_struct("Json")
                .field("login_url", &login_url.as_str())
                .field("refresh_url", &refresh_url.as_str())
                .field("logout_url", &logout_url.as_ref().map(Url::as_str))
                .finish(),
            Self::OAuth2 {
                token_url,
                revoke_url,
                client_id,
                client_secret,
            } => f
                .debug_struct("OAuth2")
                .field("token_url", &token_url.as_str())
                .field("revoke_url", &revoke_url.as_ref().map(Url::as_str))
                .field("client_id", client_id)
                .field(
                    "client_secret",
                    &client_secret.as_ref().map(|_| "[redacted]"),
                )
                .finish(),
        }
    }
}

impl Backend {
    /// The Sallyport issuer's JSON API under `base` (`/api/login`,
    /// `/api/refresh-token`, `/api/logout`).
    pub fn issuer_json(base: &str) -> Result<Self, Error> {
        Ok(Self::Json {
            login_url: join(base, "api/login")?,
            refresh_url: join(base, "api/refresh-token")?,
            logout_url: Some(join(base, "api/logout")?),
        })
    }

    /// The Sallyport issuer's OAuth 2.0 endpoints under `base`
    /// (`/oauth/token`, `/oauth/revoke`), without client credentials.
    pub fn issuer_oauth2(base: &str) -> Result<Self, Error> {
        Ok(Self::OAuth2 {
            token_url: join(base, "oauth/token")?,
            revoke_url: Some(join(base, "oauth/revoke")?),
            client_id: None,
            client_secret: None,
        })
    }
}

fn join(base: &str, path: &str) -> Result<Url, Error> {
    let mut base =
        Url::parse(base).map_err(|e| Error::Config(format!("base URL {base:?}: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "base URL {base} must be http or https"
        )));
    }
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    base.join(path)
        .map_err(|e| Error::Config(format!("URL {base}{path}: {e}")))
}

impl Backend {
    /// The shared client's view of this backend; each call bounded by `timeout`.
    pub(crate) fn config(&self, timeout: Duration) -> sallyport_backend::Config {
        let (protocol, login_url, refresh_url, logout_url, client_auth) = match self {
            Self::Json {
                login_url,
                refresh_url,
                logout_url,
            } => (
                Protocol::Json(JsonFields::default()),
                login_url.clone(),
                refresh_url.clone(),
                logout_url.clone(),
                ClientAuth::None,
            ),
            Self::OAuth2 {
                token_url,
                revoke_url,
                client_id,
                client_secret,
            } => (
                Protocol::OAuth2 { scope: None },
                token_url.clone(),
                token_url.clone(),
                revoke_url.clone(),
                ClientAuth::Post {
                    id: client_id.clone(),
                    secret: client_secret.clone(),
                },
            ),
        };
        let mut config = sallyport_backend::Config::new(protocol, login_url, refresh_url);
        config.logout_url = logout_url;
        config.client_auth = client_auth;
        config.timeout = timeout;
        config
    }
}

/// Interprets a failed login (or revocation).
pub(crate) fn login_error(e: BackendError) -> Error {
    match e {
        BackendError::InvalidCredentials => Error::InvalidCredentials,
        BackendError::AccountDisabled => Error::AccountDisabled,
        BackendError::RateLimited { retry_after } => Error::RateLimited { retry_after },
        BackendError::Refused {
            status,
            code,
            message,
        } => Error::Backend {
            status,
            code,
            message,
        },
        BackendError::Unavailable {
            message,
            retry_after,
        } => Error::BackendUnavailable {
            message,
            retry_after,
        },
    }
}

/// Interprets a failed renewal: a refusal ends the session; everything else
/// (rate limiting included) keeps it.
pub(crate) fn refresh_error(e: BackendError) -> Error {
    match e {
        BackendError::RateLimited { retry_after } => Error::BackendUnavailable {
            message: "rate limited (HTTP 429)".into(),
            retry_after,
        },
        e @ BackendError::Unavailable { .. } => login_error(e),
        BackendError::Refused { status, code, .. } => Error::ReauthRequired {
            code: if code.is_empty() {
                format!("HTTP {status}")
            } else {
                code
            },
        },
        BackendError::InvalidCredentials | BackendError::AccountDisabled => Error::ReauthRequired {
            code: codes::INVALID_GRANT.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_urls() {
        let Backend::Json {
            login_url,
            refresh_url,
            logout_url,
        } = Backend::issuer_json("http://127.0.0.1:1/base").unwrap()
        else {
            panic!("json");
        };
        assert_eq!(login_url.as_str(), "http://127.0.0.1:1/base/api/login");
        assert_eq!(
            refresh_url.as_str(),
            "http://127.0.0.1:1/base/api/refresh-token"
        );
        assert_eq!(
            logout_url.unwrap().as_str(),
            "http://127.0.0.1:1/base/api/logout"
        );
        let Backend::OAuth2 { token_url, .. } = Backend::issuer_oauth2("http://h:2/").unwrap()
        else {
            panic!("oauth2");
        };
        assert_eq!(token_url.as_str(), "http://h:2/oauth/token");
        assert!(Backend::issuer_json("not a url").is_err());
        assert!(Backend::issuer_json("ftp://h/").is_err());
    }

    #[test]
    fn debug_redacts_client_secret() {
        let b = Backend::OAuth2 {
            token_url: Url::parse("http://h/t").unwrap(),
            revoke_url: None,
            client_id: Some("cid".into()),
            client_secret: Some("hunter2-secret".into()),
        };
        let s = format!("{b:?}");
        assert!(!s.contains("hunter2"));
        assert!(s.contains("cid"));
    }
}
