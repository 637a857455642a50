//! `X-Request-Id`: the issuer continues the id of a peer in `http.trusted_proxies` (the
//! gateway) when it is valid, and gives every other request a new one; the id is
//! returned on the response.

use crate::harness::{Backend, Server, start};

async fn id_for(s: &Server, sent: &str) -> String {
    let resp = s
        .http
        .get(s.url("/healthz"))
        .header("x-request-id", sent)
        .send()
        .await
        .unwrap();
    resp.headers()["x-request-id"].to_str().unwrap().to_owned()
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[tokio::test]
async fn an_untrusted_peer_gets_a_new_request_id() {
    // The test client is 127.0.0.1, not in the trusted range.
    let s = start(Backend::Sqlite, |c| {
        c.http.trusted_proxies = vec!["10.0.0.0/8".into()];
    })
    .await
    .unwrap();
    let id = id_for(&s, "chosen-by-the-client").await;
    assert!(is_uuid(&id), "{id}");
}

#[tokio::test]
async fn a_trusted_peer_keeps_its_valid_request_id() {
    let s = start(Backend::Sqlite, |c| {
        c.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await
    .unwrap();
    assert_eq!(id_for(&s, "from-the-gateway-1").await, "from-the-gateway-1");
    for bad in ["has a space".to_owned(), "x".repeat(129)] {
        let id = id_for(&s, &bad).await;
        assert!(is_uuid(&id), "{bad:?} -> {id}");
    }
}
