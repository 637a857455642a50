// docs/design.md step 5: "Faults are not logouts". Backend refusal (invalid_grant) ends the
// session; backend down, slow or 5xx keeps it — proxy with the old token while it is
// still valid, else 503 with Retry-After. Two setups: the real issuer stopped and
// restarted, and a scriptable backend in front of the issuer (500 / hang / invalid_grant).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import {
  startStack, Gateway, loginJson, api, sessionSets, parseSetCookie, isDeletion, bearerOf, decodeJwt, clockNow, untilBeforeExp, form,
  sleep, COOKIE, PASSWORD,
} from './lib/harness.mjs';

const TTL = 8;
const LEEWAY = 4;
let s;
let fake;      // scriptable backend: forwards to the issuer unless `mode` says otherwise
let fakeGw;    // gateway whose backend is `fake`
let mode = 'pass';
const held = new Set();

before(async () => {
  s = await startStack({ accessTtl: TTL, sessionToml: `leeway_secs = ${LEEWAY}` });
  fake = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const isRefresh = req.url.includes('refresh');
    const isLogin = req.url.includes('login');
    if (isLogin && mode === 'login429') { res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' }); res.end('{"error":"rate_limited","message":"slow down"}'); return; }
    if (isLogin && mode === 'login500') { res.writeHead(500, { 'content-type': 'application/json' }); res.end('{"error":"server_error"}'); return; }
    if (isRefresh && mode === '500') { res.writeHead(500, { 'content-type': 'application/json' }); res.end('{"error":"server_error"}'); return; }
    if (isRefresh && mode === '502') { res.writeHead(502, { 'content-type': 'text/html' }); res.end('<h1>Bad Gateway</h1>'); return; }
    if (isRefresh && mode === 'hang') { held.add(res); return; }
    if (isRefresh && mode === 'garbage') { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"accessToken":'); return; }
    if (isRefresh && mode === 'invalid_grant') { res.writeHead(401, { 'content-type': 'application/json' }); res.end('{"error":"invalid_grant"}'); return; }
    if (isRefresh && mode === 'invalid_grant_400') { res.writeHead(400, { 'content-type': 'application/json' }); res.end('{"error":"invalid_grant"}'); return; }
    const up = http.request({ host: '127.0.0.1', port: s.issuer.port, method: req.method, path: req.url, headers: { ...req.headers, host: `127.0.0.1:${s.issuer.port}` } }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => { res.writeHead(502); res.end(); });
    up.end(body);
  });
  await new Promise((r) => fake.listen(0, '127.0.0.1', r));
  fakeGw = await new Gateway({
    issuer: s.issuer, upstreamPort: s.upstream.port, sessionToml: `leeway_secs = ${LEEWAY}`,
    backendBase: `http://127.0.0.1:${fake.address().port}`,
  }).start();
});
after(async () => {
  for (const r of held) r.destroy();
  fake?.closeAllConnections?.();
  fake?.close();
  await s?.stop();
});

const uid = () => crypto.randomBytes(6).toString('hex');

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(t));
}

async function session(g) {
  const { jar } = await loginJson(g, s.issuer.addUser());
  const id = uid();
  await api(g, jar, 'GET', `/api/${id}`);
  const token = bearerOf(s.upstream.requestsFor(id).at(-1));
  return { jar, token, exp: decodeJwt(token).exp };
}

const notCleared = (r) => !r.setCookies.map(parseSetCookie).some((c) => c.name.startsWith(COOKIE) && isDeletion(c));

/** The 503 answer for a session that cannot be renewed right now. */
function assertUnavailable(r, what) {
  assert.equal(r.status, 503, `${what}: status ${r.status} ${r.text}`);
  assert.ok(r.headers['retry-after'], `${what}: Retry-After`);
  assert.ok(notCleared(r), `${what}: the cookie was cleared: ${r.setCookies}`);
}

