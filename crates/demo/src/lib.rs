//! The demo of Sallyport: a small upstream app ([`app`]) and the orchestration
//! behind `sallyport demo` ([`start`]).
//!
//! `sallyport demo` runs the three parts of a real deployment in one process,
//! all on loopback:
//!
//! ```text
//! browser ──► gateway (cookie ⇄ tokens) ──► demo app (verifies the Bearer token)
//!    │            │  ▲                               │
//!    │            │  └─ back-channel logout ─┐        │
//!    │            └──── login / refresh ──► issuer ◄─┘ JWKS
//!    └──── sign in (code flow: the issuer's page) ──┘
//! ```
//!
//! By default the browser signs in with OpenID Connect ([`Flow::Code`]): the
//! gateway is a relying party (`backend.kind = "oidc"`) of the issuer, which is
//! its OpenID provider — the login page is the issuer's, the gateway is a
//! registered confidential client, and a session ended at the issuer
//! (`sallyport session revoke`) reaches the gateway at once by back-channel
//! logout. [`Flow::Password`] keeps the article's flow: the gateway's own login
//! form posts the password to the issuer's JSON API.
//!
//! State lives in a data directory (the issuer's SQLite file, the sealing
//! secret, the gateway's client secret, the demo user's credentials and the
//! issuer's settings for the admin commands), so a second run reuses the users,
//! keys and sessions of the first. Access tokens live 30 seconds by default so
//! that renewal can be watched happening.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod app;

pub use app::{AppState, CounterSnapshot, Counters};

/// The demo's one error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option is not acceptable; `option` names the command-line flag.
    #[error("invalid {option}: {message}")]
    Option {
        /// The flag, e.g. `--port`.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The data directory or a file in it could not be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A port could not be bound.
    #[error("cannot listen on {addr} ({option}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The flag that chose it.
        option: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The issuer failed to start or to create the demo user.
    #[error("issuer: {0}")]
    Issuer(#[from] sallyport_issuer::Error),
    /// The gateway refused its configuration or failed to start.
    #[error("gateway: {0}")]
    Gateway(#[from] sallyport_gateway::Error),
    /// The demo app's token verifier could not be built.
    #[error("token verifier: {0}")]
    Verifier(#[from] sallyport_jwt::Error),
    /// The demo user exists but its password is not in the data directory.
    #[error(
        "the user `{username}` exists in {db} but {file} is missing; \
         set its password with `sallyport user passwd` or start with an empty --data-dir"
    )]
    LostCredentials {
        /// The demo user's name.
        username: String,
        /// The issuer database file.
        db: PathBuf,
        /// The credentials file that should hold its password.
        file: PathBuf,
    },
    /// Random bytes could not be drawn from the OS.
    #[error("random number generator: {0}")]
    Random(String),
}

/// How the browser signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Flow {
    /// OpenID Connect authorization-code flow with PKCE: the gateway sends the
    /// browser to the issuer's login page and exchanges the code it comes back
    /// with; the issuer tells the gateway by back-channel logout when a session
    /// ends there.
    #[default]
    Code,
    /// The article's flow: the gateway's login form posts username and password
    /// to the issuer's JSON API (`/api/login`, `/api/refresh-token`, `/api/logout`).
    Password,
}

impl Flow {
    /// `code` or `password`, as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Code => "code",
            Flow::Password => "password",
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options of one demo run.
#[derive(Clone)]
pub struct DemoOptions {
    /// Where the issuer's database, the sealing secret and the demo credentials live.
    pub data_dir: PathBuf,
    /// Loopback address for all three parts.
    pub host: IpAddr,
    /// Gateway port, the one the browser uses (0 = any free port).
    pub port: u16,
    /// Issuer port (0 = any free port).
    pub issuer_port: u16,
    /// Demo app port (0 = any free port).
    pub app_port: u16,
    /// Access-token lifetime; short so renewal is visible.
    pub access_token_ttl: Duration,
    /// The demo user's name.
    pub username: String,
    /// The demo user's password, used only when the user is created; a random
    /// one is generated (and stored in the data directory) otherwise.
    pub password: Option<String>,
    /// How the browser signs in (default: the OpenID Connect code flow).
    pub flow: Flow,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("sallyport-demo-data"),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            issuer_port: 0,
            app_port: 0,
            access_token_ttl: Duration::from_secs(30),
            username: "demo".to_owned(),
            password: None,
            flow: Flow::default(),
        }
    }
}

