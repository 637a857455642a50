// docs/design.md middleware steps 4 and 5 and "Logout cannot be undone by stragglers":
// proactive, single-flight renewal against the real issuer, refusal → reauth, and
// in-flight responses after logout. Access tokens live 8 s here; leeway is 4 s; time
// moves through the stack's test clock (`untilBeforeExp`), never by sleeping. The
// issuer's reuse interval is 0, so a second use of a refresh token revokes the session:
// any duplicate renewal shows up as a failure, not just as a counter.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startStack, Gateway, loginJson, api, sessionSets, parseSetCookie, isDeletion, Jar, bearerOf, decodeJwt, clockNow, untilBeforeExp, ironUnseal, sessionSeal,
  COOKIE, SECRET,
} from './lib/harness.mjs';

const TTL = 8;
const LEEWAY = 4;
let s;
before(async () => {
  s = await startStack({ accessTtl: TTL, reuseInterval: 0, sessionToml: `leeway_secs = ${LEEWAY}` });
});
after(async () => { await s?.stop(); });

const uid = () => crypto.randomBytes(6).toString('hex');

/** Logs in and learns the access token the gateway holds (via upstream). */
async function session() {
  const user = s.issuer.addUser();
  const { jar } = await loginJson(s.gateway, user);
  const id = uid();
  await api(s.gateway, jar, 'GET', `/api/${id}`);
  const token = bearerOf(s.upstream.requestsFor(id).at(-1));
  return { user, jar, token, exp: decodeJwt(token).exp };
}

function cacheControlOk(r) {
  const cc = r.headers['cache-control'] ?? '';
  return /private/.test(cc) && /no-store/.test(cc);
}

test('proactive renewal inside the leeway: new token upstream, new cookie, Cache-Control: private, no-store', async () => {
  const { jar, token, exp } = await session();
  await untilBeforeExp(exp, LEEWAY - 1.5); // 2.5 s left: inside the leeway, still valid
  const before = await s.issuer.refreshCount();
  const id = uid();
  const sentAt = clockNow();
  const r = await api(s.gateway, jar, 'GET', `/api/${id}`);
  assert.ok(sentAt < exp * 1000 - 1000, 'control: the old token had not expired yet');
  assert.equal(r.status, 200);
  const fresh = bearerOf(s.upstream.requestsFor(id).at(-1));
  assert.notEqual(fresh, token, 'upstream got the renewed token on the same request');
  assert.ok(decodeJwt(fresh).exp > exp);
  assert.ok(sessionSets(r).length >= 1, 'renewed cookie set');
  assert.ok(cacheControlOk(r), `Cache-Control: ${r.headers['cache-control']}`);
  assert.equal(await s.issuer.refreshCount(), before + 1);
  // The next request with the new cookie renews nothing.
  jar.apply(r);
  const id2 = uid();
  const r2 = await api(s.gateway, jar, 'GET', `/api/${id2}`);
  assert.equal(r2.status, 200);
  assert.equal(bearerOf(s.upstream.requestsFor(id2).at(-1)), fresh);
  assert.equal(sessionSets(r2).length, 0, 'no cookie when nothing changed');
  assert.equal(await s.issuer.refreshCount(), before + 1);
});

test('outside the leeway nothing is renewed', async () => {
  const { jar, token } = await session();
  const before = await s.issuer.refreshCount();
  const id = uid();
  const r = await api(s.gateway, jar, 'GET', `/api/${id}`);
  assert.equal(bearerOf(s.upstream.requestsFor(id).at(-1)), token);
  assert.equal(sessionSets(r).length, 0);
  assert.equal(await s.issuer.refreshCount(), before);
});

test('GET /auth/session never renews or re-seals, even inside the leeway or after expiry', async () => {
  const { jar, exp } = await session();
  await untilBeforeExp(exp, -1);
  const before = await s.issuer.refreshCount();
  const r = await api(s.gateway, jar, 'GET', '/auth/session');
  assert.equal(r.status, 200);
  assert.equal(sessionSets(r).length, 0);
  assert.equal(await s.issuer.refreshCount(), before);
});

test('50 concurrent requests with an expired session: all succeed, exactly one refresh, every Set-Cookie valid', async () => {
  const { jar, token, exp } = await session();
  await untilBeforeExp(exp, -1);
  const before = await s.issuer.refreshCount();
  const tag = uid();
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => api(s.gateway, jar, 'GET', `/api/${tag}/${i}`)));
  const statuses = results.map((r) => r.status);
  assert.deepEqual(statuses.filter((x) => x !== 200), [], `statuses: ${statuses}`);
  assert.equal(await s.issuer.refreshCount(), before + 1, 'exactly one refresh reached the issuer');
  const tokens = new Set(s.upstream.requestsFor(tag).map(bearerOf));
  assert.equal(tokens.size, 1, 'all 50 upstream calls carry the same token');
  assert.ok(!tokens.has(token), 'and it is the new one');
  const missing = results.filter((r) => sessionSets(r).length === 0).length;
  assert.equal(missing, 0, `${missing} responses did not carry the renewed cookie`);
  for (const r of results) {
    const j = new Jar();
    j.apply(r);
    const v = await api(s.gateway, j, 'GET', '/auth/session');
    assert.equal(v.json?.isLoggedIn, true, 'each Set-Cookie holds a valid session');
  }
  // A straggler with the old cookie, just after the rotation, reuses the result.
  const late = uid();
  const lr = await api(s.gateway, jar, 'GET', `/api/${late}`);
  assert.equal(lr.status, 200, 'late request with the old cookie');
  assert.equal(await s.issuer.refreshCount(), before + 1, 'no second refresh for the straggler');
  assert.ok(tokens.has(bearerOf(s.upstream.requestsFor(late).at(-1))));
});

