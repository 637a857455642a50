//! The issuer as an OpenID provider for first-party apps: authorization codes, ID
//! tokens, RP-initiated logout and back-channel logout (the HTTP side is in
//! `http/oidc.rs`; see `docs/issuer.md`, "OpenID provider").
//!
//! Authorization codes are stored (hash only) rather than sealed: a code must be
//! single-use, and a second redemption must revoke what the first one issued (RFC 6749
//! §4.1.2). Both need shared state across replicas; a sealed code would still need a
//! "used" record, so sealing would save nothing but add a key to manage.
//!
//! The issuer keeps no browser session of its own (no SSO cookie): every authorization
//! request asks for the password. A code-flow session is one refresh-token family, as
//! for the password grant, with its client recorded; `sid` is its id.

use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backchannel::LOGOUT_EVENT;
use crate::error::Result;
use crate::store::{
    AuditEvent, CodeRecord, CodeRejection, OidcSessionRecord, RedeemOutcome, SessionRecord,
    TokenRecord, UserRecord,
};
use crate::token::RefreshSecret;
use crate::{IssuedTokens, Issuer, RefreshError, RequestContext, ceil_secs, mint_with};

/// Header `typ` of ID tokens (not `at+jwt`: an ID token must never pass as an access
/// token, nor the reverse).
pub const ID_TOKEN_TYP: &str = "JWT";
/// Header `typ` of logout tokens (Back-Channel Logout 1.0 §2.4).
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";
/// How long a logout token is valid after it was signed (covers the retries), in
/// milliseconds: also how long a retired key stays published.
pub(crate) const LOGOUT_TOKEN_TTL_MS: i64 = 300_000;

/// ID-token claims (OpenID Connect Core §2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdTokenClaims {
    /// Issuer URL.
    pub iss: String,
    /// User id.
    pub sub: String,
    /// The client id.
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// When the password was checked, unix seconds.
    pub auth_time: u64,
    /// The client's `nonce` (absent in refreshed ID tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Session id at the issuer (the refresh-token family); the logout token's `sid`.
    pub sid: String,
    /// Authorized party: the client id.
    pub azp: String,
    /// Login name (scope `profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Display name (scope `profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Logout-token claims (Back-Channel Logout 1.0 §2.4). No `nonce`, ever.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutTokenClaims {
    /// Issuer URL.
    pub iss: String,
    /// The client id.
    pub aud: String,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Unique id (receivers refuse replays by it).
    pub jti: String,
    /// `{"http://schemas.openid.net/event/backchannel-logout": {}}`.
    pub events: serde_json::Value,
    /// The ended session.
    pub sid: String,
    /// Its user.
    pub sub: String,
}

/// A validated authorization request (the HTTP layer checks the parameters).
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// Registered client.
    pub client_id: String,
    /// One of its registered redirect URIs, exactly.
    pub redirect_uri: String,
    /// Requested scope (space-separated; `openid` makes an ID token).
    pub scope: String,
    /// Echoed in the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
}

/// A verified `id_token_hint`.
#[derive(Debug, Clone)]
pub struct IdTokenHint {
    /// The client it was issued to.
    pub client_id: String,
    /// Its session.
    pub sid: String,
    /// Its user.
    pub sub: String,
}

/// Why a code redemption failed.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// Refused (`invalid_grant`).
    #[error("authorization code rejected ({})", .0.as_str())]
    Rejected(CodeRejection),
    /// Presented a second time: the session issued from it is revoked (`invalid_grant`).
    #[error("authorization code reused")]
    Reused,
    /// Internal failure.
    #[error(transparent)]
    Internal(#[from] crate::Error),
}

fn secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0) / 1000).unwrap_or(0)
}

