//! Start-up: configuration errors name the setting; the in-memory test configuration.

use super::*;

/// `Config::for_tests("sqlite::memory:")`: what other crates' tests use.
#[tokio::test]
async fn in_memory_sqlite_for_tests() {
    let issuer = Issuer::open(Config::for_tests("sqlite::memory:"))
        .await
        .unwrap();
    issuer
        .admin()
        .add_user("bob", "bob-password", None, &[])
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sallyport_issuer::serve(listener, issuer.clone()));
    let r = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"username": "bob", "password": "bob-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Bad settings stop start-up with the setting's name.
#[tokio::test]
async fn bad_config_names_the_setting() {
    let config = Config {
        database_url: "mysql://x".into(),
        ..harness::test_config()
    };
    let err = Issuer::open(config).await.unwrap_err().to_string();
    assert!(err.contains("database_url"), "{err}");
    let config = Config {
        refresh_reuse_interval_secs: 100_000,
        ..harness::test_config()
    };
    let err = Issuer::open(config).await.unwrap_err().to_string();
    assert!(err.contains("refresh_reuse_interval_secs"), "{err}");
}
