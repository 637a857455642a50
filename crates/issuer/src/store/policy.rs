//! The refresh-token rotation rule (RFC 9700 §4.14, refresh-token protection), as
//! pure functions.
//!
//! A refresh token is single-use, and a session is one *family* of tokens, each the
//! successor of the one before. When a token is presented, the first rule that
//! applies decides:
//!
//! 1. No such token, or its session row is gone → refuse, `unknown`.
//! 2. The family is revoked (logout, admin, password change, earlier reuse
//!    detection) → refuse, `revoked`. Nothing is written: a revoked family stays
//!    revoked, and a replayed token cannot revive it.
//! 3. The owner is gone or disabled → refuse, `user_disabled`.
//! 4. The family's absolute lifetime is over → refuse, `expired`.
//! 5. The token was already used:
//!    * less than the reuse interval after that use → **replay**: answer with what
//!      the first use received, following the chain to the family's current token
//!      ([`replay`]). A retry after a lost response, or two tabs refreshing at once,
//!      keep the session and never fork the family.
//!    * otherwise → **revoke the family** and audit it. Two parties hold the same
//!      token and we cannot tell the thief from the owner, so both lose the session.
//!      This outranks the token's own idle expiry: a stolen token replayed late is
//!      still detected while its family lives.
//! 6. The token is idle-expired → refuse, `expired`.
//! 7. Otherwise → **rotate**: mark the token used and issue generation + 1, idle-
//!    expiring `idle_ttl` from now but never after the family's absolute end.
//!
//! Times are unix milliseconds and `now` is a parameter; every "expired" test is
//! `expires_at <= now`. A reuse interval of 0 makes any second use a reuse.
//!
//! The stores ([`super::SqliteStore`], [`super::PgStore`]) only load the rows under
//! the family lock, call [`decide`] (and [`replay`] for a replay), and write what
//! the decision says, in one transaction.

use crate::store::{SessionRecord, TokenRecord, UserRecord};
use crate::token::{RefreshSecret, Successor, open_successor};

/// Maximum chain length followed when replaying (a retry of a token whose successor
/// was itself already rotated inside the interval).
pub const MAX_REPLAY_CHAIN: usize = 32;

/// Why a refresh token was refused (all map to `invalid_grant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a token we issued (or malformed).
    Unknown,
    /// Idle-expired, or the session's absolute lifetime is over.
    Expired,
    /// The family was revoked (logout, admin, earlier reuse detection).
    Revoked,
    /// The account is disabled or gone.
    UserDisabled,
}

impl Rejection {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unknown => "unknown",
            Rejection::Expired => "expired",
            Rejection::Revoked => "revoked",
            Rejection::UserDisabled => "user_disabled",
        }
    }
}

/// The rows a store loaded for the presented token: the token (re-read after the
/// family lock was taken), its session and the session's owner. A store looks up the
/// session only if it found the token, and the owner only if it found the session.
#[derive(Debug, Clone, Copy, Default)]
pub struct Found<'a> {
    /// The presented token's row.
    pub token: Option<&'a TokenRecord>,
    /// Its family.
    pub session: Option<&'a SessionRecord>,
    /// The family's owner.
    pub user: Option<&'a UserRecord>,
}

/// The issuer's settings the rule depends on, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// How long after its use a token may come back and be answered again.
    pub reuse_interval_ms: i64,
    /// Idle lifetime of a new token.
    pub idle_ttl_ms: i64,
}

/// What to do with a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Mark the token used and issue its successor.
    Rotate {
        /// The successor's generation (the presented one's plus one).
        generation: i64,
        /// The successor's idle expiry, unix ms.
        refresh_expires_at_ms: i64,
    },
    /// Answer with the recorded successor chain ([`replay`]); write nothing.
    Replay,
    /// Reuse after the interval: revoke the whole family and audit it.
    RevokeFamily {
        /// Generation of the reused token.
        generation: i64,
        /// How long after its rotation it came back, ms.
        reused_after_ms: i64,
    },
    /// Refuse without side effects.
    Refuse(Rejection),
}

