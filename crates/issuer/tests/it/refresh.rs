//! Refresh-token rotation: retries inside the reuse interval, reuse detection,
//! concurrency, expiry, crash safety.

use super::*;

/// A rotation that dies half-way (here: signing fails inside the transaction, as a
/// crash would) changes nothing: the presented token stays valid and unused.
pub(crate) async fn failed_rotation_leaves_the_token_valid(b: Backend) {
    use sallyport_issuer::store::RotateRequest;
    use sallyport_issuer::token::RefreshSecret;
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let presented = RefreshSecret::parse(&rt1).unwrap();
    let failing =
        |_: &sallyport_issuer::store::UserRecord,
         _: &sallyport_issuer::store::SessionRecord,
         _: i64| { Err(sallyport_issuer::Error::Key("simulated crash".into())) };
    let result = s
        .issuer
        .store()
        .rotate(RotateRequest {
            presented: &presented,
            fresh: RefreshSecret::generate().unwrap(),
            now_ms: s.issuer.now_ms(),
            reuse_interval_ms: 10_000,
            idle_ttl_ms: 3_600_000,
            mint: &failing,
            client_addr: None,
        })
        .await;
    assert!(result.is_err(), "{result:?}");
    // Much later (far outside any reuse interval) the token still rotates normally:
    // it was never marked used.
    s.clock.advance_secs(3600);
    assert_eq!(s.refresh(&rt1).await.status(), StatusCode::OK);
    let sessions = s.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(sessions[0].generation, 2);
}

pub(crate) async fn retry_within_interval_continues_the_same_family(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let first: Value = s.refresh(&rt1).await.json().await.unwrap();
    // The response was "lost"; the client retries 9 s later with the same token.
    s.clock.advance_secs(9);
    let r = s.refresh(&rt1).await;
    assert_eq!(r.status(), StatusCode::OK);
    let retry: Value = r.json().await.unwrap();
    assert_eq!(
        retry["refreshToken"], first["refreshToken"],
        "same successor, no divergent branch"
    );
    assert_eq!(retry["accessToken"], first["accessToken"]);
    // The successor works, and its own successor can be reached from rt1 inside the interval.
    let second: Value = s
        .refresh(&str_field(&first, "refreshToken"))
        .await
        .json()
        .await
        .unwrap();
    let again: Value = s.refresh(&rt1).await.json().await.unwrap();
    assert_eq!(
        again["refreshToken"], second["refreshToken"],
        "retry follows the chain to the current token"
    );
    let sessions = s.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].revoked_at_ms.is_none());
    assert_eq!(sessions[0].generation, 3);
}

pub(crate) async fn reuse_after_interval_revokes_the_family(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let rt2 = str_field(
        &s.refresh(&rt1).await.json::<Value>().await.unwrap(),
        "refreshToken",
    );
    s.clock.advance_ms(10_001);
    assert_eq!(
        error_code(s.refresh(&rt1).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_grant".into())
    );
    assert_eq!(
        error_code(s.refresh(&rt2).await).await.1,
        "invalid_grant",
        "the whole family is revoked"
    );
    let events = s.issuer.admin().audit_events(20).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "refresh_reuse_detected"),
        "{events:?}"
    );
    let sessions = s.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(
        sessions[0].revoked_reason.as_deref(),
        Some("refresh_token_reuse")
    );
    let metrics = s.metrics_text().await;
    assert!(
        metrics.contains("sallyport_issuer_reuse_detections_total 1"),
        "{metrics}"
    );
}

