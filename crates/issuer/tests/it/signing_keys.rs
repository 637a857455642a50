//! Signing keys: rotation keeps old tokens valid; EdDSA.

use super::*;

pub(crate) async fn key_rotation_keeps_old_tokens_valid(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let at1 = str_field(&s.login_alice().await, "accessToken");
    let kid1 = jsonwebtoken::decode_header(&at1).unwrap().kid.unwrap();
    let new = s.issuer.admin().rotate_keys().await.unwrap();
    assert_ne!(new.kid, kid1);
    let at2 = str_field(&s.login_alice().await, "accessToken");
    assert_eq!(
        jsonwebtoken::decode_header(&at2).unwrap().kid.unwrap(),
        new.kid,
        "new tokens use the new kid"
    );
    let jwks: Value = s.get_json("/.well-known/jwks.json").await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&kid1.as_str()) && kids.contains(&new.kid.as_str()),
        "{kids:?}"
    );
    for at in [&at1, &at2] {
        let r = s
            .http
            .get(s.url("/api/me"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "old and new tokens verify");
    }
    // Verify with the published JWKS alone, as a resource server would.
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    for at in [&at1, &at2] {
        let kid = jsonwebtoken::decode_header(at).unwrap().kid.unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["sallyport"]);
        v.set_issuer(&["http://issuer.test"]);
        jsonwebtoken::decode::<Value>(at, &key, &v).unwrap();
    }
    // Once the old key's tokens have expired it leaves the JWKS.
    s.clock.advance_secs(900 + 30 + 61);
    let keys = s.issuer.admin().list_keys().await.unwrap();
    assert!(keys.iter().any(|k| k.kid == kid1 && !k.published));
    let jwks: Value = s.get_json("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
}

/// EdDSA is selectable and published as an OKP key.
#[tokio::test]
async fn eddsa_keys() {
    let Some(s) = start(Backend::Sqlite, |c| c.algorithm = "EdDSA".into()).await else {
        return;
    };
    s.add_alice().await;
    let at = str_field(&s.login_alice().await, "accessToken");
    assert_eq!(
        jsonwebtoken::decode_header(&at).unwrap().alg,
        jsonwebtoken::Algorithm::EdDSA
    );
    let jwks: Value = s.get_json("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(
        s.http
            .get(s.url("/api/me"))
            .bearer_auth(&at)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
