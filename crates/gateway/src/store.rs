//! Where the gateway keeps the little state it has: the record of logged-out sessions
//! (memory, a durable file in `store.state_dir`, and Redis when `store.redis_url` is
//! set), and the Redis connection the renewal module shares with it.
//!
//! Logout records are keyed by the SHA-256 of the session's logout key (its `sid`, or
//! the id derived from the refresh token, see [`SessionData::logout_key`]) and live as
//! long as the cookie could (`session.ttl_secs`).
//!
//! - **Memory** answers every request (no I/O on the hot path).
//! - **The durable file** makes a logout survive a restart of this gateway without
//!   Redis: every logout is appended (and synced) before the logout response is sent, and
//!   the file is read back at start-up. It is also where logouts go when Redis is down.
//! - **Redis** shares logouts between replicas. Redis being unreachable is a fault, and
//!   faults are not logouts — nor do they log everyone out. A session this replica saw
//!   logged out is still refused (memory and file are always consulted first); a session
//!   logged out on another replica is then accepted only while its access token lives,
//!   because logout also revoked the refresh token at the backend, so its next renewal
//!   fails. After an error Redis is skipped for a short back-off, so an outage does not
//!   add the command timeout to every request.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::Clock;
use crate::config::StoreSettings;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::state::SessionData;

/// How long Redis is skipped once it counts as down.
const BACKOFF_MS: u64 = 5_000;
/// Failed commands in a row (no success in between) before Redis counts as down. One slow
/// command — a scheduling hiccup, a burst — must not switch cross-replica renewal off
/// for every session of this replica for `BACKOFF_MS`: each such renewal would be
/// redeemed on its own, which a single-use backend punishes.
const FAILURES_TO_BACK_OFF: u32 = 3;
/// At most one "Redis unavailable" log line per this many ms (per kind).
const LOG_EVERY_MS: u64 = 10_000;
/// The durable record's file names inside `store.state_dir`.
const LOG_FILE: &str = "logouts.v1";
const LOCK_FILE: &str = "logouts.lock";

/// SHA-256 of a logout key.
type Digest32 = [u8; 32];

fn digest(key: &str) -> Digest32 {
    Sha256::digest(key.as_bytes()).into()
}

/// The logged-out set.
pub(crate) struct LogoutStore {
    /// Digest → expiry (ms since the epoch).
    local: RwLock<HashMap<Digest32, u64>>,
    /// `local` holds something: read on every request without taking the lock, which
    /// two event loops would otherwise contend on even when there is nothing to find.
    /// Set under the write lock before anything is inserted, never cleared.
    any_local: AtomicBool,
    /// OpenID Connect back-channel logouts naming a subject only: digest of the subject
    /// key → (sessions that began before this ms are logged out, record expiry ms).
    /// Memory and Redis; not in the durable file (see docs/guides/oidc.md).
    subjects: RwLock<HashMap<Digest32, (u64, u64)>>,
    durable: Option<Durable>,
    shared: Option<Arc<Redis>>,
    ttl: Duration,
    max_entries: usize,
    metrics: Metrics,
}

