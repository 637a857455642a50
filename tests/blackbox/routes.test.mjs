// docs/design.md "The gateway (BFF)": the route table, one test per documented behaviour.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startStack, Gateway, loginJson, api, form, parseSetCookie, sessionSets, isDeletion, htmlUnescape,
  decodeJwt, bearerOf, PASSWORD, COOKIE, AUTH_ERRORS,
} from './lib/harness.mjs';

let s;
before(async () => { s = await startStack(); });
after(async () => { await s?.stop(); });

const formHeaders = (g, extra = {}) => ({
  'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: g.origin, ...extra,
});

/** Everything in a response a browser script could read. */
function assertNoSecrets(text, { refresh, access }) {
  assert.ok(!/refresh_?token/i.test(text), `response names a refresh token: ${text}`);
  if (refresh) assert.ok(!text.includes(refresh), 'response contains the refresh token');
  if (access) assert.ok(!text.includes(access), 'response contains the access token');
}

test('GET /auth/login renders a form that works without JavaScript and keeps next', async () => {
  const r = await s.gateway.req('GET', '/auth/login?next=%2Fdocs%2Fpage%3Fa%3D1', { headers: { accept: 'text/html' } });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /text\/html/);
  const formTag = /<form[^>]*>/i.exec(r.text)?.[0] ?? '';
  assert.match(formTag, /method="post"/i, 'a plain POST form');
  assert.ok(/<input[^>]*name="username"/i.test(r.text) && /<input[^>]*name="password"/i.test(r.text));
  assert.ok(/<label[^>]*for="username"/i.test(r.text) && /<label[^>]*for="password"/i.test(r.text), 'labelled inputs');
  const next = /name="next"[^>]*value="([^"]*)"/i.exec(r.text) || /value="([^"]*)"[^>]*name="next"/i.exec(r.text);
  assert.ok(next, 'hidden next field present');
  assert.equal(htmlUnescape(next[1]), '/docs/page?a=1');
});

test('GET /auth/login escapes next in the page (no reflected XSS)', async () => {
  const evil = '/"><script>alert(1)</script>';
  const r = await s.gateway.req('GET', `/auth/login?next=${encodeURIComponent(evil)}`, { headers: { accept: 'text/html' } });
  assert.ok(r.status < 500);
  assert.ok(!r.text.includes('<script>alert(1)'), 'next reflected unescaped');
});

test('POST /auth/login (form) → 303 to next with a session cookie', async () => {
  const user = s.issuer.addUser();
  const r = await s.gateway.req('POST', '/auth/login', {
    headers: formHeaders(s.gateway), body: form({ username: user, password: PASSWORD, next: '/dashboard?tab=2' }),
  });
  assert.equal(r.status, 303, r.text);
  assert.equal(r.headers.location, '/dashboard?tab=2');
  assert.equal(sessionSets(r).length >= 1, true, 'sets the session cookie');
  assert.match(r.headers['cache-control'] ?? '', /private/);
  assert.match(r.headers['cache-control'] ?? '', /no-store/);
});

test('the whole page flow keeps the return path: 303 → login page → form → 303 back', async () => {
  const user = s.issuer.addUser();
  const r1 = await s.gateway.req('GET', '/app/deep/page?x=1&y=two', { headers: { accept: 'text/html' } });
  assert.equal(r1.status, 303);
  const r2 = await s.gateway.req('GET', r1.headers.location, { headers: { accept: 'text/html' } });
  assert.equal(r2.status, 200);
  const m = /<input[^>]*name="next"[^>]*>/i.exec(r2.text)?.[0] ?? '';
  const next = htmlUnescape(/value="([^"]*)"/.exec(m)?.[1] ?? '');
  const r3 = await s.gateway.req('POST', '/auth/login', {
    headers: formHeaders(s.gateway), body: form({ username: user, password: PASSWORD, next }),
  });
  assert.equal(r3.status, 303);
  assert.equal(r3.headers.location, '/app/deep/page?x=1&y=two');
});

test('the return path survives encoding round trips (encoded &, /, unicode, +)', async () => {
  const user = s.issuer.addUser();
  for (const target of ['/app/x?q=a%26b&r=%2F', '/caf%C3%A9/menu?item=cr%C3%AApe', '/s?q=1+2%2B3']) {
    const r1 = await s.gateway.req('GET', target, { headers: { accept: 'text/html' } });
    assert.equal(r1.status, 303);
    const next = new URL(r1.headers.location, s.gateway.origin).searchParams.get('next');
    const r2 = await s.gateway.req('POST', '/auth/login', {
      headers: formHeaders(s.gateway), body: form({ username: user, password: PASSWORD, next }),
    });
    assert.equal(r2.status, 303);
    const want = new URL(target, s.gateway.origin);
    const got = new URL(r2.headers.location, s.gateway.origin);
    assert.equal(got.pathname, want.pathname, `${target} → ${r2.headers.location}`);
    assert.deepEqual([...got.searchParams], [...want.searchParams], `${target} → ${r2.headers.location}`);
  }
});

