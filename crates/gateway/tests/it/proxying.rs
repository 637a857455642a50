//! The reverse proxy: headers, public paths, chunked sessions, streaming, WebSocket,
//! and the oauth2 adapter.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

#[tokio::test]
async fn upstream_sees_token_not_cookie_and_forwarded_headers() {
    let h = Harness::start_with(0, |c| c.proxy.identity_headers = true).await;
    let cookie = h.login().await;
    let resp = h
        .get("/echo?q=1", &format!("theme=dark; {cookie}; lang=en"))
        .header("authorization", "Bearer forged")
        .header("x-auth-request-user", "mallory")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["uri"], "/echo?q=1");
    let auth = header_of(&echo, "authorization").unwrap();
    assert!(auth.starts_with("Bearer ey") && auth != "Bearer forged");
    assert_eq!(
        echo["headers"]["authorization"].as_array().unwrap().len(),
        1
    );
    assert_eq!(header_of(&echo, "cookie").unwrap(), "theme=dark; lang=en");
    assert_ne!(header_of(&echo, "x-auth-request-user").unwrap(), "mallory");
    assert_eq!(
        header_of(&echo, "x-auth-request-name").unwrap(),
        "Alice Example"
    );
    assert_eq!(
        header_of(&echo, "x-auth-request-roles").unwrap(),
        "admin,dev"
    );
    assert_eq!(header_of(&echo, "x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(header_of(&echo, "x-forwarded-proto").unwrap(), "http");
    assert_eq!(
        header_of(&echo, "x-forwarded-host").unwrap(),
        h.url.trim_start_matches("http://")
    );
    assert!(header_of(&echo, "x-hop").is_none());
}

#[tokio::test]
async fn forwarded_session_cookie_when_configured() {
    let h = Harness::start_with(0, |c| c.proxy.forward_session_cookie = true).await;
    let cookie = h.login().await;
    let (_, echo, _) = h.echo(&cookie).await;
    assert_eq!(header_of(&echo, "cookie").unwrap(), cookie);
    // After a renewal upstream sees the *new* seal on the same request (PP-03).
    h.expire_access_token();
    let (_, echo, set) = h.echo(&cookie).await;
    let set = set.unwrap();
    assert_eq!(header_of(&echo, "cookie").unwrap(), set);
}

#[tokio::test]
async fn public_paths_pass_and_still_get_the_token() {
    let h = Harness::start().await;
    let (status, _, _) = {
        let resp = h.get("/public/a.css", "").send().await.unwrap();
        (resp.status(), (), ())
    };
    assert_eq!(status, 200);
    let resp = h.get("/public/a.css", "").send().await.unwrap();
    let echo: Value = resp.json().await.unwrap();
    assert!(header_of(&echo, "authorization").is_none());

    let cookie = h.login().await;
    let resp = h.get("/public/a.css", &cookie).send().await.unwrap();
    assert!(resp.headers().get("set-cookie").is_none());
    let echo: Value = resp.json().await.unwrap();
    assert!(
        header_of(&echo, "authorization")
            .unwrap()
            .starts_with("Bearer ")
    );
    // A cross-site POST to a public path is forwarded without the user's token.
    let resp = h
        .http
        .post(format!("{}/public/form", h.url))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    let echo: Value = resp.json().await.unwrap();
    assert!(header_of(&echo, "authorization").is_none());
    // An expired session on a public path: no renewal, no cookie, no stale token (PP-16).
    h.expire_access_token();
    let resp = h.get("/public/a.css", &cookie).send().await.unwrap();
    assert!(resp.headers().get("set-cookie").is_none());
    let echo: Value = resp.json().await.unwrap();
    assert!(header_of(&echo, "authorization").is_none());
    assert_eq!(h.refreshes(), 0);
    // Glob boundaries: /publicity is not public.
    assert_eq!(
        h.get("/publicity", "")
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn upstream_set_cookie_is_kept_next_to_ours() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    h.expire_access_token();
    let resp = h.get("/app-cookie", &cookie).send().await.unwrap();
    let all: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(all.iter().any(|c| c.starts_with("app=1")));
    assert!(all.iter().any(|c| c.starts_with("sallyport=")));
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
}

#[tokio::test]
async fn chunked_sessions_round_trip() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    // Grow the session past one cookie with fields another app (iron-session) wrote.
    let (_, echo, _) = h.echo(&cookie).await;
    let at = header_of(&echo, "authorization").unwrap();
    let now = sallyport_gateway::Clock::now_ms(&*h.clock);
    let mut big = sallyport_gateway::SessionData {
        is_logged_in: true,
        access_token: Some(at.trim_start_matches("Bearer ").to_owned()),
        refresh_token: Some("unused-refresh".into()),
        sid: Some("chunky".into()),
        ..Default::default()
    };
    big.extra.insert("profile".into(), json!("p".repeat(6000)));
    let set = h.gateway.seal_session(&big, now).unwrap();
    let chunks: Vec<String> = set
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .filter(|s| !s.contains("Max-Age=0"))
        .collect();
    assert!(chunks.len() >= 2, "expected chunks, got {chunks:?}");
    assert!(chunks[0].starts_with("sallyport.0="));
    let cookie = chunks
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    let (status, echo, _) = h.echo(&format!("other=1; {cookie}")).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&echo, "authorization").unwrap(), at);
    assert_eq!(header_of(&echo, "cookie").unwrap(), "other=1");
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    // Upload: 8 MiB in chunks, without a Content-Length.
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let stream =
        futures_util::stream::iter((0..128).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = h
        .http
        .post(format!("{}/upload", h.url))
        .header("cookie", &cookie)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["bytes"], 8 * 1024 * 1024);

    // Download: the first chunk arrives while upstream is still holding the second.
    let resp = h.get("/download", &cookie).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"first-chunk;");
    h.upstream.stream_gate.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = body.next().await {
        rest.extend_from_slice(&c.unwrap());
    }
    assert_eq!(rest, b"second-chunk");
}

