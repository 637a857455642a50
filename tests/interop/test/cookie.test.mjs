// Cookie-level interoperability: getIronSession (iron-session 9's real cookie layer)
// and sallyport-session's CookieCodec write and read each other's Set-Cookie,
// including chunked sessions and the article's Next.js configuration.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { getIronSession } from "iron-session";

import { fakeJwt, payload, randomString, rng, startPeer } from "./peer.mjs";

const SECRET = "article-SESSION_SECRET-0123456789-abcdefgh";

// lib/session.ts from the article (secure off: NODE_ENV is not "production" here).
const articleOptions = {
  password: SECRET,
  cookieName: "my-app-session",
  cookieOptions: { secure: false, maxAge: 60 * 60 * 24 * 30 },
};

let peer;
before(() => {
  peer = startPeer();
});
after(() => peer.close());

/** The Cookie header a browser would send after applying these Set-Cookie values. */
function browserCookie(setCookies, jar = new Map()) {
  for (const line of setCookies) {
    const [pair, ...attrs] = line.split("; ");
    const eq = pair.indexOf("=");
    const name = pair.slice(0, eq);
    if (attrs.includes("Max-Age=0")) jar.delete(name);
    else jar.set(name, pair.slice(eq + 1));
  }
  return { jar, header: [...jar].map(([k, v]) => `${k}=${v}`).join("; ") };
}

/** iron-session: read the session from `cookie`, optionally assign `data` and save. */
async function nodeSave(options, data, cookie = "") {
  const headers = new Headers();
  const request = new Request("https://app.example/", { headers: cookie ? { cookie } : {} });
  const session = await getIronSession(request, headers, options);
  Object.assign(session, data);
  await session.save();
  return headers.getSetCookie();
}

async function nodeRead(options, cookie) {
  const request = new Request("https://app.example/", { headers: { cookie } });
  const session = await getIronSession(request, new Headers(), options);
  return { ...session };
}

async function nodeDestroy(options, cookie) {
  const headers = new Headers();
  const request = new Request("https://app.example/", { headers: { cookie } });
  const session = await getIronSession(request, headers, options);
  session.destroy();
  return headers.getSetCookie();
}

const attributes = (line) => line.slice(line.indexOf(";"));

describe("the article's Next.js cookie", () => {
  const next = rng(10);
  const data = { isLoggedIn: true, accessToken: fakeJwt(next), refreshToken: fakeJwt(next) };

  test("written by iron-session, read by Rust", async () => {
    const setCookie = await nodeSave(articleOptions, data);
    assert.equal(setCookie.length, 1);
    assert.match(setCookie[0], /^my-app-session=Fe26\.2\*1\*.*~2; Max-Age=2592000; Path=\/; HttpOnly; SameSite=Lax$/);
    const { header } = browserCookie(setCookie);
    const read = await peer.call({ op: "cookie_read", options: articleOptions, cookie_header: `theme=dark; ${header}` });
    assert.equal(read.reason, null, read.error);
    assert.deepEqual(read.session, data);
    assert.equal(read.password_id, "1");
  });

  test("written by Rust, read by iron-session, with identical attributes", async () => {
    const saved = await peer.call({ op: "cookie_save", options: articleOptions, data });
    assert.equal(saved.ok, true, saved.error);
    const theirs = await nodeSave(articleOptions, data);
    assert.equal(saved.set_cookie.length, 1);
    assert.equal(attributes(saved.set_cookie[0]), attributes(theirs[0]));
    assert.equal(saved.set_cookie[0].length, theirs[0].length);
    const { header } = browserCookie(saved.set_cookie);
    assert.deepEqual(await nodeRead(articleOptions, header), data);
  });

  test("a session renewed by iron-session stays readable by Rust and vice versa", async () => {
    let { jar, header } = browserCookie(await nodeSave(articleOptions, data));
    const renewed = { ...data, accessToken: fakeJwt(next) };
    const saved = await peer.call({ op: "cookie_save", options: articleOptions, data: renewed, cookie_header: header });
    ({ jar, header } = browserCookie(saved.set_cookie, jar));
    assert.deepEqual(await nodeRead(articleOptions, header), renewed);
    const again = { ...renewed, refreshToken: fakeJwt(next) };
    ({ header } = browserCookie(await nodeSave(articleOptions, again, header), jar));
    const read = await peer.call({ op: "cookie_read", options: articleOptions, cookie_header: header });
    assert.deepEqual(read.session, again);
  });
});

