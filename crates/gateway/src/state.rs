//! What the session cookie holds, and the per-request expiry decision.
//!
//! The payload is the article's `{isLoggedIn, accessToken, refreshToken}` plus a few
//! fields of our own; unknown fields are kept (`extra`) so that a Next.js app sharing the
//! cookie through iron-session does not lose what it wrote.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use sallyport_proto::{SessionUser, SessionView};

/// The sealed session payload.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionData {
    /// The article's flag.
    #[serde(default)]
    pub is_logged_in: bool,
    /// Current access token (JWT or opaque).
    #[serde(default)]
    pub access_token: Option<String>,
    /// Current refresh token; never leaves the gateway except towards the backend.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Access-token expiry on the gateway's clock (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<u64>,
    /// When the tokens were last obtained (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renewed_at: Option<u64>,
    /// Gateway session id: stays the same across renewals; what logout remembers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Identity from the access token's claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<SessionUser>,
    /// `backend.kind = "oidc"`: the provider's view of the session (subject, provider
    /// session id, ID token, chosen claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<crate::oidc::OidcSession>,
    /// Fields written by someone else (an iron-session app); preserved verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionData")
            .field("is_logged_in", &self.is_logged_in)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("sid", &self.sid)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Fresh tokens from a login or a renewal, with the expiry already fixed on our clock.
#[derive(Clone)]
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token (a backend that does not rotate keeps the old one).
    pub refresh_token: String,
    /// Expiry on the gateway's clock (Unix seconds), if known.
    pub expires_at: Option<u64>,
    /// When these tokens were obtained (Unix seconds).
    pub obtained_at: u64,
    /// Identity from the token's claims.
    pub user: Option<SessionUser>,
    /// OpenID Connect: a renewed ID token, already validated, and its `sub`.
    pub id_token: Option<String>,
    /// The `sub` of [`Self::id_token`].
    pub id_sub: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_at", &self.expires_at)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

pub use crate::renew::Freshness;

impl SessionData {
    /// A usable session has both tokens and the flag.
    pub fn is_usable(&self) -> bool {
        self.is_logged_in
            && self.access_token.as_deref().is_some_and(|t| !t.is_empty())
            && self.refresh_token.as_deref().is_some_and(|t| !t.is_empty())
    }

    /// The access token's expiry: the recorded one, else the JWT `exp`.
    pub fn expires_at(&self) -> Option<u64> {
        self.access_token_expires_at.or_else(|| {
            self.access_token
                .as_deref()
                .and_then(crate::token::expires_at)
        })
    }

    /// Builds a new session from login tokens, with a fresh session id (no fixation).
    pub fn from_tokens(tokens: &Tokens) -> Self {
        let mut s = SessionData {
            is_logged_in: true,
            sid: Some(new_sid()),
            ..Self::default()
        };
        s.put_tokens(tokens);
        s
    }

    fn put_tokens(&mut self, tokens: &Tokens) {
        self.is_logged_in = true;
        self.access_token = Some(tokens.access_token.clone());
        self.refresh_token = Some(tokens.refresh_token.clone());
        self.access_token_expires_at = tokens.expires_at;
        self.last_renewed_at = Some(tokens.obtained_at);
        if tokens.user.is_some() {
            self.user = tokens.user.clone();
        }
        if let (Some(o), Some(t)) = (&mut self.oidc, &tokens.id_token) {
            o.id_token = Some(t.clone());
        }
    }

    /// Puts renewed tokens into this session, keeping its id and foreign fields.
    ///
    /// A cookie written by other code (an iron-session app) has no `sid`; it gets the one
    /// derived from the refresh token it held ([`Self::logout_key`]), so every renewal of
    /// that cookie — concurrent ones, late ones from the grace map, on any replica — gives
    /// the same id, and logging out either the old or the renewed cookie ends both.
    pub fn apply(&mut self, tokens: &Tokens) {
        if self.sid.is_none() {
            self.sid = self.refresh_token.as_deref().map(derived_sid);
        }
        self.put_tokens(tokens);
    }

