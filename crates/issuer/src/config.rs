//! Issuer configuration: built-in defaults, then a TOML file, then `SALLYPORT_ISSUER_*`
//! environment variables (nested keys with `__`, e.g.
//! `SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_BURST=5`). [`Config::validate`] turns the raw
//! values into [`Settings`] and refuses bad ones with an error naming the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::client_auth::ClientRegistry;
use crate::error::{Error, Result};

/// Environment prefix for issuer settings.
pub const ENV_PREFIX: &str = "SALLYPORT_ISSUER_";

/// Raw issuer configuration, as written in `config/issuer.example.toml`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://path/to/file.db` (created on first start, WAL) or `postgres://…`.
    pub database_url: String,
    /// Maximum pooled database connections; `None` = 1 for SQLite (one writer is
    /// fastest with `BEGIN IMMEDIATE`), 10 for PostgreSQL.
    pub database_max_connections: Option<u32>,
    /// Address `sallyport issuer` listens on.
    pub listen: String,
    /// The `iss` claim and the base URL of the discovery document.
    pub issuer: String,
    /// The `aud` claim of access tokens.
    pub audience: String,
    /// Signing algorithm for new keys: `ES256` (default) or `EdDSA`.
    pub algorithm: String,
    /// Access-token lifetime in seconds (default 900 = 15 minutes).
    pub access_token_ttl_secs: u64,
    /// A refresh token presented again within this many seconds of its first use gets
    /// the same session's current tokens instead of triggering reuse detection (default 10).
    pub refresh_reuse_interval_secs: u64,
    /// A session not refreshed for this long expires (default 30 days).
    pub refresh_idle_ttl_secs: u64,
    /// Absolute session lifetime from login, refreshes or not (default 90 days).
    pub session_max_lifetime_secs: u64,
    /// How often a replica re-reads signing keys from the database (default 30 s), so a
    /// `sallyport keys rotate` run elsewhere is picked up.
    pub key_cache_secs: u64,
    /// Request bodies above this many bytes get 413 (default 16 KiB).
    pub max_body_bytes: usize,
    /// Accept access tokens on `/api/me` up to this many seconds past `exp` (and
    /// before `nbf`). Default 0: the issuer signs with its own clock, so there is no
    /// skew to absorb, and a token past its expiry is refused.
    pub access_token_leeway_secs: u64,
    /// Client addresses behind proxies (`[http]`).
    pub http: HttpConfig,
    /// Password hashing parameters.
    pub argon2: Argon2Config,
    /// Login rate limits (failed attempts).
    pub rate_limit: RateLimitConfig,
    /// A connection must send its complete request head (request line and headers)
    /// within this many seconds of connecting or of its previous response, or it is
    /// closed: a client trickling headers (slowloris) cannot hold a connection (default 10).
    /// `server.header_read_timeout_ms`, when set, takes precedence.
    pub header_read_timeout_secs: u64,
    /// A request not answered within this many seconds (e.g. a body that never
    /// completes) gets 408 `timeout` (default 30).
    pub request_timeout_secs: u64,
    /// Accept `/oauth/token` and `/oauth/revoke` requests without client
    /// authentication: no credentials at all, or a `client_id` without a secret
    /// (RFC 6749 §2.1 public clients). Default true. A client that presents a secret
    /// is always authenticated against [`Config::clients`].
    pub allow_public_clients: bool,
    /// OAuth clients (RFC 6749 §2.3) allowed to authenticate at `/oauth/token` and
    /// `/oauth/revoke` with `client_secret_basic` or `client_secret_post`.
    pub clients: Vec<ClientConfig>,
    /// Limits on client connections: slow clients and floods (`[server]`, the same keys
    /// as the gateway's). `server.header_read_timeout_ms`, when set, overrides
    /// [`Config::header_read_timeout_secs`].
    pub server: sallyport_serve::ServerConfig,
    /// Key-encryption key for signing keys at rest (base64 of 32 bytes). Never read
    /// from the configuration file — only from the environment variable
    /// `SALLYPORT_KEY_ENCRYPTION_KEY` ([`Config::load`]), so the key does not sit next to
    /// the database it protects.
    #[serde(skip)]
    pub key_encryption_key: Option<String>,
}

