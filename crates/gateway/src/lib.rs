//! The Sallyport gateway: a backend-for-frontend in front of any web app.
//!
//! It logs users in against a token backend, keeps both tokens in a sealed
//! (iron-session compatible) cookie, renews the access token before it expires —
//! once per session however many requests are in flight — and reverse-proxies every
//! request to the upstream app with `Authorization: Bearer <access token>`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sallyport_gateway::{Config, Gateway, serve};
//! let settings = Config::load(Some("gateway.toml".as_ref()))?.validate()?;
//! // One event loop per core, like nginx's worker processes.
//! let loops = std::thread::available_parallelism()?.get();
//! let listeners = sallyport_gateway::bind(settings.listen(), loops)?;
//! let admin = match settings.admin_listen() {
//!     Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
//!     None => None,
//! };
//! let gateway = Gateway::new(settings).await?;
//! serve(listeners, admin, gateway).await?;
//! # Ok(()) }
//! ```
//!
//! Routes, the seven middleware steps and the error model are described in docs/design.md
//! ("The gateway") and docs/gateway.md.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{any, get, post};

mod auth;
mod backend;
mod config;
mod error;
mod forward;
mod guard;
mod metrics;
mod observe;
mod oidc;
mod page;
mod proxy;
mod reload;
mod renew;
mod routes;
mod session_cache;
mod state;
mod store;
mod token;
mod verify;

pub use backend::BackendError;
pub use config::{
    AdminSection, BackendKind, BackendSection, ClientAuth, Config, FieldNames, ForwardAuth,
    LoginSection, MIN_SECRET_LEN, ProxySection, SessionSection, Settings, StoreSection,
};
pub use error::{ConfigError, Error};
pub use guard::{OriginPolicy, canonical_path, is_cross_site, public_path, safe_next};
pub use oidc::OidcSession;
pub use reload::Reloaded;
#[cfg(unix)]
pub use reload::reload_on_sighup;
/// `session.same_site`'s type: the session layer's own enum, so the configuration holds
/// exactly what the cookie is written with.
pub use sallyport_session::SameSite;
pub use state::{Freshness, SessionData};

/// The source of "now" for every expiry decision (time is a parameter): the workspace's
/// one clock trait and its wall, manual and offset clocks, from `sallyport-clock`.
pub use sallyport_clock::{Clock, ManualClock, OffsetClock, SystemClock};

/// A configured gateway; cheap to clone. Its configuration can be replaced while it
/// serves ([`Gateway::reload`]).
#[derive(Clone)]
pub struct Gateway {
    pub(crate) live: Arc<reload::Live>,
}

/// One configuration and what it runs with. A request takes the current one once
/// ([`Gateway::current`]) and uses it from start to end; a reload swaps in a new one that
/// shares the state that outlives configurations (see `reload.rs`).
pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) cookies: sallyport_session::CookieCodec,
    /// Unsealed sessions by sealed-cookie digest (decrypt + parse only; see the module).
    pub(crate) sessions: Arc<session_cache::SessionCache>,
    pub(crate) backend: backend::Backend,
    pub(crate) renewer: renew::Renewer,
    /// Logged-out session ids, remembered for the cookie's lifetime (PP-05, PP-06),
    /// shared through Redis when `store.redis_url` is set.
    pub(crate) logged_out: Arc<store::LogoutStore>,
    pub(crate) client: proxy::HttpClient,
    pub(crate) page: page::LoginPage,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) clock: Arc<dyn Clock>,
    /// `backend.kind = "oidc"`: the relying party (discovery, verifiers, replay caches).
    pub(crate) oidc: Option<Arc<oidc::Oidc>>,
}

