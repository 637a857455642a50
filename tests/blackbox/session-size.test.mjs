// docs/design.md "The session cookie": sessions too large for one cookie are split into chunks
// and reassembled, or refused with a clear error — never silently dropped by the browser.
// And GET /auth/session exposes the access token only when the operator opts in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import {
  startStack, Gateway, PASSWORD, Jar, api, sessionSets, bearerOf, decodeJwt, COOKIE,
} from './lib/harness.mjs';

let s;
before(async () => { s = await startStack(); });
after(async () => { await s?.stop(); });

const uid = () => crypto.randomBytes(6).toString('hex');
// The issuer allows at most 64 roles of at most 64 bytes: that is ~4 KiB of claims.
const roles = (n) => Array.from({ length: n }, (_, i) => `role-${String(i).padStart(4, '0')}-${'x'.repeat(54)}`);
/** Browsers drop a cookie whose name + value exceed 4096 bytes. */
const BROWSER_LIMIT = 4096;

async function login(g, user, jar) {
  const cookie = jar && jar.size ? { cookie: jar.header() } : {};
  return g.req('POST', '/auth/login', {
    headers: { 'content-type': 'application/json', accept: 'application/json', origin: g.origin, ...cookie },
    body: JSON.stringify({ username: user, password: PASSWORD }),
  });
}

test('a session larger than one cookie is chunked, every chunk fits a browser, and it reassembles', async () => {
  const user = s.issuer.addUser('big', roles(64));
  const r = await login(s.gateway, user);
  assert.equal(r.status, 200, r.text);
  const sets = sessionSets(r);
  assert.ok(sets.length >= 2, `expected chunks, got ${sets.map((c) => c.name)}`);
  for (const c of sets) {
    assert.ok(c.name.length + 1 + c.value.length <= BROWSER_LIMIT, `${c.name} is ${c.value.length} bytes`);
    assert.ok(c.name.startsWith(`${COOKIE}.`), `chunk name ${c.name}`);
  }
  const jar = new Jar();
  jar.apply(r);
  const id = uid();
  const p = await api(s.gateway, jar, 'GET', `/api/${id}`);
  assert.equal(p.status, 200);
  const token = bearerOf(s.upstream.requestsFor(id).at(-1));
  assert.equal(decodeJwt(token).roles.length, 64, 'the whole token survived chunking');
  const e = s.upstream.requestsFor(id).at(-1);
  assert.ok(!(e.headers.cookie ?? '').includes(`${COOKIE}.`), 'chunks stripped from what upstream sees');
});

test('growing from one cookie to chunks clears the old unchunked cookie (and back)', async () => {
  const small = s.issuer.addUser();
  const big = s.issuer.addUser('big', roles(64));
  const jar = new Jar();
  jar.apply(await login(s.gateway, small, jar));
  assert.deepEqual(jar.sessionCookies(), [COOKIE]);
  jar.apply(await login(s.gateway, big, jar));
  assert.ok(!jar.cookies.has(COOKIE), `stale unchunked cookie left: ${jar.sessionCookies()}`);
  const v = await api(s.gateway, jar, 'GET', '/auth/session');
  assert.equal(v.json?.isLoggedIn, true);
  assert.equal(v.json.user.roles.length, 64);
  jar.apply(await login(s.gateway, small, jar));
  assert.deepEqual(jar.sessionCookies(), [COOKIE], `stale chunks left: ${jar.sessionCookies()}`);
  const v2 = await api(s.gateway, jar, 'GET', '/auth/session');
  assert.equal(v2.json?.isLoggedIn, true);
  assert.equal(v2.json.user.roles.length, 1);
});

/** A backend whose login hands out an unsigned JWT carrying `claimBytes` of claims. */
async function bigTokenBackend(claimBytes) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({
    sub: 'big', exp: Math.floor(Date.now() / 1000) + 900, iat: Math.floor(Date.now() / 1000), sid: uid(), blob: crypto.randomBytes(claimBytes).toString('base64'),
  })}.`;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ accessToken: token, refreshToken: 'r'.repeat(43), tokenType: 'Bearer', expiresIn: 900 }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

test('chunks written by a parallel response (absent from this request) never corrupt the session (PP-08)', async () => {
  const small = s.issuer.addUser();
  const big = s.issuer.addUser('big', roles(64));
  const jar = new Jar();
  jar.apply(await login(s.gateway, big));          // the jar holds chunks .0…
  const orphanChunks = jar.sessionCookies().length;
  jar.apply(await login(s.gateway, small));        // this response never saw them
  const v = await api(s.gateway, jar, 'GET', '/auth/session');
  assert.equal(v.json?.isLoggedIn, true, `logged out by ${orphanChunks} orphan chunks + a whole cookie`);
  assert.equal(v.json.user.roles.length, 1, 'the newest session wins');
});

test('a session too large even for chunks is refused with a clear error, not silently dropped', async () => {
  const backend = await bigTokenBackend(24000);
  const g = await new Gateway({ issuer: s.issuer, upstreamPort: s.upstream.port, backendBase: `http://127.0.0.1:${backend.address().port}` }).start();
  const r = await login(g, 'anyone');
  backend.close();
  if (r.status === 200) {
    const sets = sessionSets(r);
    assert.ok(sets.length > 0, '200 without a cookie: silently dropped');
    for (const c of sets) assert.ok(c.name.length + 1 + c.value.length <= BROWSER_LIMIT, `${c.name}: ${c.value.length} bytes`);
    const jar = new Jar();
    jar.apply(r);
    const v = await api(s.gateway, jar, 'GET', '/auth/session');
    assert.equal(v.json?.isLoggedIn, true, 'the browser would not get a working session back');
  } else {
    assert.ok(r.status >= 400, `status ${r.status}`);
    assert.equal(sessionSets(r).length, 0);
    assert.equal(typeof r.json?.error, 'string', `clear JSON error: ${r.text.slice(0, 200)}`);
  }
});

test('expose_access_token = true puts the access token (never the refresh token) in GET /auth/session', async () => {
  const g = await new Gateway({ issuer: s.issuer, upstreamPort: s.upstream.port, sessionToml: 'expose_access_token = true' }).start();
  const jar = new Jar();
  jar.apply(await login(g, s.issuer.addUser()));
  const id = uid();
  await api(g, jar, 'GET', `/api/${id}`);
  const token = bearerOf(s.upstream.requestsFor(id).at(-1));
  const v = await api(g, jar, 'GET', '/auth/session');
  assert.ok(v.text.includes(token), 'access token exposed on opt-in');
  assert.ok(!/refresh_?token/i.test(v.text), v.text);
});
