//! Configuration: a raw, serde-friendly [`Config`] (defaults → TOML → environment), turned
//! once into validated [`Settings`] so that the request path never re-checks anything.
//!
//! Every start-up refusal names the setting the operator has to change.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use globset::{GlobSet, GlobSetBuilder};
use http::{HeaderName, Uri};
use sallyport_iron::Passwords;
use sallyport_session::{CookieCodec, SameSite, SessionConfig};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Minimum length of a sealing secret: iron's rule ([`sallyport_iron::MIN_PASSWORD_LEN`]),
/// counted in UTF-16 code units as iron-session counts it. Iron checks it; this is only
/// the number, for messages and documentation.
pub const MIN_SECRET_LEN: usize = sallyport_iron::MIN_PASSWORD_LEN;

/// The raw configuration, as read from `gateway.toml` and `SALLYPORT_GATEWAY_*` variables.
///
/// Nested keys use `__` in environment variables: `SALLYPORT_GATEWAY_BACKEND__LOGIN_URL`.
/// The sealing secret comes from `SESSION_SECRET` (or `session.secrets`, an id → secret
/// map for rotation) and never needs to be written to a file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// The protected application, e.g. `http://127.0.0.1:3000`.
    pub upstream: String,
    /// Path prefix of the gateway's own routes.
    pub prefix: String,
    /// Globs of paths that need no session (a session still gets its token attached).
    pub public_paths: Vec<String>,
    /// The origin browsers see (`https://app.example.com`); used for the CSRF check.
    /// When unset, `Origin` is compared with the request's `Host`.
    pub public_origin: Option<String>,
    /// Trust `X-Forwarded-*` headers from the client (only behind a trusted proxy).
    pub trust_forwarded_headers: bool,
    /// Take the client's `X-Request-Id` (when valid) and `traceparent`/`tracestate` as
    /// this request's id and trace parent. Off: the gateway makes a new id and starts a
    /// new trace, and never passes the client's values on. Only behind a proxy that sets
    /// or strips these headers itself.
    pub trust_request_id: bool,
    /// Session cookie settings.
    pub session: SessionSection,
    /// The token backend.
    pub backend: BackendSection,
    /// Reverse-proxy settings.
    pub proxy: ProxySection,
    /// Login page settings.
    pub login: LoginSection,
    /// Shared state between replicas (optional).
    pub store: StoreSection,
    /// Limits on client connections: slow clients and floods (`[server]`).
    pub server: sallyport_serve::ServerConfig,
    /// The internal listener for `{prefix}/verify`, health, readiness and metrics.
    pub admin: AdminSection,
}

/// `[admin]`: a second listener, for the reverse proxy and the operator only.
///
/// `{prefix}/verify` answers with the access token in a header, so it must never be
/// reachable by a browser: it is served here and nowhere else. `/healthz`, `/readyz`
/// and `/metrics` live here too, so they do not shadow the upstream app's own paths.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Serve the admin listener at all (off: no verify, health or metrics anywhere,
    /// unless `health_on_public_listener`).
    pub enabled: bool,
    /// Address of the admin listener; keep it on loopback or a private network.
    pub listen: SocketAddr,
    /// Also answer `/healthz` and `/readyz` on the public listener (they then shadow
    /// upstream paths of the same name). `/metrics` and verify never go there.
    pub health_on_public_listener: bool,
    /// Which reverse proxy calls `{prefix}/verify`, when one does: it decides what verify
    /// answers an anonymous page navigation and which settings that proxy can carry out
    /// (see [`ForwardAuth`]). Unset: 401 to everything, any session settings.
    pub forward_auth: Option<ForwardAuth>,
}

/// `admin.forward_auth`: the reverse proxy in front, for what it can pass on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardAuth {
    /// nginx `auth_request`: verify answers 401 (nginx turns any other refusal into a
    /// 500 and maps the 401 to the login page itself), and `session.chunking` must be
    /// off — `auth_request_set` passes on one `Set-Cookie` of the answer only, so a
    /// renewed session split over several cookies would reach the browser broken.
    Nginx,
    /// Traefik `forwardAuth`: it hands verify's refusal to the browser as it is, so an
    /// anonymous page navigation gets the 303 to the login page.
    Traefik,
    /// Caddy `forward_auth`: as Traefik.
    Caddy,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            health_on_public_listener: false,
            forward_auth: None,
        }
    }
}

/// `[store]`: the gateway's state: the record of logged-out sessions (kept in
/// `state_dir` across restarts) and, with `redis_url`, what replicas share — that record,
/// so a cookie logged out on one replica is refused by all, and single-flight renewal.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `redis://[user:password@]host[:port][/db]`; unset keeps the record per process.
    pub redis_url: Option<String>,
    /// Longest wait for one Redis command, in milliseconds; past it the command fails, and
    /// three failures in a row switch Redis off for a short back-off (see docs/gateway.md
    /// for what the gateway does then).
    pub timeout_ms: u64,
    /// Prefix of every key the gateway writes.
    pub key_prefix: String,
    /// Directory of the durable logout record (survives restarts without Redis). Unset:
    /// `$STATE_DIRECTORY` (systemd `StateDirectory=`), else `$XDG_STATE_HOME/sallyport`,
    /// else `~/.local/state/sallyport`.
    pub state_dir: Option<PathBuf>,
    /// Keep the durable logout record at all (`false`: memory and Redis only).
    pub persist_logouts: bool,
    /// Most logout records kept (memory and file); past it the ones nearest to expiry go.
    pub max_logout_records: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            redis_url: None,
            timeout_ms: 250,
            key_prefix: "sallyport:".into(),
            state_dir: None,
            persist_logouts: true,
            max_logout_records: 1_000_000,
        }
    }
}

/// The default `store.state_dir`, from the environment (see [`StoreSection::state_dir`]).
pub(crate) fn default_state_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(d) = non_empty("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several are configured.
        return d.split(':').next().map(PathBuf::from);
    }
    if let Some(d) = non_empty("XDG_STATE_HOME") {
        return Some(PathBuf::from(d).join("sallyport"));
    }
    non_empty("HOME").map(|h| PathBuf::from(h).join(".local/state/sallyport"))
}

impl std::fmt::Debug for StoreSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("StoreSection")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .field("key_prefix", &self.key_prefix)
            .field("state_dir", &self.state_dir)
            .field("persist_logouts", &self.persist_logouts)
            .field("max_logout_records", &self.max_logout_records)
            .finish()
    }
}

/// Validated `[store]` settings.
#[derive(Clone)]
pub(crate) struct StoreSettings {
    pub(crate) client: redis::Client,
    pub(crate) timeout: Duration,
    pub(crate) key_prefix: String,
}