impl Gateway {
    /// Builds a gateway on the wall clock.
    pub async fn new(settings: Settings) -> Result<Self, Error> {
        Self::with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Builds a gateway on the given clock.
    pub async fn with_clock(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        let mut settings = settings;
        let oidc = oidc::prepare(&mut settings, clock.clone()).await?;
        let cookies = settings.cookies.clone();
        let metrics = metrics::Metrics::new();
        let backend = backend::Backend::new(settings.backend.clone())?.with_oidc(oidc.clone());
        let redis = settings
            .store
            .clone()
            .map(|s| Arc::new(store::Redis::new(s, clock.clone())));
        let call_bound = renew::call_bound(backend.timeout(), settings.renew_grace);
        let remote = redis.clone().map(|redis| renew::Remote {
            redis,
            passwords: settings.passwords().clone(),
            grace: settings.renew_grace,
            call_bound,
        });
        let renew_backend = backend::Backend::new(config::BackendSettings {
            timeout: call_bound,
            ..settings.backend.clone()
        })?
        .with_oidc(oidc.clone());
        let renewer = renew::Renewer::new(
            renew_backend,
            settings.renew_grace,
            backend.timeout(),
            metrics.clone(),
            remote,
            clock.clone(),
        );
        let logged_out = store::LogoutStore::open(
            settings.ttl,
            settings.state_dir.as_deref(),
            settings.state_dir_explicit,
            settings.max_logout_records,
            redis.clone(),
            metrics.clone(),
            clock.now_ms(),
        )?;
        for w in logout_finality_warnings(&settings, logged_out.is_durable()) {
            tracing::warn!("{w}");
        }
        let client = proxy::client(&settings);
        let page = page::LoginPage::new(
            settings.login_template.clone(),
            settings.login_title.clone(),
        )?;
        Ok(Self {
            live: Arc::new(reload::Live::new(Inner {
                sessions: Arc::new(session_cache::SessionCache::new(
                    settings.session_cache_entries,
                )),
                settings,
                cookies,
                backend,
                renewer,
                logged_out: Arc::new(logged_out),
                client,
                page,
                metrics,
                clock,
                oidc,
            })),
        })
    }

    /// The configuration in force now: lock-free (an atomic load and a reference
    /// count), taken once per request so that the request sees one configuration from
    /// start to end, even across a reload.
    pub(crate) fn current(&self) -> Arc<Inner> {
        self.live.current()
    }

    /// The validated settings in force now (a copy: a reload may replace them).
    pub fn settings(&self) -> Settings {
        self.current().settings.clone()
    }

    /// The public listener as an axum [`Router`], for embedding the gateway in an axum
    /// app: [`Gateway::handler`] behind a router that sends everything to it.
    pub fn router(&self) -> Router {
        let handler = self.handler();
        Router::new().fallback(move |req: axum::extract::Request| {
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            sallyport_serve::Handler::call(&handler, req, peer)
        })
    }

    /// The public listener's request handler: the gateway's own routes
    /// (`{prefix}/login`, `logout`, `refresh`, `session`, `client.js`, the OpenID Connect
    /// callback and back-channel logout; anything else under the prefix is a 404,
    /// `{prefix}/verify` included; `/healthz` and `/readyz` only with
    /// `admin.health_on_public_listener`) go through an axum router, and everything else
    /// straight to the proxy (`forward::handle`) — no routing, middleware or boxing
    /// on the path that carries the app's traffic.
    ///
    /// The routes are fixed when the handler is built: `prefix` and
    /// `admin.health_on_public_listener` need a restart to change.
    pub fn handler(&self) -> impl sallyport_serve::Handler {
        let gw = self.clone();
        let inner = self.current();
        let table = RouteTable::new(&inner.settings);
        let routes = sallyport_serve::router(self.routes(&inner));
        move |req: axum::extract::Request, peer: Option<SocketAddr>| {
            // The configuration in force, loaded once: not a clone of `gw` per request,
            // whose reference count every event loop would write.
            let current = gw.current();
            let routes = table.matches(req.uri().path()).then(|| routes.clone());
            async move {
                observe::tracked(current, req, |req, current| async move {
                    match routes {
                        Some(routes) => {
                            Box::pin(sallyport_serve::Handler::call(&routes, req, peer)).await
                        }
                        // Boxed where it is made: the proxy's future is kilobytes,
                        // and every layer around it (this block, the request-id scope,
                        // the span, hyper's connection state) would otherwise copy it
                        // whole when it takes it over.
                        None => Box::pin(forward::handle(current, req, peer)).await,
                    }
                })
                .await
            }
        }
    }

    /// The gateway's own routes on the public listener (see [`Gateway::handler`]), with
    /// no fallback: [`RouteTable`] sends only requests these match.
    fn routes(&self, inner: &Inner) -> Router {
        let p = &inner.settings.prefix;
        let mut router = Router::new()
            .route(
                &format!("{p}/login"),
                get(routes::login_page).post(routes::login_submit),
            )
            .route(&format!("{p}/logout"), post(routes::logout))
            .route(&format!("{p}/refresh"), post(routes::refresh))
            .route(&format!("{p}/session"), get(routes::session))
            .route(&format!("{p}/client.js"), get(routes::client_js))
            .route(&format!("{p}/{{*rest}}"), any(routes::not_found));
        if let Some(o) = &inner.oidc {
            router = oidc::routes(router, o, p);
        }
        if inner.settings.health_on_public {
            router = router
                .route("/healthz", get(routes::healthz))
                .route("/readyz", get(routes::readyz));
        }
        router.with_state(self.clone())
    }

    /// The admin listener's routes: `{prefix}/verify` (forward-auth for nginx, Traefik,
    /// Caddy: it answers with the access token, so it must never be reachable by a
    /// browser), `/healthz`, `/readyz` and `/metrics`. Nothing else; nothing is proxied.
    pub fn admin_router(&self) -> Router {
        let inner = self.current();
        let p = &inner.settings.prefix;
        Router::new()
            .route(&format!("{p}/verify"), any(routes::verify))
            .route("/healthz", get(routes::healthz))
            .route("/readyz", get(routes::readyz))
            .route("/metrics", get(routes::metrics))
            .fallback(routes::admin_not_found)
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                observe::track,
            ))
    }

    /// The per-request session check (unseal + expiry decision) on its own, for the
    /// benchmark: returns the decision, or `None` when there is no usable session.
    pub fn check_session(&self, headers: &http::HeaderMap, now_ms: u64) -> Option<Freshness> {
        let inner = self.current();
        let loaded = inner.read_session(headers, now_ms)?;
        Some(
            loaded
                .value
                .freshness(now_ms / 1000, inner.settings.leeway_secs),
        )
    }

    /// Seals `session` into `Set-Cookie` values (tests, tools and benchmarks).
    pub fn seal_session(
        &self,
        session: &SessionData,
        now_ms: u64,
    ) -> Result<Vec<http::HeaderValue>, Error> {
        self.current()
            .cookies
            .encode(session, &http::HeaderMap::new(), now_ms)
            .map_err(|e| Error::Cookie(e.to_string()))
    }
}