describe("defaults and attributes match getIronSession", () => {
  const cases = [
    { cookieName: "s", password: SECRET },
    { cookieName: "s", password: SECRET, ttl: 0 },
    { cookieName: "s", password: SECRET, ttl: 30 },
    { cookieName: "s", password: SECRET, ttl: 61 },
    { cookieName: "s", password: SECRET, ttl: 3600, cookieOptions: { maxAge: 100 } },
    { cookieName: "s", password: SECRET, cookieOptions: { secure: false, httpOnly: false, sameSite: "strict", path: "/app", domain: "example.com" } },
    { cookieName: "__Host-s", password: { 1: SECRET, 2: `${SECRET}-2` } },
  ];
  for (const options of cases) {
    test(JSON.stringify({ ...options, password: undefined }), async () => {
      const data = { a: 1, b: "two" };
      const theirs = await nodeSave(options, data);
      const ours = await peer.call({ op: "cookie_save", options, data });
      assert.equal(ours.ok, true, ours.error);
      assert.deepEqual(ours.set_cookie.map(attributes), theirs.map(attributes));
      assert.deepEqual(ours.set_cookie.map((l) => l.length), theirs.map((l) => l.length));
      // Each reads the other's.
      const read = await peer.call({ op: "cookie_read", options, cookie_header: browserCookie(theirs).header });
      assert.deepEqual(read.session, data);
      assert.deepEqual(await nodeRead(options, browserCookie(ours.set_cookie).header), data);
    });
  }

  test("a browser-session cookie (maxAge undefined): no Max-Age, seal never expires", async () => {
    const node = { cookieName: "s", password: SECRET, ttl: 3600, cookieOptions: { maxAge: undefined } };
    const wire = { cookieName: "s", password: SECRET, ttl: 3600, cookieOptions: { maxAge: null } };
    const theirs = await nodeSave(node, { a: 1 });
    const ours = await peer.call({ op: "cookie_save", options: wire, data: { a: 1 } });
    assert.equal(attributes(ours.set_cookie[0]), attributes(theirs[0]));
    assert.match(ours.set_cookie[0], /\*\*[0-9a-f]{64}\*/, "empty expiration field");
  });

  test("destroy writes the same expiry as iron-session", async () => {
    const options = { cookieName: "s", password: SECRET };
    const { header } = browserCookie(await nodeSave(options, { a: 1 }));
    const ours = await peer.call({ op: "cookie_destroy", options, cookie_header: header });
    assert.deepEqual(ours.set_cookie, await nodeDestroy(options, header));
  });

  test("too big without chunking: both refuse, with the same size", async () => {
    const options = { cookieName: "s", password: SECRET };
    const data = { blob: "z".repeat(3000) };
    await assert.rejects(nodeSave(options, data), /Cookie length is too big \((\d+) bytes\)/);
    const message = await nodeSave(options, data).catch((e) => e.message);
    const bytes = message.match(/\((\d+) bytes\)/)[1];
    const ours = await peer.call({ op: "cookie_save", options, data });
    assert.equal(ours.ok, false);
    assert.equal(ours.code, "session_too_large");
    assert.match(ours.error, new RegExp(`\\(${bytes} bytes`));
  });
});