/// `[session]`
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSection {
    /// The sealing secret (`SESSION_SECRET`); at least 32 characters, counted in UTF-16
    /// code units as iron-session does (so 16 emoji are enough).
    pub secret: Option<String>,
    /// Secrets by numeric id for rotation; the highest id seals, all unseal.
    pub secrets: BTreeMap<String, String>,
    /// Seal with this id of `secrets` instead of the highest: the first step of
    /// rolling a new secret out to several replicas (every replica learns to open the
    /// new id before any seals with it). See docs/operations.md. Written as a number
    /// (`seal_id = 1`, as an environment variable reads) or a string.
    #[serde(deserialize_with = "secret_id")]
    pub seal_id: Option<String>,
    /// Cookie name; defaults to `__Host-sallyport` when `secure`, else `sallyport`.
    pub cookie_name: Option<String>,
    /// `Secure` attribute; may be off only when listening on a loopback address.
    pub secure: bool,
    /// `SameSite`: `lax` (default), `strict` or `none` (any letter case); any other value
    /// stops the configuration from loading.
    pub same_site: SameSite,
    /// Cookie `Domain` (not allowed with a `__Host-` name).
    pub domain: Option<String>,
    /// Seal lifetime and cookie max-age in seconds (default 30 days).
    pub ttl_secs: u64,
    /// Split sessions too large for one cookie into chunks.
    pub chunking: bool,
    /// Renew when the access token expires within this many seconds.
    pub leeway_secs: u64,
    /// How long a just-rotated refresh token maps to its renewal result.
    pub renew_grace_secs: u64,
    /// Include the access token in `GET {prefix}/session`.
    pub expose_access_token: bool,
    /// How many unsealed sessions to keep in memory, keyed by the sealed cookie, so a
    /// repeated cookie skips the decrypt + parse (default 10 000; 0 disables).
    pub cache_entries: u64,
}

/// `[backend]`
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendSection {
    /// `json` (the article's contract), `oauth2` (RFC 6749 / RFC 7009) or `oidc`
    /// (OpenID Connect relying party: the authorization-code flow at `issuer`).
    pub kind: BackendKind,
    /// json: login URL.
    pub login_url: Option<String>,
    /// json: refresh URL.
    pub refresh_url: Option<String>,
    /// json: logout URL (optional).
    pub logout_url: Option<String>,
    /// oauth2: token endpoint.
    pub token_url: Option<String>,
    /// oauth2: revocation endpoint (optional).
    pub revocation_url: Option<String>,
    /// oauth2, oidc: client id.
    pub client_id: Option<String>,
    /// oauth2, oidc: client secret (`SALLYPORT_GATEWAY_BACKEND__CLIENT_SECRET`).
    pub client_secret: Option<String>,
    /// oauth2, oidc: `client_secret_basic` (default), `client_secret_post`, `none` (a
    /// public client: `client_id` only), or (oidc only) `private_key_jwt`.
    pub client_auth: ClientAuth,
    /// oidc with `private_key_jwt`: the PKCS#8 PEM file of the client's private key
    /// (RSA → RS256, P-256 → ES256, Ed25519 → EdDSA).
    pub client_key_file: Option<PathBuf>,
    /// oidc with `private_key_jwt`: the key id (`kid`) registered at the provider.
    pub client_key_id: Option<String>,
    /// oauth2: requested scope. oidc: requested scopes (must contain `openid`; default
    /// `openid profile email offline_access`).
    pub scope: Option<String>,
    /// oidc: the OpenID provider's issuer identifier; its discovery document is
    /// `{issuer}/.well-known/openid-configuration` and must name exactly this issuer.
    pub issuer: Option<String>,
    /// oidc: the path of the redirect URI under `prefix` (default `callback`, so
    /// `{public_origin}{prefix}/callback` is what the provider must have registered).
    pub redirect_path: String,
    /// oidc: where the provider sends the browser after RP-initiated logout (must be
    /// registered at the provider); unset: not sent (the provider shows its own page).
    pub post_logout_redirect_uri: Option<String>,
    /// oidc: ID-token claims kept in the session cookie (beyond `sub`, `sid`, `name`).
    pub id_token_claims: Vec<String>,
    /// URL probed by `/readyz` (defaults to the login or token URL).
    pub health_url: Option<String>,
    /// Bound on every backend call, in milliseconds.
    pub timeout_ms: u64,
    /// json field names.
    pub fields: FieldNames,
    /// Verify access tokens against this JWKS (optional).
    pub jwks_url: Option<String>,
    /// Expected `iss` when verifying.
    pub jwt_issuer: Option<String>,
    /// Expected `aud` when verifying.
    pub jwt_audience: Option<String>,
    /// Header carrying the client's IP address (the TCP peer the gateway sees) on
    /// login, refresh and logout calls, so the backend's login limits key on the real
    /// client instead of the gateway (default `X-Forwarded-For`; the backend must trust
    /// the gateway's address for it).
    pub client_address_header: String,
}

/// Field names of the json adapter (`[backend.fields]`): the backend client's own type, so
/// the names and their defaults are written once.
pub type FieldNames = sallyport_backend::JsonFields;

/// `[proxy]`
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySection {
    /// Header carrying `Bearer <access token>` upstream.
    pub authorization_header: String,
    /// Forward the session cookie upstream (for an app that reads it with iron-session).
    pub forward_session_cookie: bool,
    /// Send identity headers (`{identity_header_prefix}user`, `name`, `roles`).
    pub identity_headers: bool,
    /// Prefix of identity headers; client-supplied headers with it are always removed.
    pub identity_header_prefix: String,
    /// Keep the client's `Host` header (else upstream's authority).
    pub preserve_host: bool,
    /// Connect timeout to upstream, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Time allowed until upstream's response head, in milliseconds.
    pub response_timeout_ms: u64,
    /// Largest body of a request carrying `Idempotency-Key` that is buffered so it can be
    /// replayed after upstream's 401 (docs/design.md step 6); larger bodies stream and are not
    /// replayed. 0 turns body replay off.
    pub replay_body_limit_bytes: u64,
    /// Pass client request headers whose names contain `_` (dropped by default, as
    /// nginx's `underscores_in_headers off`: many servers read `_` as `-`). Even when
    /// on, names that read as an identity, authorization or forwarding header once
    /// `_` is read as `-` are dropped.
    pub allow_underscores_in_headers: bool,
    /// `Upgrade` protocols passed to upstream (case-insensitive); any other is
    /// refused with 400. Default: `["websocket"]`.
    pub allowed_upgrades: Vec<String>,
    /// More client request headers to drop, beyond the built-in identity, authorization
    /// and forwarding families: exact names, or prefixes ending in `*`
    /// (`["x-user", "x-tenant-*"]`); `_` and `-` are the same here too.
    pub drop_request_headers: Vec<String>,
}

/// `[login]`
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginSection {
    /// A minijinja template file replacing the built-in login page.
    pub template: Option<PathBuf>,
    /// Page title.
    pub title: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstream: "http://127.0.0.1:3000".into(),
            prefix: "/auth".into(),
            public_paths: Vec::new(),
            public_origin: None,
            trust_forwarded_headers: false,
            trust_request_id: false,
            session: SessionSection::default(),
            backend: BackendSection::default(),
            proxy: ProxySection::default(),
            login: LoginSection::default(),
            store: StoreSection::default(),
            admin: AdminSection::default(),
            server: sallyport_serve::ServerConfig::default(),
        }
    }
}