pub(crate) async fn fifty_concurrent_refreshes_continue_one_family(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        let rt1 = rt1.clone();
        tasks.push(tokio::spawn(async move {
            let r = s.refresh(&rt1).await;
            assert_eq!(r.status(), StatusCode::OK);
            let body = r.json::<Value>().await.unwrap();
            (
                str_field(&body, "refreshToken"),
                str_field(&body, "accessToken"),
            )
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers.dedup();
    assert_eq!(
        answers.len(),
        1,
        "all 50 got the same successor and access token"
    );
    let tokens: Vec<String> = answers.into_iter().map(|(rt, _)| rt).collect();
    let sessions = s.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(
        sessions[0].revoked_at_ms.is_none(),
        "no revocation inside the interval"
    );
    assert_eq!(sessions[0].generation, 2, "exactly one rotation");
    assert_eq!(
        s.refresh(&tokens[0]).await.status(),
        StatusCode::OK,
        "the family continues"
    );
}

pub(crate) async fn idle_and_absolute_expiry(b: Backend) {
    let Some(s) = start(b, |c| c.session_max_lifetime_secs = 3 * 24 * 3600).await else {
        return;
    };
    s.add_alice().await;
    // Idle: 30 days default... capped by the 3-day absolute lifetime here.
    let t = s.login_alice().await;
    assert_eq!(t["refreshTokenExpiresIn"], 3 * 24 * 3600);
    let mut rt = str_field(&t, "refreshToken");
    for _ in 0..2 {
        s.clock.advance_secs(24 * 3600);
        rt = str_field(
            &s.refresh(&rt).await.json::<Value>().await.unwrap(),
            "refreshToken",
        );
    }
    s.clock.advance_secs(24 * 3600);
    assert_eq!(
        error_code(s.refresh(&rt).await).await.1,
        "invalid_grant",
        "absolute lifetime over"
    );

    let Some(s) = start(b, |c| c.refresh_idle_ttl_secs = 3600).await else {
        return;
    };
    s.add_alice().await;
    let rt = str_field(&s.login_alice().await, "refreshToken");
    s.clock.advance_secs(3599);
    let rt = str_field(
        &s.refresh(&rt).await.json::<Value>().await.unwrap(),
        "refreshToken",
    );
    s.clock.advance_secs(3601);
    assert_eq!(
        error_code(s.refresh(&rt).await).await.1,
        "invalid_grant",
        "idle expiry"
    );
}

pub(crate) async fn reuse_is_detected_after_restart(b: Backend) {
    let Some((url, dir)) = harness::database(b).await else {
        return;
    };
    let mut config = harness::test_config();
    config.database_url = url;
    let clock = ManualClock::starting_now();
    let s = harness::start_on(config.clone(), clock.clone(), dir.clone()).await;
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let rt2 = str_field(
        &s.refresh(&rt1).await.json::<Value>().await.unwrap(),
        "refreshToken",
    );
    let kid_before = s.issuer.admin().list_keys().await.unwrap();
    drop(s);
    // A new process on the same database: same keys, same reuse state.
    let s: Server = harness::start_on(config, clock.clone(), dir).await;
    assert_eq!(
        s.issuer.admin().list_keys().await.unwrap(),
        kid_before,
        "no new key on restart"
    );
    let retry: Value = s.refresh(&rt1).await.json().await.unwrap();
    assert_eq!(
        str_field(&retry, "refreshToken"),
        rt2,
        "retry inside the interval survives a restart"
    );
    clock.advance_secs(11);
    assert_eq!(error_code(s.refresh(&rt1).await).await.1, "invalid_grant");
    assert_eq!(error_code(s.refresh(&rt2).await).await.1, "invalid_grant");
}

/// Two issuer instances (each with its own pool) on one PostgreSQL database, 25 requests
/// each on the same refresh token: one rotation, everyone gets the same successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_issuers_race_on_one_token() {
    let Some((url, _)) = harness::database(Backend::Postgres).await else {
        return;
    };
    let mut config = harness::test_config();
    config.database_url = url;
    let clock = ManualClock::starting_now();
    let a = Arc::new(harness::start_on(config.clone(), clock.clone(), None).await);
    let b = Arc::new(harness::start_on(config, clock.clone(), None).await);
    a.add_alice().await;
    let rt1 = str_field(&a.login_alice().await, "refreshToken");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let server = if i % 2 == 0 { a.clone() } else { b.clone() };
        let rt1 = rt1.clone();
        tasks.push(tokio::spawn(async move {
            let r = server.refresh(&rt1).await;
            assert_eq!(r.status(), StatusCode::OK);
            str_field(&r.json::<Value>().await.unwrap(), "refreshToken")
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "one successor across both replicas");
    let sessions = b.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(sessions[0].generation, 2);
    assert!(sessions[0].revoked_at_ms.is_none());
    // Outside the interval, a stale replay on either replica revokes the family.
    clock.advance_secs(11);
    assert_eq!(error_code(b.refresh(&rt1).await).await.1, "invalid_grant");
    assert_eq!(
        error_code(a.refresh(&tokens[0]).await).await.1,
        "invalid_grant"
    );
}