    /// The key logout remembers: the session id, or for a cookie without one, the id its
    /// first renewal will give it (derived from the refresh token, see [`Self::apply`]).
    pub fn logout_key(&self) -> Option<std::borrow::Cow<'_, str>> {
        match (&self.sid, &self.refresh_token) {
            (Some(sid), _) => Some(std::borrow::Cow::Borrowed(sid)),
            (None, Some(rt)) => Some(std::borrow::Cow::Owned(derived_sid(rt))),
            (None, None) => None,
        }
    }

    /// The identity, from the cookie or else from the token's claims.
    pub fn identity(&self) -> Option<SessionUser> {
        self.user
            .clone()
            .or_else(|| self.access_token.as_deref().and_then(crate::token::user_of))
    }

    /// The browser's view; never the refresh token.
    pub fn view(&self, expose_access_token: bool, ttl_secs: u64) -> SessionView {
        SessionView {
            is_logged_in: true,
            user: self.identity(),
            access_token_expires_at: self.expires_at(),
            last_renewed_at: self.last_renewed_at,
            session_expires_at: self.last_renewed_at.map(|t| t.saturating_add(ttl_secs)),
            error: None,
            access_token: if expose_access_token {
                self.access_token.clone()
            } else {
                None
            },
        }
    }
}

fn new_sid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The session id of a cookie that came without one: a hash of the refresh token it held
/// (the token itself must never serve as an id that is stored or logged).
fn derived_sid(refresh_token: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::new()
        .chain_update(b"sallyport sid\0")
        .chain_update(refresh_token.as_bytes())
        .finalize();
    hex::encode(&d[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(exp: Option<u64>) -> SessionData {
        SessionData {
            is_logged_in: true,
            access_token: Some("opaque".into()),
            refresh_token: Some("r".into()),
            access_token_expires_at: exp,
            ..SessionData::default()
        }
    }

    #[test]
    fn article_cookie_is_read_and_foreign_fields_survive() {
        let json = r#"{"isLoggedIn":true,"accessToken":"a","refreshToken":"r","cart":[1,2]}"#;
        let s: SessionData = serde_json::from_str(json).unwrap();
        assert!(s.is_usable());
        assert_eq!(s.logout_key().as_deref(), Some(derived_sid("r").as_str()));
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["cart"], serde_json::json!([1, 2]));
    }

    #[test]
    fn cookie_without_sid_gets_the_same_id_from_every_renewal() {
        let tokens = |rt: &str| Tokens {
            access_token: "a2".into(),
            refresh_token: rt.into(),
            expires_at: None,
            obtained_at: 0,
            user: None,
            id_token: None,
            id_sub: None,
        };
        let old = session(Some(5));
        let key_before = old.logout_key().unwrap().into_owned();
        let mut one = old.clone();
        one.apply(&tokens("r2"));
        let mut two = old.clone();
        two.apply(&tokens("r2"));
        assert_eq!(one.sid, two.sid);
        assert_eq!(one.sid.as_deref(), Some(key_before.as_str()));
        assert_ne!(key_before, "r", "the id is not the token");
        // A later renewal keeps the id.
        one.apply(&tokens("r3"));
        assert_eq!(one.sid, two.sid);
    }

    #[test]
    fn view_never_contains_refresh_token() {
        let s = session(Some(5));
        let v = serde_json::to_string(&s.view(true, 10)).unwrap();
        assert!(!v.contains("\"r\""));
        assert!(!v.to_ascii_lowercase().contains("refresh"));
        let v = serde_json::to_string(&s.view(false, 10)).unwrap();
        assert!(!v.contains("opaque"));
    }

    #[test]
    fn debug_redacts_tokens() {
        let s = session(None);
        let d = format!("{s:?}");
        assert!(!d.contains("opaque"));
    }
}
