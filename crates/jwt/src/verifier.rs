//! Verification of access tokens against a JWKS, with a cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde::Deserialize;
use tokio::time::Instant;

use crate::Error;
use crate::claims::{AccessClaims, decode_segment, parse_claims, split};
use crate::keys::{Algorithm, VerifyingKey};

/// JWKS documents larger than this are refused (a JWKS holds a few keys).
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// While no key has ever been loaded, fetch attempts are spaced at least this
/// far apart even if the configured refetch interval is longer, so a verifier
/// that started before its issuer recovers quickly.
const COLD_RETRY: Duration = Duration::from_secs(1);

/// Settings of a [`Verifier`]. Build with [`VerifierConfig::new`], then
/// adjust fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifierConfig {
    /// Where to fetch the JWKS (`https://issuer/.well-known/jwks.json`).
    /// Unused by [`Verifier::from_jwks`].
    pub jwks_url: String,
    /// The exact `iss` required.
    pub issuer: String,
    /// The `aud` value required (the token's `aud` must contain it).
    pub audience: String,
    /// Accepted algorithms. Default `[ES256, EdDSA]`; symmetric algorithms
    /// and `none` cannot be expressed at all.
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for `exp` and `nbf`. Default 30 s.
    pub leeway: Duration,
    /// Accepted header `typ` values, compared case-insensitively. Default
    /// `["at+jwt", "application/at+jwt"]` (RFC 9068 §4: resource servers
    /// must check it, which stops ID tokens or other JWTs signed with the same
    /// key from being used as access tokens). Empty: `typ` is not checked.
    pub accepted_types: Vec<String>,
    /// Minimum time between two JWKS fetches (those triggered by an unknown
    /// `kid` included), so forged `kid`s cannot make us hammer the issuer.
    /// Default 10 s.
    pub refetch_interval: Duration,
    /// Age after which the cached JWKS is refetched on next use (to drop
    /// retired keys). Default 5 min. A failed refetch keeps the old keys.
    pub cache_ttl: Duration,
    /// Timeout of one JWKS request. Default 5 s.
    pub http_timeout: Duration,
    /// How many successfully verified tokens to remember (default 10 000;
    /// 0 turns the cache off). A client sends the same access token with
    /// every request for its whole lifetime, so remembering that its
    /// signature checked out turns a ~50 µs ECDSA verification into a map
    /// lookup. Time-based and issuer/audience checks still run on every
    /// call, and a changed key set invalidates every entry.
    pub verified_cache_capacity: u64,
    /// Require a non-empty `sub` (default true). Off only for tokens where `sub` is
    /// optional by their specification, such as OpenID Connect back-channel logout
    /// tokens (`sid` and/or `sub`); the caller then checks what identifies the subject.
    pub require_sub: bool,
}

impl VerifierConfig {
    /// Settings with the defaults above.
    pub fn new(
        jwks_url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: vec![Algorithm::Es256, Algorithm::EdDsa],
            leeway: Duration::from_secs(30),
            accepted_types: vec![crate::ACCESS_TOKEN_TYPE.into(), "application/at+jwt".into()],
            refetch_interval: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(300),
            http_timeout: Duration::from_secs(5),
            verified_cache_capacity: 10_000,
            require_sub: true,
        }
    }

    /// Replaces [`VerifierConfig::require_sub`].
    pub fn require_sub(mut self, require: bool) -> Self {
        self.require_sub = require;
        self
    }

    /// Replaces [`VerifierConfig::verified_cache_capacity`].
    pub fn verified_cache_capacity(mut self, capacity: u64) -> Self {
        self.verified_cache_capacity = capacity;
        self
    }

    /// Replaces [`VerifierConfig::algorithms`].
    pub fn algorithms(mut self, algorithms: impl Into<Vec<Algorithm>>) -> Self {
        self.algorithms = algorithms.into();
        self
    }

    /// Replaces [`VerifierConfig::leeway`].
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Replaces [`VerifierConfig::accepted_types`].
    pub fn accepted_types<I, T>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.accepted_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces [`VerifierConfig::refetch_interval`].
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// Replaces [`VerifierConfig::cache_ttl`].
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    fn validate(&self, needs_url: bool) -> Result<(), Error> {
        if self.issuer.trim().is_empty() {
            return Err(Error::Config("`issuer` must not be empty".into()));
        }
        if self.audience.trim().is_empty() {
            return Err(Error::Config("`audience` must not be empty".into()));
        }
        if self.algorithms.is_empty() {
            return Err(Error::Config("`algorithms` must not be empty".into()));
        }
        if needs_url {
            let url = reqwest::Url::parse(&self.jwks_url)
                .map_err(|e| Error::Config(format!("`jwks_url` {:?}: {e}", self.jwks_url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Error::Config(format!(
                    "`jwks_url` {:?} must be http or https",
                    self.jwks_url
                )));
            }
        }
        Ok(())
    }
}

