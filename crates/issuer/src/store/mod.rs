//! Storage: one [`Store`] trait, one implementation per backend ([`SqliteStore`],
//! [`PgStore`]). Both implementations are generated from the single `sql_store!` body
//! below, so the queries exist once; the backends differ only in how a write
//! transaction starts (`BEGIN IMMEDIATE` on SQLite) and in the row lock (`FOR UPDATE`
//! on PostgreSQL), which are macro parameters — no `if is_postgres()` in the logic.
//!
//! The rotation rule (rotate, replay, revoke the family, refuse) is not here but in
//! [`policy`], as pure functions: [`Store::rotate`] loads the rows, asks
//! [`policy::decide`] and writes what it says.
//!
//! The session row is the family lock: rotation, replay and revocation of a family all
//! lock it first, then re-read the token, so two requests (or two issuer processes)
//! racing on one refresh token are serialised and the second one sees the first one's
//! successor.

pub mod policy;
mod postgres;
mod sqlite;

use std::fmt;

use async_trait::async_trait;

pub use policy::Rejection;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::error::{Error, Result};
use crate::token::{RefreshSecret, Successor};

/// A user row. `Debug` omits the password hash.
#[derive(Clone, sqlx::FromRow)]
pub struct UserRecord {
    /// Stable id (UUID v7 text); the JWT `sub`.
    pub id: String,
    /// Login name, unique.
    pub username: String,
    /// Display name.
    pub name: Option<String>,
    /// JSON array of role names.
    pub roles: String,
    /// PHC string of the argon2id hash.
    pub password_hash: String,
    /// Set when the account is disabled (unix ms).
    pub disabled_at: Option<i64>,
    /// Creation time, unix ms.
    pub created_at: i64,
    /// Last change, unix ms.
    pub updated_at: i64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    /// Roles as a list (a corrupt column reads as no roles).
    pub fn role_list(&self) -> Vec<String> {
        serde_json::from_str(&self.roles).unwrap_or_default()
    }
}

/// A session: one refresh-token family.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRecord {
    /// Session id; the JWT `sid`.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Login time, unix ms.
    pub created_at: i64,
    /// Last successful refresh, unix ms.
    pub last_used_at: i64,
    /// Absolute end of the session, unix ms.
    pub expires_at: i64,
    /// Set when revoked (logout, reuse detection, admin), unix ms.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// Generation of the current refresh token (a monotonic counter, not a timestamp).
    pub generation: i64,
    /// `User-Agent` at login.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub client_addr: Option<String>,
}

/// A refresh-token row (hash only).
#[derive(Clone, sqlx::FromRow)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// Family.
    pub session_id: String,
    /// Position in the family.
    pub generation: i64,
    /// Issue time, unix ms.
    pub created_at: i64,
    /// Idle expiry, unix ms.
    pub expires_at: i64,
    /// First use (rotation), unix ms.
    pub used_at: Option<i64>,
    /// Hash of the token that replaced it.
    pub successor_hash: Option<String>,
    /// The successor, sealed under this token (see [`crate::token`]).
    pub successor_box: Option<Vec<u8>>,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("session_id", &self.session_id)
            .field("generation", &self.generation)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// A signing key. `Debug` omits the private key.
#[derive(Clone, sqlx::FromRow)]
pub struct KeyRecord {
    /// Key id (the JWT header `kid`).
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub algorithm: String,
    /// PKCS#8 DER private key.
    pub private_der: Vec<u8>,
    /// Creation time, unix ms.
    pub created_at: i64,
    /// When it stopped signing (it stays published until its tokens expired).
    pub retired_at: Option<i64>,
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    /// Unix ms.
    pub at: i64,
    /// e.g. `login_succeeded`, `login_failed`, `refresh_reuse_detected`, `session_revoked`.
    pub kind: String,
    /// Affected user, when known.
    pub user_id: Option<String>,
    /// Username as presented (login) or stored.
    pub username: Option<String>,
    /// Affected session.
    pub session_id: Option<String>,
    /// Client address.
    pub client_addr: Option<String>,
    /// Free text.
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event of `kind` at `at` with everything else empty.
    pub fn new(kind: &str, at: i64) -> Self {
        AuditEvent {
            at,
            kind: kind.to_owned(),
            user_id: None,
            username: None,
            session_id: None,
            client_addr: None,
            detail: None,
        }
    }
}

