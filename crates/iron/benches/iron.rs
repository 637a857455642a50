//! Seal and unseal of the article's session shape: `{isLoggedIn, accessToken,
//! refreshToken}` with two realistic JWTs, 610 bytes of JSON (a 1054-character seal).
//!
//! `cargo bench -p sallyport-iron --bench iron`; `scripts/bench/iron/run.sh` runs this
//! next to the npm packages and prints the ratios.

#![allow(clippy::unwrap_used)] // bench setup

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sallyport_iron::{Passwords, seal, seal_value, unseal, unseal_value};
use serde::{Deserialize, Serialize};

const PASSWORD: &str = "iron-session-vector-password-A-0123456789";
const NOW: u64 = 1_767_225_600_000;
const ACCESS: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20vIiwic3ViIjoidXNlcl8wMUhaWDRSN00yIiwiYXVkIjoiYXBpIiwiaWF0IjoxNzY3MjI1NjAwLCJleHAiOjE3NjcyMjY1MDAsInNjb3BlIjoib3BlbmlkIHByb2ZpbGUgZW1haWwiLCJlbWFpbCI6ImFkYS5sb3ZlbGFjZUBleGFtcGxlLmNvbSIsImF6cCI6IndlYi1hcHAtcHJvZCJ9.dVAf6dLUfpyauNrX5sWzogT-bMoOhZYodR69ENgPZUg";
const REFRESH: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyXzAxSFpYNFI3TTIiLCJzaWQiOiI1ZjJiOWMxZS03YTQzLTRkOGUtOWI2MS0wYzNlMmYxYTlkNDciLCJ0eXAiOiJyZWZyZXNoIiwiZXhwIjoxNzY4NDM1MjAwfQ.lR6_Km1uyu1eD1vssG0QKMxOTUSAzE444aEwxguA44k";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionData {
    is_logged_in: bool,
    access_token: String,
    refresh_token: String,
}

fn bench(c: &mut Criterion) {
    let passwords = Passwords::single(PASSWORD).unwrap();
    let session = SessionData {
        is_logged_in: true,
        access_token: ACCESS.to_owned(),
        refresh_token: REFRESH.to_owned(),
    };
    let json = serde_json::to_string(&session).unwrap();
    assert_eq!(json.len(), 610);
    let sealed = seal(&json, &passwords, 1_209_600, NOW).unwrap();
    assert_eq!(sealed.len(), 1054);

    let mut group = c.benchmark_group("iron");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal_json_610B", |b| {
        b.iter(|| seal(black_box(&json), &passwords, 1_209_600, NOW).unwrap())
    });
    group.bench_function("seal_value_610B", |b| {
        b.iter(|| seal_value(black_box(&session), &passwords, 1_209_600, NOW).unwrap())
    });
    group.bench_function("unseal_json_610B", |b| {
        b.iter(|| unseal(black_box(&sealed), &passwords, NOW).unwrap())
    });
    group.bench_function("unseal_value_610B", |b| {
        b.iter(|| unseal_value::<SessionData>(black_box(&sealed), &passwords, NOW).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