/// Applies the rule (see the module documentation) to a presented token.
pub fn decide(found: Found<'_>, now_ms: i64, rules: Rules) -> Decision {
    let (Some(token), Some(session)) = (found.token, found.session) else {
        return Decision::Refuse(Rejection::Unknown);
    };
    if session.revoked_at.is_some() {
        return Decision::Refuse(Rejection::Revoked);
    }
    if found.user.is_none_or(|u| u.disabled_at.is_some()) {
        return Decision::Refuse(Rejection::UserDisabled);
    }
    if session.expires_at <= now_ms {
        return Decision::Refuse(Rejection::Expired);
    }
    if let Some(used_at) = token.used_at {
        let since_use = now_ms.saturating_sub(used_at);
        if since_use < rules.reuse_interval_ms {
            return Decision::Replay;
        }
        return Decision::RevokeFamily {
            generation: token.generation,
            reused_after_ms: since_use,
        };
    }
    if token.expires_at <= now_ms {
        return Decision::Refuse(Rejection::Expired);
    }
    Decision::Rotate {
        generation: token.generation.saturating_add(1),
        refresh_expires_at_ms: now_ms
            .saturating_add(rules.idle_ttl_ms)
            .min(session.expires_at),
    }
}

/// The answer to a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Answer with the family's current token and the access token recorded with it.
    Answer {
        /// The recorded answer.
        successor: Successor,
        /// The current token's idle expiry, unix ms.
        refresh_expires_at_ms: i64,
        /// The recorded access token has expired: sign a new one (same family).
        reissue_access: bool,
    },
    /// The family's current token is idle-expired.
    Refuse(Rejection),
    /// The chain does not lead to an unused token within [`MAX_REPLAY_CHAIN`] steps:
    /// the database is inconsistent (the store reports an error, never a fork).
    Broken,
}

