//! OpenID Connect Back-Channel Logout 1.0: `POST {prefix}/backchannel-logout`.
//!
//! The provider posts a `logout_token` (form-encoded, body at most [`MAX_BODY`]) when a
//! session ends at the provider. It is accepted only if (§2.6): the signature is by a
//! provider key (the JWKS; an unknown `kid` refetches it), `alg` is asymmetric, `typ` is
//! `logout+jwt` (or `JWT`, as Keycloak types them) when present, `iss` is the provider, `aud` contains our client id, `iat`
//! lies within [`MAX_AGE`] (and not in the future, beyond the leeway), `exp` has not
//! passed, `jti` has not been seen within that window (on this replica, and with Redis on
//! any replica), `events` has the
//! back-channel-logout member, there is no `nonce`, and there is a `sid` or a `sub`.
//!
//! The session is then recorded as logged out in the same logout record as a local
//! logout (memory, durable file, and Redis for every replica): by the provider's `sid`
//! when the token names one, otherwise every session of `sub` that began before now. The
//! next request with such a cookie, on any replica sharing Redis, is refused and never
//! renewed (`Inner::live_session`).
//!
//! Answers: 200 with `Cache-Control: no-store` when recorded; 400 with
//! `{"error": "invalid_request", "error_description": …}` for a token that is not valid;
//! 501 when this gateway has no oidc backend.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
use http::{Request, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{LEEWAY, Oidc, sid_key, subject_key};
use crate::Gateway;
use crate::error::{Asker, BackChannelFailure, RequestError};

/// The route, under the prefix.
pub(crate) const PATH: &str = "backchannel-logout";
/// Largest request body (a logout token is well under 4 KiB).
pub(crate) const MAX_BODY: usize = 16 * 1024;
/// Oldest `iat` accepted; `jti`s are remembered at least this long.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(300);
/// The `events` member that makes a JWT a logout token.
pub(crate) const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

#[derive(Deserialize)]
struct Form {
    logout_token: Option<String>,
}

/// Who the provider logged out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// One provider session.
    Sid(String),
    /// Every session of the subject.
    Subject(String),
}

/// `POST {prefix}/backchannel-logout`.
pub(crate) async fn handle(State(gw): State<Gateway>, req: Request<Body>) -> Response {
    let current = gw.current();
    let inner = &*current;
    let Some(oidc) = inner.oidc.clone() else {
        return refuse(inner, BackChannelFailure::NotOidc);
    };
    let form_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return refuse(
            inner,
            BackChannelFailure::Request("send application/x-www-form-urlencoded with logout_token"),
        );
    }
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
        return refuse(inner, BackChannelFailure::Request("request body too large"));
    };
    let Some(token) = serde_urlencoded::from_bytes::<Form>(&body)
        .ok()
        .and_then(|f| f.logout_token)
        .filter(|t| !t.is_empty())
    else {
        return refuse(inner, BackChannelFailure::Request("no logout_token"));
    };
    let now_ms = inner.clock.now_ms();
    let iss = oidc.settings.issuer.clone();
    let mut outcome = validate(&oidc, &token, now_ms / 1000).await;
    // The jti once across replicas too (Redis), so a captured token replayed to another
    // replica cannot end sessions begun after the logout it announced.
    if let Ok((_, jti)) = &outcome
        && !inner
            .logged_out
            .claim_once("logout-jti", jti, MAX_AGE + LEEWAY * 2)
            .await
    {
        outcome = Err(Invalid::Token("jti replayed".into()));
    }
    let outcome = outcome.map(|(target, _)| target);
    match outcome {
        Ok(target) => {
            let recorded = match &target {
                Target::Sid(sid) => {
                    inner
                        .logged_out
                        .remember_key(&sid_key(&iss, sid), now_ms)
                        .await
                }
                Target::Subject(sub) => {
                    inner
                        .logged_out
                        .remember_subject(&subject_key(&iss, sub), now_ms)
                        .await
                }
            };
            tracing::info!(target = ?match &target { Target::Sid(_) => "sid", Target::Subject(_) => "sub" },
                shared = recorded, "back-channel logout recorded");
            inner.metrics.logout("backchannel");
            let mut ok = StatusCode::OK.into_response();
            ok.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            ok
        }
        Err(Invalid::Unavailable(why)) => {
            tracing::warn!(%why, "back-channel logout: provider keys unavailable");
            // Not the token's fault: the provider retries on a 5xx.
            refuse(inner, BackChannelFailure::KeysUnavailable)
        }
        Err(Invalid::Token(why)) => {
            tracing::warn!(%why, "back-channel logout token refused");
            refuse(inner, BackChannelFailure::Token(why))
        }
    }
}

/// Why a logout token was refused.
#[derive(Debug)]
pub(crate) enum Invalid {
    Unavailable(String),
    Token(String),
}

/// Back-Channel Logout 1.0 §2.6, steps 1–7 (see the module). Returns who is logged out
/// and the token's `jti` (already claimed on this replica).
pub(crate) async fn validate(
    oidc: &Oidc,
    token: &str,
    now_s: u64,
) -> Result<(Target, String), Invalid> {
    let claims = oidc
        .logout_tokens
        .verify_at(token, now_s)
        .await
        .map_err(|e| match e {
            sallyport_jwt::Error::JwksUnavailable(why) => Invalid::Unavailable(why),
            other => Invalid::Token(other.to_string()),
        })?;
    let bad = |why: &str| Err(Invalid::Token(why.into()));
    if claims.iat == 0 {
        return bad("no iat");
    }
    if claims.iat > now_s.saturating_add(LEEWAY.as_secs()) {
        return bad("iat in the future");
    }
    if claims.iat.saturating_add(MAX_AGE.as_secs()) < now_s {
        return bad("iat too old");
    }
    let has_event = claims
        .extra
        .get("events")
        .and_then(|e| e.as_object())
        .and_then(|e| e.get(EVENT))
        .is_some_and(serde_json::Value::is_object);
    if !has_event {
        return bad("events has no back-channel logout event");
    }
    if claims.extra.contains_key("nonce") {
        return bad("a logout token must not contain a nonce");
    }
    let target = match (claims.sid.is_empty(), claims.sub.is_empty()) {
        (false, _) => Target::Sid(claims.sid.clone()),
        (true, false) => Target::Subject(claims.sub.clone()),
        (true, true) => return bad("neither sid nor sub"),
    };
    if claims.jti.is_empty() {
        return bad("no jti");
    }
    // Last, so that only a token valid in every other respect uses up its jti.
    let jti: [u8; 32] = Sha256::digest(claims.jti.as_bytes()).into();
    if !oidc.seen_jtis.entry(jti).or_insert(()).is_fresh() {
        return bad("jti replayed");
    }
    Ok((target, claims.jti))
}

/// A refusal, in the shape §2.8 asks for (see [`RequestError`]).
fn refuse(inner: &crate::Inner, why: BackChannelFailure) -> Response {
    RequestError::BackChannel(why).respond(inner, &Asker::api())
}
