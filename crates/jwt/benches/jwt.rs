//! ES256 / EdDSA signing and verification, and the per-request `expires_at`.
//!
//! Run: `cargo bench -p sallyport-jwt --bench jwt`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sallyport_jwt::{
    AccessClaims, Algorithm, SigningKey, Verifier, VerifierConfig, decode_unverified, expires_at,
    jwk_set,
};

const NOW: u64 = 1_700_000_000;

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "0192f1d2-7c4e-7a51-9d2b-5f8e3a9c1b22".into(),
        aud: vec!["sallyport".into()],
        exp: NOW + 900,
        iat: NOW,
        jti: "0192f1d2-7c4e-7a51-9d2b-5f8e3a9c1b23".into(),
        sid: "0192f1d2-7c4e-7a51-9d2b-5f8e3a9c1b24".into(),
        name: Some("Alice Liddell".into()),
        roles: vec!["user".into(), "admin".into()],
        ..AccessClaims::default()
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for alg in [Algorithm::Es256, Algorithm::EdDsa] {
        let key = SigningKey::generate(alg, "bench-key").expect("key");
        let claims = claims();
        let token = key.sign(&claims).expect("sign");
        let mut cfg = VerifierConfig::new("", "http://127.0.0.1:8080", "sallyport");
        let cached = Verifier::from_jwks(jwk_set([&key]), cfg.clone());
        cfg.verified_cache_capacity = 0; // measure the full verification
        let verifier = Verifier::from_jwks(jwk_set([&key]), cfg);
        c.bench_function(&format!("sign/{alg}"), |b| {
            b.iter(|| key.sign(black_box(&claims)).expect("sign"))
        });
        c.bench_function(&format!("verify/{alg}"), |b| {
            b.iter(|| {
                runtime
                    .block_on(verifier.verify_at(black_box(&token), NOW))
                    .expect("verify")
            })
        });
        c.bench_function(&format!("verify_cached/{alg}"), |b| {
            b.iter(|| {
                runtime
                    .block_on(cached.verify_at(black_box(&token), NOW))
                    .expect("verify")
            })
        });
        if alg == Algorithm::Es256 {
            c.bench_function("expires_at", |b| {
                b.iter(|| expires_at(black_box(&token)).expect("exp"))
            });
            c.bench_function("decode_unverified", |b| {
                b.iter(|| decode_unverified(black_box(&token)).expect("decode"))
            });
        }
    }
}

/// The bare aws-lc-rs P-256 verification, to tell the crypto cost from ours.
fn bench_raw(c: &mut Criterion) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
        ParsedPublicKey,
    };
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
    let public =
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref()).expect("pk");
    let msg = [7u8; 300];
    let sig = pair.sign(&SystemRandom::new(), &msg).expect("sign");
    c.bench_function("raw-aws-lc/verify/ES256", |b| {
        b.iter(|| {
            public
                .verify_sig(black_box(&msg), sig.as_ref())
                .expect("ok")
        })
    });
}

criterion_group!(benches, bench, bench_raw);
criterion_main!(benches);
