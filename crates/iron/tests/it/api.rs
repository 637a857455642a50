//! Behaviour of the public API: rotation, expiry, password rules, redaction.

use sallyport_iron::{
    DEFAULT_TTL_SECS, Error, Malformed, Password, Passwords, SKEW_MS, UnsealReason, seal,
    seal_value, unseal, unseal_value, value_to_js_json,
};
use serde_json::json;

use crate::{NOW, PW1, PW2};

#[test]
fn round_trip_with_suffix_and_id() {
    let pws = Passwords::single(PW1).unwrap();
    let sealed = seal(r#"{"a":1}"#, &pws, 60, NOW).unwrap();
    assert!(sealed.starts_with("Fe26.2*1*"), "{sealed}");
    assert!(sealed.ends_with("~2"));
    let opened = unseal(&sealed, &pws, NOW).unwrap();
    assert_eq!(opened.json, r#"{"a":1}"#);
    assert_eq!(opened.password_id, "1");
    assert_eq!(opened.expires_at_ms, Some(NOW + 60_000));
}

#[test]
fn two_seals_of_the_same_value_differ() {
    let pws = Passwords::single(PW1).unwrap();
    let a = seal("{}", &pws, 0, NOW).unwrap();
    let b = seal("{}", &pws, 0, NOW).unwrap();
    assert_ne!(a, b, "salts and iv must be fresh per seal");
}

#[test]
fn seal_value_round_trips_typed_values() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    #[serde(rename_all = "camelCase")]
    struct S {
        is_logged_in: bool,
        access_token: String,
        n: f64,
    }
    let pws = Passwords::single(PW1).unwrap();
    let s = S {
        is_logged_in: true,
        access_token: "x.y.z".into(),
        n: 0.1 + 0.2,
    };
    let sealed = seal_value(&s, &pws, DEFAULT_TTL_SECS, NOW).unwrap();
    let (back, id): (S, String) = unseal_value(&sealed, &pws, NOW).unwrap();
    assert_eq!(back, s);
    assert_eq!(id, "1");
}

#[test]
fn seal_value_refuses_nan_and_infinity() {
    let pws = Passwords::single(PW1).unwrap();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = seal_value(&vec![1.0, bad], &pws, 0, NOW).unwrap_err();
        assert!(matches!(err, Error::NotLosslessJson(_)), "{err:?}");
    }
}

#[test]
fn js_json_property_order_and_numbers() {
    let v: serde_json::Value = serde_json::from_str(
        r#"{"b":1,"a":2,"10":3,"2":4,"-1":5,"01":6,"4294967295":7,"4294967294":8}"#,
    )
    .unwrap();
    assert_eq!(
        value_to_js_json(&v).unwrap(),
        r#"{"2":4,"10":3,"4294967294":8,"b":1,"a":2,"-1":5,"01":6,"4294967295":7}"#
    );
    let nums = json!([
        1e21,
        1e-7,
        123e-20,
        -0.0,
        1.5,
        5e-324,
        1.7976931348623157e308,
        0.1 + 0.2,
        100.0
    ]);
    assert_eq!(
        value_to_js_json(&nums).unwrap(),
        "[1e+21,1e-7,1.23e-18,0,1.5,5e-324,1.7976931348623157e+308,0.30000000000000004,100]"
    );
    let s = json!("\"\\\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}/<>&\u{2028}é");
    assert_eq!(
        value_to_js_json(&s).unwrap(),
        "\"\\\"\\\\\\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}/<>&\u{2028}é\""
    );
}

#[test]
fn rotation_seals_with_highest_id_and_opens_older() {
    let old = Passwords::single(PW1).unwrap();
    let old_cookie = seal("{}", &old, 0, NOW).unwrap();

    // Insertion order does not matter: the highest numeric id seals (10 > 9 > 2).
    let rotated = Passwords::from_pairs([("10", PW2), ("1", PW1), ("9", PW1)]).unwrap();
    assert_eq!(rotated.current_id(), "10");
    let new_cookie = seal("{}", &rotated, 0, NOW).unwrap();
    assert!(new_cookie.starts_with("Fe26.2*10*"));
    assert_eq!(unseal(&old_cookie, &rotated, NOW).unwrap().password_id, "1");
    assert_eq!(
        unseal(&new_cookie, &rotated, NOW).unwrap().password_id,
        "10"
    );

    // Once the old password is retired, old cookies fail as unknown-password.
    let retired = Passwords::from_pairs([("10", PW2)]).unwrap();
    let err = unseal(&old_cookie, &retired, NOW).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownPasswordId(id) if id == "1"),
        "{err:?}"
    );
    assert_eq!(err.reason(), UnsealReason::UnknownPassword);
}

