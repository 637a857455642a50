// What the OpenID Connect suite runs: the certified `oidc-provider` (panva) on
// loopback, an upstream that echoes the headers it got, and `sallyport gateway`
// replicas with `backend.kind = "oidc"` in front of it.

import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import Provider from 'oidc-provider';
import { chromium } from 'playwright-core';

import { logPath, registerSecrets, rustLog } from '../../scripts/lib/test-log.mjs';

export const BIN = process.env.SALLYPORT_BIN ?? '/var/cache/sallyport/target/debug/sallyport';
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const SECRET = 'oidc-suite-session-secret-0123456789abcdef';
export const CLIENT_ID = 'sallyport-gateway';
export const CLIENT_SECRET = 'a-client-secret-for-the-oidc-suite';
registerSecrets('oidc', [SECRET, CLIENT_SECRET]);
/** The provider's access-token lifetime: short, so the gateway renews within a test. */
export const ACCESS_TOKEN_TTL = 20;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** An RS256 signing key as a private JWK (what oidc-provider's `jwks` takes). */
export function rsaKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

/**
 * oidc-provider's adapter interface over one in-process Map shared by every Provider
 * instance of the run (its built-in memory adapter keeps a store per instance).
 */
function sharedAdapter() {
  const store = new Map();
  const grants = new Map();
  const live = (key) => {
    const e = store.get(key);
    if (!e) return undefined;
    if (e.exp && e.exp < Date.now()) { store.delete(key); return undefined; }
    return e.payload;
  };
  return class SharedAdapter {
    constructor(model) { this.model = model; }
    key(id) { return `${this.model}:${id}`; }
    async upsert(id, payload, expiresIn) {
      store.set(this.key(id), { payload, exp: expiresIn ? Date.now() + expiresIn * 1000 : 0 });
      if (payload.grantId) {
        const ids = grants.get(payload.grantId) ?? [];
        ids.push(this.key(id));
        grants.set(payload.grantId, ids);
      }
      if (payload.uid) store.set(`uid:${this.model}:${payload.uid}`, { payload: { id }, exp: 0 });
      if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: { id }, exp: 0 });
    }
    async find(id) { return live(this.key(id)); }
    async findByUid(uid) { const r = live(`uid:${this.model}:${uid}`); return r && this.find(r.id); }
    async findByUserCode(code) { const r = live(`userCode:${code}`); return r && this.find(r.id); }
    async consume(id) { const p = live(this.key(id)); if (p) p.consumed = Math.floor(Date.now() / 1000); }
    async destroy(id) { store.delete(this.key(id)); }
    async revokeByGrantId(grantId) {
      for (const k of grants.get(grantId) ?? []) store.delete(k);
      grants.delete(grantId);
    }
  };
}

/**
 * oidc-provider on a free loopback port, with one registered confidential client
 * (the gateway), a test account per login name (its dev interactions accept any
 * login and password), back-channel logout and revocation enabled, short access
 * tokens and refresh-token rotation.
 *
 * `rotate(keys)` swaps in a second Provider instance that signs with other keys; both
 * use one shared store, so sessions, grants and refresh tokens survive — a key
 * rotation as the gateway sees it.
 */
export async function startProvider({ gateways }) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const backchannelCalls = [];
  const jwksFetches = { count: 0 };
  const adapter = sharedAdapter();
  const config = (keys) => ({
    adapter,
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: gateways.map((g) => `${g}/auth/callback`),
      post_logout_redirect_uris: gateways.map((g) => `${g}/`),
      backchannel_logout_uri: `${gateways[0]}/auth/backchannel-logout`,
      backchannel_logout_session_required: true,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys },
    cookies: { keys: ['oidc-suite-provider-cookie-key-0123456789'] },
    claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, name: `Test User ${id}`, email: `${id}@example.test` };
        },
      };
    },
    features: {
      devInteractions: { enabled: true },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: 600,
      RefreshToken: 3600,
      Session: 3600,
      Grant: 3600,
      Interaction: 600,
    },
    rotateRefreshToken: true,
    // A first-party client gets refresh tokens without `offline_access` (which
    // oidc-provider drops unless the request says prompt=consent).
    async issueRefreshToken(ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    pkce: { required: () => true },
    // oidc-provider refuses outgoing requests (back-channel logout) to special-use
    // addresses such as loopback (SSRF protection). The gateway here is on loopback,
    // so this test provider lifts that; a real deployment posts to a routable host.
    fetch(url, options) {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
  });
  let current = new Provider(issuer, config([rsaKey('key-1')]));
  const silence = (p) => {
    p.on('server_error', (ctx, err) => console.error('provider error', err));
    if (process.env.OIDC_VERBOSE) {
      p.on('grant.error', (ctx, err) => console.error('provider grant.error', err.error_description, err.error_detail));
      p.on('backchannel.error', (ctx, err) => console.error('provider backchannel.error', err));
    }
  };
  silence(current);
  current.on('backchannel.success', (client, accountId, sid) => backchannelCalls.push({ ok: true, sid }));
  current.on('backchannel.error', (err) => backchannelCalls.push({ ok: false, error: String(err) }));
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/jwks')) jwksFetches.count += 1;
    current.callback()(req, res);
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    issuer,
    backchannelCalls,
    jwksFetches,
    rotate(keys) {
      const next = new Provider(issuer, config(keys));
      silence(next);
      next.on('backchannel.success', (client, accountId, sid) => backchannelCalls.push({ ok: true, sid }));
      next.on('backchannel.error', (err) => backchannelCalls.push({ ok: false, error: String(err) }));
      current = next;
    },
    stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}

