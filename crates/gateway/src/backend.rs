//! Backend adapter: how the gateway logs in, renews and revokes at the token backend.
//!
//! The HTTP calls, the protocols (json and oauth2), the bounds on each answer (time:
//! `backend.timeout_ms`; size: 64 KiB) and the reading of `Retry-After` are the shared
//! [`sallyport_backend::Client`], the same one `sallyport-client` uses. This module adds
//! what is the gateway's own: verifying the access token (`backend.jwks_url`), turning an
//! answer into session [`Tokens`], and the gateway's view of a failure.
//!
//! The one rule that matters most here (docs/design.md): only a *refusal* ends a session.
//! A backend that is down, slow, failing with 5xx or answering with something unreadable
//! or oversized yields [`BackendError::Unavailable`], and the session is kept.

use std::net::IpAddr;
use std::time::Duration;

use sallyport_backend::{Call, ClientAuth, Protocol, Url};

use crate::config::{BackendKind, BackendSettings};
use crate::error::Error;
use crate::state::Tokens;

/// Why a backend call did not produce tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// Login: wrong username or password (one generic answer for both, and for a
    /// disabled account).
    InvalidCredentials,
    /// Renewal: the backend refused the refresh token (`invalid_grant`, 400/401/403).
    Refused(String),
    /// Too many attempts; retry after this many seconds if known.
    RateLimited(Option<u64>),
    /// Unreachable, timed out, 5xx, an unreadable or oversized answer. Not the user's fault.
    Unavailable(String),
}

impl From<sallyport_backend::Error> for BackendError {
    fn from(e: sallyport_backend::Error) -> Self {
        use sallyport_backend::Error as E;
        match e {
            E::InvalidCredentials | E::AccountDisabled => Self::InvalidCredentials,
            E::Refused { code, .. } if code.is_empty() => {
                Self::Refused(sallyport_proto::codes::INVALID_GRANT.into())
            }
            E::Refused { code, .. } => Self::Refused(code),
            // Whole seconds, rounded up: never tell a client to come back too early.
            E::RateLimited { retry_after } => Self::RateLimited(
                retry_after.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)),
            ),
            E::Unavailable { message, .. } => Self::Unavailable(message),
        }
    }
}

/// A configured backend.
#[derive(Clone)]
pub(crate) struct Backend {
    client: sallyport_backend::Client,
    health_url: String,
    verifier: Option<sallyport_jwt::Verifier>,
    /// `kind = "oidc"`: renewed ID tokens are validated against the provider.
    oidc: Option<std::sync::Arc<crate::oidc::Oidc>>,
}