/// An authorization code from `/oauth/authorize` (hash only), bound to everything the
/// token endpoint must check.
#[derive(Clone, sqlx::FromRow)]
pub struct CodeRecord {
    /// Hex SHA-256 of the code.
    pub code_hash: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The exact redirect URI of the authorization request.
    pub redirect_uri: String,
    /// PKCE S256 challenge (base64url of SHA-256 of the verifier).
    pub code_challenge: String,
    /// The client's `nonce`, echoed in the ID token.
    pub nonce: Option<String>,
    /// Granted scope (space-separated).
    pub scope: String,
    /// Who logged in.
    pub user_id: String,
    /// Id of the session the redemption creates (the ID token's `sid`).
    pub session_id: String,
    /// When the password was checked, unix ms.
    pub auth_time: i64,
    /// Issue time, unix ms.
    pub created_at: i64,
    /// Expiry, unix ms.
    pub expires_at: i64,
    /// First redemption, unix ms.
    pub used_at: Option<i64>,
}

impl fmt::Debug for CodeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeRecord")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("session_id", &self.session_id)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// A code-flow session: its client, owner and login time.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OidcSessionRecord {
    /// The session (`sid`).
    pub session_id: String,
    /// Its owner (`sub`).
    pub user_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Login time, unix ms.
    pub auth_time: i64,
    /// Granted scope.
    pub scope: String,
}

/// Why an authorization code was refused (all `invalid_grant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRejection {
    /// Not a code we issued.
    Unknown,
    /// Past its lifetime.
    Expired,
    /// Issued to another client.
    WrongClient,
    /// Another `redirect_uri` than in the authorization request.
    WrongRedirectUri,
    /// The `code_verifier` does not match the challenge.
    WrongVerifier,
    /// The account is disabled or gone.
    UserDisabled,
}

impl CodeRejection {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeRejection::Unknown => "unknown",
            CodeRejection::Expired => "expired",
            CodeRejection::WrongClient => "wrong_client",
            CodeRejection::WrongRedirectUri => "wrong_redirect_uri",
            CodeRejection::WrongVerifier => "wrong_verifier",
            CodeRejection::UserDisabled => "user_disabled",
        }
    }
}

/// Checks a loaded (unused) code against the token request and, if it passes, builds
/// the session and first refresh token its redemption creates.
pub type RedeemCheck<'a> = dyn Fn(
        &CodeRecord,
        Option<&UserRecord>,
    ) -> std::result::Result<(SessionRecord, TokenRecord), CodeRejection>
    + Send
    + Sync
    + 'a;

/// A successful redemption.
#[derive(Debug, Clone)]
pub struct Redeemed {
    /// The code as stored.
    pub code: CodeRecord,
    /// The created session.
    pub session: SessionRecord,
    /// Its owner.
    pub user: UserRecord,
}

/// Result of [`Store::redeem_code`].
#[derive(Debug, Clone)]
pub enum RedeemOutcome {
    /// The code is now used; the session and its first refresh token exist.
    Redeemed(Box<Redeemed>),
    /// Refused; nothing written (an attacker without the verifier cannot burn the
    /// legitimate client's code).
    Rejected(CodeRejection),
    /// The code was already redeemed: the session issued from it is now revoked.
    Reused {
        /// The revoked session.
        session_id: String,
        /// Its owner.
        user_id: String,
        /// Whether this call revoked it (false: it already was).
        revoked_now: bool,
    },
}

/// How long a code row is kept after its expiry, to recognise late reuse.
pub const CODE_RETENTION_MS: i64 = 10 * 60 * 1000;

/// Signs an access token for (user, session) at `now_ms`; returns `(jwt, exp_ms)`.
pub type MintFn<'a> =
    dyn Fn(&UserRecord, &SessionRecord, i64) -> Result<(String, i64)> + Send + Sync + 'a;

/// Input of [`Store::rotate`].
pub struct RotateRequest<'a> {
    /// The token the client presented.
    pub presented: &'a RefreshSecret,
    /// A fresh secret to use if this request rotates.
    pub fresh: RefreshSecret,
    /// Now, unix ms.
    pub now_ms: i64,
    /// Reuse interval, ms (0 = any second use is reuse).
    pub reuse_interval_ms: i64,
    /// Idle lifetime of the new token, ms.
    pub idle_ttl_ms: i64,
    /// Access-token signer.
    pub mint: &'a MintFn<'a>,
    /// Client address for the audit trail.
    pub client_addr: Option<&'a str>,
}