/** The protected app: answers every request with the headers it received, as JSON. */
export async function startUpstream() {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    const body = JSON.stringify({ path: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { port, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) };
}

/** Reserves the ports of a gateway replica (the provider must know its URL first). */
export async function reserveGateway() {
  const port = await freePort();
  const adminPort = await freePort();
  return { port, adminPort, url: `http://127.0.0.1:${port}` };
}

/** `sallyport gateway` with `backend.kind = "oidc"` on the reserved ports. */
export async function startGateway(slot, { issuer, upstreamPort, redisUrl, keyPrefix }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sallyport-oidc-'));
  const file = path.join(dir, 'gateway.toml');
  fs.writeFileSync(file, `
listen = "127.0.0.1:${slot.port}"
upstream = "http://127.0.0.1:${upstreamPort}"
public_origin = "${slot.url}"

[session]
secure = false

[backend]
kind = "oidc"
issuer = "${issuer}"
client_id = "${CLIENT_ID}"
client_auth = "client_secret_basic"
scope = "openid profile email"
post_logout_redirect_uri = "${slot.url}/"
timeout_ms = 5000

[admin]
listen = "127.0.0.1:${slot.adminPort}"

[store]
persist_logouts = false
${redisUrl ? `redis_url = "${redisUrl}"` : ''}
`);
  const log = logPath('oidc', 'gateway', path.join(dir, 'gateway.log'));
  const out = fs.openSync(log, 'a');
  const env = { ...process.env, SESSION_SECRET: SECRET, RUST_LOG: rustLog('info'), NO_COLOR: '1' };
  for (const k of Object.keys(env)) if (k.startsWith('SALLYPORT_GATEWAY_')) delete env[k];
  env.SALLYPORT_GATEWAY_BACKEND__CLIENT_SECRET = CLIENT_SECRET;
  // Replicas of one run share a key prefix: the Redis they share is theirs alone.
  if (keyPrefix) env.SALLYPORT_GATEWAY_STORE__KEY_PREFIX = keyPrefix;
  const child = spawn(BIN, ['gateway', '--config', file], { env, stdio: ['ignore', out, out] });
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}:\n${fs.readFileSync(log, 'utf8')}`);
    try {
      const r = await fetch(`http://127.0.0.1:${slot.adminPort}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) break;
    } catch { /* not yet */ }
    await sleep(100);
  }
  return {
    ...slot,
    child,
    log: () => fs.readFileSync(log, 'utf8'),
    async stop() {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Signs in through the provider's own pages (its dev interactions: a login form that
 * takes any login name, then a consent page) until the browser is back at the gateway.
 */
export async function signInAtProvider(page, issuer, login) {
  for (let i = 0; i < 4 && page.url().startsWith(issuer); i++) {
    const loginField = page.locator('input[name="login"]');
    if (await loginField.count()) {
      await loginField.fill(login);
      await page.locator('input[name="password"]').fill('any password');
      await Promise.all([page.waitForNavigation(), page.locator('button[type="submit"]').click()]);
      continue;
    }
    const consent = page.locator('button[type="submit"]');
    if (await consent.count()) {
      await Promise.all([page.waitForNavigation(), consent.first().click()]);
      continue;
    }
    break;
  }
}

/** GET `url` as an API call from the page's browser context (its cookies). */
export async function api(page, url) {
  const r = await page.request.get(url, { headers: { accept: 'application/json' }, maxRedirects: 0 });
  let body = null;
  try { body = await r.json(); } catch { /* not JSON */ }
  return { status: r.status(), body };
}
