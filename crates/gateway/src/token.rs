//! Reading access tokens: expiry and identity, through `sallyport-jwt`.
//!
//! The gateway does not need to verify signatures here (the token came straight from the
//! backend over a connection we opened, and it sits in a sealed cookie); verification
//! against a JWKS happens once, when tokens arrive, if the operator configured one.

use sallyport_proto::SessionUser;

/// The JWT `exp`, or `None` for an opaque or malformed token.
pub(crate) fn expires_at(token: &str) -> Option<u64> {
    sallyport_jwt::expires_at(token).ok()
}

/// The identity in the token's claims.
pub(crate) fn user_of(token: &str) -> Option<SessionUser> {
    let claims = sallyport_jwt::decode_unverified(token).ok()?;
    Some(SessionUser {
        sub: claims.sub,
        name: claims.name,
        roles: claims.roles,
    })
}

/// The access token's expiry **on the gateway's clock** (Unix seconds).
///
/// PP-12/PP-13: the expiry follows the token actually forwarded, and a backend whose clock
/// differs from ours must neither make us forward expired tokens nor renew in a loop. So
/// the token's lifetime (`exp - iat`, or `expires_in`) is added to *our* `now`, and the
/// smallest candidate wins.
pub(crate) fn local_expiry(token: &str, expires_in: Option<u64>, now_s: u64) -> Option<u64> {
    let mut candidates: Vec<u64> = Vec::with_capacity(2);
    if let Some(e) = expires_in {
        candidates.push(now_s.saturating_add(e));
    }
    if let Ok(claims) = sallyport_jwt::decode_unverified(token) {
        if claims.iat > 0 && claims.exp >= claims.iat {
            let skew = claims.iat as i64 - now_s as i64;
            if skew.abs() > 5 {
                tracing::debug!(skew_secs = skew, "backend clock differs from ours");
            }
            candidates.push(now_s.saturating_add(claims.exp - claims.iat));
        } else if claims.exp > 0 {
            candidates.push(claims.exp);
        }
    }
    candidates.into_iter().min()
}
