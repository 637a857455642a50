// Gateway memory/fd soak (issue "Gateway speed", memory target): resident size stays
// under 64 MB and flat (no growth after warm-up) over a 10-minute run with 100,000
// distinct sessions cycling through, and file descriptors return to baseline afterwards.
// Run it through memory.sh (which finds or builds the binary); plain Node >= 18, no npm.
//
// Everything on loopback, in a mktemp work dir (removed at the end unless BENCH_KEEP=1):
//   upstream - Debian nginx, one process, `return 200 '{"ok":true}'`
//   issuer   - the real `sallyport issuer` (SQLite), the cheapest argon2 parameters the
//              validation accepts (m=8 KiB, t=1, p=1: 100k logins must not take hours),
//              failed-login limits out of reach, access tokens of ACCESS_TTL s, USERS users
//              (no per-user session cap: every login is a new refresh-token family)
//   gateway  - `sallyport gateway`, THREADS event loops, default session.cache_entries,
//              admin listener on loopback for /metrics, logout records in the work dir
// Phases:
//   login  - SESSIONS logins through the gateway's POST /auth/login (CONCURRENCY at once),
//            each session keeping its own cookie jar (all Set-Cookie pairs, chunks too;
//            Max-Age=0 deletes), as a browser would
//   cycle  - DURATION s of GET / round-robin over all sessions (CONCURRENCY at once),
//            adopting every renewed cookie. The gateway renews a token within
//            min(session.leeway_secs = 30, lifetime / 2) of its expiry, so with
//            ACCESS_TTL=60 a visit 30 s or more after the session's last renewal renews it
//            (at 100,000 sessions: nearly every visit, as fast as the issuer can rotate):
//            that exercises the single-flight map and the rotated-token (grace) map,
//            whose entries live session.renew_grace_secs (60 s). Every PAIR_EVERY-th
//            visit sends two requests with the same cookie at once (a page's parallel
//            requests: the second joins the first one's renewal). LOGOUT_RATE of the
//            sessions per minute log out (POST /auth/logout as a same-origin page), their
//            old cookie must then get 401 (counted apart, not as an error) and a fresh
//            login replaces them: the logout records grow during the run.
//   after  - the client's keep-alive connections are destroyed, FD_WAIT s later the
//            gateway's fds are counted again (the upstream nginx closes idle keep-alive
//            connections after 5 s and the issuer after 10 s, so the gateway's idle
//            pooled connections to them are gone by then too).
// Every SAMPLE_SECS s: the gateway's VmRSS and open fds (/proc), requests, non-200
// answers, renewals and logouts (the gateway's /metrics). The verdict fails (exit 1) when
// peak RSS (VmHWM, or a higher sample) > LIMIT_MB, the median RSS of the last third of the
// post-warm-up samples exceeds that of the first third by more than MAX_GROWTH, the fds
// after the run exceed the pre-login baseline by more than FD_TOLERANCE, more than
// MAX_NON200 of the answers were not 200 (the expected 401s after a deliberate logout
// excluded), or a logged-out cookie was still accepted.
//
// Knobs (environment): BIN (required here; memory.sh sets it), SESSIONS=100000
// DURATION=600 THREADS=2 ACCESS_TTL=60 CONCURRENCY=32 USERS=1000 WARMUP=60 (s of the cycle
// phase; at most a third of DURATION) SAMPLE_SECS=10 LOGOUT_RATE=0.005 PAIR_EVERY=50
// FD_WAIT=15 LIMIT_MB=64 MAX_GROWTH=0.10 FD_TOLERANCE=2 MAX_NON200=0.01 NGINX BENCH_KEEP.
// Other SALLYPORT_GATEWAY_* / SALLYPORT_ISSUER_* variables in the environment reach the
// servers, e.g. SALLYPORT_GATEWAY_SESSION__RENEW_GRACE_SECS=5 or
// SALLYPORT_GATEWAY_SESSION__CACHE_ENTRIES=0 to see what a map costs.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const env = process.env;
const num = (name, dflt) => {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v}: not a number`);
  return n;
};
const BIN = env.BIN;
const SESSIONS = num('SESSIONS', 100000);
const DURATION = num('DURATION', 600);
const THREADS = num('THREADS', 2);
const ACCESS_TTL = num('ACCESS_TTL', 60);
const CONCURRENCY = num('CONCURRENCY', 32);
const USERS = Math.max(1, Math.min(num('USERS', 1000), SESSIONS));
const WARMUP = Math.min(num('WARMUP', 60), Math.floor(DURATION / 3));
const SAMPLE_SECS = num('SAMPLE_SECS', 10);
const LOGOUT_RATE = num('LOGOUT_RATE', 0.005);
const PAIR_EVERY = num('PAIR_EVERY', 50);
const FD_WAIT = num('FD_WAIT', 15);
const LIMIT_MB = num('LIMIT_MB', 64);
const MAX_GROWTH = num('MAX_GROWTH', 0.1);
const FD_TOLERANCE = num('FD_TOLERANCE', 2);
const MAX_NON200 = num('MAX_NON200', 0.01);
const NGINX = env.NGINX || '/usr/sbin/nginx';
delete env.NGINX; // nginx itself reads $NGINX (inherited listening sockets)
const PASSWORD = 'bench-password-0123456789';
if (!BIN) {
  console.error('BIN is not set (run scripts/bench/gateway/memory.sh)');
  process.exit(2);
}

const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'sallyport-gw-memory.'));
const children = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sleepSync = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const alive = (pid) => {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

// Synchronous, so that it also runs from the 'exit' event (Ctrl-C, failures).
let cleanedUp = false;
function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  const live = children.filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of live) {
    try { c.kill('SIGTERM'); } catch {}
  }
  for (let i = 0; i < 50 && live.some((c) => alive(c.pid)); i++) sleepSync(100);
  for (const c of live) {
    if (alive(c.pid)) try { c.kill('SIGKILL'); } catch {}
  }
  if (env.BENCH_KEEP) console.log(`work dir kept: ${WORK}`);
  else fs.rmSync(WORK, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\n${sig}: stopping`);
    process.exit(130);
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(name, cmd, args, extraEnv) {
  const log = fs.openSync(path.join(WORK, `${name}.log`), 'a');
  const c = spawn(cmd, args, {
    env: { ...env, ...extraEnv },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  children.push(c);
  c.on('exit', (code, sig) => {
    if (!cleanedUp && !stopping) {
      console.error(`${name} exited (${code ?? sig}); its log:`);
      try { console.error(fs.readFileSync(path.join(WORK, `${name}.log`), 'utf8').slice(-4000)); } catch {}
      process.exit(1);
    }
  });
  return c;
}
let stopping = false;

// One-off requests (readiness, /metrics): their own connection, closed after the answer,
// so that they leave no fd behind in the gateway.
function once(port, p) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}
async function waitFor(port, p, ok = () => true) {
  for (let i = 0; i < 200; i++) {
    try {
      if (ok(await once(port, p))) return;
    } catch {}
    await sleep(100);
  }
  throw new Error(`nothing answered on 127.0.0.1:${port}${p}`);
}

// ---------------------------------------------------------------- setup
const [P_UP, P_ISS, P_GW, P_ADM] = [await freePort(), await freePort(), await freePort(), await freePort()];
const ORIGIN = `http://127.0.0.1:${P_GW}`;

const up = path.join(WORK, 'up');
fs.mkdirSync(up);
// As run.sh's upstream, but in the foreground as a single process (no master: a child we
// can always kill) and with a short keep-alive timeout (see "after" above).
fs.writeFileSync(path.join(up, 'nginx.conf'), `
worker_processes 1;
master_process off;
daemon off;
pid ${up}/nginx.pid;
error_log ${up}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 5s;
  keepalive_requests 1000000;
  client_body_temp_path ${up}; proxy_temp_path ${up}; fastcgi_temp_path ${up}; uwsgi_temp_path ${up}; scgi_temp_path ${up};
  server { listen 127.0.0.1:${P_UP}; location / { default_type application/json; return 200 '{"ok":true}'; } }
}
`);
start('nginx', NGINX, ['-c', path.join(up, 'nginx.conf'), '-p', up]);

const iss = path.join(WORK, 'issuer');
fs.mkdirSync(iss, { mode: 0o700 });
const issuerEnv = {
  SALLYPORT_ISSUER_DATABASE_URL: `sqlite://${iss}/issuer.db`,
  SALLYPORT_ISSUER_LISTEN: `127.0.0.1:${P_ISS}`,
  SALLYPORT_ISSUER_ISSUER: `http://127.0.0.1:${P_ISS}`,
  SALLYPORT_ISSUER_ACCESS_TOKEN_TTL_SECS: String(ACCESS_TTL),
  SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_BURST: '100000',
  SALLYPORT_ISSUER_RATE_LIMIT__ADDRESS_BURST: '100000',
  // Smallest parameters argon2 accepts (memory >= 8 KiB per lane): `user add` hashes
  // with them too, so every login verifies cheaply. Never in production.
  SALLYPORT_ISSUER_ARGON2__MEMORY_KIB: '8',
  SALLYPORT_ISSUER_ARGON2__ITERATIONS: '1',
  SALLYPORT_ISSUER_ARGON2__PARALLELISM: '1',
  SALLYPORT_ISSUER_ARGON2__MAX_QUEUED: '4096',
  RUST_LOG: 'warn',
};
const t0 = Date.now();
for (let u = 0; u < USERS; u++) {
  const r = spawnSync(BIN, ['user', 'add', `bench${u}`, '--password-stdin'], {
    env: { ...env, ...issuerEnv },
    input: `${PASSWORD}\n`,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`user add bench${u} failed: ${r.stderr}`);
}
console.log(`${USERS} users added in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
start('issuer', BIN, ['issuer'], issuerEnv);

const gw = start('gateway', BIN, ['gateway'], {
  SALLYPORT_GATEWAY_PUBLIC_PATHS: '[]',
  SESSION_SECRET: 'bench-secret-bench-secret-bench-secret-0',
  SALLYPORT_GATEWAY_LISTEN: `127.0.0.1:${P_GW}`,
  SALLYPORT_GATEWAY_UPSTREAM: `http://127.0.0.1:${P_UP}`,
  SALLYPORT_GATEWAY_SESSION__SECURE: 'false',
  SALLYPORT_GATEWAY_BACKEND__LOGIN_URL: `http://127.0.0.1:${P_ISS}/api/login`,
  SALLYPORT_GATEWAY_BACKEND__REFRESH_URL: `http://127.0.0.1:${P_ISS}/api/refresh-token`,
  SALLYPORT_GATEWAY_BACKEND__LOGOUT_URL: `http://127.0.0.1:${P_ISS}/api/logout`,
  SALLYPORT_GATEWAY_THREADS: String(THREADS),
  SALLYPORT_GATEWAY_ADMIN__ENABLED: 'true',
  SALLYPORT_GATEWAY_ADMIN__LISTEN: `127.0.0.1:${P_ADM}`,
  // The durable logout record in the work dir (not ~/.local/state, nor a previous run's).
  SALLYPORT_GATEWAY_STORE__STATE_DIR: path.join(WORK, 'gateway-state'),
  RUST_LOG: 'warn',
});
const GW_PID = gw.pid;

await waitFor(P_UP, '/');
await waitFor(P_ISS, '/');
await waitFor(P_ADM, '/readyz', (r) => r.status === 200);
await sleep(1000);

// ---------------------------------------------------------------- measurements
const status = (pid) => {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((s.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [])[1] || 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
};
const fdCount = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;
function fdKinds(pid) {
  const kinds = {};
  for (const f of fs.readdirSync(`/proc/${pid}/fd`)) {
    let t;
    try { t = fs.readlinkSync(`/proc/${pid}/fd/${f}`); } catch { continue; }
    const k = t.startsWith('socket:') ? 'socket' : t.startsWith('anon_inode:') ? t : t.startsWith('pipe:') ? 'pipe' : t.startsWith('/') ? 'file' : t;
    kinds[k] = (kinds[k] || 0) + 1;
  }
  return Object.entries(kinds).map(([k, n]) => `${k}×${n}`).join(' ');
}
// The gateway's TCP connections by peer, from ss (diagnosis when fds stay up).
function tcpPeers(pid) {
  const r = spawnSync('ss', ['-tanpH'], { encoding: 'utf8' });
  if (r.status !== 0) return '(ss unavailable)';
  const names = { [P_UP]: 'upstream', [P_ISS]: 'issuer', [P_GW]: 'client', [P_ADM]: 'admin' };
  const peers = {};
  for (const line of r.stdout.split('\n')) {
    if (!line.includes(`pid=${pid},`)) continue;
    const f = line.trim().split(/\s+/);
    const [state, local, peer] = [f[0], f[3], f[4]];
    const lp = Number(local.split(':').pop()), pp = Number(peer.split(':').pop());
    const who = names[pp] ? `to ${names[pp]}` : names[lp] ? `${names[lp]} side` : `${local}->${peer}`;
    const k = `${state} ${who}`;
    peers[k] = (peers[k] || 0) + 1;
  }
  return Object.entries(peers).map(([k, n]) => `${k}×${n}`).join(', ') || 'none';
}
function parseMetrics(text) {
  const m = {};
  for (const line of text.split('\n')) {
    const x = line.match(/^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/);
    if (x) m[x[1] + (x[2] || '')] = Number(x[3]);
  }
  return m;
}
const sum = (m, prefix, filter = '') =>
  Object.entries(m).filter(([k]) => k.startsWith(prefix) && k.includes(filter)).reduce((a, [, v]) => a + v, 0);
async function metrics() {
  try {
    return parseMetrics((await once(P_ADM, '/metrics')).body);
  } catch {
    return {};
  }
}

const FD_BASELINE = fdCount(GW_PID);
const FD_BASELINE_KINDS = fdKinds(GW_PID);
const RSS_START = status(GW_PID).rss;

// ---------------------------------------------------------------- client
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2, maxFreeSockets: CONCURRENCY * 2 });
function request(method, p, headers, body) {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: P_GW, method, path: p, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, setCookie: res.headers['set-cookie'] || [] }));
      res.on('error', () => resolve({ status: 0, setCookie: [] }));
    });
    req.setTimeout(30000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, setCookie: [] }));
    req.end(body);
  });
}
// A browser's cookie jar for one session: every pair, a Max-Age=0 (or past Expires) deletes.
function adopt(jar, setCookie) {
  for (const sc of setCookie) {
    const pair = sc.split(';', 1)[0];
    const eq = pair.indexOf('=');
    if (eq < 1) continue;
    const name = pair.slice(0, eq).trim();
    if (/;\s*max-age=0\s*(;|$)/i.test(sc) || /;\s*expires=[^;]*1970/i.test(sc)) jar.delete(name);
    else jar.set(name, pair.slice(eq + 1).trim());
  }
}
const cookieOf = (jar) => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');