/// Which paths [`Gateway::routes`] answers on the public listener, decided without
/// routing: everything under `{prefix}/` (its catch-all `{prefix}/{*rest}` takes any
/// non-empty rest; the OpenID Connect routes live under the prefix too), and `/healthz`
/// and `/readyz` when they are served there. `tests::route_table_agrees_with_the_router`
/// holds this to the router's own matching.
#[derive(Clone)]
struct RouteTable {
    /// `{prefix}/`.
    under: Arc<str>,
    health: bool,
}

impl RouteTable {
    fn new(settings: &Settings) -> Self {
        Self {
            under: format!("{}/", settings.prefix).into(),
            health: settings.health_on_public,
        }
    }

    fn matches(&self, path: &str) -> bool {
        path.strip_prefix(&*self.under)
            .is_some_and(|rest| !rest.is_empty())
            || (self.health && (path == "/healthz" || path == "/readyz"))
    }
}

/// What start-up says when a logout cannot be made final: without a durable or shared
/// logout record a restart forgets logouts, and without backend revocation nothing else
/// stops a captured cookie from renewing.
fn logout_finality_warnings(settings: &Settings, durable: bool) -> Vec<&'static str> {
    let revokes = settings.backend.logout_url.is_some();
    let mut out = Vec::new();
    if !durable {
        out.push(if revokes {
            "logouts are kept in memory only (store.persist_logouts = false, no store.state_dir \
             and no store.redis_url): after a restart a cookie captured before its logout is \
             accepted again until its access token expires"
        } else {
            "logout cannot be made final: no durable or shared logout record (store.state_dir, \
             store.redis_url) and no backend revocation (backend.logout_url / \
             backend.revocation_url); after a restart a cookie captured before its logout works \
             again and keeps renewing"
        });
    } else if !revokes {
        out.push(
            "no backend revocation (backend.logout_url / backend.revocation_url): logout is \
             final only as long as the logout record is kept (session.ttl_secs)",
        );
    }
    out
}

/// Binds the public listener once per event loop ([`serve`]): `SO_REUSEPORT` sockets on
/// one address, so that the kernel spreads new connections evenly over the loops (by
/// each connection's addresses), as nginx's `reuseport` does. With one shared socket
/// instead, whichever loop the scheduler runs first wins every accept: a loop that runs
/// late idles while the others queue. Only processes of the same user can join the
/// group. Port 0 binds the first socket to a free port and the others to that port.
/// Must be called inside a tokio runtime.
pub fn bind(addr: SocketAddr, loops: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    // SO_REUSEPORT would let this process join a group another process (a second
    // gateway started by mistake, an old one still running) already listens with, and
    // silently take half its connections. A plain bind first fails as any server's
    // would when the address is taken; it is closed before the group binds.
    #[cfg(unix)]
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    let first = reuse_port_listener(addr)?;
    let addr = first.local_addr()?;
    let mut all = Vec::with_capacity(loops.max(1));
    for _ in 1..loops.max(1) {
        // Without SO_REUSEPORT (not Unix), the loops share one socket.
        #[cfg(not(unix))]
        all.push(first.try_clone()?);
        #[cfg(unix)]
        all.push(reuse_port_listener(addr)?);
    }
    all.insert(0, first);
    Ok(all)
}