test('POST /auth/login (form) without next → 303 to /', async () => {
  const r = await s.gateway.req('POST', '/auth/login', {
    headers: formHeaders(s.gateway), body: form({ username: s.issuer.addUser(), password: PASSWORD }),
  });
  assert.equal(r.status, 303);
  assert.equal(new URL(r.headers.location, s.gateway.origin).pathname, '/');
});

test('the re-rendered login form announces its error (role=alert or aria-live) and keeps the username', async () => {
  const user = s.issuer.addUser();
  const r = await s.gateway.req('POST', '/auth/login', {
    headers: formHeaders(s.gateway), body: form({ username: user, password: 'wrong wrong', next: '/x' }),
  });
  assert.equal(r.status, 401);
  assert.match(r.text, /role="alert"|aria-live="(assertive|polite)"/);
  assert.ok(r.text.includes(`value="${user}"`), 'username kept');
  assert.ok(!r.text.includes('wrong wrong'), 'password never echoed');
});

test('POST /auth/login (JSON) → 200 with the session view and no tokens', async () => {
  const user = s.issuer.addUser();
  const { jar, res } = await loginJson(s.gateway, user);
  assert.equal(res.status, 200);
  assert.equal(res.json?.isLoggedIn, true, res.text);
  assert.ok(res.json.user && typeof res.json.user.sub === 'string', 'user.sub');
  assert.ok('accessTokenExpiresAt' in res.json, 'accessTokenExpiresAt');
  // Learn the real tokens: the access token from upstream, the refresh token never leaks.
  const up = await api(s.gateway, jar, 'GET', '/api/whoami');
  const access = bearerOf(s.upstream.requestsFor('/api/whoami').at(-1));
  assert.ok(access);
  assertNoSecrets(res.text, { access });
  assert.equal(up.status, 200);
});

test('login cookie: HttpOnly, SameSite=Lax, Path=/, ~30 days, name "sallyport" on plain-http localhost', async () => {
  const user = s.issuer.addUser();
  const { res } = await loginJson(s.gateway, user);
  const [c] = sessionSets(res);
  assert.ok(c, 'session cookie set');
  assert.ok(c.name === COOKIE || c.name === `${COOKIE}.0`, `cookie name ${c.name}`);
  assert.equal(c.attrs.httponly, true);
  assert.equal(String(c.attrs.samesite).toLowerCase(), 'lax');
  assert.equal(c.attrs.path, '/');
  const maxAge = Number(c.attrs['max-age']);
  assert.ok(maxAge > 29 * 86400 && maxAge <= 30 * 86400, `max-age ${maxAge}`);
  assert.ok(c.value.startsWith('Fe26.2') || decodeURIComponent(c.value).startsWith('Fe26.2'), 'an Iron seal');
});

test('POST /auth/login with a wrong password (form) → 401 form with one generic message', async () => {
  const user = s.issuer.addUser();
  const wrong = await s.gateway.req('POST', '/auth/login', {
    headers: formHeaders(s.gateway), body: form({ username: user, password: 'nope nope nope', next: '/x' }),
  });
  const unknown = await s.gateway.req('POST', '/auth/login', {
    headers: formHeaders(s.gateway), body: form({ username: 'nobody-here', password: 'nope nope nope', next: '/x' }),
  });
  assert.equal(wrong.status, 401);
  assert.equal(unknown.status, 401);
  assert.match(wrong.headers['content-type'], /text\/html/);
  assert.ok(/<form/i.test(wrong.text), 're-renders the form');
  assert.equal(sessionSets(wrong).length, 0);
  const msg = (t) => t.replace(/value="[^"]*"/g, '');
  assert.equal(msg(wrong.text), msg(unknown.text), 'unknown user and wrong password look the same');
});