impl fmt::Debug for DemoOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoOptions")
            .field("data_dir", &self.data_dir)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("issuer_port", &self.issuer_port)
            .field("app_port", &self.app_port)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("flow", &self.flow)
            .finish()
    }
}

/// The demo user's login. `Debug` does not print the password.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A running demo: its addresses, the demo login, and the handle to stop it.
#[derive(Debug)]
pub struct RunningDemo {
    /// Where the browser goes: the gateway.
    pub gateway_url: String,
    /// The issuer (token backend), for its `/metrics` and JWKS.
    pub issuer_url: String,
    /// The demo app, reachable directly only to show that it refuses requests
    /// without a token.
    pub app_url: String,
    /// The issuer's database URL, for `sallyport user|session|keys --database-url`.
    pub database_url: String,
    /// The issuer's settings file in the data directory, for `sallyport
    /// user|session|keys --config`: the database, the issuer URL and the client
    /// registry, so that `sallyport session revoke` can tell the gateway by
    /// back-channel logout (with `--database-url` alone it cannot).
    pub issuer_config: PathBuf,
    /// How the browser signs in.
    pub flow: Flow,
    /// The demo user's login.
    pub credentials: Credentials,
    /// Whether this run created the demo user (first run on this data directory).
    pub created_user: bool,
    /// Calls seen by the issuer.
    pub counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<std::io::Result<()>>)>,
}

impl RunningDemo {
    /// Stops the three servers: each stops accepting, finishes its requests in
    /// flight and returns. Waits at most `grace` for them.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for (name, task) in self.tasks {
            match tokio::time::timeout(grace, task).await {
                Ok(Ok(Ok(()))) => tracing::debug!(part = name, "stopped"),
                Ok(Ok(Err(err))) => tracing::warn!(part = name, error = %err, "server failed"),
                Ok(Err(err)) => tracing::warn!(part = name, error = %err, "server task failed"),
                Err(_) => tracing::warn!(part = name, "did not stop in time; abandoned"),
            }
        }
    }
}

/// File names inside the data directory.
const DB_FILE: &str = "issuer.db";
const SECRET_FILE: &str = "session-secret";
const CREDENTIALS_FILE: &str = "demo-credentials";
const CLIENT_SECRET_FILE: &str = "client-secret";
const ISSUER_CONFIG_FILE: &str = "issuer.toml";

/// The gateway's `client_id` at the issuer (code flow).
pub const CLIENT_ID: &str = "demo-gateway";

/// The audience of the demo's access tokens.
const AUDIENCE: &str = "sallyport-demo";

