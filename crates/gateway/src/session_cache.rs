//! A bounded cache of unsealed sessions, keyed by a keyed 128-bit digest of the exact
//! sealed cookie.
//!
//! Why: unsealing (HMAC over the seal, two PBKDF2 key derivations, AES-CBC, base64) and
//! parsing the JSON cost ≈ 3.7 µs of the ≈ 23 µs the gateway spends per proxied request,
//! and a browser sends the same seal on every request until it is renewed.
//!
//! What is cached is only the *decrypt + parse* of a seal this process already opened
//! successfully: the key is a digest of the full sealed text, so a tampered, truncated or
//! re-sealed cookie is a different key, misses, and goes through the full unseal (and
//! fails or succeeds exactly as before). Everything that depends on the request or on
//! time still runs on every request in the callers: the seal's own expiry (checked here
//! on every hit, with the same 60 s skew rule as the unseal), the usability check, the
//! logout records (local and shared), renewal decisions and CSRF.
//!
//! Failures are never cached. Most of them are cheap anyway (malformed, expired and
//! unknown-password seals fail before any cryptography; a bad MAC fails before the
//! decryption), and caching them would let anyone fill the cache with junk keys and
//! evict real sessions.
//!
//! The digest is XXH3-128 under a random seed drawn when the cache is made, not a
//! cryptographic hash: SHA-256 of the ≈ 1 KB seal was 3 % of the gateway's CPU per
//! request, XXH3 is about twenty times cheaper. That is safe here because an entry is
//! only ever made from a seal that passed the full unseal, i.e. one this server sealed
//! (random salts and IV, its own MAC), which no client chooses. To be served someone
//! else's session, a cookie would have to hit the digest of a seal it does not know
//! under a seed it does not know: a 128-bit guess per request, against every entry at
//! once still ≈ 2^111 guesses. Colliding with its *own* seal (the only seal a client
//! knows) gets a client nothing but its own session. 16 bytes per entry instead of
//! ≈ 1 KB, and lookups compare digests, not secret cookie bytes. The passwords are fixed
//! for the cache's lifetime (`needs_reseal` is cached with the entry); a reload that
//! changes the passwords starts a new, empty cache (see `reload.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use sallyport_iron::SKEW_MS;
use sallyport_session::{CookieCodec, Loaded};

use crate::state::SessionData;

type Key = u128;

/// A session read from a request's cookie, as the request path uses it: shared with the
/// cache, so a hit costs reference counts, not a copy of the tokens (the data is copied
/// only when a renewal changes it).
#[derive(Clone)]
pub(crate) struct Unsealed {
    pub(crate) value: Arc<SessionData>,
    /// Sealed with an older password: write it again (see [`Loaded::needs_reseal`]).
    pub(crate) needs_reseal: bool,
    /// When the seal expires (ms since the epoch; `None`: never).
    pub(crate) expires_at_ms: Option<u64>,
}

/// One unsealed session and how long moka may keep it.
struct Entry {
    loaded: Unsealed,
    /// Time until the seal expires (plus skew) as of insertion; only for eviction —
    /// correctness comes from the explicit check against `now_ms` on every hit.
    keep_for: Option<Duration>,
}

/// Evicts each entry no later than its seal's own expiry.
struct SealExpiry;

impl moka::Expiry<Key, Arc<Entry>> for SealExpiry {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        value.keep_for
    }
}

/// See the module documentation. `entries == 0` disables caching.
///
/// A segmented cache (one segment per core, an entry's segment chosen by its key): the
/// event loops (`--threads`) then mostly touch different segments, and do not all write
/// one cache's shared internals (its read log, frequency sketch and entry timestamps are
/// written on every hit). The segments together hold at most `entries`.
pub(crate) struct SessionCache {
    cache: Option<moka::sync::SegmentedCache<Key, Arc<Entry>>>,
    /// The digest's seed, secret to this process.
    seed: u64,
}