impl Default for SessionSection {
    fn default() -> Self {
        Self {
            secret: None,
            secrets: BTreeMap::new(),
            seal_id: None,
            cookie_name: None,
            secure: true,
            same_site: SameSite::Lax,
            domain: None,
            ttl_secs: 30 * 24 * 3600,
            chunking: true,
            leeway_secs: 30,
            renew_grace_secs: 60,
            expose_access_token: false,
            cache_entries: 10_000,
        }
    }
}

impl Default for BackendSection {
    fn default() -> Self {
        Self {
            kind: BackendKind::Json,
            login_url: None,
            refresh_url: None,
            logout_url: None,
            token_url: None,
            revocation_url: None,
            client_id: None,
            client_secret: None,
            client_auth: ClientAuth::ClientSecretBasic,
            scope: None,
            client_key_file: None,
            client_key_id: None,
            issuer: None,
            redirect_path: "callback".into(),
            post_logout_redirect_uri: None,
            id_token_claims: vec!["email".into(), "preferred_username".into()],
            health_url: None,
            timeout_ms: 5000,
            fields: FieldNames::default(),
            jwks_url: None,
            jwt_issuer: None,
            jwt_audience: None,
            client_address_header: "X-Forwarded-For".into(),
        }
    }
}

impl Default for ProxySection {
    fn default() -> Self {
        Self {
            authorization_header: "authorization".into(),
            forward_session_cookie: false,
            identity_headers: false,
            identity_header_prefix: "x-auth-request-".into(),
            preserve_host: true,
            connect_timeout_ms: 5000,
            response_timeout_ms: 60_000,
            replay_body_limit_bytes: 1024 * 1024,
            allow_underscores_in_headers: false,
            allowed_upgrades: vec!["websocket".into()],
            drop_request_headers: Vec::new(),
        }
    }
}

impl Default for LoginSection {
    fn default() -> Self {
        Self {
            template: None,
            title: "Sign in".into(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("upstream", &self.upstream)
            .field("prefix", &self.prefix)
            .field("public_paths", &self.public_paths)
            .field("backend", &self.backend.kind)
            .field("session.secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Loads defaults, then `path` (if given), then `SALLYPORT_GATEWAY_*` and `SESSION_SECRET`.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.exists() {
                return Err(Error::Load(format!(
                    "configuration file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            // CONFIG and THREADS are command-line options of `sallyport gateway`.
            .merge(
                Env::prefixed("SALLYPORT_GATEWAY_")
                    .ignore(&["config", "threads"])
                    .split("__"),
            )
            .merge(
                Env::raw()
                    .only(&["SESSION_SECRET"])
                    .map(|_| "session.secret".into()),
            );
        figment.extract().map_err(load_error)
    }

    /// Checks everything and produces the settings the gateway runs with.
    pub fn validate(&self) -> Result<Settings, Error> {
        Settings::from_config(self)
    }
}

/// `backend.kind`: which backend protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// `json`: `POST login_url` / `POST refresh_url` with JSON bodies.
    #[default]
    Json,
    /// `oauth2`: RFC 6749 token endpoint and RFC 7009 revocation.
    OAuth2,
    /// `oidc`: an OpenID Connect relying party (authorization-code flow with PKCE,
    /// back-channel logout), endpoints from the provider's discovery document.
    Oidc,
}

/// `backend.client_auth`: how the oauth2 backend authenticates the gateway (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic authentication.
    #[default]
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `none`: a public client, identified by `client_id` in the form body only.
    None,
    /// `private_key_jwt`: a client assertion signed with `backend.client_key_file`
    /// (oidc only).
    PrivateKeyJwt,
}

/// Validated settings; built only by [`Config::validate`].
#[derive(Clone)]
pub struct Settings {
    pub(crate) listen: SocketAddr,
    /// The configuration these settings were validated from: a reload compares the new
    /// one with it (settings that need a restart) and keeps what must not change.
    pub(crate) source: std::sync::Arc<Config>,
    pub(crate) upstream: Upstream,
    pub(crate) prefix: String,
    pub(crate) public: GlobSet,
    pub(crate) origin_policy: crate::guard::OriginPolicy,
    pub(crate) replay_body_limit: usize,
    /// The session cookie, validated by sallyport-session (and its passwords by iron)
    /// once, here.
    pub(crate) cookies: CookieCodec,
    pub(crate) ttl: Duration,
    pub(crate) leeway_secs: u64,
    pub(crate) renew_grace: Duration,
    pub(crate) expose_access_token: bool,
    pub(crate) session_cache_entries: u64,
    pub(crate) backend: BackendSettings,
    pub(crate) auth_header: HeaderName,
    pub(crate) forward_cookie: bool,
    pub(crate) identity_headers: bool,
    pub(crate) preserve_host: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) login_template: Option<String>,
    pub(crate) login_title: String,
    pub(crate) store: Option<StoreSettings>,
    /// Which client request headers never reach upstream (built once).
    pub(crate) header_policy: crate::proxy::HeaderPolicy,
    /// Lowercased `proxy.allowed_upgrades`.
    pub(crate) allowed_upgrades: Vec<String>,
    /// The admin listener's address, `None` when `admin.enabled = false`.
    pub(crate) admin_listen: Option<SocketAddr>,
    pub(crate) health_on_public: bool,
    /// How the listener treats client connections (`[server]`).
    pub(crate) server: sallyport_serve::Options,
    /// verify answers anonymous page navigations with the 303 to the login page
    /// (`admin.forward_auth` = traefik or caddy) instead of 401.
    pub(crate) verify_redirects: bool,
    pub(crate) state_dir: Option<PathBuf>,
    /// `store.state_dir` was set explicitly (then an unusable one stops start-up; the
    /// default only warns).
    pub(crate) state_dir_explicit: bool,
    pub(crate) max_logout_records: usize,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("upstream", &self.upstream.base)
            .field("prefix", &self.prefix)
            .field("cookie_name", &self.cookie_name())
            .field("secure", &self.cookies.config().is_secure())
            .field("backend", &self.backend.kind)
            .finish_non_exhaustive()
    }
}

/// Upstream base: scheme + authority + optional path prefix.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub(crate) base: String,
    pub(crate) authority: String,
}

/// Validated backend settings.
#[derive(Clone)]
pub(crate) struct BackendSettings {
    pub(crate) kind: BackendKind,
    pub(crate) login_url: String,
    pub(crate) refresh_url: String,
    pub(crate) logout_url: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) client_auth_basic: bool,
    pub(crate) scope: Option<String>,
    pub(crate) health_url: String,
    pub(crate) timeout: Duration,
    pub(crate) fields: FieldNames,
    pub(crate) jwks_url: Option<String>,
    pub(crate) jwt_issuer: Option<String>,
    pub(crate) jwt_audience: Option<String>,
    pub(crate) client_address_header: http::HeaderName,
    /// `kind = "oidc"`: what the relying party needs besides the token endpoint.
    pub(crate) oidc: Option<crate::oidc::OidcSettings>,
    /// `private_key_jwt`: makes the client assertions (set once discovery has named the
    /// token endpoint, their audience).
    pub(crate) assertion: Option<sallyport_backend::Assertion>,
}

