//! The two token-backend protocols: the article's JSON API and OAuth 2.0.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use sallyport_proto::{LoginRequest, OAuthRevokeRequest, OAuthTokenRequest, RefreshRequest, codes};
use serde::Deserialize;

use crate::Error;

/// Longest backend answer read (token responses are a few KiB).
const MAX_BODY_BYTES: usize = 64 * 1024;

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

/// A successful token answer, normalised over both protocols.
pub(crate) struct Granted {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

/// Why a token request failed, before mapping to the public [`Error`]
/// (the same HTTP answer means different things for login and refresh).
pub(crate) enum Failure {
    /// Network error, timeout, 5xx, 429 or unreadable success body.
    Unavailable(Error),
    /// A 4xx answer other than 429.
    Refused {
        status: StatusCode,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl Backend {
    pub(crate) async fn login(
        &self,
        http: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> Result<Granted, Failure> {
        let request = match self {
            Self::Json { login_url, .. } => http.post(login_url.clone()).json(&LoginRequest {
                username: username.to_owned(),
                password: password.to_owned(),
            }),
            Self::OAuth2 { token_url, .. } => http
                .post(token_url.clone())
                .form(&self.with_client(OAuthTokenRequest::password(username, password))),
        };
        self.grant(request).await
    }

    pub(crate) async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &str,
    ) -> Result<Granted, Failure> {
        let request = match self {
            Self::Json { refresh_url, .. } => {
                http.post(refresh_url.clone()).json(&RefreshRequest {
                    refresh_token: refresh_token.to_owned(),
                })
            }
            Self::OAuth2 { token_url, .. } => http
                .post(token_url.clone())
                .form(&self.with_client(OAuthTokenRequest::refresh(refresh_token))),
        };
        self.grant(request).await
    }

    /// Revokes the session at the backend. `Ok(false)` when the backend has
    /// no logout endpoint.
    pub(crate) async fn revoke(
        &self,
        http: &reqwest::Client,
        refresh_token: &str,
    ) -> Result<bool, Failure> {
        let request = match self {
            Self::Json {
                logout_url: Some(url),
                ..
            } => http.post(url.clone()).json(&RefreshRequest {
                refresh_token: refresh_token.to_owned(),
            }),
            Self::OAuth2 {
                revoke_url: Some(url),
                client_id,
                client_secret,
                ..
            } => http.post(url.clone()).form(&OAuthRevokeRequest {
                token: refresh_token.to_owned(),
                token_type_hint: Some("refresh_token".into()),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
            }),
            _ => return Ok(false),
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        Err(failure(status, response).await)
    }

    fn with_client(&self, mut form: OAuthTokenRequest) -> OAuthTokenRequest {
        if let Self::OAuth2 {
            client_id,
            client_secret,
            ..
        } = self
        {
            form.client_id.clone_from(client_id);
            form.client_secret.clone_from(client_secret);
        }
        form
    }

    async fn grant(&self, request: reqwest::RequestBuilder) -> Result<Granted, Failure> {
        let response = request
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(failure(status, response).await);
        }
        let body = read_limited(response).await?;
        let granted = match self {
            Self::Json { .. } => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct JsonGrant {
                    access_token: String,
                    #[serde(default)]
                    refresh_token: Option<String>,
                    #[serde(default)]
                    expires_in: Option<u64>,
                }
                let g: JsonGrant = serde_json::from_slice(&body).map_err(bad_body)?;
                Granted {
                    access_token: g.access_token,
                    refresh_token: g.refresh_token,
                    expires_in: g.expires_in,
                }
            }
            Self::OAuth2 { .. } => {
                let g: sallyport_proto::OAuthTokenResponse =
                    serde_json::from_slice(&body).map_err(bad_body)?;
                Granted {
                    access_token: g.access_token,
                    refresh_token: g.refresh_token,
                    expires_in: g.expires_in,
                }
            }
        };
        if granted.access_token.is_empty() {
            return Err(bad_body("empty access token"));
        }
        Ok(granted)
    }
}

fn transport(e: reqwest::Error) -> Failure {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    Failure::Unavailable(Error::unavailable(format!("{what}: {e}")))
}

fn bad_body(e: impl std::fmt::Display) -> Failure {
    Failure::Unavailable(Error::unavailable(format!(
        "unreadable token response: {e}"
    )))
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(bad_body("body too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn failure(status: StatusCode, response: reqwest::Response) -> Failure {
    let retry = retry_after(&response);
    // Only a 4xx is the backend's considered "no"; 5xx, stray redirects and
    // the like say nothing about the session, so they must not end it.
    if !status.is_client_error() {
        return Failure::Unavailable(Error::BackendUnavailable {
            message: format!("HTTP {status}"),
            retry_after: retry,
        });
    }
    // `{error, message}` (JSON API) or `{error, error_description}` (OAuth).
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        error: String,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
    }
    let body: Body = match read_limited(response).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => Body::default(),
    };
    Failure::Refused {
        status,
        code: body.error,
        message: body.message.or(body.error_description).unwrap_or_default(),
        retry_after: retry,
    }
}

impl Failure {
    /// Interprets a failed login.
    pub(crate) fn into_login_error(self) -> Error {
        match self {
            Self::Unavailable(e) => e,
            Self::Refused {
                status,
                code,
                message,
                retry_after,
            } => match (status, code.as_str()) {
                (StatusCode::TOO_MANY_REQUESTS, _) => Error::RateLimited { retry_after },
                (_, codes::INVALID_CREDENTIALS) => Error::InvalidCredentials,
                // OAuth: a wrong password is `invalid_grant` (RFC 6749 §5.2).
                (StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED, codes::INVALID_GRANT) => {
                    Error::InvalidCredentials
                }
                (StatusCode::UNAUTHORIZED, _) => Error::InvalidCredentials,
                (_, codes::ACCOUNT_DISABLED) | (StatusCode::FORBIDDEN, _) => Error::AccountDisabled,
                _ => Error::Backend {
                    status: status.as_u16(),
                    code,
                    message,
                },
            },
        }
    }

    /// Interprets a failed renewal: any refusal (4xx but 429) ends the session;
    /// everything else keeps it.
    pub(crate) fn into_refresh_error(self) -> Error {
        match self {
            Self::Unavailable(e) => e,
            Self::Refused {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after,
                ..
            } => Error::BackendUnavailable {
                message: "rate limited (HTTP 429)".into(),
                retry_after,
            },
            Self::Refused { status, code, .. } => Error::ReauthRequired {
                code: if code.is_empty() {
                    format!("HTTP {}", status.as_u16())
                } else {
                    code
                },
            },
        }
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