impl SessionCache {
    /// A cache of at most `entries` sessions (0: no cache, every request unseals).
    pub(crate) fn new(entries: u64) -> Self {
        let segments = std::thread::available_parallelism().map_or(1, usize::from);
        let cache = (entries > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(entries)
                .expire_after(SealExpiry)
                .segments(segments)
                .build()
        });
        let mut seed = [0; 8];
        // Without the OS's randomness (it does not fail on Linux) the seed is a fixed
        // one: the digest's safety rests on the seals being the server's (see above),
        // the seed only adds to it.
        let _ = getrandom::fill(&mut seed);
        Self {
            cache,
            seed: u64::from_ne_bytes(seed),
        }
    }

    /// The key of a sealed cookie.
    fn key(&self, sealed: &str) -> Key {
        xxhash_rust::xxh3::xxh3_128_with_seed(sealed.as_bytes(), self.seed)
    }

    /// The session in the request's cookie, as [`CookieCodec::read`] would return it:
    /// `None` when there is no cookie or it does not unseal (tampered, expired, unknown
    /// password, wrong shape).
    pub(crate) fn read(
        &self,
        codec: &CookieCodec,
        headers: &HeaderMap,
        now_ms: u64,
    ) -> Option<Unsealed> {
        let Some(cache) = &self.cache else {
            return codec.read(headers, now_ms).map(shared);
        };
        let sealed = codec.read_sealed(headers)?;
        let key = self.key(&sealed);
        if let Some(hit) = cache.get(&key) {
            if seal_expired(hit.loaded.expires_at_ms, now_ms) {
                cache.invalidate(&key);
                return None;
            }
            // A reference count, not a copy of the tokens: the session is shared.
            return Some(hit.loaded.clone());
        }
        // Miss: the full unseal of the seal already taken from the headers.
        let loaded = match codec.open::<SessionData>(&sealed, now_ms) {
            Ok(loaded) => shared(loaded),
            Err(error) => {
                tracing::debug!(%error, "ignoring session cookie");
                return None;
            }
        };
        let keep_for = loaded
            .expires_at_ms
            .map(|exp| Duration::from_millis(exp.saturating_add(SKEW_MS).saturating_sub(now_ms)));
        cache.insert(
            key,
            Arc::new(Entry {
                loaded: loaded.clone(),
                keep_for,
            }),
        );
        Some(loaded)
    }

    /// Entries currently held (tests; moka's count is eventually consistent).
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }
}

fn shared(l: Loaded<SessionData>) -> Unsealed {
    Unsealed {
        value: Arc::new(l.value),
        needs_reseal: l.needs_reseal,
        expires_at_ms: l.expires_at_ms,
    }
}