/// Tokens handed out by a successful refresh.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Access token and new refresh token.
    pub successor: Successor,
    /// Refresh-token expiry, unix ms.
    pub refresh_expires_at_ms: i64,
    /// The session continued.
    pub session_id: String,
    /// Its owner.
    pub user_id: String,
    /// True when this answer repeats an earlier rotation (retry inside the reuse interval).
    pub replayed: bool,
}

/// Result of [`Store::rotate`].
#[derive(Debug, Clone)]
pub enum RotateOutcome {
    /// New tokens (fresh rotation or replay of the current ones).
    Granted(Grant),
    /// Refused without side effects.
    Rejected(Rejection),
    /// A used token came back after the reuse interval: the family is now revoked.
    ReuseDetected {
        /// The revoked session.
        session_id: String,
        /// Its owner.
        user_id: String,
    },
}

/// Persistence used by the issuer. All methods are single transactions.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Round-trip to the database (readiness).
    async fn ping(&self) -> Result<()>;
    /// Closes the connection pool; every later call fails (and `/readyz` says 503).
    /// For an orderly shutdown.
    async fn close(&self);
    /// Inserts a user; [`Error::UserExists`] when the name is taken.
    async fn insert_user(&self, user: &UserRecord) -> Result<()>;
    /// Finds a user by login name.
    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>>;
    /// Finds a user by id.
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>>;
    /// All users, by name.
    async fn list_users(&self) -> Result<Vec<UserRecord>>;
    /// Sets or clears `disabled_at`; false when there is no such user.
    async fn set_user_disabled(
        &self,
        username: &str,
        disabled_at: Option<i64>,
        now_ms: i64,
    ) -> Result<bool>;
    /// Replaces the password hash; false when there is no such user.
    async fn set_password_hash(&self, username: &str, hash: &str, now_ms: i64) -> Result<bool>;
    /// All signing keys, newest first.
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>>;
    /// Adds a key; with `retire_current`, every key still signing is retired at
    /// `key.created_at` in the same transaction.
    async fn add_signing_key(&self, key: &KeyRecord, retire_current: bool) -> Result<()>;
    /// Creates a session with its first refresh token.
    async fn create_session(&self, session: &SessionRecord, token: &TokenRecord) -> Result<()>;
    /// Refresh: rotate, replay within the reuse interval, or detect reuse — one transaction.
    async fn rotate(&self, req: RotateRequest<'_>) -> Result<RotateOutcome>;
    /// Revokes the family of a refresh token; returns the session if the token was known
    /// (revoked now or already).
    async fn revoke_by_token(
        &self,
        token_hash: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<Option<SessionRecord>>;
    /// Revokes one session; false if unknown or already revoked.
    async fn revoke_session(&self, session_id: &str, now_ms: i64, reason: &str) -> Result<bool>;
    /// Revokes every live session of a user; returns how many.
    async fn revoke_user_sessions(&self, user_id: &str, now_ms: i64, reason: &str) -> Result<u64>;
    /// Sessions, newest first, optionally of one user.
    async fn list_sessions(&self, user_id: Option<&str>) -> Result<Vec<SessionRecord>>;
    /// Stores a new authorization code, deleting codes expired more than
    /// [`CODE_RETENTION_MS`] ago.
    async fn insert_code(&self, code: &CodeRecord, now_ms: i64) -> Result<()>;
    /// Redeems a code in one transaction: an unused code that passes `check` is marked
    /// used and its session created (with an [`OidcSessionRecord`]); a used one revokes
    /// the session issued from it.
    async fn redeem_code(
        &self,
        code_hash: &str,
        now_ms: i64,
        check: &RedeemCheck<'_>,
    ) -> Result<RedeemOutcome>;
    /// The code-flow record of a session, if it is one.
    async fn oidc_session(&self, session_id: &str) -> Result<Option<OidcSessionRecord>>;
    /// The code-flow record of the session a refresh token belongs to, if any.
    async fn oidc_session_by_token(&self, token_hash: &str) -> Result<Option<OidcSessionRecord>>;
    /// Appends to the audit trail.
    async fn audit(&self, event: &AuditEvent) -> Result<()>;
    /// The newest `limit` audit events, newest first.
    async fn audit_events(&self, limit: i64) -> Result<Vec<AuditEvent>>;
}

/// A user by id (`$1`).
const USER_BY_ID: &str = "SELECT id, username, name, roles, password_hash, disabled_at, created_at, updated_at \
                          FROM users WHERE id = $1";

/// The presented token (`$1` = its hash).
const TOKEN_BY_HASH: &str = "SELECT token_hash, session_id, generation, created_at, expires_at, used_at, successor_hash, successor_box \
                             FROM refresh_tokens WHERE token_hash = $1";

/// A family's tokens after a generation, in order (`$1` session, `$2` generation,
/// `$3` limit): what a replay may need.
const LATER_TOKENS: &str = "SELECT token_hash, session_id, generation, created_at, expires_at, used_at, successor_hash, successor_box \
                            FROM refresh_tokens WHERE session_id = $1 AND generation > $2 ORDER BY generation LIMIT $3";

/// `SELECT <every SessionRecord column> FROM sessions`, as a literal for `concat!`
/// (the row-locking suffix differs per backend).
macro_rules! session_select {
    () => {
        "SELECT id, user_id, created_at, last_used_at, expires_at, revoked_at, revoked_reason, generation, user_agent, client_addr \
         FROM sessions"
    };
}
pub(crate) use session_select;

fn map_unique(err: sqlx::Error, username: &str) -> Error {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::UserExists(username.to_owned())
        }
        _ => Error::Database(err),
    }
}

