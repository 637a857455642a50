//! Issue 8 regressions: login lockout by anonymous clients, hashing memory, key and
//! database file permissions, signing-key encryption, `/api/me` leeway.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::StatusCode;
use sallyport_issuer::config::RateLimitConfig;
use serde_json::{Value, json};

use crate::harness::{Backend, Server, start};

/// Production login limits (the harness turns them off).
fn real_limits(c: &mut sallyport_issuer::Config) {
    c.rate_limit = RateLimitConfig::default();
}

fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

async fn login_as(
    http: &reqwest::Client,
    s: &Server,
    username: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> StatusCode {
    let mut req = http
        .post(s.url("/api/login"))
        .json(&json!({"username": username, "password": password}));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap().status()
}

/// Hammers wrong logins (random usernames and the real one) until `stop` is set.
fn attack(
    s: &Server,
    http: reqwest::Client,
    forwarded_for: Option<&'static str>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let url = s.url("/api/login");
    tokio::spawn(async move {
        let mut n = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let username = if n.is_multiple_of(2) {
                format!("random-{n}")
            } else {
                "alice".to_owned()
            };
            let mut req = http
                .post(&url)
                .json(&json!({"username": username, "password": "wrong-password"}));
            if let Some(xff) = forwarded_for {
                req = req.header("x-forwarded-for", xff);
            }
            let _ = req.send().await;
            n += 1;
        }
        n
    })
}

