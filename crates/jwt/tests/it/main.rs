//! Adversarial and integration tests of `sallyport-jwt`: every rejection the
//! verifier makes is shown refusing a forged token, and the JWKS cache is
//! exercised against a real HTTP server on loopback (wiremock).

#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sallyport_jwt::{
    AccessClaims, Algorithm, Error, JwkSet, SigningKey, Verifier, VerifierConfig, jwk_set,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod extractor;

const ISS: &str = "http://issuer.test";
const AUD: &str = "sallyport";
const NOW: u64 = 1_700_000_000;

fn es(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::Es256, kid).unwrap()
}

fn ed(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::EdDsa, kid).unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISS, "sub": "user-1", "aud": AUD, "exp": NOW + 900, "iat": NOW,
        "jti": "j1", "sid": "s1", "name": "Alice", "roles": ["admin"]
    })
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Builds a token with an arbitrary header and claims, signed by `key`.
fn forge(header: Value, claims: &Value, key: &SigningKey) -> String {
    let input = format!("{}.{}", b64(&header), b64(claims));
    let sig = key.sign_bytes(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "typ": "at+jwt", "kid": kid})
}

fn static_verifier(keys: &[&SigningKey]) -> Verifier {
    Verifier::from_jwks(
        jwk_set(keys.iter().copied()),
        VerifierConfig::new("", ISS, AUD),
    )
}

async fn jwks_server(jwks: &JwkSet) -> MockServer {
    let server = MockServer::start().await;
    mount_jwks(&server, jwks).await;
    server
}

async fn mount_jwks(server: &MockServer, jwks: &JwkSet) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
        .mount(server)
        .await;
}

async fn jwks_requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

fn remote_verifier(server: &MockServer, interval: Duration) -> Verifier {
    Verifier::new(
        VerifierConfig::new(format!("{}/jwks", server.uri()), ISS, AUD).refetch_interval(interval),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------
// Accepting good tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn accepts_es256_and_eddsa_tokens_from_the_jwks() {
    let (k1, k2) = (es("k1"), ed("k2"));
    let server = jwks_server(&jwk_set([&k1, &k2])).await;
    let v = remote_verifier(&server, Duration::from_secs(60));
    for key in [&k1, &k2] {
        let token = key.sign(&claims()).unwrap();
        let c = v.verify_at(&token, NOW).await.unwrap();
        assert_eq!(c.sub, "user-1");
        assert_eq!(c.sid, "s1");
        assert_eq!(c.roles, vec!["admin".to_owned()]);
    }
    assert_eq!(v.fetch_count(), 1, "keys are cached");
}

#[tokio::test]
async fn signing_key_sets_at_jwt_header_and_kid() {
    let k = es("kid-7");
    let token = k.sign(&claims()).unwrap();
    let header_part = token.split('.').next().unwrap();
    let h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_part).unwrap()).unwrap();
    assert_eq!(h, json!({"alg": "ES256", "typ": "at+jwt", "kid": "kid-7"}));
}

#[tokio::test]
async fn claims_round_trip_through_sign() {
    let k = ed("k");
    let c = AccessClaims {
        iss: ISS.into(),
        sub: "u".into(),
        aud: vec![AUD.into(), "other".into()],
        exp: NOW + 10,
        iat: NOW,
        jti: "j".into(),
        sid: "s".into(),
        name: None,
        roles: vec![],
        ..AccessClaims::default()
    };
    let got = static_verifier(&[&k])
        .verify_at(&k.sign(&c).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(got, c);
}

// ---------------------------------------------------------------------------
// Algorithm attacks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rejects_alg_none() {
    let k = es("k1");
    let v = static_verifier(&[&k]);
    for alg in ["none", "None", "NONE", ""] {
        let token = format!("{}.{}.", b64(&header(alg, "k1")), b64(&claims()));
        let err = v.verify_at(&token, NOW).await.unwrap_err();
        assert!(
            matches!(err, Error::AlgorithmNotAllowed(_)),
            "{alg}: {err:?}"
        );
        // Even with a (bogus) signature part.
        let token = format!("{token}AAAA");
        assert!(v.verify_at(&token, NOW).await.is_err());
    }
}

