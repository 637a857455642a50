// Assorted attacks on the gateway's own routes: state changes over GET, session fixation,
// header injection through the redirect, Host spoofing, token leaks in /metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import {
  startStack, loginJson, api, rawRequest, sessionSets, parseSetCookie, bearerOf, decodeJwt, ironUnseal, sessionSeal,
  COOKIE, PASSWORD, SECRET,
} from './lib/harness.mjs';

let s;
before(async () => { s = await startStack(); });
after(async () => { await s?.stop(); });

const uid = () => crypto.randomBytes(6).toString('hex');

test('GET /auth/logout does not log out (no state change over GET: <img src> CSRF)', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const r = await s.gateway.req('GET', '/auth/logout', { headers: { cookie: jar.header(), accept: 'text/html', 'sec-fetch-site': 'cross-site' } });
  assert.ok(!r.setCookies.map(parseSetCookie).some((c) => c.name.startsWith(COOKIE)), `GET cleared the cookie (${r.status})`);
  const v = await api(s.gateway, jar, 'GET', '/auth/session');
  assert.equal(v.json?.isLoggedIn, true);
});

test('GET /auth/refresh does not renew', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const before = await s.issuer.refreshCount();
  const r = await api(s.gateway, jar, 'GET', '/auth/refresh');
  assert.ok(r.status >= 400 && r.status < 500, `GET /auth/refresh → ${r.status}`);
  assert.equal(await s.issuer.refreshCount(), before);
});

test('logging in over an existing session replaces it (no session fixation)', async () => {
  const a = s.issuer.addUser();
  const b = s.issuer.addUser();
  const { jar } = await loginJson(s.gateway, a);
  const r = await s.gateway.req('POST', '/auth/login', {
    headers: { 'content-type': 'application/json', accept: 'application/json', origin: s.gateway.origin, cookie: jar.header() },
    body: JSON.stringify({ username: b, password: PASSWORD }),
  });
  assert.equal(r.status, 200);
  jar.apply(r);
  const v = await api(s.gateway, jar, 'GET', '/auth/session');
  assert.equal(v.json.user.name, `User ${b}`);
  const id = uid();
  await api(s.gateway, jar, 'GET', `/api/${id}`);
  assert.equal(decodeJwt(bearerOf(s.upstream.requestsFor(id).at(-1))).name, `User ${b}`);
});

test('a failed login over an existing session does not hand out a session for the target user', async () => {
  const a = s.issuer.addUser();
  const b = s.issuer.addUser();
  const { jar } = await loginJson(s.gateway, a);
  const r = await s.gateway.req('POST', '/auth/login', {
    headers: { 'content-type': 'application/json', accept: 'application/json', origin: s.gateway.origin, cookie: jar.header() },
    body: JSON.stringify({ username: b, password: 'not the password' }),
  });
  assert.equal(r.status, 401);
  assert.equal(sessionSets(r).length, 0);
});

test('CR/LF in the request path cannot inject headers through the login redirect', async () => {
  const r = await rawRequest(s.gateway.port,
    `GET /x%0d%0aSet-Cookie:%20${COOKIE}=planted%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: 127.0.0.1:${s.gateway.port}\r\nAccept: text/html\r\nConnection: close\r\n\r\n`);
  assert.ok(r.status < 500, `status ${r.status}`);
  assert.equal(r.headers['x-injected'], undefined);
  assert.ok(!/planted/.test(r.headers['set-cookie'] ?? ''));
});

test('a spoofed Host header does not turn the login redirect into an absolute off-site URL', async () => {
  const r = await rawRequest(s.gateway.port,
    'GET /dashboard HTTP/1.1\r\nHost: evil.example\r\nAccept: text/html\r\nConnection: close\r\n\r\n');
  assert.ok(r.status < 500);
  if (r.status >= 300 && r.status < 400) {
    const loc = r.headers.location ?? '';
    assert.ok(!/evil\.example/.test(loc), `Location ${loc}`);
  }
});

