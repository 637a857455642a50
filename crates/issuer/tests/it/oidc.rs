//! The OpenID provider: `/oauth/authorize` (code + PKCE, login form), the
//! `authorization_code` grant and ID tokens, RP-initiated logout, back-channel logout.

use std::sync::Mutex;

use sallyport_issuer::config::ClientConfig;

use super::*;

const APP: &str = "app";
const APP_SECRET: &str = "app-client-secret-0001";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const POST_LOGOUT: &str = "http://127.0.0.1:9/signed-out";
const SPA: &str = "spa";
const SPA_REDIRECT: &str = "http://localhost:9/spa/cb";
/// A verifier (RFC 7636 appendix B) and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A loopback back-channel logout receiver: records each `logout_token` and answers
/// 500 to the first `fail_first` requests.
#[derive(Clone)]
pub(crate) struct Receiver {
    pub url: String,
    pub tokens: Arc<Mutex<Vec<String>>>,
    pub attempts: Arc<std::sync::atomic::AtomicUsize>,
}

pub(crate) async fn receiver(fail_first: usize) -> Receiver {
    receiver_gated(fail_first, None).await
}

/// [`receiver`] whose handlers each wait for a permit of `gate` before answering.
pub(crate) async fn receiver_gated(
    fail_first: usize,
    gate: Option<Arc<tokio::sync::Semaphore>>,
) -> Receiver {
    use std::sync::atomic::Ordering;
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (t, a) = (tokens.clone(), attempts.clone());
    let app = axum::Router::new().route(
        "/backchannel",
        axum::routing::post(
            move |axum::extract::Form(f): axum::extract::Form<
                std::collections::HashMap<String, String>,
            >| {
                let (t, a, gate) = (t.clone(), a.clone(), gate.clone());
                async move {
                    if let Some(gate) = gate {
                        gate.acquire().await.unwrap().forget();
                    }
                    if a.fetch_add(1, Ordering::SeqCst) < fail_first {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    t.lock().unwrap().push(f["logout_token"].clone());
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/backchannel", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url,
        tokens,
        attempts,
    }
}

impl Receiver {
    /// Waits (bounded) until `n` tokens arrived.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..500 {
            let got = self.tokens.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "only {:?} logout tokens arrived, wanted {n}",
            self.tokens.lock().unwrap().len()
        );
    }
}

/// An issuer with the confidential `app` (back channel to `bc`) and the public `spa`.
async fn start_op(b: Backend, bc: Option<&str>) -> Option<Server> {
    let bc = bc.map(str::to_owned);
    start(b, move |c| {
        c.issuer = "http://issuer.test".into();
        c.backchannel_logout.retry_base_ms = 20;
        c.backchannel_logout.timeout_ms = 2000;
        c.clients = vec![
            ClientConfig {
                id: APP.into(),
                secret: Some(APP_SECRET.into()),
                redirect_uris: vec![REDIRECT.into()],
                post_logout_redirect_uris: vec![POST_LOGOUT.into()],
                backchannel_logout_uri: bc,
                backchannel_logout_session_required: true,
                ..Default::default()
            },
            ClientConfig {
                id: SPA.into(),
                redirect_uris: vec![SPA_REDIRECT.into()],
                ..Default::default()
            },
        ];
    })
    .await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn authorize_query(client: &str, redirect: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("scope", "openid profile"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        q.retain(|(key, _)| key != k);
        if !v.is_empty() {
            q.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    q
}

fn with_query<T: serde::Serialize + ?Sized>(url: &str, q: &T) -> String {
    format!("{url}?{}", serde_urlencoded::to_string(q).unwrap())
}

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    let (_, q) = location.split_once('?').expect("query in location");
    serde_urlencoded::from_str(q).unwrap()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end]
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
}

/// GET the login form, post credentials; the response to the post.
async fn sign_in(
    s: &Server,
    http: &reqwest::Client,
    query: &[(String, String)],
    password: &str,
) -> reqwest::Response {
    let page = http
        .get(with_query(&s.url("/oauth/authorize"), query))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = page
        .headers()
        .get("set-cookie")
        .expect("csrf cookie")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let mut form: Vec<(String, String)> = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "csrf",
    ]
    .iter()
    .filter(|n| html.contains(&format!("name=\"{n}\"")))
    .map(|n| ((*n).to_owned(), hidden(&html, n)))
    .collect();
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), password.into()));
    http.post(s.url("/oauth/authorize"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Signs alice in for `client`; returns the code from the redirect.
async fn code_for(s: &Server, client: &str, redirect: &str) -> String {
    let http = no_redirects();
    let r = sign_in(
        s,
        &http,
        &authorize_query(client, redirect, &[]),
        "alice-password",
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(redirect), "{location}");
    let q = query_of(&location);
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], "http://issuer.test");
    q["code"].clone()
}

