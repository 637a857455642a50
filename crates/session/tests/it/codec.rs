//! `CookieCodec` directly: chunking sequences, orphan chunks, rotation, tampering,
//! expiry, size errors and configuration validation.

use std::time::Duration;

use http::HeaderMap;
use sallyport_session::{CookieCodec, Error, Passwords, SameSite, SessionConfig};
use serde::{Deserialize, Serialize};

use crate::{Browser, PW1, PW2, T0, summary};

#[derive(Serialize, Deserialize, Default, Debug, PartialEq, Clone)]
#[serde(default)]
struct Big {
    blob: String,
}

fn big(n: usize) -> Big {
    Big {
        blob: "x".repeat(n),
    }
}

fn codec(chunking: bool) -> CookieCodec {
    let pw = Passwords::single(PW1).unwrap();
    CookieCodec::try_new(SessionConfig::new(pw).secure(false).chunking(chunking)).unwrap()
}

#[test]
fn chunks_shrink_and_grow_without_stale_cookies() {
    // PP-07: whole -> 3 chunks -> 2 chunks -> whole -> 3 chunks, exact Set-Cookie
    // lists, and the browser reads back the latest session at every step.
    let codec = codec(true);
    let mut browser = Browser::default();
    let steps: [(usize, &[&str], &[&str]); 5] = [
        (100, &["sallyport"], &["sallyport"]),
        (
            7000,
            &[
                "sallyport.0",
                "sallyport.1",
                "sallyport.2",
                "-sallyport",
                "-sallyport.3",
            ],
            &["sallyport.0", "sallyport.1", "sallyport.2"],
        ),
        (
            4000,
            &[
                "sallyport.0",
                "sallyport.1",
                "-sallyport",
                "-sallyport.2",
                "-sallyport.3",
            ],
            &["sallyport.0", "sallyport.1"],
        ),
        (
            10,
            &["sallyport", "-sallyport.0", "-sallyport.1"],
            &["sallyport"],
        ),
        (
            7000,
            &[
                "sallyport.0",
                "sallyport.1",
                "sallyport.2",
                "-sallyport",
                "-sallyport.3",
            ],
            &["sallyport.0", "sallyport.1", "sallyport.2"],
        ),
    ];
    for (n, expected_set, expected_jar) in steps {
        let set = codec.encode(&big(n), &browser.header(), T0).unwrap();
        assert_eq!(summary(&set), expected_set, "blob {n}");
        for h in &set {
            let text = h.to_str().unwrap();
            assert!(text.len() <= 4096);
            assert!(text.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{text}");
        }
        browser.apply(&set);
        assert_eq!(browser.names(), expected_jar, "blob {n}");
        let loaded = codec.read::<Big>(&browser.header(), T0).unwrap();
        assert_eq!(loaded.value, big(n));
    }
}

#[test]
fn chunk_cookies_use_the_budget_rule() {
    let codec = codec(true);
    let set = codec.encode(&big(7000), &HeaderMap::new(), T0).unwrap();
    let values: Vec<&str> = set.iter().map(|h| h.to_str().unwrap()).collect();
    // The first two chunks are filled to exactly 4096 bytes.
    assert_eq!(values[0].len(), 4096);
    assert_eq!(values[1].len(), 4096);
    assert!(values[2].len() < 4096);
    let headers = {
        let mut b = Browser::default();
        b.apply(&set);
        b.header()
    };
    let sealed = codec.read_sealed(&headers);
    assert!(sealed.unwrap().ends_with("~2"));
}

#[test]
fn orphan_chunks_from_parallel_responses_never_corrupt_the_session() {
    // PP-08: two requests carry the same whole cookie; response A writes 3 chunks,
    // response B writes 2. Whatever order the browser applies them in, it holds
    // exactly the chunks of the last one and reads that session back.
    let codec = codec(true);
    let mut start = Browser::default();
    start.apply(&codec.encode(&big(10), &HeaderMap::new(), T0).unwrap());
    let a = codec.encode(&big(7000), &start.header(), T0).unwrap();
    let b = codec.encode(&big(4000), &start.header(), T0).unwrap();
    for (first, second, last, chunks) in [(&a, &b, 4000, 2), (&b, &a, 7000, 3)] {
        let mut browser = start.clone();
        browser.apply(first);
        browser.apply(second);
        assert_eq!(browser.cookies.len(), chunks, "{:?}", browser.names());
        assert_eq!(
            codec.read::<Big>(&browser.header(), T0).unwrap().value,
            big(last)
        );
    }
}

#[test]
fn destroy_clears_every_chunk_slot() {
    let codec = codec(true);
    let mut browser = Browser::default();
    browser.apply(&codec.encode(&big(7000), &HeaderMap::new(), T0).unwrap());
    let clear = codec.clear(&browser.header());
    assert_eq!(
        summary(&clear),
        [
            "-sallyport",
            "-sallyport.0",
            "-sallyport.1",
            "-sallyport.2",
            "-sallyport.3"
        ]
    );
    assert_eq!(
        clear[0].to_str().unwrap(),
        "sallyport=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
    );
    browser.apply(&clear);
    assert!(browser.cookies.is_empty());
    assert!(codec.read::<Big>(&browser.header(), T0).is_none());
}

#[test]
fn without_chunking_a_large_session_is_refused_with_its_size() {
    let codec = codec(false);
    let err = codec.encode(&big(3000), &HeaderMap::new(), T0).unwrap_err();
    match &err {
        Error::TooLarge {
            bytes,
            max,
            already_chunked,
        } => {
            assert!(*bytes > 4096);
            assert_eq!(*max, 4096);
            assert!(!already_chunked);
            assert!(err.to_string().contains(&format!("{bytes} bytes")), "{err}");
        }
        other => panic!("{other}"),
    }
    // The largest payload that still fits is accepted as one cookie.
    let set = codec.encode(&big(2800), &HeaderMap::new(), T0).unwrap();
    assert_eq!(set.len(), 1);
    // A request that already has chunks (another writer with chunking on) is named.
    let mut browser = Browser::default();
    browser.apply(
        &self::codec(true)
            .encode(&big(7000), &HeaderMap::new(), T0)
            .unwrap(),
    );
    match codec.encode(&big(3000), &browser.header(), T0) {
        Err(Error::TooLarge {
            already_chunked: true,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // ... and with chunking off, a small write still clears those chunks.
    let set = codec.encode(&big(10), &browser.header(), T0).unwrap();
    assert_eq!(
        summary(&set),
        ["sallyport", "-sallyport.0", "-sallyport.1", "-sallyport.2"]
    );
}

#[test]
fn more_than_four_chunks_is_an_error() {
    let codec = codec(true);
    match codec.encode(&big(14_000), &HeaderMap::new(), T0) {
        Err(Error::TooManyChunks { needed: 5, max: 4 }) => {}
        other => panic!("{other:?}"),
    }
    // Four chunks are fine.
    let set = codec.encode(&big(11_000), &HeaderMap::new(), T0).unwrap();
    assert_eq!(
        summary(&set)[..4],
        ["sallyport.0", "sallyport.1", "sallyport.2", "sallyport.3"]
    );
    // A lower limit for proxies with 8 KB header buffers (PP-09).
    let two = CookieCodec::try_new(
        SessionConfig::new(Passwords::single(PW1).unwrap())
            .secure(false)
            .chunking(true)
            .max_chunks(2),
    )
    .unwrap();
    assert_eq!(
        two.encode(&big(4000), &HeaderMap::new(), T0).unwrap().len(),
        2 + 3
    );
    match two.encode(&big(7000), &HeaderMap::new(), T0) {
        Err(Error::TooManyChunks { needed: 3, max: 2 }) => {}
        other => panic!("{other:?}"),
    }
    for bad in [0, 5] {
        match CookieCodec::try_new(
            SessionConfig::new(Passwords::single(PW1).unwrap()).max_chunks(bad),
        ) {
            Err(Error::Config { setting, .. }) => assert_eq!(setting, "max_chunks"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn rotation_reads_old_password_and_reseals_with_newest() {
    // PP-22: {1: k1} -> cookie; {1: k1, 2: k2} reads it (needs_reseal) and re-seals
    // with id 2; {2: k2} rejects a k1 cookie as unknown-password.
    let old =
        CookieCodec::try_new(SessionConfig::new(Passwords::single(PW1).unwrap()).secure(false))
            .unwrap();
    let both = CookieCodec::try_new(
        SessionConfig::new(Passwords::from_pairs([("2", PW2), ("1", PW1)]).unwrap()).secure(false),
    )
    .unwrap();
    let new_only = CookieCodec::try_new(
        SessionConfig::new(Passwords::from_pairs([("2", PW2)]).unwrap()).secure(false),
    )
    .unwrap();

    let mut browser = Browser::default();
    browser.apply(&old.encode(&big(5), &HeaderMap::new(), T0).unwrap());
    let loaded = both.read::<Big>(&browser.header(), T0).unwrap();
    assert_eq!(loaded.password_id, "1");
    assert!(loaded.needs_reseal);

    let mut resealed = browser.clone();
    resealed.apply(&both.encode(&loaded.value, &browser.header(), T0).unwrap());
    assert!(resealed.cookies["sallyport"].starts_with("Fe26.2*2*"));
    let again = both.read::<Big>(&resealed.header(), T0).unwrap();
    assert_eq!(again.password_id, "2");
    assert!(!again.needs_reseal);
    assert_eq!(
        new_only.read::<Big>(&resealed.header(), T0).unwrap().value,
        big(5)
    );

    let err = new_only.try_read::<Big>(&browser.header(), T0).unwrap_err();
    assert_eq!(err.reason(), Some("unknown-password"));
    assert!(new_only.read::<Big>(&browser.header(), T0).is_none());
}

#[test]
fn every_single_character_change_is_rejected() {
    let codec = codec(false);
    let set = codec.encode(&big(20), &HeaderMap::new(), T0).unwrap();
    let mut browser = Browser::default();
    browser.apply(&set);
    let sealed = browser.cookies["sallyport"].clone();
    let body_len = sealed.find('~').unwrap();
    for i in 0..body_len {
        let mut bytes = sealed.clone().into_bytes();
        bytes[i] = match bytes[i] {
            b'A' => b'B',
            b'0' => b'1',
            b'*' => b'-',
            b => {
                if b.is_ascii_lowercase() {
                    b.to_ascii_uppercase()
                } else {
                    b'A'
                }
            }
        };
        let tampered = String::from_utf8(bytes).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("sallyport={tampered}").parse().unwrap(),
        );
        let err = codec.try_read::<Big>(&headers, T0).unwrap_err();
        assert!(
            matches!(
                err.reason(),
                Some("invalid" | "unknown-password" | "expired")
            ),
            "position {i}: {err}"
        );
        assert!(codec.read::<Big>(&headers, T0).is_none(), "position {i}");
    }
    // Truncations and garbage.
    for bad in [
        &sealed[..sealed.len() / 2],
        "Fe26.2",
        "garbage",
        "*******",
        "~~~",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("sallyport={bad}").parse().unwrap(),
        );
        assert!(codec.read::<Big>(&headers, T0).is_none(), "{bad}");
    }
}

#[test]
fn expiry_follows_the_seal_with_sixty_seconds_skew() {
    let pw = Passwords::single(PW1).unwrap();
    let codec = CookieCodec::try_new(
        SessionConfig::new(pw)
            .secure(false)
            .ttl(Duration::from_secs(3600)),
    )
    .unwrap();
    let set = codec.encode(&big(3), &HeaderMap::new(), T0).unwrap();
    assert!(set[0].to_str().unwrap().contains("; Max-Age=3540;"));
    let mut browser = Browser::default();
    browser.apply(&set);
    let expires = T0 + 3_600_000;
    assert!(
        codec
            .read::<Big>(&browser.header(), expires + 59_999)
            .is_some()
    );
    let err = codec
        .try_read::<Big>(&browser.header(), expires + 60_000)
        .unwrap_err();
    assert_eq!(err.reason(), Some("expired"));
}

#[test]
fn a_cookie_of_another_shape_is_an_empty_session() {
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Strict {
        required: u32,
    }
    let codec = codec(false);
    let mut browser = Browser::default();
    browser.apply(&codec.encode(&big(3), &HeaderMap::new(), T0).unwrap());
    let err = codec.try_read::<Strict>(&browser.header(), T0).unwrap_err();
    assert_eq!(err.reason(), Some("shape"));
}

#[test]
fn a_sealed_null_reads_as_an_empty_object() {
    let codec = codec(false);
    let mut browser = Browser::default();
    browser.apply(
        &codec
            .encode(&serde_json::Value::Null, &HeaderMap::new(), T0)
            .unwrap(),
    );
    let loaded = codec
        .try_read::<serde_json::Value>(&browser.header(), T0)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.value, serde_json::json!({}));
    assert_eq!(
        codec.read::<Big>(&browser.header(), T0).unwrap().value,
        Big::default()
    );
}

#[test]
fn defaults_are_iron_sessions() {
    let pw = || Passwords::single(PW1).unwrap();
    let secure = CookieCodec::try_new(SessionConfig::new(pw())).unwrap();
    assert_eq!(secure.config().name(), "__Host-sallyport");
    let set = secure.encode(&big(1), &HeaderMap::new(), T0).unwrap();
    let text = set[0].to_str().unwrap();
    assert!(text.starts_with("__Host-sallyport=Fe26.2*1*"));
    assert!(
        text.ends_with("~2; Max-Age=1209540; Path=/; HttpOnly; Secure; SameSite=Lax"),
        "{text}"
    );
    assert!(text.contains(&format!("*{}*", T0 + 1_209_600_000)));

    let insecure = CookieCodec::try_new(SessionConfig::new(pw()).secure(false)).unwrap();
    assert_eq!(insecure.config().name(), "sallyport");

    // ttl 0: never expires, Max-Age 2147483647; browser-session cookie: no Max-Age.
    let forever = SessionConfig::new(pw()).ttl(Duration::ZERO);
    assert_eq!(forever.max_age_secs(), Some(2_147_483_647));
    assert_eq!(forever.seal_ttl_secs(), 0);
    let browser_session = SessionConfig::new(pw()).max_age(None);
    assert_eq!(browser_session.max_age_secs(), None);
    assert_eq!(browser_session.seal_ttl_secs(), 0);
    for (ttl, max_age) in [(30, 30), (60, 60), (61, 1), (3600, 3540)] {
        let c = SessionConfig::new(pw()).ttl(Duration::from_secs(ttl));
        assert_eq!(c.max_age_secs(), Some(max_age), "ttl {ttl}");
    }
}

#[test]
fn invalid_settings_are_refused_naming_the_setting() {
    let pw = || Passwords::single(PW1).unwrap();
    let setting = |config: SessionConfig| match CookieCodec::try_new(config) {
        Err(Error::Config { setting, message }) => {
            assert!(!message.is_empty());
            setting
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(setting(SessionConfig::new(pw()).path("/app")), "path");
    assert_eq!(
        setting(SessionConfig::new(pw()).domain("example.com")),
        "domain"
    );
    assert_eq!(
        setting(
            SessionConfig::new(pw())
                .secure(false)
                .cookie_name("__Host-x")
        ),
        "secure"
    );
    assert_eq!(
        setting(
            SessionConfig::new(pw())
                .secure(false)
                .cookie_name("__Secure-x")
        ),
        "secure"
    );
    assert_eq!(
        setting(SessionConfig::new(pw()).cookie_name("a;b")),
        "cookie_name"
    );
    assert_eq!(
        setting(SessionConfig::new(pw()).cookie_name("")),
        "cookie_name"
    );
    assert_eq!(
        setting(SessionConfig::new(pw()).cookie_name("a b")),
        "cookie_name"
    );
    assert_eq!(
        setting(
            SessionConfig::new(pw())
                .secure(false)
                .same_site(SameSite::None)
        ),
        "same_site"
    );
    assert_eq!(
        setting(SessionConfig::new(pw()).secure(false).path("/a;b")),
        "path"
    );
    assert_eq!(
        setting(SessionConfig::new(pw()).secure(false).path("app")),
        "path"
    );
    assert_eq!(
        setting(
            SessionConfig::new(pw())
                .secure(false)
                .domain("exa mple.com")
        ),
        "domain"
    );
    assert_eq!(
        setting(SessionConfig::new(pw()).cookie_name("x".repeat(5000))),
        "cookie_name"
    );
    // Explicit names with path/domain are fine.
    CookieCodec::try_new(
        SessionConfig::new(pw())
            .cookie_name("app-session")
            .path("/app")
            .domain("example.com"),
    )
    .unwrap();

    // The infallible constructor defers the error to every write.
    let codec = CookieCodec::new(SessionConfig::new(pw()).path("/app"));
    match codec.encode(&big(1), &HeaderMap::new(), T0) {
        Err(Error::Config { setting, .. }) => assert_eq!(setting, "path"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn debug_output_never_contains_the_password() {
    let config = SessionConfig::new(Passwords::from_pairs([("1", PW1), ("2", PW2)]).unwrap());
    let codec = CookieCodec::new(config.clone());
    for text in [format!("{config:?}"), format!("{codec:?}")] {
        assert!(!text.contains(PW1) && !text.contains(PW2), "{text}");
        assert!(!text.contains("password-"), "{text}");
    }
}

#[test]
fn a_percent_encoded_cookie_value_still_reads() {
    let codec = codec(false);
    let mut browser = Browser::default();
    browser.apply(&codec.encode(&big(3), &HeaderMap::new(), T0).unwrap());
    let encoded = browser.cookies["sallyport"].replace('*', "%2A");
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        format!("other=1; sallyport={encoded}").parse().unwrap(),
    );
    assert_eq!(codec.read::<Big>(&headers, T0).unwrap().value, big(3));
}

#[test]
fn session_cookie_names_for_proxies_to_strip() {
    let codec = codec(true);
    for yes in [
        &b"sallyport"[..],
        b"sallyport.0",
        b"sallyport.3",
        b"sallyport.12",
    ] {
        assert!(codec.is_session_cookie_name(yes), "{yes:?}");
    }
    for no in [
        &b"sallyport."[..],
        b"sallyport.x",
        b"sallyportx",
        b"sallyport.0x",
        b"other",
        b"",
        b"sallypor\xff",
    ] {
        assert!(!codec.is_session_cookie_name(no), "{no:?}");
    }
}