/// Follows the chain from the presented (used) `token` to the family's current,
/// unused token. Each successor is sealed under its predecessor's secret
/// ([`crate::token`]), so only the holder of `presented` can open the chain.
/// `later` holds the family's tokens of higher generation (in any order; the store
/// loads at most [`MAX_REPLAY_CHAIN`] of them, by generation).
pub fn replay(
    presented: &RefreshSecret,
    token: &TokenRecord,
    later: &[TokenRecord],
    now_ms: i64,
) -> Replay {
    let mut secret = presented.clone();
    let mut row = token;
    for _ in 0..MAX_REPLAY_CHAIN {
        let (Some(next_hash), Some(sealed)) = (&row.successor_hash, &row.successor_box) else {
            return Replay::Broken;
        };
        let Some(next) = open_successor(&secret, sealed, next_hash) else {
            return Replay::Broken;
        };
        let Some(next_row) = later.iter().find(|r| &r.token_hash == next_hash) else {
            return Replay::Broken;
        };
        if next_row.used_at.is_none() {
            if next_row.expires_at <= now_ms {
                return Replay::Refuse(Rejection::Expired);
            }
            return Replay::Answer {
                reissue_access: next.access_expires_at_ms <= now_ms,
                refresh_expires_at_ms: next_row.expires_at,
                successor: next,
            };
        }
        secret = next.secret;
        row = next_row;
    }
    Replay::Broken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::seal_successor;

    const NOW: i64 = 1_000_000_000;
    const RULES: Rules = Rules {
        reuse_interval_ms: 10_000,
        idle_ttl_ms: 30_000,
    };

    fn session() -> SessionRecord {
        SessionRecord {
            id: "s1".into(),
            user_id: "u1".into(),
            created_at: NOW - 100_000,
            last_used_at: NOW - 50_000,
            expires_at: NOW + 1_000_000,
            revoked_at: None,
            revoked_reason: None,
            generation: 3,
            user_agent: None,
            client_addr: None,
        }
    }

    fn user() -> UserRecord {
        UserRecord {
            id: "u1".into(),
            username: "alice".into(),
            name: None,
            roles: "[]".into(),
            password_hash: String::new(),
            disabled_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn token() -> TokenRecord {
        TokenRecord {
            token_hash: "h3".into(),
            session_id: "s1".into(),
            generation: 3,
            created_at: NOW - 50_000,
            expires_at: NOW + 20_000,
            used_at: None,
            successor_hash: None,
            successor_box: None,
        }
    }

    /// One row of the table: a name, how to change the fixtures, the expected decision.
    struct Case {
        name: &'static str,
        token: Option<fn(&mut TokenRecord)>,
        session: Option<fn(&mut SessionRecord)>,
        user: Option<fn(&mut UserRecord)>,
        rules: Rules,
        expect: Decision,
    }

    fn keep<T>(_: &mut T) {}

    fn case(name: &'static str, expect: Decision) -> Case {
        Case {
            name,
            token: Some(keep),
            session: Some(keep),
            user: Some(keep),
            rules: RULES,
            expect,
        }
    }

    impl Case {
        fn token(mut self, f: fn(&mut TokenRecord)) -> Self {
            self.token = Some(f);
            self
        }
        fn session(mut self, f: fn(&mut SessionRecord)) -> Self {
            self.session = Some(f);
            self
        }
        fn user(mut self, f: fn(&mut UserRecord)) -> Self {
            self.user = Some(f);
            self
        }
        fn rules(mut self, rules: Rules) -> Self {
            self.rules = rules;
            self
        }
        fn no_token(mut self) -> Self {
            self.token = None;
            self
        }
        fn no_session(mut self) -> Self {
            self.session = None;
            self
        }
        fn no_user(mut self) -> Self {
            self.user = None;
            self
        }
    }

    #[test]
    fn decide_table() {
        use Decision::{Refuse, Replay, RevokeFamily, Rotate};
        let fresh = Rotate {
            generation: 4,
            refresh_expires_at_ms: NOW + RULES.idle_ttl_ms,
        };
        let cases = [
            // Fresh rotation.
            case("fresh token rotates", fresh),
            case(
                "successor never outlives the family",
                Rotate {
                    generation: 4,
                    refresh_expires_at_ms: NOW + 5_000,
                },
            )
            .session(|s| s.expires_at = NOW + 5_000),
            case(
                "huge idle ttl saturates, capped at the family end",
                Rotate {
                    generation: 4,
                    refresh_expires_at_ms: NOW + 1_000_000,
                },
            )
            .rules(Rules {
                idle_ttl_ms: i64::MAX,
                ..RULES
            }),
            case(
                "generation saturates",
                Rotate {
                    generation: i64::MAX,
                    refresh_expires_at_ms: NOW + RULES.idle_ttl_ms,
                },
            )
            .token(|t| t.generation = i64::MAX),
            case("token one ms before idle expiry rotates", fresh)
                .token(|t| t.expires_at = NOW + 1),
            // Unknown.
            case("unknown token", Refuse(Rejection::Unknown)).no_token(),
            case("token whose session is gone", Refuse(Rejection::Unknown)).no_session(),
            // Revoked family.
            case("revoked family", Refuse(Rejection::Revoked))
                .session(|s| s.revoked_at = Some(NOW - 1)),
            case(
                "revoked family, used token after the interval: no second revocation",
                Refuse(Rejection::Revoked),
            )
            .session(|s| s.revoked_at = Some(NOW - 1))
            .token(|t| t.used_at = Some(NOW - 60_000)),
            case(
                "revoked family, used token within the interval: no replay",
                Refuse(Rejection::Revoked),
            )
            .session(|s| s.revoked_at = Some(NOW - 1))
            .token(|t| t.used_at = Some(NOW - 1)),
            case(
                "revoked outranks a disabled owner",
                Refuse(Rejection::Revoked),
            )
            .session(|s| s.revoked_at = Some(NOW - 1))
            .user(|u| u.disabled_at = Some(NOW - 1)),
            // Owner.
            case("disabled owner", Refuse(Rejection::UserDisabled))
                .user(|u| u.disabled_at = Some(NOW - 1)),
            case("owner gone", Refuse(Rejection::UserDisabled)).no_user(),
            case(
                "disabled owner outranks an expired family",
                Refuse(Rejection::UserDisabled),
            )
            .user(|u| u.disabled_at = Some(NOW - 1))
            .session(|s| s.expires_at = NOW - 1),
            // Absolute family lifetime.
            case("family lifetime over", Refuse(Rejection::Expired))
                .session(|s| s.expires_at = NOW),
            case(
                "family lifetime over: no replay",
                Refuse(Rejection::Expired),
            )
            .session(|s| s.expires_at = NOW)
            .token(|t| t.used_at = Some(NOW - 1)),
            case(
                "family lifetime over: no revocation",
                Refuse(Rejection::Expired),
            )
            .session(|s| s.expires_at = NOW)
            .token(|t| t.used_at = Some(NOW - 60_000)),
            // Idle expiry.
            case("idle-expired token", Refuse(Rejection::Expired)).token(|t| t.expires_at = NOW),
            // Reuse within the interval: the same answer.
            case("used 1 ms ago: replay", Replay).token(|t| t.used_at = Some(NOW - 1)),
            case("used just now: replay", Replay).token(|t| t.used_at = Some(NOW)),
            case("used 1 ms before the interval ends: replay", Replay)
                .token(|t| t.used_at = Some(NOW - 9_999)),
            case(
                "idle-expired but used within the interval: replay (the successor's expiry counts)",
                Replay,
            )
            .token(|t| {
                t.used_at = Some(NOW - 1);
                t.expires_at = NOW - 1;
            }),
            case("clock stepped back behind the use: replay", Replay)
                .token(|t| t.used_at = Some(NOW + 5_000)),
            // Reuse after the interval: the family is revoked.
            case(
                "used exactly one interval ago: revoke",
                RevokeFamily {
                    generation: 3,
                    reused_after_ms: 10_000,
                },
            )
            .token(|t| t.used_at = Some(NOW - 10_000)),
            case(
                "used long ago: revoke",
                RevokeFamily {
                    generation: 3,
                    reused_after_ms: 60_000,
                },
            )
            .token(|t| t.used_at = Some(NOW - 60_000)),
            case(
                "reuse outranks the token's idle expiry",
                RevokeFamily {
                    generation: 3,
                    reused_after_ms: 60_000,
                },
            )
            .token(|t| {
                t.used_at = Some(NOW - 60_000);
                t.expires_at = NOW - 40_000;
            }),
            case(
                "interval 0: any second use is reuse",
                RevokeFamily {
                    generation: 3,
                    reused_after_ms: 0,
                },
            )
            .token(|t| t.used_at = Some(NOW))
            .rules(Rules {
                reuse_interval_ms: 0,
                ..RULES
            }),
        ];
        for c in cases {
            let token = c.token.map(|f| {
                let mut t = token();
                f(&mut t);
                t
            });
            let session = c.session.map(|f| {
                let mut s = session();
                f(&mut s);
                s
            });
            let user = c.user.map(|f| {
                let mut u = user();
                f(&mut u);
                u
            });
            let found = Found {
                token: token.as_ref(),
                session: session.as_ref(),
                user: user.as_ref(),
            };
            assert_eq!(decide(found, NOW, c.rules), c.expect, "{}", c.name);
        }
    }

    /// A family rotated `used` times from generation 3: the presented token, the rows
    /// after it (the last one unused) and their secrets.
    struct Chain {
        presented: RefreshSecret,
        token: TokenRecord,
        later: Vec<TokenRecord>,
        secrets: Vec<RefreshSecret>,
    }

    fn chain(rotations: usize) -> Chain {
        let presented = RefreshSecret::generate().unwrap();
        let mut rows = vec![TokenRecord {
            token_hash: presented.hash(),
            ..token()
        }];
        let mut secrets = vec![];
        let mut secret = presented.clone();
        for i in 0..rotations {
            let next = Successor {
                secret: RefreshSecret::generate().unwrap(),
                access_expires_at_ms: NOW + 60_000,
                access_token: format!("access-{i}"),
            };
            let prev = rows.last_mut().unwrap();
            prev.used_at = Some(NOW - 1_000);
            prev.successor_hash = Some(next.secret.hash());
            prev.successor_box = Some(seal_successor(&secret, &next));
            let row = TokenRecord {
                token_hash: next.secret.hash(),
                generation: prev.generation + 1,
                expires_at: NOW + 30_000,
                ..token()
            };
            rows.push(row);
            secret = next.secret.clone();
            secrets.push(next.secret);
        }
        let token = rows.remove(0);
        Chain {
            presented,
            token,
            later: rows,
            secrets,
        }
    }

    /// What `replay` answered, reduced to comparable facts.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        /// Index into `Chain::secrets`, and whether a new access token is needed.
        Answer(usize, bool),
        Refuse(Rejection),
        Broken,
    }

    fn seen(c: &Chain, r: Replay) -> Seen {
        match r {
            Replay::Answer {
                successor,
                refresh_expires_at_ms,
                reissue_access,
            } => {
                let i = c
                    .secrets
                    .iter()
                    .position(|s| *s == successor.secret)
                    .unwrap();
                assert_eq!(refresh_expires_at_ms, c.later[i].expires_at);
                assert_eq!(successor.access_token, format!("access-{i}"));
                Seen::Answer(i, reissue_access)
            }
            Replay::Refuse(r) => Seen::Refuse(r),
            Replay::Broken => Seen::Broken,
        }
    }

    #[test]
    fn replay_table() {
        type Tweak = fn(&mut Chain);
        let cases: [(&str, usize, Tweak, Seen); 10] = [
            (
                "one rotation: its answer",
                1,
                |_| {},
                Seen::Answer(0, false),
            ),
            (
                "successor rotated again: the current token",
                3,
                |_| {},
                Seen::Answer(2, false),
            ),
            (
                "rows in any order",
                3,
                |c| c.later.reverse(),
                Seen::Answer(2, false),
            ),
            (
                "recorded access token expired: reissue it",
                1,
                |c| {
                    let s = &c.secrets[0];
                    let next = Successor {
                        secret: s.clone(),
                        access_expires_at_ms: NOW,
                        access_token: "access-0".into(),
                    };
                    c.token.successor_box = Some(seal_successor(&c.presented, &next));
                },
                Seen::Answer(0, true),
            ),
            (
                "current token idle-expired",
                2,
                |c| c.later[1].expires_at = NOW,
                Seen::Refuse(Rejection::Expired),
            ),
            (
                "longest chain followed",
                MAX_REPLAY_CHAIN,
                |_| {},
                Seen::Answer(MAX_REPLAY_CHAIN - 1, false),
            ),
            ("chain too long", MAX_REPLAY_CHAIN + 1, |_| {}, Seen::Broken),
            (
                "successor row missing",
                2,
                |c| {
                    c.later.remove(0);
                },
                Seen::Broken,
            ),
            (
                "used token without a recorded successor",
                1,
                |c| c.token.successor_box = None,
                Seen::Broken,
            ),
            (
                "box does not open with the presented secret",
                1,
                |c| c.presented = RefreshSecret::generate().unwrap(),
                Seen::Broken,
            ),
        ];
        for (name, rotations, tweak, expect) in cases {
            let mut c = chain(rotations);
            tweak(&mut c);
            let got = replay(&c.presented, &c.token, &c.later, NOW);
            assert_eq!(seen(&c, got), expect, "{name}");
        }
    }
}