/// Starts issuer, demo app and gateway on loopback and creates the demo user
/// on the first run. Returns once all three are listening.
pub async fn start(options: DemoOptions) -> Result<RunningDemo, Error> {
    if !options.host.is_loopback() {
        return Err(Error::Option {
            option: "--host",
            message: format!(
                "{} is not a loopback address; the demo runs without TLS and must stay on this machine",
                options.host
            ),
        });
    }
    let ttl_secs = options.access_token_ttl.as_secs();
    if !(1..=86_400).contains(&ttl_secs) {
        return Err(Error::Option {
            option: "--access-token-ttl",
            message: "must be between 1 and 86400 seconds".to_owned(),
        });
    }
    let data_dir = prepare_data_dir(&options.data_dir)?;

    // Bind first, so every part can be told the others' real addresses.
    let issuer_listener = bind(options.host, options.issuer_port, "--issuer-port").await?;
    let app_listener = bind(options.host, options.app_port, "--app-port").await?;
    let gateway_listener = bind(options.host, options.port, "--port").await?;
    let issuer_addr = local_addr(&issuer_listener, "--issuer-port")?;
    let app_addr = local_addr(&app_listener, "--app-port")?;
    let gateway_addr = local_addr(&gateway_listener, "--port")?;
    let issuer_url = format!("http://{issuer_addr}");
    let app_url = format!("http://{app_addr}");
    let gateway_url = format!("http://{gateway_addr}");

    // The issuer. In the code flow it is the gateway's OpenID provider, with the
    // gateway registered as a confidential client at the addresses just bound.
    let db_path = data_dir.join(DB_FILE);
    let database_url = format!("sqlite://{}", db_path.display());
    let client_secret = match options.flow {
        Flow::Code => Some(read_or_create_secret(&data_dir, CLIENT_SECRET_FILE)?),
        Flow::Password => None,
    };
    let clients = match &client_secret {
        Some(secret) => vec![sallyport_issuer::config::ClientConfig {
            id: CLIENT_ID.to_owned(),
            secret: Some(secret.clone()),
            redirect_uris: vec![format!("{gateway_url}{PREFIX}/callback")],
            post_logout_redirect_uris: vec![format!("{gateway_url}{SIGNED_OUT}")],
            backchannel_logout_uri: Some(format!("{gateway_url}{PREFIX}/backchannel-logout")),
            backchannel_logout_session_required: true,
            ..sallyport_issuer::config::ClientConfig::default()
        }],
        None => Vec::new(),
    };
    let issuer_config = sallyport_issuer::Config {
        database_url: database_url.clone(),
        listen: issuer_addr.to_string(),
        issuer: issuer_url.clone(),
        audience: AUDIENCE.to_owned(),
        access_token_ttl_secs: ttl_secs,
        clients,
        // The gateway calls the issuer over loopback and names the client in
        // X-Forwarded-For: trust it there, so login limits key on the browser's address.
        http: sallyport_issuer::config::HttpConfig {
            trusted_proxies: vec!["127.0.0.1/32".into(), "::1/128".into()],
            ..sallyport_issuer::config::HttpConfig::default()
        },
        ..sallyport_issuer::Config::default()
    };
    let issuer_config_path = data_dir.join(ISSUER_CONFIG_FILE);
    write_private(&issuer_config_path, &issuer_config_toml(&issuer_config))?;
    let max_body_bytes = issuer_config.max_body_bytes;
    let issuer = sallyport_issuer::Issuer::open(issuer_config).await?;
    let (credentials, created_user) = ensure_demo_user(&issuer, &data_dir, &options).await?;

    // The demo app, verifying tokens against the issuer's JWKS.
    let counters = Arc::new(Counters::default());
    let mut verifier_config = sallyport_jwt::VerifierConfig::new(
        format!("{issuer_url}/.well-known/jwks.json"),
        issuer_url.clone(),
        AUDIENCE,
    );
    // One process, one clock: no skew to allow for, so the page's "expires"
    // is exactly when the app starts refusing the token.
    verifier_config.leeway = Duration::from_secs(1);
    let verifier = sallyport_jwt::Verifier::new(verifier_config)?;
    let app_router = app::router(
        AppState::new(verifier, PREFIX, counters.clone())
            .with_provider_logout(options.flow == Flow::Code),
    );

    // The issuer serves before the gateway is built: an oidc gateway reads the
    // provider's discovery document while it starts.
    let issuer_router = issuer.router().layer(axum::middleware::from_fn({
        let counters = counters.clone();
        move |req: Request, next: Next| {
            count_issuer_calls(counters.clone(), max_body_bytes, req, next)
        }
    }));
    let (shutdown, stop) = watch::channel(false);
    let issuer_task = spawn_server(issuer_listener, issuer_router, stop.clone());

    let gateway = match build_gateway(
        gateway_addr,
        &app_url,
        &issuer_url,
        &data_dir,
        ttl_secs,
        client_secret,
        options.flow,
    )
    .await
    {
        Ok(gateway) => gateway,
        Err(err) => {
            let _ = shutdown.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), issuer_task).await;
            return Err(err);
        }
    };

    let tasks = vec![
        (
            "gateway",
            spawn_server(gateway_listener, gateway.router(), stop.clone()),
        ),
        ("demo app", spawn_server(app_listener, app_router, stop)),
        ("issuer", issuer_task),
    ];
    Ok(RunningDemo {
        gateway_url,
        issuer_url,
        app_url,
        database_url,
        issuer_config: issuer_config_path,
        flow: options.flow,
        credentials,
        created_user,
        counters,
        shutdown,
        tasks,
    })
}