test('POST /auth/login with a wrong password (JSON) → 401 generic JSON, same for unknown users', async () => {
  const user = s.issuer.addUser();
  const h = { 'content-type': 'application/json', accept: 'application/json', origin: s.gateway.origin };
  const wrong = await s.gateway.req('POST', '/auth/login', { headers: h, body: JSON.stringify({ username: user, password: 'x'.repeat(12) }) });
  const unknown = await s.gateway.req('POST', '/auth/login', { headers: h, body: JSON.stringify({ username: 'ghost-user', password: 'x'.repeat(12) }) });
  assert.equal(wrong.status, 401);
  assert.equal(unknown.status, 401);
  assert.equal(typeof wrong.json?.error, 'string');
  assert.equal(typeof wrong.json?.message, 'string');
  assert.deepEqual(wrong.json, unknown.json);
  assert.equal(sessionSets(wrong).length, 0);
});

test('POST /auth/login with malformed bodies → 4xx, never 5xx', async () => {
  const h = { accept: 'application/json', origin: s.gateway.origin };
  const cases = [
    [{ 'content-type': 'application/json' }, '{'],
    [{ 'content-type': 'application/json' }, '[]'],
    [{ 'content-type': 'application/json' }, '{"username":1}'],
    [{ 'content-type': 'application/x-www-form-urlencoded' }, '%%%'],
    [{ 'content-type': 'text/plain' }, 'hello'],
    [{}, ''],
    [{ 'content-type': 'application/json' }, JSON.stringify({ username: 'a'.repeat(100000), password: 'b' })],
  ];
  for (const [extra, body] of cases) {
    const r = await s.gateway.req('POST', '/auth/login', { headers: { ...h, ...extra }, body });
    assert.ok(r.status >= 400 && r.status < 500, `${JSON.stringify(extra)} ${body.slice(0, 20)} → ${r.status}`);
  }
});

test('POST /auth/logout (form) → 303 to the login page and the cookie is cleared', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const r = await s.gateway.req('POST', '/auth/logout', {
    headers: formHeaders(s.gateway, { cookie: jar.header() }), body: '',
  });
  assert.equal(r.status, 303);
  assert.match(r.headers.location ?? '', /^\/auth\/login(\?|$)/);
  const cleared = r.setCookies.map(parseSetCookie).filter((c) => c.name.startsWith(COOKIE));
  assert.ok(cleared.length >= 1 && cleared.every(isDeletion), `cookie cleared: ${r.setCookies}`);
  assert.match(r.headers['cache-control'] ?? '', /no-store/);
});

test('POST /auth/logout (JSON) → 204 and the session is gone', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const r = await api(s.gateway, jar, 'POST', '/auth/logout', { headers: { origin: s.gateway.origin } });
  assert.equal(r.status, 204);
  assert.equal(r.text, '');
  const cleared = r.setCookies.map(parseSetCookie).filter((c) => c.name.startsWith(COOKIE));
  assert.ok(cleared.length >= 1 && cleared.every(isDeletion));
  jar.apply(r);
  const v = await api(s.gateway, jar, 'GET', '/auth/session');
  assert.equal(v.json?.isLoggedIn, false);
});

test('POST /auth/logout revokes the session at the backend (the refresh token no longer works)', async () => {
  const user = s.issuer.addUser();
  const { jar } = await loginJson(s.gateway, user);
  assert.notEqual(s.issuer.cli(['session', 'list', '--user', user, '--json']).trim(), '', 'control: one live session');
  const copy = jar.clone();
  await api(s.gateway, jar, 'POST', '/auth/logout', { headers: { origin: s.gateway.origin } });
  assert.equal(s.issuer.cli(['session', 'list', '--user', user, '--json']).trim(), '', 'no live session left at the issuer');
  // A gateway process that never saw the logout cannot renew with the old cookie either.
  const fresh = await new Gateway({ issuer: s.issuer, upstreamPort: s.upstream.port }).start();
  const before = await s.issuer.refreshCount();
  const r = await api(fresh, copy, 'POST', '/auth/refresh', { headers: { origin: fresh.origin } });
  assert.equal(r.status, 401);
  assert.equal(r.json?.error, 'reauth_required');
  assert.equal(sessionSets(r).length, 0, 'no new session');
  assert.ok((await s.issuer.refreshCount()) - before <= 1);
});

