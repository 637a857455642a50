//! Request ids (`X-Request-Id`) and trace context (`traceparent`): the client's are
//! believed only with `trust_request_id`, a bad one is replaced, and the request's id
//! reaches the upstream, the token backend (login and renewal) and the response.

use serde_json::Value;

use crate::harness::*;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn id_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-request-id")
        .expect("every response carries X-Request-Id")
        .to_str()
        .unwrap()
        .to_owned()
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The backend calls made so far for `path`.
fn backend_calls(h: &Harness, path: &str) -> Vec<BackendCall> {
    h.backend
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.path == path)
        .cloned()
        .collect()
}

async fn login_with(h: &Harness, id: &str) -> reqwest::Response {
    h.http
        .post(format!("{}/auth/login", h.url))
        .header("x-request-id", id)
        .header("traceparent", TRACEPARENT)
        .json(&serde_json::json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

async fn echo_with(h: &Harness, cookie: &str, id: &str) -> (String, Value) {
    let resp = h
        .get("/echo", cookie)
        .header("accept", "application/json")
        .header("x-request-id", id)
        .header("X_Request_Id", "underscore-spelling")
        .header("traceparent", TRACEPARENT)
        .header("tracestate", "vendor=client")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = id_of(&resp);
    (id, resp.json().await.unwrap())
}

#[tokio::test]
async fn an_untrusted_request_id_is_replaced_everywhere() {
    let h = Harness::start().await;
    let resp = login_with(&h, "client-chosen-id").await;
    assert_eq!(resp.status(), 200);
    let login_id = id_of(&resp);
    assert_ne!(login_id, "client-chosen-id");
    assert!(is_uuid(&login_id), "{login_id}");
    // The backend saw the gateway's id, not the client's, and no client trace context.
    let calls = backend_calls(&h, "/api/login");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request_id.as_deref(), Some(login_id.as_str()));
    assert_eq!(calls[0].traceparent, None);
    let cookie = cookie_header(resp.headers()).unwrap();

    let (id, echoed) = echo_with(&h, &cookie, "spoofed-id").await;
    assert!(is_uuid(&id) && id != login_id, "{id}");
    // Upstream gets exactly the gateway's id, in no other spelling, and no trace
    // context from the client.
    assert_eq!(echoed["headers"]["x-request-id"], serde_json::json!([id]));
    let names: Vec<&String> = echoed["headers"].as_object().unwrap().keys().collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("request_id") || n.starts_with("trace")),
        "{names:?}"
    );

    // Gateway routes and the admin listener answer with an id too.
    let resp = h.get("/auth/session", &cookie).send().await.unwrap();
    assert!(is_uuid(&id_of(&resp)));
    let resp = h
        .admin_get("/auth/verify", &cookie)
        .header("x-request-id", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(is_uuid(&id_of(&resp)));
}

#[tokio::test]
async fn a_trusted_request_id_reaches_upstream_and_backend_on_login_and_renewal() {
    let h = Harness::start_with(0, |c| c.trust_request_id = true).await;
    let resp = login_with(&h, "lb-login-0001").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(id_of(&resp), "lb-login-0001");
    let calls = backend_calls(&h, "/api/login");
    assert_eq!(calls[0].request_id.as_deref(), Some("lb-login-0001"));
    let cookie = cookie_header(resp.headers()).unwrap();

    let (id, echoed) = echo_with(&h, &cookie, "lb-echo-0002").await;
    assert_eq!(id, "lb-echo-0002");
    assert_eq!(
        echoed["headers"]["x-request-id"],
        serde_json::json!(["lb-echo-0002"])
    );
    // No trace is recorded here (no OpenTelemetry layer): the trusted client's trace
    // context goes on unchanged. The `_` spelling never does.
    assert_eq!(
        header_of(&echoed, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    assert_eq!(
        header_of(&echoed, "tracestate").as_deref(),
        Some("vendor=client")
    );
    assert!(echoed["headers"].get("x_request_id").is_none());

    // A renewal on a proxied request carries the id of the request that caused it.
    h.expire_access_token();
    let (id, _) = echo_with(&h, &cookie, "lb-renewal-0003").await;
    assert_eq!(id, "lb-renewal-0003");
    let calls = backend_calls(&h, "/api/refresh-token");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request_id.as_deref(), Some("lb-renewal-0003"));
    // Logout's revocation (a task of its own) too.
    let resp = h
        .http
        .post(format!("{}/auth/logout", h.url))
        .header("cookie", &cookie)
        .header("x-request-id", "lb-logout-0004")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&resp), "lb-logout-0004");
    let calls = backend_calls(&h, "/api/logout");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request_id.as_deref(), Some("lb-logout-0004"));
}

#[tokio::test]
async fn an_invalid_request_id_is_replaced_even_when_trusted() {
    let h = Harness::start_with(0, |c| c.trust_request_id = true).await;
    let cookie = h.login().await;
    let too_long = "a".repeat(129);
    let longest = "b".repeat(128);
    for bad in [too_long.as_str(), "has a space", "tab\tinside"] {
        let (id, echoed) = echo_with(&h, &cookie, bad).await;
        assert!(is_uuid(&id), "{bad:?} -> {id}");
        assert_eq!(echoed["headers"]["x-request-id"], serde_json::json!([id]));
    }
    let (id, _) = echo_with(&h, &cookie, &longest).await;
    assert_eq!(id, longest);
    // Two ids: ambiguous, so neither.
    let resp = h
        .get("/echo", &cookie)
        .header("accept", "application/json")
        .header("x-request-id", "first")
        .header("x-request-id", "second")
        .send()
        .await
        .unwrap();
    let id = id_of(&resp);
    assert!(is_uuid(&id), "{id}");
}