impl Settings {
    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The admin listener's address (`{prefix}/verify`, health, metrics), or `None`
    /// when `admin.enabled = false`.
    pub fn admin_listen(&self) -> Option<SocketAddr> {
        self.admin_listen
    }

    /// The route prefix (e.g. `/auth`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        self.cookies.config().name()
    }

    /// The sealing passwords (iron's, validated once).
    pub(crate) fn passwords(&self) -> &Passwords {
        self.cookies.config().passwords()
    }

    fn from_config(c: &Config) -> Result<Self, Error> {
        let passwords = passwords(&c.session)?;
        let upstream = parse_upstream(&c.upstream)?;
        let prefix = parse_prefix(&c.prefix)?;
        let public = public_globs(&c.public_paths, &prefix)?;

        let cookies = session_cookie(c, passwords)?;
        let mut backend = backend_settings(&c.backend)?;
        if backend.kind == BackendKind::Oidc {
            backend.oidc = Some(crate::oidc::OidcSettings::from_config(c, &prefix)?);
        }
        // The identity header names live in `header_policy` (built once).
        let (auth_header, _identity_prefix) = proxy_headers(&c.proxy)?;
        let public_origin = c.public_origin.as_deref().map(public_origin).transpose()?;
        let replay_body_limit = replay_body_limit(&c.proxy)?;
        let store = store_settings(&c.store)?;
        let (header_policy, allowed_upgrades, admin_listen) = surface_settings(c, &auth_header)?;
        let (state_dir, max_logout_records) = logout_record(&c.store)?;
        let login_template = c
            .login
            .template
            .as_deref()
            .map(login_template)
            .transpose()?;

        Ok(Self {
            listen: c.listen,
            source: std::sync::Arc::new(c.clone()),
            upstream,
            prefix,
            public,
            origin_policy: crate::guard::OriginPolicy {
                public_origin,
                trust_forwarded: c.trust_forwarded_headers,
                secure: c.session.secure,
            },
            replay_body_limit,
            cookies,
            ttl: Duration::from_secs(c.session.ttl_secs),
            leeway_secs: c.session.leeway_secs,
            renew_grace: Duration::from_secs(c.session.renew_grace_secs),
            expose_access_token: c.session.expose_access_token,
            session_cache_entries: c.session.cache_entries,
            backend,
            auth_header,
            forward_cookie: c.proxy.forward_session_cookie,
            identity_headers: c.proxy.identity_headers,
            preserve_host: c.proxy.preserve_host,
            connect_timeout: Duration::from_millis(c.proxy.connect_timeout_ms),
            response_timeout: Duration::from_millis(c.proxy.response_timeout_ms),
            login_template,
            login_title: c.login.title.clone(),
            store,
            header_policy,
            allowed_upgrades,
            admin_listen,
            health_on_public: c.admin.health_on_public_listener,
            server: server_options(&c.server)?,
            verify_redirects: matches!(
                c.admin.forward_auth,
                Some(ForwardAuth::Traefik | ForwardAuth::Caddy)
            ),
            state_dir,
            state_dir_explicit: c.store.state_dir.is_some(),
            max_logout_records,
        })
    }
}

/// `[session]`: the cookie as sallyport-session validates it, and the gateway's own
/// bounds on lifetimes.
fn session_cookie(c: &Config, passwords: Passwords) -> Result<CookieCodec, Error> {
    let loopback = c.listen.ip().is_loopback();
    if !c.session.secure && !loopback {
        return Err(Error::config(
            "session.secure",
            format!(
                "Secure cookies may be turned off only when listening on a loopback address, \
                 not {}; put TLS in front and keep session.secure = true",
                c.listen
            ),
        ));
    }
    let cookies = cookie_codec(&c.session, passwords)?;
    if c.session.ttl_secs < 120 {
        return Err(Error::config(
            "session.ttl_secs",
            "must be at least 120 seconds",
        ));
    }
    if c.session.renew_grace_secs == 0 || c.session.renew_grace_secs > 600 {
        return Err(Error::config(
            "session.renew_grace_secs",
            "must be between 1 and 600 seconds",
        ));
    }
    Ok(cookies)
}

/// `[proxy]`: the header carrying the token upstream and the identity-header prefix.
fn proxy_headers(p: &ProxySection) -> Result<(HeaderName, String), Error> {
    let auth_header = HeaderName::from_bytes(p.authorization_header.as_bytes())
        .map_err(|_| Error::config("proxy.authorization_header", "not a valid header name"))?;
    let identity_prefix = p.identity_header_prefix.to_ascii_lowercase();
    if identity_prefix.is_empty()
        || HeaderName::from_bytes(format!("{identity_prefix}user").as_bytes()).is_err()
    {
        return Err(Error::config(
            "proxy.identity_header_prefix",
            "must be a non-empty header-name prefix such as x-auth-request-",
        ));
    }
    if p.response_timeout_ms == 0 || p.connect_timeout_ms == 0 {
        return Err(Error::config(
            "proxy.response_timeout_ms",
            "proxy timeouts must be greater than zero",
        ));
    }
    Ok((auth_header, identity_prefix))
}

