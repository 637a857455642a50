//! Logs and traces of the real binary: `sallyport issuer` and `sallyport gateway` as
//! processes, an upstream app and an OTLP/HTTP receiver inside the test, all on loopback.
//!
//! * the spans of one login and one renewal reach the collector, linked across the
//!   processes (gateway request → backend call → issuer request) in one trace, and the
//!   `traceparent` the upstream sees names the gateway's upstream span;
//! * an incoming `traceparent` is continued only when trusted;
//! * the exported spans hold no password, token, cookie value or user name;
//! * a collector that is down fails no request;
//! * every log line written while handling a request carries its `request_id`, in the
//!   text format and with `--log-format json`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{Value, json};

const USER: &str = "alice";
const PASSWORD: &str = "telemetry test password 42";
const SECRET: &str = "telemetry-test-session-secret-0123456789-abc";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
}

#[derive(Default)]
struct Collector {
    spans: Mutex<Vec<Span>>,
    /// Every export as received (protobuf), to look for credentials in.
    bodies: Mutex<Vec<Vec<u8>>>,
}

impl Collector {
    fn find(&self, service: &str, name: &str) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.service == service && s.name == name)
            .cloned()
            .collect()
    }

    /// Waits (bounded: a failure report, not a speed check) until `wanted` spans exist.
    async fn wait_for(&self, wanted: &[(&str, &str)]) {
        for _ in 0..300 {
            if wanted.iter().all(|(s, n)| !self.find(s, n).is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let have: Vec<(String, String)> = self
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| (s.service.clone(), s.name.clone()))
            .collect();
        panic!("spans {wanted:?} never arrived; have {have:?}");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `POST /v1/traces` with an OTLP protobuf body, as a collector answers it.
async fn receive(
    State(c): State<Arc<Collector>>,
    body: Bytes,
) -> impl axum::response::IntoResponse {
    c.bodies.lock().unwrap().push(body.to_vec());
    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
    let mut spans = c.spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(Span {
                    service: service.clone(),
                    name: s.name,
                    trace: hex(&s.trace_id),
                    id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                });
            }
        }
    }
    (
        [("content-type", "application/x-protobuf")],
        Vec::<u8>::new(),
    )
}

async fn start_collector() -> (Arc<Collector>, String) {
    let c = Arc::new(Collector::default());
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (c, url)
}

/// What the upstream app received: path → (`traceparent`, `x-request-id`).
type Seen = Arc<Mutex<HashMap<String, (Option<String>, Option<String>)>>>;

async fn start_upstream() -> (Seen, String) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().fallback(move |req: Request| {
        let s = s.clone();
        async move {
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let entry = (h("traceparent"), h("x-request-id"));
            s.lock().unwrap().insert(req.uri().path().to_owned(), entry);
            "upstream page"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (seen, url)
}

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the processes' stderr goes: `SALLYPORT_TEST_LOG_DIR` (scripts/test scans it for
/// secrets) or a directory of this test run.
fn log_dir() -> PathBuf {
    let dir = std::env::var_os("SALLYPORT_TEST_LOG_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("telemetry-logs"),
            PathBuf::from,
        );
    std::fs::create_dir_all(&dir).unwrap();
    // What the secret scan (scripts/lib/scan-logs) looks for literally, besides patterns.
    std::fs::write(
        dir.join("cli-telemetry.secrets"),
        format!("{PASSWORD}\n{SECRET}\n"),
    )
    .unwrap();
    dir
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("telemetry-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process, killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn base_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sallyport"));
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("SALLYPORT_ISSUER_")
            || k.starts_with("SALLYPORT_GATEWAY_")
            || k.starts_with("OTEL_")
            || k == "SALLYPORT_LOG_FORMAT"
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn spawn(name: &str, args: &[&str], env: &[(&str, String)]) -> Proc {
    let log = log_dir().join(format!("cli-telemetry-{}-{name}.log", std::process::id()));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = base_command(args);
    cmd.env("RUST_LOG", "debug,sallyport=trace")
        // Export promptly, so the test need not wait for the default 5 s batches.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("run sallyport"),
        log,
    }
}

async fn wait_up(proc: &mut Proc, url: &str) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Some(status) = proc.child.try_wait().unwrap() {
            panic!("{url}: exited with {status}:\n{}", proc.log());
        }
        if http.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not come up:\n{}", proc.log());
}