/// The gateway's route prefix in the demo.
const PREFIX: &str = "/auth";

/// The demo app's page after RP-initiated logout (public at the gateway).
const SIGNED_OUT: &str = "/signed-out";

/// The gateway in front of the demo app, signing in by `flow` at the issuer.
async fn build_gateway(
    listen: SocketAddr,
    app_url: &str,
    issuer_url: &str,
    data_dir: &Path,
    ttl_secs: u64,
    client_secret: Option<String>,
    flow: Flow,
) -> Result<sallyport_gateway::Gateway, Error> {
    let gateway_url = format!("http://{listen}");
    let mut config = sallyport_gateway::Config {
        listen,
        upstream: app_url.to_owned(),
        ..sallyport_gateway::Config::default()
    };
    config.session.secret = Some(read_or_create_secret(data_dir, SECRET_FILE)?);
    // Plain http on loopback: browsers drop `Secure` cookies on http origins
    // other than localhost, and the gateway allows `secure = false` only here.
    config.session.secure = false;
    config.session.leeway_secs = renewal_leeway(ttl_secs);
    // Logouts survive a restart of the demo: the durable record lives with its data.
    config.store.state_dir = Some(data_dir.join("gateway-state"));
    match flow {
        Flow::Code => {
            // The redirect URI the issuer has registered is built from it.
            config.public_origin = Some(gateway_url.clone());
            config.backend.kind = sallyport_gateway::BackendKind::Oidc;
            config.backend.issuer = Some(issuer_url.to_owned());
            config.backend.client_id = Some(CLIENT_ID.to_owned());
            config.backend.client_secret = client_secret;
            // The issuer knows these three scopes; `offline_access` asks for the
            // refresh token the gateway renews with.
            config.backend.scope = Some("openid profile offline_access".to_owned());
            // Back from the issuer's end-session endpoint to a page that needs no
            // session and tells the other tabs.
            config.backend.post_logout_redirect_uri = Some(format!("{gateway_url}{SIGNED_OUT}"));
            config.public_paths = vec![SIGNED_OUT.to_owned()];
        }
        Flow::Password => {
            config.backend.login_url = Some(format!("{issuer_url}/api/login"));
            config.backend.refresh_url = Some(format!("{issuer_url}/api/refresh-token"));
            config.backend.logout_url = Some(format!("{issuer_url}/api/logout"));
            config.backend.jwks_url = Some(format!("{issuer_url}/.well-known/jwks.json"));
            config.backend.jwt_issuer = Some(issuer_url.to_owned());
            config.backend.jwt_audience = Some(AUDIENCE.to_owned());
            config.login.title = "Sign in to the demo".to_owned();
        }
    }
    // No forward-auth in the demo: the gateway proxies the app itself, so there is no
    // admin listener (verify, health, metrics) to bind.
    config.admin.enabled = false;
    let settings = config.validate()?;
    Ok(sallyport_gateway::Gateway::new(settings).await?)
}

