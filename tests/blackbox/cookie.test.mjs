// docs/design.md step 2 and "The session cookie": missing, tampered, expired or unknown-password
// cookies mean "no session" — never a 5xx; Iron seals as iron-session writes them;
// password rotation; logout cannot be undone by a replayed cookie.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startStack, Gateway, loginJson, api, sessionSets, sessionSeal, ironSeal, ironUnseal, parseSetCookie,
  COOKIE, SECRET, OTHER_SECRET, PASSWORD, request,
} from './lib/harness.mjs';

let s;
let seal;      // a valid session seal
let session;   // its JSON
before(async () => {
  s = await startStack();
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  seal = sessionSeal(jar);
  session = ironUnseal(seal, SECRET);
});
after(async () => { await s?.stop(); });

const uid = () => crypto.randomBytes(6).toString('hex');
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Sends `cookieHeader` three ways; returns a list of contract breaches. */
async function judge(cookieHeader, what) {
  const bad = [];
  const id = uid();
  const a = await s.gateway.req('GET', `/api/${id}`, { headers: { accept: 'application/json', cookie: cookieHeader } });
  if (a.status !== 401) bad.push(`${what}: API → ${a.status} (want 401)`);
  else if (a.json?.error !== 'session_expired') bad.push(`${what}: API error ${a.json?.error}`);
  if (s.upstream.requestsFor(id).length) bad.push(`${what}: reached upstream`);
  const p = await s.gateway.req('GET', `/page/${id}`, { headers: { accept: 'text/html', cookie: cookieHeader } });
  if (p.status !== 303) bad.push(`${what}: page → ${p.status} (want 303)`);
  return bad;
}

test('control: the session cookie is an iron-session seal the suite can read and re-seal', async () => {
  assert.match(seal, /^Fe26\.2\*[^*]*\*/);
  assert.ok(seal.endsWith('~2'), 'iron-session persistent-seal suffix');
  assert.equal(session.isLoggedIn, true);
  assert.equal(typeof session.accessToken, 'string');
  assert.equal(typeof session.refreshToken, 'string');
  // A cookie sealed by an independent Iron implementation with the same secret is accepted.
  const mine = ironSeal(session, SECRET);
  const id = uid();
  const r = await s.gateway.req('GET', `/api/${id}`, { headers: { accept: 'application/json', cookie: `${COOKIE}=${mine}` } });
  assert.equal(r.status, 200);
  assert.equal(s.upstream.requestsFor(id).length, 1);
});

test('bit flips at many positions → logged out, never 5xx', async () => {
  const bad = [];
  const positions = new Set([0, 1, 5, 6, 7, seal.length - 3, seal.length - 4]);
  for (let i = 0; i < seal.length; i += Math.max(1, Math.floor(seal.length / 60))) positions.add(i);
  // The trailing "~2" is outside the MAC (see the suffix test below).
  positions.delete(seal.length - 1);
  positions.delete(seal.length - 2);
  let n = 0;
  for (let i = 0; i < seal.length; i++) if (seal[i] === '*') { positions.add(i + 1); positions.add(i); }
  for (const i of [...positions].sort((x, y) => x - y)) {
    const c = seal[i];
    // Change the high bits of a base64url digit (the low bits of a final digit may be padding).
    const repl = B64.includes(c) ? B64[(B64.indexOf(c) + 32) % 64] : 'x';
    const t = seal.slice(0, i) + repl + seal.slice(i + 1);
    if (t === seal) continue;
    n++;
    bad.push(...await judge(`${COOKIE}=${t}`, `flip@${i}`));
  }
  assert.ok(n >= 60, `tried ${n} positions`);
  assert.deepEqual(bad, []);
});

test('bit flips inside the ciphertext and MAC (byte-level) → logged out', async () => {
  const parts = seal.replace(/~2$/, '').split('*');
  const bad = [];
  for (const field of [3, 4, 7]) {
    const buf = Buffer.from(parts[field], 'base64url');
    for (const pos of [0, Math.floor(buf.length / 2), buf.length - 1]) {
      for (const bit of [0, 7]) {
        const b = Buffer.from(buf);
        b[pos] ^= 1 << bit;
        const p2 = [...parts];
        p2[field] = b.toString('base64url');
        bad.push(...await judge(`${COOKIE}=${p2.join('*')}~2`, `field${field} byte${pos} bit${bit}`));
      }
    }
  }
  assert.deepEqual(bad, []);
});

