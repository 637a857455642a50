// Runs the real `sallyport issuer` binary for the Node suites: a temp directory with a
// TOML config and a SQLite database, a free loopback port, `sallyport user add` with
// the password on stdin, `sallyport keys rotate`, and a helper that reads the issuer's
// own signing keys out of the database (to forge otherwise-valid tokens: an expired
// one must be refused because it is expired, not because of a bad signature).
//
// The binary is `SALLYPORT_BIN`, default `$CARGO_TARGET_DIR/debug/sallyport` (build it
// with `cargo build -p sallyport`; scripts/test does). Every process started here is
// killed by `stop()`, and, should a test file crash before its `after` hook, on exit.
import { execFile, execFileSync, spawn } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

import { logStream } from "../../../../scripts/lib/test-log.mjs";

const targetDir = process.env.CARGO_TARGET_DIR || "/var/cache/sallyport/target";
export const sallyportBin = process.env.SALLYPORT_BIN || path.join(targetDir, "debug", "sallyport");

const running = new Set();
function killAll() {
  for (const child of running) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}
process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + (signal === "SIGINT" ? 2 : 15));
  });
}

/** A free TCP port on 127.0.0.1 (the issuer URL, hence `iss`, must be known up front). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Environment for child processes: no inherited issuer settings that could leak in. */
function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("SALLYPORT_ISSUER_")) env[k] = v;
  }
  env.RUST_LOG = env.SALLYPORT_TEST_RUST_LOG || env.SALLYPORT_INTEROP_RUST_LOG || "warn";
  return env;
}

function tomlValue(v) {
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(", ")}]`;
  return String(v);
}

/** Renders a flat object (plus one level of tables) as TOML. */
function toToml(config) {
  const top = [];
  const tables = [];
  for (const [k, v] of Object.entries(config)) {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      tables.push(`[${k}]`);
      for (const [k2, v2] of Object.entries(v)) tables.push(`${k2} = ${tomlValue(v2)}`);
    } else {
      top.push(`${k} = ${tomlValue(v)}`);
    }
  }
  return `${top.join("\n")}\n${tables.join("\n")}\n`;
}

/** Runs a `sallyport` subcommand to completion; rejects with its stderr on failure. */
export function runCli(args, { stdin, cwd, timeout = 120_000, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      sallyportBin,
      args,
      { cwd, env: { ...childEnv(), ...env }, timeout, killSignal: "SIGKILL", maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`sallyport ${args.join(" ")} failed: ${err.message}\n${stderr}`));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
    // A command that fails fast (e.g. a bad argument) closes stdin before we write.
    child.stdin.on("error", () => {});
    child.stdin.end(stdin ?? "");
  });
}

/**
 * Starts `sallyport issuer`. `settings` are merged over test defaults (cheap argon2 so
 * logins are fast; `key_cache_secs = 0` so a `keys rotate` from another process is
 * seen at once). Resolves when `/healthz` answers.
 */
export async function startIssuer(settings = {}) {
  if (!existsSync(sallyportBin)) {
    throw new Error(
      `sallyport binary not found at ${sallyportBin}: run \`cargo build -p sallyport\` or set SALLYPORT_BIN`,
    );
  }
  const dir = mkdtempSync(path.join(tmpdir(), "sallyport-issuer-"));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dbPath = path.join(dir, "issuer.db");
  const config = {
    database_url: `sqlite://${dbPath}`,
    listen: `127.0.0.1:${port}`,
    issuer: url,
    key_cache_secs: 0,
    ...settings,
    argon2: { memory_kib: 1024, iterations: 1, parallelism: 1, ...(settings.argon2 ?? {}) },
  };
  if (settings.rate_limit) config.rate_limit = settings.rate_limit;
  const configPath = path.join(dir, "issuer.toml");
  writeFileSync(configPath, toToml(config));

  const issuer = {
    url,
    dir,
    dbPath,
    configPath,
    audience: config.audience ?? "sallyport",
    child: null,
    stderr: "",
    cli: (args, opts) => runCli([...args, "--config", configPath], { cwd: dir, ...opts }),
    async addUser(username, password, { name, roles = [] } = {}) {
      const args = ["user", "add", username, "--password-stdin"];
      if (name) args.push("--name", name);
      for (const r of roles) args.push("--role", r);
      await issuer.cli(args, { stdin: `${password}\n` });
      const { stdout } = await issuer.cli(["user", "list", "--json"]);
      const user = stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l))
        .find((u) => u.username === username);
      if (!user) throw new Error(`user ${username} not listed after user add`);
      return user;
    },
    rotateKeys: () => issuer.cli(["keys", "rotate"]),
    signingKeys: () => readSigningKeys(dbPath),
    async stop() {
      await stopChild(issuer.child);
      rmSync(dir, { recursive: true, force: true });
    },
  };

  const child = spawn(sallyportBin, ["issuer", "--config", configPath], {
    cwd: dir,
    env: childEnv(),
    stdio: ["ignore", "ignore", "pipe"],
  });
  running.add(child);
  child.on("exit", () => running.delete(child));
  const sink = logStream("interop", "issuer");
  child.stderr.on("data", (d) => {
    sink?.write(d);
    issuer.stderr = (issuer.stderr + d.toString()).slice(-20_000);
  });
  issuer.child = child;

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`sallyport issuer exited during start-up:\n${issuer.stderr}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`sallyport issuer did not become healthy:\n${issuer.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return issuer;
}

function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(killer);
      running.delete(child);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/**
 * The issuer's signing keys as node KeyObjects, newest first, read with Python's
 * sqlite3 (which, unlike a file-level reader, sees the WAL of the running issuer).
 */
export function readSigningKeys(dbPath) {
  const script = [
    "import json, sqlite3, sys",
    "c = sqlite3.connect(sys.argv[1])",
    "rows = c.execute('SELECT kid, algorithm, private_der, retired_at FROM signing_keys ORDER BY created_at DESC, kid DESC').fetchall()",
    "print(json.dumps([[k, a, bytes(d).hex(), r] for k, a, d, r in rows]))",
  ].join("\n");
  const out = execFileSync("python3", ["-c", script, dbPath], { encoding: "utf8" });
  return JSON.parse(out).map(([kid, algorithm, hex, retiredAt]) => ({
    kid,
    algorithm,
    retiredAt,
    privateKey: createPrivateKey({ key: Buffer.from(hex, "hex"), format: "der", type: "pkcs8" }),
  }));
}

/** JSON request helper: returns { status, headers, body (parsed JSON or text) }. */
export async function request(url, { method = "GET", headers = {}, body, json, form } = {}) {
  const init = { method, headers: { ...headers } };
  if (json !== undefined) {
    init.headers["content-type"] ??= "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.headers["content-type"] ??= "application/x-www-form-urlencoded";
    init.body = new URLSearchParams(form).toString();
  } else if (body !== undefined) {
    init.body = body;
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let parsed = text;
  if ((res.headers.get("content-type") || "").includes("json") && text.length > 0) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

export function login(issuer, username, password, headers = {}) {
  return request(`${issuer.url}/api/login`, { method: "POST", json: { username, password }, headers });
}

export function refresh(issuer, refreshToken) {
  return request(`${issuer.url}/api/refresh-token`, {
    method: "POST",
    json: { refresh_token: refreshToken },
  });
}

export function me(issuer, accessToken) {
  return request(`${issuer.url}/api/me`, {
    headers: accessToken === undefined ? {} : { authorization: `Bearer ${accessToken}` },
  });
}
