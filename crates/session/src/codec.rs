//! The low-level cookie layer: read a sealed session out of request headers, turn a
//! value into `Set-Cookie` headers, clear the cookie. No extractor, no middleware:
//! the gateway uses this directly.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cookie::{Jar, MAX_CHUNKS, MAX_COOKIE_BYTES, is_raw_cookie_value};
use crate::{Error, SessionConfig};

/// A session read from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded<T> {
    /// The session data.
    pub value: T,
    /// The id of the password the cookie was sealed with.
    pub password_id: String,
    /// Sealed with an older password than the current one: write it again (with the
    /// newest password) at the next opportunity, so the old password can be retired
    /// without logging anyone out.
    pub needs_reseal: bool,
    /// When the seal expires (ms since the epoch; `None`: never). The browser drops
    /// the cookie about 60 s earlier (Max-Age = ttl − 60).
    pub expires_at_ms: Option<u64>,
}

/// Reads, writes and clears the session cookie, byte-compatible with iron-session 9.
///
/// Cheap to clone (an `Arc` inside).
#[derive(Clone, Debug)]
pub struct CookieCodec {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SessionConfig,
    /// `SessionConfig::validate`'s verdict, kept so the infallible `new` can still
    /// refuse to write a cookie browsers would reject.
    invalid: Option<(&'static str, String)>,
    /// `; Max-Age=…; Path=/; …` for writes.
    save_attrs: String,
    /// The same attributes with `Max-Age=0`, for expiring cookies.
    clear_attrs: String,
    /// `<name>.0` … `<name>.3`, iron-session's chunk cookie names, made once: a request
    /// without the whole cookie looks for the first chunk, and formatting its name
    /// there cost ≈ 800 instructions on every request without a session.
    chunk_names: [String; MAX_CHUNKS],
}

impl CookieCodec {
    /// A codec for these settings. If the settings are invalid (see
    /// [`SessionConfig::validate`]) every `encode`/`clear` fails with the same
    /// [`Error::Config`]; prefer [`CookieCodec::try_new`] at start-up so
    /// misconfiguration stops the process instead.
    pub fn new(config: SessionConfig) -> Self {
        let invalid = match config.validate() {
            Ok(()) => None,
            Err(Error::Config { setting, message }) => Some((setting, message)),
            Err(other) => Some(("session", other.to_string())),
        };
        if let Some((setting, message)) = &invalid {
            tracing::error!(
                setting,
                %message,
                "session cookie settings are invalid; sessions cannot be saved"
            );
        }
        let save_attrs = config.attributes(config.max_age_secs());
        let clear_attrs = config.attributes(Some(0));
        let chunk_names = std::array::from_fn(|index| format!("{}.{index}", config.name()));
        Self {
            inner: Arc::new(Inner {
                config,
                invalid,
                save_attrs,
                clear_attrs,
                chunk_names,
            }),
        }
    }

    /// A codec for these settings, or the error naming the setting browsers would reject.
    pub fn try_new(config: SessionConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self::new(config))
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// Whether `name` — a cookie name as it appears in a request's `Cookie` header,
    /// raw bytes, already trimmed — is this session's cookie or one of its chunks
    /// (`<name>.<digits>`; [`CookieCodec::read_sealed`] reads `.0` to `.3`, and any
    /// other index is counted too so that nothing resembling a chunk survives).
    ///
    /// For proxies that must remove the session from a request before passing it on:
    /// the codec knows the chunk naming, so callers need not re-derive it. Works on
    /// bytes because a `Cookie` header may hold non-UTF-8 bytes next to the session.
    pub fn is_session_cookie_name(&self, name: &[u8]) -> bool {
        let own = self.inner.config.name().as_bytes();
        match name.strip_prefix(own) {
            Some([]) => true,
            Some([b'.', digits @ ..]) => {
                !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
            }
            _ => false,
        }
    }

    /// The session in the request, or `None` when it is missing, tampered with,
    /// expired, sealed with an unknown password or not of type `T` (logged at debug).
    pub fn read<T: DeserializeOwned>(&self, headers: &HeaderMap, now_ms: u64) -> Option<Loaded<T>> {
        match self.try_read(headers, now_ms) {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::debug!(reason = error.reason().unwrap_or("invalid"), %error, "ignoring session cookie");
                None
            }
        }
    }