impl LogoutStore {
    /// Opens the store: reads the durable record from `state_dir` (if any) into memory.
    /// An unusable directory stops start-up when it was configured (`explicit`); the
    /// default directory only warns, so that a host without a writable home (a read-only
    /// container) still starts, with logouts kept in memory (and Redis).
    pub(crate) fn open(
        ttl: Duration,
        state_dir: Option<&Path>,
        explicit: bool,
        max_entries: usize,
        shared: Option<Arc<Redis>>,
        metrics: Metrics,
        now_ms: u64,
    ) -> Result<Self, Error> {
        let mut local = HashMap::new();
        let durable = match state_dir {
            None => None,
            Some(dir) => match Durable::open(dir, max_entries, now_ms) {
                Ok((d, entries)) => {
                    local = entries;
                    Some(d)
                }
                Err(e) if explicit => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "the default store.state_dir is unusable; set store.state_dir (or store.persist_logouts = false)");
                    None
                }
            },
        };
        Ok(Self {
            any_local: AtomicBool::new(!local.is_empty()),
            local: RwLock::new(local),
            subjects: RwLock::new(HashMap::new()),
            durable,
            shared,
            ttl,
            max_entries,
            metrics,
        })
    }

    /// Whether a logout survives a restart of this process (durable file or Redis).
    pub(crate) fn is_durable(&self) -> bool {
        self.durable.is_some() || self.shared.is_some()
    }

    /// Whether this process has seen `data`'s session logged out (memory only, no I/O):
    /// by its own logout key, or — for an OpenID Connect session — by the provider's
    /// session id or a logout of every session of its subject (back-channel logout).
    pub(crate) fn seen_here(&self, data: &SessionData, now_ms: u64) -> bool {
        if let Some(o) = &data.oidc
            && self.subject_seen_here(o, now_ms)
        {
            return true;
        }
        if !self.any_local.load(Ordering::Acquire) {
            return false;
        }
        let Ok(m) = self.local.read() else {
            return false;
        };
        // The common case costs no hashing.
        if m.is_empty() {
            return false;
        }
        let live = |key: &str| m.get(&digest(key)).is_some_and(|&exp| exp > now_ms);
        if let Some(sid) = data.oidc.as_ref().and_then(|o| o.sid_key())
            && live(&sid)
        {
            return true;
        }
        let Some(key) = data.logout_key() else {
            return false;
        };
        live(&key)
    }

    fn subject_seen_here(&self, o: &crate::oidc::OidcSession, now_ms: u64) -> bool {
        let Ok(m) = self.subjects.read() else {
            return false;
        };
        if m.is_empty() {
            return false;
        }
        m.get(&digest(&o.subject_key()))
            .is_some_and(|&(before, exp)| exp > now_ms && o.login_ms < before)
    }

    /// Whether, with Redis, another replica logged `data`'s session out. Asked after
    /// [`Self::seen_here`] (through `Inner::live_session`), which it does not repeat. An
    /// unreachable Redis answers "no" (see the module docs).
    pub(crate) async fn logged_out_elsewhere(&self, data: &SessionData, now_ms: u64) -> bool {
        let Some(shared) = &self.shared else {
            return false;
        };
        // Boxed: a Redis call's future is large, and without Redis every request's
        // future would still carry its size (moved whole into hyper's connection state).
        Box::pin(self.ask_shared(shared, data, now_ms)).await
    }

    /// [`Self::logged_out_elsewhere`] with Redis configured.
    async fn ask_shared(&self, shared: &Redis, data: &SessionData, now_ms: u64) -> bool {
        if let Some(o) = &data.oidc {
            return self
                .oidc_logged_out_elsewhere(shared, data, o, now_ms)
                .await;
        }
        let Some(key) = data.logout_key() else {
            return false;
        };
        let d = digest(&key);
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(shared.key("logout", &d));
        match shared.run::<u64>(&cmd).await {
            Ok(n) if n > 0 => {
                // Cache the positive answer: a logged-out id never comes back.
                self.insert_local(d, now_ms);
                true
            }
            Ok(_) => false,
            Err(e) => {
                self.metrics.store_error("read");
                shared.log_unavailable("logout-read", &e);
                false
            }
        }
    }

    /// [`Self::logged_out_elsewhere`] for an OpenID Connect session: one `MGET` of its
    /// own logout key, the provider's session id and its subject's cut-off.
    async fn oidc_logged_out_elsewhere(
        &self,
        shared: &Redis,
        data: &SessionData,
        o: &crate::oidc::OidcSession,
        now_ms: u64,
    ) -> bool {
        let own = data.logout_key().map(|k| digest(&k));
        let sid = o.sid_key().map(|k| digest(&k));
        let subject = digest(&o.subject_key());
        let mut cmd = redis::cmd("MGET");
        cmd.arg(shared.key("logout-sub", &subject));
        for d in own.iter().chain(sid.iter()) {
            cmd.arg(shared.key("logout", d));
        }
        match shared.run::<Vec<Option<String>>>(&cmd).await {
            Ok(values) => {
                let mut values = values.into_iter();
                if let Some(Some(before)) = values.next()
                    && let Ok(before) = before.parse::<u64>()
                {
                    self.insert_subject(subject, before, now_ms);
                    if o.login_ms < before {
                        return true;
                    }
                }
                for (d, v) in own.iter().chain(sid.iter()).zip(values) {
                    if v.is_some() {
                        self.insert_local(*d, now_ms);
                        return true;
                    }
                }
                false
            }
            Err(e) => {
                self.metrics.store_error("read");
                shared.log_unavailable("logout-read", &e);
                false
            }
        }
    }

    /// Claims `key` once across the replicas for `ttl` (`SET NX EX` in Redis): `false`
    /// when a replica claimed it before. Without Redis, or when Redis fails, `true`: the
    /// caller's own (per-replica) check is all there is then.
    pub(crate) async fn claim_once(&self, kind: &str, key: &str, ttl: Duration) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(shared.key(kind, &digest(key)))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1));
        match shared.run::<Option<String>>(&cmd).await {
            Ok(reply) => reply.is_some(),
            Err(e) => {
                self.metrics.store_error("write");
                shared.log_unavailable("claim-once", &e);
                true
            }
        }
    }

    fn insert_subject(&self, d: Digest32, before_ms: u64, now_ms: u64) {
        let exp = now_ms.saturating_add(self.ttl.as_millis() as u64);
        let Ok(mut m) = self.subjects.write() else {
            return;
        };
        let e = m.entry(d).or_insert((before_ms, exp));
        *e = (e.0.max(before_ms), e.1.max(exp));
        if m.len() > self.max_entries {
            m.retain(|_, &mut (_, e)| e > now_ms);
        }
    }

    /// Records that every session of the subject (`key`, see
    /// [`crate::oidc::subject_key`]) that began before `now_ms` is logged out: memory and
    /// Redis (`<prefix>logout-sub:<sha256>` = the cut-off). Returns whether Redis took it
    /// (or there is none).
    pub(crate) async fn remember_subject(&self, key: &str, now_ms: u64) -> bool {
        let d = digest(key);
        self.insert_subject(d, now_ms, now_ms);
        let Some(shared) = &self.shared else {
            return true;
        };
        // The greater cut-off wins, so a late or replayed record never shortens one.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(
            "local v = tonumber(redis.call('GET', KEYS[1]) or '0') \
             if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end \
             return 1",
        )
        .arg(1)
        .arg(shared.key("logout-sub", &d))
        .arg(now_ms)
        .arg(self.ttl.as_secs().max(1));
        match shared.run::<i64>(&cmd).await {
            Ok(_) => true,
            Err(e) => {
                self.metrics.store_error("write");
                tracing::error!(error = %e, "Redis unreachable; the subject logout is recorded on this replica only");
                false
            }
        }
    }

    fn insert_local(&self, d: Digest32, now_ms: u64) -> usize {
        let exp = now_ms.saturating_add(self.ttl.as_millis() as u64);
        let Ok(mut m) = self.local.write() else {
            return 0;
        };
        self.any_local.store(true, Ordering::Release);
        m.insert(d, exp);
        if m.len() > self.max_entries {
            m.retain(|_, &mut e| e > now_ms);
            evict_soonest(&mut m, self.max_entries, &self.metrics);
        }
        m.len()
    }

    /// Records `data`'s session as logged out for the cookie's lifetime: memory, the
    /// durable file, and Redis. Returns whether the logout will survive a restart and is
    /// visible to other replicas as far as this replica can tell (memory is written
    /// regardless; every failure is logged and counted).
    pub(crate) async fn remember(&self, data: &SessionData, now_ms: u64) -> bool {
        let Some(key) = data.logout_key() else {
            return true;
        };
        self.remember_key(&key, now_ms).await
    }

    /// [`Self::remember`] for a logout key itself (a back-channel logout names the
    /// provider's session, [`crate::oidc::sid_key`], not a cookie).
    pub(crate) async fn remember_key(&self, key: &str, now_ms: u64) -> bool {
        let d = digest(key);
        self.insert_local(d, now_ms);
        let expires_at_ms = now_ms.saturating_add(self.ttl.as_millis() as u64);
        let mut ok = true;
        if let Some(durable) = &self.durable
            && let Err(e) = durable.append(d, expires_at_ms, now_ms).await
        {
            ok = false;
            self.metrics.store_error("durable_write");
            tracing::error!(error = %e, "cannot write the durable logout record; the logout is kept in memory only");
        }
        if let Some(shared) = &self.shared {
            let mut cmd = redis::cmd("SET");
            cmd.arg(shared.key("logout", &d))
                .arg(1)
                .arg("EX")
                .arg(self.ttl.as_secs().max(1));
            if let Err(e) = shared.run::<()>(&cmd).await {
                ok = false;
                self.metrics.store_error("write");
                tracing::error!(error = %e, durable = self.durable.is_some(),
                    "Redis unreachable; the logout is recorded on this replica (and its durable file) only");
            }
        }
        ok
    }
}