const C = {
  requests: 0, ok: 0, non200: 0, statuses: {}, logins: 0, loginFailures: 0,
  logouts: 0, logoutFailures: 0, expected401: 0, notLoggedOut: 0, pairs: 0,
};
const bad = (s) => {
  C.non200++;
  C.statuses[s] = (C.statuses[s] || 0) + 1;
};
const sessions = new Array(SESSIONS);

async function login(i) {
  const body = JSON.stringify({ username: `bench${i % USERS}`, password: PASSWORD });
  for (let attempt = 0; attempt < 5; attempt++) {
    const r = await request('POST', '/auth/login', {
      'content-type': 'application/json', accept: 'application/json',
      origin: ORIGIN, 'sec-fetch-site': 'same-origin', 'content-length': Buffer.byteLength(body),
    }, body);
    C.requests++;
    if (r.status === 200 && r.setCookie.length) {
      C.ok++;
      C.logins++;
      const jar = new Map();
      adopt(jar, r.setCookie);
      sessions[i] = { jar, busy: false };
      return;
    }
    bad(r.status);
    await sleep(200 * (attempt + 1));
  }
  C.loginFailures++;
  sessions[i] = { jar: new Map(), busy: false };
}

async function visit(s) {
  const r = await request('GET', '/', { cookie: cookieOf(s.jar), accept: 'application/json' });
  C.requests++;
  if (r.status === 200) C.ok++;
  else bad(r.status);
  adopt(s.jar, r.setCookie);
}

