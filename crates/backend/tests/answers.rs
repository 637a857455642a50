//! The client against a real (loopback) HTTP server that misbehaves on purpose: oversized
//! and endless answers, slow bodies, `Retry-After` dates, and the refusal rule.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sallyport_backend::{Call, Client, Config, Error, JsonFields, Protocol, Url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// 2015-10-21T07:28:00Z.
const NOW_S: u64 = 1_445_412_480;

/// What the server answers.
#[derive(Clone)]
enum Answer {
    /// These bytes, then close.
    Canned(String),
    /// `status` with a chunked body of JSON-ish bytes that never ends.
    Endless(u16),
    /// A 200 head, then a one-byte chunk every 100 ms, forever.
    Drip,
}

/// A one-answer HTTP server on loopback; remembers the request heads it saw.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let answer = answer.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    match answer {
                        Answer::Canned(text) => {
                            let _ = sock.write_all(text.as_bytes()).await;
                        }
                        Answer::Endless(status) => {
                            let head = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                                 transfer-encoding: chunked\r\n\r\n"
                            );
                            if sock.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let data = "[".repeat(8192);
                            let chunk = format!("{:x}\r\n{data}\r\n", data.len());
                            // Until the client hangs up.
                            while sock.write_all(chunk.as_bytes()).await.is_ok() {}
                        }
                        Answer::Drip => {
                            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                        transfer-encoding: chunked\r\n\r\n";
                            if sock.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            loop {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                if sock.write_all(b"1\r\n \r\n").await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { addr, seen }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn client(&self, protocol: Protocol) -> Client {
        let mut config = Config::new(protocol, self.url("/login"), self.url("/refresh"));
        config.logout_url = Some(self.url("/logout"));
        config.timeout = Duration::from_secs(1);
        config.client_address_header = Some(http::HeaderName::from_static("x-client-ip"));
        // A plain HTTP client without its own timeout: the bound must come from Config.
        Client::new(config, reqwest::Client::new())
    }

    fn json_client(&self) -> Client {
        self.client(Protocol::Json(JsonFields::default()))
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn canned(status: &str, headers: &[&str], body: &str) -> Answer {
    let mut text = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("connection: close\r\n\r\n");
    text.push_str(body);
    Answer::Canned(text)
}

fn now() -> Call {
    Call::at_unix_secs(NOW_S)
}

/// Fails the test (instead of hanging it) if a call is not bounded.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the backend call was not bounded")
}

fn assert_unavailable(e: &Error, mentions: &str) {
    match e {
        Error::Unavailable { message, .. } => {
            assert!(message.contains(mentions), "{message:?} lacks {mentions:?}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_ten_megabyte_token_answer_is_refused_as_unavailable() {
    let body = format!(
        r#"{{"accessToken":"a","refreshToken":"r","pad":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let s = Server::start(canned("200 OK", &["content-type: application/json"], &body)).await;
    let e = bounded(s.json_client().login("u", "p", now()))
        .await
        .unwrap_err();
    assert_unavailable(&e, "larger than");
}

#[tokio::test]
async fn an_endless_chunked_answer_is_cut_off_not_read_whole() {
    let s = Server::start(Answer::Endless(200)).await;
    let e = bounded(s.json_client().refresh("rt", now()))
        .await
        .unwrap_err();
    assert_unavailable(&e, "larger than");
}

#[tokio::test]
async fn an_endless_error_body_does_not_hold_the_call() {
    // The status is the refusal; the body only adds detail and is cut off.
    let s = Server::start(Answer::Endless(400)).await;
    let e = bounded(s.json_client().refresh("rt", now()))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::Refused {
            status: 400,
            code: String::new(),
            message: String::new()
        }
    );
}

#[tokio::test]
async fn a_slow_body_is_bounded_in_time_even_on_a_callers_http_client() {
    let s = Server::start(Answer::Drip).await;
    let e = bounded(s.json_client().login("u", "p", now()))
        .await
        .unwrap_err();
    assert_unavailable(&e, "timed out");
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    // NOW_S + 120 s.
    let date = "retry-after: Wed, 21 Oct 2015 07:30:00 GMT";
    let s = Server::start(canned("429 Too Many Requests", &[date], "")).await;
    let e = s.json_client().login("u", "p", now()).await.unwrap_err();
    assert_eq!(
        e,
        Error::RateLimited {
            retry_after: Some(Duration::from_secs(120))
        }
    );

    let s = Server::start(canned("503 Service Unavailable", &[date], "")).await;
    let e = s.json_client().refresh("rt", now()).await.unwrap_err();
    assert!(
        matches!(e, Error::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(120)),
        "{e:?}"
    );

    let s = Server::start(canned("429 Too Many Requests", &["retry-after: 7"], "")).await;
    let e = s.json_client().refresh("rt", now()).await.unwrap_err();
    assert_eq!(
        e,
        Error::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
}

#[tokio::test]
async fn only_400_401_403_refuse_and_invalid_client_never_does() {
    let cases = [
        (
            "401 Unauthorized",
            r#"{"error":"invalid_grant"}"#,
            "refused",
        ),
        ("400 Bad Request", r#"{"error":"invalid_grant"}"#, "refused"),
        ("403 Forbidden", "", "refused"),
        (
            "400 Bad Request",
            r#"{"error":"invalid_client"}"#,
            "unavailable",
        ),
        (
            "401 Unauthorized",
            r#"{"error":"invalid_client"}"#,
            "unavailable",
        ),
        (
            "404 Not Found",
            r#"{"error":"invalid_grant"}"#,
            "unavailable",
        ),
        ("302 Found", "", "unavailable"),
        ("500 Internal Server Error", "", "unavailable"),
        ("200 OK", "not json", "unavailable"),
        ("200 OK", r#"{"accessToken":""}"#, "unavailable"),
    ];
    for (status, body, want) in cases {
        let s = Server::start(canned(status, &["content-type: application/json"], body)).await;
        let e = s.json_client().refresh("rt", now()).await.unwrap_err();
        let got = match e {
            Error::Refused { .. } => "refused",
            Error::Unavailable { .. } => "unavailable",
            _ => "other",
        };
        assert_eq!(got, want, "{status} {body}");
    }
}

#[tokio::test]
async fn login_refusals_are_told_apart() {
    let cases = [
        ("401 Unauthorized", "", Error::InvalidCredentials),
        (
            "400 Bad Request",
            r#"{"error":"invalid_grant"}"#,
            Error::InvalidCredentials,
        ),
        (
            "403 Forbidden",
            r#"{"error":"invalid_credentials"}"#,
            Error::InvalidCredentials,
        ),
        ("403 Forbidden", "", Error::AccountDisabled),
        (
            "400 Bad Request",
            r#"{"error":"account_disabled"}"#,
            Error::AccountDisabled,
        ),
        (
            "400 Bad Request",
            r#"{"error":"invalid_request","message":"no"}"#,
            Error::Refused {
                status: 400,
                code: "invalid_request".into(),
                message: "no".into(),
            },
        ),
    ];
    for (status, body, want) in cases {
        let s = Server::start(canned(status, &[], body)).await;
        let e = s.json_client().login("u", "p", now()).await.unwrap_err();
        assert_eq!(e, want, "{status} {body}");
    }
}

#[tokio::test]
async fn grants_and_revocation_speak_both_protocols() {
    let ok = r#"{"accessToken":"at","refreshToken":"rt2","expiresIn":900,
                 "access_token":"oat","expires_in":60}"#;
    let s = Server::start(canned("200 OK", &[], ok)).await;
    let client_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let g = s
        .json_client()
        .refresh("rt1", now().for_client(Some(client_ip)))
        .await
        .unwrap();
    assert_eq!(
        (g.access_token.as_str(), g.refresh_token.as_deref()),
        ("at", Some("rt2"))
    );
    assert_eq!(g.expires_in, Some(900));
    let req = &s.requests()[0];
    assert!(req.starts_with("POST /refresh "), "{req}");
    assert!(req.contains("x-client-ip: 192.0.2.7"), "{req}");
    assert!(req.contains(r#"{"refresh_token":"rt1"}"#), "{req}");

    let mut oauth = s.client(Protocol::OAuth2 {
        scope: Some("api".into()),
    });
    let mut config = oauth.config().clone();
    config.client_auth = sallyport_backend::ClientAuth::Basic {
        id: "gw id".into(),
        secret: Some("s3cret".into()),
    };
    oauth = Client::new(config, reqwest::Client::new());
    let g = oauth.login("alice", "pw", now()).await.unwrap();
    assert_eq!(g.access_token, "oat");
    assert_eq!(g.refresh_token, None);
    assert!(oauth.revoke("rt", now()).await.unwrap());
    let reqs = s.requests();
    assert!(reqs[1].contains("grant_type=password&username=alice&password=pw&scope=api"));
    // RFC 6749 §2.3.1: "gw id" form-encoded is "gw+id" before Basic encoding.
    assert!(
        reqs[1].contains("authorization: Basic Z3craWQ6czNjcmV0"),
        "{}",
        reqs[1]
    );
    assert!(reqs[2].contains("token=rt&token_type_hint=refresh_token"));
    assert!(!format!("{:?}", oauth.config()).contains("s3cret"));
}

#[test]
fn retry_after_parses_both_forms() {
    use sallyport_backend::parse_retry_after;
    use std::time::SystemTime;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_S);
    let v = |s: &'static str| http::HeaderValue::from_static(s);
    assert_eq!(
        parse_retry_after(&v("Wed, 21 Oct 2015 07:28:30 GMT"), now),
        Some(Duration::from_secs(30))
    );
    // RFC 850 and asctime forms are HTTP-dates too (RFC 9110 §5.6.7).
    assert_eq!(
        parse_retry_after(&v("Wednesday, 21-Oct-15 07:28:30 GMT"), now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after(&v("Wed Oct 21 07:28:30 2015"), now),
        Some(Duration::from_secs(30))
    );
    // A date in the past: retry now.
    assert_eq!(
        parse_retry_after(&v("Wed, 21 Oct 2015 07:00:00 GMT"), now),
        Some(Duration::ZERO)
    );
    assert_eq!(
        parse_retry_after(&v(" 5 "), now),
        Some(Duration::from_secs(5))
    );
    assert_eq!(parse_retry_after(&v("soon"), now), None);
    assert_eq!(parse_retry_after(&v("-1"), now), None);
    assert_eq!(parse_retry_after(&v("1.5"), now), None);
    // Past u64: not a number, not a date.
    assert_eq!(parse_retry_after(&v("99999999999999999999999"), now), None);
    // Far away, in either form: capped.
    assert_eq!(
        parse_retry_after(&v("18446744073709551615"), now),
        Some(sallyport_backend::MAX_RETRY_AFTER)
    );
    assert_eq!(
        parse_retry_after(&v("Fri, 31 Dec 9999 23:59:59 GMT"), now),
        Some(sallyport_backend::MAX_RETRY_AFTER)
    );
}