/// `public_origin`, as `url` serializes the origin.
fn public_origin(o: &str) -> Result<String, Error> {
    let url = url::Url::parse(o)
        .map_err(|e| Error::config("public_origin", format!("not a URL ({e}): {o:?}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::config(
            "public_origin",
            "must be an http(s) origin such as https://app.example.com",
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// `proxy.replay_body_limit_bytes`, bounded because it is held in memory per request.
fn replay_body_limit(p: &ProxySection) -> Result<usize, Error> {
    const MAX_REPLAY_BODY: u64 = 64 * 1024 * 1024;
    if p.replay_body_limit_bytes > MAX_REPLAY_BODY {
        return Err(Error::config(
            "proxy.replay_body_limit_bytes",
            format!("at most {MAX_REPLAY_BODY} bytes (it is held in memory per request)"),
        ));
    }
    // Bounded just above, so it fits in usize on every supported platform.
    usize::try_from(p.replay_body_limit_bytes)
        .map_err(|_| Error::config("proxy.replay_body_limit_bytes", "too large"))
}

/// `[store]`'s Redis client, when `store.redis_url` is set.
fn store_settings(st: &StoreSection) -> Result<Option<StoreSettings>, Error> {
    Ok(match &st.redis_url {
        None => None,
        Some(url) => {
            let client = redis::Client::open(url.as_str()).map_err(|e| {
                Error::config("store.redis_url", format!("not a usable Redis URL: {e}"))
            })?;
            if st.timeout_ms == 0 {
                return Err(Error::config(
                    "store.timeout_ms",
                    "must be greater than zero",
                ));
            }
            Some(StoreSettings {
                client,
                timeout: Duration::from_millis(st.timeout_ms),
                key_prefix: st.key_prefix.clone(),
            })
        }
    })
}

/// Where and how many logout records are kept durably.
fn logout_record(st: &StoreSection) -> Result<(Option<PathBuf>, usize), Error> {
    let state_dir = if st.persist_logouts {
        match &st.state_dir {
            Some(d) if d.as_os_str().is_empty() => {
                return Err(Error::config(
                    "store.state_dir",
                    "empty; set a directory or store.persist_logouts = false",
                ));
            }
            Some(d) => Some(d.clone()),
            None => default_state_dir(|k| std::env::var(k).ok()),
        }
    } else {
        None
    };
    if st.max_logout_records == 0 {
        return Err(Error::config(
            "store.max_logout_records",
            "must be greater than zero",
        ));
    }
    let max_logout_records = usize::try_from(st.max_logout_records)
        .map_err(|_| Error::config("store.max_logout_records", "too large"))?;
    Ok((state_dir, max_logout_records))
}

/// `login.template`, read once.
fn login_template(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::config(
            "login.template",
            format!("cannot read {}: {e}", path.display()),
        )
    })
}

/// `[admin]` and the request-surface parts of `[proxy]`.
fn surface_settings(
    c: &Config,
    auth_header: &HeaderName,
) -> Result<(crate::proxy::HeaderPolicy, Vec<String>, Option<SocketAddr>), Error> {
    for d in &c.proxy.drop_request_headers {
        let name = d.strip_suffix('*').unwrap_or(d);
        if name.is_empty() || HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(Error::config(
                "proxy.drop_request_headers",
                format!("not a header name or name prefix: {d:?}"),
            ));
        }
    }
    let policy = crate::proxy::HeaderPolicy::new(
        auth_header,
        &c.proxy.identity_header_prefix.to_ascii_lowercase(),
        &c.proxy.drop_request_headers,
        c.proxy.allow_underscores_in_headers,
        c.trust_forwarded_headers,
        c.public_origin.as_deref(),
    )
    .trusting_request_id(c.trust_request_id);
    let mut upgrades = Vec::with_capacity(c.proxy.allowed_upgrades.len());
    for u in &c.proxy.allowed_upgrades {
        let u = u.trim().to_ascii_lowercase();
        if u.is_empty() || !u.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(Error::config(
                "proxy.allowed_upgrades",
                format!("not a protocol name: {u:?}"),
            ));
        }
        upgrades.push(u);
    }
    let admin = if c.admin.enabled {
        if c.admin.listen == c.listen && c.listen.port() != 0 {
            return Err(Error::config(
                "admin.listen",
                "must differ from `listen`: the admin listener serves the access token to the reverse proxy and must not be reachable by browsers",
            ));
        }
        Some(c.admin.listen)
    } else {
        None
    };
    // What the declared forward-auth proxy cannot carry: refused here rather than
    // found out as logged-out users after the first renewal.
    if c.admin.forward_auth == Some(ForwardAuth::Nginx) && c.session.chunking {
        return Err(Error::config(
            "session.chunking",
            "must be false with admin.forward_auth = \"nginx\": auth_request_set passes on only one Set-Cookie of verify's answer, so a renewed session split over several cookies would reach the browser broken",
        ));
    }
    Ok((policy, upgrades, admin))
}

/// `[server]`: validated by sallyport-serve, which names the setting.
fn server_options(c: &sallyport_serve::ServerConfig) -> Result<sallyport_serve::Options, Error> {
    c.options(sallyport_serve::Options::default().header_read_timeout)
        .map_err(|e| Error::config(e.setting, e.message))
}

/// A value that does not parse (an unknown `session.same_site`, say), named as every
/// other refusal names its setting: `section.key`, whichever source it came from.
fn load_error(e: figment::Error) -> Error {
    let message = e
        .into_iter()
        .map(|e| {
            if e.path.is_empty() {
                e.to_string()
            } else {
                format!("`{}`: {e}", e.path.join(".").to_ascii_lowercase())
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    Error::Load(message)
}

/// A secret id as TOML or an environment variable gives it: `1` is a number there, `"1"`
/// a string; iron's ids are their decimal text either way.
fn secret_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::Number(n) => n.to_string(),
        Id::Text(s) => s,
    }))
}

/// Iron's password set, checked by iron (length in UTF-16 code units, ids); the error
/// names the setting the secret came from.
fn passwords(s: &SessionSection) -> Result<Passwords, Error> {
    let set = secret_set(s)?;
    match &s.seal_id {
        None => Ok(set),
        Some(id) => {
            let ids = set.ids().collect::<Vec<_>>().join(", ");
            set.sealing_with(id).map_err(|_| {
                Error::config(
                    "session.seal_id",
                    format!("no secret with id {id:?} (the configured ids are {ids})"),
                )
            })
        }
    }
}

fn secret_set(s: &SessionSection) -> Result<Passwords, Error> {
    if !s.secrets.is_empty() {
        return Passwords::from_pairs(s.secrets.clone()).map_err(|e| {
            let id = s
                .secrets
                .iter()
                .find(|(_, secret)| sallyport_iron::Password::new(secret.as_str()).is_err())
                .map(|(id, _)| format!(" (id {id})"))
                .unwrap_or_default();
            Error::config("session.secrets", format!("{e}{id}"))
        });
    }
    let Some(secret) = &s.secret else {
        return Err(Error::config(
            "SESSION_SECRET",
            format!(
                "no sealing secret: set SESSION_SECRET (at least {MIN_SECRET_LEN} characters) or session.secrets"
            ),
        ));
    };
    Passwords::single(secret.as_str()).map_err(|e| {
        Error::config(
            "SESSION_SECRET",
            format!("the sealing secret is refused: {e}"),
        )
    })
}

/// The session cookie, validated by sallyport-session: its rule for names, prefixes,
/// `Domain`, `SameSite` and size is the one rule, and its error is reported under the
/// gateway's name for the setting.
fn cookie_codec(s: &SessionSection, passwords: Passwords) -> Result<CookieCodec, Error> {
    let mut cfg = SessionConfig::new(passwords)
        .ttl(Duration::from_secs(s.ttl_secs))
        .secure(s.secure)
        .same_site(s.same_site)
        .path("/")
        .chunking(s.chunking);
    if let Some(name) = &s.cookie_name {
        cfg = cfg.cookie_name(name.as_str());
    }
    if let Some(d) = &s.domain {
        cfg = cfg.domain(d.as_str());
    }
    CookieCodec::try_new(cfg).map_err(|e| match e {
        sallyport_session::Error::Config { setting, message } => {
            let setting = match setting {
                "cookie_name" => "session.cookie_name",
                "secure" => "session.secure",
                "same_site" => "session.same_site",
                "domain" => "session.domain",
                "ttl" => "session.ttl_secs",
                _ => "session",
            };
            Error::config(setting, message)
        }
        other => Error::config("session", other.to_string()),
    })
}