/// One socket of [`bind`]'s group, with tokio's listen backlog (1024).
fn reuse_port_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `tokio::net::TcpListener::bind` does: a restart can bind while old connections
    // linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// Serves `gateway` on `listeners` (public, one per event loop: see [`bind`]) and `admin`
/// (the admin listener, see [`Gateway::admin_router`]) until Ctrl-C or SIGTERM, then
/// drains connections on both.
///
/// Each listener gets an event loop: the first on this runtime, the others on a
/// single-threaded runtime each, on threads of their own — nginx's worker model. A
/// connection stays on the loop that accepted it, so its requests, its upstream
/// connections (pooled per thread) and its wake-ups never cross threads; what the loops
/// share (configuration, session cache, logout records, renewals in flight) takes no
/// exclusive lock per request. The connection caps count all loops together. Everything
/// else (the admin listener, reloads, background work) runs on this runtime.
pub async fn serve(
    listeners: Vec<std::net::TcpListener>,
    admin: Option<tokio::net::TcpListener>,
    gateway: Gateway,
) -> Result<(), Error> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let admin_task = admin.map(|admin| {
        let gateway = gateway.clone();
        let wait = wait();
        tokio::spawn(async move { serve_admin_with_shutdown(admin, gateway, wait).await })
    });
    let stop = Arc::new(stop);
    let signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
    };
    let mut listeners = listeners.into_iter();
    let Some(listener) = listeners.next() else {
        return Err(Error::Io(std::io::Error::other("no listener to serve")));
    };
    // Every loop registers its listener with its own runtime, which needs it
    // non-blocking.
    listener.set_nonblocking(true)?;
    let server = sallyport_serve::Server::new(gateway.settings().server.clone());
    let handler = gateway.handler();
    // Each loop's runtime is kept until every loop has drained: a connection of one loop
    // may be using something another loop's runtime drives (a pooled connection to the
    // token backend, a renewal another request started).
    let (all_drained, drained) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    for (i, listener) in (1..).zip(listeners) {
        listener.set_nonblocking(true)?;
        let (server, handler, wait) = (server.clone(), handler.clone(), wait());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (stop, mut drained) = (stop.clone(), drained.clone());
        std::thread::Builder::new()
            .name(format!("gateway-loop-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        let _ = stop.send(true);
                        let _ = done_tx.send(Err(err));
                        return;
                    }
                };
                let served = rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    server.serve(listener, handler, wait).await
                });
                if served.is_err() {
                    let _ = stop.send(true);
                }
                let _ = done_tx.send(served);
                rt.block_on(async move {
                    let _ = drained.wait_for(|d| *d).await;
                });
            })?;
        loops.push(done_rx);
    }
    let result = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => server
            .serve(listener, handler, async move {
                wait().await;
                tracing::info!("shutting down");
            })
            .await
            .map_err(Error::from),
        Err(err) => Err(err.into()),
    };
    // The public listener ended (signal or error): end the other loops and the admin
    // listener with it.
    let _ = stop.send(true);
    signal.abort();
    for done in loops {
        if let Ok(Err(err)) = done.await {
            tracing::error!(%err, "an event loop failed");
        }
    }
    let _ = all_drained.send(true);
    if let Some(task) = admin_task {
        task.await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
    }
    result
}

/// Serves the admin routes ([`Gateway::admin_router`]) until `shutdown` completes.
pub async fn serve_admin_with_shutdown(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    sallyport_serve::serve(
        listener,
        gateway.admin_router(),
        gateway.settings().server.clone(),
        shutdown,
    )
    .await?;
    Ok(())
}

/// Serves until `shutdown` completes, then lets in-flight requests finish.
///
/// Through [`sallyport_serve`], not `axum::serve`: it enforces the `[server]` limits
/// (header read timeout, request body idle timeout and minimum rate, send timeout,
/// connection caps), so a slow or silent client cannot hold a connection for ever; it
/// sets `TCP_NODELAY` on client sockets as nginx does, and passes WebSocket upgrades
/// through. The upstream side sets `TCP_NODELAY` in `proxy::client`.
pub async fn serve_with_shutdown(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    sallyport_serve::Server::new(gateway.settings().server.clone())
        .serve(listener, gateway.handler(), async move {
            shutdown.await;
            tracing::info!("shutting down");
        })
        .await?;
    Ok(())
}