/// Verifies access tokens: pinned algorithms, key from the JWKS by `kid`,
/// signature, `typ`, `exp` (required), `nbf`, `iss`, `aud`, `sub`.
///
/// Cheap to clone (an `Arc` inside); share one per process. Keys are cached;
/// a token with an unknown `kid` triggers a refetch, at most once per
/// [`VerifierConfig::refetch_interval`], and concurrent verifications wait
/// for one fetch instead of each starting their own.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.cfg)
            .field("keys", &self.snapshot().keys.len())
            .finish()
    }
}

struct Inner {
    cfg: VerifierConfig,
    /// `None` for a verifier with a fixed key set.
    http: Option<reqwest::Client>,
    cache: RwLock<Arc<KeyCache>>,
    /// Serialises fetches and remembers when the last one was attempted.
    fetch: Arc<tokio::sync::Mutex<Option<Instant>>>,
    fetch_count: AtomicU64,
    verified: Option<VerifiedCache>,
}

/// token -> (key-set generation it was verified under, claims).
type VerifiedCache = moka::future::Cache<Box<str>, (u64, Arc<AccessClaims>)>;

/// Tokens longer than this are not remembered (they are not ours anyway).
const MAX_CACHED_TOKEN_LEN: usize = 8 * 1024;

#[derive(Default)]
struct KeyCache {
    keys: Vec<VerifyingKey>,
    /// When these keys were fetched; `None` if never (or fixed keys).
    fetched_at: Option<Instant>,
    /// Bumped on every replacement, so a waiter can tell another task
    /// already refreshed while it queued.
    generation: u64,
}

impl KeyCache {
    fn find(&self, kid: Option<&str>) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid() == Some(kid)),
            // A token without `kid` is accepted only when the choice of key
            // is unambiguous.
            None => match self.keys.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }
}

impl Verifier {
    /// A verifier that fetches keys from `cfg.jwks_url` (lazily, on first use).
    ///
    /// Fails with [`Error::Config`] naming the setting when `issuer`,
    /// `audience` or `algorithms` is empty or `jwks_url` is not an http(s) URL.
    pub fn new(cfg: VerifierConfig) -> Result<Self, Error> {
        cfg.validate(true)?;
        let http = reqwest::Client::builder()
            .timeout(cfg.http_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self::build(cfg, Some(http), Vec::new()))
    }

    /// A verifier with a fixed key set (no fetching) — for the issuer itself,
    /// which has its keys, and for tests. Unusable keys (other types,
    /// `use: enc`, mismatched `alg`) are skipped with a warning.
    ///
    /// An empty `issuer` or `audience` in `cfg` makes every token fail
    /// verification (rather than matching tokens without those claims).
    pub fn from_jwks(jwks: JwkSet, cfg: VerifierConfig) -> Self {
        if let Err(e) = cfg.validate(false) {
            tracing::warn!(error = %e, "verifier misconfigured; every token will be refused");
        }
        Self::build(cfg, None, usable_keys(&jwks.keys))
    }

    /// Like [`Verifier::from_jwks`] from already-parsed keys.
    pub fn from_keys(keys: Vec<VerifyingKey>, cfg: VerifierConfig) -> Self {
        Self::build(cfg, None, keys)
    }