fn parse_upstream(raw: &str) -> Result<Upstream, Error> {
    let uri: Uri = raw
        .parse()
        .map_err(|e| Error::config("upstream", format!("not a URL ({e}): {raw:?}")))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if scheme != "http" {
        return Err(Error::config(
            "upstream",
            format!("must be an http:// URL (the upstream is on a trusted network), got {raw:?}"),
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(Error::config("upstream", format!("no host in {raw:?}")));
    };
    if uri.query().is_some() {
        return Err(Error::config("upstream", "must not carry a query string"));
    }
    let path = uri.path().trim_end_matches('/');
    Ok(Upstream {
        base: format!("http://{authority}{path}"),
        authority: authority.to_string(),
    })
}

fn parse_prefix(raw: &str) -> Result<String, Error> {
    let p = raw.trim_end_matches('/');
    if !p.starts_with('/')
        || p.len() < 2
        || p.contains("//")
        || !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
    {
        return Err(Error::config(
            "prefix",
            format!("must be a path such as /auth (not the root), got {raw:?}"),
        ));
    }
    Ok(p.to_owned())
}

fn public_globs(globs: &[String], prefix: &str) -> Result<GlobSet, Error> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::config("public_paths", format!("bad glob {g:?}: {e}")))?;
        b.add(glob);
    }
    let set = b
        .build()
        .map_err(|e| Error::config("public_paths", e.to_string()))?;
    for probe in [
        prefix.to_owned(),
        format!("{prefix}/"),
        format!("{prefix}/login"),
        format!("{prefix}/logout"),
        format!("{prefix}/session"),
    ] {
        if set.is_match(&probe) {
            return Err(Error::config(
                "public_paths",
                format!(
                    "a public path glob matches {probe}, which collides with the gateway prefix {prefix}"
                ),
            ));
        }
    }
    Ok(set)
}

