//! The session: login, single-flight renewal, logout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Url;

use crate::backend::{Backend, login_error, refresh_error};
use crate::{Clock, Error, MemoryStore, SystemClock, TokenStore, Tokens};
use sallyport_backend::{Call, Grant};

/// See [`Auth::renew_after_rejection`].
pub const FRESH_REJECTION_GRACE_SECS: u64 = 10;

/// One logged-in session against a token backend: keeps the tokens in a
/// [`TokenStore`] and hands out a valid access token, renewing it when
/// needed. Cheap to clone; all clones share the session.
///
/// Renewal is **single-flight**: however many tasks find the token stale at
/// once, one refresh request is made and the others use its result. This
/// matters because refresh tokens are single-use: two concurrent refreshes
/// with the same token would make a rotating backend see reuse and revoke
/// the session.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    client: sallyport_backend::Client,
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    leeway: u64,
    /// Held while renewing; waiters re-read the store afterwards.
    renewal: tokio::sync::Mutex<()>,
    refreshes: AtomicU64,
    /// The access token this process last obtained, and when.
    obtained: std::sync::Mutex<Option<(u64, String)>>,
    /// Origins the middleware attaches the token to; `None`: all.
    origins: Option<Vec<Url>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("backend", &self.inner.backend)
            .field("leeway_secs", &self.inner.leeway)
            .field("refreshes", &self.refresh_count())
            .finish_non_exhaustive()
    }
}

/// Builds an [`Auth`].
#[must_use]
pub struct AuthBuilder {
    backend: Backend,
    http: Option<reqwest::Client>,
    store: Option<Arc<dyn TokenStore>>,
    clock: Option<Arc<dyn Clock>>,
    leeway: Duration,
    timeout: Duration,
    origins: Option<Vec<Url>>,
}