#[tokio::test]
async fn rejects_hs256_signed_with_the_public_key() {
    // The classic confusion attack: HMAC over the token using the public key
    // (in any encoding the verifier might hold) as the secret.
    let k = es("k1");
    let v = static_verifier(&[&k]);
    let jwk_json = serde_json::to_vec(&k.public_jwk()).unwrap();
    let jwk_value = serde_json::to_value(k.public_jwk()).unwrap();
    let x = URL_SAFE_NO_PAD
        .decode(jwk_value["x"].as_str().unwrap())
        .unwrap();
    let y = URL_SAFE_NO_PAD
        .decode(jwk_value["y"].as_str().unwrap())
        .unwrap();
    let mut point = vec![4u8];
    point.extend(&x);
    point.extend(&y);
    for alg in ["HS256", "HS384", "HS512"] {
        for secret in [&jwk_json[..], &point[..]] {
            let input = format!("{}.{}", b64(&header(alg, "k1")), b64(&claims()));
            let hkey = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            let tag = aws_lc_rs::hmac::sign(&hkey, input.as_bytes());
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
            let err = v.verify_at(&token, NOW).await.unwrap_err();
            assert!(matches!(err, Error::AlgorithmNotAllowed(_)), "{err:?}");
        }
    }
}

#[tokio::test]
async fn rejects_other_asymmetric_algorithms() {
    let k = es("k1");
    let v = static_verifier(&[&k]);
    for alg in ["RS256", "PS256", "ES384", "ES512", "Ed25519"] {
        let token = forge(header(alg, "k1"), &claims(), &k);
        let err = v.verify_at(&token, NOW).await.unwrap_err();
        assert!(
            matches!(err, Error::AlgorithmNotAllowed(_)),
            "{alg}: {err:?}"
        );
    }
}

#[tokio::test]
async fn rejects_algorithm_not_in_the_pinned_list() {
    let k = ed("k1");
    let v = Verifier::from_jwks(
        jwk_set([&k]),
        VerifierConfig::new("", ISS, AUD).algorithms([Algorithm::Es256]),
    );
    let err = v
        .verify_at(&k.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlgorithmNotAllowed(a) if a == "EdDSA"));
}

#[tokio::test]
async fn rejects_alg_that_does_not_match_the_key() {
    // Header says ES256 but names the Ed25519 key (and vice versa): the key
    // decides the algorithm, not the token.
    let (e, d) = (es("ec"), ed("ed"));
    let v = static_verifier(&[&e, &d]);
    let t1 = forge(header("ES256", "ed"), &claims(), &e);
    let t2 = forge(header("EdDSA", "ec"), &claims(), &d);
    for t in [t1, t2] {
        let err = v.verify_at(&t, NOW).await.unwrap_err();
        assert!(matches!(err, Error::KeyAlgorithmMismatch { .. }), "{err:?}");
    }
}

// ---------------------------------------------------------------------------
// Key attacks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rejects_token_signed_by_a_key_not_in_the_jwks() {
    let good = es("k1");
    let attacker = es("k1"); // same kid, different key
    let v = static_verifier(&[&good]);
    let err = v
        .verify_at(&attacker.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSignature), "{err:?}");

    let stranger = es("k-unknown");
    let err = v
        .verify_at(&stranger.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownKey(Some(ref k)) if k == "k-unknown"),
        "{err:?}"
    );
}

#[tokio::test]
async fn ignores_keys_embedded_in_the_header() {
    // `jwk` / `jku` / `x5u` headers pointing at the attacker's key are ignored.
    let good = es("k1");
    let attacker = es("evil");
    let v = static_verifier(&[&good]);
    let mut h = header("ES256", "evil");
    h["jwk"] = serde_json::to_value(attacker.public_jwk()).unwrap();
    h["jku"] = json!("http://attacker.test/jwks");
    h["x5u"] = json!("http://attacker.test/cert");
    let err = v
        .verify_at(&forge(h.clone(), &claims(), &attacker), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownKey(_)), "{err:?}");
    // Same with the good kid: the signature does not match the JWKS key.
    h["kid"] = json!("k1");
    let err = v
        .verify_at(&forge(h, &claims(), &attacker), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSignature), "{err:?}");
}