test('issuer stopped: session kept — proxied while the token is valid, 503 + Retry-After after, renewed when it is back', async () => {
  assert.equal((await s.gateway.admin('GET', '/readyz')).status, 200, 'ready while the issuer is up');
  const { jar, token, exp } = await session(s.gateway);
  await s.issuer.stop();
  try {
    const ready = await withTimeout(s.gateway.admin('GET', '/readyz'), 10000, 'readyz');
    assert.notEqual(ready.status, 200, 'not ready without the backend');
    assert.equal((await s.gateway.admin('GET', '/healthz')).status, 200, 'but alive');

    // Token valid, inside the leeway: renewal fails, the old token is still used.
    await untilBeforeExp(exp, LEEWAY - 1.5);
    const id = uid();
    const sentAt = clockNow();
    const r1 = await withTimeout(api(s.gateway, jar, 'GET', `/api/${id}`), 10000, 'inside leeway');
    assert.ok(sentAt < exp * 1000 - 1000, 'control: token still valid');
    assert.equal(r1.status, 200, r1.text);
    assert.equal(bearerOf(s.upstream.requestsFor(id).at(-1)), token);
    assert.ok(notCleared(r1));

    // Token expired: 503 with Retry-After and backend_unavailable, for APIs and pages.
    await untilBeforeExp(exp, -1);
    const r2 = await withTimeout(api(s.gateway, jar, 'GET', `/api/${uid()}`), 10000, 'expired');
    assertUnavailable(r2, 'API');
    assert.equal(r2.json?.error, 'backend_unavailable');
    const p = await withTimeout(s.gateway.req('GET', '/page', { headers: { accept: 'text/html', cookie: jar.header() } }), 10000, 'page');
    assertUnavailable(p, 'page');
    const v = await api(s.gateway, jar, 'GET', '/auth/session');
    assert.equal(v.status, 200);
    assert.equal(v.json?.isLoggedIn, true, `session view while the backend is down: ${v.text}`);
    const f = await withTimeout(api(s.gateway, jar, 'POST', '/auth/refresh', { headers: { origin: s.gateway.origin } }), 10000, 'refresh');
    assertUnavailable(f, 'POST /auth/refresh');
    assert.equal(f.json?.error, 'backend_unavailable');
  } finally {
    await s.issuer.start();
  }
  const id = uid();
  const r3 = await api(s.gateway, jar, 'GET', `/api/${id}`);
  assert.equal(r3.status, 200, 'renewed once the issuer is back — never logged out');
  assert.notEqual(bearerOf(s.upstream.requestsFor(id).at(-1)), token);
  assert.ok(sessionSets(r3).length >= 1);
});

test('issuer stopped: login gets its own status and message, not "wrong password"', async () => {
  const user = s.issuer.addUser();
  const wrong = await s.gateway.req('POST', '/auth/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: s.gateway.origin },
    body: form({ username: user, password: 'wrong wrong wrong', next: '/' }),
  });
  await s.issuer.stop();
  try {
    const j = await withTimeout(s.gateway.req('POST', '/auth/login', {
      headers: { 'content-type': 'application/json', accept: 'application/json', origin: s.gateway.origin },
      body: JSON.stringify({ username: user, password: PASSWORD }),
    }), 10000, 'login');
    assert.ok([502, 503, 504].includes(j.status), `JSON login while down → ${j.status}`);
    assert.equal(j.json?.error, 'backend_unavailable');
    const f = await withTimeout(s.gateway.req('POST', '/auth/login', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: s.gateway.origin },
      body: form({ username: user, password: PASSWORD, next: '/' }),
    }), 10000, 'form login');
    assert.ok([502, 503, 504].includes(f.status), `form login while down → ${f.status}`);
    assert.notEqual(f.text, wrong.text, 'a different message than for bad credentials');
  } finally {
    await s.issuer.start();
  }
});

test('issuer stopped: logout is bounded in time and still clears the cookie', async () => {
  const { jar } = await session(s.gateway);
  await s.issuer.stop();
  try {
    const r = await withTimeout(api(s.gateway, jar, 'POST', '/auth/logout', { headers: { origin: s.gateway.origin } }), 10000, 'logout');
    assert.equal(r.status, 204);
    const cleared = r.setCookies.map(parseSetCookie).filter((c) => c.name.startsWith(COOKIE));
    assert.ok(cleared.length >= 1 && cleared.every(isDeletion));
  } finally {
    await s.issuer.start();
  }
});