#[test]
fn a_pinned_id_seals_while_every_id_still_opens() {
    // Step one of a rollout across processes: the new id 2 opens, the old id 1 seals.
    let pinned = Passwords::from_pairs([("1", PW1), ("2", PW2)])
        .unwrap()
        .sealing_with("1")
        .unwrap();
    assert_eq!(pinned.current_id(), "1");
    let cookie = seal("{}", &pinned, 0, NOW).unwrap();
    assert!(cookie.starts_with("Fe26.2*1*"), "{cookie}");
    // A process still on the old set (id 1 only) opens it...
    let old = Passwords::single(PW1).unwrap();
    assert_eq!(unseal(&cookie, &old, NOW).unwrap().password_id, "1");
    // ...and the pinned set opens what an unpinned process (sealing with 2) wrote.
    let unpinned = Passwords::from_pairs([("1", PW1), ("2", PW2)]).unwrap();
    let newer = seal("{}", &unpinned, 0, NOW).unwrap();
    assert_eq!(unseal(&newer, &pinned, NOW).unwrap().password_id, "2");
    // Only an id of the set can be pinned.
    let err = Passwords::single(PW1)
        .unwrap()
        .sealing_with("3")
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownPasswordId(id) if id == "3"),
        "{err:?}"
    );
}

#[test]
fn same_id_other_password_is_bad_mac() {
    let a = Passwords::single(PW1).unwrap();
    let b = Passwords::single(PW2).unwrap();
    let sealed = seal("{}", &a, 0, NOW).unwrap();
    assert!(matches!(unseal(&sealed, &b, NOW), Err(Error::BadMac)));
}

#[test]
fn empty_id_needs_a_default_password() {
    // An empty id (what @hapi/iron writes) means "default", never id 1. Real id-less
    // seals are covered by the vectors `hapi_sealed_without_id` / `empty_id_default_key`.
    let pws = Passwords::single(PW1).unwrap();
    let sealed = seal("{}", &pws, 0, NOW).unwrap();
    let no_id = sealed.replacen("Fe26.2*1*", "Fe26.2**", 1);
    assert!(
        matches!(unseal(&no_id, &pws, NOW), Err(Error::UnknownPasswordId(id)) if id.is_empty())
    );
    // With a default password the lookup succeeds and the MAC check (over the changed
    // id) then fails: the id is authenticated.
    let with_default = pws.with_default(PW1).unwrap();
    assert!(matches!(
        unseal(&no_id, &with_default, NOW),
        Err(Error::BadMac)
    ));
}

#[test]
fn expiry_uses_60s_skew_exactly() {
    let pws = Passwords::single(PW1).unwrap();
    let sealed = seal("{}", &pws, 3600, NOW).unwrap();
    let exp = NOW + 3_600_000;
    assert!(unseal(&sealed, &pws, exp).is_ok());
    assert!(unseal(&sealed, &pws, exp + SKEW_MS - 1).is_ok());
    assert!(matches!(
        unseal(&sealed, &pws, exp + SKEW_MS),
        Err(Error::Expired)
    ));
    // No "not before": a seal from the future opens.
    assert!(unseal(&sealed, &pws, NOW - 86_400_000).is_ok());
}

#[test]
fn ttl_zero_never_expires() {
    let pws = Passwords::single(PW1).unwrap();
    let sealed = seal("{}", &pws, 0, NOW).unwrap();
    assert!(sealed.contains("**") || sealed.split('*').nth(5) == Some(""));
    assert_eq!(unseal(&sealed, &pws, u64::MAX).unwrap().expires_at_ms, None);
}

#[test]
fn expiry_is_checked_before_password_and_mac() {
    let pws = Passwords::single(PW1).unwrap();
    let sealed = seal("{}", &pws, 1, NOW).unwrap();
    let later = NOW + 1000 + 60_000;
    // Wrong password and an unknown id are still reported as expired, like iron-session.
    let other = Passwords::single(PW2).unwrap();
    assert!(matches!(
        unseal(&sealed, &other, later),
        Err(Error::Expired)
    ));
    let unknown = Passwords::from_pairs([("7", PW1)]).unwrap();
    assert!(matches!(
        unseal(&sealed, &unknown, later),
        Err(Error::Expired)
    ));
}

#[test]
fn extending_the_expiration_breaks_the_mac() {
    let pws = Passwords::single(PW1).unwrap();
    let sealed = seal("{}", &pws, 1, NOW).unwrap();
    let exp = (NOW + 1000).to_string();
    let extended = sealed.replace(&exp, &(NOW + 10_000_000_000).to_string());
    assert!(matches!(
        unseal(&extended, &pws, NOW + 120_000),
        Err(Error::BadMac)
    ));
    let removed = sealed.replace(&exp, "");
    assert!(matches!(
        unseal(&removed, &pws, NOW + 120_000),
        Err(Error::BadMac)
    ));
}