use sallyport_serve::shutdown_signal;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(logout_url: bool) -> Settings {
        let mut c = Config::default();
        c.session.secret = Some("a-test-secret-of-at-least-32-characters".into());
        c.session.secure = false;
        c.backend.login_url = Some("http://127.0.0.1:9/api/login".into());
        c.backend.refresh_url = Some("http://127.0.0.1:9/api/refresh-token".into());
        if logout_url {
            c.backend.logout_url = Some("http://127.0.0.1:9/api/logout".into());
        }
        c.store.persist_logouts = false;
        c.validate().expect("settings")
    }

    #[test]
    fn start_up_says_when_logout_is_not_final() {
        let none = logout_finality_warnings(&settings(false), false);
        assert_eq!(none.len(), 1);
        assert!(none[0].contains("logout cannot be made final"), "{none:?}");
        let memory_only = logout_finality_warnings(&settings(true), false);
        assert!(memory_only[0].contains("memory only"), "{memory_only:?}");
        let no_revocation = logout_finality_warnings(&settings(false), true);
        assert!(no_revocation[0].contains("no backend revocation"));
        assert!(logout_finality_warnings(&settings(true), true).is_empty());
    }

    /// The handler sends a request to the gateway's routes exactly when their router
    /// would match it, for every prefix shape and with and without the health routes:
    /// anything [`RouteTable`] got wrong would either proxy a gateway path to the app or
    /// swallow an app path.
    #[tokio::test]
    async fn route_table_agrees_with_the_router() {
        let marker = http::StatusCode::from_u16(599).expect("status");
        for (prefix, health) in [("/auth", false), ("/auth", true), ("/a.b/c-d", true)] {
            let mut c = Config::default();
            c.session.secret = Some("a-test-secret-of-at-least-32-characters".into());
            c.backend.login_url = Some("http://127.0.0.1:9/api/login".into());
            c.backend.refresh_url = Some("http://127.0.0.1:9/api/refresh-token".into());
            c.store.persist_logouts = false;
            c.prefix = prefix.into();
            c.admin.health_on_public_listener = health;
            let gw = Gateway::new(c.validate().expect("settings"))
                .await
                .expect("gateway");
            let inner = gw.current();
            let table = RouteTable::new(&inner.settings);
            let router =
                sallyport_serve::router(gw.routes(&inner).fallback(move || async move { marker }));
            let p = prefix;
            for path in [
                "/".to_owned(),
                p.to_owned(),
                format!("{p}/"),
                format!("{p}//"),
                format!("{p}//login"),
                format!("{p}/login"),
                format!("{p}/login/"),
                format!("{p}/logout"),
                format!("{p}/verify"),
                format!("{p}/x/y/z"),
                format!("{p}/callback"),
                format!("{p}/backchannel-logout"),
                format!("{p}%2Flogin"),
                format!("{p}x/login"),
                format!("{}/login", p.to_uppercase()),
                format!("/x{p}/login"),
                format!("/{p}/login"),
                format!("{p}/%2e%2e/app"),
                "/healthz".into(),
                "/healthz/".into(),
                "/readyz".into(),
                "/readyzz".into(),
                "/metrics".into(),
                "/app/page".into(),
            ] {
                let uri = http::Uri::builder()
                    .path_and_query(path.as_str())
                    .build()
                    .expect("uri");
                let req = http::Request::get(uri)
                    .body(axum::body::Body::empty())
                    .expect("request");
                let resp = sallyport_serve::Handler::call(&router, req, None).await;
                let routed = resp.status() != marker;
                assert_eq!(
                    table.matches(&path),
                    routed,
                    "prefix {prefix}, health {health}: {path}"
                );
            }
        }
    }

    /// The future of every request (what hyper moves into its connection state, and each
    /// layer around the proxy copies when it takes it over) stays small: the proxy path
    /// and the routes are boxed where they are made, and rare large paths (renewal,
    /// connecting, buffering a body, Redis) are boxed inside. Without that it was 14 KB,
    /// and copying it was ~5 % of the gateway's CPU per request (docs/benchmarks.md).
    #[tokio::test]
    async fn a_request_future_stays_small() {
        let gw = Gateway::new(settings(false)).await.expect("gateway");
        let handler = gw.handler();
        let request = http::Request::get("/app")
            .body(axum::body::Body::empty())
            .expect("request");
        let future = sallyport_serve::Handler::call(&handler, request, None);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 2048, "the request future is {size} bytes");
    }
}
