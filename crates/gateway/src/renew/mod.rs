//! Renewal: when a session's access token is renewed, what a failure does to the
//! session, and the one renewal a request may cause.
//!
//! # The rule
//!
//! 1. **When.** A request to a protected path renews its session when the access token
//!    expires within `session.leeway_secs` — at most half the token's lifetime, so tokens
//!    shorter than the leeway are not renewed on every request — or has expired
//!    ([`SessionData::freshness`]). A token of unknown expiry is used as it is.
//! 2. **Only sessions that will be answered.** Only a live session
//!    ([`crate::Inner::live_session`]: not logged out here or on any replica) is renewed,
//!    and only by a request that is going to be answered with it: refusals (CSRF, a bad
//!    path, a refused upgrade) are decided first ([`crate::Inner::has_session`] is the
//!    read-only check), since their response could not carry the new cookie. Public paths
//!    never renew.
//! 3. **Policy.** Only the backend's *refusal* (`invalid_grant`, or a renewed ID token of
//!    another subject) ends the session: 401 `reauth_required` and the cookie expired. A
//!    fault (unreachable, slow, 5xx, rate-limited) keeps it: the old token is used while
//!    it is still valid, after that 503 with `Retry-After` ([`crate::Inner::renew`],
//!    [`crate::Inner::authenticate`]).
//! 4. **Single flight.** A refresh token is redeemed at most once per session: concurrent
//!    requests join one backend call, a late request with the old cookie gets the result
//!    from the grace map, and replicas sharing Redis do the same across processes
//!    ([`flight`]).
//! 5. **Replay after upstream's 401.** When upstream rejects a token we believed good, an
//!    idempotent request (GET/HEAD/OPTIONS or `Idempotency-Key`, body up to
//!    `proxy.replay_body_limit`, no upgrade) that did not renew already gets one renewal
//!    and is sent once more with the new token ([`crate::Inner::renew_after_upstream_401`],
//!    [`Replay`]); otherwise upstream's 401 is the answer.
//! 6. **`POST {prefix}/refresh`** renews the live session now, whatever its freshness,
//!    under the same policy ([`crate::Inner::renew_on_request`]).

mod flight;
mod replay;

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use sallyport_proto::AuthErrorCode;

pub(crate) use flight::{Remote, Renewer, call_bound};
pub(crate) use replay::Replay;

use crate::Inner;
use crate::backend::BackendError;
use crate::error::RequestError;
use crate::state::SessionData;

/// The outcome of the per-request expiry check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Use the token as it is.
    Fresh,
    /// Renew now; `still_valid` says whether the old token may be used if renewal fails.
    RenewDue {
        /// The old access token has not expired yet.
        still_valid: bool,
    },
}

impl SessionData {
    /// Decides whether the token must be renewed at `now_s` with `leeway_secs` of margin.
    ///
    /// A token of unknown expiry is used as is: upstream's 401 then triggers one renewal.
    /// The leeway never exceeds half the token's lifetime, so a backend issuing tokens
    /// shorter than the leeway does not get a renewal on every request (PP-13).
    pub fn freshness(&self, now_s: u64, leeway_secs: u64) -> Freshness {
        let Some(exp) = self.expires_at() else {
            return Freshness::Fresh;
        };
        let leeway = match self.last_renewed_at {
            Some(at) if exp > at => leeway_secs.min((exp - at) / 2),
            _ => leeway_secs,
        };
        match exp {
            exp if now_s.saturating_add(leeway) >= exp => Freshness::RenewDue {
                still_valid: now_s < exp,
            },
            _ => Freshness::Fresh,
        }
    }
}

/// The result of steps 2–5.
pub(crate) enum Authn {
    /// A usable session; `write` says whether this response must set the cookie (renewed
    /// or re-sealed with the newest password).
    Session {
        /// Shared with the session cache; copied only when renewed.
        data: Arc<SessionData>,
        write: bool,
        /// Renewed during this request (so an upstream 401 is not worth another renewal).
        renewed: bool,
    },
    /// No usable session ([`RequestError::NoSession`]: none, or the backend refused it),
    /// or the token has expired and the backend cannot renew it right now
    /// ([`RequestError::Unavailable`]: session kept).
    Refused(RequestError),
}

impl Inner {
    /// Steps 2, 4 and 5.
    /// `client`: the request's TCP peer (sent to the backend with a renewal), if the
    /// caller is the client itself.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        now_ms: u64,
        client: Option<IpAddr>,
    ) -> Authn {
        let Some(loaded) = self.live_session(headers, now_ms).await else {
            return Authn::Refused(RequestError::NoSession {
                code: AuthErrorCode::SessionExpired,
                clear: false,
            });
        };
        let now_s = now_ms / 1000;
        match loaded.value.freshness(now_s, self.settings.leeway_secs) {
            Freshness::Fresh => Authn::Session {
                data: loaded.value,
                write: loaded.needs_reseal,
                renewed: false,
            },
            // Boxed, here and wherever a request path renews: a renewal is rare and its
            // future (the backend call) large, and every request's future would carry
            // that size, moved whole into hyper's connection state per request.
            Freshness::RenewDue { still_valid } => {
                let mut data = Arc::unwrap_or_clone(loaded.value);
                match Box::pin(self.renew(&mut data, client)).await {
                    Ok(()) => Authn::Session {
                        data: Arc::new(data),
                        write: true,
                        renewed: true,
                    },
                    Err(e @ RenewFailure::Refused) => Authn::Refused(e.into_refusal()),
                    Err(RenewFailure::Unavailable(retry_after)) => {
                        if still_valid {
                            // Faults are not logouts: keep going with the old token.
                            Authn::Session {
                                data: Arc::new(data),
                                write: loaded.needs_reseal,
                                renewed: false,
                            }
                        } else {
                            Authn::Refused(RenewFailure::Unavailable(retry_after).into_refusal())
                        }
                    }
                }
            }
        }
    }

    /// Rule 5: upstream answered 401 to a token we believed good. Unless this request
    /// renewed already, one renewal: the renewed session to send the request again with,
    /// or `None` (upstream's 401 is the answer; a refusal here does not end the session,
    /// the next request decides).
    pub(crate) async fn renew_after_upstream_401(
        &self,
        data: &SessionData,
        renewed: bool,
        client: Option<IpAddr>,
    ) -> Option<SessionData> {
        if renewed {
            return None;
        }
        let mut renewed_data = data.clone();
        Box::pin(self.renew(&mut renewed_data, client)).await.ok()?;
        self.metrics.proxied("replayed");
        Some(renewed_data)
    }
}

