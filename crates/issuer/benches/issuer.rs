//! Criterion benchmarks: access-token signing (ES256, EdDSA), access-token verification
//! the way `/api/me` does it (`sallyport-jwt`'s verifier built by
//! `sallyport_issuer::access_token_verifier`: first sight of a token, and the same token
//! again from its cache) and one refresh rotation (the whole transaction on SQLite,
//! in-process, no HTTP).
//!
//! `cargo bench -p sallyport-issuer --bench issuer`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sallyport_issuer::config::SigningAlgorithm;
use sallyport_issuer::keys::{self, KeyRing};

use sallyport_issuer::store::{SessionRecord, UserRecord};
use sallyport_issuer::{Config, Issuer, RequestContext};

fn user() -> UserRecord {
    UserRecord {
        id: "0190f0c2-7a1e-7000-8000-000000000001".into(),
        username: "alice".into(),
        name: Some("Alice".into()),
        roles: r#"["user"]"#.into(),
        password_hash: String::new(),
        disabled_at: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn session() -> SessionRecord {
    SessionRecord {
        id: "0190f0c2-7a1e-7000-8000-000000000002".into(),
        user_id: user().id,
        created_at: 0,
        last_used_at: 0,
        expires_at: i64::MAX,
        revoked_at: None,
        revoked_reason: None,
        generation: 1,
        user_agent: None,
        client_addr: None,
    }
}

fn signing(c: &mut Criterion) {
    let now = 1_800_000_000_000;
    for alg in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
        let Ok(record) = keys::generate(alg, now) else {
            return;
        };
        let Ok(ring) = KeyRing::from_records(&[record], now, 0) else {
            return;
        };
        let claims = keys::claims_for(
            &user(),
            &session(),
            "http://issuer",
            "sallyport",
            now,
            900_000,
        );
        c.bench_function(&format!("sign_access_token_{}", alg.as_str()), |b| {
            b.iter(|| black_box(ring.sign(black_box(&claims))))
        });
        let Ok(token) = ring.sign(&claims) else {
            return;
        };
        // Exactly the server's verifier: same constructor, same settings.
        let Ok(settings) = (Config {
            issuer: "http://issuer".into(),
            ..Config::default()
        })
        .validate() else {
            return;
        };
        let verifier = sallyport_issuer::access_token_verifier(&settings, ring.jwks().clone());
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
            return;
        };
        let now_s = u64::try_from(now / 1000).unwrap_or(0);
        // A fresh token each time: the full check (header, key by kid, signature, claims).
        c.bench_function(&format!("verify_access_token_{}", alg.as_str()), |b| {
            b.iter_batched(
                || {
                    let mut fresh = claims.clone();
                    fresh.jti = uuid::Uuid::new_v4().to_string();
                    ring.sign(&fresh).unwrap_or_default()
                },
                |t| {
                    black_box(
                        rt.block_on(verifier.verify_at(black_box(&t), now_s))
                            .is_ok(),
                    )
                },
                criterion::BatchSize::SmallInput,
            )
        });
        // The same token again (a client polling /api/me): the verifier's cache.
        c.bench_function(
            &format!("verify_access_token_cached_{}", alg.as_str()),
            |b| {
                b.iter(|| {
                    black_box(
                        rt.block_on(verifier.verify_at(black_box(&token), now_s))
                            .is_ok(),
                    )
                })
            },
        );
    }
}

fn rotation(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let mut config = Config {
        database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..Config::default()
    };
    config.argon2.memory_kib = 256;
    config.argon2.iterations = 1;
    let setup = async {
        let issuer = Issuer::open(config).await?;
        issuer
            .admin()
            .add_user("alice", "alice-password", None, &[])
            .await?;
        let t = issuer
            .login("alice", "alice-password", &RequestContext::default())
            .await
            .map_err(|e| sallyport_issuer::Error::Task(e.to_string()))?;
        Ok::<_, sallyport_issuer::Error>((issuer, t.refresh_token))
    };
    let Ok((issuer, mut token)) = rt.block_on(setup) else {
        return;
    };
    let ctx = RequestContext::default();
    c.bench_function("refresh_rotation_sqlite", |b| {
        b.iter(|| {
            if let Ok(t) = rt.block_on(issuer.refresh(&token, &ctx)) {
                token = t.refresh_token;
            }
        })
    });
}

criterion_group!(benches, signing, rotation);
criterion_main!(benches);