/// `BASE64URL(SHA-256(verifier))` (RFC 7636 §4.2, S256).
pub fn s256_challenge(verifier: &str) -> String {
    BASE64_URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

impl Issuer {
    /// After a successful login at `/oauth/authorize`: stores and returns a fresh
    /// single-use code bound to the request and a new session id.
    pub async fn issue_code(
        &self,
        req: &AuthorizationRequest,
        user: &UserRecord,
        ctx: &RequestContext,
    ) -> Result<String> {
        let now = self.now_ms();
        let secret = RefreshSecret::generate()?;
        let record = CodeRecord {
            code_hash: secret.hash(),
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            nonce: req.nonce.clone(),
            scope: req.scope.clone(),
            user_id: user.id.clone(),
            session_id: uuid::Uuid::now_v7().to_string(),
            auth_time: now,
            created_at: now,
            expires_at: now.saturating_add(self.settings().code_ttl_ms),
            used_at: None,
        };
        self.store().insert_code(&record, now).await?;
        // Counted and audited as the JSON login's success is.
        self.metrics().login("success");
        self.metrics().authorization("code_issued");
        self.audit(AuditEvent {
            user_id: Some(user.id.clone()),
            username: Some(user.username.clone()),
            session_id: Some(record.session_id.clone()),
            client_addr: ctx.client_addr.clone(),
            detail: Some(format!("authorization code for client {}", req.client_id)),
            ..AuditEvent::new("login_succeeded", now)
        })
        .await;
        Ok(secret.encode())
    }

    /// `grant_type=authorization_code`: checks the code against the (authenticated)
    /// client, the redirect URI and the PKCE verifier, then creates the session and
    /// returns access, refresh and (scope `openid`) ID token. A reused code revokes the
    /// session issued from it and tells its client over the back channel.
    pub async fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
        ctx: &RequestContext,
    ) -> std::result::Result<IssuedTokens, CodeError> {
        let m = self.metrics();
        let Some(presented) = RefreshSecret::parse(code) else {
            m.authorization("code_unknown");
            return Err(CodeError::Rejected(CodeRejection::Unknown));
        };
        let now = self.now_ms();
        let s = self.settings();
        let fresh = RefreshSecret::generate()?;
        let fresh_hash = fresh.hash();
        let challenge = s256_challenge(code_verifier);
        let check = |c: &CodeRecord,
                     user: Option<&UserRecord>|
         -> std::result::Result<(SessionRecord, TokenRecord), CodeRejection> {
            if c.expires_at <= now {
                return Err(CodeRejection::Expired);
            }
            if c.client_id != client_id {
                return Err(CodeRejection::WrongClient);
            }
            if c.redirect_uri != redirect_uri {
                return Err(CodeRejection::WrongRedirectUri);
            }
            if aws_lc_rs::constant_time::verify_slices_are_equal(
                challenge.as_bytes(),
                c.code_challenge.as_bytes(),
            )
            .is_err()
            {
                return Err(CodeRejection::WrongVerifier);
            }
            if user.is_none_or(|u| u.disabled_at.is_some()) {
                return Err(CodeRejection::UserDisabled);
            }
            Ok(crate::new_session(
                &s,
                c.session_id.clone(),
                &c.user_id,
                fresh_hash.clone(),
                now,
                ctx,
            ))
        };
        let outcome = self
            .store()
            .redeem_code(&presented.hash(), now, &check)
            .await?;
        match outcome {
            RedeemOutcome::Rejected(reason) => {
                m.authorization(match reason {
                    CodeRejection::Unknown => "code_unknown",
                    _ => "code_rejected",
                });
                tracing::info!(
                    reason = reason.as_str(),
                    client_id,
                    "authorization code refused"
                );
                Err(CodeError::Rejected(reason))
            }
            RedeemOutcome::Reused {
                session_id,
                user_id,
                revoked_now,
            } => {
                tracing::warn!(%session_id, %user_id, client_id, "authorization code reused; session revoked");
                m.authorization("code_reused");
                if revoked_now {
                    m.revocation("code_reuse");
                    self.notify_session_ended(&session_id).await;
                }
                Err(CodeError::Reused)
            }
            RedeemOutcome::Redeemed(redeemed) => {
                let crate::store::Redeemed {
                    code,
                    session,
                    user,
                } = *redeemed;
                m.authorization("code_redeemed");
                let ring = self.keys().await?;
                let (access_token, access_exp) = mint_with(&ring, &s, &user, &session, now)?;
                let oidc = OidcSessionRecord {
                    session_id: session.id.clone(),
                    user_id: user.id.clone(),
                    client_id: code.client_id.clone(),
                    auth_time: code.auth_time,
                    scope: code.scope.clone(),
                };
                let id_token = if has_scope(&code.scope, "openid") {
                    Some(
                        self.sign_id_token(&oidc, Some(&user), code.nonce.clone(), now)
                            .await?,
                    )
                } else {
                    None
                };
                self.audit(AuditEvent {
                    user_id: Some(user.id.clone()),
                    username: Some(user.username.clone()),
                    session_id: Some(session.id.clone()),
                    client_addr: ctx.client_addr.clone(),
                    detail: Some(format!("client {}", code.client_id)),
                    ..AuditEvent::new("authorization_code_redeemed", now)
                })
                .await;
                Ok(IssuedTokens {
                    access_token,
                    refresh_token: fresh.encode(),
                    expires_in: ceil_secs(access_exp - now),
                    refresh_token_expires_in: ceil_secs(
                        now.saturating_add(s.idle_ttl_ms).min(session.expires_at) - now,
                    ),
                    session_id: session.id,
                    id_token,
                    scope: Some(code.scope),
                })
            }
        }
    }

    /// The ID token of a refresh answer (none without scope `openid`).
    pub(crate) async fn refreshed_id_token(
        &self,
        oidc: &OidcSessionRecord,
        now: i64,
    ) -> std::result::Result<Option<String>, RefreshError> {
        if !has_scope(&oidc.scope, "openid") {
            return Ok(None);
        }
        let user = if has_scope(&oidc.scope, "profile") {
            self.store().user_by_id(&oidc.user_id).await?
        } else {
            None
        };
        Ok(Some(
            self.sign_id_token(oidc, user.as_ref(), None, now).await?,
        ))
    }

    async fn sign_id_token(
        &self,
        oidc: &OidcSessionRecord,
        user: Option<&UserRecord>,
        nonce: Option<String>,
        now: i64,
    ) -> Result<String> {
        let s = self.settings();
        let profile = has_scope(&oidc.scope, "profile");
        let claims = IdTokenClaims {
            iss: s.issuer.clone(),
            sub: oidc.user_id.clone(),
            aud: oidc.client_id.clone(),
            exp: secs(now.saturating_add(s.id_token_ttl_ms)),
            iat: secs(now),
            auth_time: secs(oidc.auth_time),
            nonce,
            sid: oidc.session_id.clone(),
            azp: oidc.client_id.clone(),
            preferred_username: user.filter(|_| profile).map(|u| u.username.clone()),
            name: user.filter(|_| profile).and_then(|u| u.name.clone()),
        };
        self.keys().await?.sign_typed(&claims, ID_TOKEN_TYP)
    }

    /// Verifies an `id_token_hint` (RP-initiated logout): our signature (any key still
    /// published), our `iss`, header `typ: JWT`, an audience that is a registered
    /// client. An expired token is accepted — logging out with an old ID token is the
    /// normal case. `None` for anything else.
    pub async fn verify_id_token_hint(&self, token: &str) -> Option<IdTokenHint> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.typ.as_deref() != Some(ID_TOKEN_TYP) {
            return None;
        }
        let kid = header.kid?;
        let ring = self.keys().await.ok()?;
        let jwk = ring
            .jwks()
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid.as_str()))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).ok()?;
        let alg = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => {
                jsonwebtoken::Algorithm::EdDSA
            }
            _ => jsonwebtoken::Algorithm::ES256,
        };
        if header.alg != alg {
            return None;
        }
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_issuer(&[self.settings().issuer.as_str()]);
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        let data = jsonwebtoken::decode::<IdTokenClaims>(token, &key, &validation).ok()?;
        let c = data.claims;
        self.settings().clients.client(&c.aud)?;
        Some(IdTokenHint {
            client_id: c.aud,
            sid: c.sid,
            sub: c.sub,
        })
    }

    /// RP-initiated logout: revokes the session and notifies its client. False when
    /// it was unknown or already revoked.
    pub async fn end_session(&self, session_id: &str, ctx: &RequestContext) -> Result<bool> {
        let now = self.now_ms();
        let revoked = self
            .store()
            .revoke_session(session_id, now, "rp_logout")
            .await?;
        if revoked {
            self.metrics().revocation("rp_logout");
            self.audit(AuditEvent {
                session_id: Some(session_id.to_owned()),
                client_addr: ctx.client_addr.clone(),
                ..AuditEvent::new("rp_logout", now)
            })
            .await;
            self.notify_session_ended(session_id).await;
        }
        Ok(revoked)
    }

    /// Queues a back-channel logout token for the client of a code-flow session, if it
    /// registered a `backchannel_logout_uri`. Never waits for the delivery; failures to
    /// look up or sign are logged (the session is revoked either way).
    pub(crate) async fn notify_session_ended(&self, session_id: &str) {
        let oidc = match self.store().oidc_session(session_id).await {
            Ok(Some(o)) => o,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%err, session_id, "back-channel logout: session lookup failed");
                self.metrics().backchannel_logout("failed");
                return;
            }
        };
        let Some(uri) = self
            .settings()
            .clients
            .client(&oidc.client_id)
            .and_then(|c| c.backchannel_logout_uri.clone())
        else {
            return;
        };
        match self.logout_token(&oidc).await {
            Ok(token) => self.inner.notifier.send(&oidc.client_id, &uri, token),
            Err(err) => {
                tracing::warn!(%err, session_id, "back-channel logout: could not sign");
                self.metrics().backchannel_logout("failed");
            }
        }
    }

    async fn logout_token(&self, oidc: &OidcSessionRecord) -> Result<String> {
        let iat = secs(self.now_ms());
        let claims = LogoutTokenClaims {
            iss: self.settings().issuer.clone(),
            aud: oidc.client_id.clone(),
            iat,
            exp: iat.saturating_add(secs(LOGOUT_TOKEN_TTL_MS)),
            jti: uuid::Uuid::new_v4().to_string(),
            events: serde_json::json!({ LOGOUT_EVENT: {} }),
            sid: oidc.session_id.clone(),
            sub: oidc.user_id.clone(),
        };
        self.keys().await?.sign_typed(&claims, LOGOUT_TOKEN_TYP)
    }

    /// Waits (at most `timeout`) until every queued back-channel logout was delivered
    /// or gave up; true when none is left. For short-lived processes such as the CLI.
    pub async fn flush_logout_notifications(&self, timeout: Duration) -> bool {
        self.inner.notifier.flush(timeout).await
    }
}
