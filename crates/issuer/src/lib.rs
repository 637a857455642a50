//! # sallyport-issuer
//!
//! A small token server: users with argon2id passwords, short-lived JWT access tokens
//! (ES256 or EdDSA, keys in the database and published as a JWKS) and rotating,
//! single-use refresh tokens with RFC 9700 reuse detection. SQLite by default,
//! PostgreSQL for several replicas. It is the reference backend of the Sallyport
//! gateway and usable on its own.
//!
//! ```no_run
//! # async fn run() -> Result<(), sallyport_issuer::Error> {
//! use sallyport_issuer::{Config, Issuer};
//! let config = Config { database_url: "sqlite://issuer.db".into(), ..Config::default() };
//! let issuer = Issuer::open(config).await?;
//! issuer.admin().add_user("alice", "correct horse battery staple", Some("Alice"), &["admin"]).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! sallyport_issuer::serve(listener, issuer).await?;
//! # Ok(()) }
//! ```
//!
//! Refresh semantics (see `docs/design.md`, "The issuer"): each refresh token is single-use.
//! Presented again within `refresh_reuse_interval_secs` of its use, it is answered as
//! the first use was, with the session's current refresh token (retries and concurrent
//! tabs keep the session; see [`store::policy`]); presented later, the whole session is
//! revoked and the event audited.

mod admin;
mod backchannel;
pub mod client_addr;
mod client_auth;
pub mod clock;
pub mod config;
mod error;
pub mod files;
mod http;
pub mod keys;
mod metrics;
pub mod oidc;
mod password;
mod ratelimit;
mod reload;
pub mod store;
pub mod token;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

pub use admin::{Admin, KeyInfo, SessionInfo, User};
pub use client_auth::ClientAuthError;
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use config::{Config, Settings};
pub use error::{Error, Result};
pub use http::ApiDoc;
pub use reload::Reloaded;
#[cfg(unix)]
pub use reload::reload_on_sighup;

use crate::keys::{KeyRing, claims_for};
use crate::metrics::Metrics;
use crate::password::{Hasher, MAX_PASSWORD_BYTES};
use crate::ratelimit::LoginLimiter;
use crate::store::{
    AuditEvent, Grant, PgStore, Rejection, RotateOutcome, RotateRequest, SessionRecord,
    SqliteStore, Store, TokenRecord, UserRecord,
};
use crate::token::RefreshSecret;

/// Longest username accepted.
pub const MAX_USERNAME_CHARS: usize = 256;

/// A running issuer: settings, store, keys, limiter, metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Issuer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Replaced whole by a reload ([`Issuer::reload`]); read without a lock.
    settings: arc_swap::ArcSwap<Settings>,
    /// Serialises reloads (never requests): each compares against the settings the
    /// previous one stored.
    reloading: std::sync::Mutex<()>,
    /// How long a retired key stays published: the longest [`key_retention_ms`] of any
    /// settings in force since start-up, so that a reload shortening the token lifetime
    /// does not unpublish a key whose tokens, issued before it, still live.
    key_retention_ms: std::sync::atomic::AtomicI64,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keys: RwLock<Arc<KeyRing>>,
    /// `sallyport-jwt`'s verifier over our own published keys (no fetching; updated
    /// whenever the key ring is reloaded). `/api/me` uses it through `BearerClaims`.
    verifier: sallyport_jwt::Verifier,
    hasher: Hasher,
    limiter: LoginLimiter,
    metrics: Metrics,
    /// Back-channel logout delivery (see [`backchannel`]).
    notifier: backchannel::Notifier,
}

/// Who is asking (for rate limits and the audit trail).
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Client address as far as it can be trusted.
    pub client_addr: Option<String>,
    /// `User-Agent`, truncated.
    pub user_agent: Option<String>,
}