test('truncated, extended and malformed cookies → logged out, never 5xx', async () => {
  const cases = {
    empty: '',
    half: seal.slice(0, seal.length / 2),
    minus3: seal.slice(0, -3),
    prefix: seal.slice(0, 10),
    stars: 'Fe26.2*1*******~2',
    oldVersion: seal.replace('Fe26.2', 'Fe26.1'),
    garbage: 'not-a-seal',
    percent: '%ZZ%',
    huge: 'A'.repeat(7000),
    unicode: 'Fe26.2*1*\u00e9\u00e9*',
    nul: 'Fe26.2*1*%00%00*',
    emptyFields: seal.split('*').map((p, i) => (i === 4 ? '' : p)).join('*'),
    hugeExpiry: seal.split('*').map((p, i) => (i === 5 ? '99999999999999999999999999' : p)).join('*'),
    negExpiry: seal.split('*').map((p, i) => (i === 5 ? '-1' : p)).join('*'),
  };
  const bad = [];
  for (const [what, v] of Object.entries(cases)) bad.push(...await judge(`${COOKIE}=${v}`, what));
  assert.deepEqual(bad, []);
});

test('variants of the unauthenticated "~2" suffix → no 5xx (iron-session tolerates some)', async () => {
  const cases = { minus1: seal.slice(0, -1), noSuffix: seal.replace(/~2$/, ''), suffix9: seal.replace(/~2$/, '~9'), plus: `${seal}A`, doubled: seal + seal };
  const bad = [];
  for (const [what, v] of Object.entries(cases)) {
    const r = await s.gateway.req('GET', `/api/${uid()}`, { headers: { accept: 'application/json', cookie: `${COOKIE}=${v}` } });
    if (r.status !== 200 && r.status !== 401) bad.push(`${what} → ${r.status}`);
  }
  assert.deepEqual(bad, []);
});

test('non-canonical base64url in the MAC (flipped padding bits) is not accepted', async () => {
  const last = seal.replace(/~2$/, '');
  const c = last.at(-1);
  const i = B64.indexOf(c);
  const t = `${last.slice(0, -1)}${B64[i ^ 1]}~2`;
  assert.deepEqual(await judge(`${COOKIE}=${t}`, 'padding bits'), []);
});

test('a seal made with the wrong secret → logged out', async () => {
  const bad = await judge(`${COOKIE}=${ironSeal(session, OTHER_SECRET)}`, 'wrong secret');
  assert.deepEqual(bad, []);
});

test('an expired seal → logged out', async () => {
  const expired = ironSeal(session, SECRET, { ttlMs: 1000, now: Date.now() - 3_600_000 });
  assert.deepEqual(await judge(`${COOKIE}=${expired}`, 'expired'), []);
});

test('a seal with an unknown password id → logged out', async () => {
  assert.deepEqual(await judge(`${COOKIE}=${ironSeal(session, SECRET, { id: '99' })}`, 'id 99'), []);
  assert.deepEqual(await judge(`${COOKIE}=${ironSeal(session, OTHER_SECRET, { id: '2' })}`, 'id 2'), []);
});

test('validly sealed but nonsensical contents → never 5xx, never proxied as logged in', async () => {
  const contents = [
    {}, null, [], 'string', 42, { isLoggedIn: true }, { isLoggedIn: false, accessToken: session.accessToken },
    { isLoggedIn: true, accessToken: 'garbage', refreshToken: 'garbage' },
    { isLoggedIn: true, accessToken: 123, refreshToken: [] },
    { isLoggedIn: 'yes', accessToken: session.accessToken },
    { isLoggedIn: true, refreshToken: 'unknown-refresh-token' },
    { isLoggedIn: true, accessToken: 'a.b.c', refreshToken: 'x' },
  ];
  const bad = [];
  for (const c of contents) {
    const v = ironSeal(c, SECRET);
    const id = uid();
    const r = await s.gateway.req('GET', `/api/${id}`, { headers: { accept: 'application/json', cookie: `${COOKIE}=${v}` } });
    if (r.status >= 500 && r.json?.error !== 'backend_unavailable') bad.push(`${JSON.stringify(c)} → ${r.status}`);
    const tokenless = !c || typeof c !== 'object' || c.isLoggedIn !== true || typeof c.accessToken !== 'string';
    if (r.status === 200 && tokenless) bad.push(`${JSON.stringify(c)} → 200 proxied without a usable token`);
    const sv = await s.gateway.req('GET', '/auth/session', { headers: { accept: 'application/json', cookie: `${COOKIE}=${v}` } });
    if (sv.status >= 500) bad.push(`${JSON.stringify(c)} → /auth/session ${sv.status}`);
  }
  assert.deepEqual(bad, []);
});