/// An issuer with a fresh database and [`USER`]; `otlp`: the collector's URL.
async fn start_issuer(name: &str, otlp: Option<&str>) -> (Proc, String) {
    let dir = fresh_dir(name);
    let port = closed_port();
    let config = dir.join("issuer.toml");
    std::fs::write(
        &config,
        format!(
            r#"database_url = "sqlite://{db}"
listen = "127.0.0.1:{port}"
issuer = "http://127.0.0.1:{port}"
[http]
# The gateway is a trusted proxy: its traceparent and X-Request-Id are continued.
trusted_proxies = ["127.0.0.1"]
[argon2]
memory_kib = 1024
iterations = 1
"#,
            db = dir.join("issuer.db").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut add = base_command(&["user", "add", USER, "--password-stdin", "--config", &config])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut env = Vec::new();
    if let Some(url) = otlp {
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", url.to_owned()));
    }
    let mut proc = spawn(name, &["issuer", "--config", &config], &env);
    let url = format!("http://127.0.0.1:{port}");
    wait_up(&mut proc, &format!("{url}/healthz")).await;
    (proc, url)
}

/// A gateway in front of `upstream`, logging in at `issuer`.
async fn start_gateway(
    name: &str,
    issuer: &str,
    upstream: &str,
    otlp: &str,
    extra_args: &[&str],
    extra_env: &[(&str, String)],
) -> (Proc, String) {
    let port = closed_port();
    let admin = closed_port();
    let mut args = vec!["gateway"];
    args.extend_from_slice(extra_args);
    let mut env = vec![
        ("SESSION_SECRET", SECRET.to_owned()),
        ("SALLYPORT_GATEWAY_LISTEN", format!("127.0.0.1:{port}")),
        (
            "SALLYPORT_GATEWAY_ADMIN__LISTEN",
            format!("127.0.0.1:{admin}"),
        ),
        ("SALLYPORT_GATEWAY_UPSTREAM", upstream.to_owned()),
        (
            "SALLYPORT_GATEWAY_PUBLIC_PATHS",
            "[\"/public/**\"]".to_owned(),
        ),
        ("SALLYPORT_GATEWAY_SESSION__SECURE", "false".to_owned()),
        (
            "SALLYPORT_GATEWAY_STORE__PERSIST_LOGOUTS",
            "false".to_owned(),
        ),
        (
            "SALLYPORT_GATEWAY_BACKEND__LOGIN_URL",
            format!("{issuer}/api/login"),
        ),
        (
            "SALLYPORT_GATEWAY_BACKEND__REFRESH_URL",
            format!("{issuer}/api/refresh-token"),
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.to_owned()),
    ];
    env.extend(extra_env.iter().cloned());
    let mut proc = spawn(name, &args, &env);
    let url = format!("http://127.0.0.1:{port}");
    wait_up(&mut proc, &format!("{url}/auth/session")).await;
    (proc, url)
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_owned()
}

fn cookie_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|s| !s.contains("Max-Age=0"))
        .filter_map(|s| s.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

async fn login(http: &reqwest::Client, gateway: &str) -> reqwest::Response {
    http.post(format!("{gateway}/auth/login"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

/// The one span of `service` named `name`.
fn one(c: &Collector, service: &str, name: &str) -> Span {
    let found = c.find(service, name);
    assert_eq!(found.len(), 1, "{service} {name}: {found:?}");
    found[0].clone()
}

/// `child` is a direct child of `parent`, in its trace.
fn assert_child(child: &Span, parent: &Span) {
    assert_eq!(child.trace, parent.trace, "{child:?} vs {parent:?}");
    assert_eq!(
        child.parent, parent.id,
        "{child:?} is not a child of {parent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_renewal_spans_are_linked_from_gateway_to_issuer_and_upstream() {
    let (collector, otlp) = start_collector().await;
    let (seen, upstream) = start_upstream().await;
    let (_issuer, issuer) = start_issuer("issuer-traced", Some(&otlp)).await;
    let (gw, gateway) =
        start_gateway("gateway-untrusting", &issuer, &upstream, &otlp, &[], &[]).await;
    let (_gw_trusting, trusting) = start_gateway(
        "gateway-trusting",
        &issuer,
        &upstream,
        &otlp,
        &[],
        &[("SALLYPORT_GATEWAY_TRUST_REQUEST_ID", "true".to_owned())],
    )
    .await;
    let http = reqwest::Client::new();

    // Login; the client's traceparent is not believed (trust_request_id is off).
    let resp = login(&http, &gateway).await;
    assert_eq!(resp.status(), 200);
    let login_id = request_id(&resp);
    let cookie = cookie_of(&resp);
    let login_cookie = cookie.clone();
    // A forced renewal.
    let resp = http
        .post(format!("{gateway}/auth/refresh"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = cookie_of(&resp);
    // A proxied page.
    let resp = http
        .get(format!("{gateway}/page"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A trusting gateway continues the caller's trace.
    let resp = http
        .get(format!("{trusting}/public/asset"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let gw_name = "sallyport-gateway";
    let is_name = "sallyport-issuer";
    collector
        .wait_for(&[
            (gw_name, "POST /auth/login"),
            (gw_name, "backend.login"),
            (is_name, "POST /api/login"),
            (gw_name, "POST /auth/refresh"),
            (gw_name, "backend.refresh"),
            (is_name, "POST /api/refresh-token"),
            (gw_name, "GET /page"),
            (gw_name, "upstream"),
            (gw_name, "GET /public/asset"),
        ])
        .await;

    // Login: a new trace (the untrusted client's is not continued), the backend call its
    // child, the issuer's request the backend call's child.
    let login = one(&collector, gw_name, "POST /auth/login");
    assert_ne!(login.trace, CLIENT_TRACE);
    assert_eq!(login.parent, "");
    let backend_login = one(&collector, gw_name, "backend.login");
    assert_child(&backend_login, &login);
    assert_child(&one(&collector, is_name, "POST /api/login"), &backend_login);

    // Renewal: the same chain, in a trace of its own.
    let refresh = one(&collector, gw_name, "POST /auth/refresh");
    assert_eq!(refresh.parent, "");
    assert_ne!(refresh.trace, login.trace);
    let backend_refresh = one(&collector, gw_name, "backend.refresh");
    assert_child(&backend_refresh, &refresh);
    assert_child(
        &one(&collector, is_name, "POST /api/refresh-token"),
        &backend_refresh,
    );

    // The page: upstream saw the upstream span as its parent.
    let page = one(&collector, gw_name, "GET /page");
    let upstream_spans: Vec<Span> = collector
        .find(gw_name, "upstream")
        .into_iter()
        .filter(|s| s.trace == page.trace)
        .collect();
    assert_eq!(upstream_spans.len(), 1, "{upstream_spans:?}");
    assert_child(&upstream_spans[0], &page);
    let (traceparent, _) = seen.lock().unwrap()["/page"].clone();
    assert_eq!(
        traceparent.unwrap(),
        format!("00-{}-{}-01", page.trace, upstream_spans[0].id)
    );

    // Trusted: the caller's trace goes on through the gateway to the upstream.
    let asset = one(&collector, gw_name, "GET /public/asset");
    assert_eq!(asset.trace, CLIENT_TRACE);
    assert_eq!(asset.parent, CLIENT_SPAN);
    let (traceparent, _) = seen.lock().unwrap()["/public/asset"].clone();
    let traceparent = traceparent.unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{CLIENT_TRACE}-"))
            && !traceparent.contains(CLIENT_SPAN),
        "{traceparent}"
    );

    // No credential and no user name in any exported span (attributes, names, events):
    // the raw protobuf bytes of every export, so nothing is missed by decoding.
    let session_values: Vec<String> = [login_cookie.as_str(), cookie.as_str()]
        .iter()
        .flat_map(|c| c.split("; "))
        .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_owned()))
        .filter(|v| v.len() >= 16)
        .collect();
    assert!(!session_values.is_empty(), "no session cookie in {cookie}");
    let bodies = collector.bodies.lock().unwrap().clone();
    // The search works on these bytes (uncompressed): a span name is found.
    assert!(
        bodies.iter().any(|b| b
            .windows(b"POST /auth/login".len())
            .any(|w| w == b"POST /auth/login")),
        "span names not found in the raw exports"
    );
    for body in &bodies {
        let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        for needle in [PASSWORD.as_bytes(), USER.as_bytes(), b"Fe26.2*", b"eyJ"] {
            assert!(
                !contains(needle),
                "an exported span holds {:?}",
                String::from_utf8_lossy(needle)
            );
        }
        for value in &session_values {
            assert!(
                !contains(value.as_bytes()),
                "an exported span holds a cookie value"
            );
        }
    }

    // Text logs: the lines written while handling the login carry its id.
    let log = gw.log();
    let tagged = log
        .lines()
        .filter(|l| l.contains(&format!("request_id={login_id}")))
        .count();
    assert!(tagged > 0, "no log line with request_id={login_id}:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_fails_no_request_and_json_log_lines_carry_the_request_id() {
    let (_issuer, issuer) = start_issuer("issuer-plain", None).await;
    let dead_collector = format!("http://127.0.0.1:{}", closed_port());
    let dead_upstream = format!("http://127.0.0.1:{}", closed_port());
    let (gw, gateway) = start_gateway(
        "gateway-json",
        &issuer,
        &dead_upstream,
        &dead_collector,
        &["--log-format", "json"],
        &[],
    )
    .await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let resp = login(&http, &gateway).await;
        assert_eq!(resp.status(), 200);
        let cookie = cookie_of(&resp);
        let resp = http
            .get(format!("{gateway}/auth/session"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // The upstream is down too: a warning is logged inside the request.
    let resp = http
        .get(format!("{gateway}/public/asset"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let id = request_id(&resp);
    let mut found = None;
    for _ in 0..100 {
        let log = gw.log();
        found = log
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .find(|v| v["fields"]["message"] == "upstream unreachable");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = found.unwrap_or_else(|| panic!("no upstream warning:\n{}", gw.log()));
    assert_eq!(line["level"], "WARN");
    assert!(
        line["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["request_id"] == id.as_str()),
        "{line}"
    );
}