#[tokio::test]
async fn rejects_tampered_payload_and_signature() {
    let k = es("k1");
    let v = static_verifier(&[&k]);
    let token = k.sign(&claims()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut admin = claims();
    admin["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&admin), parts[2]);
    assert!(matches!(
        v.verify_at(&tampered, NOW).await.unwrap_err(),
        Error::InvalidSignature
    ));
    // Signature of the right length but wrong bytes.
    let zero = URL_SAFE_NO_PAD.encode([0u8; 64]);
    let bad_sig = format!("{}.{}.{zero}", parts[0], parts[1]);
    assert!(matches!(
        v.verify_at(&bad_sig, NOW).await.unwrap_err(),
        Error::InvalidSignature
    ));
    let no_sig = format!("{}.{}.", parts[0], parts[1]);
    assert!(matches!(
        v.verify_at(&no_sig, NOW).await.unwrap_err(),
        Error::InvalidSignature
    ));
}

/// Every string that decodes to the same bytes as `segment` but differs in the
/// unused low bits of its last character (empty when it has none).
fn non_canonical_variants(segment: &str) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mask: usize = match segment.len() % 4 {
        2 => 0b1111,
        3 => 0b11,
        _ => return Vec::new(),
    };
    let (head, last) = segment.split_at(segment.len() - 1);
    let idx = ALPHABET
        .iter()
        .position(|&c| c == last.as_bytes()[0])
        .unwrap();
    (1..=mask)
        .map(|t| format!("{head}{}", ALPHABET[(idx & !mask) | t] as char))
        .collect()
}

#[tokio::test]
async fn rejects_non_canonical_base64url_in_every_segment() {
    for key in [es("k1"), ed("k2")] {
        let v = static_verifier(&[&key]);
        let alg = key.algorithm().as_str();
        // Pad header and payload until both end in a partial base64 group, so each
        // segment has trailing bits to tamper with (64-byte signatures always do).
        let mut h = header(alg, key.kid());
        let mut c = claims();
        let mut pad = String::new();
        while b64(&h).len() % 4 < 2 {
            pad.push('x');
            h["x"] = json!(pad);
        }
        pad.clear();
        while b64(&c).len() % 4 < 2 {
            pad.push('x');
            c["x"] = json!(pad);
        }
        let token = forge(h, &c, &key);
        v.verify_at(&token, NOW).await.unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        for i in 0..3 {
            let variants = non_canonical_variants(parts[i]);
            assert!(!variants.is_empty(), "{alg} segment {i} has trailing bits");
            for variant in variants {
                let mut altered = parts.clone();
                altered[i] = &variant;
                let altered = altered.join(".");
                assert!(
                    matches!(
                        v.verify_at(&altered, NOW).await.unwrap_err(),
                        Error::Malformed(_)
                    ),
                    "{alg}: non-canonical segment {i} accepted"
                );
                if i == 1 {
                    assert!(sallyport_jwt::decode_unverified(&altered).is_err());
                    assert!(sallyport_jwt::expires_at(&altered).is_err());
                }
            }
        }
        // The original still verifies (from the cache of verified tokens, which the
        // altered spellings must not have matched).
        v.verify_at(&token, NOW).await.unwrap();
    }
}

#[tokio::test]
async fn token_without_kid_needs_an_unambiguous_jwks() {
    let (a, b) = (es("a"), es("b"));
    let no_kid = json!({"alg": "ES256", "typ": "at+jwt"});
    let one = static_verifier(&[&a]);
    one.verify_at(&forge(no_kid.clone(), &claims(), &a), NOW)
        .await
        .unwrap();
    let two = static_verifier(&[&a, &b]);
    let err = two
        .verify_at(&forge(no_kid, &claims(), &a), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownKey(None)), "{err:?}");
}

// ---------------------------------------------------------------------------
// Header checks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rejects_wrong_or_missing_typ() {
    let k = es("k1");
    let v = static_verifier(&[&k]);
    for typ in [json!("JWT"), json!("id_token+jwt"), Value::Null] {
        let mut h = header("ES256", "k1");
        if typ.is_null() {
            h.as_object_mut().unwrap().remove("typ");
        } else {
            h["typ"] = typ;
        }
        let err = v
            .verify_at(&forge(h, &claims(), &k), NOW)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WrongType(_)), "{err:?}");
    }
    // RFC 9068 also allows the full media type, case-insensitively.
    let mut h = header("ES256", "k1");
    h["typ"] = json!("Application/AT+JWT");
    v.verify_at(&forge(h, &claims(), &k), NOW).await.unwrap();
    // Opting out of the check.
    let lax = Verifier::from_jwks(
        jwk_set([&k]),
        VerifierConfig::new("", ISS, AUD).accepted_types(Vec::<String>::new()),
    );
    let mut h = header("ES256", "k1");
    h["typ"] = json!("JWT");
    lax.verify_at(&forge(h, &claims(), &k), NOW).await.unwrap();
}

