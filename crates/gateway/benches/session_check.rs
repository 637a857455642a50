//! The per-request session check: unseal the cookie and decide whether the access token
//! needs renewal. Target: under 10 µs. `gateway_session_check` is the usual case (the
//! cookie's unsealed session is cached); `_uncached` is the full unseal + parse.
//!
//! `cargo bench -p sallyport-gateway --bench session_check`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header};
use sallyport_gateway::{Config, Gateway, SessionData};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // `cache_entries = 0` is the path without the session cache: every call unseals.
    for (name, cache_entries) in [
        ("gateway_session_check", 10_000),
        ("gateway_session_check_uncached", 0),
    ] {
        let mut config = Config::default();
        config.session.secret = Some("a-benchmark-secret-of-at-least-32-chars".into());
        config.session.secure = false;
        config.session.cache_entries = cache_entries;
        config.backend.login_url = Some("http://127.0.0.1:9/api/login".into());
        config.backend.refresh_url = Some("http://127.0.0.1:9/api/refresh-token".into());
        let settings = config.validate().expect("settings");
        let gateway = rt.block_on(Gateway::new(settings)).expect("gateway");

        let now_ms = 1_800_000_000_000u64;
        // A realistic ES256 access token is ~600 bytes; the refresh token 43.
        let session = SessionData {
            is_logged_in: true,
            access_token: Some(format!("eyJhbGciOiJFUzI1NiJ9.{}.sig", "x".repeat(560))),
            refresh_token: Some("r".repeat(43)),
            access_token_expires_at: Some(now_ms / 1000 + 600),
            last_renewed_at: Some(now_ms / 1000),
            sid: Some("0123456789abcdef0123456789abcdef".into()),
            ..SessionData::default()
        };
        let set_cookie = gateway.seal_session(&session, now_ms).expect("seal");
        let first = set_cookie[0].to_str().expect("ascii");
        let pair = first.split(';').next().expect("pair");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {pair}")).expect("header"),
        );

        assert!(gateway.check_session(&headers, now_ms).is_some());
        c.bench_function(name, |b| {
            b.iter(|| black_box(gateway.check_session(black_box(&headers), now_ms)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
