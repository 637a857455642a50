//! Test support for the Rust suites: a real issuer, a real gateway and an upstream app,
//! each on its own loopback port, with the clock of the test's choosing.
//!
//! Every suite that needs a live stack used to write its own start-up code (temporary
//! SQLite database, cheap password hashing, listener, `axum::serve` with peer addresses);
//! this crate is that code once. It panics on failure: it is only ever used by tests.
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use sallyport_testkit::{TestIssuer, ManualClock};
//!
//! let clock = ManualClock::starting_now();
//! let issuer = TestIssuer::builder().clock(Arc::new(clock.clone())).start().await;
//! issuer.add_user("alice", "correct horse battery staple", &["user"]).await;
//! clock.advance_secs(901); // past the access token's lifetime, without sleeping
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
pub use sallyport_clock::{Clock, ManualClock, OffsetClock, SystemClock};
use tokio::net::TcpListener;

/// Binds a listener on `127.0.0.1` with a free port; its address.
pub async fn bind_loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

/// Serves `router` on `listener` in a background task, with the peer address available
/// to handlers (`ConnectInfo<SocketAddr>`, which the issuer's rate limiter keys on).
pub fn serve(listener: TcpListener, router: Router) {
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .ok();
    });
}

/// Starts `router` on a fresh loopback port (an upstream app, a fake backend); its URL.
pub async fn start_upstream(router: Router) -> String {
    let (listener, addr) = bind_loopback().await;
    serve(listener, router);
    format!("http://{addr}")
}

/// The issuer configuration every suite starts from: SQLite in `dir`, listening on `addr`
/// and naming itself `http://{addr}`, cheap Argon2 (tests are about tokens, not password
/// hashing) and rate limits high enough that many logins from 127.0.0.1 are not refused.
pub fn issuer_config(dir: &std::path::Path, addr: SocketAddr) -> sallyport_issuer::Config {
    let mut cfg = sallyport_issuer::Config {
        database_url: format!("sqlite://{}", dir.join("issuer.db").display()),
        listen: addr.to_string(),
        issuer: format!("http://{addr}"),
        ..sallyport_issuer::Config::default()
    };
    cfg.argon2.memory_kib = 1024;
    cfg.argon2.iterations = 1;
    cfg.rate_limit.account_burst = 1000;
    cfg.rate_limit.address_burst = 1000;
    cfg
}

/// A running issuer on loopback.
pub struct TestIssuer {
    /// The issuer (admin API, settings, `now_ms`).
    pub issuer: sallyport_issuer::Issuer,
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

type Wrap = Box<dyn FnOnce(Router, SocketAddr) -> Router + Send>;
type Tweak = Box<dyn FnOnce(&mut sallyport_issuer::Config) + Send>;

/// Options for [`TestIssuer`]: configuration tweaks, a clock, router layers.
pub struct IssuerBuilder {
    tweak: Tweak,
    clock: Arc<dyn Clock>,
    wrap: Wrap,
}

impl IssuerBuilder {
    /// Changes the configuration after [`issuer_config`]'s defaults are set.
    pub fn config(
        mut self,
        tweak: impl FnOnce(&mut sallyport_issuer::Config) + Send + 'static,
    ) -> Self {
        self.tweak = Box::new(tweak);
        self
    }

    /// The issuer's clock (default: the wall clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Wraps the issuer's router before it is served (extra routes, counting or
    /// fault-injecting layers); gets the address it will be served on.
    pub fn wrap(
        mut self,
        wrap: impl FnOnce(Router, SocketAddr) -> Router + Send + 'static,
    ) -> Self {
        self.wrap = Box::new(wrap);
        self
    }

    /// Opens the issuer and serves it.
    pub async fn start(self) -> TestIssuer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (listener, addr) = bind_loopback().await;
        let mut cfg = issuer_config(dir.path(), addr);
        (self.tweak)(&mut cfg);
        let issuer = sallyport_issuer::Issuer::open_with_clock(cfg, self.clock)
            .await
            .expect("open the test issuer");
        serve(listener, (self.wrap)(issuer.router(), addr));
        TestIssuer {
            issuer,
            url: format!("http://{addr}"),
            addr,
            _dir: dir,
        }
    }
}

impl TestIssuer {
    /// Options: configuration, clock, router layers.
    pub fn builder() -> IssuerBuilder {
        IssuerBuilder {
            tweak: Box::new(|_| {}),
            clock: Arc::new(SystemClock),
            wrap: Box::new(|r, _| r),
        }
    }

    /// An issuer with the defaults of [`issuer_config`] on the wall clock.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Adds a user (display name = `username`).
    pub async fn add_user(&self, username: &str, password: &str, roles: &[&str]) {
        self.issuer
            .admin()
            .add_user(username, password, Some(username), roles)
            .await
            .expect("add the test user");
    }
}

/// A running gateway on loopback: the proxy listener and the admin listener.
pub struct TestGateway {
    /// The gateway (reload, current configuration).
    pub gateway: sallyport_gateway::Gateway,
    /// Its proxy listener's URL.
    pub url: String,
    /// Its admin listener's URL (verify, health, metrics).
    pub admin_url: String,
}

/// Validates `config`, builds the gateway on `clock` and serves both of its listeners.
pub async fn start_gateway(
    config: sallyport_gateway::Config,
    clock: Arc<dyn Clock>,
) -> TestGateway {
    let settings = config
        .validate()
        .expect("a valid test gateway configuration");
    let gateway = sallyport_gateway::Gateway::with_clock(settings, clock)
        .await
        .expect("build the test gateway");
    let (listener, addr) = bind_loopback().await;
    let g = gateway.clone();
    tokio::spawn(async move {
        sallyport_gateway::serve_with_shutdown(listener, g, std::future::pending())
            .await
            .ok();
    });
    let (admin, admin_addr) = bind_loopback().await;
    let g = gateway.clone();
    tokio::spawn(async move {
        sallyport_gateway::serve_admin_with_shutdown(admin, g, std::future::pending())
            .await
            .ok();
    });
    TestGateway {
        gateway,
        url: format!("http://{addr}"),
        admin_url: format!("http://{admin_addr}"),
    }
}