test('tampered cookies on /auth/session, /auth/verify, /auth/refresh and /auth/logout → no 5xx', async () => {
  const t = seal.slice(0, 40) + (seal[40] === 'A' ? 'B' : 'A') + seal.slice(41);
  const h = { accept: 'application/json', cookie: `${COOKIE}=${t}`, origin: s.gateway.origin };
  const sv = await s.gateway.req('GET', '/auth/session', { headers: h });
  assert.equal(sv.status, 200);
  assert.equal(sv.json?.isLoggedIn, false);
  assert.equal((await s.gateway.admin('GET', '/auth/verify', { headers: h })).status, 401);
  assert.equal((await s.gateway.req('POST', '/auth/refresh', { headers: h })).status, 401);
  const lo = await s.gateway.req('POST', '/auth/logout', { headers: h });
  assert.ok(lo.status < 500, `logout → ${lo.status}`);
});

test('chunk confusion (stray or partial chunks) → logged out, never 5xx', async () => {
  const half = Math.floor(seal.length / 2);
  const cases = {
    onlyFirst: `${COOKIE}.0=${seal.slice(0, half)}`,
    garbageSecond: `${COOKIE}.0=${seal.slice(0, half)}; ${COOKIE}.1=garbage`,
    gap: `${COOKIE}.0=${seal.slice(0, half)}; ${COOKIE}.2=${seal.slice(half)}`,
    manyChunks: Array.from({ length: 40 }, (_, i) => `${COOKIE}.${i}=AAAA`).join('; '),
    hugeIndex: `${COOKIE}.99999999999999999999=${seal}`,
  };
  const bad = [];
  for (const [what, v] of Object.entries(cases)) bad.push(...await judge(v, what));
  assert.deepEqual(bad, []);
});

test('logout, then replaying a copy of the old cookie → refused', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const copy = jar.clone();
  const lo = await api(s.gateway, jar, 'POST', '/auth/logout', { headers: { origin: s.gateway.origin } });
  assert.equal(lo.status, 204);
  const id = uid();
  const r = await api(s.gateway, copy, 'GET', `/api/${id}`);
  assert.equal(r.status, 401, `replayed cookie → ${r.status}`);
  assert.equal(s.upstream.requestsFor(id).length, 0, 'replay reached upstream');
  const v = await api(s.gateway, copy, 'GET', '/auth/session');
  assert.equal(v.json?.isLoggedIn, false);
  const vf = await s.gateway.admin('GET', '/auth/verify', { headers: { cookie: copy.header() } });
  assert.equal(vf.status, 401);
  const page = await s.gateway.req('GET', '/page', { headers: { accept: 'text/html', cookie: copy.header() } });
  assert.equal(page.status, 303);
});

test('logout is remembered by another gateway process sharing the store (replay still refused)', async (t) => {
  // docs/design.md: "with several replicas, through the shared store" — store.redis_url.
  const redis = process.env.SALLYPORT_TEST_REDIS_URL;
  if (!redis) {
    if (process.env.CI) assert.fail('SALLYPORT_TEST_REDIS_URL must be set under CI');
    t.skip('SALLYPORT_TEST_REDIS_URL not set (scripts/lib/redis.sh)');
    return;
  }
  const extraToml = `store.redis_url = "${redis}"\nstore.key_prefix = "bb-${uid()}:"`;
  const g1 = await new Gateway({ issuer: s.issuer, upstreamPort: s.upstream.port, extraToml }).start();
  const g2 = await new Gateway({ issuer: s.issuer, upstreamPort: s.upstream.port, extraToml }).start();
  // Both processes are killed with the others when this file ends.
  const { jar } = await loginJson(g1, s.issuer.addUser());
  const copy = jar.clone();
  const before = await api(g2, copy, 'GET', `/api/${uid()}`);
  assert.equal(before.status, 200, 'the other replica accepts the live session');
  const lo = await api(g1, jar, 'POST', '/auth/logout', { headers: { origin: g1.origin } });
  assert.ok(lo.status < 400, `logout → ${lo.status}`);
  const id = uid();
  const r = await api(g2, copy, 'GET', `/api/${id}`);
  assert.equal(r.status, 401, `replay on another replica → ${r.status}`);
  assert.equal(s.upstream.requestsFor(id).length, 0);
});

