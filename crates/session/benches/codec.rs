//! Cost of the cookie layer on top of the seal: `CookieCodec::read` and `encode` of
//! the article's session shape (two realistic JWTs, ~600 bytes of JSON), and the
//! chunked path for a ~7 KB session.
//!
//! `cargo bench -p sallyport-session --bench codec`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use sallyport_session::{CookieCodec, Passwords, SessionConfig};
use serde::{Deserialize, Serialize};

const NOW: u64 = 1_767_225_600_000;

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ArticleSession {
    is_logged_in: bool,
    access_token: Option<String>,
    refresh_token: Option<String>,
}

fn article() -> ArticleSession {
    ArticleSession {
        is_logged_in: true,
        access_token: Some(format!(
            "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.{}.{}",
            "x".repeat(280),
            "s".repeat(86)
        )),
        refresh_token: Some(format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.{}",
            "y".repeat(120),
            "t".repeat(43)
        )),
    }
}

fn cookie_header(set: &[http::HeaderValue]) -> HeaderMap {
    let line = set
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.contains("; Max-Age=0"))
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    let mut headers = HeaderMap::new();
    if let Ok(value) = line.parse() {
        headers.insert(http::header::COOKIE, value);
    }
    headers
}

fn bench(c: &mut Criterion) {
    let Ok(passwords) = Passwords::single("bench-password-0123456789-abcdefghijklmnop") else {
        return;
    };
    let codec = CookieCodec::new(SessionConfig::new(passwords).chunking(true));
    let value = article();
    let Ok(set) = codec.encode(&value, &HeaderMap::new(), NOW) else {
        return;
    };
    let headers = cookie_header(&set);

    c.bench_function("session/encode_article", |b| {
        b.iter(|| codec.encode(black_box(&value), black_box(&headers), NOW))
    });
    c.bench_function("session/read_article", |b| {
        b.iter(|| codec.read::<ArticleSession>(black_box(&headers), NOW))
    });

    let big = serde_json::json!({ "blob": "b".repeat(7000) });
    let Ok(set) = codec.encode(&big, &HeaderMap::new(), NOW) else {
        return;
    };
    let chunked = cookie_header(&set);
    c.bench_function("session/encode_chunked_7k", |b| {
        b.iter(|| codec.encode(black_box(&big), black_box(&chunked), NOW))
    });
    c.bench_function("session/read_chunked_7k", |b| {
        b.iter(|| codec.read::<serde_json::Value>(black_box(&chunked), NOW))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