/// Keeps at most `max` entries, dropping those that expire soonest (they matter for the
/// shortest time). Logged, because each one dropped is a logout that may be undone.
fn evict_soonest(m: &mut HashMap<Digest32, u64>, max: usize, metrics: &Metrics) {
    if m.len() <= max {
        return;
    }
    let mut exps: Vec<u64> = m.values().copied().collect();
    let drop_n = m.len() - max;
    exps.select_nth_unstable(drop_n - 1);
    let cut = exps[drop_n - 1];
    let mut dropped = 0usize;
    m.retain(|_, &mut e| {
        if e <= cut && dropped < drop_n {
            dropped += 1;
            false
        } else {
            true
        }
    });
    metrics.store_error("logout_record_full");
    tracing::warn!(
        dropped,
        max,
        "the logout record is full (store.max_logout_records); the records nearest to expiry were dropped"
    );
}

/// The append-only durable record.
///
/// Hand-written rather than an embedded database: one fixed-format line per logout
/// (`<sha256 hex> <expiry ms>`), appended with `O_APPEND` and synced, read back and
/// compacted (expired lines dropped) at start-up and whenever the file has grown by
/// `max_entries` lines. A line torn by a crash is skipped. Several gateway processes may
/// share a directory: appends take a shared `flock` on the lock file, compaction an
/// exclusive one, and each process reads the others' records at its start-up.
struct Durable {
    dir: Arc<PathBuf>,
    max_entries: usize,
    appended: Arc<AtomicUsize>,
    write: tokio::sync::Mutex<()>,
}

