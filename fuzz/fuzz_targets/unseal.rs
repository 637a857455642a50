//! Fuzzes `sallyport_iron::unseal` with arbitrary text (seeded with real seals from the
//! test vectors, under the vectors' password, so mutations reach the MAC check), and
//! checks seal → unseal on arbitrary plaintext.
//!
//! Run (stable toolchain): `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run unseal corpus/unseal seeds/unseal -- -max_total_time=300`
//! (`seeds/unseal` holds vector seals, including forged ones that pass the MAC and reach
//! decryption; `corpus/` is the working corpus and is not committed.)

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sallyport_iron::{Passwords, SealRandom, seal_with_random, unseal};

const NOW: u64 = 1_767_225_600_000;

static PASSWORDS: LazyLock<Passwords> = LazyLock::new(|| {
    Passwords::from_pairs([
        ("1", "iron-session-vector-password-A-0123456789"),
        ("2", "iron-session-vector-password-B-ABCDEFGHIJ"),
    ])
    .and_then(|p| p.with_default("iron-session-vector-password-A-0123456789"))
    .expect("static passwords are valid")
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // 1. Anything at all: never panics; whatever opens is JSON.
    if let Ok(opened) = unseal(&text, &PASSWORDS, NOW) {
        assert!(serde_json::from_str::<serde::de::IgnoredAny>(&opened.json).is_ok());
    }

    // 2. Seal the input as plaintext: it opens exactly when it is JSON.
    let random = SealRandom {
        iv: [7; 16],
        encryption_salt: [1; 32],
        hmac_salt: [2; 32],
    };
    let sealed =
        seal_with_random(&text, &PASSWORDS, Some(NOW), &random).expect("sealing never fails");
    let expected = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let is_json = serde_json::from_str::<serde::de::IgnoredAny>(expected).is_ok();
    match unseal(&sealed, &PASSWORDS, NOW) {
        Ok(opened) => {
            assert!(is_json);
            assert_eq!(opened.json, expected);
            assert_eq!(opened.password_id, "2");
        }
        Err(sallyport_iron::Error::PayloadJson(_)) => assert!(!is_json),
        Err(e) => panic!("a fresh seal must open or fail on its JSON: {e}"),
    }
});