/// The unseal's own expiry rule, re-checked on a cache hit.
fn seal_expired(expires_at_ms: Option<u64>, now_ms: u64) -> bool {
    expires_at_ms.is_some_and(|exp| sallyport_iron::is_expired(exp, now_ms))
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, header};
    use sallyport_proto::AuthErrorCode;

    use super::*;
    use crate::auth::Authn;
    use crate::{Config, Gateway};

    const NOW: u64 = 1_800_000_000_000;
    const TTL_SECS: u64 = 3600;

    async fn gateway(cache_entries: u64) -> Gateway {
        let mut config = Config::default();
        config.session.secret = Some("a-test-secret-of-at-least-32-characters".into());
        config.session.secure = false;
        config.session.ttl_secs = TTL_SECS;
        config.session.cache_entries = cache_entries;
        config.store.persist_logouts = false;
        config.backend.login_url = Some("http://127.0.0.1:9/api/login".into());
        config.backend.refresh_url = Some("http://127.0.0.1:9/api/refresh-token".into());
        let settings = config.validate().expect("settings");
        Gateway::new(settings).await.expect("gateway")
    }

    fn session(token: &str) -> SessionData {
        SessionData {
            is_logged_in: true,
            access_token: Some(token.into()),
            refresh_token: Some("r".repeat(43)),
            access_token_expires_at: Some(NOW / 1000 + 600),
            last_renewed_at: Some(NOW / 1000),
            sid: Some(format!("sid-{token}")),
            ..SessionData::default()
        }
    }

    /// The `name=seal` pair the gateway wrote for `data`.
    fn cookie_pair(g: &Gateway, data: &SessionData) -> String {
        let set = g.seal_session(data, NOW).expect("seal");
        assert_eq!(set.len(), 1, "one unchunked cookie");
        let first = set[0].to_str().expect("ascii");
        first.split(';').next().expect("pair").to_owned()
    }

    fn headers(pair: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {pair}")).expect("header"),
        );
        h
    }

    /// `pair` with one base64url character of the ciphertext changed.
    fn tampered(pair: &str) -> String {
        let (name, seal) = pair.split_once('=').expect("name=value");
        let fields: Vec<&str> = seal.split('*').collect();
        assert_eq!(fields.len(), 8, "an iron seal");
        let mut ct: Vec<u8> = fields[4].bytes().collect();
        let mid = ct.len() / 2;
        ct[mid] = if ct[mid] == b'A' { b'B' } else { b'A' };
        let mut out = fields.clone();
        let ct = String::from_utf8(ct).expect("ascii");
        out[4] = &ct;
        format!("{name}={}", out.join("*"))
    }

    #[tokio::test]
    async fn a_tampered_copy_of_a_cached_cookie_is_rejected() {
        let g = gateway(100).await;
        let pair = cookie_pair(&g, &session("tok-a"));
        let good = headers(&pair);
        assert!(g.current().read_session(&good, NOW).is_some());
        assert_eq!(g.current().sessions.len(), 1, "the good cookie is cached");

        let bad = headers(&tampered(&pair));
        assert!(g.current().read_session(&bad, NOW).is_none());
        assert!(matches!(
            g.current().authenticate(&bad, NOW, None).await,
            Authn::Refused(crate::error::RequestError::NoSession { .. })
        ));
        assert_eq!(g.current().sessions.len(), 1, "failures are not cached");
        // The genuine cookie is unaffected.
        let hit = g
            .current()
            .read_session(&good, NOW)
            .expect("cached session");
        assert_eq!(hit.value.access_token.as_deref(), Some("tok-a"));
    }

    #[tokio::test]
    async fn a_logged_out_cookie_that_is_cached_is_refused() {
        let g = gateway(100).await;
        let data = session("tok-b");
        let h = headers(&cookie_pair(&g, &data));
        assert!(matches!(
            g.current().authenticate(&h, NOW, None).await,
            Authn::Session { .. }
        ));
        assert_eq!(g.current().sessions.len(), 1);

        g.current().logged_out.remember(&data, NOW).await;
        assert_eq!(
            g.current().sessions.len(),
            1,
            "still cached: the refusal is the logout check"
        );
        assert!(g.current().read_session(&h, NOW + 1).is_none());
        assert!(matches!(
            g.current().authenticate(&h, NOW + 1, None).await,
            Authn::Refused(crate::error::RequestError::NoSession {
                code: AuthErrorCode::SessionExpired,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn expiry_still_applies_to_a_cached_entry() {
        let g = gateway(100).await;
        let h = headers(&cookie_pair(&g, &session("tok-c")));
        assert!(g.current().read_session(&h, NOW).is_some());
        assert_eq!(g.current().sessions.len(), 1);

        let expires = NOW + TTL_SECS * 1000;
        // Within the 60 s skew the seal is still good, served from the cache.
        assert!(
            g.current()
                .read_session(&h, expires + SKEW_MS - 1)
                .is_some()
        );
        assert_eq!(g.current().sessions.len(), 1);
        // From expiration + skew on it is refused although it is cached, and dropped.
        assert!(g.current().read_session(&h, expires + SKEW_MS).is_none());
        assert_eq!(g.current().sessions.len(), 0);
        assert!(g.current().read_session(&h, expires + SKEW_MS).is_none());
    }

    #[tokio::test]
    async fn a_resealed_cookie_is_a_new_entry() {
        let g = gateway(100).await;
        let old = headers(&cookie_pair(&g, &session("tok-old")));
        let new = headers(&cookie_pair(&g, &session("tok-new")));
        let a = g.current().read_session(&old, NOW).expect("old");
        let b = g.current().read_session(&new, NOW).expect("new");
        assert_eq!(a.value.access_token.as_deref(), Some("tok-old"));
        assert_eq!(b.value.access_token.as_deref(), Some("tok-new"));
        assert_eq!(g.current().sessions.len(), 2);
    }

    #[tokio::test]
    async fn the_segments_together_hold_at_most_cache_entries() {
        let g = gateway(4).await;
        for i in 0..40 {
            let h = headers(&cookie_pair(&g, &session(&format!("tok-{i}"))));
            assert!(g.current().read_session(&h, NOW).is_some());
        }
        let held = g.current().sessions.len();
        assert!(held <= 4, "{held} sessions cached, at most 4 configured");
    }

    #[tokio::test]
    async fn zero_entries_disables_the_cache() {
        let g = gateway(0).await;
        let pair = cookie_pair(&g, &session("tok-d"));
        assert!(g.current().read_session(&headers(&pair), NOW).is_some());
        assert!(
            g.current()
                .read_session(&headers(&tampered(&pair)), NOW)
                .is_none()
        );
        assert_eq!(g.current().sessions.len(), 0);
    }

    #[test]
    fn expiry_rule_matches_the_unseal() {
        assert!(!seal_expired(None, u64::MAX));
        assert!(!seal_expired(Some(1_000_000), 1_000_000 + SKEW_MS - 1));
        assert!(seal_expired(Some(1_000_000), 1_000_000 + SKEW_MS));
    }
}
