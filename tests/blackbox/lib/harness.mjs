// Black-box harness: starts the real `sallyport issuer` and `sallyport gateway`
// binaries plus a tiny Node upstream on loopback, and gives the tests a raw HTTP
// client and a cookie jar. Written from docs/design.md only: nothing here knows the
// gateway's internals, only its documented configuration keys and HTTP contract.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { logPath, registerSecrets, rustLog } from '../../../scripts/lib/test-log.mjs';

export const BIN = process.env.SALLYPORT_BIN || '/var/cache/sallyport/target/debug/sallyport';
export const SECRET = 'blackbox-suite-secret-0123456789-abcdefghij';
export const OTHER_SECRET = 'a-completely-different-secret-9876543210-zyx';
export const PASSWORD = 'correct horse battery staple 42';
registerSecrets('blackbox', [SECRET, OTHER_SECRET, PASSWORD]);

const children = new Set();
const dirs = new Set();

/**
 * Cross-cutting contract, checked on every response the suite sees: "Responses that set
 * a cookie carry Cache-Control: private, no-store" (docs/design.md).
 */
export const cacheViolations = [];

/** Kills every process this test file started; also runs on exit and on signals. */
export function killAll() {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
  children.clear();
}
process.on('exit', () => {
  killAll();
  if (!process.env.SALLYPORT_BB_KEEP) for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { killAll(); process.exit(130); });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A temporary directory, removed at exit unless SALLYPORT_BB_KEEP is set (to read logs). */
function tmpDir(tag) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `sallyport-bb-${tag}-`));
  dirs.add(d);
  return d;
}

// ---------------------------------------------------------------- the test clock
//
// Every process this file starts reads one clock offset file (SALLYPORT_TEST_CLOCK_OFFSET_FILE,
// honoured by debug builds only: see crates/clock). Tests move the whole stack's clock
// forward with `advanceClock` instead of sleeping until a token expires; `clockNow` is the
// stack's "now" for assertions. Only forward: tokens already minted keep their times.

const CLOCK_DIR = tmpDir('clock');
/** The offset file shared by every issuer and gateway of this test file. */
export const CLOCK_FILE = path.join(CLOCK_DIR, 'offset-ms');
/** The binary re-reads the file every 20 ms in a background thread (sallyport_clock::TEST_OFFSET_REREAD_MS). */
const CLOCK_SETTLE_MS = 60;
let clockOffsetMs = 0;
fs.writeFileSync(CLOCK_FILE, '0');

/** The stack's current time in ms (the wall clock plus the offset). */
export function clockNow() {
  return Date.now() + clockOffsetMs;
}

/**
 * Moves the stack's clock forward by `ms` (written atomically: a rename), then waits until
 * every process has re-read it.
 */
export async function advanceClock(ms) {
  if (!(ms > 0)) return;
  clockOffsetMs += Math.ceil(ms);
  const tmp = `${CLOCK_FILE}.tmp`;
  fs.writeFileSync(tmp, String(clockOffsetMs));
  fs.renameSync(tmp, CLOCK_FILE);
  await sleep(CLOCK_SETTLE_MS);
}

/** Moves the stack's clock to `secs` before the unix-seconds time `exp` (negative: after it). */
export async function untilBeforeExp(exp, secs) {
  await advanceClock(exp * 1000 - secs * 1000 - clockNow());
}

/** process.env without inherited Sallyport settings, plus the test clock and `env` (null deletes). */
function cleanEnv(env) {
  const full = { ...process.env };
  for (const k of Object.keys(full)) if (k.startsWith('SALLYPORT_ISSUER_') || k.startsWith('SALLYPORT_GATEWAY_')) delete full[k];
  full.SALLYPORT_TEST_CLOCK_OFFSET_FILE = CLOCK_FILE;
  Object.assign(full, env);
  for (const [k, v] of Object.entries(full)) if (v === null || v === undefined) delete full[k];
  return full;
}

