//! The cookie-layer vectors generated from the real iron-session 9.0.1 (FORMAT.md §8):
//! exact `Set-Cookie` bytes where the case fixes the randomness.

use std::time::Duration;

use http::HeaderMap;
use sallyport_iron::{Passwords, SealRandom};
use sallyport_session::{CookieCodec, Error, Priority, SameSite, SessionConfig};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let file: Value = serde_json::from_str(include_str!("../vectors/cookie.json")).unwrap();
    file["cases"].as_array().unwrap().clone()
}

fn case(name: &str) -> Value {
    cases()
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

fn passwords(p: &Value) -> Result<Passwords, sallyport_iron::Error> {
    match p {
        Value::String(s) => Passwords::single(s.clone()),
        Value::Object(map) => Passwords::from_pairs(
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())),
        ),
        other => panic!("password {other}"),
    }
}

/// The options object of a case as a `SessionConfig` (`None` for options we do not
/// model: a missing cookie name (ours has a default) and `expires`).
fn config(options: &Value) -> Option<Result<SessionConfig, sallyport_iron::Error>> {
    let name = options["cookieName"].as_str()?;
    let co = &options["cookieOptions"];
    if co.get("expires").is_some() {
        return None;
    }
    let pw = match passwords(&options["password"]) {
        Ok(pw) => pw,
        Err(e) => return Some(Err(e)),
    };
    let mut c = SessionConfig::new(pw).cookie_name(name);
    if let Some(ttl) = options["ttl"].as_u64() {
        c = c.ttl(Duration::from_secs(ttl));
    }
    if let Some(chunk) = options["chunk"].as_bool() {
        c = c.chunking(chunk);
    }
    if let Some(ma) = co.get("maxAge") {
        c = c.max_age(ma.as_u64().map(Duration::from_secs));
    }
    if let Some(b) = co["secure"].as_bool() {
        c = c.secure(b);
    }
    if let Some(b) = co["httpOnly"].as_bool() {
        c = c.http_only(b);
    }
    if let Some(b) = co["partitioned"].as_bool() {
        c = c.partitioned(b);
    }
    if let Some(s) = co["sameSite"].as_str() {
        c = c.same_site(match s {
            "strict" => SameSite::Strict,
            "lax" => SameSite::Lax,
            "none" => SameSite::None,
            other => panic!("sameSite {other}"),
        });
    }
    if let Some(s) = co["priority"].as_str() {
        c = c.priority(match s {
            "low" => Priority::Low,
            "medium" => Priority::Medium,
            "high" => Priority::High,
            other => panic!("priority {other}"),
        });
    }
    if let Some(s) = co["domain"].as_str() {
        c = c.domain(s);
    }
    if let Some(s) = co["path"].as_str() {
        c = c.path(s);
    }
    Some(Ok(c))
}

fn request_headers(cookie: &Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(h) = cookie["request_cookie_header"].as_str() {
        headers.insert(http::header::COOKIE, h.parse().unwrap());
    }
    headers
}

fn random(r: &Value) -> SealRandom {
    let bytes = |k: &str| hex::decode(r[k].as_str().unwrap()).unwrap();
    SealRandom {
        iv: bytes("iv_hex").try_into().unwrap(),
        encryption_salt: bytes("encryption_salt_bytes_hex").try_into().unwrap(),
        hmac_salt: bytes("hmac_salt_bytes_hex").try_into().unwrap(),
    }
}