/// Issue 8 item 1: wrong-password floods (random usernames and the victim's) from one
/// address must not lock the victim out on another address. On the old limiter (per
/// username, from any address) the victim got 429 every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attack_from_one_address_does_not_lock_out_the_user_elsewhere() {
    let s = start(Backend::Sqlite, real_limits).await.unwrap();
    s.add_alice().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = attack(
        &s,
        client_from(Ipv4Addr::new(127, 0, 0, 2)),
        None,
        stop.clone(),
    );
    // Let the attack exhaust every limit first.
    let http_attacker = client_from(Ipv4Addr::new(127, 0, 0, 2));
    for i in 0..40 {
        login_as(&http_attacker, &s, "alice", "wrong-password", None).await;
        login_as(&http_attacker, &s, &format!("ghost-{i}"), "wrong", None).await;
    }
    assert_eq!(
        login_as(&http_attacker, &s, "alice", "alice-password", None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the attacking address itself is limited"
    );
    let user = client_from(Ipv4Addr::LOCALHOST);
    let mut ok = 0;
    for _ in 0..20 {
        if login_as(&user, &s, "alice", "alice-password", None).await == StatusCode::OK {
            ok += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let attempts = attacker.await.unwrap();
    assert!(attempts > 0);
    assert_eq!(ok, 20, "the user's correct password must always work");
}

/// Concurrent guesses from one address: each attempt counts before its password is
/// hashed, so the (account, address) burst bounds them too. Before, all 40 were hashed
/// (checked against alice's real hash) because none had failed yet when each was let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_from_one_address_stay_within_the_burst() {
    let s = start(Backend::Sqlite, |c| {
        real_limits(c);
        // Slow, one at a time, so that the guesses overlap.
        c.argon2.memory_kib = 8 * 1024;
        c.argon2.iterations = 2;
        c.argon2.max_concurrent = 1;
        c.argon2.max_queued = 64;
    })
    .await
    .unwrap();
    s.add_alice().await;
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let http = s.http.clone();
            let url = s.url("/api/login");
            tokio::spawn(async move {
                http.post(url)
                    .json(&json!({"username": "alice", "password": "wrong-password"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for t in tasks {
        let status = t.await.unwrap();
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&status),
            "{status}"
        );
    }
    let metrics = s.metrics_text().await;
    let hashed: u32 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("sallyport_issuer_logins_total{outcome=\"invalid_credentials\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    let burst = RateLimitConfig::default().account_address_burst;
    assert!(
        hashed <= burst + 1,
        "{hashed} guesses were checked against the password, burst {burst}"
    );
    // The right password from another address still works.
    let user = client_from(Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(
        login_as(&user, &s, "alice", "alice-password", None).await,
        StatusCode::OK
    );
}

/// The same attack relayed by a trusted proxy: addresses come from its header.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_trusted_proxy_limits_key_on_the_forwarded_address() {
    let s = start(Backend::Sqlite, |c| {
        real_limits(c);
        c.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await
    .unwrap();
    s.add_alice().await;
    let proxy = client_from(Ipv4Addr::LOCALHOST);
    for i in 0..80 {
        login_as(
            &proxy,
            &s,
            if i % 2 == 0 { "alice" } else { "nobody" },
            "wrong-password",
            Some("198.51.100.66"),
        )
        .await;
    }
    assert_eq!(
        login_as(&proxy, &s, "alice", "alice-password", Some("198.51.100.66")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A client-written prefix does not change who the proxy saw.
    assert_eq!(
        login_as(
            &proxy,
            &s,
            "alice",
            "alice-password",
            Some("203.0.113.10, 198.51.100.66")
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..20 {
        assert_eq!(
            login_as(&proxy, &s, "alice", "alice-password", Some("203.0.113.10")).await,
            StatusCode::OK
        );
    }
    // Sessions record the forwarded address.
    let sessions = s.issuer.admin().list_sessions(Some("alice")).await.unwrap();
    assert!(
        sessions
            .iter()
            .all(|x| x.client_addr.as_deref() == Some("203.0.113.10"))
    );
}

/// An untrusted peer cannot pick its address with the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_header_from_an_untrusted_peer_is_ignored() {
    let s = start(Backend::Sqlite, |c| {
        real_limits(c);
        c.http.trusted_proxies = vec!["10.0.0.0/8".into()];
    })
    .await
    .unwrap();
    s.add_alice().await;
    let http = client_from(Ipv4Addr::LOCALHOST);
    for i in 0..60 {
        let xff = format!("192.0.2.{i}");
        let status = login_as(&http, &s, &format!("u{i}"), "wrong-password", Some(&xff)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return;
        }
    }
    panic!("rotating X-Forwarded-For bought a fresh address budget");
}

/// Issue 8 suspected item: the limiter's maps are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_usernames_do_not_grow_the_limiter_past_its_cap() {
    let s = start(Backend::Sqlite, |c| {
        c.rate_limit = RateLimitConfig {
            max_tracked_keys: 50,
            ..RateLimitConfig::default()
        };
        c.rate_limit.address_burst = 100_000;
        c.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await
    .unwrap();
    let proxy = client_from(Ipv4Addr::LOCALHOST);
    for i in 0..300u32 {
        let xff = format!("10.0.{}.{}", i / 250, i % 250);
        login_as(
            &proxy,
            &s,
            &format!("random-{i}"),
            "wrong-password",
            Some(&xff),
        )
        .await;
    }
    for n in s.issuer.rate_limit_tracked_keys() {
        assert!(n <= 50, "{n} keys tracked, cap 50");
    }
}

/// Issue 8 item 5: more concurrent logins than hashing slots plus queue are refused at
/// once (503, JSON, Retry-After) instead of each taking argon2 memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn excess_concurrent_logins_are_refused_not_queued() {
    let s = start(Backend::Sqlite, |c| {
        // Slow enough hashes that the burst below arrives while the slot is busy.
        c.argon2.memory_kib = 32 * 1024;
        c.argon2.iterations = 4;
        c.argon2.max_concurrent = 1;
        c.argon2.max_queued = 2;
    })
    .await
    .unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let http = s.http.clone();
            let url = s.url("/api/login");
            tokio::spawn(async move {
                http.post(url)
                    .json(&json!({"username": format!("u{i}"), "password": "wrong-password"}))
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut refused = 0;
    let mut hashed = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status() {
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.headers()["retry-after"], "1");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"], "overloaded");
                refused += 1;
            }
            StatusCode::UNAUTHORIZED => hashed += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "all {hashed} logins were queued");
    assert_eq!(refused + hashed, 40);
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Issue 8 item 6: the database (password hashes, signing keys) and its WAL files are
/// created 0600 in a 0700 directory, whatever the umask.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_files_are_created_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let db = dir.join("issuer.db");
    let config = crate::harness::test_config_with(&format!("sqlite://{}", db.display()));
    let s =
        crate::harness::start_on(config, sallyport_issuer::ManualClock::starting_now(), None).await;
    s.add_alice().await;
    s.login_alice().await;
    assert_eq!(mode(&dir), 0o700, "data directory");
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        assert!(file.exists(), "{} exists while open", file.display());
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEK: &str = "HxwdHhscGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

fn db_config(db: &std::path::Path, kek: Option<&str>) -> sallyport_issuer::Config {
    sallyport_issuer::Config {
        key_encryption_key: kek.map(str::to_owned),
        ..crate::harness::test_config_with(&format!("sqlite://{}", db.display()))
    }
}

/// Issue 8 item 6: with a key-encryption key, signing keys are stored encrypted and
/// only that key opens them; plaintext keys from before still load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signing_keys_are_encrypted_at_rest_with_a_key_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("issuer.db");
    let issuer = sallyport_issuer::Issuer::open(db_config(&db, Some(KEK)))
        .await
        .unwrap();
    let stored = issuer.store().signing_keys().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(sallyport_issuer::keys::is_encrypted(&stored[0]));
    assert_ne!(
        stored[0].private_der.first(),
        Some(&0x30),
        "not plain PKCS#8"
    );
    let kid = issuer.keys().await.unwrap().signing_kid().to_owned();
    let public = issuer.admin().export_public_jwks().await.unwrap();
    issuer.close().await;

    // No key, or the wrong one: a clear start-up error.
    let err = sallyport_issuer::Issuer::open(db_config(&db, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("SALLYPORT_KEY_ENCRYPTION_KEY"), "{err}");
    assert!(err.contains("encrypted"), "{err}");
    let err = sallyport_issuer::Issuer::open(db_config(&db, Some(OTHER_KEK)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not decrypt"), "{err}");
    let err = sallyport_issuer::Issuer::open(db_config(&db, Some("c2hvcnQ=")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SALLYPORT_KEY_ENCRYPTION_KEY") && err.contains("32 bytes"),
        "{err}"
    );

    // The right key: same signing key, same JWKS, and the backup holds the private key.
    let issuer = sallyport_issuer::Issuer::open(db_config(&db, Some(KEK)))
        .await
        .unwrap();
    assert_eq!(issuer.keys().await.unwrap().signing_kid(), kid);
    assert_eq!(issuer.admin().export_public_jwks().await.unwrap(), public);
    assert!(!public.to_string().contains("\"d\""));
    let backup = issuer.admin().export_private_keys().await.unwrap();
    assert_eq!(backup["keys"][0]["kid"], kid.as_str());
    assert!(
        backup["keys"][0]["private_key_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    let events = issuer.admin().audit_events(1).await.unwrap();
    assert_eq!(events[0].kind, "signing_keys_exported");
    assert_eq!(events[0].detail.as_deref(), Some(kid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plaintext_keys_still_load_once_encryption_is_turned_on() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("issuer.db");
    let issuer = sallyport_issuer::Issuer::open(db_config(&db, None))
        .await
        .unwrap();
    let old_kid = issuer.keys().await.unwrap().signing_kid().to_owned();
    issuer.close().await;
    let issuer = sallyport_issuer::Issuer::open(db_config(&db, Some(KEK)))
        .await
        .unwrap();
    assert_eq!(issuer.keys().await.unwrap().signing_kid(), old_kid);
    let rotated = issuer.admin().rotate_keys().await.unwrap();
    assert!(rotated.encrypted);
    let keys = issuer.admin().list_keys().await.unwrap();
    assert!(keys.iter().any(|k| k.kid == old_kid && !k.encrypted));
    assert!(
        keys.iter()
            .any(|k| k.kid == rotated.kid && k.encrypted && k.signing)
    );
}

/// Issue 8 (suspected): `/api/me` took tokens 30 s past `exp`. The leeway is now
/// `access_token_leeway_secs`, default 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_me_refuses_expired_tokens_unless_a_leeway_is_configured() {
    use sallyport_issuer::Clock as _;
    for (leeway, expected) in [(None, StatusCode::UNAUTHORIZED), (Some(60), StatusCode::OK)] {
        let (url, dir) = crate::harness::database(Backend::Sqlite).await.unwrap();
        let mut config = crate::harness::test_config_with(&url);
        if let Some(l) = leeway {
            config.access_token_leeway_secs = l;
        }
        // Tokens are minted 5 s short of a full lifetime ago: expired 5 s ago.
        let ttl_ms = config.access_token_ttl_secs * 1000;
        let clock = sallyport_issuer::ManualClock::new(
            sallyport_issuer::SystemClock.now_ms() - ttl_ms - 5_000,
        );
        let s = crate::harness::start_on(config, clock, dir).await;
        s.add_alice().await;
        let tokens = s.login_alice().await;
        let access = tokens["accessToken"]
            .as_str()
            .or(tokens["access_token"].as_str())
            .unwrap()
            .to_owned();
        let r = s
            .http
            .get(s.url("/api/me"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected, "leeway {leeway:?}");
    }
}
