//! Bad input gets a JSON 4xx; every 401 carries a challenge.

use super::*;

pub(crate) async fn bad_input_gets_json_4xx(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let post = |path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut req = s.http.post(s.url(path)).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json_ct = Some("application/json");
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/api/login",
            json_ct,
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            json_ct,
            br#"{"username":"alice"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            json_ct,
            br#"{"username":1,"password":2}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            Some("text/plain"),
            br#"{"username":"a","password":"b"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/api/login",
            None,
            br#"{"username":"a","password":"b"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/api/login",
            json_ct,
            vec![b' '; 100_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/api/login",
            json_ct,
            json!({"username": "a".repeat(5000), "password": "x"})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            json_ct,
            json!({"username": "alice", "password": "x".repeat(5000)})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            json_ct,
            json!({"username": "", "password": "x"})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/refresh-token",
            json_ct,
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/refresh-token",
            json_ct,
            json!({"refresh_token": "x".repeat(10_000)})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/refresh-token",
            json_ct,
            json!({"refresh_token": "forged"}).to_string().into_bytes(),
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
        ),
        (
            "/api/logout",
            json_ct,
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/nope",
            json_ct,
            b"{}".to_vec(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/healthz",
            json_ct,
            b"{}".to_vec(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (path, ct, body, status, code) in cases {
        let r = post(path, ct, body).await.unwrap();
        assert_eq!(
            error_code(r).await,
            (status, code.to_owned()),
            "{path} {ct:?}"
        );
    }
    // Bearer failures: missing, malformed, forged signature, alg none.
    let at = str_field(&s.login_alice().await, "accessToken");
    let mut parts: Vec<String> = at.split('.').map(str::to_owned).collect();
    // Flip a character in the middle of the signature (the last one may only carry
    // padding bits that decoders ignore).
    let mut sig: Vec<char> = parts[2].chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    parts[2] = sig.into_iter().collect();
    let tampered = parts.join(".");
    use base64::Engine as _;
    let none_header =
        base64::prelude::BASE64_URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    let alg_none = format!("{none_header}.{}.", at.split('.').nth(1).unwrap());
    for auth in [
        None,
        Some("Bearer".to_owned()),
        Some("Bearer garbage".into()),
        Some(format!("Bearer {tampered}")),
        Some(format!("Bearer {alg_none}")),
        Some(format!("Basic {at}")),
    ] {
        let mut req = s.http.get(s.url("/api/me"));
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with(r#"Bearer error="invalid_token""#),
            "{challenge}"
        );
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_token");
    }
    // A body that never finishes is cut off rather than hanging forever is covered by the
    // request timeout; not exercised here (it would need a 30 s wait).
}

/// RFC 9110 §15.5.2: every 401 carries `WWW-Authenticate`; the JSON bodies are
/// unchanged.
pub(crate) async fn json_api_401s_carry_a_challenge(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    for (r, code) in [
        (
            s.login("alice", "wrong-password").await,
            "invalid_credentials",
        ),
        (
            s.login("nobody", "wrong-password").await,
            "invalid_credentials",
        ),
        (s.refresh("unknown-token").await, "invalid_grant"),
    ] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_eq!(
            challenge,
            format!(r#"Sallyport realm="sallyport", error="{code}""#)
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], code);
        assert!(body["message"].is_string());
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    }
}
