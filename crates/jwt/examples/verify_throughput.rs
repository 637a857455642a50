//! Verifications per CPU-second of one thread, on a shared machine.
//!
//! Criterion reports wall time, which on a busy build machine includes the
//! time the thread waited for a core. This counts the thread's own CPU time
//! (Linux: `/proc/thread-self/stat`, utime + stime in clock ticks), so the
//! figure is "per core" even while other jobs run.
//!
//! Run: `cargo run --release -p sallyport-jwt --example verify_throughput`

use std::time::{Duration, Instant};

use sallyport_jwt::{AccessClaims, Algorithm, SigningKey, Verifier, VerifierConfig, jwk_set};

/// CPU time of the calling thread, in clock ticks (usually 1/100 s).
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, i.e. the 12th and 13th after ")".
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let now = 1_700_000_000;
    for alg in [Algorithm::Es256, Algorithm::EdDsa] {
        let key = SigningKey::generate(alg, "k")?;
        let claims = AccessClaims {
            iss: "http://127.0.0.1:8300".into(),
            sub: "user".into(),
            aud: vec!["sallyport".into()],
            exp: now + 900,
            iat: now,
            jti: "j".into(),
            sid: "s".into(),
            name: Some("Alice".into()),
            roles: vec!["user".into()],
            ..AccessClaims::default()
        };
        let token = key.sign(&claims)?;
        let mut cfg = VerifierConfig::new("", "http://127.0.0.1:8300", "sallyport");
        cfg.verified_cache_capacity = 0; // every call does the full ECDSA/Ed25519 check
        let verifier = Verifier::from_jwks(jwk_set([&key]), cfg);
        let (verify_n, sign_n) = runtime.block_on(async {
            let start_cpu = thread_cpu_ticks().ok_or("no /proc/thread-self/stat")?;
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(4) {
                verifier.verify_at(&token, now).await?;
                n += 1;
            }
            let verify_ticks = thread_cpu_ticks().ok_or("stat")? - start_cpu;
            let start_cpu = thread_cpu_ticks().ok_or("stat")?;
            let start = Instant::now();
            let mut s = 0u64;
            while start.elapsed() < Duration::from_secs(2) {
                std::hint::black_box(key.sign(std::hint::black_box(&claims))?);
                s += 1;
            }
            let sign_ticks = thread_cpu_ticks().ok_or("stat")? - start_cpu;
            Ok::<_, Box<dyn std::error::Error>>((
                n as f64 / (verify_ticks.max(1) as f64 / 100.0),
                s as f64 / (sign_ticks.max(1) as f64 / 100.0),
            ))
        })?;
        println!("{alg}: {verify_n:.0} verifications/CPU-s, {sign_n:.0} signatures/CPU-s");
    }
    Ok(())
}
