//! Session cookie configuration with iron-session's defaults.

use std::sync::Arc;
use std::time::Duration;

use sallyport_iron::Passwords;

use crate::Error;
use crate::cookie::{MAX_CHUNKS, MAX_COOKIE_BYTES};

/// iron-session's default ttl: 14 days.
pub const DEFAULT_TTL: Duration = Duration::from_secs(14 * 24 * 60 * 60);
/// Cookie name when `Secure` is on (the default). The `__Host-` prefix makes browsers
/// refuse the cookie unless it is `Secure`, has `Path=/` and no `Domain`, so a
/// sibling subdomain cannot plant or overwrite it.
pub const DEFAULT_SECURE_NAME: &str = "__Host-sallyport";
/// Cookie name when the operator turned `Secure` off (plain-http localhost only).
pub const DEFAULT_INSECURE_NAME: &str = "sallyport";
/// iron-session's clock skew allowance, also subtracted from the cookie's Max-Age so
/// the browser drops the cookie before the seal inside it expires.
const SKEW_SECS: u64 = 60;
/// What iron-session writes as Max-Age for a ttl of 0 (never expires): 2^31 − 1.
const MAX_AGE_FOREVER: u64 = 2_147_483_647;
/// Largest ttl we accept: keeps `now + ttl` an exact JavaScript number (< 2^53 ms),
/// so iron-session reads the expiration back exactly.
const MAX_TTL_SECS: u64 = 9_000_000_000_000;

/// The `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level navigations (the default).
    #[default]
    Lax,
    /// Sent on every request; requires `Secure`.
    None,
}

impl SameSite {
    /// The attribute's value as a configuration file spells it: `strict`, `lax`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "strict",
            SameSite::Lax => "lax",
            SameSite::None => "none",
        }
    }
}

/// Parses `strict`, `lax` or `none`, in any letter case (as browsers read the attribute).
impl std::str::FromStr for SameSite {
    type Err = UnknownSameSite;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("strict") {
            Ok(SameSite::Strict)
        } else if s.eq_ignore_ascii_case("lax") {
            Ok(SameSite::Lax)
        } else if s.eq_ignore_ascii_case("none") {
            Ok(SameSite::None)
        } else {
            Err(UnknownSameSite(s.chars().take(64).collect()))
        }
    }
}

/// A `SameSite` value other than `strict`, `lax` or `none` (the text, cut to 64
/// characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected lax, strict or none, got {0:?}")]
pub struct UnknownSameSite(pub String);

/// Written as `strict`, `lax` or `none`, so a configuration can hold the enum itself
/// and an unknown value is refused when the configuration is read, never defaulted.
impl serde::Serialize for SameSite {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SameSite {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The (Chromium) `Priority` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// `Priority=Low`
    Low,
    /// `Priority=Medium`
    Medium,
    /// `Priority=High`
    High,
}

/// How the cookie's `Max-Age` is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaxAge {
    /// iron-session's rule: ttl − 60 when ttl > 60, ttl when ≤ 60, 2147483647 for ttl 0.
    FromTtl,
    /// Exactly this many seconds (the seal still expires after ttl).
    Explicit(u64),
    /// No Max-Age: a browser-session cookie; the seal then never expires (ttl 0),
    /// as iron-session does for `maxAge: undefined`.
    BrowserSession,
}

/// Session cookie settings. Defaults are iron-session 9's: ttl 14 days, Max-Age
/// ttl − 60, `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, no chunking.
///
/// The cookie name defaults to `__Host-sallyport`, or `sallyport` when `Secure` is
/// turned off. Set it to the article's `my-app-session` to share sessions with a
/// Next.js app using iron-session under the same password.
///
/// The builder never fails; [`SessionConfig::validate`] (called by
/// [`crate::CookieCodec::try_new`]) reports a setting browsers would reject, naming it.
#[derive(Clone)]
pub struct SessionConfig {
    passwords: Arc<Passwords>,
    cookie_name: Option<String>,
    ttl: Duration,
    max_age: MaxAge,
    http_only: bool,
    secure: bool,
    same_site: SameSite,
    path: String,
    domain: Option<String>,
    partitioned: bool,
    priority: Option<Priority>,
    chunking: bool,
    max_chunks: usize,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Passwords`' own Debug is redacting (ids only).
        f.debug_struct("SessionConfig")
            .field("passwords", &self.passwords)
            .field("cookie_name", &self.name())
            .field("ttl", &self.ttl)
            .field("max_age", &self.max_age)
            .field("http_only", &self.http_only)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("partitioned", &self.partitioned)
            .field("priority", &self.priority)
            .field("chunking", &self.chunking)
            .field("max_chunks", &self.max_chunks)
            .finish()
    }
}

impl SessionConfig {
    /// Settings with iron-session's defaults and the given sealing passwords.
    pub fn new(passwords: Passwords) -> Self {
        Self {
            passwords: Arc::new(passwords),
            cookie_name: None,
            ttl: DEFAULT_TTL,
            max_age: MaxAge::FromTtl,
            http_only: true,
            secure: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            partitioned: false,
            priority: None,
            chunking: false,
            max_chunks: MAX_CHUNKS,
        }
    }

    /// The cookie name (default `__Host-sallyport`, or `sallyport` without `Secure`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = Some(name.into());
        self
    }

    /// How long a seal stays valid (whole seconds; default 14 days). `Duration::ZERO`
    /// means the seal never expires, and Max-Age becomes 2147483647 (as iron-session).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Overrides Max-Age. `Some(d)`: exactly `d` (whole seconds), whatever the ttl.
    /// `None`: no Max-Age at all (the cookie dies with the browser session) and, as in
    /// iron-session, the seal itself then never expires.
    /// Without this call Max-Age follows the ttl (ttl − 60 s).
    pub fn max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = match max_age {
            Some(d) => MaxAge::Explicit(d.as_secs()),
            None => MaxAge::BrowserSession,
        };
        self
    }

    /// `Secure` (default on). Turn it off only for plain-http localhost development.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// `HttpOnly` (default on): keeps the cookie, and the tokens in it, away from
    /// browser JavaScript.
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// `SameSite` (default `Lax`).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// `Path` (default `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// `Domain` (default none: host-only cookie).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// `Partitioned` (CHIPS; default off).
    pub fn partitioned(mut self, partitioned: bool) -> Self {
        self.partitioned = partitioned;
        self
    }