    /// Like [`CookieCodec::read`] but says why a cookie was ignored: `Ok(None)` when
    /// there is no session cookie at all, `Err` when there is one that cannot be used
    /// (for metrics: a burst of `unknown-password` means a broken rotation).
    pub fn try_read<T: DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        now_ms: u64,
    ) -> Result<Option<Loaded<T>>, Error> {
        let jar = Jar::from_headers(headers);
        let Some(sealed) = self.sealed_from(&jar) else {
            return Ok(None);
        };
        self.open(&sealed, now_ms).map(Some)
    }

    /// Unseals a raw seal as [`CookieCodec::read_sealed`] returns it, for callers that
    /// have already taken it from the request (e.g. to look it up in a cache) and should
    /// not parse the `Cookie` header twice.
    pub fn open<T: DeserializeOwned>(&self, sealed: &str, now_ms: u64) -> Result<Loaded<T>, Error> {
        let passwords = self.inner.config.passwords();
        let unsealed = sallyport_iron::unseal(sealed, passwords, now_ms).map_err(Error::Unseal)?;
        let value = parse_session_json(&unsealed.json).map_err(Error::Shape)?;
        let needs_reseal = unsealed.password_id != passwords.current_id();
        Ok(Loaded {
            value,
            password_id: unsealed.password_id,
            needs_reseal,
            expires_at_ms: unsealed.expires_at_ms,
        })
    }

    /// The raw seal in the request: the whole cookie if present and non-empty, else
    /// chunks `.0`, `.1`, … concatenated (at most four, stopping at the first gap),
    /// exactly as iron-session reads it.
    /// Borrowed from `headers` when it can be (one whole cookie in one `Cookie` field,
    /// not percent-encoded): no copy of the seal on the request path.
    pub fn read_sealed<'h>(&self, headers: &'h HeaderMap) -> Option<Cow<'h, str>> {
        self.sealed_from(&Jar::from_headers(headers))
    }

    fn sealed_from<'h>(&self, jar: &Jar<'h>) -> Option<Cow<'h, str>> {
        let name = self.inner.config.name();
        if let Some(whole) = jar.get(name)
            && !whole.is_empty()
        {
            return Some(whole);
        }
        let mut sealed = String::new();
        for index in 0..MAX_CHUNKS {
            match jar.get(&self.inner.chunk_names[index]) {
                Some(part) if !part.is_empty() => sealed.push_str(&part),
                _ => break,
            }
        }
        (!sealed.is_empty()).then_some(Cow::Owned(sealed))
    }

    /// Seals `value` with the newest password and returns the `Set-Cookie` values that
    /// store it, clearing stale chunks / the unchunked cookie (see
    /// [`CookieCodec::encode_sealed`]).
    pub fn encode<T: Serialize>(
        &self,
        value: &T,
        request_headers: &HeaderMap,
        now_ms: u64,
    ) -> Result<Vec<HeaderValue>, Error> {
        self.check_valid()?;
        let config = &self.inner.config;
        let sealed =
            sallyport_iron::seal_value(value, config.passwords(), config.seal_ttl_secs(), now_ms)?;
        self.encode_sealed(&sealed, request_headers)
    }

    /// The `Set-Cookie` values that store an already sealed string, exactly as
    /// iron-session's `save()` writes them:
    ///
    /// * fits in 4096 bytes (name, value and attributes): one cookie, and every chunk
    ///   cookie the request carried is expired;
    /// * too big, chunking off: [`Error::TooLarge`] with the size, nothing written;
    /// * too big, chunking on: `<name>.0` … (at most 4, else [`Error::TooManyChunks`]),
    ///   each at most 4096 bytes. Then the unchunked cookie and every unused chunk
    ///   index up to 3 are expired **whether or not the request carried them**: a
    ///   parallel response may have written chunks this request never saw (PP-08).
    ///   iron-session only expires those present; our extra `Max-Age=0` headers come
    ///   after its exact sequence and are no-ops in a browser.
    pub fn encode_sealed(
        &self,
        sealed: &str,
        request_headers: &HeaderMap,
    ) -> Result<Vec<HeaderValue>, Error> {
        self.check_valid()?;
        if sealed.is_empty() || !is_raw_cookie_value(sealed) {
            return Err(Error::InvalidSealedValue);
        }
        let inner = &self.inner;
        let name = inner.config.name();
        let jar = Jar::from_headers(request_headers);
        let whole = format!("{name}={sealed}{}", inner.save_attrs);
        if whole.len() <= MAX_COOKIE_BYTES {
            let mut out = vec![header(whole)?];
            for index in 0..MAX_CHUNKS {
                let chunk = &inner.chunk_names[index];
                if jar.has(chunk) {
                    out.push(self.expire(chunk)?);
                }
            }
            return Ok(out);
        }
        if !inner.config.is_chunking() {
            return Err(Error::TooLarge {
                bytes: whole.len(),
                max: MAX_COOKIE_BYTES,
                already_chunked: jar.has(&inner.chunk_names[0]),
            });
        }
        // `validate` guarantees the overhead is below the limit, so budget >= 1.
        let budget = MAX_COOKIE_BYTES
            .saturating_sub(inner.config.chunk_overhead())
            .max(1);
        // The seal is ASCII (checked above), so byte chunks are character chunks.
        let chunks: Vec<&[u8]> = sealed.as_bytes().chunks(budget).collect();
        let limit = inner.config.chunk_limit();
        if chunks.len() > limit {
            return Err(Error::TooManyChunks {
                needed: chunks.len(),
                max: limit,
            });
        }
        let mut out = Vec::with_capacity(MAX_CHUNKS + 1);
        for (index, chunk) in chunks.iter().enumerate() {
            let value = String::from_utf8_lossy(chunk);
            out.push(header(format!(
                "{}={value}{}",
                inner.chunk_names[index], inner.save_attrs
            ))?);
        }
        out.push(self.expire(name)?);
        for index in chunks.len()..MAX_CHUNKS {
            out.push(self.expire(&inner.chunk_names[index])?);
        }
        Ok(out)
    }

    /// `Set-Cookie` values that delete the session, as iron-session's `destroy()`:
    /// the cookie with an empty value and `Max-Age=0` (same Path/Domain, otherwise the
    /// browser would treat it as another cookie), then every chunk the request
    /// carried. With chunking on, all four chunk slots are expired regardless, so a
    /// chunk written by a parallel response cannot resurrect the session (PP-07/08).
    pub fn clear(&self, request_headers: &HeaderMap) -> Vec<HeaderValue> {
        let name = self.inner.config.name();
        let jar = Jar::from_headers(request_headers);
        let all = self.inner.config.is_chunking();
        let mut out = Vec::with_capacity(MAX_CHUNKS + 1);
        let names = std::iter::once(name).chain(
            self.inner
                .chunk_names
                .iter()
                .map(String::as_str)
                .filter(|chunk| all || jar.has(chunk)),
        );
        for cookie in names {
            match self.expire(cookie) {
                Ok(value) => out.push(value),
                Err(error) => tracing::error!(%error, "cannot expire session cookie"),
            }
        }
        out
    }

    fn expire(&self, name: &str) -> Result<HeaderValue, Error> {
        header(format!("{name}={}", self.inner.clear_attrs))
    }

    fn check_valid(&self) -> Result<(), Error> {
        match &self.inner.invalid {
            None => Ok(()),
            Some((setting, message)) => Err(Error::Config {
                setting,
                message: message.clone(),
            }),
        }
    }
}

fn header(value: String) -> Result<HeaderValue, Error> {
    // Name, value and attributes are all validated visible ASCII, so this cannot fail;
    // map the impossible case to an error rather than panicking.
    HeaderValue::try_from(value).map_err(|_| Error::InvalidSealedValue)
}

/// Parses unsealed JSON into the session type. iron-session turns a sealed `null`
/// into `{}`, so do we.
pub(crate) fn parse_session_json<T: DeserializeOwned>(json: &str) -> Result<T, serde_json::Error> {
    if json.trim_matches([' ', '\t', '\n', '\r']) == "null" {
        serde_json::from_str("{}")
    } else {
        serde_json::from_str(json)
    }
}
