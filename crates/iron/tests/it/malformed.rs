//! Hostile input: unseal must return an error (never panic, never accept) for any
//! mutation of a valid seal that the MAC does not cover or that breaks the structure.

use proptest::prelude::*;
use sallyport_iron::{Error, Passwords, seal, unseal};

use crate::{NOW, PW1};

fn valid() -> (Passwords, String) {
    let pws = Passwords::single(PW1).unwrap();
    let sealed = seal(r#"{"isLoggedIn":true}"#, &pws, 3600, NOW).unwrap();
    (pws, sealed)
}

#[test]
fn structural_garbage_is_rejected() {
    let (pws, sealed) = valid();
    let cases = [
        String::new(),
        "Fe26.2".into(),
        "*******".into(),
        "********".into(),
        "Fe26.2*******".into(),
        format!(" {sealed}"),
        format!("{}*x~2", sealed.strip_suffix("~2").unwrap()),
        sealed.replacen('*', "~", 3),
        sealed.to_lowercase(),
        "\u{0}".repeat(100),
        "Fe26.2*1*é*é*é*é*é*é".into(),
    ];
    for bad in &cases {
        assert!(unseal(bad, &pws, NOW).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn every_single_byte_change_is_rejected() {
    let (pws, sealed) = valid();
    let body_len = sealed.len() - 2; // the `~2` suffix is outside the MAC by design
    let alphabet = b"Aa0_-*~.=+/ ";
    for i in 0..body_len {
        for &c in alphabet {
            let mut bytes = sealed.clone().into_bytes();
            if bytes[i] == c {
                continue;
            }
            bytes[i] = c;
            let mutated = String::from_utf8(bytes).unwrap();
            if let Ok(opened) = unseal(&mutated, &pws, NOW) {
                panic!(
                    "accepted mutation at {i} to {:?}: {}",
                    c as char, opened.json
                );
            }
        }
    }
}

#[test]
fn suffix_after_first_tilde_is_ignored() {
    let (pws, sealed) = valid();
    let body = sealed.strip_suffix("~2").unwrap();
    for tail in ["", "~", "~1", "~99", "~2~garbage*x"] {
        assert!(
            unseal(&format!("{body}{tail}"), &pws, NOW).is_ok(),
            "{tail}"
        );
    }
}

#[test]
fn non_canonical_base64_is_rejected() {
    let (pws, sealed) = valid();
    let fields: Vec<&str> = sealed.strip_suffix("~2").unwrap().split('*').collect();
    let hmac = fields[7];
    let variants = [
        format!("{hmac}="),
        format!("{} {}", &hmac[..10], &hmac[10..]),
    ];
    for v in variants {
        let forged = sealed.replace(hmac, &v);
        assert!(
            matches!(
                unseal(&forged, &pws, NOW),
                Err(Error::Malformed(_) | Error::BadMac)
            ),
            "{v}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,300}") {
        let pws = Passwords::single(PW1).unwrap();
        let _ = unseal(&s, &pws, NOW);
    }

    #[test]
    fn arbitrary_eight_fields_never_panic(fields in proptest::collection::vec("[A-Za-z0-9_~=. -]{0,60}", 8)) {
        let pws = Passwords::single(PW1).unwrap();
        let mut s = String::from("Fe26.2");
        for f in &fields[1..] {
            s.push('*');
            s.push_str(f);
        }
        prop_assert!(unseal(&s, &pws, NOW).is_err());
    }

    #[test]
    fn truncations_are_rejected(cut in 0usize..400) {
        let (pws, sealed) = valid();
        let body = sealed.strip_suffix("~2").unwrap();
        let cut = cut.min(body.len().saturating_sub(1));
        prop_assert!(unseal(&body[..cut], &pws, NOW).is_err());
    }
}

#[test]
fn truncated_or_extended_mac_bytes_are_rejected() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let (pws, sealed) = valid();
    let hmac_b64 = sealed
        .strip_suffix("~2")
        .unwrap()
        .rsplit('*')
        .next()
        .unwrap();
    let mac = URL_SAFE_NO_PAD.decode(hmac_b64).unwrap();
    assert_eq!(mac.len(), 32);
    // A correct prefix of the tag, or the tag plus a byte, must not verify.
    for variant in [
        &mac[..31],
        &mac[..16],
        &mac[..1],
        &[mac.as_slice(), &[0]].concat()[..],
    ] {
        let forged = sealed.replace(hmac_b64, &URL_SAFE_NO_PAD.encode(variant));
        assert!(
            matches!(unseal(&forged, &pws, NOW), Err(Error::BadMac)),
            "{} bytes",
            variant.len()
        );
    }
    let empty = sealed.replace(hmac_b64, "");
    assert!(matches!(unseal(&empty, &pws, NOW), Err(Error::BadMac)));
}
