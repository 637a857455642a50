// The forward-auth contract, run against one real reverse proxy with the guide's files.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { after, before, test } from 'node:test';

import {
  Issuer, Jar, PASSWORD, Upstream, advanceClock, bearerOf, clockNow, decodeJwt, form, killAll, parseSetCookie, isDeletion, request, sleep,
} from '../../blackbox/lib/harness.mjs';
import { COOKIE, ORIGIN, START, startGateway, stop } from './servers.mjs';

/** The issuer allows at most 64 roles of at most 64 bytes: enough for a chunked session. */
const BIG_ROLES = Array.from({ length: 64 }, (_, i) => `role-${String(i).padStart(4, '0')}-${'x'.repeat(54)}`);

/** Access tokens live this long; the gateway renews within half of it (its leeway cap). */
// Long enough that two consecutive requests never straddle the leeway on a slow machine.
const TTL = 12;

/**
 * Milliseconds (on the stack's test clock) until a token expiring at `exp` (s) is surely inside the gateway's renewal
 * leeway and still valid. The leeway is half the lifetime the gateway saw, counted in whole
 * seconds from when it received the token: on a busy machine that is a second or two after
 * the issuer's `iat`, which shrinks the leeway to 5 s — so aim 4 s before expiry, not 5.5.
 */
function renewalDueIn(exp) {
  return (exp - TTL / 2 + 2) * 1000 - clockNow();
}