test('an expired session on a page navigation is renewed, not sent to the login page', async () => {
  const { jar, exp } = await session();
  await untilBeforeExp(exp, -1);
  const id = uid();
  const r = await s.gateway.req('GET', `/page/${id}`, { headers: { accept: 'text/html', cookie: jar.header() } });
  assert.equal(r.status, 200);
  assert.ok(sessionSets(r).length >= 1);
  assert.ok(cacheControlOk(r));
});

test('GET /auth/verify renews an expired session: 200, new Authorization, one Set-Cookie', async () => {
  const { jar, token, exp } = await session();
  await untilBeforeExp(exp, -1);
  const before = await s.issuer.refreshCount();
  const r = await s.gateway.admin('GET', '/auth/verify', { headers: { cookie: jar.header() } });
  assert.equal(r.status, 200);
  const t = (r.headers.authorization ?? '').replace(/^Bearer /, '');
  assert.ok(t && t !== token);
  assert.equal(sessionSets(r).length, 1, 'exactly one Set-Cookie (auth_request proxies copy one)');
  // Replaying the old cookie right away gives the same tokens, not a second refresh.
  const r2 = await s.gateway.admin('GET', '/auth/verify', { headers: { cookie: jar.header() } });
  assert.equal(r2.status, 200);
  assert.equal((r2.headers.authorization ?? '').replace(/^Bearer /, ''), t);
  assert.equal(await s.issuer.refreshCount(), before + 1);
});

test('revoked refresh token (sallyport session revoke) → POST /auth/refresh answers reauth_required and clears the cookie', async () => {
  const { user, jar } = await session();
  s.issuer.revokeUserSessions(user);
  const r = await api(s.gateway, jar, 'POST', '/auth/refresh', { headers: { origin: s.gateway.origin } });
  assert.equal(r.status, 401);
  assert.equal(r.json?.error, 'reauth_required');
  const cleared = r.setCookies.map(parseSetCookie).filter((c) => c.name.startsWith(COOKIE));
  assert.ok(cleared.length >= 1 && cleared.every(isDeletion), `cookie cleared: ${r.setCookies}`);
});

test('revoked refresh token → at renewal time API gets 401 reauth_required, pages get 303 to login', async () => {
  const a = await session();
  const b = await session();
  s.issuer.revokeUserSessions(a.user);
  s.issuer.revokeUserSessions(b.user);
  await untilBeforeExp(Math.max(a.exp, b.exp), -1);
  const r = await api(s.gateway, a.jar, 'GET', `/api/${uid()}`);
  assert.equal(r.status, 401);
  assert.equal(r.json?.error, 'reauth_required');
  assert.match(r.headers['www-authenticate'] ?? '', /reauth_required/);
  assert.ok(r.setCookies.map(parseSetCookie).filter((c) => c.name.startsWith(COOKIE)).every(isDeletion));
  const p = await s.gateway.req('GET', '/page/x', { headers: { accept: 'text/html', cookie: b.jar.header() } });
  assert.equal(p.status, 303);
  assert.match(p.headers.location ?? '', /^\/auth\/login\?next=/);
});

test('a request in flight during logout does not re-set the session cookie', async () => {
  const { jar, exp } = await session();
  await untilBeforeExp(exp, LEEWAY - 1.5); // the held request renews at its start
  const id = uid();
  const before = await s.issuer.refreshCount();
  const held = api(s.gateway, jar, 'GET', `/hold/${id}`);
  await s.upstream.arrived(id);
  assert.equal(await s.issuer.refreshCount(), before + 1, 'control: the held request renewed the session');
  const lo = await api(s.gateway, jar.clone(), 'POST', '/auth/logout', { headers: { origin: s.gateway.origin } });
  assert.equal(lo.status, 204);
  s.upstream.release(id);
  const r = await held;
  assert.equal(r.status, 200);
  assert.equal(sessionSets(r).length, 0, `the straggler re-set the cookie: ${r.setCookies}`);
  // Whatever order the browser applies them in, it ends up logged out.
  for (const order of [[lo, r], [r, lo]]) {
    const j = jar.clone();
    for (const res of order) j.apply(res);
    const v = await api(s.gateway, j, 'GET', `/api/${uid()}`);
    assert.equal(v.status, 401);
  }
});

test('forward_session_cookie: upstream sees the renewed session cookie on the same request (PP-03)', async () => {
  const g = await new Gateway({
    issuer: s.issuer, upstreamPort: s.upstream.port, sessionToml: `leeway_secs = ${LEEWAY}`, proxyToml: 'forward_session_cookie = true',
  }).start();
  const { jar } = await loginJson(g, s.issuer.addUser());
  const warm = uid();
  await api(g, jar, 'GET', `/api/${warm}`);
  const old = bearerOf(s.upstream.requestsFor(warm).at(-1));
  await untilBeforeExp(decodeJwt(old).exp, -1);
  const id = uid();
  const r = await api(g, jar, 'GET', `/api/${id}`);
  assert.equal(r.status, 200);
  const e = s.upstream.requestsFor(id).at(-1);
  const fresh = bearerOf(e);
  assert.notEqual(fresh, old);
  const fwd = new Jar();
  for (const part of (e.headers.cookie ?? '').split(/;\s*/)) {
    const i = part.indexOf('=');
    if (i > 0) fwd.cookies.set(part.slice(0, i), part.slice(i + 1));
  }
  const seen = ironUnseal(sessionSeal(fwd), SECRET);
  assert.equal(seen.accessToken, fresh, 'the forwarded cookie holds the new tokens, not the stale ones');
});