/// Generates `impl Store` for one backend. `$lock` is appended to the SELECT that locks
/// a session row; `self.begin_write()` (backend-specific) starts the transaction.
macro_rules! sql_store {
    ($store:ty, $db:ty, lock = $lock:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn ping(&self) -> $crate::error::Result<()> {
                sqlx::query::<$db>("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            async fn insert_user(&self, u: &$crate::store::UserRecord) -> $crate::error::Result<()> {
                sqlx::query::<$db>(
                    "INSERT INTO users (id, username, name, roles, password_hash, disabled_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&u.id)
                .bind(&u.username)
                .bind(&u.name)
                .bind(&u.roles)
                .bind(&u.password_hash)
                .bind(u.disabled_at)
                .bind(u.created_at)
                .bind(u.updated_at)
                .execute(&self.pool)
                .await
                .map_err(|e| $crate::store::map_unique(e, &u.username))?;
                Ok(())
            }

            async fn user_by_name(&self, username: &str) -> $crate::error::Result<Option<$crate::store::UserRecord>> {
                Ok(sqlx::query_as::<$db, $crate::store::UserRecord>(
                    "SELECT id, username, name, roles, password_hash, disabled_at, created_at, updated_at FROM users WHERE username = $1",
                )
                .bind(username)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn user_by_id(&self, id: &str) -> $crate::error::Result<Option<$crate::store::UserRecord>> {
                Ok(sqlx::query_as::<$db, $crate::store::UserRecord>($crate::store::USER_BY_ID)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_users(&self) -> $crate::error::Result<Vec<$crate::store::UserRecord>> {
                Ok(sqlx::query_as::<$db, $crate::store::UserRecord>(
                    "SELECT id, username, name, roles, password_hash, disabled_at, created_at, updated_at FROM users ORDER BY username",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn set_user_disabled(&self, username: &str, disabled_at: Option<i64>, now_ms: i64) -> $crate::error::Result<bool> {
                let r = sqlx::query::<$db>("UPDATE users SET disabled_at = $1, updated_at = $2 WHERE username = $3")
                    .bind(disabled_at)
                    .bind(now_ms)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn set_password_hash(&self, username: &str, hash: &str, now_ms: i64) -> $crate::error::Result<bool> {
                let r = sqlx::query::<$db>("UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3")
                    .bind(hash)
                    .bind(now_ms)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn signing_keys(&self) -> $crate::error::Result<Vec<$crate::store::KeyRecord>> {
                Ok(sqlx::query_as::<$db, $crate::store::KeyRecord>(
                    "SELECT kid, algorithm, private_der, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid DESC",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn add_signing_key(&self, key: &$crate::store::KeyRecord, retire_current: bool) -> $crate::error::Result<()> {
                let mut tx = self.begin_write().await?;
                if retire_current {
                    sqlx::query::<$db>("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                        .bind(key.created_at)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query::<$db>(
                    "INSERT INTO signing_keys (kid, algorithm, private_der, created_at, retired_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&key.kid)
                .bind(&key.algorithm)
                .bind(&key.private_der)
                .bind(key.created_at)
                .bind(key.retired_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_session(&self, s: &$crate::store::SessionRecord, t: &$crate::store::TokenRecord) -> $crate::error::Result<()> {
                let mut tx = self.begin_write().await?;
                Self::insert_session(&mut *tx, s).await?;
                Self::insert_token(&mut *tx, t).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn insert_code(&self, c: &$crate::store::CodeRecord, now_ms: i64) -> $crate::error::Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query::<$db>("DELETE FROM authorization_codes WHERE expires_at < $1")
                    .bind(now_ms.saturating_sub($crate::store::CODE_RETENTION_MS))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query::<$db>(
                    "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, code_challenge, nonce, scope, user_id, session_id, auth_time, created_at, expires_at, used_at)                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&c.code_hash)
                .bind(&c.client_id)
                .bind(&c.redirect_uri)
                .bind(&c.code_challenge)
                .bind(&c.nonce)
                .bind(&c.scope)
                .bind(&c.user_id)
                .bind(&c.session_id)
                .bind(c.auth_time)
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(c.used_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn redeem_code(
                &self,
                code_hash: &str,
                now_ms: i64,
                check: &$crate::store::RedeemCheck<'_>,
            ) -> $crate::error::Result<$crate::store::RedeemOutcome> {
                use $crate::store::{CodeRecord, RedeemOutcome, UserRecord};
                let mut tx = self.begin_write().await?;
                let code = sqlx::query_as::<$db, CodeRecord>(concat!(
                    "SELECT code_hash, client_id, redirect_uri, code_challenge, nonce, scope, user_id, session_id, auth_time, created_at, expires_at, used_at \
                     FROM authorization_codes WHERE code_hash = $1",
                    $lock
                ))
                .bind(code_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(code) = code else {
                    return Ok(RedeemOutcome::Rejected($crate::store::CodeRejection::Unknown));
                };
                if code.used_at.is_some() {
                    let revoked_now = Self::mark_revoked(&mut *tx, &code.session_id, now_ms, "authorization_code_reuse").await?;
                    let event = $crate::store::AuditEvent {
                        user_id: Some(code.user_id.clone()),
                        session_id: Some(code.session_id.clone()),
                        detail: Some(format!("client {}", code.client_id)),
                        ..$crate::store::AuditEvent::new("authorization_code_reuse_detected", now_ms)
                    };
                    Self::insert_audit(&mut *tx, &event).await?;
                    tx.commit().await?;
                    return Ok(RedeemOutcome::Reused {
                        session_id: code.session_id,
                        user_id: code.user_id,
                        revoked_now,
                    });
                }
                let user = sqlx::query_as::<$db, UserRecord>($crate::store::USER_BY_ID)
                    .bind(&code.user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let (session, token) = match check(&code, user.as_ref()) {
                    Ok(created) => created,
                    // Dropping `tx` rolls back: the code stays unused.
                    Err(reason) => return Ok(RedeemOutcome::Rejected(reason)),
                };
                let Some(user) = user else {
                    return Ok(RedeemOutcome::Rejected($crate::store::CodeRejection::UserDisabled));
                };
                sqlx::query::<$db>("UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2")
                    .bind(now_ms)
                    .bind(code_hash)
                    .execute(&mut *tx)
                    .await?;
                Self::insert_session(&mut *tx, &session).await?;
                Self::insert_token(&mut *tx, &token).await?;
                sqlx::query::<$db>(
                    "INSERT INTO oidc_sessions (session_id, client_id, auth_time, scope) VALUES ($1, $2, $3, $4)",
                )
                .bind(&session.id)
                .bind(&code.client_id)
                .bind(code.auth_time)
                .bind(&code.scope)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(RedeemOutcome::Redeemed(Box::new($crate::store::Redeemed { code, session, user })))
            }

            async fn oidc_session(&self, session_id: &str) -> $crate::error::Result<Option<$crate::store::OidcSessionRecord>> {
                Ok(sqlx::query_as::<$db, $crate::store::OidcSessionRecord>(
                    "SELECT o.session_id, s.user_id, o.client_id, o.auth_time, o.scope \
                     FROM oidc_sessions o JOIN sessions s ON s.id = o.session_id WHERE o.session_id = $1",
                )
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn oidc_session_by_token(&self, token_hash: &str) -> $crate::error::Result<Option<$crate::store::OidcSessionRecord>> {
                Ok(sqlx::query_as::<$db, $crate::store::OidcSessionRecord>(
                    "SELECT o.session_id, s.user_id, o.client_id, o.auth_time, o.scope \
                     FROM refresh_tokens t JOIN oidc_sessions o ON o.session_id = t.session_id \
                     JOIN sessions s ON s.id = o.session_id WHERE t.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?)
            }


            async fn rotate(&self, req: $crate::store::RotateRequest<'_>) -> $crate::error::Result<$crate::store::RotateOutcome> {
                use $crate::store::policy::{self, Decision, Found, Rules};
                use $crate::store::{RotateOutcome, SessionRecord, TokenRecord, UserRecord};
                let hash = req.presented.hash();
                let mut tx = self.begin_write().await?;
                // Load: the token, its family under the lock, the token again (a
                // concurrent rotation that committed while we waited is now visible),
                // the owner.
                let found = sqlx::query_as::<$db, TokenRecord>($crate::store::TOKEN_BY_HASH)
                    .bind(&hash)
                    .fetch_optional(&mut *tx)
                    .await?;
                let session = match &found {
                    Some(t) => sqlx::query_as::<$db, SessionRecord>(concat!($crate::store::session_select!(), " WHERE id = $1", $lock))
                    .bind(&t.session_id)
                    .fetch_optional(&mut *tx)
                    .await?,
                    None => None,
                };
                let token = match &session {
                    Some(_) => Some(
                        sqlx::query_as::<$db, TokenRecord>($crate::store::TOKEN_BY_HASH)
                            .bind(&hash)
                            .fetch_one(&mut *tx)
                            .await?,
                    ),
                    None => found,
                };
                let user = match &session {
                    Some(s) => sqlx::query_as::<$db, UserRecord>($crate::store::USER_BY_ID)
                        .bind(&s.user_id)
                        .fetch_optional(&mut *tx)
                        .await?,
                    None => None,
                };
                // Decide.
                let found = Found { token: token.as_ref(), session: session.as_ref(), user: user.as_ref() };
                let rules = Rules { reuse_interval_ms: req.reuse_interval_ms, idle_ttl_ms: req.idle_ttl_ms };
                let decision = policy::decide(found, req.now_ms, rules);
                // Apply. A refusal writes nothing: dropping `tx` rolls back.
                match (decision, token, session, user) {
                    (Decision::Refuse(reason), ..) => Ok(RotateOutcome::Rejected(reason)),
                    (Decision::Rotate { generation, refresh_expires_at_ms }, Some(_), Some(session), Some(user)) => {
                        Self::apply_rotation(tx, req, session, user, generation, refresh_expires_at_ms).await
                    }
                    (Decision::Replay, Some(token), Some(session), Some(user)) => {
                        Self::apply_replay(tx, &req, &token, session, user).await
                    }
                    (Decision::RevokeFamily { generation, reused_after_ms }, Some(_), Some(session), Some(user)) => {
                        Self::apply_reuse(tx, &req, session, user, generation, reused_after_ms).await
                    }
                    _ => Err($crate::error::Error::Corrupt("rotation policy acted on a missing row".into())),
                }
            }

            async fn revoke_by_token(&self, token_hash: &str, now_ms: i64, reason: &str) -> $crate::error::Result<Option<$crate::store::SessionRecord>> {
                let mut tx = self.begin_write().await?;
                let session_id: Option<String> = sqlx::query_scalar::<$db, String>(
                    "SELECT session_id FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(session_id) = session_id else {
                    return Ok(None);
                };
                Self::mark_revoked(&mut *tx, &session_id, now_ms, reason).await?;
                let session = sqlx::query_as::<$db, $crate::store::SessionRecord>(concat!(
                    $crate::store::session_select!(),
                    " WHERE id = $1"
                ))
                .bind(&session_id)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(session)
            }

            async fn revoke_session(&self, session_id: &str, now_ms: i64, reason: &str) -> $crate::error::Result<bool> {
                let mut conn = self.pool.acquire().await?;
                Self::mark_revoked(&mut *conn, session_id, now_ms, reason).await
            }

            async fn revoke_user_sessions(&self, user_id: &str, now_ms: i64, reason: &str) -> $crate::error::Result<u64> {
                let r = sqlx::query::<$db>(
                    "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL",
                )
                .bind(now_ms)
                .bind(reason)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected())
            }

            async fn list_sessions(&self, user_id: Option<&str>) -> $crate::error::Result<Vec<$crate::store::SessionRecord>> {
                Ok(sqlx::query_as::<$db, $crate::store::SessionRecord>(concat!(
                    $crate::store::session_select!(),
                    " WHERE ($1 IS NULL OR user_id = $1) ORDER BY created_at DESC, id DESC LIMIT 10000"
                ))
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn audit(&self, event: &$crate::store::AuditEvent) -> $crate::error::Result<()> {
                let mut conn = self.pool.acquire().await?;
                Self::insert_audit(&mut *conn, event).await
            }

            async fn audit_events(&self, limit: i64) -> $crate::error::Result<Vec<$crate::store::AuditEvent>> {
                Ok(sqlx::query_as::<$db, $crate::store::AuditEvent>(
                    "SELECT at, kind, user_id, username, session_id, client_addr, detail FROM audit_events ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }

        impl $store {
            /// Writes a [`Decision::Rotate`](crate::store::policy::Decision::Rotate):
            /// signs the access token, marks the presented token used (sealing the
            /// answer under it for replays), inserts the successor, bumps the session.
            async fn apply_rotation(
                mut tx: sqlx::Transaction<'static, $db>,
                req: $crate::store::RotateRequest<'_>,
                session: $crate::store::SessionRecord,
                user: $crate::store::UserRecord,
                generation: i64,
                refresh_expires_at_ms: i64,
            ) -> $crate::error::Result<$crate::store::RotateOutcome> {
                let now = req.now_ms;
                let (access_token, access_expires_at_ms) = (req.mint)(&user, &session, now)?;
                let successor = $crate::token::Successor { secret: req.fresh, access_expires_at_ms, access_token };
                let next = $crate::store::TokenRecord {
                    token_hash: successor.secret.hash(),
                    session_id: session.id.clone(),
                    generation,
                    created_at: now,
                    expires_at: refresh_expires_at_ms,
                    used_at: None,
                    successor_hash: None,
                    successor_box: None,
                };
                let updated = sqlx::query::<$db>(
                    "UPDATE refresh_tokens SET used_at = $1, successor_hash = $2, successor_box = $3 \
                     WHERE token_hash = $4 AND used_at IS NULL",
                )
                .bind(now)
                .bind(&next.token_hash)
                .bind($crate::token::seal_successor(req.presented, &successor))
                .bind(req.presented.hash())
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() != 1 {
                    // Unreachable while the session lock is held; refuse rather than fork.
                    return Err($crate::error::Error::Corrupt("refresh token changed under the session lock".into()));
                }
                Self::insert_token(&mut *tx, &next).await?;
                sqlx::query::<$db>("UPDATE sessions SET last_used_at = $1, generation = $2 WHERE id = $3")
                    .bind(now)
                    .bind(generation)
                    .bind(&session.id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok($crate::store::RotateOutcome::Granted($crate::store::Grant {
                    successor,
                    refresh_expires_at_ms,
                    session_id: session.id,
                    user_id: user.id,
                    replayed: false,
                }))
            }

            /// Answers a [`Decision::Replay`](crate::store::policy::Decision::Replay):
            /// loads the family's later tokens and lets
            /// [`policy::replay`](crate::store::policy::replay) find the answer; writes nothing.
            async fn apply_replay(
                mut tx: sqlx::Transaction<'static, $db>,
                req: &$crate::store::RotateRequest<'_>,
                token: &$crate::store::TokenRecord,
                session: $crate::store::SessionRecord,
                user: $crate::store::UserRecord,
            ) -> $crate::error::Result<$crate::store::RotateOutcome> {
                use $crate::store::policy::{self, Replay};
                let later = sqlx::query_as::<$db, $crate::store::TokenRecord>($crate::store::LATER_TOKENS)
                    .bind(&session.id)
                    .bind(token.generation)
                    .bind(policy::MAX_REPLAY_CHAIN as i64)
                    .fetch_all(&mut *tx)
                    .await?;
                match policy::replay(req.presented, token, &later, req.now_ms) {
                    Replay::Answer { mut successor, refresh_expires_at_ms, reissue_access } => {
                        if reissue_access {
                            let (jwt, exp) = (req.mint)(&user, &session, req.now_ms)?;
                            successor.access_token = jwt;
                            successor.access_expires_at_ms = exp;
                        }
                        tx.commit().await?;
                        Ok($crate::store::RotateOutcome::Granted($crate::store::Grant {
                            successor,
                            refresh_expires_at_ms,
                            session_id: session.id,
                            user_id: user.id,
                            replayed: true,
                        }))
                    }
                    Replay::Refuse(reason) => Ok($crate::store::RotateOutcome::Rejected(reason)),
                    Replay::Broken => Err($crate::error::Error::Corrupt(format!(
                        "refresh-token chain of session {} is broken",
                        session.id
                    ))),
                }
            }

            /// Writes a [`Decision::RevokeFamily`](crate::store::policy::Decision::RevokeFamily):
            /// revokes the session and audits the reuse.
            async fn apply_reuse(
                mut tx: sqlx::Transaction<'static, $db>,
                req: &$crate::store::RotateRequest<'_>,
                session: $crate::store::SessionRecord,
                user: $crate::store::UserRecord,
                generation: i64,
                reused_after_ms: i64,
            ) -> $crate::error::Result<$crate::store::RotateOutcome> {
                Self::mark_revoked(&mut *tx, &session.id, req.now_ms, "refresh_token_reuse").await?;
                let event = $crate::store::AuditEvent {
                    user_id: Some(user.id.clone()),
                    username: Some(user.username),
                    session_id: Some(session.id.clone()),
                    client_addr: req.client_addr.map(str::to_owned),
                    detail: Some(format!("generation {generation} reused {reused_after_ms} ms after its rotation")),
                    ..$crate::store::AuditEvent::new("refresh_reuse_detected", req.now_ms)
                };
                Self::insert_audit(&mut *tx, &event).await?;
                tx.commit().await?;
                Ok($crate::store::RotateOutcome::ReuseDetected {
                    session_id: session.id,
                    user_id: user.id,
                })
            }

            async fn insert_session(
                conn: &mut <$db as sqlx::Database>::Connection,
                s: &$crate::store::SessionRecord,
            ) -> $crate::error::Result<()> {
                sqlx::query::<$db>(
                    "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, revoked_at, revoked_reason, generation, user_agent, client_addr) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&s.id)
                .bind(&s.user_id)
                .bind(s.created_at)
                .bind(s.last_used_at)
                .bind(s.expires_at)
                .bind(s.revoked_at)
                .bind(&s.revoked_reason)
                .bind(s.generation)
                .bind(&s.user_agent)
                .bind(&s.client_addr)
                .execute(conn)
                .await?;
                Ok(())
            }

            async fn insert_token(
                conn: &mut <$db as sqlx::Database>::Connection,
                t: &$crate::store::TokenRecord,
            ) -> $crate::error::Result<()> {
                sqlx::query::<$db>(
                    "INSERT INTO refresh_tokens (token_hash, session_id, generation, created_at, expires_at, used_at, successor_hash, successor_box) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&t.token_hash)
                .bind(&t.session_id)
                .bind(t.generation)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.used_at)
                .bind(&t.successor_hash)
                .bind(&t.successor_box)
                .execute(conn)
                .await?;
                Ok(())
            }

            /// Revokes a session unless it already is; returns whether it changed.
            async fn mark_revoked(
                conn: &mut <$db as sqlx::Database>::Connection,
                session_id: &str,
                now_ms: i64,
                reason: &str,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query::<$db>(
                    "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
                )
                .bind(now_ms)
                .bind(reason)
                .bind(session_id)
                .execute(conn)
                .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn insert_audit(
                conn: &mut <$db as sqlx::Database>::Connection,
                e: &$crate::store::AuditEvent,
            ) -> $crate::error::Result<()> {
                sqlx::query::<$db>(
                    "INSERT INTO audit_events (at, kind, user_id, username, session_id, client_addr, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(e.at)
                .bind(&e.kind)
                .bind(&e.user_id)
                .bind(&e.username)
                .bind(&e.session_id)
                .bind(&e.client_addr)
                .bind(&e.detail)
                .execute(conn)
                .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use sql_store;