function spawnLogged(args, env, logFile) {
  const out = fs.openSync(logFile, 'a');
  const full = cleanEnv(env);
  const child = spawn(BIN, args, { env: full, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

async function waitHealthy(port, child, logFile, what) {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) {
      throw new Error(`${what} exited with ${child.exitCode}:\n${fs.readFileSync(logFile, 'utf8')}`);
    }
    try {
      const r = await request(port, 'GET', '/healthz', { timeout: 1000 });
      if (r.status === 200) return;
    } catch { /* not up yet */ }
    await sleep(100);
  }
  throw new Error(`${what} did not become healthy:\n${fs.readFileSync(logFile, 'utf8')}`);
}

// ---------------------------------------------------------------- issuer

export class Issuer {
  constructor({ accessTtl = 900, reuseInterval = 10 } = {}) {
    this.dir = tmpDir('issuer');
    this.db = `sqlite://${path.join(this.dir, 'issuer.db')}`;
    this.accessTtl = accessTtl;
    this.reuseInterval = reuseInterval;
    this.log = logPath('blackbox', 'issuer', path.join(this.dir, 'issuer.log'));
  }

  env() {
    return {
      SALLYPORT_ISSUER_DATABASE_URL: this.db,
      SALLYPORT_ISSUER_LISTEN: `127.0.0.1:${this.port}`,
      SALLYPORT_ISSUER_ISSUER: `http://127.0.0.1:${this.port}`,
      SALLYPORT_ISSUER_ACCESS_TOKEN_TTL_SECS: String(this.accessTtl),
      SALLYPORT_ISSUER_REFRESH_REUSE_INTERVAL_SECS: String(this.reuseInterval),
      // The suite logs in a lot from one address; rate limiting is not under test here.
      SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_BURST: '100000',
      SALLYPORT_ISSUER_RATE_LIMIT__ADDRESS_BURST: '100000',
      SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_REPLENISH_SECS: '1',
      SALLYPORT_ISSUER_RATE_LIMIT__ADDRESS_REPLENISH_SECS: '1',
      SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_ADDRESS_BURST: '100000',
      SALLYPORT_ISSUER_RATE_LIMIT__ACCOUNT_ADDRESS_REPLENISH_SECS: '1',
      // Cheap hashing keeps the suite fast; argon2 parameters are not under test.
      SALLYPORT_ISSUER_ARGON2__MEMORY_KIB: '1024',
      SALLYPORT_ISSUER_ARGON2__ITERATIONS: '1',
      RUST_LOG: rustLog('info'),
    };
  }

  async start() {
    if (!this.port) this.port = await freePort();
    this.child = spawnLogged(['issuer'], this.env(), this.log);
    await waitHealthy(this.port, this.child, this.log, 'sallyport issuer');
    return this;
  }

  async stop() {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }

  cli(args, input) {
    const r = spawnSync(BIN, args, { env: cleanEnv(this.env()), input, encoding: 'utf8', timeout: 60000 });
    if (r.status !== 0) throw new Error(`sallyport ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  }

  /** Adds a fresh user (password on stdin) and returns its name. */
  addUser(prefix = 'u', roles = ['reader']) {
    const name = `${prefix}${crypto.randomBytes(5).toString('hex')}`;
    const roleArgs = roles.flatMap((r) => ['--role', r]);
    this.cli(['user', 'add', name, '--name', `User ${name}`, ...roleArgs, '--password-stdin'], `${PASSWORD}\n`);
    return name;
  }

  revokeUserSessions(user) {
    return this.cli(['session', 'revoke', '--user', user]);
  }

  /** Sum of `sallyport_issuer_refreshes_total` over all outcomes. */
  async refreshCount() {
    const r = await request(this.port, 'GET', '/metrics');
    let sum = 0;
    for (const line of r.text.split('\n')) {
      const m = /^sallyport_issuer_refreshes_total(\{[^}]*\})?\s+([0-9.eE+]+)/.exec(line);
      if (m) sum += Number(m[2]);
    }
    return sum;
  }
}

// ---------------------------------------------------------------- upstream

/**
 * The protected app. Every request is logged (method, url, headers, body) so tests
 * can assert what upstream did and did not see.
 *  /hold/<id>     answers only when the test calls release(id)
 *  /stream/<id>   sends a first chunk at once, the rest after release(id)
 *  /echo-stream   reports the arrival of the request head before the body ends
 *  /cdn           echo with CDN caching headers (CDN-Cache-Control, Surrogate-Control …)
 *  /always401     401 every time
 *  /reject        401 when the bearer token is in `rejected`, else echo
 *  anything else  200 JSON echo
 *  Upgrade        a raw echo after a WebSocket 101
 */
export class Upstream {
  constructor() {
    this.log = [];
    this.waiters = new Map();
    this.arrivals = new Map();
    this.rejected = new Set();
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('upgrade', (req, socket) => this.upgrade(req, socket));
  }

  async start() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = this.server.address().port;
    return this;
  }

  stop() {
    this.server.closeAllConnections?.();
    return new Promise((r) => this.server.close(() => r()));
  }

  release(id) {
    const w = this.waiters.get(id);
    if (w) w();
    else this.waiters.set(id, 'released');
  }

  /** Resolves when a request for `/hold/<id>` (or stream/echo-stream id) has reached upstream. */
  arrived(id) {
    const a = this.arrivals.get(id);
    if (a && a.done) return Promise.resolve(a.entry);
    return new Promise((resolve) => this.arrivals.set(id, { resolve }));
  }

  noteArrival(id, entry) {
    const a = this.arrivals.get(id);
    if (a && a.resolve) a.resolve(entry);
    else this.arrivals.set(id, { done: true, entry });
  }

  waitRelease(id) {
    if (this.waiters.get(id) === 'released') return Promise.resolve();
    return new Promise((r) => this.waiters.set(id, r));
  }

  requestsFor(substr) {
    return this.log.filter((e) => e.url.includes(substr));
  }

  async handle(req, res) {
    const entry = { method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body: '' };
    this.log.push(entry);
    const url = req.url;
    if (url.startsWith('/echo-stream/')) {
      const id = url.split('/')[2];
      this.noteArrival(id, entry);
      res.writeHead(200, { 'content-type': 'text/plain' });
      req.on('data', (d) => { entry.body += d; res.write(`got:${d}`); });
      req.on('end', () => res.end('|end'));
      return;
    }
    const chunks = [];
    for await (const c of req) chunks.push(c);
    entry.body = Buffer.concat(chunks).toString('utf8');
    const auth = req.headers.authorization || '';
    if (url.startsWith('/hold/')) {
      const id = url.split('/')[2].split('?')[0];
      this.noteArrival(id, entry);
      await this.waitRelease(id);
    } else if (url.startsWith('/stream/')) {
      const id = url.split('/')[2];
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first-chunk;');
      this.noteArrival(id, entry);
      await this.waitRelease(id);
      res.end('last-chunk');
      return;
    } else if (url.startsWith('/cdn')) {
      // An app that lets CDNs cache its pages (issue 8 item 11).
      res.writeHead(200, {
        'content-type': 'application/json',
        'cache-control': 'public, max-age=3600',
        'cdn-cache-control': 'max-age=3600',
        'surrogate-control': 'max-age=3600',
        'cloudflare-cdn-cache-control': 'max-age=3600',
      });
      res.end(JSON.stringify({ method: req.method, url, headers: req.headers, body: entry.body }));
      return;
    } else if (url.startsWith('/always401')) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' });
      res.end('{"error":"upstream says no"}');
      return;
    } else if (url.startsWith('/reject') && this.rejected.has(auth.replace(/^Bearer /, ''))) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' });
      res.end('{"error":"token rejected by upstream"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ method: req.method, url, headers: req.headers, body: entry.body }));
  }

  upgrade(req, socket) {
    this.log.push({ method: req.method, url: req.url, headers: req.headers, body: '', upgrade: true });
    const key = req.headers['sec-websocket-key'] || '';
    const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
      + `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on('data', (d) => socket.write(d));
    socket.on('error', () => {});
  }
}

// ---------------------------------------------------------------- gateway

export class Gateway {
  constructor({ issuer, upstreamPort, extraToml = '', sessionToml = '', proxyToml = '', adminToml = '', publicPaths = ['/public/**'], secret = SECRET, responseTimeoutMs = 8000, backendBase }) {
    this.adminToml = adminToml;
    this.publicPaths = publicPaths;
    this.backendBase = backendBase;
    this.responseTimeoutMs = responseTimeoutMs;
    this.issuer = issuer;
    this.upstreamPort = upstreamPort;
    this.extraToml = extraToml;
    this.sessionToml = sessionToml;
    this.proxyToml = proxyToml;
    this.secret = secret;
    this.dir = tmpDir('gateway');
    this.log = logPath('blackbox', 'gateway', path.join(this.dir, 'gateway.log'));
  }

  async start() {
    this.port = await freePort();
    // The admin listener: verify, healthz, readyz, metrics (never on the public port).
    this.adminPort = await freePort();
    const i = this.backendBase || `http://127.0.0.1:${this.issuer.port}`;
    const toml = `listen = "127.0.0.1:${this.port}"
upstream = "http://127.0.0.1:${this.upstreamPort}"
public_paths = ${JSON.stringify(this.publicPaths)}
${this.extraToml}

[session]
secure = false
${this.sessionToml}

[backend]
kind = "json"
login_url = "${i}/api/login"
refresh_url = "${i}/api/refresh-token"
logout_url = "${i}/api/logout"
timeout_ms = 1500

[proxy]
response_timeout_ms = ${this.responseTimeoutMs}
${this.proxyToml}

[admin]
listen = "127.0.0.1:${this.adminPort}"
${this.adminToml}
`;
    this.configFile = path.join(this.dir, 'gateway.toml');
    fs.writeFileSync(this.configFile, toml);
    // Each gateway process has its own durable logout record (store.state_dir): a test's
    // "fresh gateway that never saw the logout" must not read another process's record.
    const env = {
      SESSION_SECRET: this.secret,
      RUST_LOG: rustLog('info'),
      SALLYPORT_GATEWAY_STORE__STATE_DIR: path.join(this.dir, 'state'),
    };
    this.child = spawnLogged(['gateway', '--config', this.configFile], env, this.log);
    await waitHealthy(this.adminPort, this.child, this.log, 'sallyport gateway');
    this.origin = `http://127.0.0.1:${this.port}`;
    return this;
  }

  req(method, p, opts = {}) {
    return request(this.port, method, p, opts);
  }

  /** A request to the admin listener (verify, healthz, readyz, metrics). */
  admin(method, p, opts = {}) {
    return request(this.adminPort, method, p, opts);
  }
}

/** Starts an issuer, an upstream and a gateway in front of it. */
export async function startStack({ accessTtl = 900, reuseInterval = 10, sessionToml = '', proxyToml = '', extraToml = '', adminToml = '' } = {}) {
  const issuer = await new Issuer({ accessTtl, reuseInterval }).start();
  const upstream = await new Upstream().start();
  const gateway = await new Gateway({ issuer, upstreamPort: upstream.port, sessionToml, proxyToml, extraToml, adminToml }).start();
  const stack = { issuer, upstream, gateway };
  stack.stop = async () => {
    // A gateway that died during the file (panic, abort) is a failure in itself.
    const died = gateway.child.exitCode !== null || gateway.child.signalCode !== null;
    const log = died ? fs.readFileSync(gateway.log, 'utf8').slice(-4000) : '';
    killAll();
    await upstream.stop();
    if (died) throw new Error(`the gateway exited during the tests (${gateway.child.exitCode ?? gateway.child.signalCode}):\n${log}`);
    if (cacheViolations.length) {
      throw new Error(`responses set the session cookie without Cache-Control: private, no-store:\n${cacheViolations.join('\n')}`);
    }
  };
  stack.login = (user) => loginJson(gateway, user);
  return stack;
}

// ---------------------------------------------------------------- HTTP

/**
 * Raw HTTP/1.1 request that never follows redirects. Returns status, headers,
 * all Set-Cookie values and the body as text (and parsed JSON when it is JSON).
 */
export function request(port, method, p, { headers = {}, body, timeout = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent: false, timeout }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        const setCookies = res.headers['set-cookie'] || [];
        const cc = res.headers['cache-control'] || '';
        if (setCookies.some((c) => c.startsWith(COOKIE)) && !(/private/.test(cc) && /no-store/.test(cc))) {
          cacheViolations.push(`${method} ${p} → ${res.statusCode} Cache-Control: ${JSON.stringify(cc)}`);
        }
        resolve({ status: res.statusCode, headers: res.headers, setCookies, text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${p}`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Sends bytes exactly as given (for request targets Node's client refuses to send). */
export function rawRequest(port, text) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    const chunks = [];
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => {
      const raw = Buffer.concat(chunks).toString('latin1');
      const [head] = raw.split('\r\n\r\n');
      const lines = head.split('\r\n');
      const status = Number(lines[0].split(' ')[1]);
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        const k = l.slice(0, i).trim().toLowerCase();
        headers[k] = headers[k] ? `${headers[k]}, ${l.slice(i + 1).trim()}` : l.slice(i + 1).trim();
      }
      resolve({ status, headers, raw });
    });
    s.on('error', reject);
    s.setTimeout(20000, () => s.destroy(new Error('raw request timeout')));
  });
}

export const COOKIE = 'sallyport';

/** Parses one Set-Cookie value. */
export function parseSetCookie(sc) {
  const [pair, ...attrs] = sc.split(';');
  const i = pair.indexOf('=');
  const out = { name: pair.slice(0, i).trim(), value: pair.slice(i + 1).trim(), attrs: {} };
  for (const a of attrs) {
    const j = a.indexOf('=');
    const k = (j < 0 ? a : a.slice(0, j)).trim().toLowerCase();
    out.attrs[k] = j < 0 ? true : a.slice(j + 1).trim();
  }
  return out;
}

/** True when this Set-Cookie deletes the cookie. */
export function isDeletion(c) {
  if (c.value === '') return true;
  if (c.attrs['max-age'] !== undefined && Number(c.attrs['max-age']) <= 0) return true;
  if (c.attrs.expires && Date.parse(c.attrs.expires) < Date.now()) return true;
  return false;
}

/** A minimal cookie jar keyed by name (host-only, path /). */
export class Jar {
  constructor(init = {}) { this.cookies = new Map(Object.entries(init)); }
  apply(res) {
    for (const sc of res.setCookies) {
      const c = parseSetCookie(sc);
      if (isDeletion(c)) this.cookies.delete(c.name);
      else this.cookies.set(c.name, c.value);
    }
    return res;
  }
  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
  clone() { return new Jar(Object.fromEntries(this.cookies)); }
  sessionCookies() { return [...this.cookies.keys()].filter((k) => k === COOKIE || k.startsWith(`${COOKIE}.`)); }
  get size() { return this.cookies.size; }
}

/** Session-cookie Set-Cookie values that set (not delete) the session. */
export function sessionSets(res) {
  return res.setCookies.map(parseSetCookie)
    .filter((c) => (c.name === COOKIE || c.name.startsWith(`${COOKIE}.`)) && !isDeletion(c));
}

export async function loginJson(gateway, user, password = PASSWORD) {
  const res = await gateway.req('POST', '/auth/login', {
    headers: { 'content-type': 'application/json', accept: 'application/json', origin: gateway.origin },
    body: JSON.stringify({ username: user, password }),
  });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.text}`);
  const jar = new Jar();
  jar.apply(res);
  if (jar.sessionCookies().length === 0) throw new Error(`login set no session cookie: ${JSON.stringify(res.setCookies)}`);
  return { jar, res };
}

export function decodeJwt(token) {
  const [, payload] = token.split('.');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

export function bearerOf(entry) {
  const a = entry.headers.authorization || '';
  return a.startsWith('Bearer ') ? a.slice(7) : null;
}

export const AUTH_ERRORS = ['session_expired', 'reauth_required', 'backend_unavailable'];

/** An API call (JSON) through the gateway with the jar's cookies. */
export function api(gateway, jar, method, p, { headers = {}, body } = {}) {
  const h = { accept: 'application/json', ...headers };
  if (jar && jar.size) h.cookie = jar.header();
  return gateway.req(method, p, { headers: h, body });
}

// ---------------------------------------------------------------- Iron (Fe26.2)

/**
 * Seals `obj` in the Iron Fe26.2 format as iron-session writes it (password id "1",
 * suffix "~2"), so tests can forge cookies: wrong secret, expired, odd contents.
 */
export function ironSeal(obj, password, { ttlMs = 3600_000, now = Date.now(), id = '1' } = {}) {
  const data = Buffer.from(JSON.stringify(obj), 'utf8');
  const encSalt = crypto.randomBytes(32).toString('hex');
  const encKey = crypto.pbkdf2Sync(password, encSalt, 1, 32, 'sha1');
  const iv = crypto.randomBytes(16);
  const cipher = crypto.createCipheriv('aes-256-cbc', encKey, iv);
  const enc = Buffer.concat([cipher.update(data), cipher.final()]);
  const exp = ttlMs ? String(now + ttlMs) : '';
  const base = `Fe26.2*${id}*${encSalt}*${iv.toString('base64url')}*${enc.toString('base64url')}*${exp}`;
  const macSalt = crypto.randomBytes(32).toString('hex');
  const macKey = crypto.pbkdf2Sync(password, macSalt, 1, 32, 'sha1');
  const mac = crypto.createHmac('sha256', macKey).update(base).digest('base64url');
  return `${base}*${macSalt}*${mac}~2`;
}

export function ironUnseal(sealed, password) {
  const s = sealed.replace(/~2$/, '');
  const parts = s.split('*');
  if (parts.length !== 8) throw new Error('bad seal');
  const [, , encSalt, iv, enc] = parts;
  const encKey = crypto.pbkdf2Sync(password, encSalt, 1, 32, 'sha1');
  const d = crypto.createDecipheriv('aes-256-cbc', encKey, Buffer.from(iv, 'base64url'));
  return JSON.parse(Buffer.concat([d.update(Buffer.from(enc, 'base64url')), d.final()]).toString('utf8'));
}

/** Joins a jar's session cookie (reassembling chunks if any) into one seal. */
export function sessionSeal(jar) {
  if (jar.cookies.has(COOKIE)) return decodeURIComponent(jar.cookies.get(COOKIE));
  let s = '';
  for (let i = 0; jar.cookies.has(`${COOKIE}.${i}`); i++) s += jar.cookies.get(`${COOKIE}.${i}`);
  return decodeURIComponent(s);
}

/**
 * Same-origin test for a Location header, judged the way a browser resolves it — both
 * as served here (plain http) and as it would be behind TLS, since a value like
 * `http:/evil.example` is relative only while the page's scheme is http.
 */
export function staysOnSite(location, origin) {
  if (location === undefined) return true;
  const flipped = origin.startsWith('https:') ? origin.replace(/^https:/, 'http:') : origin.replace(/^http:/, 'https:');
  for (const o of [origin, flipped]) {
    let u;
    try { u = new URL(location, `${o}/auth/login`); } catch { continue; /* unusable: not a redirect off-site */ }
    if (u.origin !== o) return false;
  }
  return true;
}

export function htmlUnescape(s) {
  return s.replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#([0-9]+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

export function form(obj) {
  return new URLSearchParams(obj).toString();
}
