// A client for the Rust interop peer: one long-lived process, JSON lines both ways.
import { spawn } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const targetDir = process.env.CARGO_TARGET_DIR || "/var/cache/sallyport/target";
export const peerPath =
  process.env.SALLYPORT_INTEROP_PEER || path.join(targetDir, "debug", "examples", "interop_peer");

export function startPeer() {
  const child = spawn(peerPath, [], { stdio: ["pipe", "pipe", "inherit"] });
  const pending = new Map();
  let nextId = 1;
  readline.createInterface({ input: child.stdout }).on("line", (line) => {
    const message = JSON.parse(line);
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    waiter?.resolve(message);
  });
  const failAll = (error) => {
    for (const waiter of pending.values()) waiter.reject(error);
    pending.clear();
  };
  child.on("error", failAll);
  child.on("exit", (code) => failAll(new Error(`interop peer exited with ${code}`)));
  return {
    call(request) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.stdin.write(`${JSON.stringify({ ...request, id })}\n`);
      });
    },
    close() {
      child.stdin.end();
    },
  };
}

/** A deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const alphabet = [
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.:/?&=%+*~",
  '"', "\\", "\n", "\t", "\r", "\b", "\f", "\u0000", "\u0001", "\u001f", "\u007f",
  "<", ">", "&", "'", "é", "ß", "€", "ü", "中", "文", "日本", "한", "ع", "ש", "🙂", "🚀", "👩‍💻",
  "\u2028", "\u2029", "\ufeff", "e\u0301", "𝄞",
];

export function randomString(next, maxLen) {
  const len = Math.floor(next() * maxLen);
  let out = "";
  for (let i = 0; i < len; i++) out += alphabet[Math.floor(next() * alphabet.length)];
  return out;
}

const specialNumbers = [0, -0, 1, -1, 1.5, 0.1 + 0.2, 1e21, 1e-7, 123e-20, 5e-324, 1.7976931348623157e308,
  2 ** 53, -(2 ** 53) + 1, 1234567890123, 0.000001, 1e300];

function randomNumber(next) {
  const r = next();
  if (r < 0.3) return specialNumbers[Math.floor(next() * specialNumbers.length)];
  if (r < 0.6) return Math.floor((next() - 0.5) * 2 ** 40);
  return (next() - 0.5) * 10 ** Math.floor(next() * 30 - 10);
}

function randomValue(next, depth) {
  const r = next();
  if (depth > 3 || r < 0.25) return randomString(next, 20);
  if (r < 0.4) return randomNumber(next);
  if (r < 0.45) return next() < 0.5;
  if (r < 0.5) return null;
  if (r < 0.75) {
    const n = Math.floor(next() * 5);
    return Array.from({ length: n }, () => randomValue(next, depth + 1));
  }
  return randomObject(next, depth + 1, 5);
}

export function randomObject(next, depth = 0, maxKeys = 8) {
  const out = {};
  const n = Math.floor(next() * maxKeys);
  for (let i = 0; i < n; i++) {
    const k = next();
    const key = k < 0.15 ? String(Math.floor(next() * 100)) : k < 0.2 ? "-1" : randomString(next, 10) || "k";
    out[key] = randomValue(next, depth);
  }
  return out;
}

/** Payload i of the suite: random shapes, every 10th about 3 KB, some article-shaped. */
export function payload(next, i) {
  if (i % 10 === 0) {
    const big = { tag: "large", blob: randomString(next, 40) };
    while (JSON.stringify(big).length < 3000) big[`k${Object.keys(big).length}`] = randomString(next, 80);
    return big;
  }
  if (i % 10 === 5) {
    return { isLoggedIn: true, accessToken: fakeJwt(next), refreshToken: fakeJwt(next) };
  }
  return randomObject(next);
}

export function fakeJwt(next) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = 1767225600;
  return `${b64({ alg: "ES256", typ: "at+jwt", kid: "k1" })}.${b64({
    iss: "https://auth.example.com", sub: `user_${Math.floor(next() * 1e9)}`, aud: "api",
    iat: now, exp: now + 900, jti: randomString(next, 5), roles: ["user"],
  })}.${Buffer.from(randomString(next, 64)).toString("base64url")}`;
}

/** What a value looks like after a JSON round trip (undefined dropped, -0 → 0). */
export function jsonRoundTrip(value) {
  return JSON.parse(JSON.stringify(value));
}