test('POST /auth/refresh forces a renewal and answers the session view', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  await api(s.gateway, jar, 'GET', '/api/before-refresh');
  const oldToken = bearerOf(s.upstream.requestsFor('/api/before-refresh').at(-1));
  const before = await s.issuer.refreshCount();
  const r = await api(s.gateway, jar, 'POST', '/auth/refresh', { headers: { origin: s.gateway.origin } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json?.isLoggedIn, true);
  assert.equal(await s.issuer.refreshCount(), before + 1, 'exactly one backend refresh');
  assert.ok(sessionSets(r).length >= 1, 'new cookie');
  assert.match(r.headers['cache-control'] ?? '', /private/);
  assert.match(r.headers['cache-control'] ?? '', /no-store/);
  assertNoSecrets(r.text, { access: oldToken });
  jar.apply(r);
  await api(s.gateway, jar, 'GET', '/api/after-refresh');
  const newToken = bearerOf(s.upstream.requestsFor('/api/after-refresh').at(-1));
  assert.notEqual(newToken, oldToken);
  assertNoSecrets(r.text, { access: newToken });
});

test('POST /auth/refresh without a session → 401 with the error model', async () => {
  const r = await api(s.gateway, null, 'POST', '/auth/refresh', { headers: { origin: s.gateway.origin } });
  assert.equal(r.status, 401);
  assert.ok(AUTH_ERRORS.includes(r.json?.error), r.text);
});

test('GET /auth/session: user view, never a refresh token, no access token by default', async () => {
  const user = s.issuer.addUser();
  const { jar } = await loginJson(s.gateway, user);
  const r = await api(s.gateway, jar, 'GET', '/auth/session');
  assert.equal(r.status, 200);
  assert.equal(r.json.isLoggedIn, true);
  assert.equal(r.json.user.name, `User ${user}`);
  assert.ok(Array.isArray(r.json.user.roles) && r.json.user.roles.includes('reader'));
  assert.ok(Number.isFinite(Number(r.json.accessTokenExpiresAt)) || typeof r.json.accessTokenExpiresAt === 'string');
  await api(s.gateway, jar, 'GET', '/api/sess');
  const access = bearerOf(s.upstream.requestsFor('/api/sess').at(-1));
  assert.equal(decodeJwt(access).sub, r.json.user.sub);
  assertNoSecrets(r.text, { access });
  assert.ok(!/accessToken"\s*:/.test(r.text), 'no accessToken field by default');
  assert.equal(sessionSets(r).length, 0, 'GET /auth/session never re-seals');
});

test('GET /auth/session without a session → 200 {isLoggedIn:false}', async () => {
  const r = await api(s.gateway, null, 'GET', '/auth/session');
  assert.equal(r.status, 200);
  assert.equal(r.json?.isLoggedIn, false);
});

test('GET /auth/verify with a session → 200 with Authorization and identity headers', async () => {
  const user = s.issuer.addUser();
  const { jar } = await loginJson(s.gateway, user);
  const r = await s.gateway.admin('GET', '/auth/verify', { headers: { cookie: jar.header() } });
  assert.equal(r.status, 200);
  const auth = r.headers.authorization ?? '';
  assert.match(auth, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
  const { sub } = decodeJwt(auth.slice(7));
  const identity = Object.entries(r.headers).filter(([k]) => k !== 'authorization')
    .some(([, v]) => String(v).includes(sub) || String(v).includes(user));
  assert.ok(identity, `an identity header names the user: ${JSON.stringify(r.headers)}`);
});

test('GET /auth/verify without a session → 401', async () => {
  const r = await s.gateway.admin('GET', '/auth/verify', { headers: { accept: 'text/html' } });
  assert.equal(r.status, 401);
  const r2 = await s.gateway.admin('GET', '/auth/verify', { headers: { cookie: `${COOKIE}=garbage` } });
  assert.equal(r2.status, 401);
});

test('/healthz, /readyz and /metrics on the admin listener', async () => {
  const h = await s.gateway.admin('GET', '/healthz');
  assert.equal(h.status, 200);
  const r = await s.gateway.admin('GET', '/readyz');
  assert.equal(r.status, 200, 'backend reachable → ready');
  const m = await s.gateway.admin('GET', '/metrics');
  assert.equal(m.status, 200);
  assert.match(m.headers['content-type'], /text\/plain/);
  assert.match(m.text, /^# (TYPE|HELP) /m, 'Prometheus text format');
  assert.equal(s.upstream.requestsFor('/healthz').length + s.upstream.requestsFor('/metrics').length, 0,
    'served by the gateway, not proxied');
});

test('GET /auth/client.js is served as JavaScript', async () => {
  const r = await s.gateway.req('GET', '/auth/client.js');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'] ?? '', /javascript/);
});

test('unknown routes under the prefix are not proxied with a session-less 5xx', async () => {
  const r = await s.gateway.req('GET', '/auth/does-not-exist', { headers: { accept: 'application/json' } });
  assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
});