describe("chunked sessions", () => {
  const options = { cookieName: "my_session", password: SECRET, chunk: true };
  const next = rng(20);

  for (const size of [5000, 8000, 11000]) {
    test(`~${size} bytes: iron-session chunks read by Rust, Rust chunks read by iron-session`, async () => {
      const data = { tag: "chunked", blob: randomString(next, 50) + "y".repeat(size), more: payload(next, 1) };
      const theirs = await nodeSave(options, data);
      const ours = await peer.call({ op: "cookie_save", options, data });
      assert.equal(ours.ok, true, ours.error);
      // iron-session's chunk cookies first (same names, sizes, attributes), then our
      // unconditional expiry of the unused slots.
      assert.deepEqual(
        ours.set_cookie.slice(0, theirs.length).map((l) => [l.split("=")[0], l.length, attributes(l)]),
        theirs.map((l) => [l.split("=")[0], l.length, attributes(l)]),
      );
      for (const line of [...theirs, ...ours.set_cookie]) assert.ok(Buffer.byteLength(line) <= 4096);
      const read = await peer.call({ op: "cookie_read", options, cookie_header: browserCookie(theirs).header });
      assert.equal(read.reason, null, read.error);
      assert.deepEqual(read.session, data);
      assert.deepEqual(await nodeRead(options, browserCookie(ours.set_cookie).header), data);
    });
  }

  test("shrinking and growing across both implementations leaves no stale chunk", async () => {
    let jar = new Map();
    let header = "";
    const sizes = [100, 9000, 5000, 100, 9000];
    for (const [i, size] of sizes.entries()) {
      const data = { step: i, blob: "q".repeat(size) };
      const lines = i % 2 === 0
        ? (await peer.call({ op: "cookie_save", options, data, cookie_header: header })).set_cookie
        : await nodeSave(options, data, header);
      ({ jar, header } = browserCookie(lines, jar));
      // The jar holds exactly what the last response wrote: no stale chunk, no
      // leftover unchunked cookie.
      const names = [...jar.keys()].sort();
      const written = lines.filter((l) => !l.includes("; Max-Age=0")).map((l) => l.split("=")[0]).sort();
      assert.deepEqual(names, written, `step ${i}`);
      assert.equal(names.length > 1, size > 3000, `step ${i}: ${names}`);
      assert.deepEqual(await nodeRead(options, header), data, `step ${i}`);
      const read = await peer.call({ op: "cookie_read", options, cookie_header: header });
      assert.deepEqual(read.session, data, `step ${i}`);
    }
  });

  test("more than four chunks: both refuse", async () => {
    const data = { blob: "w".repeat(14000) };
    await assert.rejects(nodeSave(options, data), /needs 5 cookies and the maximum is 4/);
    const ours = await peer.call({ op: "cookie_save", options, data });
    assert.equal(ours.ok, false);
    assert.match(ours.error, /needs 5 chunks/);
  });
});

describe("rotation through the cookie layer", () => {
  test("an id-1 cookie from iron-session is read by Rust with {1,2}, flagged, and re-sealed with id 2 that iron-session reads", async () => {
    const old = { cookieName: "s", password: { 1: SECRET } };
    const rotated = { cookieName: "s", password: { 1: SECRET, 2: `${SECRET}-two` } };
    const { jar, header } = browserCookie(await nodeSave(old, { user: "ada" }));
    const read = await peer.call({ op: "cookie_read", options: rotated, cookie_header: header });
    assert.deepEqual(read.session, { user: "ada" });
    assert.equal(read.password_id, "1");
    assert.equal(read.needs_reseal, true);
    const saved = await peer.call({ op: "cookie_save", options: rotated, data: read.session, cookie_header: header });
    const after = browserCookie(saved.set_cookie, jar);
    assert.match(after.jar.get("s"), /^Fe26\.2\*2\*/);
    assert.deepEqual(await nodeRead({ cookieName: "s", password: { 2: `${SECRET}-two` } }, after.header), { user: "ada" });
    const retired = await peer.call({ op: "cookie_read", options: { cookieName: "s", password: { 2: `${SECRET}-two` } }, cookie_header: header });
    assert.deepEqual(retired.session, {});
    assert.equal(retired.reason, "unknown-password");
  });

  test("tampered cookies are an empty session on both sides", async () => {
    const options = { cookieName: "s", password: SECRET };
    const [line] = await nodeSave(options, { user: "ada" });
    const value = line.slice(2, line.indexOf(";"));
    for (let i = 0; i < value.indexOf("~"); i += 7) {
      const flipped = value.slice(0, i) + (value[i] === "a" ? "b" : "a") + value.slice(i + 1);
      const header = `s=${flipped}`;
      const read = await peer.call({ op: "cookie_read", options, cookie_header: header });
      assert.deepEqual(read.session, {}, `position ${i}`);
      assert.notEqual(read.reason, null, `position ${i}`);
      assert.deepEqual(await nodeRead(options, header), {}, `position ${i}`);
    }
  });
});