    fn build(cfg: VerifierConfig, http: Option<reqwest::Client>, keys: Vec<VerifyingKey>) -> Self {
        let verified = (cfg.verified_cache_capacity > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(cfg.verified_cache_capacity)
                .time_to_live(
                    cfg.cache_ttl
                        .clamp(Duration::from_secs(1), Duration::from_secs(300)),
                )
                .build()
        });
        Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                cache: RwLock::new(Arc::new(KeyCache {
                    keys,
                    fetched_at: None,
                    generation: 0,
                })),
                fetch: Arc::new(tokio::sync::Mutex::new(None)),
                fetch_count: AtomicU64::new(0),
                verified,
            }),
        }
    }

    /// Replaces the key set (the issuer calls this after rotating keys).
    pub fn set_jwks(&self, jwks: &JwkSet) {
        self.replace(usable_keys(&jwks.keys), None);
    }

    /// The settings.
    pub fn config(&self) -> &VerifierConfig {
        &self.inner.cfg
    }

    /// How many JWKS fetches were attempted (for metrics and tests).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetch_count.load(Ordering::Relaxed)
    }

    /// Verifies `token` at the current time.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, Error> {
        self.verify_at(token, unix_now()).await
    }

    /// Verifies `token` as of `now` (Unix seconds).
    pub async fn verify_at(&self, token: &str, now: u64) -> Result<AccessClaims, Error> {
        let cfg = &self.inner.cfg;
        // Captured before the key lookup: if the key set changes meanwhile,
        // the entry below is tagged with the older generation and simply
        // misses later — never the other way round.
        let generation = self.snapshot().generation;
        if let Some(cache) = &self.inner.verified
            && let Some((tagged, claims)) = cache.get(token).await
            && tagged == generation
        {
            validate_claims(&claims, cfg, now)?;
            return Ok(AccessClaims::clone(&claims));
        }
        let claims = self.verify_uncached(token, now).await?;
        if let Some(cache) = &self.inner.verified
            && token.len() <= MAX_CACHED_TOKEN_LEN
        {
            cache
                .insert(token.into(), (generation, Arc::new(claims.clone())))
                .await;
        }
        Ok(claims)
    }

    async fn verify_uncached(&self, token: &str, now: u64) -> Result<AccessClaims, Error> {
        let cfg = &self.inner.cfg;
        let parts = split(token)?;
        let header = parse_header(parts.header)?;
        let alg = Algorithm::from_name(&header.alg)
            .filter(|a| cfg.algorithms.contains(a))
            .ok_or_else(|| Error::AlgorithmNotAllowed(header.alg.clone()))?;
        if header.crit.is_some() {
            return Err(Error::UnsupportedCritical);
        }
        if !cfg.accepted_types.is_empty() {
            let typ = header.typ.as_deref().unwrap_or("");
            if !cfg
                .accepted_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(typ))
            {
                return Err(Error::WrongType(typ.to_owned()));
            }
        }
        // All three segments must be canonical base64url before any key work: a
        // token has exactly one spelling.
        let signature = decode_segment(parts.signature)?;
        let payload = decode_segment(parts.payload)?;

        let key = self.key_for(header.kid.as_deref()).await?;
        if key.algorithm() != alg {
            return Err(Error::KeyAlgorithmMismatch {
                kid: header.kid.unwrap_or_default(),
                alg: header.alg,
            });
        }
        if !key.verify(parts.signing_input.as_bytes(), &signature) {
            return Err(Error::InvalidSignature);
        }

        let claims = parse_claims(&payload)?;
        validate_claims(&claims, cfg, now)?;
        Ok(claims)
    }

    fn snapshot(&self) -> Arc<KeyCache> {
        match self.inner.cache.read() {
            Ok(guard) => Arc::clone(&guard),
            // A writer panicked mid-assignment of an `Arc`; the value is still
            // a valid `Arc`, so keep serving it.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn replace(&self, keys: Vec<VerifyingKey>, fetched_at: Option<Instant>) {
        let mut guard = match self.inner.cache.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let generation = guard.generation + 1;
        *guard = Arc::new(KeyCache {
            keys,
            fetched_at,
            generation,
        });
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<VerifyingKey, Error> {
        let snapshot = self.snapshot();
        if self.inner.http.is_none() {
            return snapshot
                .find(kid)
                .cloned()
                .ok_or_else(|| Error::UnknownKey(kid.map(str::to_owned)));
        }

        let stale = snapshot
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.inner.cfg.cache_ttl);
        let found = snapshot.find(kid).cloned();
        match found {
            Some(key) if !stale => return Ok(key),
            Some(key) => {
                // Stale but usable: verify with it now and refresh in the
                // background, so requests never wait on the JWKS endpoint
                // (or its timeout, during an outage) for a key they have.
                self.refresh_in_background();
                return Ok(key);
            }
            None => {}
        }

        let outcome = self.refresh(snapshot.generation).await;
        let after = self.snapshot();
        match after.find(kid) {
            Some(key) => Ok(key.clone()),
            None => match outcome {
                Err(e) if after.keys.is_empty() => Err(e),
                // Never loaded (the last attempt failed and the next is
                // rate-limited): we cannot judge the token, it is not bad.
                _ if after.fetched_at.is_none() => {
                    Err(Error::JwksUnavailable("no keys loaded yet".into()))
                }
                _ => Err(Error::UnknownKey(kid.map(str::to_owned))),
            },
        }
    }

    /// Fetches the JWKS unless another task already did since `seen` or the
    /// last attempt is too recent. Callers wait for the result (they need a
    /// key they do not have).
    async fn refresh(&self, seen: u64) -> Result<(), Error> {
        if self.inner.http.is_none() {
            return Ok(());
        }
        let mut last_attempt = self.inner.fetch.lock().await;
        let current = self.snapshot();
        if current.generation != seen {
            return Ok(()); // someone refreshed while we waited
        }
        let min_gap = if current.keys.is_empty() {
            self.inner.cfg.refetch_interval.min(COLD_RETRY)
        } else {
            self.inner.cfg.refetch_interval
        };
        if !self.may_fetch(&mut last_attempt, min_gap) {
            tracing::debug!("JWKS refetch rate-limited");
            return Ok(());
        }
        self.fetch_and_replace().await
    }

    /// Starts a rate-limited refresh without waiting for it; does nothing if
    /// a fetch is already running.
    fn refresh_in_background(&self) {
        let Ok(mut last_attempt) = Arc::clone(&self.inner.fetch).try_lock_owned() else {
            return;
        };
        if !self.may_fetch(&mut last_attempt, self.inner.cfg.refetch_interval) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _held = last_attempt; // keeps other fetches out until done
            if let Err(e) = this.fetch_and_replace().await {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping cached keys");
            }
        });
    }

    /// Records an attempt if the last one is at least `min_gap` old.
    fn may_fetch(&self, last_attempt: &mut Option<Instant>, min_gap: Duration) -> bool {
        let now = Instant::now();
        if let Some(last) = *last_attempt
            && now.duration_since(last) < min_gap
        {
            return false;
        }
        *last_attempt = Some(now);
        self.inner.fetch_count.fetch_add(1, Ordering::Relaxed);
        true
    }

    async fn fetch_and_replace(&self) -> Result<(), Error> {
        let Some(http) = &self.inner.http else {
            return Ok(());
        };
        let keys = fetch_jwks(http, &self.inner.cfg.jwks_url).await?;
        tracing::debug!(keys = keys.len(), "JWKS fetched");
        self.replace(keys, Some(Instant::now()));
        Ok(())
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

fn parse_header(segment: &str) -> Result<Header, Error> {
    let bytes = decode_segment(segment)?;
    serde_json::from_slice(&bytes).map_err(|_| Error::Malformed("header is not a JWS header"))
}

fn validate_claims(claims: &AccessClaims, cfg: &VerifierConfig, now: u64) -> Result<(), Error> {
    let leeway = cfg.leeway.as_secs();
    // parse_claims guarantees exp > 0.
    if claims.exp.saturating_add(leeway) <= now {
        return Err(Error::Expired);
    }
    if let Some(nbf) = claims.nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(Error::NotYetValid);
    }
    if claims.iss.is_empty() {
        return Err(Error::MissingClaim("iss"));
    }
    if cfg.issuer.is_empty() || claims.iss != cfg.issuer {
        return Err(Error::WrongIssuer);
    }
    if claims.aud.is_empty() {
        return Err(Error::MissingClaim("aud"));
    }
    if cfg.audience.is_empty() || !claims.aud.contains(&cfg.audience) {
        return Err(Error::WrongAudience);
    }
    if cfg.require_sub && claims.sub.is_empty() {
        return Err(Error::MissingClaim("sub"));
    }
    Ok(())
}

fn usable_keys(jwks: &[Jwk]) -> Vec<VerifyingKey> {
    jwks.iter()
        .filter_map(|jwk| match VerifyingKey::from_jwk(jwk) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(kid = ?jwk.common.key_id, error = %e, "skipping JWKS key");
                None
            }
        })
        .collect()
}

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Vec<VerifyingKey>, Error> {
    let unavailable = |what: String| Error::JwksUnavailable(format!("{url}: {what}"));
    let mut response = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(unavailable(format!("status {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unavailable(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(unavailable("JWKS too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    // Parse key by key so one exotic key does not make the whole set unusable.
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet =
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("not a JWKS: {e}")))?;
    let jwks: Vec<Jwk> = raw
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    Ok(usable_keys(&jwks))
}

/// The wall clock in Unix seconds ([`sallyport_clock::now_secs`]).
pub fn unix_now() -> u64 {
    sallyport_clock::now_secs()
}
