// Starts the real pieces for the browser tests, all on free loopback ports:
//   `sallyport issuer`  (SQLite in a temporary directory, short access tokens)
//   `next start`        (this example, built once by `npm test` before the tests run)
//   `sallyport gateway` (in front of next start, backend = the issuer)
// and launches Debian's Chromium through playwright-core (never a downloaded browser).

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { logPath, rustLog } from "../../../scripts/lib/test-log.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const appDir = path.resolve(here, "..");
export const artifacts = path.join(here, "artifacts");

export const BIN = process.env.SALLYPORT_BIN ?? "/var/cache/sallyport/target/debug/sallyport";
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

const children = new Set();
const dirs = new Set();

/** Kills every process this file started (also those of a stack that failed to start). */
export function killAll() {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  children.clear();
}
process.on("exit", () => {
  killAll();
  if (!process.env.NEXTJS_E2E_KEEP) for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function tmpDir(tag) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `sallyport-nextjs-${tag}-`));
  dirs.add(d);
  return d;
}

/** process.env without inherited Sallyport settings, plus `env`. */
function cleanEnv(env) {
  const full = { ...process.env };
  for (const k of Object.keys(full)) {
    if (k.startsWith("SALLYPORT_ISSUER_") || k.startsWith("SALLYPORT_GATEWAY_") || k === "SESSION_SECRET") delete full[k];
  }
  return { ...full, ...env };
}

/** Spawns a long-running process with its output in `logFile`. */
function spawnLogged(cmd, args, env, logFile, cwd) {
  const out = fs.openSync(logFile, "a");
  const child = spawn(cmd, args, { env: cleanEnv(env), stdio: ["ignore", out, out], cwd });
  fs.closeSync(out);
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

/** Polls `url` until it answers with one of `ok` statuses. */
async function waitFor(url, child, logFile, what, ok = (s) => s === 200) {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) {
      throw new Error(`${what} exited with ${child.exitCode}:\n${fs.readFileSync(logFile, "utf8")}`);
    }
    try {
      const r = await fetch(url, { redirect: "manual", signal: AbortSignal.timeout(2000) });
      if (ok(r.status)) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error(`${what} did not come up:\n${fs.readFileSync(logFile, "utf8")}`);
}

async function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await gone;
}

// ------------------------------------------------------------------- issuer

export class Issuer {
  constructor({ accessTtl }) {
    this.dir = tmpDir("issuer");
    this.db = `sqlite://${path.join(this.dir, "issuer.db")}`;
    this.accessTtl = accessTtl;
    this.log = logPath("nextjs", "issuer", path.join(this.dir, "issuer.log"));
  }

  env() {
    return {
      SALLYPORT_ISSUER_DATABASE_URL: this.db,
      SALLYPORT_ISSUER_LISTEN: `127.0.0.1:${this.port}`,
      SALLYPORT_ISSUER_ISSUER: this.url,
      SALLYPORT_ISSUER_ACCESS_TOKEN_TTL_SECS: String(this.accessTtl),
      // Cheap hashing keeps the suite fast; argon2 parameters are not under test here.
      SALLYPORT_ISSUER_ARGON2__MEMORY_KIB: "1024",
      SALLYPORT_ISSUER_ARGON2__ITERATIONS: "1",
      RUST_LOG: rustLog("info"),
    };
  }

  async start() {
    this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    this.child = spawnLogged(BIN, ["issuer"], this.env(), this.log);
    await waitFor(`${this.url}/healthz`, this.child, this.log, "sallyport issuer");
    return this;
  }

  stop() {
    return stopChild(this.child);
  }