/// The issuer's settings as TOML, for `sallyport user|session|keys --config`:
/// what those commands need to act as this issuer (its database, its URL —
/// the `iss` of the logout tokens `session revoke` sends — and the client
/// registry with the back-channel logout address). The client secret is
/// written as its SHA-256 only.
///
/// Hand-written rather than through a TOML serializer: a handful of keys, and
/// a JSON string literal is a valid TOML basic string (the same escapes), so
/// `serde_json` quotes the values safely.
fn issuer_config_toml(c: &sallyport_issuer::Config) -> String {
    use sha2::Digest as _;
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    let list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned());
    let mut out = format!(
        "# Written by `sallyport demo` at every start (the ports may change); edits are lost.\n\
         # Use it with the admin commands, e.g.\n\
         #   sallyport session revoke --config <this file> --user demo\n\
         database_url = {}\n\
         issuer = {}\n\
         audience = {}\n\
         access_token_ttl_secs = {}\n",
        q(&c.database_url),
        q(&c.issuer),
        q(&c.audience),
        c.access_token_ttl_secs,
    );
    for client in &c.clients {
        out.push_str(&format!("\n[[clients]]\nid = {}\n", q(&client.id)));
        if let Some(secret) = &client.secret {
            let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
            out.push_str(&format!("secret_sha256 = {}\n", q(&digest)));
        }
        out.push_str(&format!(
            "redirect_uris = {}\npost_logout_redirect_uris = {}\n",
            list(&client.redirect_uris),
            list(&client.post_logout_redirect_uris)
        ));
        if let Some(uri) = &client.backchannel_logout_uri {
            out.push_str(&format!("backchannel_logout_uri = {}\n", q(uri)));
        }
        out.push_str(&format!(
            "backchannel_logout_session_required = {}\n",
            client.backchannel_logout_session_required
        ));
    }
    out
}

/// Counts the issuer's login, refresh and logout calls: the numbers the demo
/// page shows and the browser tests check (one renewal per expiry).
///
/// | counter | password flow | code flow |
/// | --- | --- | --- |
/// | logins | `POST /api/login` | `POST /oauth/token` with `grant_type=authorization_code` (or `password`) |
/// | refreshes | `POST /api/refresh-token` | `POST /oauth/token` with `grant_type=refresh_token` |
/// | logouts | `POST /api/logout` | `POST /oauth/revoke` (the gateway's logout) |
/// | end_sessions | — | `GET`/`POST /oauth/logout` (RP-initiated logout in the browser) |
///
/// Every call is counted, answered or refused. Telling a code exchange from a
/// refresh needs the form's `grant_type`, so the body of `POST /oauth/token`
/// is read here — at most `max_body_bytes` (the issuer's own limit; a larger
/// body is answered 413 as the issuer would) — and handed on unchanged.
pub async fn count_issuer_calls(
    counters: Arc<Counters>,
    max_body_bytes: usize,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let counter = match (method.as_str(), req.uri().path()) {
        ("POST", "/api/login") => Some(&counters.logins),
        ("POST", "/api/refresh-token") => Some(&counters.refreshes),
        ("POST", "/api/logout" | "/oauth/revoke") => Some(&counters.logouts),
        ("GET" | "POST", "/oauth/logout") => Some(&counters.end_sessions),
        ("POST", "/oauth/token") => {
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, max_body_bytes).await {
                Ok(bytes) => bytes,
                Err(err) => return body_error(err),
            };
            let grant = form_value(&bytes, "grant_type");
            let counter = match grant.as_deref() {
                Some("authorization_code" | "password") => Some(&counters.logins),
                Some("refresh_token") => Some(&counters.refreshes),
                _ => None,
            };
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            return next
                .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await;
        }
        _ => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    next.run(req).await
}

