//! The OAuth endpoints: token and revocation, client authentication, RFC 6749 error statuses.

use super::*;

pub(crate) async fn oauth_token_and_revoke(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let form = |pairs: &[(&str, &str)]| s.http.post(s.url("/oauth/token")).form(pairs).send();
    let r = form(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "alice-password"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    let rt = str_field(&t, "refresh_token");
    assert!(t["access_token"].is_string());

    let r = form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rt2 = str_field(&r.json::<Value>().await.unwrap(), "refresh_token");

    for (pairs, code) in [
        (
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "bad-password"),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "password"), ("username", "alice")],
            "invalid_request",
        ),
        (
            vec![("grant_type", "refresh_token"), ("refresh_token", "bogus")],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "client_credentials")],
            "unsupported_grant_type",
        ),
        (vec![("username", "alice")], "invalid_request"),
    ] {
        let r = form(&pairs).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{pairs:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], code, "{pairs:?}");
        assert!(body["error_description"].is_string());
    }
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .json(&json!({"grant_type": "password"}))
        .send()
        .await
        .unwrap();
    // RFC 6749 §5.2: token-endpoint errors are 400 (not 415), whatever the cause.
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");

    // RFC 7009: 200 for known and unknown tokens; the known one's session is gone.
    let revoke = |token: String| {
        s.http
            .post(s.url("/oauth/revoke"))
            .form(&[("token", token)])
            .send()
    };
    assert_eq!(
        revoke("unknown".into()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(revoke(rt2.clone()).await.unwrap().status(), StatusCode::OK);
    let r = form(&[("grant_type", "refresh_token"), ("refresh_token", &rt2)])
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = s
        .http
        .post(s.url("/oauth/revoke"))
        .form(&[("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

const GW_SECRET: &str = "gateway-secret-0123456789";

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// RFC 6749 §2.3 / §5.2: unknown clients and wrong secrets get 401 `invalid_client`
/// with `WWW-Authenticate: Basic` on the token and revocation endpoints; configured
/// clients authenticate with Basic or in the form; public clients still work.
pub(crate) async fn client_authentication(b: Backend) {
    let Some(s) = start(b, |c| {
        c.clients = vec![sallyport_issuer::config::ClientConfig {
            id: "gateway".into(),
            secret: Some(GW_SECRET.into()),
            ..Default::default()
        }];
    })
    .await
    else {
        return;
    };
    s.add_alice().await;
    let password = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "alice-password"),
    ];
    let post = |path: &'static str, auth: Option<String>, extra: Vec<(&'static str, &str)>| {
        let mut form: Vec<(&str, &str)> = if path == "/oauth/token" {
            password.to_vec()
        } else {
            vec![("token", "never-issued")]
        };
        form.extend(extra);
        let mut req = s.http.post(s.url(path)).form(&form);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.send()
    };
    for path in ["/oauth/token", "/oauth/revoke"] {
        type Attempt<'a> = (Option<String>, Vec<(&'a str, &'a str)>);
        let rejected: Vec<Attempt> = vec![
            (Some(basic("unknown-client", "secret")), vec![]),
            (Some(basic("gateway", "wrong-secret")), vec![]),
            (Some(basic("gateway", "")), vec![]),
            (Some("Bearer abc".into()), vec![]),
            (
                None,
                vec![("client_id", "gateway"), ("client_secret", "wrong")],
            ),
            (None, vec![("client_id", "gateway")]),
            (
                None,
                vec![("client_id", "unknown-client"), ("client_secret", "x")],
            ),
        ];
        for (auth, extra) in rejected {
            let what = format!("{path} {auth:?} {extra:?}");
            let r = post(path, auth, extra).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
            let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(challenge.starts_with("Basic "), "{what}: {challenge}");
            assert_eq!(r.headers()["cache-control"], "no-store");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_client", "{what}");
        }
        // Two methods at once.
        let r = post(
            path,
            Some(basic("gateway", GW_SECRET)),
            vec![("client_secret", GW_SECRET)],
        )
        .await
        .unwrap();
        assert_eq!(
            error_code(r).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into())
        );
        // Accepted: Basic, post, a public client id, nothing.
        for (auth, extra) in [
            (Some(basic("gateway", GW_SECRET)), vec![]),
            (
                None,
                vec![("client_id", "gateway"), ("client_secret", GW_SECRET)],
            ),
            (None, vec![("client_id", "spa")]),
            (None, vec![]),
        ] {
            let what = format!("{path} {auth:?} {extra:?}");
            let r = post(path, auth, extra).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{what}");
        }
    }
    let d: Value = s.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        d["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );

    // Public clients switched off: anonymous requests are invalid_client too.
    let Some(closed) = start(b, |c| c.allow_public_clients = false).await else {
        return;
    };
    closed.add_alice().await;
    let r = closed
        .http
        .post(closed.url("/oauth/token"))
        .form(&password)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
}

/// RFC 6749 §5.2 / §3.2: a JSON body is 400 (not 415), an empty parameter is a
/// missing one (`invalid_request`, not `invalid_grant`).
pub(crate) async fn oauth_request_errors(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    for path in ["/oauth/token", "/oauth/revoke"] {
        let r = s
            .http
            .post(s.url(path))
            .json(&json!({"grant_type": "password", "username": "alice", "password": "alice-password", "token": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(
            error_code(r).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{path}"
        );
    }
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let r = s
        .http
        .post(s.url("/oauth/revoke"))
        .form(&[("token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
}