    /// `Priority` (default none).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Split seals larger than one cookie into `<name>.0` … `<name>.3` (default off,
    /// as iron-session). Off, saving a session that does not fit fails with
    /// [`Error::TooLarge`] instead of sending a cookie the browser would drop.
    pub fn chunking(mut self, chunking: bool) -> Self {
        self.chunking = chunking;
        self
    }

    /// At most this many chunk cookies (1–4, default 4 as iron-session). Four chunks
    /// are ~16 KB of `Cookie` header on every request; nginx's default header buffer is
    /// 8 KB, so behind such a proxy use 2 and get a clear [`Error::TooManyChunks`] at
    /// save time instead of a 400/431 from the proxy later (PP-09). Reading always
    /// accepts up to 4.
    pub fn max_chunks(mut self, max_chunks: usize) -> Self {
        self.max_chunks = max_chunks;
        self
    }

    /// The sealing passwords.
    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// The effective cookie name.
    pub fn name(&self) -> &str {
        match &self.cookie_name {
            Some(name) => name,
            None if self.secure => DEFAULT_SECURE_NAME,
            None => DEFAULT_INSECURE_NAME,
        }
    }

    /// The ttl actually written into seals, in seconds: 0 for a browser-session
    /// cookie (iron-session forces it), else the configured ttl.
    pub fn seal_ttl_secs(&self) -> u64 {
        match self.max_age {
            MaxAge::BrowserSession => 0,
            _ => self.ttl.as_secs(),
        }
    }

    /// The Max-Age written on saves, `None` for a browser-session cookie.
    pub fn max_age_secs(&self) -> Option<u64> {
        match self.max_age {
            MaxAge::Explicit(secs) => Some(secs),
            MaxAge::BrowserSession => None,
            MaxAge::FromTtl => {
                let ttl = self.ttl.as_secs();
                Some(if ttl == 0 {
                    MAX_AGE_FOREVER
                } else if ttl > SKEW_SECS {
                    ttl - SKEW_SECS
                } else {
                    ttl
                })
            }
        }
    }

    /// Whether chunking is on.
    pub fn is_chunking(&self) -> bool {
        self.chunking
    }

    /// The chunk limit for writes.
    pub fn chunk_limit(&self) -> usize {
        self.max_chunks
    }

