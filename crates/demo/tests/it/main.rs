//! The demo stack for real on loopback: issuer + demo app + gateway, driven over
//! HTTP like a browser (cookie jar, no redirects followed automatically).

// Test code: a failed step should stop the test where it happened.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, LOCATION};
use sallyport_demo::{DemoOptions, RunningDemo, start};

/// Every test's options: also sends this binary's logs to `SALLYPORT_TEST_LOG_DIR` for the
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

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

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
async fn the_page_needs_a_login_and_then_shows_the_verified_user() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start(options(dir.path())).await.unwrap();
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
    let demo = start(options(dir.path())).await.unwrap();
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
async fn a_second_run_reuses_user_secret_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(DemoOptions {
        password: None,
        ..options(dir.path())
    })
    .await
    .unwrap();
    assert!(first.created_user);
    let password = first.credentials.password.clone();
    assert!(password.len() >= 16, "a random password is generated");
    let client = browser();
    log_in(&first, &client).await;
    first.shutdown(Duration::from_secs(5)).await;

    let second = start(options(dir.path())).await.unwrap();
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
    let err = start(DemoOptions {
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
    let demo = start(options(&dir)).await.unwrap();
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