#[tokio::test]
async fn rejects_unknown_critical_headers() {
    let k = es("k1");
    let v = static_verifier(&[&k]);
    let mut h = header("ES256", "k1");
    h["crit"] = json!(["exp-extension"]);
    h["exp-extension"] = json!(true);
    let err = v
        .verify_at(&forge(h, &claims(), &k), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedCritical), "{err:?}");
}

#[tokio::test]
async fn rejects_malformed_tokens() {
    let k = es("k1");
    let v = static_verifier(&[&k]);
    let good = k.sign(&claims()).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        String::new(),
        "abc".into(),
        "a.b".into(),
        format!("{good}.extra.parts"), // JWE-like, five parts
        format!("!!.{}.{}", parts[1], parts[2]),
        format!("{}.{}.%%%", parts[0], parts[1]),
        format!("{}.{}.{}", b64(&json!([1, 2])), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("not json"),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode("not json"),
            parts[2]
        ),
        "\u{0}.\u{0}.\u{0}".into(),
    ];
    for t in cases {
        let err = v.verify_at(&t, NOW).await.unwrap_err();
        assert!(err.is_invalid_token(), "{t:?}: {err:?}");
    }
}

// ---------------------------------------------------------------------------
// Claim checks
// ---------------------------------------------------------------------------