/// Tokens issued by login or refresh.
#[derive(Clone)]
pub struct IssuedTokens {
    /// JWT access token.
    pub access_token: String,
    /// New refresh token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Seconds until the refresh token expires if unused.
    pub refresh_token_expires_in: u64,
    /// Session id (`sid`).
    pub session_id: String,
    /// OpenID Connect ID token (code-flow sessions with the `openid` scope only).
    pub id_token: Option<String>,
    /// Granted scope (code-flow sessions only).
    pub scope: Option<String>,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("expires_in", &self.expires_in)
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (deliberately indistinguishable).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The password was right but the account is disabled.
    #[error("account disabled")]
    Disabled,
    /// Too many failed attempts; retry after this many seconds.
    #[error("too many failed attempts")]
    RateLimited(u64),
    /// Input refused before any work.
    #[error("{0}")]
    InvalidRequest(String),
    /// Internal failure.
    #[error(transparent)]
    Internal(#[from] Error),
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired, revoked or reused token (`invalid_grant`).
    #[error("refresh token rejected ({0})")]
    InvalidGrant(&'static str),
    /// Internal failure.
    #[error(transparent)]
    Internal(#[from] Error),
}

fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn ceil_secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000)
}

impl Issuer {
    /// Connects to the database named in `config`, runs migrations, creates a signing
    /// key on first start. Uses the wall clock.
    pub async fn open(config: Config) -> Result<Issuer> {
        Self::open_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Issuer::open`] with an injected clock (tests move time with [`ManualClock`]).
    pub async fn open_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Issuer> {
        let settings = config.validate()?;
        let store: Arc<dyn Store> = match settings.backend {
            config::DatabaseKind::Sqlite => {
                // Private before SQLite creates anything (see `files`).
                for warning in files::prepare_sqlite(&config.database_url)? {
                    tracing::warn!("{warning}");
                }
                Arc::new(
                    SqliteStore::connect(&config.database_url, config.database_max_connections)
                        .await?,
                )
            }
            config::DatabaseKind::Postgres => Arc::new(
                PgStore::connect(&config.database_url, config.database_max_connections).await?,
            ),
        };
        Self::with_store(settings, store, clock).await
    }

    /// Builds an issuer on an already opened store.
    pub async fn with_store(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Issuer> {
        let now = clock::now_ms_i64(clock.as_ref());
        let kek = settings.key_encryption.as_deref();
        let mut stored = store.signing_keys().await?;
        if !stored.iter().any(|r| r.retired_at.is_none()) {
            let key = keys::seal_record(keys::generate(settings.algorithm, now)?, kek)?;
            store.add_signing_key(&key, false).await?;
            tracing::info!(kid = %key.kid, encrypted = kek.is_some(), "created the first signing key");
            stored = store.signing_keys().await?;
        }
        if kek.is_some() {
            let plain = stored.iter().filter(|r| !keys::is_encrypted(r)).count();
            if plain > 0 {
                tracing::warn!(
                    "{plain} signing key(s) are stored unencrypted (written before {} was \
                     set); `sallyport keys rotate` makes the signing key an encrypted one",
                    keys::KEY_ENCRYPTION_ENV
                );
            }
        }
        let records = keys::open_records(stored, kek)?;
        let retention_ms = key_retention_ms(&settings);
        let ring = KeyRing::from_records(&records, now, retention_ms)?;
        let verifier = access_token_verifier(&settings, ring.jwks().clone());
        let hasher = Hasher::new(&settings.raw.argon2).await?;
        let limiter = LoginLimiter::new(&settings.raw.rate_limit);
        let metrics = Metrics::new();
        let notifier =
            backchannel::Notifier::start(&settings.raw.backchannel_logout, metrics.clone());
        Ok(Issuer {
            inner: Arc::new(Inner {
                settings: arc_swap::ArcSwap::from_pointee(settings),
                reloading: std::sync::Mutex::new(()),
                key_retention_ms: std::sync::atomic::AtomicI64::new(retention_ms),
                store,
                clock,
                keys: RwLock::new(Arc::new(ring)),
                verifier,
                hasher,
                limiter,
                metrics,
                notifier,
            }),
        })
    }

    /// The axum router with every endpoint (see `docs/design.md`).
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// User, session and key administration.
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }

    /// The validated settings in force now (a reload may replace them).
    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings.load_full()
    }

    /// Swaps in reloaded settings (see `reload.rs`).
    pub(crate) fn swap_settings(&self, settings: Settings) {
        self.inner
            .key_retention_ms
            .fetch_max(key_retention_ms(&settings), Ordering::SeqCst);
        self.inner.settings.store(Arc::new(settings));
    }

    /// How long a retired signing key stays published (see [`Inner::key_retention_ms`]).
    pub(crate) fn key_retention_ms(&self) -> i64 {
        self.inner.key_retention_ms.load(Ordering::SeqCst)
    }

    /// Held by a reload from reading the running settings to storing the new ones.
    pub(crate) fn reload_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A poisoned lock only means an earlier reload panicked; it guards no data.
        self.inner
            .reloading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The storage backend.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Closes the database pool (after serving stopped); later requests that need
    /// the database fail with 503.
    pub async fn close(&self) {
        self.inner.store.close().await;
    }

    /// Current time according to the issuer's clock (unix ms).
    pub fn now_ms(&self) -> i64 {
        clock::now_ms_i64(self.inner.clock.as_ref())
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The access-token verifier for the issuer's own keys (what `/api/me` uses).
    pub fn verifier(&self) -> &sallyport_jwt::Verifier {
        &self.inner.verifier
    }

    /// Keys each login limit currently remembers (per address, per account and
    /// address, per account), each at most `rate_limit.max_tracked_keys`.
    pub fn rate_limit_tracked_keys(&self) -> [u64; 3] {
        self.inner.limiter.tracked_keys()
    }

    pub(crate) fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The key ring, reloaded from the database when older than `key_cache_secs` so
    /// that a rotation done by another replica or the CLI is picked up.
    pub async fn keys(&self) -> Result<Arc<KeyRing>> {
        let now = self.now_ms();
        let current = self.cached_keys();
        if now.saturating_sub(current.loaded_at_ms) < self.inner.settings.load().key_cache_ms {
            return Ok(current);
        }
        self.reload_keys().await
    }

    fn cached_keys(&self) -> Arc<KeyRing> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) async fn reload_keys(&self) -> Result<Arc<KeyRing>> {
        let now = self.now_ms();
        let records = self.key_records().await?;
        let ring = Arc::new(KeyRing::from_records(
            &records,
            now,
            self.key_retention_ms(),
        )?);
        self.inner.verifier.set_jwks(ring.jwks());
        *self.inner.keys.write().unwrap_or_else(|p| p.into_inner()) = ring.clone();
        Ok(ring)
    }

    /// Every stored signing key, decrypted (see [`keys::open_records`]).
    pub(crate) async fn key_records(&self) -> Result<Vec<store::KeyRecord>> {
        let stored = self.inner.store.signing_keys().await?;
        keys::open_records(stored, self.inner.settings.load().key_encryption.as_deref())
    }

    async fn audit(&self, event: AuditEvent) {
        if let Err(err) = self.inner.store.audit(&event).await {
            tracing::warn!(%err, kind = %event.kind, "could not write audit event");
        }
    }

    /// `POST /api/login` and the OAuth password grant.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ctx: &RequestContext,
    ) -> Result<IssuedTokens, LoginError> {
        let user = self.authenticate_password(username, password, ctx).await?;
        let m = self.metrics();
        let now = self.now_ms();
        let s = self.inner.settings.load_full();
        let secret = RefreshSecret::generate()?;
        let (session, token) = new_session(
            &s,
            uuid::Uuid::now_v7().to_string(),
            &user.id,
            secret.hash(),
            now,
            ctx,
        );
        let (access_token, access_exp) = self.mint(&user, &session, now).await?;
        self.inner.store.create_session(&session, &token).await?;
        m.login("success");
        self.audit(AuditEvent {
            user_id: Some(user.id.clone()),
            username: Some(user.username.clone()),
            session_id: Some(session.id.clone()),
            client_addr: ctx.client_addr.clone(),
            ..AuditEvent::new("login_succeeded", now)
        })
        .await;
        Ok(IssuedTokens {
            access_token,
            refresh_token: secret.encode(),
            expires_in: ceil_secs(access_exp - now),
            refresh_token_expires_in: ceil_secs(token.expires_at - now),
            session_id: session.id,
            id_token: None,
            scope: None,
        })
    }

    /// Checks a password under the login limits (shared by `/api/login`, the password
    /// grant and the `/oauth/authorize` login form): counted as a failure before it is
    /// hashed (see [`LoginLimiter::attempt`]), audited, refused for disabled accounts.
    pub(crate) async fn authenticate_password(
        &self,
        username: &str,
        password: &str,
        ctx: &RequestContext,
    ) -> Result<UserRecord, LoginError> {
        if username.is_empty() || username.chars().count() > MAX_USERNAME_CHARS {
            return Err(LoginError::InvalidRequest(format!(
                "username must be 1 to {MAX_USERNAME_CHARS} characters"
            )));
        }
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Err(LoginError::InvalidRequest(format!(
                "password must be 1 to {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let addr = ctx.client_addr.as_deref();
        let m = self.metrics();
        // Counted as a failure until the password proves otherwise (see `attempt`).
        let attempt = match self.inner.limiter.attempt(username, addr, self.now_ms()) {
            Ok(attempt) => attempt,
            Err(wait) => {
                m.login("rate_limited");
                return Err(LoginError::RateLimited(ceil_secs(duration_ms(wait)).max(1)));
            }
        };
        let user = self.inner.store.user_by_name(username).await?;
        let verified = self
            .hasher()
            .verify(
                password.to_owned(),
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await;
        let ok = match verified {
            Ok(ok) => ok,
            Err(Error::Overloaded) => {
                m.login("overloaded");
                return Err(LoginError::Internal(Error::Overloaded));
            }
            Err(e) => return Err(e.into()),
        };
        let now = self.now_ms();
        let Some(user) = user.filter(|_| ok) else {
            let blocked = attempt.failed();
            m.login("invalid_credentials");
            self.audit(AuditEvent {
                username: Some(truncate(username, 64)),
                client_addr: ctx.client_addr.clone(),
                ..AuditEvent::new("login_failed", now)
            })
            .await;
            return Err(match blocked {
                Some(wait) => LoginError::RateLimited(ceil_secs(duration_ms(wait)).max(1)),
                None => LoginError::InvalidCredentials,
            });
        };
        if user.disabled_at.is_some() {
            m.login("disabled");
            self.audit(AuditEvent {
                user_id: Some(user.id.clone()),
                username: Some(user.username.clone()),
                client_addr: ctx.client_addr.clone(),
                ..AuditEvent::new("login_disabled_account", now)
            })
            .await;
            return Err(LoginError::Disabled);
        }
        Ok(user)
    }

    async fn mint(
        &self,
        user: &UserRecord,
        session: &SessionRecord,
        now: i64,
    ) -> Result<(String, i64)> {
        let ring = self.keys().await?;
        mint_with(&ring, &self.inner.settings.load(), user, session, now)
    }

    /// `POST /api/refresh-token`: the refresh of a session without a client binding
    /// (a code-flow session's token is refused here; it refreshes only at
    /// `/oauth/token` by its client, see [`Issuer::refresh_for_client`]).
    pub async fn refresh(
        &self,
        refresh_token: &str,
        ctx: &RequestContext,
    ) -> Result<IssuedTokens, RefreshError> {
        self.refresh_for_client(refresh_token, None, ctx).await
    }

    /// The OAuth refresh grant. `client_id` is the authenticated (or, for a public
    /// client, declared) client. A code-flow session's token is bound to its client
    /// (RFC 6749 §6): another client, or none, gets `invalid_grant` and nothing rotates.
    /// Its answer carries a new ID token (same `sub`, `sid`, `auth_time`; no `nonce`)
    /// when the session was granted `openid`.
    pub async fn refresh_for_client(
        &self,
        refresh_token: &str,
        client_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<IssuedTokens, RefreshError> {
        let m = self.metrics();
        let Some(presented) = RefreshSecret::parse(refresh_token) else {
            m.refresh("unknown");
            return Err(RefreshError::InvalidGrant(Rejection::Unknown.as_str()));
        };
        let oidc = self
            .inner
            .store
            .oidc_session_by_token(&presented.hash())
            .await?;
        if let Some(o) = &oidc
            && client_id != Some(o.client_id.as_str())
        {
            m.refresh("wrong_client");
            return Err(RefreshError::InvalidGrant("wrong_client"));
        }
        let ring = self.keys().await?;
        let settings = self.inner.settings.load_full();
        let settings = &*settings;
        let mint = |user: &UserRecord, session: &SessionRecord, now: i64| {
            mint_with(&ring, settings, user, session, now)
        };
        let now = self.now_ms();
        let outcome = self
            .inner
            .store
            .rotate(RotateRequest {
                presented: &presented,
                fresh: RefreshSecret::generate()?,
                now_ms: now,
                reuse_interval_ms: settings.reuse_interval_ms,
                idle_ttl_ms: settings.idle_ttl_ms,
                mint: &mint,
                client_addr: ctx.client_addr.as_deref(),
            })
            .await?;
        match outcome {
            RotateOutcome::Granted(Grant {
                successor,
                refresh_expires_at_ms,
                session_id,
                replayed,
                ..
            }) => {
                m.refresh(if replayed { "replayed" } else { "rotated" });
                let id_token = match &oidc {
                    Some(o) => self.refreshed_id_token(o, now).await?,
                    None => None,
                };
                Ok(IssuedTokens {
                    expires_in: ceil_secs(successor.access_expires_at_ms - now),
                    refresh_token_expires_in: ceil_secs(refresh_expires_at_ms - now),
                    access_token: successor.access_token,
                    refresh_token: successor.secret.encode(),
                    session_id,
                    id_token,
                    scope: oidc.map(|o| o.scope),
                })
            }
            RotateOutcome::Rejected(reason) => {
                m.refresh(reason.as_str());
                Err(RefreshError::InvalidGrant(reason.as_str()))
            }
            RotateOutcome::ReuseDetected {
                session_id,
                user_id,
            } => {
                tracing::warn!(%session_id, %user_id, "refresh-token reuse detected; session revoked");
                m.refresh("reuse_detected");
                m.reuse_detected();
                m.revocation("reuse");
                self.notify_session_ended(&session_id).await;
                Err(RefreshError::InvalidGrant("reused"))
            }
        }
    }

    /// `POST /oauth/revoke` (RFC 7009): like [`Issuer::logout`], but a code-flow
    /// session's token is revoked only by its own client (§2.1); `Ok(None)` when it
    /// belongs to another one (nothing revoked).
    pub async fn revoke_for_client(
        &self,
        token: &str,
        client_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Option<bool>> {
        if let Some(presented) = RefreshSecret::parse(token)
            && let Some(o) = self
                .inner
                .store
                .oidc_session_by_token(&presented.hash())
                .await?
            && client_id != Some(o.client_id.as_str())
        {
            return Ok(None);
        }
        self.logout(token, ctx).await.map(Some)
    }

    /// `POST /api/logout` and `POST /oauth/revoke`: revokes the token's whole family.
    /// Unknown tokens are not an error (RFC 7009: nothing to revoke).
    pub async fn logout(&self, refresh_token: &str, ctx: &RequestContext) -> Result<bool> {
        let Some(presented) = RefreshSecret::parse(refresh_token) else {
            return Ok(false);
        };
        let now = self.now_ms();
        let session = self
            .inner
            .store
            .revoke_by_token(&presented.hash(), now, "logout")
            .await?;
        let Some(session) = session else {
            return Ok(false);
        };
        if session.revoked_at == Some(now) {
            self.metrics().revocation("logout");
            self.notify_session_ended(&session.id).await;
        }
        self.audit(AuditEvent {
            user_id: Some(session.user_id.clone()),
            session_id: Some(session.id.clone()),
            client_addr: ctx.client_addr.clone(),
            ..AuditEvent::new("logout", now)
        })
        .await;
        Ok(true)
    }
}

/// The verifier `/api/me` uses: `sallyport-jwt` over the issuer's own published keys
/// (no fetching), expecting its `iss` and `aud`, with `access_token_leeway_secs`. Public
/// so that benchmarks measure exactly the server's path.
pub fn access_token_verifier(
    settings: &Settings,
    jwks: jsonwebtoken::jwk::JwkSet,
) -> sallyport_jwt::Verifier {
    sallyport_jwt::Verifier::from_jwks(
        jwks,
        sallyport_jwt::VerifierConfig::new(
            format!("{}/.well-known/jwks.json", settings.issuer),
            settings.issuer.clone(),
            settings.raw.audience.clone(),
        )
        .leeway(settings.access_token_leeway),
    )
}

/// A session that starts `now` and its first refresh token (generation 1): the one
/// definition of a new session's lifetimes, for the password login and the code flow.
pub(crate) fn new_session(
    s: &Settings,
    id: String,
    user_id: &str,
    token_hash: String,
    now: i64,
    ctx: &RequestContext,
) -> (SessionRecord, TokenRecord) {
    let session = SessionRecord {
        id,
        user_id: user_id.to_owned(),
        created_at: now,
        last_used_at: now,
        expires_at: now.saturating_add(s.max_lifetime_ms),
        revoked_at: None,
        revoked_reason: None,
        generation: 1,
        user_agent: ctx.user_agent.clone(),
        client_addr: ctx.client_addr.clone(),
    };
    let token = TokenRecord {
        token_hash,
        session_id: session.id.clone(),
        generation: 1,
        created_at: now,
        expires_at: now.saturating_add(s.idle_ttl_ms).min(session.expires_at),
        used_at: None,
        successor_hash: None,
        successor_box: None,
    };
    (session, token)
}

fn mint_with(
    ring: &KeyRing,
    settings: &Settings,
    user: &UserRecord,
    session: &SessionRecord,
    now: i64,
) -> Result<(String, i64)> {
    let claims = claims_for(
        user,
        session,
        &settings.issuer,
        &settings.raw.audience,
        now,
        settings.access_ttl_ms,
    );
    let exp_ms = i64::try_from(claims.exp)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    Ok((ring.sign(&claims)?, exp_ms))
}

/// How long a retired key stays in the JWKS: the lifetime of the last token it signed
/// (access token, ID token or logout token, whichever lives longest), plus the time
/// other replicas may keep signing with it (key cache), plus a minute.
fn key_retention_ms(s: &Settings) -> i64 {
    s.access_ttl_ms
        .max(s.id_token_ttl_ms)
        .max(oidc::LOGOUT_TOKEN_TTL_MS)
        .saturating_add(s.key_cache_ms)
        .saturating_add(60_000)
}

/// Formats unix milliseconds as RFC 3339 (UTC), for listings.
pub fn format_unix_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Serves `issuer` on `listener` until Ctrl-C or SIGTERM, then drains connections.
pub async fn serve(listener: tokio::net::TcpListener, issuer: Issuer) -> Result<()> {
    serve_with_shutdown(listener, issuer, shutdown_signal()).await
}

/// Serves until `shutdown` completes (graceful: in-flight requests finish, for at
/// most `request_timeout_secs` more).
///
/// Through [`sallyport_serve`], not `axum::serve`, which has no header read timeout: a
/// client trickling a request head (slowloris) would hold its connection forever. Every
/// connection must deliver a complete head within `header_read_timeout_secs` (or
/// `server.header_read_timeout_ms`), and the `[server]` limits apply (request body
/// idle timeout and minimum rate, send timeout, connection caps).
pub async fn serve_with_shutdown(
    listener: tokio::net::TcpListener,
    issuer: Issuer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let settings = issuer.settings();
    if !settings.client_address.trusts_proxies() {
        tracing::info!(
            "http.trusted_proxies is empty: login limits key on the TCP peer address; \
             behind a proxy or the gateway, list its address there"
        );
    }
    let options = sallyport_serve::Options {
        drain_timeout: settings
            .request_timeout
            .saturating_add(std::time::Duration::from_secs(1)),
        ..settings.server.clone()
    };
    sallyport_serve::serve(listener, issuer.router(), options, shutdown)
        .await
        .map_err(Error::from)
}

use sallyport_serve::shutdown_signal;