fn strings(values: &[http::HeaderValue]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Seals `set_data` with the case's fixed randomness and runs it through the codec.
fn save_exact(codec: &CookieCodec, cookie: &Value) -> Result<Vec<String>, Error> {
    let config = codec.config();
    let json = sallyport_iron::value_to_js_json(&cookie["set_data"]).unwrap();
    let now = cookie["now_ms"].as_u64().unwrap();
    let expiration = sallyport_iron::expiration_for(config.seal_ttl_secs(), now);
    let sealed = sallyport_iron::seal_with_random(
        &json,
        config.passwords(),
        expiration,
        &random(&cookie["random"]),
    )
    .unwrap();
    if let Some(expected) = cookie["seal_in_cookie"].as_str() {
        assert_eq!(sealed, expected, "seal bytes");
    }
    codec
        .encode_sealed(&sealed, &request_headers(cookie))
        .map(|v| strings(&v))
}

#[test]
fn every_cookie_vector() {
    let mut checked = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap().to_owned();
        let cookie = &case["cookie"];
        let expected = &cookie["expected"];
        let Some(config) = config(&cookie["options"]) else {
            // cookie_error_missing_cookie_name (we default the name) and
            // cookie_error_expires_in_past (we have no `expires` option: ttl only).
            assert!(
                name == "cookie_error_missing_cookie_name"
                    || name == "cookie_error_expires_in_past",
                "{name} skipped"
            );
            continue;
        };
        let config = match config {
            Ok(c) => c,
            Err(e) => {
                // Short password / non-integer id: refused when building the password set.
                assert_eq!(expected["ok"], false, "{name}: {e}");
                assert!(
                    matches!(
                        e,
                        sallyport_iron::Error::PasswordTooShort
                            | sallyport_iron::Error::InvalidPasswordId(_)
                    ),
                    "{name}: {e}"
                );
                checked += 1;
                continue;
            }
        };
        if name == "cookie_custom_attributes" {
            custom_attributes(config, cookie);
            checked += 1;
            continue;
        }
        let codec = CookieCodec::try_new(config).unwrap();
        let now = cookie["now_ms"].as_u64().unwrap();
        match cookie["action"].as_str().unwrap() {
            "read" => {
                let got = codec
                    .read::<Value>(&request_headers(cookie), now)
                    .map_or(serde_json::json!({}), |l| l.value);
                assert_eq!(got, cookie["read_session"], "{name}");
            }
            "destroy" => {
                let got = strings(&codec.clear(&request_headers(cookie)));
                let want: Vec<String> =
                    serde_json::from_value(expected["set_cookie"].clone()).unwrap();
                assert_eq!(got, want, "{name}");
            }
            "save" => {
                let result = save_exact(&codec, cookie);
                if expected["ok"] == true {
                    let got = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                    let want: Vec<String> =
                        serde_json::from_value(expected["set_cookie"].clone()).unwrap();
                    // iron-session's exact sequence first ...
                    assert_eq!(got[..want.len()], want[..], "{name}");
                    // ... then (chunked writes only) our unconditional expiry of the
                    // unchunked cookie and the unused chunk slots (PP-08).
                    let extra = &got[want.len()..];
                    if want.len() > 1 {
                        let base = cookie["options"]["cookieName"].as_str().unwrap();
                        let names: Vec<&str> =
                            extra.iter().map(|s| s.split('=').next().unwrap()).collect();
                        let mut expect_names = vec![base.to_owned()];
                        expect_names.extend((want.len()..4).map(|i| format!("{base}.{i}")));
                        assert_eq!(names, expect_names, "{name}");
                        assert!(extra.iter().all(|s| s.contains("=; Max-Age=0; Path=/")));
                    } else {
                        assert!(extra.is_empty(), "{name}: {extra:?}");
                    }
                    for header in &got {
                        assert!(header.len() <= 4096, "{name}");
                    }
                } else {
                    let err = result.expect_err(&name);
                    let message = expected["error"].as_str().unwrap();
                    let bytes: usize = message
                        .split_once("too big (")
                        .and_then(|(_, rest)| rest.split_once(" bytes"))
                        .map(|(n, _)| n.parse().unwrap())
                        .unwrap_or_else(|| panic!("{name}: {message}"));
                    match err {
                        Error::TooLarge { bytes: got, .. } => assert_eq!(got, bytes, "{name}"),
                        other => panic!("{name}: {other}"),
                    }
                    assert!(err.to_string().contains(&format!("{bytes} bytes")));
                }
            }
            other => panic!("{name}: action {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 20);
}

#[test]
fn random_seal_has_the_vector_shape_and_reads_back() {
    // The real `encode` (fresh randomness): same length and attributes as the fixed
    // case, and it reads back.
    let case = case("cookie_defaults");
    let cookie = &case["cookie"];
    let codec = CookieCodec::try_new(config(&cookie["options"]).unwrap().unwrap()).unwrap();
    let now = cookie["now_ms"].as_u64().unwrap();
    let got = strings(
        &codec
            .encode(&cookie["set_data"], &HeaderMap::new(), now)
            .unwrap(),
    );
    let want = cookie["expected"]["set_cookie"][0].as_str().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), want.len());
    assert_eq!(
        got[0].split_once("; ").unwrap().1,
        want.split_once("; ").unwrap().1
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        got[0].split_once(';').unwrap().0.parse().unwrap(),
    );
    let loaded = codec.read::<Value>(&headers, now).unwrap();
    assert_eq!(loaded.value, cookie["set_data"]);
    assert_eq!(loaded.password_id, "1");
    assert!(!loaded.needs_reseal);
    assert_eq!(loaded.expires_at_ms, Some(now + 14 * 24 * 3600 * 1000));
}

#[test]
fn article_cookie_named_my_app_session_is_read_typed() {
    // The article's session shape, sealed by iron-session; renamed to the article's
    // cookie name.
    #[derive(serde::Deserialize, Default, Debug)]
    #[allow(non_snake_case)]
    struct ArticleSession {
        isLoggedIn: bool,
        accessToken: Option<String>,
        refreshToken: Option<String>,
    }
    let case = case("cookie_read_valid");
    let cookie = &case["cookie"];
    let header = cookie["request_cookie_header"]
        .as_str()
        .unwrap()
        .replace("my_session=", "my-app-session=");
    let mut headers = HeaderMap::new();
    headers.insert(http::header::COOKIE, header.parse().unwrap());
    let pw = Passwords::single(cookie["options"]["password"].as_str().unwrap()).unwrap();
    let codec = CookieCodec::try_new(SessionConfig::new(pw).cookie_name("my-app-session")).unwrap();
    let loaded = codec
        .read::<ArticleSession>(&headers, cookie["now_ms"].as_u64().unwrap())
        .unwrap();
    assert!(loaded.value.isLoggedIn);
    assert!(loaded.value.accessToken.unwrap().starts_with("eyJ"));
    assert!(loaded.value.refreshToken.unwrap().starts_with("eyJ"));
}

/// iron-session writes `Partitioned` without `Secure`, which Chromium rejects; we
/// refuse that setting, and check every other byte of the case without it.
fn custom_attributes(config: SessionConfig, cookie: &Value) {
    match CookieCodec::try_new(config.clone()) {
        Err(Error::Config { setting, .. }) => assert_eq!(setting, "partitioned"),
        other => panic!("{other:?}"),
    }
    let codec = CookieCodec::try_new(config.partitioned(false)).unwrap();
    let got = save_exact(&codec, cookie).unwrap();
    let want = cookie["expected"]["set_cookie"][0]
        .as_str()
        .unwrap()
        .replace("; Partitioned", "");
    assert_eq!(got, [want]);
}