test('backend 5xx, garbage or hanging on refresh → 503 + Retry-After, session kept; then renewed', async () => {
  const { jar, token, exp } = await session(fakeGw);
  await untilBeforeExp(exp, -1);
  try {
    for (const m of ['500', '502', 'garbage', 'hang']) {
      mode = m;
      const r = await withTimeout(api(fakeGw, jar, 'GET', `/api/${uid()}`), 15000, `backend ${m}`);
      assertUnavailable(r, `backend ${m}`);
      assert.equal(r.json?.error, 'backend_unavailable', `backend ${m}: ${r.text}`);
    }
  } finally {
    mode = 'pass';
    for (const r of held) r.destroy();
    held.clear();
  }
  const id = uid();
  // The hung call's renewal outlives the request that started it (it is bounded by the
  // grace window, not by a caller's wait) and ends when its socket is destroyed above. A
  // request that joins it before the gateway has seen the reset gets its failure — 503
  // with Retry-After, the session kept — and, failures not being remembered, the next
  // request renews. With two event loops that race is real, so such answers are allowed
  // for up to 2 s; each must be the kept-session answer, and a renewal must follow.
  let r = await api(fakeGw, jar, 'GET', `/api/${id}`);
  for (let i = 0; r.status === 503 && i < 20; i++) {
    assertUnavailable(r, 'joined the failing renewal');
    await sleep(100);
    r = await api(fakeGw, jar, 'GET', `/api/${id}`);
  }
  assert.equal(r.status, 200, `after the backend recovered: ${r.status} ${r.text}`);
  assert.notEqual(bearerOf(s.upstream.requestsFor(id).at(-1)), token);
});

test('backend 5xx inside the leeway → old token still proxied, nothing cleared', async () => {
  const { jar, token, exp } = await session(fakeGw);
  await untilBeforeExp(exp, LEEWAY - 1.5);
  mode = '500';
  try {
    const id = uid();
    const r = await api(fakeGw, jar, 'GET', `/api/${id}`);
    assert.equal(r.status, 200);
    assert.equal(bearerOf(s.upstream.requestsFor(id).at(-1)), token);
    assert.ok(notCleared(r));
  } finally {
    mode = 'pass';
  }
});

test('backend refuses the refresh (invalid_grant, 401 or 400) → session destroyed, reauth_required', async () => {
  for (const m of ['invalid_grant', 'invalid_grant_400']) {
    const { jar, exp } = await session(fakeGw);
    await untilBeforeExp(exp, -1);
    mode = m;
    try {
      const r = await api(fakeGw, jar, 'GET', `/api/${uid()}`);
      assert.equal(r.status, 401, `${m}: ${r.status}`);
      assert.equal(r.json?.error, 'reauth_required', `${m}: ${r.text}`);
      assert.ok(r.setCookies.map(parseSetCookie).some((c) => c.name.startsWith(COOKIE) && isDeletion(c)), `${m}: cookie cleared`);
    } finally {
      mode = 'pass';
    }
  }
});

test('backend 429 on login → 429 with Retry-After and its own message (JSON and form)', async () => {
  const user = s.issuer.addUser();
  mode = 'login429';
  try {
    const j = await fakeGw.req('POST', '/auth/login', {
      headers: { 'content-type': 'application/json', accept: 'application/json', origin: fakeGw.origin },
      body: JSON.stringify({ username: user, password: PASSWORD }),
    });
    assert.equal(j.status, 429);
    assert.ok(j.headers['retry-after'], 'Retry-After passed on');
    assert.equal(typeof j.json?.error, 'string');
    assert.equal(sessionSets(j).length, 0);
    const f = await fakeGw.req('POST', '/auth/login', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: fakeGw.origin },
      body: form({ username: user, password: PASSWORD, next: '/' }),
    });
    assert.equal(f.status, 429);
  } finally {
    mode = 'pass';
  }
});

test('backend 500 on login → 5xx backend_unavailable, not 401', async () => {
  mode = 'login500';
  try {
    const j = await fakeGw.req('POST', '/auth/login', {
      headers: { 'content-type': 'application/json', accept: 'application/json', origin: fakeGw.origin },
      body: JSON.stringify({ username: 'whoever', password: PASSWORD }),
    });
    assert.ok([502, 503, 504].includes(j.status), `status ${j.status}`);
    assert.equal(j.json?.error, 'backend_unavailable');
  } finally {
    mode = 'pass';
  }
});