#[test]
fn password_length_counts_utf16_units() {
    assert!(matches!(
        Password::new("a".repeat(31)),
        Err(Error::PasswordTooShort)
    ));
    assert!(Password::new("a".repeat(32)).is_ok());
    // 16 emoji = 32 UTF-16 units (64 bytes): accepted.
    assert!(Password::new("😀".repeat(16)).is_ok());
    // 15 emoji + 'a' = 31 units: refused. 11 '€' = 33 bytes but 11 units: refused.
    assert!(matches!(
        Password::new(format!("{}a", "😀".repeat(15))),
        Err(Error::PasswordTooShort)
    ));
    assert!(matches!(
        Password::new("€".repeat(11)),
        Err(Error::PasswordTooShort)
    ));
    assert!(matches!(
        Passwords::single(""),
        Err(Error::PasswordTooShort)
    ));
}

#[test]
fn password_ids_must_be_canonical_integers() {
    for bad in [
        "",
        "01",
        "-1",
        "1.5",
        "1e3",
        "a",
        "default",
        " 1",
        "1234567890123456",
    ] {
        let err = Passwords::from_pairs([(bad, PW1)]).unwrap_err();
        assert!(matches!(err, Error::InvalidPasswordId(_)), "{bad}: {err:?}");
    }
    assert!(Passwords::from_pairs([("0", PW1)]).is_ok());
    assert!(matches!(
        Passwords::from_pairs([("1", PW1), ("1", PW2)]),
        Err(Error::DuplicatePasswordId(_))
    ));
    assert!(matches!(
        Passwords::from_pairs(Vec::<(String, String)>::new()),
        Err(Error::NoPasswords)
    ));
}

#[test]
fn debug_output_never_contains_secrets() {
    let pw = Password::new(PW1).unwrap();
    let pws = Passwords::from_pairs([("1", PW1), ("2", PW2)])
        .unwrap()
        .with_default(PW2)
        .unwrap();
    for text in [format!("{pw:?}"), format!("{pws:?}"), format!("{pws:#?}")] {
        assert!(!text.contains(PW1) && !text.contains(PW2), "{text}");
        assert!(!text.contains("iron-session-vector"), "{text}");
    }
    assert!(format!("{pws:?}").contains("current_id: \"2\""));
}

#[test]
fn errors_echo_at_most_a_bounded_id() {
    let pws = Passwords::single(PW1).unwrap();
    let sealed = seal("{}", &pws, 0, NOW).unwrap();
    let long_id = "x".repeat(10_000);
    let forged = sealed.replacen("Fe26.2*1*", &format!("Fe26.2*{long_id}*"), 1);
    let err = unseal(&forged, &pws, NOW).unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn malformed_reasons_are_typed() {
    let pws = Passwords::single(PW1).unwrap();
    assert!(matches!(
        unseal("", &pws, NOW),
        Err(Error::Malformed(Malformed::ComponentCount))
    ));
    assert!(matches!(
        unseal("Fe26.1*1*a*b*c**d*e", &pws, NOW),
        Err(Error::Malformed(Malformed::Prefix))
    ));
    assert!(matches!(
        unseal("Fe26.2*1*a*b*c*01*d*e", &pws, NOW),
        Err(Error::Malformed(Malformed::Expiration))
    ));
}

#[test]
fn seal_refuses_text_that_is_not_json() {
    let pws = Passwords::single(PW1).unwrap();
    for bad in ["", "{", "{'a':1}", "undefined", "NaN"] {
        assert!(
            matches!(seal(bad, &pws, 0, NOW), Err(Error::PayloadJson(_))),
            "{bad:?}"
        );
    }
    // Surrounding whitespace is JSON; it is sealed byte for byte.
    let sealed = seal(" {} \n", &pws, 0, NOW).unwrap();
    assert_eq!(unseal(&sealed, &pws, NOW).unwrap().json, " {} \n");
}

/// `is_expired` is the rule `unseal` applies: the same boundary, to the millisecond.
#[test]
fn is_expired_matches_unseal() {
    let pws = Passwords::single("x".repeat(32)).unwrap();
    let now = 1_767_225_600_000;
    let sealed = seal("{}", &pws, 60, now).unwrap();
    let exp = now + 60_000;
    for t in [exp + SKEW_MS - 1, exp + SKEW_MS] {
        assert_eq!(
            sallyport_iron::is_expired(exp, t),
            unseal(&sealed, &pws, t).is_err(),
            "at {t}"
        );
    }
    assert!(!sallyport_iron::is_expired(exp, exp + SKEW_MS - 1));
    assert!(sallyport_iron::is_expired(exp, exp + SKEW_MS));
}