impl Durable {
    fn open(
        dir: &Path,
        max_entries: usize,
        now_ms: u64,
    ) -> Result<(Self, HashMap<Digest32, u64>), Error> {
        let setting = "store.state_dir";
        create_private_dir(dir)
            .map_err(|e| Error::config(setting, format!("cannot create {}: {e}", dir.display())))?;
        check_private(dir);
        let entries = compact(dir, max_entries, now_ms)
            .map_err(|e| Error::config(setting, format!("cannot use {}: {e}", dir.display())))?;
        Ok((
            Self {
                dir: Arc::new(dir.to_path_buf()),
                max_entries,
                appended: Arc::new(AtomicUsize::new(0)),
                write: tokio::sync::Mutex::new(()),
            },
            entries,
        ))
    }

    async fn append(&self, d: Digest32, expires_at_ms: u64, now_ms: u64) -> std::io::Result<()> {
        // One writer at a time in this process; the flock orders processes.
        let _w = self.write.lock().await;
        let line = format_line(&d, expires_at_ms);
        let dir = self.dir.clone();
        let max = self.max_entries;
        let appended = self.appended.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt as _;
            let lock = lock_file(&dir)?;
            lock.lock_shared()?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(dir.join(LOG_FILE))?;
            f.write_all(line.as_bytes())?;
            f.sync_data()?;
            drop(lock);
            if appended.fetch_add(1, Ordering::Relaxed) + 1 >= max {
                compact(&dir, max, now_ms)?;
                appended.store(0, Ordering::Relaxed);
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

fn lock_file(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(LOCK_FILE))
}

/// Reads the record, drops expired and torn lines, rewrites it; returns what lives.
fn compact(dir: &Path, max_entries: usize, now_ms: u64) -> std::io::Result<HashMap<Digest32, u64>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let lock = lock_file(dir)?;
    lock.lock()?;
    let path = dir.join(LOG_FILE);
    let mut entries = match std::fs::File::open(&path) {
        Ok(f) => read_entries(std::io::BufReader::new(f), max_entries, now_ms)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
        Err(e) => return Err(e),
    };
    evict_soonest(&mut entries, max_entries, &Metrics::new());
    let tmp = dir.join(format!("{LOG_FILE}.tmp"));
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut buf = String::with_capacity(entries.len() * 80);
        for (d, exp) in &entries {
            buf.push_str(&format_line(d, *exp));
        }
        f.write_all(buf.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(entries)
}

/// The longest line [`format_line`] writes, with room to spare.
const MAX_LINE: usize = 128;

/// The live records of a durable file, streamed: a line that is torn, too long or not
/// UTF-8 is skipped (it never stops start-up), and memory stays within twice
/// `max_entries` however large the file has grown.
fn read_entries(
    mut r: impl std::io::BufRead,
    max_entries: usize,
    now_ms: u64,
) -> std::io::Result<HashMap<Digest32, u64>> {
    use std::io::{BufRead as _, Read as _};
    let mut entries = HashMap::new();
    let mut line = Vec::with_capacity(MAX_LINE + 1);
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') && n > MAX_LINE {
            r.skip_until(b'\n')?;
            continue;
        }
        if let Some((d, exp)) = std::str::from_utf8(&line).ok().and_then(parse_line)
            && exp > now_ms
        {
            let e = entries.entry(d).or_insert(exp);
            *e = (*e).max(exp);
            if entries.len() > max_entries.saturating_mul(2) {
                evict_soonest(&mut entries, max_entries, &Metrics::new());
            }
        }
    }
    Ok(entries)
}

