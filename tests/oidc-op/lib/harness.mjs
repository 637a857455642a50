// Starts the real `sallyport issuer` as an OpenID provider with a client registry, a
// loopback back-channel logout receiver, and signs in through the issuer's login form
// with plain fetch (no browser: the form is server-rendered HTML).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { logPath, registerSecrets, rustLog } from '../../../scripts/lib/test-log.mjs';

export const BIN = process.env.SALLYPORT_BIN || '/var/cache/sallyport/target/debug/sallyport';
export const PASSWORD = 'correct horse battery staple 42';
export const APP_SECRET = 'oidc-op-suite-app-secret-0123456789';
registerSecrets('oidc-op', [PASSWORD, APP_SECRET]);

const children = new Set();
const dirs = new Set();
process.on('exit', () => {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
  if (!process.env.SALLYPORT_OP_KEEP) for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

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

/** Environment without inherited Sallyport settings, plus `env`. */
function cleanEnv(env) {
  const full = { ...process.env };
  for (const k of Object.keys(full)) if (k.startsWith('SALLYPORT_ISSUER_')) delete full[k];
  return { ...full, ...env };
}

/** A loopback back-channel logout receiver: records every `logout_token`. */
export async function backchannelReceiver() {
  const tokens = [];
  const waiters = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const ok = req.method === 'POST'
        && (req.headers['content-type'] || '').startsWith('application/x-www-form-urlencoded');
      const token = new URLSearchParams(body).get('logout_token');
      if (!ok || !token) {
        res.writeHead(400).end();
        return;
      }
      tokens.push(token);
      for (const w of waiters.splice(0)) w();
      res.writeHead(200, { 'cache-control': 'no-store' }).end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/backchannel`;
  return {
    url,
    tokens,
    /** Resolves with the `n`-th token (1-based) once it arrived, within `ms`. */
    async nth(n, ms = 10000) {
      const deadline = Date.now() + ms;
      while (tokens.length < n) {
        if (Date.now() > deadline) throw new Error(`only ${tokens.length} logout tokens, wanted ${n}`);
        await new Promise((r) => { waiters.push(r); setTimeout(r, 100); });
      }
      return tokens[n - 1];
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

export class Issuer {
  /**
   * `redirectBase`: where the (never contacted) relying party lives; `backchannel`:
   * the receiver URL registered for the confidential client.
   */
  constructor({ backchannel, reuseInterval = 10 }) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sallyport-op-'));
    dirs.add(this.dir);
    this.backchannel = backchannel;
    this.reuseInterval = reuseInterval;
    this.log = logPath('oidc-op', 'issuer', path.join(this.dir, 'issuer.log'));
    this.config = path.join(this.dir, 'issuer.toml');
  }

  get base() { return `http://127.0.0.1:${this.port}`; }
  get redirectUri() { return `http://127.0.0.1:${this.rpPort}/callback`; }
  get postLogoutUri() { return `http://127.0.0.1:${this.rpPort}/signed-out`; }
  get spaRedirectUri() { return `http://localhost:${this.rpPort}/spa/callback`; }

  env() {
    // The file goes in --config: SALLYPORT_ISSUER_CONFIG would also be read as a
    // setting named `config` under the SALLYPORT_ISSUER_ prefix and refused.
    return cleanEnv({ RUST_LOG: rustLog('info') });
  }

  async start() {
    this.port = await freePort();
    this.rpPort = await freePort();
    // The client registry, in the format docs/configuration.md documents.
    fs.writeFileSync(this.config, `
database_url = "sqlite://${path.join(this.dir, 'issuer.db')}"
listen = "127.0.0.1:${this.port}"
issuer = "http://127.0.0.1:${this.port}"
refresh_reuse_interval_secs = ${this.reuseInterval}
allow_public_clients = false

[argon2]
memory_kib = 1024
iterations = 1

[backchannel_logout]
retry_base_ms = 100

[[clients]]
id = "app"
secret = "${APP_SECRET}"
redirect_uris = ["${this.redirectUri}"]
post_logout_redirect_uris = ["${this.postLogoutUri}"]
backchannel_logout_uri = "${this.backchannel}"
backchannel_logout_session_required = true

[[clients]]
id = "spa"
redirect_uris = ["${this.spaRedirectUri}"]
`);
    const out = fs.openSync(this.log, 'a');
    this.child = spawn(BIN, ['issuer', '--config', this.config], { env: this.env(), stdio: ['ignore', out, out] });
    fs.closeSync(out);
    children.add(this.child);
    for (let i = 0; i < 300; i++) {
      if (this.child.exitCode !== null) throw new Error(`issuer exited:\n${fs.readFileSync(this.log, 'utf8')}`);
      try {
        const r = await fetch(`${this.base}/healthz`);
        if (r.status === 200) return this;
      } catch { /* not yet */ }
      await sleep(100);
    }
    throw new Error(`issuer not healthy:\n${fs.readFileSync(this.log, 'utf8')}`);
  }

  stop() {
    try { this.child.kill('SIGKILL'); } catch { /* gone */ }
  }

  cli(args, input) {
    const r = spawnSync(BIN, [...args, '--config', this.config], { env: this.env(), input, encoding: 'utf8', timeout: 90000 });
    if (r.status !== 0) throw new Error(`sallyport ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  }

  /**
   * Like `cli` without blocking the event loop: needed when the command talks to a
   * server in this process (the back-channel receiver must answer while
   * `sallyport session revoke` waits for its delivery).
   */
  cliAsync(args) {
    return new Promise((resolve, reject) => {
      const child = spawn(BIN, [...args, '--config', this.config], { env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; });
      child.on('exit', (code) => (code === 0 ? resolve({ out, err }) : reject(new Error(`sallyport ${args.join(' ')} failed (${code}): ${err}`))));
    });
  }

  addUser(name) {
    this.cli(['user', 'add', name, '--name', `User ${name}`, '--password-stdin'], `${PASSWORD}\n`);
    return name;
  }
}

/** The value of `<input ... name="NAME" value="...">` in the login page. */
function hiddenValue(html, name) {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!m) return undefined;
  return m[1].replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/**
 * Follows an authorization URL like a browser would: GET the login page (keeping its
 * CSRF cookie), post the form with the credentials, and return the response to the
 * post (a 303 to the client's redirect URI on success).
 */
export async function signIn(authorizationUrl, username, password = PASSWORD) {
  const page = await fetch(authorizationUrl, { redirect: 'manual' });
  if (page.status !== 200) {
    return page;
  }
  const cookie = (page.headers.get('set-cookie') || '').split(';')[0];
  const html = await page.text();
  const form = new URLSearchParams();
  for (const name of ['response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'nonce',
    'code_challenge', 'code_challenge_method', 'csrf']) {
    const v = hiddenValue(html, name);
    if (v !== undefined) form.set(name, v);
  }
  form.set('username', username);
  form.set('password', password);
  const action = new URL('/oauth/authorize', authorizationUrl);
  return fetch(action, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', origin: action.origin },
    body: form,
  });
}
