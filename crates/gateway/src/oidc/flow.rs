//! The authorization-code flow with PKCE (RFC 7636, S256), the callback, ID-token
//! validation (OpenID Connect Core §3.1.3.7) and RP-initiated logout.
//!
//! # One cookie per login attempt
//!
//! `GET {prefix}/login?next=…` makes a fresh `state`, `nonce` and code verifier, seals
//! them with `next` (iron, the session secret, 10 minutes) into a cookie whose *name*
//! is derived from the `state` (`sallyport-oidc-<16 hex>`, `Path={prefix}/callback`,
//! `HttpOnly`, `SameSite=Lax`, `Secure` with `session.secure`), and redirects to the
//! provider. The callback finds the cookie by the `state` it got back, so logins started
//! in several tabs at once each find their own attempt. A callback without its cookie
//! (forged, from another browser, expired), with a `state` already redeemed here (a
//! replay), with the provider's `error`, or with a wrong `iss` (RFC 9207) ends on an
//! error page with a link to start again — never a redirect, so never a loop.

use std::net::{IpAddr, SocketAddr};

use axum::Extension;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ATTEMPT_TTL, LEEWAY, Oidc, OidcSession};
use crate::auth::{attach_cookies, no_store};
use crate::backend::BackendError;
use crate::error::{Asker, Kind, RequestError, SignInFailure};
use crate::state::SessionData;
use crate::{Gateway, Inner, guard};

/// What the attempt cookie holds (sealed).
#[derive(Serialize, Deserialize)]
struct Attempt {
    /// Always [`PURPOSE`]: a sealed value made for something else (a session cookie)
    /// is never taken for an attempt.
    purpose: String,
    state: String,
    nonce: String,
    verifier: String,
    next: String,
}

const PURPOSE: &str = "sallyport-oidc-login";

/// 32 random bytes, base64url (43 characters): `state`, `nonce`, code verifier.
fn random_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The attempt cookie's name for `state`.
fn cookie_name(secure: bool, state: &str) -> String {
    let d = digest(state);
    let prefix = if secure { "__Secure-" } else { "" };
    format!("{prefix}sallyport-oidc-{}", hex::encode(&d[..8]))
}

fn attempt_cookie(inner: &Inner, oidc: &Oidc, name: &str, value: &str, max_age: u64) -> String {
    let secure = if inner.cookies.config().is_secure() {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        oidc.settings.callback_path
    )
}