async fn exchange(
    s: &Server,
    client: &str,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", verifier),
        ("client_id", client),
    ];
    if client == APP {
        form.push(("client_secret", APP_SECRET));
    }
    s.http
        .post(s.url("/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn refresh_as(s: &Server, client: Option<&str>, token: &str) -> reqwest::Response {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(c) = client {
        form.push(("client_id", c));
        if c == APP {
            form.push(("client_secret", APP_SECRET));
        }
    }
    s.http
        .post(s.url("/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Verifies a JWT against the issuer's JWKS; returns (header typ, claims).
async fn verify(s: &Server, jwt: &str) -> (String, Value) {
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(s.get_json("/.well-known/jwks.json").await).unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_aud = false;
    v.validate_exp = false;
    v.set_required_spec_claims(&["iss"]);
    let data =
        jsonwebtoken::decode::<Value>(jwt, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap();
    (header.typ.unwrap_or_default(), data.claims)
}

pub(crate) async fn code_flow_issues_id_token_and_refreshes(b: Backend) {
    let Some(s) = start_op(b, None).await else {
        return;
    };
    s.add_alice().await;
    let alice = s.issuer.admin().find_user("alice").await.unwrap().unwrap();
    let code = code_for(&s, APP, REDIRECT).await;
    let r = exchange(&s, APP, &code, REDIRECT, VERIFIER).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "openid profile");
    let (typ, id) = verify(&s, &str_field(&t, "id_token")).await;
    assert_eq!(typ, "JWT", "an ID token is not an access token");
    assert_eq!(id["iss"], "http://issuer.test");
    assert_eq!(id["sub"], alice.id.as_str());
    assert_eq!(id["aud"], APP);
    assert_eq!(id["azp"], APP);
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["name"], "Alice");
    let now = s.issuer.now_ms() / 1000;
    assert_eq!(id["iat"].as_i64().unwrap(), now);
    assert_eq!(id["auth_time"].as_i64().unwrap(), now);
    assert_eq!(id["exp"].as_i64().unwrap(), now + 300);
    let sid = str_field(&id, "sid");
    let sessions = s.issuer.admin().list_sessions(Some("alice")).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, sid, "sid is the issuer session");
    // The access token works on /api/me like a password-grant one.
    let me = s
        .http
        .get(s.url("/api/me"))
        .bearer_auth(str_field(&t, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // The refresh token is bound to its client: not usable by another, nor at the
    // JSON API (nothing rotates).
    let rt = str_field(&t, "refresh_token");
    let (status, err) = error_code(refresh_as(&s, Some(SPA), &rt).await).await;
    assert_eq!(
        (status, err.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(s.refresh(&rt).await.status(), StatusCode::UNAUTHORIZED);
    s.clock.advance_secs(60);
    let r = refresh_as(&s, Some(APP), &rt).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t2: Value = r.json().await.unwrap();
    let (_, id2) = verify(&s, &str_field(&t2, "id_token")).await;
    assert_eq!(id2["sid"], sid.as_str());
    assert_eq!(id2["sub"], alice.id.as_str());
    assert_eq!(
        id2["auth_time"], id["auth_time"],
        "auth_time is the login's"
    );
    assert!(
        id2.get("nonce").is_none(),
        "no nonce in a refreshed ID token"
    );
    assert_eq!(id2["iat"].as_i64().unwrap(), now + 60);

    // Revocation (RFC 7009 §2.1): only by its own client.
    let rt2 = str_field(&t2, "refresh_token");
    let r = s
        .http
        .post(s.url("/oauth/revoke"))
        .form(&[("token", rt2.as_str()), ("client_id", SPA)])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "unauthorized_client");
    let r = s
        .http
        .post(s.url("/oauth/revoke"))
        .basic_auth(APP, Some(APP_SECRET))
        .form(&[("token", rt2.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        error_code(refresh_as(&s, Some(APP), &rt2).await).await.1,
        "invalid_grant"
    );

    // A public client redeems with PKCE and no secret.
    let code = code_for(&s, SPA, SPA_REDIRECT).await;
    let r = exchange(&s, SPA, &code, SPA_REDIRECT, VERIFIER).await;
    assert_eq!(r.status(), StatusCode::OK);
}

pub(crate) async fn authorize_refuses_bad_requests(b: Backend) {
    let Some(s) = start_op(b, None).await else {
        return;
    };
    let http = no_redirects();
    let get = |q: Vec<(String, String)>| {
        let http = http.clone();
        let url = s.url("/oauth/authorize");
        async move { http.get(with_query(&url, &q)).send().await.unwrap() }
    };
    // Before the redirect URI is trusted: a page, never a redirect.
    for q in [
        authorize_query(APP, "http://127.0.0.1:9/elsewhere", &[]),
        authorize_query(APP, "http://127.0.0.1:9/callback/", &[]),
        authorize_query(APP, "", &[]),
        authorize_query("nobody", REDIRECT, &[]),
        authorize_query("", REDIRECT, &[]),
        authorize_query(SPA, REDIRECT, &[]),
    ] {
        let r = get(q.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q:?}");
        assert!(r.headers().get("location").is_none(), "{q:?}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    let dup = s.url(&format!(
        "/oauth/authorize?client_id={APP}&client_id={APP}&redirect_uri={REDIRECT}"
    ));
    let r = http.get(dup).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());

    // After: back to the client with error, state and iss.
    let long_nonce = "n".repeat(513);
    let long_scope = format!("openid{}", " x".repeat(512));
    for (extra, error) in [
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", "too-short")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            vec![("response_type", "code id_token")],
            "unsupported_response_type",
        ),
        (vec![("response_type", "")], "invalid_request"),
        (vec![("prompt", "none")], "login_required"),
        (vec![("request", "eyJ")], "request_not_supported"),
        (vec![("response_mode", "fragment")], "invalid_request"),
        (
            vec![("request_uri", "https://evil.example/r")],
            "request_uri_not_supported",
        ),
        (vec![("nonce", long_nonce.as_str())], "invalid_request"),
        (vec![("scope", long_scope.as_str())], "invalid_scope"),
    ] {
        let r = get(authorize_query(APP, REDIRECT, &extra)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{extra:?}");
        let location = r.headers()["location"].to_str().unwrap();
        assert!(location.starts_with(&format!("{REDIRECT}?")), "{location}");
        let q = query_of(location);
        assert_eq!(q["error"], error, "{extra:?}");
        assert_eq!(q["state"], "st-123");
        assert_eq!(q["iss"], "http://issuer.test");
        assert!(!q.contains_key("code"));
    }
    // An over-long state is refused, and not echoed back.
    let long_state = "s".repeat(2049);
    let r = get(authorize_query(
        APP,
        REDIRECT,
        &[("state", long_state.as_str())],
    ))
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert!(!q.contains_key("state"));
    // The page itself: hardened, the request echoed escaped.
    let r = get(authorize_query(
        APP,
        REDIRECT,
        &[("state", "<script>x</script>")],
    ))
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    // Not `no-referrer`: browsers would post the form with `Origin: null`, which the
    // CSRF check refuses (tests/oidc-op/browser.test.mjs signs in with Chromium).
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;"));
    // The form endpoints take forms only (a JSON body is not parsed as one).
    for path in ["/oauth/authorize", "/oauth/logout"] {
        let r = http
            .post(s.url(path))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
    }
}

pub(crate) async fn login_form_needs_csrf_and_the_password(b: Backend) {
    let Some(s) = start_op(b, None).await else {
        return;
    };
    s.add_alice().await;
    let http = no_redirects();
    // Wrong password: the form again, 401, no code.
    let r = sign_in(
        &s,
        &http,
        &authorize_query(APP, REDIRECT, &[]),
        "wrong-password",
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("location").is_none());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Invalid username or password")
    );
    // A post without the CSRF cookie (a cross-site form) is refused before any
    // password check; so is one with a foreign Origin.
    let mut form = authorize_query(APP, REDIRECT, &[]);
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "alice-password".into()));
    form.push(("csrf".into(), "A".repeat(43)));
    let r = http
        .post(s.url("/oauth/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("location").is_none());
    let r = http
        .post(s.url("/oauth/authorize"))
        .header(
            "cookie",
            format!("sallyport_authorize_csrf={}", "A".repeat(43)),
        )
        .header("origin", "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A browser that says the post is cross-site, and a cookie that differs from the
    // form's token, are refused as well.
    for (cookie, fetch_site) in [("A", "cross-site"), ("B", "same-origin")] {
        let r = http
            .post(s.url("/oauth/authorize"))
            .header(
                "cookie",
                format!("sallyport_authorize_csrf={}", cookie.repeat(43)),
            )
            .header("sec-fetch-site", fetch_site)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{cookie} {fetch_site}");
    }
    // Same form with the matching cookie and no foreign origin: signed in.
    let r = http
        .post(s.url("/oauth/authorize"))
        .header(
            "cookie",
            format!("sallyport_authorize_csrf={}", "A".repeat(43)),
        )
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let m = s.metrics_text().await;
    assert!(
        m.contains(r#"sallyport_issuer_logins_total{outcome="invalid_credentials"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sallyport_issuer_logins_total{outcome="success"} 1"#),
        "{m}"
    );
    let events = s.issuer.admin().audit_events(10).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "login_succeeded"
            && e.detail.as_deref() == Some("authorization code for client app")),
        "{events:?}"
    );
}

pub(crate) async fn login_form_is_rate_limited(b: Backend) {
    let Some(s) = start(b, |c| {
        c.rate_limit.account_burst = 2;
        c.rate_limit.account_replenish_secs = 600;
        c.clients = vec![ClientConfig {
            id: APP.into(),
            secret: Some(APP_SECRET.into()),
            redirect_uris: vec![REDIRECT.into()],
            ..Default::default()
        }];
    })
    .await
    else {
        return;
    };
    s.add_alice().await;
    let http = no_redirects();
    let q = authorize_query(APP, REDIRECT, &[]);
    for _ in 0..2 {
        let r = sign_in(&s, &http, &q, "wrong-password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // The failure that exhausts the burst is answered 429 already.
    let r = sign_in(&s, &http, &q, "wrong-password").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // The same limiter as the JSON login: even the right password waits now.
    let r = sign_in(&s, &http, &q, "alice-password").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    assert!(r.headers().get("location").is_none());
}

pub(crate) async fn code_redemption_checks(b: Backend) {
    let Some(s) = start_op(b, None).await else {
        return;
    };
    s.add_alice().await;
    let code = code_for(&s, APP, REDIRECT).await;
    // Wrong verifier, another client, another redirect URI: refused, and the code
    // survives (an attacker without the verifier cannot burn it).
    let other_verifier = "x".repeat(43);
    let (st, e) = error_code(exchange(&s, APP, &code, REDIRECT, &other_verifier).await).await;
    assert_eq!((st, e.as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (st, e) = error_code(exchange(&s, SPA, &code, REDIRECT, VERIFIER).await).await;
    assert_eq!((st, e.as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let (st, e) = error_code(exchange(&s, APP, &code, SPA_REDIRECT, VERIFIER).await).await;
    assert_eq!((st, e.as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    // A confidential client without its secret is not authenticated.
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", APP),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Missing verifier: invalid_request.
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .basic_auth(APP, Some(APP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "invalid_request");

    let r = exchange(&s, APP, &code, REDIRECT, VERIFIER).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    // Reuse: refused, and the tokens issued from the code stop working.
    let (st, e) = error_code(exchange(&s, APP, &code, REDIRECT, VERIFIER).await).await;
    assert_eq!((st, e.as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let r = refresh_as(&s, Some(APP), &str_field(&t, "refresh_token")).await;
    assert_eq!(error_code(r).await.1, "invalid_grant");
    let sessions = s.issuer.admin().list_sessions(Some("alice")).await.unwrap();
    assert_eq!(
        sessions[0].revoked_reason.as_deref(),
        Some("authorization_code_reuse")
    );

    // Expiry: 60 s.
    let code = code_for(&s, APP, REDIRECT).await;
    s.clock.advance_secs(60);
    let (st, e) = error_code(exchange(&s, APP, &code, REDIRECT, VERIFIER).await).await;
    assert_eq!((st, e.as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    // A code that was never issued.
    let (_, e) = error_code(exchange(&s, APP, &"A".repeat(43), REDIRECT, VERIFIER).await).await;
    assert_eq!(e, "invalid_grant");
}

pub(crate) async fn rp_initiated_logout(b: Backend) {
    let rx = receiver(0).await;
    let Some(s) = start_op(b, Some(&rx.url)).await else {
        return;
    };
    s.add_alice().await;
    let code = code_for(&s, APP, REDIRECT).await;
    let t: Value = exchange(&s, APP, &code, REDIRECT, VERIFIER)
        .await
        .json()
        .await
        .unwrap();
    let id_token = str_field(&t, "id_token");
    let http = no_redirects();
    let logout = |q: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = s.url("/oauth/logout");
        async move { http.get(with_query(&url, &q)).send().await.unwrap() }
    };
    // A forged hint (an access token, a tampered token, none) or an unregistered
    // return URI: a page, no redirect, the session lives.
    let access = str_field(&t, "access_token");
    let mut tampered = id_token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    for q in [
        vec![("id_token_hint", access)],
        vec![("id_token_hint", tampered)],
        vec![("post_logout_redirect_uri", POST_LOGOUT.to_owned())],
        vec![
            ("id_token_hint", id_token.clone()),
            (
                "post_logout_redirect_uri",
                "https://evil.example/".to_owned(),
            ),
        ],
        vec![
            ("id_token_hint", id_token.clone()),
            ("post_logout_redirect_uri", REDIRECT.to_owned()),
        ],
        vec![
            ("id_token_hint", id_token.clone()),
            ("client_id", SPA.to_owned()),
        ],
    ] {
        let r = logout(q.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q:?}");
        assert!(r.headers().get("location").is_none());
    }
    // An oversized hint is refused before any JWT work.
    let r = logout(vec![("id_token_hint", "a".repeat(8193))]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("too long"));
    let rt = str_field(&t, "refresh_token");
    assert_eq!(
        refresh_as(&s, Some(APP), &rt).await.status(),
        StatusCode::OK
    );
    // An expired hint is fine.
    s.clock.advance_secs(3600);
    let r = logout(vec![
        ("id_token_hint", id_token.clone()),
        ("post_logout_redirect_uri", POST_LOGOUT.to_owned()),
        ("state", "bye".to_owned()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{POST_LOGOUT}?state=bye")
    );
    let sessions = s.issuer.admin().list_sessions(Some("alice")).await.unwrap();
    assert_eq!(sessions[0].revoked_reason.as_deref(), Some("rp_logout"));
    // Without `state`: the registered URI exactly, no empty query.
    let r = logout(vec![
        ("id_token_hint", id_token.clone()),
        ("post_logout_redirect_uri", POST_LOGOUT.to_owned()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"].to_str().unwrap(), POST_LOGOUT);
    // Without a return URI: a page.
    let r = logout(vec![("id_token_hint", id_token.clone())]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(rx.wait_for(1).await.len(), 1);
}

/// Checks a logout token: signature, `typ`, the required claims, no nonce.
async fn check_logout_token(s: &Server, jwt: &str, sid: &str) {
    let (typ, c) = verify(s, jwt).await;
    assert_eq!(typ, "logout+jwt");
    assert_eq!(c["iss"], "http://issuer.test");
    assert_eq!(c["aud"], APP);
    assert_eq!(c["sid"], sid);
    assert!(c["sub"].is_string());
    assert!(c["jti"].is_string());
    assert!(c["iat"].is_u64());
    assert_eq!(
        c["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert!(c.get("nonce").is_none());
}

/// A session of `app`; returns (tokens, sid).
async fn app_session(s: &Server) -> (Value, String) {
    let code = code_for(s, APP, REDIRECT).await;
    let t: Value = exchange(s, APP, &code, REDIRECT, VERIFIER)
        .await
        .json()
        .await
        .unwrap();
    let (_, id) = verify(s, &str_field(&t, "id_token")).await;
    let sid = str_field(&id, "sid");
    (t, sid)
}

pub(crate) async fn backchannel_logout_for_each_cause(b: Backend) {
    // The receiver fails twice first: the sender retries.
    let rx = receiver(2).await;
    let Some(s) = start_op(b, Some(&rx.url)).await else {
        return;
    };
    s.add_alice().await;

    // 1. RP-initiated logout.
    let (t, sid1) = app_session(&s).await;
    let r = no_redirects()
        .get(with_query(
            &s.url("/oauth/logout"),
            &[("id_token_hint", str_field(&t, "id_token"))],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got = rx.wait_for(1).await;
    check_logout_token(&s, &got[0], &sid1).await;
    assert_eq!(rx.attempts.load(std::sync::atomic::Ordering::SeqCst), 3);

    // 2. `sallyport session revoke` (the admin API it runs), waiting as the CLI does.
    let (_, sid2) = app_session(&s).await;
    s.issuer.admin().revoke_session(&sid2).await.unwrap();
    assert!(
        s.issuer
            .flush_logout_notifications(std::time::Duration::from_secs(10))
            .await
    );
    let got = rx.wait_for(2).await;
    check_logout_token(&s, &got[1], &sid2).await;

    // 3. Refresh-token reuse after the interval.
    let (t, sid3) = app_session(&s).await;
    let rt = str_field(&t, "refresh_token");
    assert_eq!(
        refresh_as(&s, Some(APP), &rt).await.status(),
        StatusCode::OK
    );
    s.clock.advance_secs(11);
    let (_, e) = error_code(refresh_as(&s, Some(APP), &rt).await).await;
    assert_eq!(e, "invalid_grant");
    let got = rx.wait_for(3).await;
    check_logout_token(&s, &got[2], &sid3).await;

    // Password-grant sessions have no client to tell.
    let t = s.login_alice().await;
    let r = s
        .post_json(
            "/api/logout",
            json!({"refresh_token": str_field(&t, "refreshToken")}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        s.issuer
            .flush_logout_notifications(std::time::Duration::from_secs(10))
            .await
    );
    assert_eq!(rx.tokens.lock().unwrap().len(), 3);
    let m = s.metrics_text().await;
    assert!(
        m.contains(r#"sallyport_issuer_backchannel_logouts_total{outcome="delivered"} 3"#),
        "{m}"
    );
    assert!(
        m.contains("sallyport_issuer_backchannel_logout_failed_attempts_total 2"),
        "{m}"
    );
}

/// A receiver that never answers well: bounded attempts, then counted as failed;
/// the request that ended the session was not held up.
pub(crate) async fn backchannel_logout_gives_up(b: Backend) {
    let rx = receiver(usize::MAX).await;
    let Some(s) = start(b, |c| {
        c.backchannel_logout.retry_base_ms = 10;
        c.backchannel_logout.max_attempts = 3;
        c.clients = vec![ClientConfig {
            id: APP.into(),
            secret: Some(APP_SECRET.into()),
            redirect_uris: vec![REDIRECT.into()],
            backchannel_logout_uri: Some(rx.url.clone()),
            ..Default::default()
        }];
    })
    .await
    else {
        return;
    };
    s.add_alice().await;
    let (_, sid) = app_session(&s).await;
    s.issuer.admin().revoke_session(&sid).await.unwrap();
    assert!(
        s.issuer
            .flush_logout_notifications(std::time::Duration::from_secs(10))
            .await
    );
    assert_eq!(rx.attempts.load(std::sync::atomic::Ordering::SeqCst), 3);
    let m = s.metrics_text().await;
    assert!(
        m.contains(r#"sallyport_issuer_backchannel_logouts_total{outcome="failed"} 1"#),
        "{m}"
    );
}

/// Delivery never holds up the request that ended the session, and a full queue
/// drops (and counts) rather than waits: with a receiver that answers nothing yet,
/// one delivery in flight (`max_concurrent = 1`), one taken by the worker and one
/// queued (`queue_capacity = 1`), at least two of five logout tokens are dropped — and
/// `revoke --user` (the admin API) returned all the same.
pub(crate) async fn backchannel_logout_never_blocks(b: Backend) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let rx = receiver_gated(0, Some(gate.clone())).await;
    let Some(s) = start(b, |c| {
        c.backchannel_logout.max_concurrent = 1;
        c.backchannel_logout.queue_capacity = 1;
        c.backchannel_logout.timeout_ms = 60_000;
        c.clients = vec![ClientConfig {
            id: APP.into(),
            secret: Some(APP_SECRET.into()),
            redirect_uris: vec![REDIRECT.into()],
            backchannel_logout_uri: Some(rx.url.clone()),
            ..Default::default()
        }];
    })
    .await
    else {
        return;
    };
    s.add_alice().await;
    let mut sids = Vec::new();
    for _ in 0..5 {
        sids.push(app_session(&s).await.1);
    }
    // Returns while the receiver has answered nothing.
    assert_eq!(
        s.issuer
            .admin()
            .revoke_user_sessions("alice")
            .await
            .unwrap(),
        5
    );
    assert!(rx.tokens.lock().unwrap().is_empty());
    let m = s.metrics_text().await;
    let dropped: u64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"sallyport_issuer_backchannel_logouts_total{outcome="dropped"} "#)
        })
        .map_or(0, |v| v.trim().parse().unwrap());
    assert!(dropped >= 2, "{m}");
    // Released, the others arrive: one per surviving session, each for its own sid.
    gate.add_permits(10);
    let delivered = usize::try_from(5 - dropped).unwrap();
    let got = rx.wait_for(delivered).await;
    assert!(
        s.issuer
            .flush_logout_notifications(std::time::Duration::from_secs(10))
            .await
    );
    assert_eq!(rx.tokens.lock().unwrap().len(), delivered);
    for token in &got {
        let (_, c) = verify(&s, token).await;
        assert!(sids.contains(&str_field(&c, "sid")));
    }
}

/// Five redemptions of one code at once (a client retrying, or a thief racing it):
/// the store serialises them on the code row, so exactly one gets tokens and the
/// others see a used code — which revokes what the first one got.
pub(crate) async fn concurrent_redemptions_of_one_code(b: Backend) {
    let Some(s) = start_op(b, None).await else {
        return;
    };
    s.add_alice().await;
    let code = code_for(&s, APP, REDIRECT).await;
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (s, code) = (s.clone(), code.clone());
            tokio::spawn(async move { exchange(&s, APP, &code, REDIRECT, VERIFIER).await.status() })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            other => assert_eq!(other, StatusCode::BAD_REQUEST),
        }
    }
    assert_eq!(ok, 1);
    let sessions = s.issuer.admin().list_sessions(Some("alice")).await.unwrap();
    assert_eq!(sessions.len(), 1, "one session, never a fork");
    assert_eq!(
        sessions[0].revoked_reason.as_deref(),
        Some("authorization_code_reuse")
    );
}