fn format_line(d: &Digest32, exp: u64) -> String {
    format!("{} {exp}\n", hex::encode(d))
}

fn parse_line(line: &str) -> Option<(Digest32, u64)> {
    let (h, exp) = line.split_once(' ')?;
    let mut d = [0u8; 32];
    hex::decode_to_slice(h, &mut d).ok()?;
    Some((d, exp.trim().parse().ok()?))
}

/// Creates `dir` (and parents) as 0700 under any umask.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Warns when the state directory can be read by others (it was created by someone else).
fn check_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(dir)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", m.permissions().mode() & 0o777),
            "store.state_dir is accessible to other users; chmod 700 it"
        );
    }
}

/// The shared Redis connection, bounded by `store.timeout_ms`, with a back-off after
/// errors. Used by the logout record and by cross-replica renewal.
pub(crate) struct Redis {
    settings: StoreSettings,
    conn: OnceCell<ConnectionManager>,
    /// The gateway's clock, read as each command ends: callers' request-time "now" can
    /// be seconds old (a renewal task polling for a lock), which would shorten the
    /// back-off or keep Redis switched off after it ended.
    clock: Arc<dyn Clock>,
    /// When Redis is skipped, after repeated errors.
    breaker: Breaker,
    /// Last "unavailable" log line (ms), for rate limiting.
    last_log_ms: AtomicU64,
}

impl Redis {
    pub(crate) fn new(settings: StoreSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            conn: OnceCell::new(),
            clock,
            breaker: Breaker::default(),
            last_log_ms: AtomicU64::new(0),
        }
    }

    /// `<prefix><kind>:<sha256 hex>`: ids may be refresh tokens, which must never be
    /// stored in the clear.
    pub(crate) fn key(&self, kind: &str, digest: &[u8; 32]) -> String {
        format!("{}{kind}:{}", self.settings.key_prefix, hex::encode(digest))
    }

    /// The configured bound on one command.
    pub(crate) fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Logs that Redis is unavailable, at most once per [`LOG_EVERY_MS`].
    pub(crate) fn log_unavailable(&self, what: &'static str, error: &str) {
        let now_ms = self.clock.now_ms();
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= LOG_EVERY_MS
            && self
                .last_log_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, during = what,
                "Redis unavailable; falling back to this replica's own state (logged at most every 10 s)");
        }
    }

    /// Whether Redis counts as down (in the back-off after repeated errors).
    pub(crate) fn is_down(&self) -> bool {
        !self.breaker.allows(self.clock.now_ms())
    }

    /// Runs one command within `store.timeout_ms`; [`FAILURES_TO_BACK_OFF`] errors in a
    /// row start the back-off.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, String> {
        if !self.breaker.allows(self.clock.now_ms()) {
            return Err("in back-off after repeated errors".into());
        }
        let result = tokio::time::timeout(self.settings.timeout, async {
            let conn = self
                .conn
                .get_or_try_init(|| self.settings.client.get_connection_manager())
                .await
                .map_err(|e| e.to_string())?;
            // ConnectionManager is a cheap handle onto one multiplexed connection.
            let mut conn = conn.clone();
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        match &result {
            Ok(_) => self.breaker.succeeded(),
            Err(_) => self.breaker.failed(self.clock.now_ms()),
        }
        result
    }
}