/// `GET {prefix}/login` with the oidc backend: start a login at the provider.
pub(crate) fn start(inner: &Inner, oidc: &Oidc, next: &str) -> Response {
    let (Ok(state), Ok(nonce), Ok(verifier)) = (random_token(), random_token(), random_token())
    else {
        return sign_in_failed(
            inner,
            "Sign-in is unavailable right now (no randomness).",
            next,
        );
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let attempt = Attempt {
        purpose: PURPOSE.into(),
        state: state.clone(),
        nonce: nonce.clone(),
        verifier,
        next: next.to_owned(),
    };
    let now_ms = inner.clock.now_ms();
    let sealed = match sallyport_iron::seal_value(
        &attempt,
        inner.settings.passwords(),
        ATTEMPT_TTL.as_secs(),
        now_ms,
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot seal the login attempt");
            return sign_in_failed(inner, "Sign-in is unavailable right now.", next);
        }
    };
    let Ok(mut url) = url::Url::parse(&oidc.discovery().authorization_endpoint) else {
        return sign_in_failed(inner, "Sign-in is misconfigured.", next);
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.settings.client_id)
        .append_pair("redirect_uri", &oidc.settings.redirect_uri)
        .append_pair("scope", &oidc.settings.scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let name = cookie_name(inner.cookies.config().is_secure(), &state);
    let cookie = attempt_cookie(inner, oidc, &name, &sealed, ATTEMPT_TTL.as_secs());
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let (Ok(loc), Ok(c)) = (
        HeaderValue::from_str(url.as_str()),
        HeaderValue::from_str(&cookie),
    ) {
        r.headers_mut().insert(header::LOCATION, loc);
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    no_store(r.headers_mut());
    r
}

#[derive(Deserialize, Default)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET {prefix}/callback`: the provider's authorization response.
pub(crate) async fn callback(
    State(gw): State<Gateway>,
    conn: Option<Extension<ConnectInfo<SocketAddr>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let current = gw.current();
    let inner = &*current;
    let Some(oidc) = inner.oidc.clone() else {
        return RequestError::NotFound(crate::routes::NO_SUCH_ROUTE).respond(inner, &Asker::api());
    };
    let client = conn.map(|c| c.0.0.ip());
    let q: CallbackQuery = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let secure = inner.cookies.config().is_secure();
    let now_ms = inner.clock.now_ms();
    // The attempt cookie is cleared whatever happens next: an attempt is used once.
    let clear = q.state.as_deref().map(|s| {
        let name = cookie_name(secure, s);
        attempt_cookie(inner, &oidc, &name, "", 0)
    });
    let outcome = finish(inner, &oidc, &q, &headers, now_ms, client).await;
    let mut resp = match outcome {
        Ok((next, cookies)) => {
            inner.metrics.login("ok");
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&next) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            attach_cookies(r.headers_mut(), cookies);
            r
        }
        Err((refusal, next)) => {
            tracing::info!(reason = ?refusal, "oidc callback refused");
            RequestError::SignIn(refusal).respond(inner, &Asker::new(Kind::Page, &next, None))
        }
    };
    if let Some(c) = clear.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    no_store(resp.headers_mut());
    resp
}

type Finished = (String, Vec<HeaderValue>);

async fn finish(
    inner: &Inner,
    oidc: &Oidc,
    q: &CallbackQuery,
    headers: &HeaderMap,
    now_ms: u64,
    client: Option<IpAddr>,
) -> Result<Finished, (SignInFailure, String)> {
    let home = || "/".to_owned();
    let state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .ok_or((SignInFailure::State, home()))?;
    let name = cookie_name(inner.cookies.config().is_secure(), state);
    let sealed =
        sallyport_session::request_cookie(headers, &name).ok_or((SignInFailure::State, home()))?;
    let attempt: Attempt =
        sallyport_iron::unseal_value::<Attempt>(&sealed, inner.settings.passwords(), now_ms)
            .map(|(a, _)| a)
            .map_err(|_| (SignInFailure::State, home()))?;
    if attempt.purpose != PURPOSE || attempt.state != state {
        return Err((SignInFailure::State, home()));
    }
    let next = guard::safe_next(&attempt.next).unwrap_or_else(home);
    // Used once: the first callback with this state claims it, on this replica and (with
    // Redis) on every replica.
    let key = digest(state);
    if !oidc.used_states.entry(key).or_insert(()).is_fresh()
        || !inner
            .logged_out
            .claim_once("oidc-state", state, ATTEMPT_TTL + LEEWAY)
            .await
    {
        return Err((SignInFailure::Replayed, next));
    }
    // RFC 9207 before anything else of the response is believed.
    match &q.iss {
        Some(iss) if *iss != oidc.settings.issuer => return Err((SignInFailure::Issuer, next)),
        None if oidc.discovery().iss_parameter_supported => {
            return Err((SignInFailure::Issuer, next));
        }
        _ => {}
    }
    if let Some(error) = &q.error {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        tracing::info!(%code, description = ?q.error_description.as_deref().map(|d| d.chars().take(200).collect::<String>()), "provider refused the login");
        return Err((SignInFailure::Provider(code), next));
    }
    let code = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or((SignInFailure::State, next.clone()))?;
    let now_s = now_ms / 1000;
    let (mut tokens, id_token) = match inner
        .backend
        .exchange_code(
            code,
            &oidc.settings.redirect_uri,
            &attempt.verifier,
            now_s,
            client,
        )
        .await
    {
        Ok(t) => t,
        Err(BackendError::Refused(_) | BackendError::InvalidCredentials) => {
            return Err((SignInFailure::Code, next));
        }
        Err(e) => {
            tracing::warn!(error = ?e, "oidc code exchange failed");
            return Err((SignInFailure::Unavailable, next));
        }
    };
    let Some(id_token) = id_token else {
        tracing::warn!("the token endpoint sent no id_token (is `openid` in backend.scope?)");
        return Err((SignInFailure::IdToken, next));
    };
    let claims = match validate_id_token(oidc, &id_token, now_s, Some(&attempt.nonce)).await {
        Ok(c) => c,
        Err(IdTokenError::Unavailable(why)) => {
            tracing::warn!(%why, "provider keys unavailable");
            return Err((SignInFailure::Unavailable, next));
        }
        Err(IdTokenError::Invalid(why)) => {
            tracing::warn!(%why, "ID token refused");
            return Err((SignInFailure::IdToken, next));
        }
        Err(IdTokenError::UnknownKey) => {
            tracing::warn!("ID token signed with a key the provider does not publish");
            return Err((SignInFailure::IdToken, next));
        }
    };
    tokens.user = Some(sallyport_proto::SessionUser {
        sub: claims.sub.clone(),
        name: claims.name.clone(),
        roles: claims.roles.clone(),
    });
    let mut data = SessionData::from_tokens(&tokens);
    let mut kept = serde_json::Map::new();
    for c in &oidc.settings.claims {
        if let Some(v) = claims.extra.get(c) {
            kept.insert(c.clone(), v.clone());
        }
    }
    data.oidc = Some(OidcSession {
        iss: claims.iss.clone(),
        sub: claims.sub.clone(),
        sid: (!claims.sid.is_empty()).then(|| claims.sid.clone()),
        id_token: Some(id_token),
        login_ms: now_ms,
        claims: kept,
    });
    let cookies = inner.cookies.encode(&data, headers, now_ms).map_err(|e| {
        tracing::error!(error = %e, "session does not fit in the cookie");
        (SignInFailure::Unavailable, next.clone())
    })?;
    Ok((next, cookies))
}

/// Why an ID token was not accepted.
#[derive(Debug)]
pub(crate) enum IdTokenError {
    /// The provider's keys could not be fetched: a fault, not a verdict.
    Unavailable(String),
    /// Signed with a key the provider does not publish (yet, as far as we know: the
    /// JWKS refetch for an unknown `kid` is rate-limited to one per 10 s).
    UnknownKey,
    /// The token is not valid.
    Invalid(String),
}

/// OpenID Connect Core §3.1.3.7: signature by a provider key (JWKS, refetched on an
/// unknown `kid`), `iss`, `aud` contains the client id, `azp` is the client id when
/// present (and present when there are several audiences), `exp`, `iat` not in the
/// future and (at login) not older than a login attempt lives, and `nonce` equal to the attempt's
/// (`expected_nonce`; `None` for a renewed ID token, which carries the original one or
/// none).
pub(crate) async fn validate_id_token(
    oidc: &Oidc,
    token: &str,
    now_s: u64,
    expected_nonce: Option<&str>,
) -> Result<sallyport_jwt::AccessClaims, IdTokenError> {
    let claims = oidc
        .id_tokens
        .verify_at(token, now_s)
        .await
        .map_err(|e| match e {
            sallyport_jwt::Error::JwksUnavailable(why) => IdTokenError::Unavailable(why),
            sallyport_jwt::Error::UnknownKey(_) => IdTokenError::UnknownKey,
            other => IdTokenError::Invalid(other.to_string()),
        })?;
    let invalid = |why: &str| Err(IdTokenError::Invalid(why.into()));
    let client_id = &oidc.settings.client_id;
    let azp = claims.extra.get("azp").and_then(|v| v.as_str());
    match azp {
        Some(azp) if azp != client_id => return invalid("azp is another client"),
        None if claims.aud.len() > 1 => return invalid("several audiences and no azp"),
        _ => {}
    }
    let leeway = LEEWAY.as_secs();
    if claims.iat == 0 {
        return invalid("no iat");
    }
    if claims.iat > now_s.saturating_add(leeway) {
        return invalid("iat in the future");
    }
    // At login the token was issued for this attempt, so it is at most as old as the
    // attempt. A renewed one is not held to that: a provider that hands back its previous
    // ID token would otherwise end every session at its first renewal.
    if expected_nonce.is_some() && claims.iat.saturating_add(ATTEMPT_TTL.as_secs() + leeway) < now_s
    {
        return invalid("iat too old");
    }
    let nonce = claims.extra.get("nonce").and_then(|v| v.as_str());
    if let Some(expected) = expected_nonce
        && nonce != Some(expected)
    {
        return invalid("nonce does not match the login attempt");
    }
    Ok(claims)
}

impl Oidc {
    /// RP-initiated logout: the provider's `end_session_endpoint` with `id_token_hint`,
    /// `client_id` and `post_logout_redirect_uri`, when the provider has one.
    pub(crate) fn end_session_url(&self, session: Option<&OidcSession>) -> Option<String> {
        let discovery = self.discovery();
        let endpoint = discovery.end_session_endpoint.as_deref()?;
        let mut url = url::Url::parse(endpoint).ok()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = session.and_then(|s| s.id_token.as_deref()) {
                q.append_pair("id_token_hint", t);
            }
            q.append_pair("client_id", &self.settings.client_id);
            if let Some(u) = &self.settings.post_logout_redirect_uri {
                q.append_pair("post_logout_redirect_uri", u);
            }
        }
        Some(url.to_string())
    }
}

/// The page for a login that could not start.
fn sign_in_failed(inner: &Inner, message: &'static str, next: &str) -> Response {
    RequestError::SignIn(SignInFailure::Start(message))
        .respond(inner, &Asker::new(Kind::Page, next, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_cookie_names_differ_per_state_and_are_prefixed_when_secure() {
        let a = cookie_name(false, "state-a");
        assert_ne!(a, cookie_name(false, "state-b"));
        assert!(a.starts_with("sallyport-oidc-"));
        assert!(cookie_name(true, "state-a").starts_with("__Secure-sallyport-oidc-"));
    }
}
