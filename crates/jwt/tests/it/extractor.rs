//! `BearerClaims` in a real axum server on loopback.

use axum::Router;
use axum::routing::get;
use sallyport_jwt::{BearerClaims, Verifier, VerifierConfig, jwk_set};
use serde_json::{Value, json};

use super::{AUD, ISS, claims, es, forge, header};

async fn me(BearerClaims(c): BearerClaims) -> String {
    c.sub
}

async fn maybe(c: Option<BearerClaims>) -> String {
    c.map_or_else(|| "anonymous".to_owned(), |BearerClaims(c)| c.sub)
}

async fn serve(verifier: Verifier) -> String {
    let app = Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn live_claims() -> Value {
    let now = sallyport_jwt::unix_now();
    let mut c = claims();
    c["iat"] = json!(now);
    c["exp"] = json!(now + 600);
    c
}

async fn assert_invalid_token(resp: reqwest::Response) {
    assert_eq!(resp.status(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn extractor_accepts_valid_and_rejects_everything_else() {
    let k = es("k1");
    let verifier = Verifier::from_jwks(jwk_set([&k]), VerifierConfig::new("", ISS, AUD));
    let base = serve(verifier).await;
    let http = reqwest::Client::new();

    let good = k.sign(&live_claims()).unwrap();
    let resp = http
        .get(format!("{base}/me"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "user-1");

    // Missing header.
    assert_invalid_token(http.get(format!("{base}/me")).send().await.unwrap()).await;
    // Wrong scheme.
    assert_invalid_token(
        http.get(format!("{base}/me"))
            .basic_auth("user", Some("pw"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Forged: alg none, foreign key, expired.
    let none = format!(
        "{}.{}.",
        super::b64(&header("none", "k1")),
        super::b64(&live_claims())
    );
    let foreign = es("k1").sign(&live_claims()).unwrap();
    let mut old = live_claims();
    old["exp"] = json!(1_000_000);
    let expired = forge(header("ES256", "k1"), &old, &k);
    for t in [none, foreign, expired, "garbage".to_owned()] {
        assert_invalid_token(
            http.get(format!("{base}/me"))
                .bearer_auth(&t)
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
}

#[tokio::test]
async fn optional_extractor() {
    let k = es("k1");
    let verifier = Verifier::from_jwks(jwk_set([&k]), VerifierConfig::new("", ISS, AUD));
    let base = serve(verifier).await;
    let http = reqwest::Client::new();
    let resp = http.get(format!("{base}/maybe")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "anonymous");
    let resp = http
        .get(format!("{base}/maybe"))
        .bearer_auth(k.sign(&live_claims()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "user-1");
    // A bad token is still refused, not treated as anonymous.
    assert_invalid_token(
        http.get(format!("{base}/maybe"))
            .bearer_auth("x.y.z")
            .send()
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn extractor_answers_503_when_keys_cannot_be_loaded() {
    // Nothing listens on this port once the listener is dropped.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let verifier =
        Verifier::new(VerifierConfig::new(format!("http://{dead}/jwks"), ISS, AUD)).unwrap();
    let base = serve(verifier).await;
    let resp = reqwest::Client::new()
        .get(format!("{base}/me"))
        .bearer_auth(es("k1").sign(&live_claims()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "backend_unavailable");
}
