//! Discovery, JWKS, health, readiness, metrics and the OpenAPI document.

use super::*;

pub(crate) async fn discovery_health_metrics_openapi(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    let get = |p: &str| s.http.get(s.url(p)).send();
    let d: Value = s.get_json("/.well-known/openid-configuration").await;
    assert_eq!(d["issuer"], "http://issuer.test");
    assert_eq!(d["jwks_uri"], "http://issuer.test/.well-known/jwks.json");
    assert_eq!(d["token_endpoint"], "http://issuer.test/oauth/token");
    assert_eq!(d["revocation_endpoint"], "http://issuer.test/oauth/revoke");
    assert_eq!(
        d["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "password"])
    );
    let jwks: Value = s.get_json("/.well-known/jwks.json").await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "no private key material");
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    s.add_alice().await;
    s.login_alice().await;
    let _ = s.login("alice", "wrong-pass").await;
    let m = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        m.contains(r#"sallyport_issuer_logins_total{outcome="success"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sallyport_issuer_logins_total{outcome="invalid_credentials"} 1"#),
        "{m}"
    );
    assert!(
        m.contains("sallyport_issuer_request_duration_seconds_bucket"),
        "{m}"
    );
    let api: Value = s.get_json("/openapi.json").await;
    for path in ["/oauth/authorize", "/oauth/logout", "/oauth/token"] {
        assert!(api["paths"].get(path).is_some(), "{path} documented");
    }
    for p in [
        "/api/login",
        "/api/refresh-token",
        "/api/logout",
        "/api/me",
        "/oauth/token",
        "/oauth/revoke",
        "/.well-known/jwks.json",
    ] {
        assert!(api["paths"].get(p).is_some(), "{p} missing from OpenAPI");
    }
    assert!(api["components"]["schemas"].get("TokenResponse").is_some());
    assert_eq!(
        api["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// `/readyz` answers 503 JSON once the database is gone (here: the pool closed).
pub(crate) async fn readyz_fails_when_the_pool_is_closed(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    let readyz = || s.http.get(s.url("/readyz")).send();
    assert_eq!(readyz().await.unwrap().status(), StatusCode::OK);
    s.issuer.close().await;
    let r = readyz().await.unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        error_code(r).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    // Endpoints that need the database degrade to 503 as well, never 500.
    let r = s.login("alice", "alice-password").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// `/readyz` → 503 when the PostgreSQL database is dropped under a running issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_readyz_fails_when_the_database_is_dropped() {
    let Some(s) = start(Backend::Postgres, |_| {}).await else {
        return;
    };
    let readyz = || s.http.get(s.url("/readyz")).send();
    assert_eq!(readyz().await.unwrap().status(), StatusCode::OK);
    let url = s.issuer.settings().raw.database_url.clone();
    let name = url
        .rsplit('/')
        .next()
        .and_then(|n| n.split('?').next())
        .unwrap()
        .to_owned();
    use sqlx::Connection as _;
    let admin = std::env::var("SALLYPORT_TEST_POSTGRES_URL").unwrap();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let r = readyz().await.unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
}

/// Discovery publishes the access-token algorithms under an accurate name, the ID
/// tokens' under theirs (the same keys), and the OpenAPI document is self-consistent:
/// every `$ref` and every security requirement resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_openapi_are_accurate() {
    let Some(s) = start(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let d: Value = s.get_json("/.well-known/openid-configuration").await;
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["ES256"]));
    assert_eq!(
        d["access_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(d["userinfo_endpoint"], "http://issuer.test/api/me");

    let api: Value = s.get_json("/openapi.json").await;
    for path in ["/oauth/authorize", "/oauth/logout", "/oauth/token"] {
        assert!(api["paths"].get(path).is_some(), "{path} documented");
    }
    let broken = unresolved_references(&api);
    assert!(broken.is_empty(), "unresolved: {broken:?}");
    // The checker itself catches a dangling reference of either kind.
    let mut bad = api.clone();
    bad["paths"]["/api/me"]["get"]["security"] = json!([{"nope": []}]);
    bad["paths"]["/healthz"]["get"]["responses"]["200"]["content"] =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/Missing"}}});
    assert_eq!(unresolved_references(&bad).len(), 2);
}

/// Every `$ref` (a JSON pointer into the document) and every name in a `security`
/// requirement (a key of `components.securitySchemes`) that does not resolve.
fn unresolved_references(doc: &Value) -> Vec<String> {
    fn walk(doc: &Value, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let ok = r
                        .strip_prefix('#')
                        .is_some_and(|ptr| doc.pointer(ptr).is_some());
                    if !ok {
                        out.push(r.clone());
                    }
                }
                if let Some(Value::Array(reqs)) = map.get("security") {
                    for req in reqs {
                        for name in req.as_object().into_iter().flat_map(|o| o.keys()) {
                            if doc["components"]["securitySchemes"].get(name).is_none() {
                                out.push(format!("security {name}"));
                            }
                        }
                    }
                }
                for child in map.values() {
                    walk(doc, child, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(doc, i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, doc, &mut out);
    out
}
