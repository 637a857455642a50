//! Backend adapters: how the gateway logs in, renews and revokes at the token backend.
//!
//! The one rule that matters most here (PP-19): only a *refusal* ends a session. A
//! backend that is down, slow (every call is bounded by `backend.timeout_ms`) or failing
//! with 5xx yields [`BackendError::Unavailable`], and the session is kept.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Map, Value};

use crate::config::{BackendKind, BackendSettings};
use crate::error::Error;
use crate::state::Tokens;

/// Why a backend call did not produce tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// Login: wrong username or password (one generic answer for both).
    InvalidCredentials,
    /// Renewal: the backend refused the refresh token (`invalid_grant`, 400/401).
    Refused(String),
    /// Too many attempts; retry after this many seconds if known.
    RateLimited(Option<u64>),
    /// Unreachable, timed out, 5xx or an unreadable answer. Not the user's fault.
    Unavailable(String),
}

/// A configured backend.
#[derive(Clone)]
pub struct Backend {
    settings: BackendSettings,
    http: reqwest::Client,
    verifier: Option<sallyport_jwt::Verifier>,
}

impl Backend {
    /// Builds the HTTP client (bounded by `backend.timeout_ms`) and the optional verifier.
    pub fn new(settings: BackendSettings) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::HttpClient(e.to_string()))?;
        let verifier = match &settings.jwks_url {
            None => None,
            Some(url) => Some(crate::verify::verifier(
                url,
                settings.jwt_issuer.clone(),
                settings.jwt_audience.clone(),
            )?),
        };
        Ok(Self {
            settings,
            http,
            verifier,
        })
    }

    /// The configured bound on each call.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Tells the backend which client the call is for (`backend.client_address_header`),
    /// so its login limits key on the client rather than on the gateway. The value is
    /// the TCP peer the gateway saw, set (not appended): whatever the client sent in
    /// that header is not forwarded to the backend.
    fn for_client(
        &self,
        req: reqwest::RequestBuilder,
        client: Option<IpAddr>,
    ) -> reqwest::RequestBuilder {
        match client {
            Some(ip) => req.header(
                self.settings.client_address_header.clone(),
                ip.to_canonical().to_string(),
            ),
            None => req,
        }
    }

    /// Exchanges credentials for tokens on behalf of `client`.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        now_s: u64,
        client: Option<IpAddr>,
    ) -> Result<Tokens, BackendError> {
        let req = match self.settings.kind {
            BackendKind::Json => {
                let f = &self.settings.fields;
                let mut body = Map::new();
                body.insert(f.username.clone(), Value::from(username));
                body.insert(f.password.clone(), Value::from(password));
                self.http.post(&self.settings.login_url).json(&body)
            }
            BackendKind::OAuth2 => {
                let mut form = vec![
                    ("grant_type", "password"),
                    ("username", username),
                    ("password", password),
                ];
                if let Some(scope) = &self.settings.scope {
                    form.push(("scope", scope));
                }
                self.oauth_request(&self.settings.login_url, form)
            }
        };
        let resp = self
            .for_client(req, client)
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status.is_success() {
            return self.tokens(resp, None, now_s).await;
        }
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => BackendError::RateLimited(retry_after(&resp)),
            s if s.is_server_error() => BackendError::Unavailable(format!("login: HTTP {s}")),
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                match error_code(resp).await.as_deref() {
                    Some("invalid_client") => client_misconfigured(),
                    _ => BackendError::InvalidCredentials,
                }
            }
            s => BackendError::Unavailable(format!("login: unexpected HTTP {s}")),
        })
    }

    /// Redeems a refresh token. A backend that sends no new refresh token keeps the old one.
    pub async fn refresh(&self, refresh_token: &str, now_s: u64) -> Result<Tokens, BackendError> {
        self.refresh_for(refresh_token, now_s, None).await
    }

    /// [`Backend::refresh`] on behalf of `client` (sent in `backend.client_address_header`).
    pub async fn refresh_for(
        &self,
        refresh_token: &str,
        now_s: u64,
        client: Option<IpAddr>,
    ) -> Result<Tokens, BackendError> {
        let req = match self.settings.kind {
            BackendKind::Json => {
                let mut body = Map::new();
                body.insert(
                    self.settings.fields.refresh_request.clone(),
                    Value::from(refresh_token),
                );
                self.http.post(&self.settings.refresh_url).json(&body)
            }
            BackendKind::OAuth2 => self.oauth_request(
                &self.settings.refresh_url,
                vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
            ),
        };
        let resp = self
            .for_client(req, client)
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status.is_success() {
            return self.tokens(resp, Some(refresh_token), now_s).await;
        }
        Err(match status {
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                match error_code(resp).await {
                    // The gateway's own credentials are wrong: an operator's problem, not
                    // the user's, so nobody is logged out over it.
                    Some(code) if code == "invalid_client" => client_misconfigured(),
                    code => BackendError::Refused(code.unwrap_or_else(|| "invalid_grant".into())),
                }
            }
            StatusCode::TOO_MANY_REQUESTS => BackendError::RateLimited(retry_after(&resp)),
            s => BackendError::Unavailable(format!("refresh: HTTP {s}")),
        })
    }

    /// Revokes the session at the backend (json: logout URL; oauth2: RFC 7009).
    /// Best effort: the caller bounds it in time and logs a failure.
    pub async fn revoke(
        &self,
        refresh_token: &str,
        client: Option<IpAddr>,
    ) -> Result<(), BackendError> {
        let Some(url) = &self.settings.logout_url else {
            return Ok(());
        };
        let req = match self.settings.kind {
            BackendKind::Json => {
                let mut body = Map::new();
                body.insert(
                    self.settings.fields.refresh_request.clone(),
                    Value::from(refresh_token),
                );
                self.http.post(url).json(&body)
            }
            BackendKind::OAuth2 => self.oauth_request(
                url,
                vec![
                    ("token", refresh_token),
                    ("token_type_hint", "refresh_token"),
                ],
            ),
        };
        let resp = self
            .for_client(req, client)
            .send()
            .await
            .map_err(unavailable)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(BackendError::Unavailable(format!(
                "revoke: HTTP {}",
                resp.status()
            )))
        }
    }

    /// Readiness: any HTTP answer from the backend counts as reachable.
    pub async fn probe(&self) -> bool {
        self.http
            .get(&self.settings.health_url)
            .send()
            .await
            .is_ok()
    }

    fn oauth_request<'a>(
        &'a self,
        url: &str,
        mut form: Vec<(&'a str, &'a str)>,
    ) -> reqwest::RequestBuilder {
        let id = self.settings.client_id.as_deref().unwrap_or_default();
        let secret = self.settings.client_secret.as_deref();
        let mut req = self.http.post(url);
        if self.settings.client_auth_basic {
            // RFC 6749 §2.3.1: form-urlencode id and secret before Basic encoding.
            let enc = |s: &str| {
                serde_urlencoded::to_string([("", s)])
                    .map(|x| x.trim_start_matches('=').to_string())
                    .unwrap_or_default()
            };
            req = req.basic_auth(enc(id), secret.map(enc));
        } else {
            form.push(("client_id", id));
            if let Some(secret) = secret {
                form.push(("client_secret", secret));
            }
        }
        req.form(&form)
    }

    async fn tokens(
        &self,
        resp: reqwest::Response,
        old_refresh: Option<&str>,
        now_s: u64,
    ) -> Result<Tokens, BackendError> {
        let body: Value = resp
            .json()
            .await
            .map_err(|e| BackendError::Unavailable(format!("unreadable token response: {e}")))?;
        let (at_field, rt_field, exp_field) = match self.settings.kind {
            BackendKind::Json => {
                let f = &self.settings.fields;
                (
                    f.access_token.as_str(),
                    f.refresh_token.as_str(),
                    f.expires_in.as_str(),
                )
            }
            BackendKind::OAuth2 => ("access_token", "refresh_token", "expires_in"),
        };
        let access_token = body
            .get(at_field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                BackendError::Unavailable(format!("token response has no `{at_field}`"))
            })?
            .to_string();
        let refresh_token = match body.get(rt_field).and_then(Value::as_str) {
            Some(rt) if !rt.is_empty() => rt.to_string(),
            _ => match old_refresh {
                Some(old) => old.to_string(),
                None => {
                    return Err(BackendError::Unavailable(format!(
                        "login response has no `{rt_field}`"
                    )));
                }
            },
        };
        let expires_in = body.get(exp_field).and_then(Value::as_u64);
        if let Some(v) = &self.verifier {
            v.verify(&access_token).await.map_err(|e| {
                tracing::error!(error = %e, "access token from the backend failed verification");
                BackendError::Unavailable(format!("token verification failed: {e}"))
            })?;
        }
        let expires_at = crate::token::local_expiry(&access_token, expires_in, now_s);
        let user = crate::token::user_of(&access_token);
        Ok(Tokens {
            access_token,
            refresh_token,
            expires_at,
            obtained_at: now_s,
            user,
        })
    }
}

/// The `error` member of an error body, if there is one.
async fn error_code(resp: reqwest::Response) -> Option<String> {
    let body: Value = resp.json().await.ok()?;
    body.get("error")?.as_str().map(str::to_string)
}

fn client_misconfigured() -> BackendError {
    tracing::error!(
        "the backend rejected the gateway's client credentials (invalid_client); check backend.client_id / backend.client_secret"
    );
    BackendError::Unavailable("invalid_client".into())
}

fn unavailable(e: reqwest::Error) -> BackendError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "unreachable"
    } else {
        "failed"
    };
    BackendError::Unavailable(format!("backend {kind}: {e}"))
}

fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