fn check_url(setting: &'static str, raw: &str) -> Result<String, Error> {
    let url = url::Url::parse(raw)
        .map_err(|e| Error::config(setting, format!("not a URL ({e}): {raw:?}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::config(setting, "must be an http(s) URL"));
    }
    Ok(url.to_string())
}

fn backend_settings(b: &BackendSection) -> Result<BackendSettings, Error> {
    let kind = b.kind;
    let (login_url, refresh_url, logout_url) = match kind {
        BackendKind::Json => {
            let login = b.login_url.as_deref().ok_or_else(|| {
                Error::config("backend.login_url", "required for the json backend")
            })?;
            let refresh = b.refresh_url.as_deref().ok_or_else(|| {
                Error::config("backend.refresh_url", "required for the json backend")
            })?;
            (
                check_url("backend.login_url", login)?,
                check_url("backend.refresh_url", refresh)?,
                b.logout_url
                    .as_deref()
                    .map(|u| check_url("backend.logout_url", u))
                    .transpose()?,
            )
        }
        BackendKind::Oidc => {
            // The endpoints come from discovery at start-up (`oidc::discover`); until
            // then they are the issuer itself, which nothing calls.
            let issuer = b
                .issuer
                .as_deref()
                .ok_or_else(|| Error::config("backend.issuer", "required for the oidc backend"))?;
            if b.client_id.as_deref().is_none_or(str::is_empty) {
                return Err(Error::config(
                    "backend.client_id",
                    "required for the oidc backend",
                ));
            }
            let issuer = check_url("backend.issuer", issuer)?;
            (issuer.clone(), issuer, None)
        }
        BackendKind::OAuth2 => {
            let token = b.token_url.as_deref().ok_or_else(|| {
                Error::config("backend.token_url", "required for the oauth2 backend")
            })?;
            if b.client_id.as_deref().is_none_or(str::is_empty) {
                return Err(Error::config(
                    "backend.client_id",
                    "required for the oauth2 backend",
                ));
            }
            let token = check_url("backend.token_url", token)?;
            (
                token.clone(),
                token,
                b.revocation_url
                    .as_deref()
                    .map(|u| check_url("backend.revocation_url", u))
                    .transpose()?,
            )
        }
    };
    if b.client_auth == ClientAuth::PrivateKeyJwt {
        if kind != BackendKind::Oidc {
            return Err(Error::config(
                "backend.client_auth",
                "private_key_jwt is supported with backend.kind = \"oidc\" only",
            ));
        }
        if b.client_secret.is_some() {
            return Err(Error::config(
                "backend.client_secret",
                "must be unset with backend.client_auth = \"private_key_jwt\"",
            ));
        }
    }
    if b.client_auth == ClientAuth::None && b.client_secret.is_some() {
        return Err(Error::config(
            "backend.client_secret",
            "must be unset with backend.client_auth = \"none\" (a public client has no secret)",
        ));
    }
    let client_auth_basic = b.client_auth == ClientAuth::ClientSecretBasic;
    let health_url = match &b.health_url {
        Some(u) => check_url("backend.health_url", u)?,
        None => login_url.clone(),
    };
    if b.timeout_ms == 0 {
        return Err(Error::config(
            "backend.timeout_ms",
            "must be greater than zero",
        ));
    }
    let jwks_url = b
        .jwks_url
        .as_deref()
        .map(|u| check_url("backend.jwks_url", u))
        .transpose()?;
    if jwks_url.is_some() {
        if b.jwt_issuer.as_deref().is_none_or(str::is_empty) {
            return Err(Error::config(
                "backend.jwt_issuer",
                "required with backend.jwks_url",
            ));
        }
        if b.jwt_audience.as_deref().is_none_or(str::is_empty) {
            return Err(Error::config(
                "backend.jwt_audience",
                "required with backend.jwks_url",
            ));
        }
    }
    let client_address_header = http::HeaderName::try_from(b.client_address_header.as_str())
        .map_err(|_| {
            Error::config(
                "backend.client_address_header",
                format!("{:?} is not a header name", b.client_address_header),
            )
        })?;
    Ok(BackendSettings {
        client_address_header,
        kind,
        login_url,
        refresh_url,
        logout_url,
        client_id: b.client_id.clone(),
        client_secret: b.client_secret.clone(),
        client_auth_basic,
        oidc: None,
        assertion: None,
        scope: b.scope.clone(),
        health_url,
        timeout: Duration::from_millis(b.timeout_ms),
        fields: b.fields.clone(),
        jwks_url,
        jwt_issuer: b.jwt_issuer.clone(),
        jwt_audience: b.jwt_audience.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        let mut c = Config::default();
        c.session.secret = Some("x".repeat(32));
        c.session.secure = false;
        c.backend.login_url = Some("http://127.0.0.1:9/api/login".into());
        c.backend.refresh_url = Some("http://127.0.0.1:9/api/refresh-token".into());
        c
    }

    fn setting_of(r: Result<Settings, Error>) -> &'static str {
        match r {
            Err(Error::Config { setting, .. }) => setting,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn base_is_valid() {
        let s = base().validate().unwrap();
        assert_eq!(s.cookie_name(), "sallyport");
        assert_eq!(s.prefix(), "/auth");
    }

    #[test]
    fn short_secret_is_refused_naming_the_setting() {
        let mut c = base();
        c.session.secret = Some("short".into());
        assert_eq!(setting_of(c.validate()), "SESSION_SECRET");
        c.session.secret = None;
        assert_eq!(setting_of(c.validate()), "SESSION_SECRET");
        c.session.secrets.insert("1".into(), "y".repeat(31));
        assert_eq!(setting_of(c.validate()), "session.secrets");
    }

    #[test]
    fn secret_length_is_irons_utf16_count() {
        // 16 emoji: 16 chars but 32 UTF-16 code units, which iron-session accepts.
        // The gateway used to count chars and refuse it.
        let emoji = "\u{1F511}".repeat(16);
        assert_eq!(emoji.chars().count(), 16);
        assert!(sallyport_iron::Password::new(emoji.as_str()).is_ok());
        let mut c = base();
        c.session.secret = Some(emoji.clone());
        c.validate().expect("SESSION_SECRET of 32 UTF-16 units");
        let mut c = base();
        c.session.secret = None;
        c.session.secrets.insert("1".into(), emoji.clone());
        c.validate()
            .expect("session.secrets entry of 32 UTF-16 units");
        // 31 units are refused, whatever the chars: 15 emoji and a letter, 31 `€`.
        for short in ["\u{1F511}".repeat(15) + "a", "\u{20AC}".repeat(31)] {
            assert!(sallyport_iron::Password::new(short.as_str()).is_err());
            let mut c = base();
            c.session.secret = Some(short.clone());
            assert_eq!(setting_of(c.validate()), "SESSION_SECRET");
            let mut c = base();
            c.session.secret = None;
            c.session.secrets.insert("1".into(), emoji.clone());
            c.session.secrets.insert("7".into(), short);
            match c.validate() {
                Err(Error::Config { setting, message }) => {
                    assert_eq!(setting, "session.secrets");
                    assert!(message.contains("id 7"), "{message}");
                }
                other => panic!("{:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn seal_id_pins_the_sealing_secret_and_must_name_one_of_the_set() {
        let mut c = base();
        c.session.secret = None;
        c.session.secrets.insert("1".into(), "a".repeat(32));
        c.session.secrets.insert("2".into(), "b".repeat(32));
        let sealing = |c: &Config| {
            c.validate()
                .map(|s| s.cookies.config().passwords().current_id().to_owned())
        };
        assert_eq!(sealing(&c).unwrap(), "2", "unpinned: the highest id seals");
        // TOML and the environment give a number; a string is read the same.
        for text in ["[session]\nseal_id = 1\n", "[session]\nseal_id = \"1\"\n"] {
            let loaded = load_toml(text).expect(text);
            assert_eq!(loaded.session.seal_id.as_deref(), Some("1"), "{text}");
        }
        c.session.seal_id = Some("1".into());
        assert_eq!(sealing(&c).unwrap(), "1");
        c.session.seal_id = Some("3".into());
        match c.validate() {
            Err(Error::Config { setting, message }) => {
                assert_eq!(setting, "session.seal_id");
                assert!(message.contains("1, 2"), "{message}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn cookie_rules_are_sessions_and_name_the_setting() {
        // What sallyport-session refuses, the gateway refuses at validation, naming its
        // own setting (these used to pass `validate` and fail later, or not at all).
        for (name, secure, setting) in [
            ("a".repeat(4100), false, "session.cookie_name"),
            ("bad name".into(), false, "session.cookie_name"),
            ("a=b".into(), false, "session.cookie_name"),
            ("__Secure-app".into(), false, "session.secure"),
            ("__host-app".into(), false, "session.secure"),
        ] {
            let mut c = base();
            c.session.secure = secure;
            c.session.cookie_name = Some(name.clone());
            assert_eq!(setting_of(c.validate()), setting, "{name:.20}");
        }
        let mut c = base();
        c.session.cookie_name = Some("app".into());
        c.session.domain = Some("exa mple.com".into());
        assert_eq!(setting_of(c.validate()), "session.domain");
        let mut c = base();
        c.session.secure = true;
        c.session.domain = Some("example.com".into());
        assert_eq!(setting_of(c.validate()), "session.domain");
        let mut c = base();
        c.session.same_site = SameSite::None;
        assert_eq!(setting_of(c.validate()), "session.same_site");
        let mut c = base();
        c.session.ttl_secs = u64::MAX;
        assert_eq!(setting_of(c.validate()), "session.ttl_secs");
        // And what session (cookie@2, so iron-session) accepts, the gateway accepts.
        let mut c = base();
        c.session.cookie_name = Some("my-app/session".into());
        assert_eq!(c.validate().unwrap().cookie_name(), "my-app/session");
    }

    fn load_toml(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path)).map_err(|e| e.to_string())
    }

    #[test]
    fn enums_are_read_once_and_unknown_values_name_the_setting() {
        let c = load_toml("[session]\nsame_site = \"Strict\"\n").unwrap();
        assert_eq!(c.session.same_site, SameSite::Strict);
        let err = load_toml("[session]\nsame_site = \"lox\"\n").unwrap_err();
        assert!(err.contains("`session.same_site`"), "{err}");
        assert!(err.contains("expected lax, strict or none"), "{err}");
        let c = load_toml("[backend]\nkind = \"oauth2\"\nclient_auth = \"client_secret_post\"\n")
            .unwrap();
        assert_eq!(c.backend.kind, BackendKind::OAuth2);
        assert_eq!(c.backend.client_auth, ClientAuth::ClientSecretPost);
        let err = load_toml("[backend]\nkind = \"soap\"\n").unwrap_err();
        assert!(err.contains("`backend.kind`"), "{err}");
        let err = load_toml("[backend]\nclient_auth = \"client_secret_jwt\"\n").unwrap_err();
        assert!(err.contains("`backend.client_auth`"), "{err}");
        // Known, but for the oidc backend only: refused at validation, naming the setting.
        let mut c = load_toml("[backend]\nclient_auth = \"private_key_jwt\"\n").unwrap();
        c.session.secret = Some("x".repeat(32));
        c.session.secure = false;
        c.backend.login_url = Some("http://127.0.0.1:9/l".into());
        c.backend.refresh_url = Some("http://127.0.0.1:9/r".into());
        assert_eq!(setting_of(c.validate()), "backend.client_auth");
    }

    #[test]
    fn backend_fields_keep_the_clients_defaults_and_refuse_unknown_keys() {
        let c = load_toml("[backend.fields]\naccess_token = \"access_token\"\n").unwrap();
        assert_eq!(c.backend.fields.access_token, "access_token");
        assert_eq!(
            c.backend.fields.refresh_token,
            sallyport_backend::JsonFields::default().refresh_token
        );
        let err = load_toml("[backend.fields]\nacess_token = \"x\"\n").unwrap_err();
        assert!(err.contains("backend.fields"), "{err}");
    }

    #[test]
    fn bad_upstream_is_refused() {
        for bad in [
            "not a url",
            "ftp://x",
            "https://x",
            "http://",
            "http://h/?q=1",
        ] {
            let mut c = base();
            c.upstream = bad.into();
            assert_eq!(setting_of(c.validate()), "upstream", "{bad}");
        }
    }

    #[test]
    fn prefix_colliding_with_public_paths_is_refused() {
        let mut c = base();
        c.public_paths = vec!["/auth/**".into()];
        assert_eq!(setting_of(c.validate()), "public_paths");
        let mut c = base();
        c.public_paths = vec!["/**".into()];
        assert_eq!(setting_of(c.validate()), "public_paths");
        let mut c = base();
        c.public_paths = vec!["/static/**".into()];
        assert!(c.validate().is_ok());
        let mut c = base();
        c.prefix = "/".into();
        assert_eq!(setting_of(c.validate()), "prefix");
    }

    #[test]
    fn insecure_cookie_on_public_address_is_refused() {
        let mut c = base();
        c.listen = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(setting_of(c.validate()), "session.secure");
        c.session.secure = true;
        let s = c.validate().unwrap();
        assert_eq!(s.cookie_name(), "__Host-sallyport");
    }

    #[test]
    fn oauth2_needs_token_url_and_client() {
        let mut c = base();
        c.backend.kind = BackendKind::OAuth2;
        assert_eq!(setting_of(c.validate()), "backend.token_url");
        c.backend.token_url = Some("http://127.0.0.1:9/oauth/token".into());
        assert_eq!(setting_of(c.validate()), "backend.client_id");
        c.backend.client_id = Some("gw".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn jwks_needs_issuer_and_audience() {
        let mut c = base();
        c.backend.jwks_url = Some("http://127.0.0.1:9/.well-known/jwks.json".into());
        assert_eq!(setting_of(c.validate()), "backend.jwt_issuer");
        c.backend.jwt_issuer = Some("http://127.0.0.1:9".into());
        assert_eq!(setting_of(c.validate()), "backend.jwt_audience");
        c.backend.jwt_audience = Some("sallyport".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn forward_auth_nginx_refuses_chunked_sessions() {
        // Unset (every existing config): chunking stays allowed, verify answers 401.
        let s = base().validate().unwrap();
        assert!(s.cookies.config().is_chunking() && !s.verify_redirects);
        let mut c = base();
        c.admin.forward_auth = Some(ForwardAuth::Nginx);
        assert!(c.session.chunking);
        assert_eq!(setting_of(c.validate()), "session.chunking");
        c.session.chunking = false;
        assert!(!c.validate().unwrap().verify_redirects);
        for fa in [ForwardAuth::Traefik, ForwardAuth::Caddy] {
            let mut c = base();
            c.admin.forward_auth = Some(fa);
            let s = c.validate().unwrap();
            assert!(
                s.cookies.config().is_chunking() && s.verify_redirects,
                "{fa:?}"
            );
        }
    }

    #[test]
    fn forward_auth_names_a_known_proxy() {
        let parse = |text: &str| {
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(text))
                .extract::<Config>()
                .map_err(|e| e.to_string())
        };
        let toml = |v: &str| format!("[admin]\nforward_auth = \"{v}\"\n");
        for (v, want) in [
            ("nginx", ForwardAuth::Nginx),
            ("traefik", ForwardAuth::Traefik),
            ("caddy", ForwardAuth::Caddy),
        ] {
            assert_eq!(parse(&toml(v)).unwrap().admin.forward_auth, Some(want));
        }
        assert!(parse(&toml("haproxy")).is_err());
    }

    #[test]
    fn request_surface_settings_are_checked() {
        let mut c = base();
        c.admin.listen = c.listen;
        assert_eq!(setting_of(c.validate()), "admin.listen");
        c.admin.enabled = false;
        assert!(c.validate().unwrap().admin_listen().is_none());
        let s = base().validate().unwrap();
        assert_eq!(s.admin_listen(), Some("127.0.0.1:9090".parse().unwrap()));
        for bad in ["", "websocket, h2c"] {
            let mut c = base();
            c.proxy.allowed_upgrades = vec![bad.into()];
            assert_eq!(
                setting_of(c.validate()),
                "proxy.allowed_upgrades",
                "{bad:?}"
            );
        }
        for bad in ["", "*", "x y", "bad:name*"] {
            let mut c = base();
            c.proxy.drop_request_headers = vec![bad.into()];
            assert_eq!(
                setting_of(c.validate()),
                "proxy.drop_request_headers",
                "{bad:?}"
            );
        }
        let mut c = base();
        c.proxy.drop_request_headers = vec!["x-user".into(), "x-tenant-*".into()];
        c.proxy.allowed_upgrades = vec!["WebSocket".into()];
        assert_eq!(c.validate().unwrap().allowed_upgrades, ["websocket"]);
    }

    #[test]
    fn bad_client_address_header_is_refused() {
        let mut c = base();
        c.backend.client_address_header = "X Forwarded For".into();
        assert_eq!(setting_of(c.validate()), "backend.client_address_header");
    }

    #[test]
    fn debug_redacts_secret() {
        let c = base();
        assert!(!format!("{c:?}").contains(&"x".repeat(32)));
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../../../config/gateway.example.toml");
        let c: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .unwrap();
        let d = Config::default();
        assert_eq!(c.prefix, d.prefix);
        assert_eq!(c.session.ttl_secs, d.session.ttl_secs);
        assert_eq!(c.session.leeway_secs, d.session.leeway_secs);
        assert_eq!(c.proxy.response_timeout_ms, d.proxy.response_timeout_ms);
        assert_eq!(c.backend.fields.access_token, d.backend.fields.access_token);
        assert_eq!(c.server, d.server);
    }

    #[test]
    fn server_limits_are_checked() {
        let mut c = base();
        c.server.max_connections = 0;
        assert_eq!(setting_of(c.validate()), "server.max_connections");
        let mut c = base();
        c.server.body_idle_timeout_ms = 0;
        assert_eq!(setting_of(c.validate()), "server.body_idle_timeout_ms");
    }

    #[test]
    fn env_and_toml_layering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(
            &path,
            "upstream = \"http://127.0.0.1:4000\"\n[backend]\nlogin_url = \"http://127.0.0.1:9/l\"\nrefresh_url = \"http://127.0.0.1:9/r\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.upstream, "http://127.0.0.1:4000");
        assert_eq!(c.backend.login_url.as_deref(), Some("http://127.0.0.1:9/l"));
        assert!(Config::load(Some(&dir.path().join("missing.toml"))).is_err());
    }
}