    /// Whether `Secure` is on.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Checks that browsers would accept the cookie these settings produce.
    /// The error names the setting to change.
    pub fn validate(&self) -> Result<(), Error> {
        let name = self.name();
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return Err(config_err(
                "cookie_name",
                format!(
                    "{name:?} is not a valid cookie name (visible ASCII except ';', '=' and spaces)"
                ),
            ));
        }
        if !self.path.starts_with('/') || !self.path.bytes().all(is_path_byte) {
            return Err(config_err(
                "path",
                format!(
                    "{:?} must start with '/' and contain no ';', '<' or control characters",
                    self.path
                ),
            ));
        }
        if let Some(domain) = &self.domain
            && !is_valid_domain(domain)
        {
            return Err(config_err(
                "domain",
                format!("{domain:?} is not a valid cookie domain"),
            ));
        }
        let host_prefix = name.len() >= 7 && name[..7].eq_ignore_ascii_case("__Host-");
        let secure_prefix = name.len() >= 9 && name[..9].eq_ignore_ascii_case("__Secure-");
        if (host_prefix || secure_prefix) && !self.secure {
            return Err(config_err(
                "secure",
                format!(
                    "the cookie name {name:?} has a __Host-/__Secure- prefix, which browsers only accept with Secure on; use another cookie_name for plain http"
                ),
            ));
        }
        if host_prefix && self.path != "/" {
            return Err(config_err(
                "path",
                format!(
                    "the cookie name {name:?} has the __Host- prefix, which requires Path=/ (got {:?}); set another cookie_name to use a path",
                    self.path
                ),
            ));
        }
        if host_prefix && self.domain.is_some() {
            return Err(config_err(
                "domain",
                format!(
                    "the cookie name {name:?} has the __Host- prefix, which forbids a Domain attribute; set another cookie_name to share the cookie across subdomains"
                ),
            ));
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(config_err(
                "same_site",
                "SameSite=None requires Secure; browsers reject the cookie otherwise".to_owned(),
            ));
        }
        if self.partitioned && !self.secure {
            return Err(config_err(
                "partitioned",
                "Partitioned requires Secure".to_owned(),
            ));
        }
        if self.ttl.as_secs() > MAX_TTL_SECS {
            return Err(config_err(
                "ttl",
                format!(
                    "{} s is too long (at most {MAX_TTL_SECS} s)",
                    self.ttl.as_secs()
                ),
            ));
        }
        if let MaxAge::Explicit(secs) = self.max_age
            && secs > MAX_TTL_SECS
        {
            return Err(config_err(
                "max_age",
                format!("{secs} s is too long (at most {MAX_TTL_SECS} s)"),
            ));
        }
        if !(1..=MAX_CHUNKS).contains(&self.max_chunks) {
            return Err(config_err(
                "max_chunks",
                format!("{} is out of range (1 to {MAX_CHUNKS})", self.max_chunks),
            ));
        }
        let overhead = self.chunk_overhead();
        if overhead >= MAX_COOKIE_BYTES {
            return Err(config_err(
                "cookie_name",
                format!(
                    "the cookie name and attributes alone take {overhead} bytes of the {MAX_COOKIE_BYTES}-byte cookie limit; use a shorter name"
                ),
            ));
        }
        Ok(())
    }

    /// `; Max-Age=…` (if any) and the remaining attributes, in cookie@2's order:
    /// `Max-Age, Domain, Path, HttpOnly, Secure, Partitioned, Priority, SameSite`.
    pub(crate) fn attributes(&self, max_age: Option<u64>) -> String {
        let mut out = String::with_capacity(80);
        if let Some(secs) = max_age {
            out.push_str("; Max-Age=");
            out.push_str(&secs.to_string());
        }
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if !self.path.is_empty() {
            out.push_str("; Path=");
            out.push_str(&self.path);
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.partitioned {
            out.push_str("; Partitioned");
        }
        match self.priority {
            Some(Priority::Low) => out.push_str("; Priority=Low"),
            Some(Priority::Medium) => out.push_str("; Priority=Medium"),
            Some(Priority::High) => out.push_str("; Priority=High"),
            None => {}
        }
        out.push_str(match self.same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        });
        out
    }

    /// Bytes of `Set-Cookie: <name>.0=` with an empty value and the save attributes.
    pub(crate) fn chunk_overhead(&self) -> usize {
        self.name().len() + ".0=".len() + self.attributes(self.max_age_secs()).len()
    }
}

fn config_err(setting: &'static str, message: String) -> Error {
    Error::Config { setting, message }
}

/// cookie@2's name alphabet: `[\x21-\x3A\x3C\x3E-\x7E]`.
fn is_name_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x3A | 0x3C | 0x3E..=0x7E)
}

/// cookie@2's path alphabet: `[\x20-\x3A\x3D-\x7E]`.
fn is_path_byte(b: u8) -> bool {
    matches!(b, 0x20..=0x3A | 0x3D..=0x7E)
}

/// cookie@2's domain rule: dot-separated LDH labels of 1–63 characters that do not
/// start or end with '-', with one optional leading dot.
fn is_valid_domain(domain: &str) -> bool {
    let domain = domain.strip_prefix('.').unwrap_or(domain);
    !domain.is_empty()
        && domain.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_site_reads_the_three_values_in_any_case_and_refuses_others() {
        for (text, want) in [
            ("lax", SameSite::Lax),
            ("Strict", SameSite::Strict),
            ("NONE", SameSite::None),
        ] {
            assert_eq!(text.parse::<SameSite>(), Ok(want));
            let json = format!("\"{text}\"");
            assert_eq!(serde_json::from_str::<SameSite>(&json).unwrap(), want);
            assert_eq!(
                serde_json::to_string(&want).unwrap(),
                format!("\"{}\"", want.as_str())
            );
        }
        for bad in ["", "lax ", "strictly", "no"] {
            assert!(bad.parse::<SameSite>().is_err(), "{bad:?}");
            let err = serde_json::from_str::<SameSite>(&format!("\"{bad}\"")).unwrap_err();
            assert!(
                err.to_string().contains("expected lax, strict or none"),
                "{err}"
            );
        }
    }
}