test('Host-header games do not bypass CSRF (Origin evil, Host evil)', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  const r = await rawRequest(s.gateway.port,
    `POST /api/${id} HTTP/1.1\r\nHost: evil.example\r\nOrigin: http://evil.example\r\nCookie: ${jar.header()}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  // A browser never sends Host: evil.example to this server unless DNS points there
  // (rebinding). Without public_origin the gateway may accept it; it must not crash.
  assert.ok(r.status < 500, `status ${r.status}`);
});

test('/metrics and /readyz leak no tokens or session data', async () => {
  const { jar, res } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  await api(s.gateway, jar, 'GET', `/api/${id}`);
  const token = bearerOf(s.upstream.requestsFor(id).at(-1));
  const m = await s.gateway.admin('GET', '/metrics');
  assert.ok(!m.text.includes(token));
  assert.ok(!m.text.includes(res.json.user.sub), 'no per-user labels');
  assert.ok(!m.text.includes(jar.header().slice(COOKIE.length + 1, COOKIE.length + 40)));
});

test('logout without a session, or twice, is harmless (204, never 5xx)', async () => {
  const r = await api(s.gateway, null, 'POST', '/auth/logout', { headers: { origin: s.gateway.origin } });
  assert.equal(r.status, 204);
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const copy = jar.clone();
  await api(s.gateway, jar, 'POST', '/auth/logout', { headers: { origin: s.gateway.origin } });
  const again = await api(s.gateway, copy, 'POST', '/auth/logout', { headers: { origin: s.gateway.origin } });
  assert.equal(again.status, 204);
});

test('the session cookie is host-only (no Domain) and not Secure only because this is plain-http localhost', async () => {
  const { res } = await loginJson(s.gateway, s.issuer.addUser());
  const [c] = sessionSets(res);
  assert.equal(c.attrs.domain, undefined);
  assert.equal(c.attrs.secure, undefined);
});

test('the refresh token appears nowhere in any response of a whole session', async () => {
  const user = s.issuer.addUser();
  const { jar, res } = await loginJson(s.gateway, user);
  // Learn the refresh token the way an attacker with the secret would: it must never be
  // visible otherwise. We compare against every response body and header.
  const all = [res];
  all.push(await api(s.gateway, jar, 'GET', '/auth/session'));
  const rf = await api(s.gateway, jar, 'POST', '/auth/refresh', { headers: { origin: s.gateway.origin } });
  all.push(rf);
  jar.apply(rf);
  all.push(await s.gateway.admin('GET', '/auth/verify', { headers: { cookie: jar.header() } }));
  all.push(await api(s.gateway, jar, 'GET', `/api/${uid()}`));
  const rt = ironUnseal(sessionSeal(jar), SECRET).refreshToken;
  assert.ok(typeof rt === 'string' && rt.length > 20, 'control: the cookie holds the refresh token');
  for (const r of all) {
    const visible = r.text + JSON.stringify(Object.fromEntries(Object.entries(r.headers).filter(([k]) => k !== 'set-cookie')));
    assert.ok(!visible.includes(rt), 'refresh token visible to the client');
  }
});

// Slowloris: a client that trickles (or withholds) its request head must not hold a
// connection forever. The gateway cuts it off after its header read timeout (10 s).
for (const [name, text] of [['a partial request head', 'GET /healthz HTTP/1.1\r\nHost: x\r\n'], ['nothing at all', '']]) {
  test(`a connection that sends ${name} is closed by the gateway`, async () => {
    const closedWithin = await new Promise((resolve) => {
      const started = Date.now();
      const c = net.connect(s.gateway.port, '127.0.0.1', () => { if (text) c.write(text); });
      c.on('data', () => {});
      c.on('close', () => resolve(Date.now() - started));
      c.on('error', () => {});
      // Only a bound so a regression fails instead of hanging the suite.
      c.setTimeout(40000, () => { c.destroy(); resolve(Infinity); });
    });
    assert.ok(Number.isFinite(closedWithin), 'the gateway held the connection open for 40 s');
  });
}
