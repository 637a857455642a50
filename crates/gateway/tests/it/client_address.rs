//! Issue 8 item 1 through the gateway: the gateway tells the issuer which client a
//! login is for (`backend.client_address_header`), and the issuer trusts that header
//! from the gateway's address only. An attacker hammering wrong logins from one address
//! then cannot lock the user out on another. On the old gateway (no client address) the
//! issuer saw every login as coming from the gateway, and the user got 429.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use serde_json::json;

use crate::harness::{PASSWORD, SECRET, USER, cookie_header, start_gateway, start_upstream};

/// The real issuer with production login limits, trusting the gateway on 127.0.0.1.
async fn start_issuer() -> (String, sallyport_testkit::TestIssuer) {
    let t = sallyport_testkit::TestIssuer::builder()
        .config(|cfg| {
            cfg.rate_limit = Default::default();
            cfg.http.trusted_proxies = vec!["127.0.0.1/32".into()];
        })
        .start()
        .await;
    t.issuer
        .admin()
        .add_user(USER, PASSWORD, None, &[])
        .await
        .unwrap();
    (t.url.clone(), t)
}

fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login(
    http: &reqwest::Client,
    gateway: &str,
    username: &str,
    password: &str,
    n: u32,
) -> StatusCode {
    http.post(format!("{gateway}/auth/login"))
        // A client-chosen address must not reach the backend: the gateway sets its own.
        .header("x-forwarded-for", format!("203.0.113.{}", n % 250))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_logins_from_one_address_do_not_lock_out_the_user_through_the_gateway() {
    let (issuer_url, _dir) = start_issuer().await;
    let (_upstream, upstream_url) = start_upstream().await;
    let mut c = sallyport_gateway::Config::default();
    c.upstream = upstream_url;
    c.session.secret = Some(SECRET.into());
    c.session.secure = false;
    c.backend.login_url = Some(format!("{issuer_url}/api/login"));
    c.backend.refresh_url = Some(format!("{issuer_url}/api/refresh-token"));
    c.backend.logout_url = Some(format!("{issuer_url}/api/logout"));
    let (gateway, _gw, _clock) = start_gateway(c).await;

    // The attacker: random usernames and the user's, wrong passwords, from 127.0.0.2.
    let attacker = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let mut limited = false;
    for n in 0..120 {
        let username = if n % 2 == 0 {
            USER.to_owned()
        } else {
            format!("random-{n}")
        };
        if login(&attacker, &gateway, &username, "wrong password", n).await
            == StatusCode::TOO_MANY_REQUESTS
        {
            limited = true;
        }
    }
    assert!(
        limited,
        "the attacking address is limited (through the gateway)"
    );
    // …and keeps hammering while the user logs in.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let background = {
        let (stop, sent, gateway) = (stop.clone(), sent.clone(), gateway.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                login(&attacker, &gateway, USER, "wrong password", n).await;
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let user = client_from(Ipv4Addr::LOCALHOST);
    let mut ok = 0;
    for n in 0..20 {
        let status = login(&user, &gateway, USER, PASSWORD, n).await;
        if status == StatusCode::OK {
            ok += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    background.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 0);
    assert_eq!(ok, 20, "the user's correct password must always work");
}

/// Renewal tells the backend the client's address too (`backend.client_address_header`),
/// the TCP peer and not what the client claims. Before, only logins did: a refresh looked
/// as if the gateway had sent it on its own.
#[tokio::test]
async fn renewal_sends_the_client_address_to_the_backend() {
    use axum::routing::post;
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let log = seen.clone();
    let backend = axum::Router::new()
        .route(
            "/api/login",
            post(|| async {
                axum::Json(json!({"accessToken": "at-1", "refreshToken": "rt-1", "expiresIn": 60}))
            }),
        )
        .route(
            "/api/refresh-token",
            post(move |headers: http::HeaderMap| async move {
                let sent = headers
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                log.lock().unwrap().push(sent);
                axum::Json(json!({"accessToken": "at-2", "refreshToken": "rt-2", "expiresIn": 60}))
            }),
        );
    let backend_url = sallyport_testkit::start_upstream(backend).await;
    let (_upstream, upstream_url) = start_upstream().await;
    let mut c = sallyport_gateway::Config::default();
    c.upstream = upstream_url;
    c.session.secret = Some(SECRET.into());
    c.session.secure = false;
    c.backend.login_url = Some(format!("{backend_url}/api/login"));
    c.backend.refresh_url = Some(format!("{backend_url}/api/refresh-token"));
    let (gateway, _gw, clock) = start_gateway(c).await;

    let user = client_from(Ipv4Addr::new(127, 0, 0, 3));
    let resp = user
        .post(format!("{gateway}/auth/login"))
        .json(&json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = cookie_header(resp.headers()).unwrap();
    clock.advance_ms(120_000);
    let resp = user
        .get(format!("{gateway}/app"))
        .header("cookie", &cookie)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(*seen.lock().unwrap(), vec![Some("127.0.0.3".to_owned())]);
}