/// One OAuth client. Give `secret_sha256` (preferred: the config file then holds no
/// usable secret) or `secret`; neither makes it a public client that may identify
/// itself without a secret even when `allow_public_clients` is false.
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The `client_id`.
    pub id: String,
    /// The client secret in clear (compared through its SHA-256 in constant time).
    pub secret: Option<String>,
    /// Hex SHA-256 of the client secret (`printf %s SECRET | sha256sum`).
    pub secret_sha256: Option<String>,
}

/// Secrets are never printed.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field(
                "secret_sha256",
                &self.secret_sha256.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Where the client address of a request comes from (`[http]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// CIDRs (or single addresses) of proxies allowed to tell the client address,
    /// e.g. the gateway's `["127.0.0.1/32"]`. Default empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// The header a trusted proxy puts the client address in (default
    /// `X-Forwarded-For`). The right-most address in it that is not itself a trusted
    /// proxy is the client.
    pub client_address_header: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            trusted_proxies: Vec::new(),
            client_address_header: "X-Forwarded-For".into(),
        }
    }
}

/// Argon2id parameters; defaults are OWASP's (19 MiB, 2 passes, 1 lane).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Argon2Config {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
    /// Hashes computed at the same time (each takes `memory_kib`). 0 = the number of
    /// CPU cores.
    pub max_concurrent: usize,
    /// Logins that may wait for a hashing slot; past that a login gets 503 at once.
    pub max_queued: usize,
}

/// Failed-login limits. A burst of 0 turns that limit off.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Failed attempts on one username (from all addresses) before the account only
    /// accepts attempts from addresses that have not failed recently. It slows a
    /// distributed attack down but never locks out a clean address.
    pub account_burst: u32,
    /// One more attempt per account becomes available every this many seconds.
    pub account_replenish_secs: u64,
    /// Failed attempts on one username from one client address before that address
    /// is refused for that username.
    pub account_address_burst: u32,
    /// One more attempt per (account, address) every this many seconds.
    pub account_address_replenish_secs: u64,
    /// Failed attempts allowed in a burst from one client address.
    pub address_burst: u32,
    /// One more attempt per address becomes available every this many seconds.
    pub address_replenish_secs: u64,
    /// Most keys each limit remembers (memory bound against floods of random
    /// usernames or addresses; about 150 bytes each).
    pub max_tracked_keys: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://sallyport-issuer.db".into(),
            database_max_connections: None,
            listen: "127.0.0.1:8300".into(),
            issuer: "http://127.0.0.1:8300".into(),
            audience: "sallyport".into(),
            algorithm: "ES256".into(),
            access_token_ttl_secs: 900,
            refresh_reuse_interval_secs: 10,
            refresh_idle_ttl_secs: 30 * 24 * 3600,
            session_max_lifetime_secs: 90 * 24 * 3600,
            key_cache_secs: 30,
            max_body_bytes: 16 * 1024,
            access_token_leeway_secs: 0,
            http: HttpConfig::default(),
            argon2: Argon2Config::default(),
            rate_limit: RateLimitConfig::default(),
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            allow_public_clients: true,
            clients: Vec::new(),
            server: sallyport_serve::ServerConfig::default(),
            key_encryption_key: None,
        }
    }
}

impl Default for Argon2Config {
    fn default() -> Self {
        Argon2Config {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 0,
            max_queued: 64,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            account_burst: 20,
            account_replenish_secs: 30,
            account_address_burst: 10,
            account_address_replenish_secs: 30,
            address_burst: 50,
            address_replenish_secs: 2,
            max_tracked_keys: 100_000,
        }
    }
}

/// The database URL may carry a password; never print it.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("listen", &self.listen)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field(
                "refresh_reuse_interval_secs",
                &self.refresh_reuse_interval_secs,
            )
            .field("refresh_idle_ttl_secs", &self.refresh_idle_ttl_secs)
            .field("session_max_lifetime_secs", &self.session_max_lifetime_secs)
            .field("key_cache_secs", &self.key_cache_secs)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("access_token_leeway_secs", &self.access_token_leeway_secs)
            .field("http", &self.http)
            .field("argon2", &self.argon2)
            .field("rate_limit", &self.rate_limit)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("allow_public_clients", &self.allow_public_clients)
            .field("clients", &self.clients)
            .field("server", &self.server)
            .field(
                "key_encryption_key",
                &self.key_encryption_key.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Replaces a password in `scheme://user:password@host` with `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Config {
    /// Defaults, then `file` (if given; it must exist), then `SALLYPORT_ISSUER_*` env vars.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(Error::config(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // SALLYPORT_ISSUER_CONFIG names the file for the command line (`--config`), it is
        // not a key of it (the gateway ignores its SALLYPORT_GATEWAY_CONFIG the same way).
        figment = figment.merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__"));
        let mut config: Config = figment.extract()?;
        config.key_encryption_key = std::env::var(crate::keys::KEY_ENCRYPTION_ENV)
            .ok()
            .filter(|k| !k.trim().is_empty());
        Ok(config)
    }

    /// Defaults for tests of this and other crates: the given database (e.g.
    /// `sqlite::memory:`), cheap argon2 parameters and login rate limits off.
    /// **Never use these argon2 parameters in production.**
    pub fn for_tests(database_url: impl Into<String>) -> Config {
        Config {
            database_url: database_url.into(),
            argon2: Argon2Config {
                memory_kib: 256,
                iterations: 1,
                parallelism: 1,
                max_concurrent: 0,
                max_queued: 1024,
            },
            rate_limit: RateLimitConfig {
                account_burst: 0,
                account_replenish_secs: 0,
                account_address_burst: 0,
                account_address_replenish_secs: 0,
                address_burst: 0,
                address_replenish_secs: 0,
                max_tracked_keys: 100_000,
            },
            ..Config::default()
        }
    }

    /// Checks every value and converts to [`Settings`].
    pub fn validate(&self) -> Result<Settings> {
        let backend = DatabaseKind::from_url(&self.database_url)?;
        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|e| Error::config("listen", format!("`{}`: {e}", self.listen)))?;
        if !(self.issuer.starts_with("http://") || self.issuer.starts_with("https://")) {
            return Err(Error::config("issuer", "must be an http(s) URL"));
        }
        if self.audience.is_empty() {
            return Err(Error::config("audience", "must not be empty"));
        }
        let algorithm = SigningAlgorithm::parse(&self.algorithm)?;
        let secs = |name: &str, v: u64, min: u64, max: u64| -> Result<i64> {
            if v < min || v > max {
                return Err(Error::config(
                    name,
                    format!("{v} is outside the allowed range {min}..={max} seconds"),
                ));
            }
            // Cannot overflow: max is at most ten years in seconds.
            Ok(i64::try_from(v.saturating_mul(1000)).unwrap_or(i64::MAX))
        };
        const TEN_YEARS: u64 = 10 * 366 * 24 * 3600;
        let access_ttl_ms = secs(
            "access_token_ttl_secs",
            self.access_token_ttl_secs,
            1,
            86_400,
        )?;
        let reuse_interval_ms = secs(
            "refresh_reuse_interval_secs",
            self.refresh_reuse_interval_secs,
            0,
            300,
        )?;
        let idle_ttl_ms = secs(
            "refresh_idle_ttl_secs",
            self.refresh_idle_ttl_secs,
            1,
            TEN_YEARS,
        )?;
        let max_lifetime_ms = secs(
            "session_max_lifetime_secs",
            self.session_max_lifetime_secs,
            1,
            TEN_YEARS,
        )?;
        let key_cache_ms = secs("key_cache_secs", self.key_cache_secs, 0, 3600)?;
        if self.max_body_bytes < 256 || self.max_body_bytes > 1024 * 1024 {
            return Err(Error::config(
                "max_body_bytes",
                "must be between 256 and 1048576",
            ));
        }
        let a = &self.argon2;
        argon2::Params::new(a.memory_kib, a.iterations, a.parallelism, None)
            .map_err(|e| Error::config("argon2", e.to_string()))?;
        let r = &self.rate_limit;
        if r.account_burst > 0 && r.account_replenish_secs == 0 {
            return Err(Error::config(
                "rate_limit.account_replenish_secs",
                "must be > 0",
            ));
        }
        if r.address_burst > 0 && r.address_replenish_secs == 0 {
            return Err(Error::config(
                "rate_limit.address_replenish_secs",
                "must be > 0",
            ));
        }
        if r.account_address_burst > 0 && r.account_address_replenish_secs == 0 {
            return Err(Error::config(
                "rate_limit.account_address_replenish_secs",
                "must be > 0",
            ));
        }
        if r.max_tracked_keys == 0 {
            return Err(Error::config("rate_limit.max_tracked_keys", "must be > 0"));
        }
        if self.argon2.max_concurrent > 1024 {
            return Err(Error::config(
                "argon2.max_concurrent",
                "must be at most 1024 (0 = number of CPU cores)",
            ));
        }
        if self.argon2.max_queued > 1_000_000 {
            return Err(Error::config(
                "argon2.max_queued",
                "must be at most 1000000",
            ));
        }
        let access_token_leeway_ms = secs(
            "access_token_leeway_secs",
            self.access_token_leeway_secs,
            0,
            300,
        )?;
        let trusted_proxies = self
            .http
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, s)| {
                crate::client_addr::parse_cidr(s).ok_or_else(|| {
                    Error::config(
                        &format!("http.trusted_proxies[{i}]"),
                        format!("`{s}` is not a CIDR (e.g. 10.0.0.0/8) or an IP address"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let client_address_header = axum::http::HeaderName::try_from(
            self.http.client_address_header.as_str(),
        )
        .map_err(|_| {
            Error::config(
                "http.client_address_header",
                format!("`{}` is not a header name", self.http.client_address_header),
            )
        })?;
        if let Some(0) = self.database_max_connections {
            return Err(Error::config("database_max_connections", "must be > 0"));
        }
        let header_read_timeout_ms = secs(
            "header_read_timeout_secs",
            self.header_read_timeout_secs,
            1,
            3600,
        )?;
        let request_timeout_ms = secs("request_timeout_secs", self.request_timeout_secs, 1, 3600)?;
        let clients = ClientRegistry::from_config(&self.clients, self.allow_public_clients)?;
        let server = self
            .server
            .options(millis(header_read_timeout_ms))
            .map_err(|e| Error::config(e.setting, e.message))?;
        let key_encryption = self
            .key_encryption_key
            .as_deref()
            .map(crate::keys::KeyEncryptionKey::from_base64)
            .transpose()?
            .map(std::sync::Arc::new);
        Ok(Settings {
            raw: self.clone(),
            backend,
            listen,
            issuer: self.issuer.trim_end_matches('/').to_owned(),
            algorithm,
            access_ttl_ms,
            reuse_interval_ms,
            idle_ttl_ms,
            max_lifetime_ms,
            key_cache_ms,
            request_timeout: millis(request_timeout_ms),
            clients,
            server,
            access_token_leeway: millis(access_token_leeway_ms),
            key_encryption,
            client_address: crate::client_addr::ClientAddressPolicy::new(
                trusted_proxies,
                client_address_header,
            ),
        })
    }
}

fn millis(ms: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Which store implementation a database URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres://` or `postgresql://` URLs.
    Postgres,
}

impl DatabaseKind {
    /// Picks the backend from the URL scheme.
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseKind::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(DatabaseKind::Sqlite)
        } else {
            Err(Error::config(
                "database_url",
                "must start with `sqlite:` or `postgres://`",
            ))
        }
    }
}

/// JWT signing algorithms the issuer can create keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// Parses `ES256` / `EdDSA` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "es256" => Ok(Self::Es256),
            "eddsa" | "ed25519" => Ok(Self::EdDsa),
            _ => Err(Error::config(
                "algorithm",
                format!("`{s}`: use ES256 or EdDSA"),
            )),
        }
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// Validated configuration (durations in milliseconds).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration these settings came from.
    pub raw: Config,
    /// Selected storage backend.
    pub backend: DatabaseKind,
    /// Listen address.
    pub listen: SocketAddr,
    /// `iss`, without a trailing slash.
    pub issuer: String,
    /// Algorithm for new keys.
    pub algorithm: SigningAlgorithm,
    /// Access-token lifetime.
    pub access_ttl_ms: i64,
    /// Refresh-token reuse interval.
    pub reuse_interval_ms: i64,
    /// Refresh-token idle lifetime.
    pub idle_ttl_ms: i64,
    /// Absolute session lifetime.
    pub max_lifetime_ms: i64,
    /// Key ring reload period.
    pub key_cache_ms: i64,
    /// Time allowed for a whole request.
    pub request_timeout: std::time::Duration,
    /// OAuth client authentication.
    pub clients: ClientRegistry,
    /// How the listener treats client connections (`[server]`); its header read timeout
    /// is `server.header_read_timeout_ms` if set, else `header_read_timeout_secs`; its
    /// drain timeout is replaced by `request_timeout` + 1 s when serving.
    pub server: sallyport_serve::Options,
    /// Leeway for `exp`/`nbf` on `/api/me`.
    pub access_token_leeway: std::time::Duration,
    /// Which address a request comes from.
    pub client_address: crate::client_addr::ClientAddressPolicy,
    /// Encrypts signing keys at rest, when `SALLYPORT_KEY_ENCRYPTION_KEY` is set.
    pub key_encryption: Option<std::sync::Arc<crate::keys::KeyEncryptionKey>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head timeout has two keys: the issuer's own `header_read_timeout_secs`, and
    /// the shared `server.header_read_timeout_ms`, which wins when set.
    #[test]
    fn header_read_timeout_secs_applies_unless_the_server_key_is_set() {
        let c = Config {
            header_read_timeout_secs: 3,
            ..Config::default()
        };
        let s = c.validate().unwrap();
        assert_eq!(
            s.server.header_read_timeout,
            std::time::Duration::from_secs(3)
        );
        let c = Config {
            server: sallyport_serve::ServerConfig {
                header_read_timeout_ms: Some(1500),
                ..Default::default()
            },
            ..c
        };
        let s = c.validate().unwrap();
        assert_eq!(
            s.server.header_read_timeout,
            std::time::Duration::from_millis(1500)
        );
    }

    #[test]
    fn defaults_validate() {
        let s = Config::default().validate().unwrap();
        assert_eq!(s.access_ttl_ms, 900_000);
        assert_eq!(s.reuse_interval_ms, 10_000);
        assert_eq!(s.backend, DatabaseKind::Sqlite);
    }

    /// Two settings reach the listener's header read timeout: `server.header_read_timeout_ms`
    /// (shared with the gateway) wins over `header_read_timeout_secs` when set.
    #[test]
    fn header_read_timeout_comes_from_server_ms_else_secs() {
        let secs_only = Config {
            header_read_timeout_secs: 7,
            ..Config::default()
        };
        assert_eq!(
            secs_only.validate().unwrap().server.header_read_timeout,
            std::time::Duration::from_secs(7)
        );
        let both = Config {
            server: sallyport_serve::ServerConfig {
                header_read_timeout_ms: Some(1_500),
                ..Default::default()
            },
            ..secs_only
        };
        assert_eq!(
            both.validate().unwrap().server.header_read_timeout,
            std::time::Duration::from_millis(1_500)
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    database_url: "mysql://x".into(),
                    ..Config::default()
                },
                "database_url",
            ),
            (
                Config {
                    algorithm: "HS256".into(),
                    ..Config::default()
                },
                "algorithm",
            ),
            (
                Config {
                    access_token_ttl_secs: 0,
                    ..Config::default()
                },
                "access_token_ttl_secs",
            ),
            (
                Config {
                    listen: "nope".into(),
                    ..Config::default()
                },
                "listen",
            ),
            (
                Config {
                    issuer: "ftp://x".into(),
                    ..Config::default()
                },
                "issuer",
            ),
            (
                Config {
                    header_read_timeout_secs: 0,
                    ..Config::default()
                },
                "header_read_timeout_secs",
            ),
            (
                Config {
                    request_timeout_secs: 0,
                    ..Config::default()
                },
                "request_timeout_secs",
            ),
            (
                Config {
                    server: sallyport_serve::ServerConfig {
                        body_idle_timeout_ms: 0,
                        ..Default::default()
                    },
                    ..Config::default()
                },
                "server.body_idle_timeout_ms",
            ),
            (
                Config {
                    http: HttpConfig {
                        trusted_proxies: vec!["10.0.0.0/8".into(), "10.0.0.300/32".into()],
                        ..HttpConfig::default()
                    },
                    ..Config::default()
                },
                "http.trusted_proxies[1]",
            ),
            (
                Config {
                    http: HttpConfig {
                        client_address_header: "X Forwarded".into(),
                        ..HttpConfig::default()
                    },
                    ..Config::default()
                },
                "http.client_address_header",
            ),
            (
                Config {
                    access_token_leeway_secs: 301,
                    ..Config::default()
                },
                "access_token_leeway_secs",
            ),
            (
                Config {
                    rate_limit: RateLimitConfig {
                        account_address_replenish_secs: 0,
                        ..RateLimitConfig::default()
                    },
                    ..Config::default()
                },
                "rate_limit.account_address_replenish_secs",
            ),
            (
                Config {
                    rate_limit: RateLimitConfig {
                        max_tracked_keys: 0,
                        ..RateLimitConfig::default()
                    },
                    ..Config::default()
                },
                "rate_limit.max_tracked_keys",
            ),
            (
                Config {
                    argon2: Argon2Config {
                        max_concurrent: 1025,
                        ..Argon2Config::default()
                    },
                    ..Config::default()
                },
                "argon2.max_concurrent",
            ),
            (
                Config {
                    argon2: Argon2Config {
                        max_queued: 1_000_001,
                        ..Argon2Config::default()
                    },
                    ..Config::default()
                },
                "argon2.max_queued",
            ),
            (
                Config {
                    key_encryption_key: Some("c2hvcnQ=".into()),
                    ..Config::default()
                },
                "SALLYPORT_KEY_ENCRYPTION_KEY",
            ),
            (
                Config {
                    clients: vec![ClientConfig {
                        id: "gw".into(),
                        secret: Some("too-short".into()),
                        secret_sha256: None,
                    }],
                    ..Config::default()
                },
                "clients[0].secret",
            ),
        ];
        for (config, setting) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(setting), "{err} should name {setting}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn env_overrides_and_unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "issuer.toml",
                "access_token_ttl_secs = 60\n[rate_limit]\naccount_burst = 3\n",
            )?;
            jail.set_env("SALLYPORT_ISSUER_AUDIENCE", "api");
            let c = Config::load(Some(Path::new("issuer.toml"))).unwrap();
            assert_eq!(c.access_token_ttl_secs, 60);
            assert_eq!(c.rate_limit.account_burst, 3);
            assert_eq!(c.audience, "api");
            // The variable the command line reads its --config from is not a key.
            jail.set_env("SALLYPORT_ISSUER_CONFIG", "issuer.toml");
            let c = Config::load(Some(Path::new("issuer.toml"))).unwrap();
            assert_eq!(c.access_token_ttl_secs, 60);
            jail.create_file("bad.toml", "acess_token_ttl_secs = 60\n")?;
            let err = Config::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("acess_token_ttl_secs"), "{err}");
            jail.set_env("SALLYPORT_ISSUER_ACCESS_TOKEN_TTL_SECS", "soon");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(
                err.to_lowercase().contains("access_token_ttl_secs"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn example_file_shows_the_defaults_and_clients_parse() {
        let example = include_str!("../../../config/issuer.example.toml");
        let parsed: Config = Figment::from(Toml::string(example)).extract().unwrap();
        assert_eq!(parsed, Config::default());
        let uncommented = example
            .replace("# [[clients]]", "[[clients]]")
            .replace("# id = ", "id = ")
            .replace("# secret_sha256 = ", "secret_sha256 = ");
        let c: Config = Figment::from(Toml::string(&uncommented)).extract().unwrap();
        assert_eq!(c.clients.len(), 2);
        let s = c.validate().unwrap();
        assert_eq!(
            s.clients
                .authenticate(None, Some("gateway"), Some("password"))
                .unwrap()
                .as_deref(),
            Some("gateway")
        );
    }

    #[test]
    fn debug_redacts_database_password() {
        let c = Config {
            database_url: "postgres://u:hunter2@db/x".into(),
            ..Config::default()
        };
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"));
        assert!(dbg.contains("postgres://u:***@db/x"));
    }
}