test('password rotation: an old-secret cookie still works and is re-sealed with the newest secret', async () => {
  const NEW = 'the-newer-rotation-secret-abcdefghijklmnop-123';
  const g = await new Gateway({
    issuer: s.issuer, upstreamPort: s.upstream.port, secret: null,
    sessionToml: `secrets = { "1" = "${SECRET}", "2" = "${NEW}" }`,
  }).start();
  const { jar } = await loginJson(s.gateway, s.issuer.addUser()); // sealed with id 1
  assert.match(sessionSeal(jar), /^Fe26\.2\*1\*/);
  const id = uid();
  const r = await api(g, jar, 'GET', `/api/${id}`);
  assert.equal(r.status, 200, 'old cookie accepted');
  const rf = await api(g, jar, 'POST', '/auth/refresh', { headers: { origin: g.origin } });
  assert.equal(rf.status, 200);
  const [c] = sessionSets(rf);
  assert.ok(c, 'renewal sets a cookie');
  assert.match(decodeURIComponent(c.value), /^Fe26\.2\*2\*/, 'sealed with the newest id');
  const login = await loginJson(g, s.issuer.addUser());
  assert.match(sessionSeal(login.jar), /^Fe26\.2\*2\*/);
});

test('Set-Cookie values are well formed (one cookie per header, no stray attributes)', async () => {
  const { res } = await loginJson(s.gateway, s.issuer.addUser());
  for (const sc of res.setCookies) {
    const c = parseSetCookie(sc);
    assert.ok(/^[A-Za-z0-9_.\-]+$/.test(c.name), c.name);
    assert.ok(!/[\s",;\\]/.test(c.value), 'cookie value uses only cookie-octets');
  }
});

test('an oversized Cookie header (many cookies, 30 KiB) → 4xx or logged out, never 5xx', async () => {
  const many = Array.from({ length: 300 }, (_, i) => `c${i}=${'v'.repeat(100)}`).join('; ');
  const r = await s.gateway.req('GET', `/api/${uid()}`, { headers: { accept: 'application/json', cookie: `${many}; ${COOKIE}=${seal}` } });
  assert.ok(r.status < 500, `status ${r.status}`);
});

test("the article's own iron-session cookie (my-app-session) is accepted, renewed and re-written under its name", async () => {
  const g = await new Gateway({ issuer: s.issuer, upstreamPort: s.upstream.port, sessionToml: 'cookie_name = "my-app-session"' }).start();
  const user = s.issuer.addUser();
  // What the article's login action stores: the backend's answer, sealed by iron-session.
  const login = await request(s.issuer.port, 'POST', '/api/login', {
    headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: user, password: PASSWORD }),
  });
  assert.equal(login.status, 200);
  const articleSession = { isLoggedIn: true, accessToken: login.json.accessToken, refreshToken: login.json.refreshToken };
  const cookie = `my-app-session=${ironSeal(articleSession, SECRET, { ttlMs: 30 * 86400_000 })}`;
  const id = uid();
  const r = await g.req('GET', `/api/${id}`, { headers: { accept: 'application/json', cookie } });
  assert.equal(r.status, 200, r.text);
  assert.equal(s.upstream.requestsFor(id).at(-1).headers.authorization, `Bearer ${login.json.accessToken}`);
  const rf = await g.req('POST', '/auth/refresh', { headers: { accept: 'application/json', cookie, origin: g.origin } });
  assert.equal(rf.status, 200, rf.text);
  const set = rf.setCookies.map(parseSetCookie).find((c) => c.name === 'my-app-session');
  assert.ok(set, `re-written as my-app-session: ${rf.setCookies}`);
  const back = ironUnseal(decodeURIComponent(set.value), SECRET);
  assert.equal(back.isLoggedIn, true);
  assert.notEqual(back.refreshToken, articleSession.refreshToken, 'rotated refresh token stored');
  assert.equal(typeof back.accessToken, 'string');
});
