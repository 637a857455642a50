//! Several gateway replicas behind a round-robin load balancer, sharing one Redis, in
//! front of a backend that revokes a refresh-token family on reuse: a storm of requests
//! on one expired session makes exactly one refresh call; and under faults (Redis
//! stopped or killed, a replica killed mid-renewal, a slow backend) nobody is logged out.
//!
//! Each replica runs on its own Tokio runtime, so "killing" one (shutting its runtime
//! down) ends every task it had, its renewal in flight included, as a process death
//! would; its sockets close and its Redis lock is left behind.
//!
//! Redis: `SALLYPORT_TEST_REDIS_URL` (required under `CI=true`); the fault tests start a
//! `redis-server` of their own on a free loopback port.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sallyport_gateway::{Config, Gateway, OffsetClock};

use crate::harness::{cookie_header, until};
use crate::single_use::{
    self, SingleUse, fresh_connection_client, start_balancer, start_checking_upstream,
    start_single_use,
};

const EXPIRE_MS: i64 = 16 * 60 * 1000;
const STORM: usize = 50;

/// One gateway replica on its own runtime.
struct Replica {
    url: String,
    /// The admin listener (metrics).
    admin: String,
    clock: Arc<OffsetClock>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    fn start(config: Config) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let admin_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        admin_listener.set_nonblocking(true).unwrap();
        let admin = format!("http://{}", admin_listener.local_addr().unwrap());
        let clock = Arc::new(OffsetClock::default());
        let settings = config.validate().unwrap();
        let c = clock.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let admin_listener = tokio::net::TcpListener::from_std(admin_listener).unwrap();
            let gw = Gateway::with_clock(settings, c).await.unwrap();
            let admin_gw = gw.clone();
            tokio::spawn(async move {
                sallyport_gateway::serve_admin_with_shutdown(
                    admin_listener,
                    admin_gw,
                    std::future::pending(),
                )
                .await
                .ok();
            });
            sallyport_gateway::serve_with_shutdown(listener, gw, std::future::pending())
                .await
                .ok();
        });
        Self {
            url,
            admin,
            clock,
            runtime: Some(runtime),
        }
    }

    /// Ends the replica as a crash would: every task dropped, sockets closed.
    fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    async fn metrics(&self) -> String {
        fresh_connection_client()
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn advance(replicas: &[Replica], ms: i64) {
    for r in replicas {
        r.clock.advance_ms(ms);
    }
}

/// Sum of a metric's samples (all label sets) in Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn redis_config(
    b: &SingleUse,
    upstream: &str,
    redis: &str,
    prefix: &str,
    timeout_ms: u64,
) -> Config {
    let mut c = single_use::config(b, upstream);
    c.store.redis_url = Some(redis.to_owned());
    c.store.key_prefix = prefix.to_owned();
    c.store.timeout_ms = timeout_ms;
    c
}

/// [`redis_config`] with `backend.timeout_ms` and a 2 s grace window, which bounds a
/// renewal call (and a dead holder's lock).
fn short_call_config(
    b: &SingleUse,
    upstream: &str,
    redis: &str,
    prefix: &str,
    store_timeout_ms: u64,
    backend_timeout_ms: u64,
) -> Config {
    let mut c = redis_config(b, upstream, redis, prefix, store_timeout_ms);
    c.backend.timeout_ms = backend_timeout_ms;
    c.session.renew_grace_secs = 2;
    c
}

fn prefix() -> String {
    format!("sallyport-test-{}:", uuid::Uuid::new_v4())
}

