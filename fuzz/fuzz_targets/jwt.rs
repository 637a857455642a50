//! Fuzzes access-token decoding in `sallyport-jwt`: the unverified decoders the gateway
//! runs on every request (`decode_unverified`, `expires_at`) and the verifier's header and
//! claims parsing behind a *valid* signature (the target signs whatever header and claims
//! it is given, so mutations reach past the signature check).
//!
//! Input: `<header JSON> \n <claims JSON>`; the whole input is also tried as a token.
//!
//! Run (stable toolchain, from the repository root):
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run jwt corpus/jwt seeds/jwt -- -max_total_time=120`
//! (`seeds/jwt` is committed; `corpus/` is the working corpus and is not.)
//!
//! Checked, for any input: nothing panics; the two unverified decoders agree on `exp`
//! whenever both succeed (the gateway's renewal decision uses the cheap one); a token the
//! verifier accepts has an allowed `alg`, an accepted `typ`, no `crit`, our issuer and
//! audience, and is not expired.

#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use sallyport_jwt::{
    Algorithm, SigningKey, Verifier, VerifierConfig, decode_unverified, expires_at,
};

const NOW: u64 = 1_767_225_600;
const ISS: &str = "https://issuer.test";
const AUD: &str = "sallyport";

struct Fixture {
    key: SigningKey,
    verifier: Verifier,
    rt: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    // Ed25519 signatures are deterministic and fast; the kid is what seeds use.
    let key = SigningKey::generate(Algorithm::EdDsa, "fuzz").expect("key generation");
    let mut cfg = VerifierConfig::new("http://127.0.0.1:9/jwks.json", ISS, AUD)
        .leeway(Duration::from_secs(30));
    // No result cache: every input goes through the full parse.
    cfg.verified_cache_capacity = 0;
    let verifier = Verifier::from_keys(vec![key.verifying_key().expect("public key")], cfg);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    Fixture { key, verifier, rt }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let text = String::from_utf8_lossy(data);

    // 1. The input as a token, unverified: never panics, and both decoders agree.
    let full = decode_unverified(&text);
    let exp = expires_at(&text);
    if let (Ok(claims), Ok(exp)) = (&full, &exp) {
        assert_eq!(
            claims.exp, *exp,
            "decode_unverified and expires_at disagree on exp"
        );
    }
    if full.is_ok() {
        assert!(
            exp.is_ok(),
            "expires_at refused a token decode_unverified accepted: {exp:?}"
        );
    }

    // 2. The input as a token, verified: arbitrary bytes never carry our signature.
    let verified = f.rt.block_on(f.verifier.verify_at(&text, NOW));
    assert!(verified.is_err(), "an unsigned input verified: {text:?}");

    // 3. Header and claims from the input, validly signed: parsing past the signature.
    let (header, claims) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let signature = f.key.sign_bytes(token.as_bytes()).expect("signing");
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);

    let unverified = decode_unverified(&token);
    if let (Ok(c), Ok(exp)) = (&unverified, expires_at(&token)) {
        assert_eq!(c.exp, exp, "decoders disagree on a signed token");
    }
    if let Ok(c) = f.rt.block_on(f.verifier.verify_at(&token, NOW)) {
        let h: serde_json::Value = serde_json::from_slice(header).expect("accepted header is JSON");
        let alg = h.get("alg").and_then(|a| a.as_str()).unwrap_or_default();
        assert_eq!(alg, "EdDSA", "accepted a token whose alg is {alg:?}");
        assert!(h.get("crit").is_none(), "accepted a token with crit");
        let typ = h.get("typ").and_then(|t| t.as_str()).unwrap_or_default();
        assert!(
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt"),
            "accepted typ {typ:?}"
        );
        assert_eq!(c.iss, ISS);
        assert!(c.aud.iter().any(|a| a == AUD));
        assert!(c.exp + 30 > NOW, "accepted an expired token");
        // What the verifier accepted, the gateway's cheap decoder reads the same way.
        assert_eq!(unverified.as_ref().map(|u| u.exp).ok(), Some(c.exp));
    }
});