/// A small circuit breaker: Redis is skipped for [`BACKOFF_MS`] once
/// [`FAILURES_TO_BACK_OFF`] commands failed with no success in between (a dead or stopped
/// Redis trips it within a few requests; one slow command does not).
#[derive(Debug, Default)]
struct Breaker {
    /// Failures since the last success.
    failures: AtomicU32,
    /// Gateway-clock ms until which Redis is not asked.
    down_until_ms: AtomicU64,
}

impl Breaker {
    fn allows(&self, now_ms: u64) -> bool {
        now_ms >= self.down_until_ms.load(Ordering::Relaxed)
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    fn failed(&self, now_ms: u64) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= FAILURES_TO_BACK_OFF {
            self.failures.store(0, Ordering::Relaxed);
            self.down_until_ms
                .store(now_ms.saturating_add(BACKOFF_MS), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slow_command_does_not_switch_redis_off_repeated_errors_do() {
        let b = Breaker::default();
        b.failed(1_000);
        assert!(b.allows(1_001), "one failure");
        b.failed(1_002);
        b.succeeded();
        b.failed(1_003);
        b.failed(1_004);
        assert!(b.allows(1_005), "a success in between resets the count");
        b.failed(1_005);
        assert!(!b.allows(1_006), "three in a row: back-off");
        assert!(!b.allows(1_005 + BACKOFF_MS - 1));
        assert!(b.allows(1_005 + BACKOFF_MS), "retried after the back-off");
    }

    #[test]
    fn lines_round_trip_and_torn_lines_are_skipped() {
        let d = digest("sid");
        let line = format_line(&d, 42);
        assert_eq!(parse_line(line.trim_end()), Some((d, 42)));
        assert_eq!(parse_line(&line[..20]), None);
        assert_eq!(parse_line("zz 1"), None);
    }

    #[test]
    fn reading_skips_bad_lines_and_stays_bounded() {
        let (a, b) = (digest("a"), digest("b"));
        let mut file = Vec::new();
        file.extend_from_slice(format_line(&a, 50).as_bytes());
        file.extend_from_slice(b"\xff\xfe not utf-8\n");
        file.extend_from_slice(&[b'7'; 10_000]);
        file.push(b'\n');
        file.extend_from_slice(format_line(&b, 5).as_bytes()); // expired
        file.extend_from_slice(format_line(&a, 60).as_bytes());
        file.extend_from_slice(&format_line(&b, 70).as_bytes()[..30]); // torn, no newline
        let got = read_entries(&file[..], 10, 10).unwrap();
        assert_eq!(got, HashMap::from([(a, 60)]));

        let mut many = Vec::new();
        for i in 0..1_000u64 {
            many.extend_from_slice(format_line(&digest(&i.to_string()), 100 + i).as_bytes());
        }
        let got = read_entries(&many[..], 10, 0).unwrap();
        assert!(got.len() <= 20, "{}", got.len());
        assert!(got.values().all(|&e| e >= 100 + 1_000 - 20));
    }

    #[test]
    fn a_garbage_line_in_the_file_does_not_stop_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let d = digest("sid");
        let mut file = b"\xff garbage from a crash\n".to_vec();
        file.extend_from_slice(format_line(&d, 99).as_bytes());
        std::fs::write(dir.path().join(LOG_FILE), file).unwrap();
        let (_, entries) = Durable::open(dir.path(), 10, 1).expect("start-up");
        assert_eq!(entries, HashMap::from([(d, 99)]));
        // Compaction rewrote the file without the garbage.
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(text, format_line(&d, 99));
    }

    #[test]
    fn eviction_keeps_the_latest_expiries() {
        let mut m = HashMap::new();
        for i in 0..10u64 {
            m.insert(digest(&i.to_string()), i);
        }
        evict_soonest(&mut m, 4, &Metrics::new());
        assert_eq!(m.len(), 4);
        assert!(m.values().all(|&e| e >= 6));
    }
}
