//! Properties: any session that fits round-trips through the cookie (chunked or not),
//! and no `Cookie` header, however malformed, makes reading fail or panic.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use sallyport_session::{CookieCodec, Error, Passwords, SessionConfig};

use crate::{Browser, PW1, T0};

fn codec(chunking: bool) -> CookieCodec {
    CookieCodec::try_new(
        SessionConfig::new(Passwords::single(PW1).unwrap())
            .secure(false)
            .chunking(chunking),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sessions_round_trip_through_the_browser(
        data in prop::collection::btree_map("\\PC{0,12}", prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            "\\PC{0,40}".prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
        ], 0..20),
        pad in 0usize..12_000,
        chunking in any::<bool>(),
    ) {
        let mut data: BTreeMap<String, serde_json::Value> = data;
        data.insert("pad".into(), "p".repeat(pad).into());
        let codec = codec(chunking);
        match codec.encode(&data, &HeaderMap::new(), T0) {
            Ok(set) => {
                let mut browser = Browser::default();
                browser.apply(&set);
                let loaded = codec.read::<BTreeMap<String, serde_json::Value>>(&browser.header(), T0);
                prop_assert_eq!(loaded.map(|l| l.value), Some(data));
            }
            Err(Error::TooLarge { bytes, .. }) => prop_assert!(!chunking && bytes > 4096),
            Err(Error::TooManyChunks { needed, .. }) => prop_assert!(chunking && needed > 4),
            Err(other) => prop_assert!(false, "{}", other),
        }
    }

    #[test]
    fn arbitrary_cookie_headers_never_break_reading(header in "[ -~]{0,300}", name in "(sallyport|sallyport\\.[0-4])") {
        let codec = codec(true);
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&header) {
            headers.append(http::header::COOKIE, value);
        }
        if let Ok(value) = HeaderValue::from_str(&format!("{name}={header}")) {
            headers.append(http::header::COOKIE, value);
        }
        prop_assert!(codec.read::<serde_json::Value>(&headers, T0).is_none());
        // Writing over any request still works.
        let small = serde_json::json!({"a": 1});
        prop_assert!(codec.encode(&small, &headers, T0).is_ok());
        let _ = codec.clear(&headers);
    }
}
