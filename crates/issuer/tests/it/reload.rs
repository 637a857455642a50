//! Configuration reload ([`Issuer::reload`], what `SIGHUP` runs): the client registry and
//! the trusted proxies change while the issuer serves; an invalid configuration is
//! refused and the old one keeps serving; settings that need a restart are kept.

use super::*;

const GW_SECRET: &str = "gateway-client-secret-0001";
const SECOND_SECRET: &str = "second-client-secret-0002";

fn client(id: &str, secret: &str) -> sallyport_issuer::config::ClientConfig {
    sallyport_issuer::config::ClientConfig {
        id: id.into(),
        secret: Some(secret.into()),
        ..Default::default()
    }
}

async fn password_grant(s: &Server, id: &str, secret: &str) -> StatusCode {
    s.http
        .post(s.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn the_client_registry_changes_on_reload() {
    let s = start(Backend::Sqlite, |c| {
        c.allow_public_clients = false;
        c.clients = vec![client("gateway", GW_SECRET)];
    })
    .await
    .unwrap();
    s.add_alice().await;
    assert_eq!(
        password_grant(&s, "gateway", GW_SECRET).await,
        StatusCode::OK
    );
    assert_eq!(
        password_grant(&s, "second", SECOND_SECRET).await,
        StatusCode::UNAUTHORIZED
    );

    let mut config = s.issuer.settings().raw.clone();
    config.clients.push(client("second", SECOND_SECRET));
    let done = s.issuer.reload(config.clone()).unwrap();
    assert!(done.kept.is_empty(), "{:?}", done.kept);
    assert_eq!(
        password_grant(&s, "second", SECOND_SECRET).await,
        StatusCode::OK
    );

    // Removing a client shuts it out at once.
    config.clients.retain(|c| c.id != "gateway");
    s.issuer.reload(config).unwrap();
    assert_eq!(
        password_grant(&s, "gateway", GW_SECRET).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        password_grant(&s, "second", SECOND_SECRET).await,
        StatusCode::OK
    );
    let m = s.metrics_text().await;
    assert_eq!(
        metric(&m, "sallyport_issuer_config_reloads_total{result=\"ok\"}"),
        2.0,
        "{m}"
    );
}

#[tokio::test]
async fn public_clients_are_shut_out_by_a_reload() {
    let s = start(Backend::Sqlite, |_| {}).await.unwrap();
    s.add_alice().await;
    // No client authentication at all: a public client.
    let public_grant = || async {
        s.http
            .post(s.url("/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "alice-password"),
            ])
            .send()
            .await
            .unwrap()
    };
    assert_eq!(public_grant().await.status(), StatusCode::OK);

    let mut config = s.issuer.settings().raw.clone();
    config.allow_public_clients = false;
    config.clients = vec![client("gateway", GW_SECRET)];
    s.issuer.reload(config).unwrap();
    assert_eq!(
        error_code(public_grant().await).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    assert_eq!(
        password_grant(&s, "gateway", GW_SECRET).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn trusted_proxies_change_on_reload() {
    let s = start(Backend::Sqlite, |_| {}).await.unwrap();
    s.add_alice().await;
    let login = || async {
        let r = s
            .http
            .post(s.url("/api/login"))
            .header("x-forwarded-for", "203.0.113.10")
            .json(&json!({"username": "alice", "password": "alice-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // The newest session's recorded address.
        let sessions = s.issuer.admin().list_sessions(Some("alice")).await.unwrap();
        sessions
            .into_iter()
            .max_by_key(|x| (x.created_at_ms, x.id.clone()))
            .unwrap()
            .client_addr
    };
    assert_eq!(
        login().await.as_deref(),
        Some("127.0.0.1"),
        "header ignored"
    );

    let mut config = s.issuer.settings().raw.clone();
    config.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    s.issuer.reload(config).unwrap();
    assert_eq!(
        login().await.as_deref(),
        Some("203.0.113.10"),
        "the proxy's header is believed after the reload"
    );
}

/// The limit is enforced per request from the running settings, so a reload can raise
/// it above the start-up value as well as lower it.
#[tokio::test]
async fn the_body_limit_follows_a_reload_both_ways() {
    let s = start(Backend::Sqlite, |c| c.max_body_bytes = 1024)
        .await
        .unwrap();
    s.add_alice().await;
    let login = || async {
        s.http
            .post(s.url("/api/login"))
            .json(&json!({
                "username": "alice",
                "password": "alice-password",
                "padding": "x".repeat(4000),
            }))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(login().await, StatusCode::PAYLOAD_TOO_LARGE);

    let mut config = s.issuer.settings().raw.clone();
    config.max_body_bytes = 8192;
    s.issuer.reload(config.clone()).unwrap();
    assert_eq!(
        login().await,
        StatusCode::OK,
        "raised above the start-up limit"
    );

    config.max_body_bytes = 1024;
    s.issuer.reload(config).unwrap();
    assert_eq!(
        login().await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "lowered again"
    );
}

/// A retired signing key stays published as long as the tokens it signed live: a reload
/// that shortens `access_token_ttl_secs` must not cut short the tokens issued before it.
#[tokio::test]
async fn a_shorter_token_lifetime_keeps_earlier_tokens_verifiable() {
    let s = start(Backend::Sqlite, |_| {}).await.unwrap();
    s.add_alice().await;
    let before = str_field(&s.login_alice().await, "accessToken");
    let kid = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();
    s.issuer.admin().rotate_keys().await.unwrap();

    let mut config = s.issuer.settings().raw.clone();
    config.access_token_ttl_secs = 60;
    s.issuer.reload(config).unwrap();
    // Past what the new lifetime would keep the retired key for (60 s + key cache 30 s +
    // 1 min), well within the 900 s the token was issued with.
    s.clock.advance_secs(300);
    let me = s
        .http
        .get(s.url("/api/me"))
        .bearer_auth(&before)
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "the earlier token still verifies"
    );
    let jwks: Value = s.get_json("/.well-known/jwks.json").await;
    assert!(jwks.to_string().contains(&kid), "{jwks}");

    // And it leaves once that token has expired.
    s.clock.advance_secs(900 + 30 + 61 - 300);
    let jwks: Value = s.get_json("/.well-known/jwks.json").await;
    assert!(!jwks.to_string().contains(&kid), "{jwks}");
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_and_restart_only_settings_are_kept() {
    let s = start(Backend::Sqlite, |c| {
        c.allow_public_clients = false;
        c.clients = vec![client("gateway", GW_SECRET)];
    })
    .await
    .unwrap();
    s.add_alice().await;
    let old = s.issuer.settings().raw.clone();

    // A valid change together with an invalid one: nothing is applied.
    let mut bad = old.clone();
    bad.clients.push(client("second", SECOND_SECRET));
    bad.http.trusted_proxies = vec!["not-a-network".into()];
    let err = s.issuer.reload(bad).unwrap_err();
    assert!(err.to_string().contains("http.trusted_proxies[0]"), "{err}");
    assert_eq!(
        password_grant(&s, "second", SECOND_SECRET).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        password_grant(&s, "gateway", GW_SECRET).await,
        StatusCode::OK
    );
    let m = s.metrics_text().await;
    assert_eq!(
        metric(
            &m,
            "sallyport_issuer_config_reloads_total{result=\"refused\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sallyport_issuer_config_last_reload_successful"),
        0.0
    );

    // `issuer` needs a restart (tokens are checked against it): kept, the rest applies.
    let mut next = old.clone();
    next.issuer = "http://elsewhere.test".into();
    next.access_token_ttl_secs = 60;
    let done = s.issuer.reload(next).unwrap();
    assert_eq!(done.kept, ["issuer"]);
    assert_eq!(s.issuer.settings().issuer, old.issuer);
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .basic_auth("gateway", Some(GW_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["expires_in"], 60);
}