async function logout(i) {
  const s = sessions[i];
  const old = cookieOf(s.jar);
  const r = await request('POST', '/auth/logout', {
    cookie: old, accept: 'application/json', 'content-type': 'application/json',
    origin: ORIGIN, 'sec-fetch-site': 'same-origin', 'content-length': 0,
  });
  C.requests++;
  if (r.status === 204 || r.status === 200) {
    C.ok++;
    C.logouts++;
  } else {
    bad(r.status);
    C.logoutFailures++;
  }
  adopt(s.jar, r.setCookie);
  // The old cookie replayed (as a copy stolen before the logout would be): 401.
  const again = await request('GET', '/', { cookie: old, accept: 'application/json' });
  C.requests++;
  if (again.status === 401) C.expected401++;
  else if (again.status === 200) C.notLoggedOut++;
  else bad(again.status);
  await login(i);
}

// ---------------------------------------------------------------- sampling
const samples = [];
let phase = 'login';
let phaseStart = Date.now();
const runStart = Date.now();
let lastReq = 0, lastT = Date.now();
async function sample() {
  const now = Date.now();
  const st = status(GW_PID);
  const m = await metrics();
  const s = {
    t: (now - runStart) / 1000, phase, tp: (now - phaseStart) / 1000,
    rss: st.rss, fds: fdCount(GW_PID), requests: C.requests, non200: C.non200,
    rps: (C.requests - lastReq) / ((now - lastT) / 1000),
    renewals: sum(m, 'sallyport_gateway_renewals_total{', 'outcome="ok"'),
    renewFail: sum(m, 'sallyport_gateway_renewals_total{') - sum(m, 'sallyport_gateway_renewals_total{', 'outcome="ok"'),
    joined: sum(m, 'sallyport_gateway_renewals_joined_total'),
    logouts: sum(m, 'sallyport_gateway_logouts_total'),
    logins: C.logins,
  };
  lastReq = C.requests;
  lastT = now;
  samples.push(s);
  console.log(row(s));
}
const pad = (v, n) => String(v).padStart(n);
const HEAD = `${pad('t s', 6)} ${pad('phase', 6)} ${pad('RSS MB', 7)} ${pad('fds', 5)} ${pad('requests', 9)} ${pad('req/s', 6)} ${pad('non200', 7)} ${pad('renewals', 9)} ${pad('renew!ok', 8)} ${pad('joined', 7)} ${pad('logins', 7)} ${pad('logouts', 7)}`;
const row = (s) => `${pad(s.t.toFixed(0), 6)} ${pad(s.phase, 6)} ${pad(s.rss.toFixed(1), 7)} ${pad(s.fds, 5)} ${pad(s.requests, 9)} ${pad(s.rps.toFixed(0), 6)} ${pad(s.non200, 7)} ${pad(s.renewals, 9)} ${pad(s.renewFail, 8)} ${pad(s.joined, 7)} ${pad(s.logins, 7)} ${pad(s.logouts, 7)}`;