/// The first value of `name` in a form body (`application/x-www-form-urlencoded`).
fn form_value(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A body that could not be read: too large (413, as the issuer answers it) or
/// broken off (400).
fn body_error(err: axum::Error) -> Response {
    use axum::response::IntoResponse as _;
    let too_large = err.into_inner().is::<http_body_util::LengthLimitError>();
    let (status, code) = if too_large {
        (
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        )
    } else {
        (axum::http::StatusCode::BAD_REQUEST, "invalid_request")
    };
    (status, axum::Json(serde_json::json!({ "error": code }))).into_response()
}

/// The gateway renews when the token expires within the leeway. Its default
/// (30 s) would renew a 30 s demo token on every request, so the demo uses a
/// sixth of the lifetime: a 30 s token is renewed in its last 5 seconds.
pub fn renewal_leeway(ttl_secs: u64) -> u64 {
    (ttl_secs / 6).clamp(1, 30)
}

fn spawn_server(
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    // sallyport-serve rather than axum::serve: header read timeout (slowloris), request
    // body and send timeouts, connection caps (the `[server]` defaults) and WebSocket
    // upgrades, the same way the standalone issuer and gateway serve.
    let options = sallyport_serve::Options {
        drain_timeout: std::time::Duration::from_secs(5),
        ..sallyport_serve::Options::default()
    };
    tokio::spawn(sallyport_serve::serve(
        listener,
        router,
        options,
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        },
    ))
}

async fn bind(host: IpAddr, port: u16, option: &'static str) -> Result<TcpListener, Error> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr,
        option,
        source,
    })
}

fn local_addr(listener: &TcpListener, option: &'static str) -> Result<SocketAddr, Error> {
    listener.local_addr().map_err(|source| Error::Bind {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        option,
        source,
    })
}

fn prepare_data_dir(dir: &Path) -> Result<PathBuf, Error> {
    let io = |source| Error::DataDir {
        path: dir.to_owned(),
        source,
    };
    // 0700: it holds the session secret, the demo password and the issuer's database.
    sallyport_issuer::files::create_private_dir(dir).map_err(io)?;
    // Absolute, so the printed database URL works from any directory.
    std::fs::canonicalize(dir).map_err(io)
}

/// A secret kept in the data directory (mode 0600), created on the first run:
/// the gateway's sealing secret, so that sessions survive a restart of the
/// demo, and its client secret at the issuer.
fn read_or_create_secret(dir: &Path, file: &str) -> Result<String, Error> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(secret) if secret.trim().len() >= 32 => Ok(secret.trim().to_owned()),
        Ok(_) => Err(Error::DataDir {
            path,
            source: std::io::Error::other("the secret is shorter than 32 characters"),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_hex(32)?;
            write_private(&path, &secret)?;
            Ok(secret)
        }
        Err(source) => Err(Error::DataDir { path, source }),
    }
}

/// Reads the demo credentials, or creates the demo user and stores them.
async fn ensure_demo_user(
    issuer: &sallyport_issuer::Issuer,
    dir: &Path,
    options: &DemoOptions,
) -> Result<(Credentials, bool), Error> {
    let path = dir.join(CREDENTIALS_FILE);
    if let Some(credentials) = read_credentials(&path)? {
        // The file is written before the user is created, so a run that was
        // killed in between finishes the job here.
        let created = create_user(issuer, &credentials).await?;
        return Ok((credentials, created));
    }
    let password = match &options.password {
        Some(p) => p.clone(),
        None => random_hex(12)?,
    };
    let credentials = Credentials {
        username: options.username.clone(),
        password,
    };
    write_private(
        &path,
        &format!("{}\n{}\n", credentials.username, credentials.password),
    )?;
    if create_user(issuer, &credentials).await? {
        Ok((credentials, true))
    } else {
        let _ = std::fs::remove_file(&path);
        Err(Error::LostCredentials {
            username: credentials.username,
            db: dir.join(DB_FILE),
            file: path,
        })
    }
}

