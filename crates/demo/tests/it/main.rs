//! The demo stack for real on loopback: issuer + demo app + gateway, driven over
//! HTTP like a browser (cookie jar, no redirects followed automatically).

// Test code: a failed step should stop the test where it happened.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, LOCATION};
use sallyport_demo::{DemoOptions, Flow, RunningDemo};

/// Every test's options (the default flow: OpenID Connect code flow): also sends this binary's logs to `SALLYPORT_TEST_LOG_DIR` for the
/// secret scan of the test command (scripts/lib/scan-logs).
fn options(dir: &std::path::Path) -> DemoOptions {
    sallyport_observe::testing::init_test_logs("demo-it", &["integration-password"]);
    DemoOptions {
        data_dir: dir.to_owned(),
        port: 0,
        issuer_port: 0,
        app_port: 0,
        password: Some("integration-password".into()),
        ..DemoOptions::default()
    }
}

/// Starts the demo and tells the log scan (`SALLYPORT_TEST_LOG_DIR`) the secrets it
/// generated in its data directory (session secret, client secret), so a log line
/// holding one fails the run.
async fn start_demo(options: DemoOptions) -> Result<RunningDemo, sallyport_demo::Error> {
    let data_dir = options.data_dir.clone();
    let demo = sallyport_demo::start(options).await?;
    if let Some(logs) = std::env::var_os("SALLYPORT_TEST_LOG_DIR").filter(|d| !d.is_empty()) {
        let secrets: String = ["session-secret", "client-secret"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(data_dir.join(f)).ok())
            .map(|s| format!("{}\n", s.trim()))
            .collect();
        let name = format!(
            "demo-it-{}-{}.secrets",
            std::process::id(),
            demo.gateway_url.rsplit(':').next().unwrap_or("0")
        );
        std::fs::write(std::path::Path::new(&logs).join(name), secrets).unwrap();
    }
    Ok(demo)
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The article's flow: the gateway's own login form.
fn password_flow(dir: &std::path::Path) -> DemoOptions {
    DemoOptions {
        flow: Flow::Password,
        ..options(dir)
    }
}

/// Password flow: posts the gateway's login form.
async fn log_in(demo: &RunningDemo, client: &reqwest::Client) {
    let res = client
        .post(format!("{}/auth/login", demo.gateway_url))
        .header("origin", &demo.gateway_url)
        .form(&[
            ("username", demo.credentials.username.as_str()),
            ("password", demo.credentials.password.as_str()),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        res.text().await
    );
}

#[tokio::test]
async fn password_flow_the_page_needs_a_login_and_then_shows_the_verified_user() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(password_flow(dir.path())).await.unwrap();
    assert_eq!(demo.flow, Flow::Password);
    assert!(demo.created_user);
    assert_eq!(demo.credentials.username, "demo");
    let client = browser();

    // Not logged in: a page navigation goes to the login page with `next`.
    let res = client
        .get(format!("{}/", demo.gateway_url))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/auth/login?next="), "{location}");

    log_in(&demo, &client).await;
    let page = client
        .get(format!("{}/", demo.gateway_url))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<dd id="user-name">Demo User</dd>"#),
        "{html}"
    );
    assert!(html.contains("/auth/client.js"));

    // The API sees the verified token's claims.
    let hello: serde_json::Value = client
        .get(format!("{}/api/hello", demo.gateway_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hello["name"], "Demo User");
    assert!(hello["expiresAt"].as_u64().unwrap() > hello["issuedAt"].as_u64().unwrap());
    assert_eq!(hello["roles"], serde_json::json!(["user", "demo"]));

    let stats = demo.counters.snapshot();
    assert_eq!((stats.logins, stats.refreshes), (1, 0));
    demo.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_app_refuses_requests_that_bypass_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(options(dir.path())).await.unwrap();
    let client = browser();

    let res = client
        .get(format!("{}/", demo.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("no Authorization header")
    );

    // A token the issuer did not sign.
    let forged = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IngifQ.eyJzdWIiOiJ4In0.c2ln";
    let res = client
        .get(format!("{}/api/hello", demo.app_url))
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");

    // A token from a real login at the issuer, but not forwarded by the gateway
    // still verifies: the app trusts tokens, not the network path.
    let tokens: serde_json::Value = client
        .post(format!("{}/api/login", demo.issuer_url))
        .json(&serde_json::json!({
            "username": demo.credentials.username,
            "password": demo.credentials.password,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["accessToken"].as_str().unwrap();
    let res = client
        .get(format!("{}/api/hello", demo.app_url))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The same token with its signature changed does not.
    let at = access.rfind('.').unwrap() + 10;
    let flipped = if &access[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &access[..at], &access[at + 1..]);
    let res = client
        .get(format!("{}/api/hello", demo.app_url))
        .bearer_auth(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    demo.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn password_flow_a_second_run_reuses_user_secret_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_demo(DemoOptions {
        password: None,
        ..password_flow(dir.path())
    })
    .await
    .unwrap();
    assert!(first.created_user);
    let password = first.credentials.password.clone();
    assert!(password.len() >= 16, "a random password is generated");
    let client = browser();
    log_in(&first, &client).await;
    first.shutdown(Duration::from_secs(5)).await;

    let second = start_demo(password_flow(dir.path())).await.unwrap();
    assert!(!second.created_user);
    assert_eq!(
        second.credentials.password, password,
        "the stored login, not the new option"
    );
    // The cookie from the first run still opens (same sealing secret); cookies
    // are not bound to a port.
    let res = client
        .get(format!("{}/api/hello", second.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    second.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_busy_port_is_reported_with_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = sallyport_demo::start(DemoOptions {
        port,
        ..options(dir.path())
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("--port"), "{err}");
}

/// Issue 8 item 6: the data directory (session secret, demo password, database) is
/// 0700 and the database files 0600.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo-data");
    let demo = start_demo(options(&dir)).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    let db = demo
        .database_url
        .strip_prefix("sqlite://")
        .map(std::path::PathBuf::from)
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
    assert_eq!(mode(&db), 0o600);
    demo.shutdown(Duration::from_secs(5)).await;
}

/// Follows one redirect: the `Location` of a 303/302, made absolute against `base`.
fn location(res: &reqwest::Response, base: &str) -> String {
    assert!(
        res.status().is_redirection(),
        "expected a redirect, got {}",
        res.status()
    );
    let to = res.headers()[LOCATION].to_str().unwrap();
    url::Url::parse(base).unwrap().join(to).unwrap().to_string()
}

/// The hidden fields of the issuer's login form.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for piece in html.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = piece.split_once('"').unwrap();
        let value = rest
            .split_once("value=\"")
            .unwrap()
            .1
            .split_once('"')
            .unwrap()
            .0;
        let value = value
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        out.push((name.to_owned(), value));
    }
    out
}

/// Code flow, as a browser does it: `next` on the gateway → the gateway's login →
/// the issuer's login page → sign in there → the gateway's callback → `next`.
/// Returns the final page's HTML.
async fn sign_in_at_the_issuer(
    demo: &RunningDemo,
    client: &reqwest::Client,
    next: &str,
    password: &str,
) -> Result<String, reqwest::Response> {
    let res = client
        .get(format!("{}{next}", demo.gateway_url))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    let to_login = location(&res, &demo.gateway_url);
    assert!(
        to_login.starts_with(&format!("{}/auth/login?next=", demo.gateway_url)),
        "{to_login}"
    );
    let res = client
        .get(&to_login)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    let authorize = location(&res, &demo.gateway_url);
    assert!(
        authorize.starts_with(&format!("{}/oauth/authorize?", demo.issuer_url)),
        "the login page is the issuer's: {authorize}"
    );
    let page = client.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let mut form = hidden_fields(&html);
    assert!(
        form.iter()
            .any(|(k, v)| k == "client_id" && v == sallyport_demo::CLIENT_ID),
        "{form:?}"
    );
    form.push(("username".into(), demo.credentials.username.clone()));
    form.push(("password".into(), password.to_owned()));
    let res = client
        .post(format!("{}/oauth/authorize", demo.issuer_url))
        .header("origin", &demo.issuer_url)
        .form(&form)
        .send()
        .await
        .unwrap();
    if !res.status().is_redirection() {
        return Err(res);
    }
    let callback = location(&res, &demo.issuer_url);
    assert!(
        callback.starts_with(&format!("{}/auth/callback?", demo.gateway_url)),
        "{callback}"
    );
    let res = client
        .get(&callback)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    let landed = location(&res, &demo.gateway_url);
    assert_eq!(landed, format!("{}{next}", demo.gateway_url));
    let page = client
        .get(&landed)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    Ok(page.text().await.unwrap())
}

#[tokio::test]
async fn code_flow_signs_in_at_the_issuer_and_lands_on_next() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(options(dir.path())).await.unwrap();
    assert_eq!(demo.flow, Flow::Code);
    let client = browser();

    // A wrong password stays on the issuer's page: no code, no session.
    let refused = sign_in_at_the_issuer(&demo, &client, "/?from=it", "not-the-password")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(demo.counters.snapshot().logins, 0, "no code was exchanged");

    let html = sign_in_at_the_issuer(&demo, &client, "/?from=it", "integration-password")
        .await
        .unwrap();
    assert!(
        html.contains(r#"<dd id="user-name">Demo User</dd>"#),
        "{html}"
    );
    let hello: serde_json::Value = client
        .get(format!("{}/api/hello", demo.gateway_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hello["roles"], serde_json::json!(["user", "demo"]));
    let stats = demo.counters.snapshot();
    assert_eq!((stats.logins, stats.refreshes), (1, 0), "one code exchange");

    // A renewal is a POST /oauth/token too, counted apart by its grant type.
    let res = client
        .post(format!("{}/auth/refresh", demo.gateway_url))
        .header("origin", &demo.gateway_url)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.text().await);
    let stats = demo.counters.snapshot();
    assert_eq!((stats.logins, stats.refreshes), (1, 1));
    let renewed: serde_json::Value = client
        .get(format!("{}/api/hello", demo.gateway_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(renewed["tokenId"], hello["tokenId"], "a new access token");

    // The stats endpoint shows the same numbers.
    let shown: serde_json::Value = client
        .get(format!("{}/demo/stats", demo.app_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["logins"], 1);
    assert_eq!(shown["refreshes"], 1);
    demo.shutdown(Duration::from_secs(5)).await;
}

/// What the docs tell users to run in another terminal, done as the command does it:
/// open the issuer from the demo's settings file, revoke, wait for the back-channel
/// delivery. The very next request is refused — no renewal needed.
#[tokio::test]
async fn code_flow_session_revoke_reaches_the_gateway_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(DemoOptions {
        // Long-lived tokens: the refusal cannot come from a failed renewal.
        access_token_ttl: Duration::from_secs(600),
        ..options(dir.path())
    })
    .await
    .unwrap();
    let client = browser();
    sign_in_at_the_issuer(&demo, &client, "/", "integration-password")
        .await
        .unwrap();

    let config = sallyport_issuer::Config::load(Some(&demo.issuer_config)).unwrap();
    assert_eq!(
        config.issuer, demo.issuer_url,
        "logout tokens name this issuer"
    );
    let toml = std::fs::read_to_string(&demo.issuer_config).unwrap();
    let secret = std::fs::read_to_string(dir.path().join("client-secret")).unwrap();
    assert!(
        !toml.contains(secret.trim()),
        "the settings file holds the client secret's digest only"
    );
    let admin = sallyport_issuer::Issuer::open(config).await.unwrap();
    let n = admin
        .admin()
        .revoke_user_sessions(&demo.credentials.username)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(
        admin
            .flush_logout_notifications(Duration::from_secs(30))
            .await,
        "the logout token was delivered"
    );
    admin.close().await;

    let res = client
        .get(format!("{}/?after=revoke", demo.gateway_url))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    let to = location(&res, &demo.gateway_url);
    assert!(
        to.starts_with(&format!("{}/auth/login?next=", demo.gateway_url)),
        "{to}"
    );
    let res = client
        .get(format!("{}/api/hello", demo.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(demo.counters.snapshot().refreshes, 0, "never renewed");
    demo.shutdown(Duration::from_secs(5)).await;
}

/// Logging out (the page's button posts the form) goes through the issuer's
/// end-session endpoint (RP-initiated logout) and back to the app's signed-out page;
/// the app asks for a login again.
#[tokio::test]
async fn code_flow_logout_ends_the_session_at_the_issuer_too() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(options(dir.path())).await.unwrap();
    let client = browser();
    sign_in_at_the_issuer(&demo, &client, "/", "integration-password")
        .await
        .unwrap();

    let res = client
        .post(format!("{}/auth/logout", demo.gateway_url))
        .header("origin", &demo.gateway_url)
        .form(&[("_", "")])
        .send()
        .await
        .unwrap();
    let end_session = location(&res, &demo.gateway_url);
    assert!(
        end_session.starts_with(&format!("{}/oauth/logout?", demo.issuer_url)),
        "{end_session}"
    );
    assert!(end_session.contains("id_token_hint="), "{end_session}");
    let res = client.get(&end_session).send().await.unwrap();
    let signed_out = location(&res, &demo.issuer_url);
    assert_eq!(
        // The issuer appends its (here empty) query.
        signed_out.trim_end_matches('?'),
        format!("{}/signed-out", demo.gateway_url),
        "back to the registered post-logout address"
    );
    // A public page at the gateway: no session needed, and it tells the other tabs.
    let res = client
        .get(&signed_out)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("You are signed out"), "{html}");
    assert!(html.contains("BroadcastChannel"), "{html}");
    let res = client
        .get(format!("{}/", demo.gateway_url))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert!(location(&res, &demo.gateway_url).contains("/auth/login?next="));
    let stats = demo.counters.snapshot();
    assert_eq!(
        (stats.logins, stats.logouts, stats.end_sessions),
        (1, 1, 1),
        "a code exchange, the gateway's revocation, the browser's end-session visit"
    );
    demo.shutdown(Duration::from_secs(5)).await;
}

/// The code flow's second run: the same client secret, and the sessions of the first
/// run still open (the issuer URL differs when its port does; the secret does not).
#[tokio::test]
async fn code_flow_a_second_run_keeps_the_client_secret_private_and_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_demo(options(dir.path())).await.unwrap();
    let client = browser();
    sign_in_at_the_issuer(&first, &client, "/", "integration-password")
        .await
        .unwrap();
    let secret_file = dir.path().join("client-secret");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(secret.trim().len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for file in [&secret_file, &first.issuer_config] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is private", file.display());
        }
    }
    first.shutdown(Duration::from_secs(5)).await;

    let second = start_demo(options(dir.path())).await.unwrap();
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), secret);
    let res = client
        .get(format!("{}/api/hello", second.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    second.shutdown(Duration::from_secs(5)).await;
}

/// The counting layer reads `POST /oauth/token` bodies up to the issuer's limit only.
#[tokio::test]
async fn an_oversized_token_request_is_refused_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(options(dir.path())).await.unwrap();
    let res = browser()
        .post(format!("{}/oauth/token", demo.issuer_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&x={}",
            "a".repeat(64 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    // A refused body is not counted as a refresh: the grant type was never read.
    assert_eq!(demo.counters.snapshot().refreshes, 0);
    demo.shutdown(Duration::from_secs(5)).await;
}