export function forwardAuthSuite(proxy) {
  const s = {};

  before(async () => {
    s.issuer = await new Issuer({ accessTtl: TTL, reuseInterval: 0 }).start();
    // A chunked session's request carries the cookie, the token and the roles header:
    // more than Node's default 16 KiB of headers.
    s.upstream = new Upstream();
    s.upstream.server = http.createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => s.upstream.handle(req, res));
    await s.upstream.start();
    s.gateway = await startGateway(proxy, { issuerPort: s.issuer.port, appPort: s.upstream.port });
    s.proxy = await START[proxy]({ gateway: s.gateway.port, adminPort: s.gateway.adminPort, appPort: s.upstream.port });
    // Traefik loads its routes a moment after it listens: wait until /auth/ is routed.
    for (let i = 0; i < 100; i++) {
      try { if ((await px('GET', '/auth/client.js')).status === 200) break; } catch { /* not yet */ }
      await sleep(100);
    }
  });

  after(async () => {
    const died = s.gateway && s.gateway.child.exitCode !== null;
    await stop(s.proxy?.child);
    await stop(s.gateway?.child);
    killAll();
    await s.upstream?.stop();
    if (died) assert.fail(`the gateway exited during the tests:\n${fs.readFileSync(s.gateway.log, 'utf8').slice(-3000)}`);
  });

  /** A request to the proxy (what a browser reaches), with the jar's cookies. */
  function px(method, p, { jar, headers = {}, body } = {}) {
    const h = { ...headers };
    if (jar && jar.size) h.cookie = jar.header();
    return request(s.proxy.port, method, p, { headers: h, body });
  }
  const page = { accept: 'text/html,application/xhtml+xml', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' };
  const json = { accept: 'application/json' };

  function sessionSets(res) {
    return res.setCookies.map(parseSetCookie).filter((c) => c.name === COOKIE || c.name.startsWith(`${COOKIE}.`));
  }

  /** Logs in with the form through the proxy, as a browser does; returns the jar. */
  async function login(user, next = '/page') {
    const r = await px('POST', '/auth/login', {
      headers: { ...page, 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN, 'sec-fetch-site': 'same-origin' },
      body: form({ username: user, password: PASSWORD, next }),
    });
    assert.equal(r.status, 303, `login: ${r.status} ${r.text}`);
    assert.equal(r.headers.location, next);
    const jar = new Jar();
    jar.apply(r);
    assert.ok(jar.cookies.has(COOKIE) || jar.cookies.has(`${COOKIE}.0`), `login set no session cookie: ${r.setCookies}`);
    return jar;
  }

  const lastFor = (p) => s.upstream.requestsFor(p).at(-1);

  /** The token is `user`'s (the issuer names users `User <name>`); returns its subject. */
  function tokenOf(token, user) {
    assert.ok(token, 'no bearer token upstream');
    const claims = decodeJwt(token);
    assert.equal(claims.name, `User ${user}`);
    return claims.sub;
  }

  test(`${proxy}: an anonymous page goes to the login page with next, and the app never sees it`, async () => {
    const r = await px('GET', '/page?tab=2', { headers: page });
    assert.equal(r.status, 303, r.text);
    const loc = new URL(r.headers.location, ORIGIN);
    assert.equal(loc.pathname, '/auth/login');
    assert.equal(loc.searchParams.get('next'), '/page?tab=2');
    assert.equal(s.upstream.requestsFor('/page').length, 0);
    // The login page it points to is served through the same proxy.
    const form = await px('GET', `${loc.pathname}${loc.search}`, { headers: page });
    assert.equal(form.status, 200);
    assert.match(form.headers['content-type'], /text\/html/);
  });

  test(`${proxy}: an API request without a session gets 401 JSON`, async () => {
    const r = await px('GET', '/api/data', { headers: json });
    assert.equal(r.status, 401, r.text);
    assert.match(r.headers['content-type'] || '', /application\/json/);
    assert.equal(typeof r.json?.error, 'string', r.text);
    assert.equal(s.upstream.requestsFor('/api/data').length, 0);
  });

  test(`${proxy}: after login the app gets the Bearer token and identity headers`, async () => {
    const user = s.issuer.addUser('fa', ['reader', 'writer']);
    const jar = await login(user);
    const r = await px('GET', '/page', { jar, headers: page });
    assert.equal(r.status, 200, r.text);
    const seen = lastFor('/page');
    const token = bearerOf(seen);
    assert.ok(token, `no bearer token upstream: ${JSON.stringify(seen.headers)}`);
    assert.equal(seen.headers['x-auth-request-user'], tokenOf(token, user));
    assert.equal(seen.headers['x-auth-request-name'], `User ${user}`);
    assert.equal(seen.headers['x-auth-request-roles'], 'reader,writer');
    // API calls with the session too.
    const a = await px('GET', '/api/data', { jar, headers: json });
    assert.equal(a.status, 200);
    tokenOf(bearerOf(lastFor('/api/data')), user);
  });

  test(`${proxy}: client-sent Authorization and identity headers never reach the app`, async () => {
    const forged = {
      authorization: 'Bearer forged.by.client',
      'x-auth-request-user': 'admin',
      'x-auth-request-name': 'Admin',
      'x-auth-request-roles': 'admin',
      'x-auth-request-access-token': 'forged',
    };
    // On a public path without a session verify sends no token: the proxy must still
    // drop the client's copies.
    const pub = await px('GET', '/assets/app.css', { headers: { ...forged, accept: 'text/css' } });
    assert.equal(pub.status, 200, pub.text);
    const seenPub = lastFor('/assets/app.css');
    for (const h of Object.keys(forged)) assert.equal(seenPub.headers[h], undefined, `${h} reached the app on a public path`);
    // With a session: the gateway's values replace the client's.
    const user = s.issuer.addUser('fa');
    const jar = await login(user);
    const r = await px('GET', '/page?forged=1', { jar, headers: { ...page, ...forged } });
    assert.equal(r.status, 200);
    const seen = lastFor('/page?forged=1');
    assert.equal(seen.headers['x-auth-request-user'], tokenOf(bearerOf(seen), user));
    assert.equal(seen.headers['x-auth-request-roles'], 'reader');
    assert.equal(seen.headers['x-auth-request-access-token'], undefined);
    assert.equal(seen.rawHeaders.filter((h) => /^authorization$/i.test(h)).length, 1);
    assert.equal(seen.rawHeaders.filter((h) => /^x-auth-request-user$/i.test(h)).length, 1);
  });

  test(`${proxy}: renewal inside forward-auth gives the browser the new cookie`, async () => {
    const user = s.issuer.addUser('fa');
    let jar = await login(user);
    await px('GET', '/page?before', { jar, headers: page });
    const first = bearerOf(lastFor('/page?before'));
    const exp = decodeJwt(first).exp;
    // Inside the leeway (half the lifetime), still valid: verify renews.
    const wait = renewalDueIn(exp);
    await advanceClock(wait); // the stack's test clock, not a sleep
    const r = await px('GET', '/page?renewed', { jar, headers: page });
    assert.equal(r.status, 200, r.text);
    const second = bearerOf(lastFor('/page?renewed'));
    assert.notEqual(second, first, 'the app got the old token inside the leeway');
    tokenOf(second, user);
    const sets = sessionSets(r).filter((c) => !isDeletion(c));
    assert.ok(sets.length >= 1, `no new session cookie reached the client: ${JSON.stringify(r.setCookies)}`);
    const cc = r.headers['cache-control'] || '';
    assert.ok(/private/.test(cc) && /no-store/.test(cc), `a response setting the cookie is cacheable: ${cc}`);
    const old = jar.clone();
    jar.apply(r);
    assert.notEqual(jar.header(), old.header());
    // The new cookie carries the new token: the next request is not renewed again.
    const n = await px('GET', '/page?after', { jar, headers: page });
    assert.equal(n.status, 200);
    assert.equal(bearerOf(lastFor('/page?after')), second);
    assert.equal(sessionSets(n).length, 0, 'the new cookie was not the one the browser got');
  });

  if (proxy === 'nginx') {
    test('nginx: the gateway refuses to start with session.chunking on (one Set-Cookie through auth_request)', async () => {
      const g = await startGateway(proxy, {
        issuerPort: s.issuer.port, appPort: s.upstream.port, env: { SALLYPORT_GATEWAY_SESSION__CHUNKING: 'true' },
      }).then(() => null, (e) => e);
      assert.ok(g, 'the gateway started with forward_auth = "nginx" and chunking on');
      assert.match(g.message, /session\.chunking/);
      assert.match(g.message, /forward_auth = "nginx"/);
    });

    test('nginx: why — with chunking forced on, a renewed chunked session loses cookies on the way', async () => {
      // The same gateway file, but told it is behind Traefik so that it starts with
      // chunking: nginx then hands the browser only one of the renewal's Set-Cookies.
      const g = await startGateway(proxy, {
        issuerPort: s.issuer.port,
        appPort: s.upstream.port,
        env: { SALLYPORT_GATEWAY_SESSION__CHUNKING: 'true', SALLYPORT_GATEWAY_ADMIN__FORWARD_AUTH: 'traefik' },
      });
      const n = await START.nginx({ gateway: g.port, adminPort: g.adminPort, appPort: s.upstream.port });
      try {
        const via = (method, p, opts = {}) => request(n.port, method, p, { ...opts, headers: { ...(opts.headers || {}), ...(opts.jar ? { cookie: opts.jar.header() } : {}) } });
        // Big enough for two cookies, small enough for nginx's header buffers above.
        const user = s.issuer.addUser('big', BIG_ROLES.slice(0, 30));
        const l = await via('POST', '/auth/login', {
          headers: { ...page, 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
          body: form({ username: user, password: PASSWORD, next: '/page' }),
        });
        assert.equal(l.status, 303);
        const jar = new Jar();
        jar.apply(l);
        const chunks = sessionSets(l).length;
        assert.ok(chunks >= 2, 'not chunked');
        const b = await via('GET', '/page?nginx-chunked', { jar, headers: page });
        assert.equal(b.status, 200);
        const first = bearerOf(lastFor('/page?nginx-chunked'));
        const wait = renewalDueIn(decodeJwt(first).exp);
        await advanceClock(wait); // the stack's test clock, not a sleep
        const r = await via('GET', '/page?nginx-chunked-renewed', { jar, headers: page });
        assert.equal(r.status, 200);
        assert.notEqual(bearerOf(lastFor('/page?nginx-chunked-renewed')), first, 'no renewal happened');
        assert.ok(sessionSets(r).length < chunks, `nginx passed ${sessionSets(r).length} of ${chunks} cookies`);
      } finally {
        await stop(n.child);
        await stop(g.child);
      }
    });
  } else {
    test(`${proxy}: a chunked session renews through the proxy: every chunk reaches the browser`, async () => {
      const user = s.issuer.addUser('big', BIG_ROLES);
      const jar = await login(user);
      assert.ok(jar.cookies.has(`${COOKIE}.0`) && jar.cookies.has(`${COOKIE}.1`), `not chunked: ${[...jar.cookies.keys()]}`);
      const b = await px('GET', '/page?big-before', { jar, headers: page });
      assert.equal(b.status, 200, `${b.status} ${b.text}`);
      const first = bearerOf(lastFor('/page?big-before'));
      const wait = renewalDueIn(decodeJwt(first).exp);
      await advanceClock(wait); // the stack's test clock, not a sleep
      const r = await px('GET', '/page?big-renewed', { jar, headers: page });
      assert.equal(r.status, 200, r.text);
      const second = bearerOf(lastFor('/page?big-renewed'));
      assert.notEqual(second, first);
      assert.ok(sessionSets(r).filter((c) => !isDeletion(c)).length >= 2, `chunks lost: ${r.setCookies.map((c) => c.split('=')[0])}`);
      jar.apply(r);
      const n = await px('GET', '/page?big-after', { jar, headers: page });
      assert.equal(n.status, 200);
      assert.equal(bearerOf(lastFor('/page?big-after')), second, 'the reassembled new session is not the renewed one');
    });

    test(`${proxy}: a state-changing request without a session gets 401, never the login redirect`, async () => {
      const r = await px('POST', '/page', {
        headers: { ...page, 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN }, body: 'a=1',
      });
      assert.equal(r.status, 401, r.text);
      // A client claiming another method to the proxy cannot turn it into a redirect.
      const g = await px('GET', '/page', { headers: { ...page, 'x-original-method': 'POST' } });
      assert.equal(g.status, 401, g.text);
    });
  }

  test(`${proxy}: the verify endpoint cannot be reached through the proxy`, async () => {
    const user = s.issuer.addUser('fa');
    const jar = await login(user);
    assert.notEqual(s.proxy.port, s.gateway.adminPort);
    for (const p of ['/auth/verify', '/auth/verify?x=1', '/auth//verify', '/auth/%76erify', '/_sallyport_verify']) {
      const before = s.upstream.log.length;
      const r = await px('GET', p, { jar, headers: { ...json, 'x-original-uri': '/page', 'x-forwarded-uri': '/page' } });
      assert.equal(r.headers.authorization, undefined, `${p} gave the token to the client`);
      assert.equal(r.headers['x-auth-request-user'], undefined, `${p} gave the identity to the client`);
      if (p.startsWith('/auth')) {
        // The gateway's public listener: no verify there.
        assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status} ${r.text}`);
      } else if (r.status === 200) {
        // nginx's internal location is a 404; elsewhere it is just an app path.
        assert.equal(s.upstream.log.length, before + 1, `${p}: a 200 that did not come from the app`);
      } else {
        assert.equal(r.status, 404, `${p}: ${r.status}`);
      }
    }
    // The admin listener's other routes are the app's paths through the proxy.
    const m = await px('GET', '/metrics', { headers: json });
    assert.equal(m.status, 401);
    assert.doesNotMatch(m.text, /sallyport_/);
  });

  test(`${proxy}: logout through the proxy ends the session`, async () => {
    const user = s.issuer.addUser('fa');
    const jar = await login(user);
    const copy = jar.clone();
    const r = await px('POST', '/auth/logout', { jar, headers: { ...json, origin: ORIGIN, 'sec-fetch-site': 'same-origin' } });
    assert.ok(r.status === 204 || r.status === 200 || r.status === 303, `logout: ${r.status} ${r.text}`);
    assert.ok(sessionSets(r).some(isDeletion), `logout did not clear the cookie: ${r.setCookies}`);
    jar.apply(r);
    assert.equal(jar.size, 0);
    // The old cookie, replayed, is refused too.
    const before = s.upstream.requestsFor('/page?after-logout').length;
    const p = await px('GET', '/page?after-logout', { jar: copy, headers: page });
    assert.equal(p.status, 303);
    assert.equal(new URL(p.headers.location, ORIGIN).pathname, '/auth/login');
    const a = await px('GET', '/api/after-logout', { jar: copy, headers: json });
    assert.equal(a.status, 401);
    assert.equal(s.upstream.requestsFor('/page?after-logout').length, before);
  });
}