async fn claim_error(mutate: impl FnOnce(&mut Value), now: u64) -> Error {
    let k = es("k1");
    let mut c = claims();
    mutate(&mut c);
    static_verifier(&[&k])
        .verify_at(&k.sign(&c).unwrap(), now)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn rejects_missing_exp() {
    let e = claim_error(|c| drop(c.as_object_mut().unwrap().remove("exp")), NOW).await;
    assert!(matches!(e, Error::MissingClaim("exp")), "{e:?}");
    let e = claim_error(|c| c["exp"] = json!("tomorrow"), NOW).await;
    assert!(matches!(e, Error::InvalidClaims(_)), "{e:?}");
}

#[tokio::test]
async fn rejects_expired_tokens_beyond_the_leeway() {
    let k = es("k1");
    let v = static_verifier(&[&k]); // leeway 30 s
    let token = k.sign(&claims()).unwrap();
    let exp = NOW + 900;
    v.verify_at(&token, exp - 1).await.unwrap();
    v.verify_at(&token, exp + 29).await.unwrap();
    assert!(matches!(
        v.verify_at(&token, exp + 30).await.unwrap_err(),
        Error::Expired
    ));
    let strict = Verifier::from_jwks(
        jwk_set([&k]),
        VerifierConfig::new("", ISS, AUD).leeway(Duration::ZERO),
    );
    assert!(matches!(
        strict.verify_at(&token, exp).await.unwrap_err(),
        Error::Expired
    ));
}

#[tokio::test]
async fn rejects_not_yet_valid_tokens() {
    let e = claim_error(|c| c["nbf"] = json!(NOW + 600), NOW).await;
    assert!(matches!(e, Error::NotYetValid), "{e:?}");
}

#[tokio::test]
async fn does_not_reject_iat_in_the_near_future() {
    // Clock skew between issuer and verifier must not cause loops (PP-13).
    let k = es("k1");
    let mut c = claims();
    c["iat"] = json!(NOW + 20);
    static_verifier(&[&k])
        .verify_at(&k.sign(&c).unwrap(), NOW)
        .await
        .unwrap();
}

#[tokio::test]
async fn rejects_wrong_or_missing_issuer() {
    let e = claim_error(|c| c["iss"] = json!("http://evil.test"), NOW).await;
    assert!(matches!(e, Error::WrongIssuer), "{e:?}");
    let e = claim_error(|c| c["iss"] = json!(format!("{ISS}/")), NOW).await;
    assert!(matches!(e, Error::WrongIssuer), "{e:?}");
    let e = claim_error(|c| drop(c.as_object_mut().unwrap().remove("iss")), NOW).await;
    assert!(matches!(e, Error::MissingClaim("iss")), "{e:?}");
}

#[tokio::test]
async fn rejects_wrong_or_missing_audience() {
    let e = claim_error(|c| c["aud"] = json!("other-api"), NOW).await;
    assert!(matches!(e, Error::WrongAudience), "{e:?}");
    let e = claim_error(|c| c["aud"] = json!(["a", "b"]), NOW).await;
    assert!(matches!(e, Error::WrongAudience), "{e:?}");
    let e = claim_error(|c| drop(c.as_object_mut().unwrap().remove("aud")), NOW).await;
    assert!(matches!(e, Error::MissingClaim("aud")), "{e:?}");
    // An array that contains ours is fine.
    let k = es("k1");
    let mut c = claims();
    c["aud"] = json!(["x", AUD]);
    static_verifier(&[&k])
        .verify_at(&k.sign(&c).unwrap(), NOW)
        .await
        .unwrap();
}

#[tokio::test]
async fn rejects_missing_subject() {
    let e = claim_error(|c| drop(c.as_object_mut().unwrap().remove("sub")), NOW).await;
    assert!(matches!(e, Error::MissingClaim("sub")), "{e:?}");
}

#[tokio::test]
async fn empty_configured_issuer_never_matches() {
    // A misconfigured verifier (empty issuer) must not accept tokens that
    // simply omit `iss`.
    let k = es("k1");
    let v = Verifier::from_jwks(jwk_set([&k]), VerifierConfig::new("", "", AUD));
    let mut c = claims();
    c["iss"] = json!("");
    assert!(v.verify_at(&k.sign(&c).unwrap(), NOW).await.is_err());
    assert!(v.verify_at(&k.sign(&claims()).unwrap(), NOW).await.is_err());
}

#[test]
fn new_names_the_bad_setting() {
    let msg = |cfg| Verifier::new(cfg).unwrap_err().to_string();
    assert!(msg(VerifierConfig::new("http://x/jwks", "", AUD)).contains("issuer"));
    assert!(msg(VerifierConfig::new("http://x/jwks", ISS, "")).contains("audience"));
    assert!(msg(VerifierConfig::new("not a url", ISS, AUD)).contains("jwks_url"));
    assert!(msg(VerifierConfig::new("file:///etc/passwd", ISS, AUD)).contains("jwks_url"));
    assert!(
        msg(VerifierConfig::new("http://x/jwks", ISS, AUD).algorithms(Vec::new()))
            .contains("algorithms")
    );
}

// ---------------------------------------------------------------------------
// JWKS cache
// ---------------------------------------------------------------------------

#[tokio::test]
async fn refetches_on_unknown_kid_after_rotation() {
    let (old, new) = (es("old"), es("new"));
    let server = jwks_server(&jwk_set([&old])).await;
    let v = remote_verifier(&server, Duration::ZERO);
    v.verify_at(&old.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(jwks_requests(&server).await, 1);

    // The issuer rotates: the JWKS now has both keys.
    mount_jwks(&server, &jwk_set([&old, &new])).await;
    v.verify_at(&new.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(jwks_requests(&server).await, 1, "one refetch after reset");
    // Old tokens still verify from the cache, without fetching.
    v.verify_at(&old.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(jwks_requests(&server).await, 1);
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() {
    let good = es("k1");
    let server = jwks_server(&jwk_set([&good])).await;
    let v = remote_verifier(&server, Duration::from_secs(3600));
    v.verify_at(&good.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap();
    assert_eq!(v.fetch_count(), 1);
    // An attacker sprays random kids: no more fetches within the interval.
    for i in 0..25 {
        let forged = es(&format!("spray-{i}")).sign(&claims()).unwrap();
        let err = v.verify_at(&forged, NOW).await.unwrap_err();
        assert!(matches!(err, Error::UnknownKey(_)), "{err:?}");
    }
    assert_eq!(v.fetch_count(), 1);
    assert_eq!(jwks_requests(&server).await, 1);
}

#[tokio::test]
async fn concurrent_cold_verifications_share_one_fetch() {
    let k = es("k1");
    let server = jwks_server(&jwk_set([&k])).await;
    let v = remote_verifier(&server, Duration::from_secs(60));
    let token = Arc::new(k.sign(&claims()).unwrap());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (v, token) = (v.clone(), Arc::clone(&token));
            tokio::spawn(async move { v.verify_at(&token, NOW).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(jwks_requests(&server).await, 1);
}

#[tokio::test]
async fn jwks_outage_is_unavailable_not_invalid() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let v = remote_verifier(&server, Duration::ZERO);
    let err = v
        .verify_at(&es("k1").sign(&claims()).unwrap(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::JwksUnavailable(_)), "{err:?}");
    assert!(!err.is_invalid_token());
    // Requests inside the retry gap are also "cannot judge", not "bad token".
    let slow = Verifier::new(
        VerifierConfig::new(format!("{}/jwks", server.uri()), ISS, AUD)
            .refetch_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    for _ in 0..3 {
        let err = slow
            .verify_at(&es("k1").sign(&claims()).unwrap(), NOW)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::JwksUnavailable(_)), "{err:?}");
    }
    assert_eq!(slow.fetch_count(), 1);
}

#[tokio::test]
async fn failed_refresh_keeps_cached_keys() {
    let k = es("k1");
    let server = jwks_server(&jwk_set([&k])).await;
    let v = Verifier::new(
        VerifierConfig::new(format!("{}/jwks", server.uri()), ISS, AUD)
            .refetch_interval(Duration::ZERO)
            .cache_ttl(Duration::ZERO), // always stale: every verify refetches
    )
    .unwrap();
    let token = k.sign(&claims()).unwrap();
    v.verify_at(&token, NOW).await.unwrap();
    server.reset().await; // JWKS now 404s
    v.verify_at(&token, NOW).await.unwrap();
    assert!(v.fetch_count() >= 2);
}

#[tokio::test]
async fn jwks_with_foreign_keys_still_yields_ours() {
    let k = es("k1");
    let mut jwks = serde_json::to_value(jwk_set([&k])).unwrap();
    jwks["keys"].as_array_mut().unwrap().extend([
        json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "hmac"}),
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa", "alg": "RS256"}),
        json!({"kty": "weird", "kid": "w"}),
        json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "short"}),
    ]);
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
        .mount(&server)
        .await;
    let v = remote_verifier(&server, Duration::from_secs(60));
    v.verify_at(&k.sign(&claims()).unwrap(), NOW).await.unwrap();
    // The HMAC key published in the JWKS cannot be used.
    let input = format!("{}.{}", b64(&header("HS256", "hmac")), b64(&claims()));
    let hkey = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"secret");
    let tag = aws_lc_rs::hmac::sign(&hkey, input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert!(v.verify_at(&token, NOW).await.is_err());
}

#[tokio::test]
async fn set_jwks_replaces_static_keys() {
    let (a, b) = (es("a"), es("b"));
    let v = static_verifier(&[&a]);
    let tb = b.sign(&claims()).unwrap();
    assert!(v.verify_at(&tb, NOW).await.is_err());
    v.set_jwks(&jwk_set([&a, &b]));
    v.verify_at(&tb, NOW).await.unwrap();
}

#[tokio::test]
async fn stale_cache_refreshes_in_the_background_and_drops_retired_keys() {
    let (old, new) = (es("old"), es("new"));
    let server = jwks_server(&jwk_set([&old, &new])).await;
    let v = Verifier::new(
        VerifierConfig::new(format!("{}/jwks", server.uri()), ISS, AUD)
            .refetch_interval(Duration::ZERO)
            .cache_ttl(Duration::ZERO),
    )
    .unwrap();
    let old_token = old.sign(&claims()).unwrap();
    v.verify_at(&old_token, NOW).await.unwrap();
    // The issuer retires `old`: it leaves the JWKS.
    mount_jwks(&server, &jwk_set([&new])).await;
    // The stale cache still answers at once (the refresh runs in the background)…
    v.verify_at(&old_token, NOW).await.unwrap();
    // …and once it has run, the retired key is gone.
    let mut refused = false;
    for _ in 0..500 {
        if matches!(
            v.verify_at(&old_token, NOW).await,
            Err(Error::UnknownKey(_))
        ) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "retired key still accepted");
    v.verify_at(&new.sign(&claims()).unwrap(), NOW)
        .await
        .unwrap();
}

#[tokio::test]
async fn remembered_tokens_are_rechecked_and_forgotten_when_keys_change() {
    let (a, b) = (es("a"), es("b"));
    let v = static_verifier(&[&a]);
    let token = a.sign(&claims()).unwrap();
    v.verify_at(&token, NOW).await.unwrap();
    v.verify_at(&token, NOW).await.unwrap(); // served from the cache
    // Time-based checks still apply to a remembered token.
    assert!(matches!(
        v.verify_at(&token, NOW + 3600).await.unwrap_err(),
        Error::Expired
    ));
    // The key is withdrawn: the remembered verification no longer counts.
    v.set_jwks(&jwk_set([&b]));
    assert!(matches!(
        v.verify_at(&token, NOW).await.unwrap_err(),
        Error::UnknownKey(_)
    ));
    // A token differing in one signature bit is not a cache hit.
    v.set_jwks(&jwk_set([&a]));
    v.verify_at(&token, NOW).await.unwrap();
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(v.verify_at(&forged, NOW).await.is_err());
}