/// `n` concurrent GETs through `url`, each on a new connection. Returns (status or 0
/// for a transport error, Set-Cookie as a Cookie header, Retry-After).
async fn storm(url: &str, cookie: &str, n: usize) -> Vec<(u16, Option<String>, Option<String>)> {
    let client = fresh_connection_client();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let req = client
                .get(format!("{url}/app"))
                .header("cookie", cookie)
                .header("accept", "application/json")
                .timeout(Duration::from_secs(30));
            tokio::spawn(async move {
                match req.send().await {
                    Ok(r) => (
                        r.status().as_u16(),
                        cookie_header(r.headers()),
                        r.headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                    ),
                    Err(_) => (0, None, None),
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn statuses(results: &[(u16, Option<String>, Option<String>)]) -> Vec<u16> {
    let mut s: Vec<u16> = results.iter().map(|r| r.0).collect();
    s.sort_unstable();
    s.dedup();
    s
}

/// The cookie the storm's responses set (they must all agree on the tokens).
fn last_cookie(results: &[(u16, Option<String>, Option<String>)]) -> String {
    results
        .iter()
        .rev()
        .find_map(|r| r.1.clone())
        .expect("no response set the renewed cookie")
}

async fn get_status(url: &str, cookie: &str) -> u16 {
    fresh_connection_client()
        .get(format!("{url}/app"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Rounds of: log in, expire, storm through the balancer, check, then renew once more
/// with the cookie the storm set.
async fn renew_as_one(replica_count: usize, rounds: usize) {
    let Some(redis) = crate::store::redis_url() else {
        return;
    };
    let b = start_single_use().await;
    // A little backend latency, so that the storm really overlaps the renewal.
    b.delay_ms.store(30, Ordering::SeqCst);
    let up = start_checking_upstream(b.clone()).await;
    let p = prefix();
    let replicas: Vec<Replica> = (0..replica_count)
        .map(|_| Replica::start(redis_config(&b, &up, &redis, &p, 2000)))
        .collect();
    let lb = start_balancer(replicas.iter().map(|r| r.url.clone()).collect()).await;

    for round in 0..rounds {
        let before = b.refreshes.load(Ordering::SeqCst);
        let cookie = single_use::login(&lb).await;
        advance(&replicas, EXPIRE_MS);
        let results = storm(&lb, &cookie, STORM).await;
        assert_eq!(statuses(&results), vec![200], "round {round}: {results:?}");
        assert!(
            results.iter().all(|r| r.1.is_some()),
            "round {round}: every response carries the renewed cookie"
        );
        assert_eq!(
            b.refreshes.load(Ordering::SeqCst) - before,
            1,
            "round {round}: exactly one refresh at the backend"
        );
        let renewed = last_cookie(&results);
        assert_eq!(get_status(&lb, &renewed).await, 200, "round {round}");
        // The cookie holds the newest refresh token: its own renewal is not a reuse.
        advance(&replicas, EXPIRE_MS);
        assert_eq!(get_status(&lb, &renewed).await, 200, "round {round}");
        assert_eq!(b.refreshes.load(Ordering::SeqCst) - before, 2);
        assert_eq!(b.revoked_families(), 0, "round {round}: family revoked");
    }
    assert_eq!(b.reuse_revocations.load(Ordering::SeqCst), 0);
    let mut joined_replica = 0.0;
    for r in &replicas {
        joined_replica += metric_sum(
            &r.metrics().await,
            "sallyport_gateway_renewals_joined_total{via=\"replica\"}",
        );
    }
    assert!(joined_replica > 0.0, "no replica used another's result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_renew_as_one() {
    renew_as_one(2, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_renew_as_one() {
    renew_as_one(3, 20).await;
}

/// A `redis-server` of the test's own, for stopping and killing.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start() -> Option<Self> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut r = Self {
            child: None,
            port,
            dir,
        };
        if !r.spawn() {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is needed under CI for the Redis fault tests");
            }
            eprintln!("skipping: redis-server not found");
            return None;
        }
        Some(r)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return false;
        };
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "kill {sig}");
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

/// Redis stops answering (SIGSTOP) or dies (SIGKILL) while a storm waits on a renewal.
/// The backend here forgives a reuse within 10 s, as Sallyport's issuer does: with Redis
/// gone, replicas cannot know of each other, so each renews once on its own (local
/// single-flight), and only such a backend can take that without logging anyone out.
async fn redis_fault_during_storm(kill: bool) {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let b = start_single_use().await;
    b.reuse_interval_ms.store(10_000, Ordering::SeqCst);
    b.delay_ms.store(300, Ordering::SeqCst);
    let up = start_checking_upstream(b.clone()).await;
    let p = prefix();
    let replicas: Vec<Replica> = (0..2)
        .map(|_| Replica::start(redis_config(&b, &up, &redis.url(), &p, 200)))
        .collect();
    let lb = start_balancer(replicas.iter().map(|r| r.url.clone()).collect()).await;

    let cookie = single_use::login(&lb).await;
    advance(&replicas, EXPIRE_MS);
    let lb2 = lb.clone();
    let c2 = cookie.clone();
    let storming = tokio::spawn(async move { storm(&lb2, &c2, STORM).await });
    until("the renewal reached the backend", async || {
        b.refreshes.load(Ordering::SeqCst) >= 1
    })
    .await;
    if kill {
        redis.kill();
    } else {
        redis.signal("-STOP");
    }
    let results = storming.await.unwrap();
    assert_eq!(statuses(&results), vec![200], "{results:?}");
    let refreshes = b.refreshes.load(Ordering::SeqCst);
    assert!(
        refreshes <= replicas.len(),
        "each replica renews at most once on its own, got {refreshes} refresh calls"
    );
    let renewed = last_cookie(&results);
    assert_eq!(get_status(&lb, &renewed).await, 200);
    assert_eq!(b.revoked_families(), 0);

    // Redis comes back: the replicas use it again without a restart.
    if kill {
        assert!(redis.spawn());
    } else {
        redis.signal("-CONT");
    }
    b.delay_ms.store(30, Ordering::SeqCst);
    let mut recovered = false;
    for _ in 0..10 {
        // Past the back-off (gateway clock) and the token's expiry.
        advance(&replicas, EXPIRE_MS);
        let before = b.refreshes.load(Ordering::SeqCst);
        let fresh = single_use::login(&lb).await;
        advance(&replicas, EXPIRE_MS);
        let results = storm(&lb, &fresh, STORM).await;
        assert_eq!(statuses(&results), vec![200], "{results:?}");
        if b.refreshes.load(Ordering::SeqCst) - before == 1 {
            recovered = true;
            break;
        }
    }
    assert!(
        recovered,
        "cross-replica renewal never came back after Redis did"
    );
    assert_eq!(b.revoked_families(), 0);
    let text = replicas[0].metrics().await + &replicas[1].metrics().await;
    assert!(
        metric_sum(&text, "sallyport_gateway_renewal_fallbacks_total") >= 1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_during_storm_logs_nobody_out() {
    redis_fault_during_storm(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_during_storm_logs_nobody_out() {
    redis_fault_during_storm(true).await;
}

/// The replica holding the renewal lock dies mid-renewal (its backend call is cut, so
/// nothing rotates). The storm, on the survivors, is answered in full with the old token
/// (still valid: the renewal is proactive); once the dead holder's lock expires a
/// survivor renews — once — against the backend that revokes on reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_killed_mid_renewal_the_others_finish() {
    let Some(redis) = crate::store::redis_url() else {
        return;
    };
    let b = start_single_use().await;
    // The victim's call never completes: it dies before the backend committed anything.
    b.hang.store(true, Ordering::SeqCst);
    let up = start_checking_upstream(b.clone()).await;
    let p = prefix();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|_| {
            // The call bound (and so the dead holder's lock) follows the grace window.
            Replica::start(short_call_config(&b, &up, &redis, &p, 500, 300))
        })
        .collect();
    // The balancer sends to the two survivors only.
    let lb = start_balancer(replicas[1..].iter().map(|r| r.url.clone()).collect()).await;

    let cookie = single_use::login(&lb).await;
    // Inside the renewal leeway, token still valid.
    advance(&replicas, (900 - 20) * 1000);
    // Replica 0 starts the renewal and takes the lock...
    let victim = replicas[0].url.clone();
    let c = cookie.clone();
    let doomed = tokio::spawn(async move {
        fresh_connection_client()
            .get(format!("{victim}/app"))
            .header("cookie", c)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    });
    until("the victim's renewal reached the backend", async || {
        b.refreshes.load(Ordering::SeqCst) >= 1
    })
    .await;
    // ...and dies; the storm arrives at the others.
    replicas[0].kill();
    let _ = doomed.await;
    b.hang.store(false, Ordering::SeqCst);
    let results = storm(&lb, &cookie, STORM).await;
    assert_eq!(statuses(&results), vec![200], "{results:?}");

    // After the lock's expiry one survivor renews, and the session carries on.
    let mut renewed = None;
    for _ in 0..100 {
        let resp = fresh_connection_client()
            .get(format!("{lb}/app"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        if let Some(c) = cookie_header(resp.headers()) {
            renewed = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let renewed = renewed.expect("no survivor ever renewed");
    assert_eq!(
        b.rotations.load(Ordering::SeqCst),
        1,
        "one rotation: the dead replica's call never completed, a survivor's did"
    );
    assert_eq!(b.reuse_revocations.load(Ordering::SeqCst), 0);
    assert_eq!(get_status(&lb, &renewed).await, 200);
    assert_eq!(b.revoked_families(), 0);
}

/// The backend is slower than `backend.timeout_ms` (and, like a real one, rotates
/// nothing for a call that was given up): sessions are kept — the old token is used while
/// it lives; once it has expired the answer is 503 with `Retry-After`, never 401; and
/// when the backend is fast again the session renews.
///
/// This test found a real bug (about one run in six): a result sealed with an expiry
/// counted from the sealing task's stale `now_ms` was ignored as expired by the other
/// replica, which then redeemed the used refresh token (fixed in `renew::seal_outcome`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_keeps_sessions_and_503_only_once_expired() {
    let Some(redis) = crate::store::redis_url() else {
        return;
    };
    let b = start_single_use().await;
    let up = start_checking_upstream(b.clone()).await;
    let p = prefix();
    let replicas: Vec<Replica> = (0..2)
        .map(|_| {
            // Hung calls are abandoned after the grace window.
            Replica::start(short_call_config(&b, &up, &redis, &p, 2000, 200))
        })
        .collect();
    let lb = start_balancer(replicas.iter().map(|r| r.url.clone()).collect()).await;
    let cookie = single_use::login(&lb).await;
    b.hang.store(true, Ordering::SeqCst);

    // Renewal due (inside the 30 s leeway) but the token still valid: 200, no cookie.
    advance(&replicas, (900 - 20) * 1000);
    let results = storm(&lb, &cookie, 20).await;
    assert_eq!(statuses(&results), vec![200], "{results:?}");
    assert!(results.iter().all(|r| r.1.is_none()));

    // Expired: 503 with Retry-After, the cookie untouched.
    advance(&replicas, 60 * 1000);
    let results = storm(&lb, &cookie, 10).await;
    assert_eq!(statuses(&results), vec![503], "{results:?}");
    assert!(results.iter().all(|r| r.1.is_none() && r.2.is_some()));

    // The backend recovers: once the abandoned calls are given up, the same cookie
    // renews and nothing was revoked.
    b.hang.store(false, Ordering::SeqCst);
    let mut ok = false;
    // Up to 30 s: the abandoned calls end after the 2 s grace window, but a loaded CI
    // machine may take a while to get there (this bounds a wait, it times nothing).
    for _ in 0..300 {
        let resp = fresh_connection_client()
            .get(format!("{lb}/app"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            assert!(cookie_header(resp.headers()).is_some());
            ok = true;
            break;
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(
            status,
            503,
            "never a logout: {body}; refreshes {}, rotations {}, reuse revocations {}",
            b.refreshes.load(Ordering::SeqCst),
            b.rotations.load(Ordering::SeqCst),
            b.reuse_revocations.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the session never renewed after the backend recovered");
    assert_eq!(b.revoked_families(), 0);
    assert_eq!(b.reuse_revocations.load(Ordering::SeqCst), 0);
}

/// A small xorshift generator: spreading requests needs no cryptographic randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The soak behind `scripts/soak`: two replicas sharing Redis, `SALLYPORT_SOAK_SESSIONS`
/// sessions whose 4-second access tokens need renewing every 2 seconds, each request to a
/// random replica (and now and then three at once, as tabs do), for
/// `SALLYPORT_SOAK_SECS` seconds on the real clock, against the backend that revokes on
/// reuse. Prints forced logouts, refresh calls against the rotations that were needed,
/// and this process's RSS (gateways, backend and clients together).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by scripts/soak"]
async fn soak() {
    let Some(redis) = crate::store::redis_url() else {
        return;
    };
    let env_u64 = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let secs = env_u64("SALLYPORT_SOAK_SECS", 30);
    let sessions = env_u64("SALLYPORT_SOAK_SESSIONS", 200) as usize;
    // A Redis command slower than this counts as an outage (each replica then renews on
    // its own, which a single-use backend may punish): the test command raises it, so a
    // loaded CI machine measures renewal, not scheduling delays.
    let store_timeout_ms = env_u64("SALLYPORT_SOAK_STORE_TIMEOUT_MS", 500);
    let b = start_single_use().await;
    b.expires_in.store(4, Ordering::SeqCst);
    let up = start_checking_upstream(b.clone()).await;
    let p = prefix();
    let replicas: Vec<Replica> = (0..2)
        .map(|_| Replica::start(redis_config(&b, &up, &redis, &p, store_timeout_ms)))
        .collect();
    let urls: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.url.clone()).collect());
    let login_url = urls[0].clone();

    let forced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let other = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    // Log everyone in first (one at a time: this is not a login benchmark).
    let mut cookies = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        cookies.push(single_use::login(&login_url).await);
    }
    let rss_start = rss_kib();
    let mut tasks = Vec::new();
    for (i, mut cookie) in cookies.into_iter().enumerate() {
        let (urls, forced, requests, other) = (
            urls.clone(),
            forced.clone(),
            requests.clone(),
            other.clone(),
        );
        let login_url = login_url.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0x2545_f491));
            while std::time::Instant::now() < deadline {
                let burst = if rng.next().is_multiple_of(5) { 3 } else { 1 };
                let mut inflight = Vec::new();
                for _ in 0..burst {
                    let url = &urls[(rng.next() % urls.len() as u64) as usize];
                    inflight.push(
                        client
                            .get(format!("{url}/app"))
                            .header("cookie", &cookie)
                            .header("accept", "application/json")
                            .send(),
                    );
                }
                let mut logged_out = false;
                for r in futures_util::future::join_all(inflight).await {
                    requests.fetch_add(1, Ordering::Relaxed);
                    match r {
                        Ok(r) if r.status() == 200 => {
                            if let Some(c) = cookie_header(r.headers()) {
                                cookie = c;
                            }
                        }
                        Ok(r) if r.status() == 401 => logged_out = true,
                        Ok(r) => {
                            other.fetch_add(1, Ordering::Relaxed);
                            eprintln!("soak: HTTP {}", r.status());
                        }
                        Err(e) => {
                            other.fetch_add(1, Ordering::Relaxed);
                            eprintln!("soak: transport error: {e}");
                        }
                    }
                }
                if logged_out {
                    forced.fetch_add(1, Ordering::Relaxed);
                    for _ in 0..100 {
                        let r = client
                            .post(format!("{login_url}/auth/login"))
                            .json(&serde_json::json!({
                                "username": crate::harness::USER,
                                "password": crate::harness::PASSWORD,
                            }))
                            .send()
                            .await;
                        if let Ok(r) = r
                            && r.status() == 200
                            && let Some(c) = cookie_header(r.headers())
                        {
                            cookie = c;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(300 + rng.next() % 700)).await;
            }
        }));
    }
    let mut rss_max = rss_start;
    let watcher = {
        tokio::spawn(async move {
            let mut max = 0;
            while std::time::Instant::now() < deadline {
                max = max.max(rss_kib());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            max
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    rss_max = rss_max.max(watcher.await.unwrap_or(0));
    let rss_end = rss_kib();
    let refreshes = b.refreshes.load(Ordering::SeqCst);
    let rotations = b.rotations.load(Ordering::SeqCst);
    let forced = forced.load(Ordering::SeqCst);
    let mut joined_replica = 0.0;
    let mut fallbacks = 0.0;
    for r in &replicas {
        let m = r.metrics().await;
        joined_replica += metric_sum(
            &m,
            "sallyport_gateway_renewals_joined_total{via=\"replica\"}",
        );
        fallbacks += metric_sum(&m, "sallyport_gateway_renewal_fallbacks_total");
        if std::env::var_os("SALLYPORT_SOAK_METRICS").is_some() {
            for l in m
                .lines()
                .filter(|l| l.contains("renew") && !l.starts_with('#'))
            {
                println!("soak: {} {l}", r.url);
            }
        }
    }
    println!(
        "soak: {secs} s, 2 replicas, {sessions} sessions, {} requests ({} other than 200/401)\n\
         soak: forced logouts {forced}\n\
         soak: refresh calls {refreshes}, rotations needed {rotations}, reuse revocations {}\n\
         soak: joined another replica's renewal {joined_replica}, Redis fallbacks {fallbacks}\n\
         soak: process RSS start {rss_start} KiB, max {rss_max} KiB, end {rss_end} KiB",
        requests.load(Ordering::SeqCst),
        other.load(Ordering::SeqCst),
        b.reuse_revocations.load(Ordering::SeqCst),
    );
    assert_eq!(forced, 0, "forced logouts");
    assert_eq!(b.reuse_revocations.load(Ordering::SeqCst), 0);
    assert!(
        rotations > 0,
        "nothing renewed: the soak did not exercise renewal"
    );
    // Answers other than 200/401 (502, 503, transport errors) are neither forced logouts
    // nor successes: a soak where most requests failed must not pass.
    let (requests, other) = (
        requests.load(Ordering::SeqCst),
        other.load(Ordering::SeqCst),
    );
    assert!(
        requests > sessions && other * 100 <= requests,
        "{other} of {requests} requests were neither 200 nor 401"
    );
    // Tokens live 4 s and are renewed 2 s before expiry: in 10 s every session renews.
    if secs >= 10 {
        assert!(
            rotations >= sessions,
            "{rotations} rotations for {sessions} sessions: not every session was exercised"
        );
    }
    // Every refresh call rotated a token (a second call for the same token would have
    // been a reuse, which this backend punishes).
    assert_eq!(refreshes, rotations);
}

/// Sentinel and cluster URLs are not supported by the `redis` features built in: refused
/// at start-up, naming the setting, instead of silently talking to one node.
#[test]
fn sentinel_and_cluster_urls_are_refused_at_startup() {
    for url in [
        "redis+sentinel://127.0.0.1:26379/mymaster",
        "redis+cluster://127.0.0.1:7000",
        "rediss://127.0.0.1:6380/0",
    ] {
        let mut c = Config::default();
        c.session.secret = Some(crate::harness::SECRET.into());
        c.session.secure = false;
        c.backend.login_url = Some("http://127.0.0.1:1/login".into());
        c.backend.refresh_url = Some("http://127.0.0.1:1/refresh".into());
        c.store.persist_logouts = false;
        c.store.redis_url = Some(url.into());
        let err = c.validate().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("store.redis_url"), "{url}: {err}");
    }
}
