//! Property tests: seal → unseal round-trips for arbitrary JSON values and passwords.

use proptest::prelude::*;
use sallyport_iron::{Passwords, seal, seal_value, unseal, unseal_value, value_to_js_json};
use serde_json::Value;

use crate::NOW;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((".{0,12}", inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Any string of at least 32 UTF-16 units.
fn password() -> impl Strategy<Value = String> {
    ".{32,80}".prop_filter("32 UTF-16 units", |s| s.encode_utf16().count() >= 32)
}

/// Equality up to JavaScript's view of numbers and key order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn value_round_trips(value in json_value(), pw in password(), ttl in 0u64..10_000_000) {
        let pws = Passwords::single(pw).unwrap();
        let sealed = seal_value(&value, &pws, ttl, NOW).unwrap();
        let (back, id): (Value, String) = unseal_value(&sealed, &pws, NOW).unwrap();
        prop_assert!(same(&back, &value), "{back} vs {value}");
        prop_assert_eq!(id, "1");
        // The JS JSON text is stable under a second round.
        prop_assert_eq!(value_to_js_json(&back).unwrap(), value_to_js_json(&value).unwrap());
    }

    #[test]
    fn text_round_trips_exactly(text in ".{0,300}", pw1 in password(), pw2 in password()) {
        let json = serde_json::to_string(&text).unwrap();
        let pws = Passwords::from_pairs([("1", pw1), ("2", pw2)]).unwrap();
        let sealed = seal(&json, &pws, 0, NOW).unwrap();
        prop_assert!(sealed.starts_with("Fe26.2*2*"));
        let opened = unseal(&sealed, &pws, u64::MAX).unwrap();
        prop_assert_eq!(opened.json, json);
        prop_assert_eq!(opened.password_id, "2");
    }

    #[test]
    fn wrong_password_never_opens(pw1 in password(), pw2 in password()) {
        prop_assume!(pw1 != pw2);
        let a = Passwords::single(pw1).unwrap();
        let b = Passwords::single(pw2).unwrap();
        let sealed = seal("{}", &a, 0, NOW).unwrap();
        prop_assert!(unseal(&sealed, &b, NOW).is_err());
    }
}