/// Creates the user; `false` when it already exists.
async fn create_user(issuer: &sallyport_issuer::Issuer, c: &Credentials) -> Result<bool, Error> {
    match issuer
        .admin()
        .add_user(
            &c.username,
            &c.password,
            Some("Demo User"),
            &["user", "demo"],
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(sallyport_issuer::Error::UserExists(_)) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

fn read_credentials(path: &Path) -> Result<Option<Credentials>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut lines = text.lines();
            match (lines.next(), lines.next()) {
                (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok(Some(Credentials {
                    username: u.to_owned(),
                    password: p.to_owned(),
                })),
                _ => Err(Error::DataDir {
                    path: path.to_owned(),
                    source: std::io::Error::other("expected two lines: username, password"),
                }),
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::DataDir {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a file readable only by its owner (it holds a secret).
fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write;
    let io = |source| Error::DataDir {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leeway_is_a_sixth_of_the_lifetime_within_bounds() {
        assert_eq!(renewal_leeway(30), 5);
        assert_eq!(renewal_leeway(4), 1);
        assert_eq!(renewal_leeway(1), 1);
        assert_eq!(renewal_leeway(900), 30);
    }

    #[test]
    fn debug_never_prints_passwords() {
        let c = Credentials {
            username: "demo".into(),
            password: "hunter2-secret".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let o = DemoOptions {
            password: Some("hunter2-secret".into()),
            ..DemoOptions::default()
        };
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn session_secret_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = read_or_create_secret(dir.path(), SECRET_FILE).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(
            read_or_create_secret(dir.path(), SECRET_FILE).unwrap(),
            first
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "readable by the owner only");
        }
    }

    #[test]
    fn issuer_settings_file_parses_back_and_quotes_odd_paths() {
        let config = sallyport_issuer::Config {
            database_url: "sqlite:///tmp/we\"ird\\dir\n/issuer.db".into(),
            issuer: "http://127.0.0.1:4000".into(),
            clients: vec![sallyport_issuer::config::ClientConfig {
                id: CLIENT_ID.into(),
                secret: Some("s".repeat(40)),
                redirect_uris: vec!["http://127.0.0.1:8080/auth/callback".into()],
                backchannel_logout_uri: Some(
                    "http://127.0.0.1:8080/auth/backchannel-logout".into(),
                ),
                ..Default::default()
            }],
            ..sallyport_issuer::Config::default()
        };
        let text = issuer_config_toml(&config);
        assert!(!text.contains(&"s".repeat(40)), "no clear secret");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ISSUER_CONFIG_FILE);
        std::fs::write(&path, &text).unwrap();
        let back = sallyport_issuer::Config::load(Some(&path)).unwrap();
        assert_eq!(back.database_url, config.database_url);
        assert_eq!(back.issuer, config.issuer);
        assert_eq!(back.clients.len(), 1);
        let c = &back.clients[0];
        assert_eq!(c.secret, None);
        assert_eq!(c.secret_sha256.as_deref().map(str::len), Some(64));
        assert_eq!(c.redirect_uris, config.clients[0].redirect_uris);
        assert_eq!(
            c.backchannel_logout_uri,
            config.clients[0].backchannel_logout_uri
        );
    }

    #[test]
    fn a_short_session_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SECRET_FILE), "short").unwrap();
        let err = read_or_create_secret(dir.path(), SECRET_FILE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter than 32"), "{err}");
    }

    #[test]
    fn credentials_file_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CREDENTIALS_FILE);
        assert!(read_credentials(&path).unwrap().is_none());
        write_private(&path, "demo\npa55word\n").unwrap();
        let c = read_credentials(&path).unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("demo", "pa55word")
        );
        std::fs::write(&path, "only-one-line").unwrap();
        assert!(read_credentials(&path).is_err());
    }

    #[tokio::test]
    async fn a_non_loopback_host_is_refused() {
        let options = DemoOptions {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ..DemoOptions::default()
        };
        let err = start(options).await.unwrap_err().to_string();
        assert!(err.contains("--host"), "{err}");
    }

    #[tokio::test]
    async fn a_zero_ttl_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = DemoOptions {
            data_dir: dir.path().to_owned(),
            access_token_ttl: Duration::ZERO,
            ..DemoOptions::default()
        };
        let err = start(options).await.unwrap_err().to_string();
        assert!(err.contains("--access-token-ttl"), "{err}");
    }
}