#[tokio::test]
async fn websocket_upgrade_passes_through_with_token() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    let url = format!("{}/ws", h.url.replace("http://", "ws://"));
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut().insert("origin", h.url.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    let first = ws.next().await.unwrap().unwrap();
    assert_eq!(first, Message::Text("token:true".into()));
    ws.send(Message::Text("hi".into())).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo, Message::Text("echo:hi".into()));

    // A cross-site page opening a WebSocket with the user's cookie is refused (CSWSH).
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403)
        }
        other => panic!("cross-site upgrade not refused: {:?}", other.map(|r| r.1)),
    }

    // Without a session the upgrade is refused before upstream.
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
}

#[tokio::test]
async fn oauth2_adapter_logs_in_renews_and_revokes() {
    let backend = start_backend(0).await;
    let (_up, up_url) = start_upstream().await;
    let mut c = config(&backend, &up_url);
    c.backend.kind = sallyport_gateway::BackendKind::OAuth2;
    c.backend.token_url = Some(format!("{}/oauth/token", backend.url));
    c.backend.revocation_url = Some(format!("{}/oauth/revoke", backend.url));
    c.backend.client_id = Some("gateway".into());
    c.backend.client_secret = Some("gateway-client-secret-0001".into());
    // Wrong client credentials are the operator's problem: 503, not "wrong password".
    let mut bad = c.clone();
    bad.backend.client_secret = Some("wrong".into());
    let (bad_url, _, _) = start_gateway(bad).await;
    let resp = login_at(&client(), &bad_url).await;
    assert_eq!(resp.status(), 503);
    // client_secret_post works as well as Basic.
    let mut post = c.clone();
    post.backend.client_auth = sallyport_gateway::ClientAuth::ClientSecretPost;
    let (post_url, _, _) = start_gateway(post).await;
    let resp = login_at(&client(), &post_url).await;
    assert_eq!(resp.status(), 200);

    let (url, _, clock) = start_gateway(c).await;
    let http = client();
    let resp = http
        .post(format!("{url}/auth/login"))
        .form(&[("username", USER), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = cookie_header(resp.headers()).unwrap();
    let resp = http
        .post(format!("{url}/auth/login"))
        .form(&[("username", USER), ("password", "bad")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    clock.advance_ms(16 * 60 * 1000);
    let resp = http
        .get(format!("{url}/echo"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let new_cookie = cookie_header(resp.headers()).unwrap();
    assert_eq!(
        backend.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    let resp = http
        .post(format!("{url}/auth/logout"))
        .header("cookie", &new_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        backend
            .revocations
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // Revoked at the backend (RFC 7009): the logged-out session is gone, the session of
    // the client_secret_post login above is untouched.
    let sessions = backend
        .issuer
        .admin()
        .list_sessions(Some(USER))
        .await
        .unwrap();
    let revoked = sessions
        .iter()
        .filter(|s| s.revoked_at_ms.is_some())
        .count();
    assert_eq!((sessions.len(), revoked), (2, 1));
}

/// A raw HTTP/1.1 upstream for the keep-alive pool: answers the first `answers`
/// requests of each connection with a keep-alive 200, then closes the connection — at
/// once, or (`read_next`) after reading one more request, which it leaves unanswered.
/// Counts connections and request heads read.
async fn raw_upstream(
    answers: usize,
    read_next: bool,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let conns = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(AtomicUsize::new(0));
    let (c, r) = (conns.clone(), heads.clone());
    let url = raw_tcp_upstream(move |mut s| {
        c.fetch_add(1, Ordering::SeqCst);
        let r = r.clone();
        async move {
            let mut buf = Vec::new();
            let mut answered = 0;
            loop {
                if answered == answers && !read_next {
                    return;
                }
                // GETs without bodies: a request is its head.
                if read_head(&mut s, &mut buf).await.is_none() {
                    return;
                }
                r.fetch_add(1, Ordering::SeqCst);
                if answered == answers {
                    return;
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                answered += 1;
            }
        }
    })
    .await;
    (url, conns, heads)
}

/// The keep-alive pool: connections are reused; a request upstream has read is never
/// sent a second time (it may have had effects), even when the connection dies before
/// the answer; a pooled connection upstream has closed is not used again.
#[tokio::test]
async fn pooled_connections_are_reused_and_a_sent_request_is_never_resent() {
    use std::sync::atomic::Ordering;
    let backend = start_backend(0).await;
    let http = client();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };

    let (up, conns, heads) = raw_upstream(usize::MAX, false).await;
    let (url, _gw, _clock) = start_gateway(config(&backend, &up)).await;
    for i in 0..3 {
        assert_eq!(get(format!("{url}/public/{i}")).await, (200, "ok".into()));
    }
    assert_eq!(heads.load(Ordering::SeqCst), 3);
    assert_eq!(conns.load(Ordering::SeqCst), 1, "the pool did not reuse");

    // Upstream reads the second request on the connection and hangs up.
    let (up, conns, heads) = raw_upstream(1, true).await;
    let (url, _gw, _clock) = start_gateway(config(&backend, &up)).await;
    assert_eq!(get(format!("{url}/public/1")).await, (200, "ok".into()));
    assert_eq!(get(format!("{url}/public/2")).await.0, 502);
    assert_eq!(
        heads.load(Ordering::SeqCst),
        2,
        "the request was sent again"
    );
    assert_eq!(conns.load(Ordering::SeqCst), 1);

    // Upstream closes each connection after one answer (as on its keep-alive timeout):
    // the next request goes on a new connection, not on the dead one.
    let (up, conns, heads) = raw_upstream(1, false).await;
    let (url, _gw, _clock) = start_gateway(config(&backend, &up)).await;
    for i in 0..3 {
        assert_eq!(get(format!("{url}/public/{i}")).await, (200, "ok".into()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(heads.load(Ordering::SeqCst), 3);
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

/// Upstream's response head is bounded (hyper's limits: 100 header fields, ~400 KiB):
/// an endless or oversized head is a 502, not memory held for ever.
#[tokio::test]
async fn an_oversized_upstream_response_head_is_a_502() {
    use tokio::io::AsyncWriteExt;
    let backend = start_backend(0).await;
    let up = raw_tcp_upstream(|mut s| async move {
        let _ = read_head(&mut s, &mut Vec::new()).await;
        let mut head = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..200 {
            head.push_str(&format!("x-many-{i}: 1\r\n"));
        }
        let _ = s.write_all(head.as_bytes()).await;
        // One long header line, never finished.
        let line = vec![b'a'; 64 * 1024];
        let _ = s.write_all(b"x-long: ").await;
        for _ in 0..16 {
            if s.write_all(&line).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (url, _gw, _clock) = start_gateway(config(&backend, &up)).await;
    let started = std::time::Instant::now();
    let resp = client()
        .get(format!("{url}/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    // Refused on the limit, not by the response timeout (2 s in the harness).
    assert!(started.elapsed() < std::time::Duration::from_millis(1500));
}