/// Retry-After for "backend unavailable" when the backend gave none.
pub(crate) const DEFAULT_RETRY_AFTER: u64 = 5;

/// Why a renewal did not produce tokens.
pub(crate) enum RenewFailure {
    /// `invalid_grant`: the session is over.
    Refused,
    /// Transient; retry after this many seconds.
    Unavailable(u64),
}

impl RenewFailure {
    /// The answer when the request cannot go on with its old token: a refusal ends the
    /// session (the cookie is expired), a fault keeps it (503 with `Retry-After`).
    pub(crate) fn into_refusal(self) -> RequestError {
        match self {
            Self::Refused => RequestError::NoSession {
                code: AuthErrorCode::ReauthRequired,
                clear: true,
            },
            Self::Unavailable(retry_after) => RequestError::Unavailable { retry_after },
        }
    }
}

impl Inner {
    /// The `/refresh` route's forced renewal of the request's live session (never one
    /// logged out on any replica): the renewed session, or the refusal to answer with.
    pub(crate) async fn renew_on_request(
        &self,
        headers: &HeaderMap,
        now_ms: u64,
        client: Option<IpAddr>,
    ) -> Result<SessionData, RequestError> {
        let Some(loaded) = self.live_session(headers, now_ms).await else {
            return Err(RequestError::NoSession {
                code: AuthErrorCode::SessionExpired,
                clear: false,
            });
        };
        let mut data = Arc::unwrap_or_clone(loaded.value);
        self.renew(&mut data, client)
            .await
            .map_err(RenewFailure::into_refusal)?;
        Ok(data)
    }

    /// Renews `data` in place through the single-flight renewer, and applies the policy:
    /// a refusal ends the session, anything else is a fault that keeps it. `client`: the
    /// request's TCP peer, for `backend.client_address_header`.
    pub(crate) async fn renew(
        &self,
        data: &mut SessionData,
        client: Option<IpAddr>,
    ) -> Result<(), RenewFailure> {
        let Some(rt) = data.refresh_token.clone() else {
            return Err(RenewFailure::Refused);
        };
        match self.renewer.renew(&rt, client).await {
            Ok(tokens) => {
                // OpenID Connect Core §12.2: a renewed ID token names the same subject.
                if let (Some(o), Some(sub)) = (&data.oidc, &tokens.id_sub)
                    && o.sub != *sub
                {
                    tracing::error!(
                        "the provider renewed a session with an ID token of another subject; session ended"
                    );
                    return Err(RenewFailure::Refused);
                }
                data.apply(&tokens);
                Ok(())
            }
            Err(e) => match &*e {
                BackendError::Refused(code) => {
                    tracing::info!(%code, "backend refused the session's refresh token");
                    Err(RenewFailure::Refused)
                }
                BackendError::RateLimited(r) => {
                    Err(RenewFailure::Unavailable(r.unwrap_or(DEFAULT_RETRY_AFTER)))
                }
                BackendError::Unavailable(why) => {
                    tracing::warn!(%why, "renewal failed; session kept");
                    Err(RenewFailure::Unavailable(DEFAULT_RETRY_AFTER))
                }
                BackendError::InvalidCredentials => Err(RenewFailure::Refused),
            },
        }
    }
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
    fn freshness_follows_leeway() {
        let s = session(Some(1000));
        assert_eq!(s.freshness(900, 30), Freshness::Fresh);
        assert_eq!(
            s.freshness(970, 30),
            Freshness::RenewDue { still_valid: true }
        );
        assert_eq!(
            s.freshness(999, 30),
            Freshness::RenewDue { still_valid: true }
        );
        assert_eq!(
            s.freshness(1000, 30),
            Freshness::RenewDue { still_valid: false }
        );
        assert_eq!(session(None).freshness(u64::MAX, 30), Freshness::Fresh);
    }

    #[test]
    fn leeway_is_capped_at_half_the_lifetime() {
        // A 20 s token with a 30 s leeway: renew after 10 s, not on every request.
        let mut s = session(Some(1020));
        s.last_renewed_at = Some(1000);
        assert_eq!(s.freshness(1005, 30), Freshness::Fresh);
        assert_eq!(
            s.freshness(1010, 30),
            Freshness::RenewDue { still_valid: true }
        );
    }
}