  /** `sallyport user add` with the password on stdin (never argv). */
  addUser(name, displayName, password, roles = []) {
    const args = ["user", "add", name, "--name", displayName, ...roles.flatMap((r) => ["--role", r]), "--password-stdin"];
    const r = spawnSync(BIN, args, { env: cleanEnv(this.env()), input: `${password}\n`, encoding: "utf8", timeout: 60_000 });
    if (r.status !== 0) throw new Error(`sallyport ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  }

  /** `sallyport session revoke --user NAME`: the admin ends a user's sessions. */
  revokeSessions(name) {
    const r = spawnSync(BIN, ["session", "revoke", "--user", name], { env: cleanEnv(this.env()), encoding: "utf8", timeout: 60_000 });
    if (r.status !== 0) throw new Error(`sallyport session revoke failed (${r.status}): ${r.stderr}`);
  }

  /** The issuer's own count of refresh-token requests (`/metrics`, summed over outcomes). */
  async refreshes() {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    let total = 0;
    for (const line of text.split("\n")) {
      const m = line.match(/^sallyport_issuer_refreshes_total(?:\{[^}]*\})?\s+(\d+(?:\.\d+)?)$/);
      if (m) total += Number(m[1]);
    }
    return total;
  }

  /** A login straight at the issuer, as the article's `login()` does. */
  async login(username, password) {
    const res = await fetch(`${this.url}/api/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (!res.ok) throw new Error(`issuer login failed: ${res.status} ${await res.text()}`);
    return res.json();
  }

  /** Presents a refresh token to the issuer; returns the HTTP status. */
  async refresh(refreshToken) {
    const res = await fetch(`${this.url}/api/refresh-token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
    });
    return res.status;
  }
}

// ---------------------------------------------------------------- next start

/** `next start` of this example (built by `npm test` beforehand). */
export class NextApp {
  constructor({ secret, cookieName, backendUrl, profileRefreshMs }) {
    this.env = {
      SESSION_SECRET: secret,
      SESSION_COOKIE_NAME: cookieName,
      SESSION_COOKIE_SECURE: "false",
      BACKEND_URL: backendUrl,
      PROFILE_REFRESH_MS: String(profileRefreshMs),
      NEXT_TELEMETRY_DISABLED: "1",
      NODE_ENV: "production",
    };
    this.dir = tmpDir("next");
    this.log = path.join(this.dir, "next.log");
  }

  async start() {
    if (!fs.existsSync(path.join(appDir, ".next", "BUILD_ID"))) {
      throw new Error("examples/nextjs is not built: run `npm test` (it runs `next build` first) or `npm run build`");
    }
    this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    const nextBin = path.join(appDir, "node_modules", "next", "dist", "bin", "next");
    this.child = spawnLogged(process.execPath, [nextBin, "start", "-H", "127.0.0.1", "-p", String(this.port)], this.env, this.log, appDir);
    // Without the gateway's Authorization header the backend call fails: any answer will do.
    await waitFor(`${this.url}/favicon.ico`, this.child, this.log, "next start", (s) => s > 0);
    return this;
  }

  stop() {
    return stopChild(this.child);
  }
}

// ------------------------------------------------------------------ gateway

export class Gateway {
  constructor({ issuer, upstream, secret, cookieName }) {
    this.issuer = issuer;
    this.upstream = upstream;
    this.secret = secret;
    this.cookieName = cookieName;
    this.dir = tmpDir("gateway");
    this.log = logPath("nextjs", "gateway", path.join(this.dir, "gateway.log"));
  }

  async start() {
    this.port = await freePort();
    this.adminPort = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    const i = this.issuer.url;
    // The example's own gateway.toml, with the addresses of this run (environment
    // variables override the file, as in production).
    const env = {
      SESSION_SECRET: this.secret,
      SALLYPORT_GATEWAY_LISTEN: `127.0.0.1:${this.port}`,
      SALLYPORT_GATEWAY_UPSTREAM: this.upstream.url,
      SALLYPORT_GATEWAY_BACKEND__LOGIN_URL: `${i}/api/login`,
      SALLYPORT_GATEWAY_BACKEND__REFRESH_URL: `${i}/api/refresh-token`,
      SALLYPORT_GATEWAY_BACKEND__LOGOUT_URL: `${i}/api/logout`,
      // Its own durable logout record, removed with the run (not the default under $HOME).
      SALLYPORT_GATEWAY_STORE__STATE_DIR: path.join(this.dir, "state"),
      RUST_LOG: rustLog("info"),
    };
    if (this.cookieName) env.SALLYPORT_GATEWAY_SESSION__COOKIE_NAME = this.cookieName;
    const config = path.join(appDir, "gateway.toml");
    this.child = spawnLogged(BIN, ["gateway", "--config", config, "--admin-listen", `127.0.0.1:${this.adminPort}`], env, this.log);
    await waitFor(`http://127.0.0.1:${this.adminPort}/healthz`, this.child, this.log, "sallyport gateway");
    return this;
  }

  stop() {
    return stopChild(this.child);
  }
}

/** Issuer-independent part of a stack: next start + a gateway in front of it. */
export async function startApp({ issuer, secret, cookieName, profileRefreshMs = 30000 }) {
  const next = await new NextApp({ secret, cookieName, backendUrl: issuer.url, profileRefreshMs }).start();
  const gateway = await new Gateway({ issuer, upstream: next, secret, cookieName }).start();
  return {
    next,
    gateway,
    url: gateway.url,
    async stop() {
      await gateway.stop();
      await next.stop();
    },
  };
}

// ------------------------------------------------------------------ browser

export async function launchBrowser() {
  fs.mkdirSync(artifacts, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // The flags this machine's closed network needs (no background fetches).
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Fills and submits the gateway's login form. */
export async function submitLogin(page, username, password) {
  await page.locator('input[name="username"]').fill(username);
  await page.locator('input[name="password"]').fill(password);
  await Promise.all([
    page.waitForNavigation({ waitUntil: "load" }),
    page.locator('form button[type="submit"], form input[type="submit"]').first().click(),
  ]);
}
