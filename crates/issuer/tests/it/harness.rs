//! Starts an issuer on loopback against a chosen backend, and small request helpers.

use super::*;

/// Which store a test runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

pub(crate) struct Server {
    pub base: String,
    pub issuer: Issuer,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    _dir: Option<Arc<tempfile::TempDir>>,
}

/// With `SALLYPORT_TEST_LOG_DIR` set (scripts/test), everything the issuer logs in this
/// test binary goes to a file there, at `SALLYPORT_TEST_RUST_LOG` (else `RUST_LOG`, else
/// debug and trace for sallyport crates), for the secret scan (scripts/lib/scan-logs).
/// Once per process; without the variable, nothing is logged.
pub(crate) fn init_test_logs() {
    // The passwords and secrets these tests use, which the scan looks for literally.
    sallyport_observe::testing::init_test_logs(
        "issuer-it",
        &[
            "alice-password",
            "new-alice-password",
            "bob-password",
            "bad-password",
            "wrong-password",
            "whatever-pw",
            "wrong-secret",
            "gateway-secret-0123456789",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "HxwdHhscGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=",
        ],
    );
}

/// Fast argon2 and generous limits unless a test says otherwise.
pub(crate) fn test_config() -> Config {
    init_test_logs();
    let mut c = Config::default();
    c.argon2.memory_kib = 256;
    c.argon2.iterations = 1;
    c.rate_limit.account_burst = 1000;
    c.rate_limit.address_burst = 1000;
    c.rate_limit.account_address_burst = 1000;
    c.issuer = "http://issuer.test".into();
    c
}

/// [`test_config`] on `database_url`.
pub(crate) fn test_config_with(database_url: &str) -> Config {
    Config {
        database_url: database_url.into(),
        ..test_config()
    }
}

/// A database URL for `backend`, or `None` (test skipped) without PostgreSQL.
pub(crate) async fn database(backend: Backend) -> Option<(String, Option<Arc<tempfile::TempDir>>)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("issuer.db").display());
            Some((url, Some(Arc::new(dir))))
        }
        Backend::Postgres => {
            // Unset (or empty) skips on a developer machine but fails under CI (`CI`
            // non-empty, as CI services and `scripts/test` set it): a suite that
            // silently skips its PostgreSQL half must not pass there.
            let Some(admin) = std::env::var("SALLYPORT_TEST_POSTGRES_URL")
                .ok()
                .filter(|u| !u.is_empty())
            else {
                if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
                    panic!(
                        "SALLYPORT_TEST_POSTGRES_URL is not set, and under CI the PostgreSQL \
                         tests must run, not be skipped: start a throwaway cluster with \
                         scripts/lib/postgres.sh (pg_start)"
                    );
                }
                eprintln!("note: SALLYPORT_TEST_POSTGRES_URL unset; skipping PostgreSQL test");
                return None;
            };
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to test postgres");
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create database");
            let (base, query) = match admin.split_once('?') {
                Some((b, q)) => (b.to_owned(), format!("?{q}")),
                None => (admin.clone(), String::new()),
            };
            let prefix = base
                .rsplit_once('/')
                .map_or(base.as_str(), |(p, _)| p)
                .to_owned();
            Some((format!("{prefix}/{name}{query}"), None))
        }
    }
}

pub(crate) async fn start_on(
    config: Config,
    clock: ManualClock,
    dir: Option<Arc<tempfile::TempDir>>,
) -> Server {
    let issuer = Issuer::open_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("open issuer");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let serving = issuer.clone();
    tokio::spawn(async move {
        sallyport_issuer::serve_with_shutdown(listener, serving, std::future::pending())
            .await
            .expect("serve");
    });
    Server {
        base,
        issuer,
        clock,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

pub(crate) async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Server> {
    let (url, dir) = database(backend).await?;
    let mut config = test_config();
    config.database_url = url;
    tweak(&mut config);
    Some(start_on(config, ManualClock::starting_now(), dir).await)
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub(crate) async fn add_alice(&self) {
        self.issuer
            .admin()
            .add_user("alice", "alice-password", Some("Alice"), &["admin", "user"])
            .await
            .expect("add alice");
    }

    pub(crate) async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// GETs `path` and parses the body as JSON (whatever the status).
    pub(crate) async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON body")
    }

    /// The `/metrics` page (Prometheus text).
    pub(crate) async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("metrics text")
    }

    pub(crate) async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/login",
            json!({"username": username, "password": password}),
        )
        .await
    }

    /// Logs alice in; returns the token response body.
    pub(crate) async fn login_alice(&self) -> Value {
        let r = self.login("alice", "alice-password").await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.expect("json")
    }

    pub(crate) async fn refresh(&self, token: &str) -> reqwest::Response {
        self.post_json("/api/refresh-token", json!({"refresh_token": token}))
            .await
    }
}

pub(crate) fn str_field(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
        .to_owned()
}

pub(crate) async fn error_code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.expect("error body is JSON");
    (
        status,
        body["error"].as_str().expect("error field").to_owned(),
    )
}