impl Backend {
    /// Builds the HTTP client (bounded by `backend.timeout_ms`) and the optional verifier.
    pub(crate) fn new(settings: BackendSettings) -> Result<Self, Error> {
        let url = |setting: &'static str, u: &str| {
            Url::parse(u).map_err(|e| Error::config(setting, format!("{u:?}: {e}")))
        };
        let protocol = match settings.kind {
            BackendKind::Json => Protocol::Json(settings.fields.clone()),
            BackendKind::OAuth2 | BackendKind::Oidc => Protocol::OAuth2 {
                scope: settings.scope.clone(),
            },
        };
        let client_auth = match (
            settings.kind,
            &settings.assertion,
            settings.client_auth_basic,
        ) {
            (BackendKind::Json, _, _) => ClientAuth::None,
            (_, Some(assertion), _) => ClientAuth::PrivateKeyJwt {
                id: settings.client_id.clone().unwrap_or_default(),
                assertion: assertion.clone(),
            },
            (_, None, true) => ClientAuth::Basic {
                id: settings.client_id.clone().unwrap_or_default(),
                secret: settings.client_secret.clone(),
            },
            // `client_secret_post`, or `none` (a public client: no secret to send).
            (_, None, false) => ClientAuth::Post {
                id: Some(settings.client_id.clone().unwrap_or_default()),
                secret: settings.client_secret.clone(),
            },
        };
        let mut config = sallyport_backend::Config::new(
            protocol,
            url("backend.login_url", &settings.login_url)?,
            url("backend.refresh_url", &settings.refresh_url)?,
        );
        config.logout_url = settings
            .logout_url
            .as_deref()
            .map(|u| url("backend.logout_url", u))
            .transpose()?;
        config.client_auth = client_auth;
        config.client_address_header = Some(settings.client_address_header.clone());
        config.timeout = settings.timeout;
        let http = sallyport_backend::Client::http_client(settings.timeout)
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
            client: sallyport_backend::Client::new(config, http),
            health_url: settings.health_url,
            verifier,
            oidc: None,
        })
    }

    /// The same backend, validating renewed ID tokens against `oidc`.
    pub(crate) fn with_oidc(mut self, oidc: Option<std::sync::Arc<crate::oidc::Oidc>>) -> Self {
        self.oidc = oidc;
        self
    }

    /// Redeems an authorization code; returns the tokens and the (not yet validated)
    /// ID token, which the caller checks against its login attempt's nonce.
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        now_s: u64,
        client: Option<IpAddr>,
    ) -> Result<(Tokens, Option<String>), BackendError> {
        let call = Call::at_unix_secs(now_s).for_client(client);
        let mut grant = self
            .client
            .exchange_code(code, redirect_uri, code_verifier, call)
            .await?;
        let id_token = grant.id_token.take();
        Ok((self.tokens(grant, None, now_s).await?, id_token))
    }

    /// The configured bound on each call.
    pub(crate) fn timeout(&self) -> Duration {
        self.client.config().timeout
    }

    /// Exchanges credentials for tokens on behalf of `client` (sent in
    /// `backend.client_address_header`, so the backend's login limits key on the
    /// client rather than on the gateway).
    pub(crate) async fn login(
        &self,
        username: &str,
        password: &str,
        now_s: u64,
        client: Option<IpAddr>,
    ) -> Result<Tokens, BackendError> {
        let call = Call::at_unix_secs(now_s).for_client(client);
        let grant = self.client.login(username, password, call).await?;
        self.tokens(grant, None, now_s).await
    }

    /// Redeems a refresh token on behalf of `client` (sent in
    /// `backend.client_address_header`). A backend that sends no new refresh token keeps
    /// the old one.
    pub(crate) async fn refresh(
        &self,
        refresh_token: &str,
        now_s: u64,
        client: Option<IpAddr>,
    ) -> Result<Tokens, BackendError> {
        let call = Call::at_unix_secs(now_s).for_client(client);
        let grant = self.client.refresh(refresh_token, call).await?;
        self.tokens(grant, Some(refresh_token), now_s).await
    }

    /// Revokes the session at the backend (json: logout URL; oauth2: RFC 7009).
    /// Best effort: the caller bounds it in time and logs a failure.
    pub(crate) async fn revoke(
        &self,
        refresh_token: &str,
        now_s: u64,
        client: Option<IpAddr>,
    ) -> Result<(), BackendError> {
        let call = Call::at_unix_secs(now_s).for_client(client);
        self.client.revoke(refresh_token, call).await?;
        Ok(())
    }

    /// Readiness: any HTTP answer from the backend counts as reachable.
    pub(crate) async fn probe(&self) -> bool {
        self.client
            .http()
            .get(&self.health_url)
            .send()
            .await
            .is_ok()
    }

    async fn tokens(
        &self,
        grant: sallyport_backend::Grant,
        old_refresh: Option<&str>,
        now_s: u64,
    ) -> Result<Tokens, BackendError> {
        let refresh_token = match (grant.refresh_token, old_refresh) {
            (Some(rt), _) => rt,
            (None, Some(old)) => old.to_owned(),
            (None, None) => {
                return Err(BackendError::Unavailable(
                    "login response has no refresh token".into(),
                ));
            }
        };
        let access_token = grant.access_token;
        if let Some(v) = &self.verifier {
            v.verify(&access_token).await.map_err(|e| {
                tracing::error!(error = %e, "access token from the backend failed verification");
                BackendError::Unavailable(format!("token verification failed: {e}"))
            })?;
        }
        let (id_token, id_sub) = match (&self.oidc, grant.id_token) {
            (Some(oidc), Some(t)) => {
                use crate::oidc::flow::{IdTokenError, validate_id_token};
                match validate_id_token(oidc, &t, now_s, None).await {
                    Ok(claims) => (Some(t), Some(claims.sub)),
                    // The tokens were rotated already: refusing them now would make the
                    // next renewal present a used refresh token. A key the JWKS does not
                    // have yet (a rotation within the refetch interval) or an unreachable
                    // JWKS only costs the new ID token; the session keeps the old one.
                    Err(IdTokenError::UnknownKey | IdTokenError::Unavailable(_)) => {
                        tracing::warn!(
                            "renewed ID token not verifiable yet (unknown key or JWKS unavailable); keeping the previous one"
                        );
                        (None, None)
                    }
                    Err(IdTokenError::Invalid(why)) => {
                        tracing::error!(%why, "renewed ID token failed validation; session ended");
                        return Err(BackendError::Refused(crate::error::INVALID_ID_TOKEN.into()));
                    }
                }
            }
            _ => (None, None),
        };
        let expires_at = crate::token::local_expiry(&access_token, grant.expires_in, now_s);
        let user = crate::token::user_of(&access_token);
        Ok(Tokens {
            access_token,
            refresh_token,
            expires_at,
            obtained_at: now_s,
            user,
            id_token,
            id_sub,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// 2015-10-21T07:28:00Z.
    const NOW_S: u64 = 1_445_412_480;

    /// A json backend on loopback whose every answer is `head` followed, if `endless`,
    /// by a chunked body that never ends.
    async fn backend_answering(head: &'static str, endless: bool) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let _ = sock.read(&mut buf).await;
                    if sock.write_all(head.as_bytes()).await.is_err() || !endless {
                        return;
                    }
                    let chunk = format!("2000\r\n{}\r\n", "[".repeat(0x2000));
                    while sock.write_all(chunk.as_bytes()).await.is_ok() {}
                });
            }
        });
        let mut c = crate::config::Config::default();
        c.session.secret = Some("x".repeat(32));
        c.session.secure = false;
        c.backend.login_url = Some(format!("http://{addr}/api/login"));
        c.backend.refresh_url = Some(format!("http://{addr}/api/refresh-token"));
        Backend::new(c.validate().unwrap().backend).unwrap()
    }

    /// Regression: the gateway read token answers unbounded (the whole of an endless
    /// body, until the time bound, into memory). Now it stops at 64 KiB: a fault.
    #[tokio::test]
    async fn an_endless_token_answer_is_unavailable_not_read_whole() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        let b = backend_answering(head, true).await;
        for outcome in [
            b.login("u", "p", NOW_S, None).await,
            b.refresh("rt", NOW_S, None).await,
        ] {
            match outcome {
                Err(BackendError::Unavailable(why)) => {
                    assert!(why.contains("larger than"), "{why}")
                }
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }

    /// Regression: only the seconds form of `Retry-After` was read.
    #[tokio::test]
    async fn retry_after_as_an_http_date_is_honoured() {
        let head = "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\
                    retry-after: Wed, 21 Oct 2015 07:30:00 GMT\r\n\r\n";
        let b = backend_answering(head, false).await;
        assert_eq!(
            b.login("u", "p", NOW_S, None).await.unwrap_err(),
            BackendError::RateLimited(Some(120))
        );
    }
}
