// Starts `sallyport demo` for the browser tests and launches Debian's Chromium.
//
// The demo runs on free loopback ports with a temporary data directory and a
// short access-token lifetime, so that expiry happens within a test.

import { spawn, execFile } from "node:child_process";
import { mkdtemp, rm, mkdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { chromium } from "playwright-core";

import { logStream, registerSecrets, rustLog } from "../../scripts/lib/test-log.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
export const artifacts = path.join(here, "artifacts");

export const BIN = process.env.SALLYPORT_BIN ?? "/var/cache/sallyport/target/debug/sallyport";
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

// Every password and generated secret of this run, for the log scan (registerSecrets
// replaces the suite's list, so it is kept whole here).
const secrets = new Set();
function register(...values) {
  for (const v of values) if (v) secrets.add(v);
  registerSecrets("e2e", [...secrets]);
}

/**
 * Starts `sallyport demo`. Resolves once its banner names every address.
 * `dataDir` reuses a directory (a second run); otherwise a fresh one is made.
 * `flow` is `code` (the default: OpenID Connect, the login page is the
 * issuer's) or `password` (the article's flow: the gateway's login form).
 */
export async function startDemo({ ttl = 4, password = "e2e-demo-password-1", dataDir, flow = "code" } = {}) {
  const dir = dataDir ?? (await mkdtemp(path.join(tmpdir(), "sallyport-e2e-")));
  const args = [
    "demo",
    "--flow", flow,
    "--data-dir", dir,
    "--port", "0",
    "--issuer-port", "0",
    "--app-port", "0",
    "--access-token-ttl", String(ttl),
  ];
  const child = spawn(BIN, args, {
    // The password comes from the environment (never argv), used on a first run only.
    env: { ...process.env, SALLYPORT_DEMO_PASSWORD: password, RUST_LOG: rustLog("warn"), NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const sink = logStream("e2e", `demo-${flow}`);
  register(password);
  child.stderr.on("data", (d) => {
    sink?.write(d);
    stderr += d;
    if (process.env.E2E_VERBOSE) process.stderr.write(d);
  });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));

  const banner = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start in 90 s\n${stdout}\n${stderr}`)), 90_000);
    child.stdout.on("data", (d) => {
      stdout += d;
      const found = parseBanner(stdout);
      if (found) {
        clearTimeout(timer);
        resolve(found);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`demo exited (${code ?? signal}) before it was ready\n${stdout}\n${stderr}`));
    });
  });

  // The secrets the demo generated in its data directory: the session secret and,
  // in the code flow, the gateway's client secret.
  for (const file of ["session-secret", "client-secret"]) {
    register((await readFile(path.join(dir, file), "utf8").catch(() => "")).trim());
  }

  return {
    ...banner,
    flow,
    dataDir: dir,
    /** Where the browser signs in: the issuer's page (code flow) or the gateway's. */
    isLoginPage(url) {
      const u = new URL(url);
      return flow === "code"
        ? u.origin === banner.issuer && u.pathname === "/oauth/authorize"
        : u.origin === banner.gateway && u.pathname === "/auth/login";
    },
    /**
     * Where the page's **Log out** ends: the app's signed-out page after the
     * issuer's end-session endpoint (code flow), or the login page (password flow).
     */
    isAfterLogout(url) {
      if (flow !== "code") return this.isLoginPage(url);
      const u = new URL(url);
      return u.origin === banner.gateway && u.pathname === "/signed-out";
    },
    /**
     * `sallyport session revoke --user` as the banner and the docs say, in a
     * separate process against the demo's settings file (database, issuer and
     * the gateway's back-channel logout address).
     */
    async revoke() {
      return sallyport("session", "revoke", "--config", banner.config, "--user", banner.username);
    },
    stdout: () => stdout,
    stderr: () => stderr,
    /** Calls the issuer has seen, counted by the demo (`/demo/stats` on the app). */
    async stats() {
      const res = await fetch(`${banner.app}/demo/stats`);
      return res.json();
    },
    /**
     * The issuer's own count of refresh-token requests (`/metrics`, summed
     * over outcomes) — a second witness next to `stats()`.
     */
    async issuerRefreshes() {
      const text = await (await fetch(`${banner.issuer}/metrics`)).text();
      let total = 0;
      for (const line of text.split("\n")) {
        const m = line.match(/^sallyport_issuer_refreshes_total(?:\{[^}]*\})?\s+(\d+(?:\.\d+)?)$/);
        if (m) total += Number(m[1]);
      }
      return total;
    },
    /** SIGTERM (as Ctrl-C) and wait; resolves with the exit status. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
    async cleanup() {
      await this.stop();
      if (!dataDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

function parseBanner(text) {
  const field = (name) => text.match(new RegExp(`^\\s*${name}:\\s+(\\S+)`, "m"))?.[1];
  const open = field("Open");
  const issuer = field("issuer");
  const app = field("app");
  const database = field("database");
  const config = field("config");
  const username = field("Username");
  const password = field("Password");
  if (!(open && issuer && app && database && config && username && password && /Press Ctrl-C/.test(text))) return null;
  return {
    gateway: open.replace(/\/$/, ""),
    issuer,
    app,
    database,
    config,
    username,
    password,
    createdUser: /Created the demo user/.test(text),
  };
}

/** Runs the sallyport CLI (e.g. `session revoke`) and returns its output; its log goes with the demo's. */
export async function sallyport(...args) {
  const { stdout, stderr } = await promisify(execFile)(BIN, args, {
    timeout: 60_000,
    env: { ...process.env, RUST_LOG: rustLog("warn"), NO_COLOR: "1" },
  });
  const sink = logStream("e2e", "cli");
  if (sink) sink.end(stderr);
  return { stdout, stderr };
}

export async function launchBrowser() {
  await mkdir(artifacts, { recursive: true });
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

/** Waits (really) until the unix time `unix` has passed, plus `marginMs`. */
export async function sleepUntil(unix, marginMs = 600) {
  const ms = unix * 1000 - Date.now() + marginMs;
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
}

/** Fills and submits the login form: the issuer's (code flow) or the gateway's (password flow). */
export async function submitLogin(page, username, password) {
  await page.locator('input[name="username"]').fill(username);
  await page.locator('input[name="password"]').fill(password);
  await Promise.all([
    page.waitForNavigation({ waitUntil: "load" }),
    page.locator('form button[type="submit"], form input[type="submit"]').first().click(),
  ]);
}