const cpu = os.cpus();
console.log(`# ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${cpu.length} CPUs (${cpu[0]?.model.trim()}); load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log(`# SESSIONS=${SESSIONS} DURATION=${DURATION} THREADS=${THREADS} ACCESS_TTL=${ACCESS_TTL} CONCURRENCY=${CONCURRENCY} USERS=${USERS} WARMUP=${WARMUP} LOGOUT_RATE=${LOGOUT_RATE}/min PAIR_EVERY=${PAIR_EVERY}; binary ${BIN}`);
console.log(`gateway pid ${GW_PID}: RSS ${RSS_START.toFixed(1)} MB, fds ${FD_BASELINE} (${FD_BASELINE_KINDS}) before any request\n`);
console.log(HEAD);
let sampling = Promise.resolve();
const timer = setInterval(() => { sampling = sampling.then(sample); }, SAMPLE_SECS * 1000);

// ---------------------------------------------------------------- login phase
{
  let next = 0;
  const worker = async () => {
    while (next < SESSIONS) await login(next++);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}
const loginSecs = (Date.now() - runStart) / 1000;
const fdAtCycle = fdCount(GW_PID);

// ---------------------------------------------------------------- cycle phase
phase = 'cycle';
phaseStart = Date.now();
{
  const end = phaseStart + DURATION * 1000;
  let next = 0, logoutsStarted = 0, visits = 0;
  const due = () => Math.floor(((Date.now() - phaseStart) / 60000) * LOGOUT_RATE * SESSIONS);
  const worker = async () => {
    while (Date.now() < end) {
      const i = next++ % SESSIONS;
      const s = sessions[i];
      if (s.busy) {
        // Only with fewer sessions than CONCURRENCY: let the holder finish.
        await new Promise(setImmediate);
        continue;
      }
      s.busy = true;
      try {
        if (logoutsStarted < due()) {
          logoutsStarted++;
          await logout(i);
        } else if (PAIR_EVERY && ++visits % PAIR_EVERY === 0) {
          C.pairs++;
          await Promise.all([visit(s), visit(s)]);
        } else {
          await visit(s);
        }
      } finally {
        s.busy = false;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}
await sampling;
clearInterval(timer);
await sample();

// ---------------------------------------------------------------- after
phase = 'after';
phaseStart = Date.now();
agent.destroy();
await sleep(FD_WAIT * 1000);
await sample();
const FD_AFTER = fdCount(GW_PID);
const fdAfterKinds = fdKinds(GW_PID);
const peersAfter = tcpPeers(GW_PID);
const final = status(GW_PID);
// VmHWM is updated lazily by the kernel; a sample may have seen a little more.
const peak = Math.max(final.hwm, ...samples.map((s) => s.rss));
const issuerHwm = status(children[1].pid).hwm;

// ---------------------------------------------------------------- verdict
const median = (a) => {
  const b = [...a].sort((x, y) => x - y);
  const n = b.length;
  return n ? (n % 2 ? b[(n - 1) >> 1] : (b[n / 2 - 1] + b[n / 2]) / 2) : NaN;
};
const steady = samples.filter((s) => s.phase === 'cycle' && s.tp >= WARMUP);
const third = Math.ceil(steady.length / 3);
const early = median(steady.slice(0, third).map((s) => s.rss));
const late = median(steady.slice(steady.length - third).map((s) => s.rss));
const growth = late / early - 1;
// Least-squares slope of RSS over the steady samples, MB per minute.
let slope = NaN;
if (steady.length >= 2) {
  const xs = steady.map((s) => s.t / 60), ys = steady.map((s) => s.rss);
  const mx = xs.reduce((a, b) => a + b) / xs.length, my = ys.reduce((a, b) => a + b) / ys.length;
  const sxy = xs.reduce((a, x, k) => a + (x - mx) * (ys[k] - my), 0), sxx = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  slope = sxy / sxx;
}
const maxSampled = Math.max(...samples.map((s) => s.rss));
const m = await metrics();
const rejected = Object.entries(m).filter(([k]) => k.startsWith('sallyport_gateway_rejected_total'))
  .map(([k, v]) => `${(k.match(/reason="([^"]*)"/) || [])[1]}=${v}`).join(' ') || 'none';
const answers = C.requests - C.expected401;
const non200Share = C.non200 / Math.max(answers, 1);
const cycleRps = steady.length ? median(steady.map((s) => s.rps)) : NaN;

const checks = [
  [`peak RSS ${peak.toFixed(1)} MB <= ${LIMIT_MB} MB`, peak <= LIMIT_MB],
  steady.length >= 3
    ? [`RSS growth after warm-up ${(growth * 100).toFixed(1)} % <= ${(MAX_GROWTH * 100).toFixed(0)} % (median of the first third of the post-warm-up samples ${early.toFixed(1)} MB, of the last third ${late.toFixed(1)} MB; slope ${slope.toFixed(2)} MB/min)`, growth <= MAX_GROWTH]
    : [`RSS growth after warm-up: only ${steady.length} post-warm-up samples, not judged`, true],
  [`fds after the run ${FD_AFTER} <= baseline ${FD_BASELINE} + ${FD_TOLERANCE}`, FD_AFTER <= FD_BASELINE + FD_TOLERANCE],
  [`non-200 answers ${C.non200} of ${answers} (${(non200Share * 100).toFixed(3)} %) <= ${(MAX_NON200 * 100).toFixed(1)} %`, non200Share <= MAX_NON200],
  [`replayed cookies of logged-out sessions refused: ${C.expected401} of ${C.logouts} with 401, ${C.notLoggedOut} still accepted`, C.notLoggedOut === 0],
];

console.log(`
Login phase: ${SESSIONS} sessions in ${loginSecs.toFixed(0)} s (${C.loginFailures} logins failed after retries); cycle phase ${DURATION} s at a median ${cycleRps.toFixed(0)} req/s after warm-up.
Requests: ${C.requests} (${C.pairs} same-cookie pairs), non-200: ${C.non200}${C.non200 ? ` (${Object.entries(C.statuses).map(([k, v]) => `${k === '0' ? 'no answer' : k}×${v}`).join(', ')})` : ''}, expected 401s after logout: ${C.expected401}.
Gateway metrics: renewals ok ${sum(m, 'sallyport_gateway_renewals_total{', 'outcome="ok"')}, other outcomes ${sum(m, 'sallyport_gateway_renewals_total{') - sum(m, 'sallyport_gateway_renewals_total{', 'outcome="ok"')}, joined ${sum(m, 'sallyport_gateway_renewals_joined_total')}, logins ok ${sum(m, 'sallyport_gateway_logins_total{', 'outcome="ok"')}, logouts ${sum(m, 'sallyport_gateway_logouts_total')} (revocation ok ${sum(m, 'sallyport_gateway_logouts_total{', 'revocation="ok"')}), rejected: ${rejected}.
Gateway RSS: ${RSS_START.toFixed(1)} MB before any request, max sampled ${maxSampled.toFixed(1)} MB, peak (VmHWM) ${final.hwm.toFixed(1)} MB, ${final.rss.toFixed(1)} MB at the end. (Issuer peak, for reference: ${issuerHwm.toFixed(1)} MB.)
Gateway fds: ${FD_BASELINE} before any request (${FD_BASELINE_KINDS}), ${fdAtCycle} when the cycle phase began, ${FD_AFTER} ${FD_WAIT} s after the client closed its connections (${fdAfterKinds}); TCP: ${peersAfter}.

Verdict:`);
let pass = true;
for (const [text, ok] of checks) {
  console.log(`  ${ok ? 'PASS' : 'FAIL'}  ${text}`);
  pass &&= ok;
}
console.log(pass ? 'memory target met' : 'memory target NOT met');
stopping = true;
process.exitCode = pass ? 0 : 1;
cleanup();