impl AuthBuilder {
    /// The HTTP client used to talk to the token backend (default: a new
    /// one with [`AuthBuilder::timeout`] that follows no redirects).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Where tokens are kept (default [`MemoryStore`]).
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Like [`AuthBuilder::store`] for a store shared with other code.
    pub fn shared_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The clock (default [`SystemClock`]); tests pass a [`crate::ManualClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Renew when the access token expires within this (default 30 s), so a
    /// request never leaves with a token that expires in flight.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Timeout of each backend request, from connecting until the last byte
    /// of the answer (default 10 s). It applies to a client given with
    /// [`AuthBuilder::http_client`] too: a backend call is never unbounded.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attach the bearer token only to requests to these origins
    /// (scheme, host, port). Default: every request made through the
    /// middleware — set this if the same client also calls third parties.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for o in origins {
            let o = o.as_ref();
            parsed.push(
                Url::parse(o).map_err(|e| Error::Config(format!("allowed origin {o:?}: {e}")))?,
            );
        }
        self.origins = Some(parsed);
        Ok(self)
    }

    /// Builds the session handle (not logged in unless the store has tokens).
    pub fn build(self) -> Result<Auth, Error> {
        let http = match self.http {
            Some(h) => h,
            None => sallyport_backend::Client::http_client(self.timeout)
                .map_err(|e| Error::Config(format!("HTTP client: {e}")))?,
        };
        // Each call is bounded by the timeout even on a caller's own HTTP client.
        let client = sallyport_backend::Client::new(self.backend.config(self.timeout), http);
        Ok(Auth {
            inner: Arc::new(Inner {
                backend: self.backend,
                client,
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                leeway: self.leeway.as_secs(),
                renewal: tokio::sync::Mutex::new(()),
                refreshes: AtomicU64::new(0),
                obtained: std::sync::Mutex::new(None),
                origins: self.origins,
            }),
        })
    }
}

impl Auth {
    /// Starts building a session handle for `backend`.
    pub fn builder(backend: Backend) -> AuthBuilder {
        AuthBuilder {
            backend,
            http: None,
            store: None,
            clock: None,
            leeway: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            origins: None,
        }
    }

    /// Logs in with a username and password and stores the tokens.
    pub async fn login(&self, username: &str, password: &str) -> Result<(), Error> {
        let granted = self
            .inner
            .client
            .login(username, password, self.call())
            .await
            .map_err(login_error)?;
        let tokens = self.tokens_from(granted, None);
        let _guard = self.inner.renewal.lock().await;
        self.save(&tokens).await?;
        self.note_obtained(&tokens.access_token);
        Ok(())
    }

    /// Revokes the session at the backend (when it has a logout/revoke
    /// endpoint) and forgets the tokens.
    ///
    /// The tokens are forgotten even if revocation fails; the error
    /// ([`Error::BackendUnavailable`] or [`Error::Backend`]) then says the
    /// refresh token may still be valid at the backend.
    pub async fn logout(&self) -> Result<(), Error> {
        let _guard = self.inner.renewal.lock().await;
        let tokens = self.load().await?;
        self.clear().await?;
        let Some(refresh_token) = tokens.and_then(|t| t.refresh_token) else {
            return Ok(());
        };
        match self.inner.client.revoke(&refresh_token, self.call()).await {
            Ok(_) => Ok(()),
            Err(f) => match login_error(f) {
                // An unknown or already revoked token is logged out enough.
                Error::InvalidCredentials => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Whether tokens are stored (the session may still be refused later).
    pub async fn is_logged_in(&self) -> Result<bool, Error> {
        Ok(self.load().await?.is_some())
    }

    /// The current tokens, if any.
    pub async fn tokens(&self) -> Result<Option<Tokens>, Error> {
        self.load().await
    }

    /// A valid access token, renewed first if it expires within the leeway.
    ///
    /// If the backend is unavailable but the current token has not expired
    /// yet, that token is returned (an outage is not a logout).
    pub async fn access_token(&self) -> Result<String, Error> {
        let tokens = self.load().await?.ok_or(Error::SessionExpired)?;
        if self.fresh(&tokens) {
            return Ok(tokens.access_token);
        }
        self.renew(&tokens.access_token).await
    }

    /// Renews now, whatever the expiry (e.g. after roles changed).
    pub async fn refresh(&self) -> Result<String, Error> {
        let tokens = self.load().await?.ok_or(Error::SessionExpired)?;
        let _guard = self.inner.renewal.lock().await;
        self.renew_locked(&tokens.access_token, true).await
    }

    /// Called when an API refused `rejected` with 401: renews unless another
    /// task already replaced that token, and returns the token to retry
    /// with — `None` if there is nothing better than `rejected` (the
    /// backend is down and `rejected` has not expired), so the caller does
    /// not retry with the same token.
    ///
    /// A token this process obtained less than
    /// [`FRESH_REJECTION_GRACE_SECS`] ago is not renewed again: an API that
    /// refuses a brand-new token will refuse its successor too (wrong
    /// audience, missing rights answered with 401), and renewing on every
    /// such request would only hammer the backend.
    pub async fn renew_after_rejection(&self, rejected: &str) -> Result<Option<String>, Error> {
        let _guard = self.inner.renewal.lock().await;
        if self.just_obtained(rejected) {
            tracing::debug!("a token obtained moments ago was refused; not renewing");
            return Ok(None);
        }
        let token = self.renew_locked(rejected, true).await?;
        Ok((token != rejected).then_some(token))
    }

    /// How many refresh requests this session has made (for metrics and tests).
    pub fn refresh_count(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    /// The middleware for a [`reqwest_middleware::ClientWithMiddleware`].
    pub fn middleware(&self) -> crate::AuthMiddleware {
        crate::AuthMiddleware::new(self.clone())
    }

    /// Wraps `client` with [`Auth::middleware`].
    pub fn client(&self, client: reqwest::Client) -> reqwest_middleware::ClientWithMiddleware {
        reqwest_middleware::ClientBuilder::new(client)
            .with(self.middleware())
            .build()
    }

    pub(crate) fn applies_to(&self, url: &Url) -> bool {
        match &self.inner.origins {
            None => true,
            Some(list) => list.iter().any(|o| o.origin() == url.origin()),
        }
    }

    fn fresh(&self, tokens: &Tokens) -> bool {
        tokens.expires_at
            > self
                .inner
                .clock
                .now_secs()
                .saturating_add(self.inner.leeway)
    }

    async fn renew(&self, stale: &str) -> Result<String, Error> {
        let _guard = self.inner.renewal.lock().await;
        self.renew_locked(stale, false).await
    }

    /// Renews with the renewal lock held. `stale` is the access token the
    /// caller found wanting; if the store already holds another, fresh one,
    /// a concurrent caller renewed while we waited and we use its result.
    async fn renew_locked(&self, stale: &str, force: bool) -> Result<String, Error> {
        let tokens = self.load().await?.ok_or(Error::SessionExpired)?;
        let now = self.inner.clock.now_secs();
        let replaced = tokens.access_token != stale;
        if self.fresh(&tokens) && (replaced || !force) {
            return Ok(tokens.access_token);
        }
        let still_valid = tokens.expires_at > now;
        let Some(refresh_token) = tokens.refresh_token.clone() else {
            if still_valid && !force {
                return Ok(tokens.access_token);
            }
            self.clear().await?;
            return Err(Error::SessionExpired);
        };
        self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
        match self.inner.client.refresh(&refresh_token, self.call()).await {
            Ok(granted) => {
                let new = self.tokens_from(granted, Some(refresh_token));
                self.save(&new).await?;
                self.note_obtained(&new.access_token);
                tracing::debug!(expires_at = new.expires_at, "access token renewed");
                Ok(new.access_token)
            }
            Err(failure) => match refresh_error(failure) {
                e @ Error::BackendUnavailable { .. } => {
                    if still_valid {
                        tracing::warn!(error = %e, "renewal failed; keeping the current token");
                        Ok(tokens.access_token)
                    } else {
                        Err(e)
                    }
                }
                e => {
                    tracing::info!(error = %e, "session refused by the backend; tokens cleared");
                    self.clear().await?;
                    Err(e)
                }
            },
        }
    }

    fn note_obtained(&self, access_token: &str) {
        let now = self.inner.clock.now_secs();
        if let Ok(mut slot) = self.inner.obtained.lock() {
            *slot = Some((now, access_token.to_owned()));
        }
    }

    fn just_obtained(&self, access_token: &str) -> bool {
        let now = self.inner.clock.now_secs();
        self.inner.obtained.lock().is_ok_and(|slot| {
            slot.as_ref().is_some_and(|(at, token)| {
                token == access_token && now < at.saturating_add(FRESH_REJECTION_GRACE_SECS)
            })
        })
    }

    /// A backend call made now (a `Retry-After` date is measured from it).
    fn call(&self) -> Call {
        Call::at_unix_secs(self.inner.clock.now_secs())
    }

    fn tokens_from(&self, granted: Grant, previous_refresh: Option<String>) -> Tokens {
        let now = self.inner.clock.now_secs();
        // The JWT's own `exp` is authoritative; `expires_in` is the fallback
        // for opaque tokens, and "now" (renew on next use) the last resort.
        let expires_at = sallyport_jwt::expires_at(&granted.access_token)
            .ok()
            .or_else(|| granted.expires_in.map(|s| now.saturating_add(s)))
            .unwrap_or(now);
        Tokens {
            access_token: granted.access_token,
            // A backend that does not rotate keeps the old refresh token valid.
            refresh_token: granted.refresh_token.or(previous_refresh),
            expires_at,
        }
    }

    async fn load(&self) -> Result<Option<Tokens>, Error> {
        self.inner.store.load().await.map_err(Error::Store)
    }

    async fn save(&self, tokens: &Tokens) -> Result<(), Error> {
        self.inner.store.save(tokens).await.map_err(Error::Store)
    }

    async fn clear(&self) -> Result<(), Error> {
        self.inner.store.clear().await.map_err(Error::Store)
    }
}
