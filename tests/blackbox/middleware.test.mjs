// docs/design.md middleware steps 1, 3 and 6: no-session answers, the proxied request,
// public paths, streaming, WebSocket upgrades, upstream 401 replay and upstream faults.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import {
  startStack, Gateway, freePort, loginJson, api, rawRequest, sessionSets, decodeJwt, bearerOf,
  COOKIE, AUTH_ERRORS,
} from './lib/harness.mjs';

let s;
before(async () => { s = await startStack(); });
after(async () => { await s?.stop(); });

const uid = () => crypto.randomBytes(6).toString('hex');

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: nothing after ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(t));
}

test('no session, page navigation (GET, Accept: text/html) → 303 to /auth/login?next=<path>', async () => {
  const id = uid();
  const r = await s.gateway.req('GET', `/app/${id}?x=1`, { headers: { accept: 'text/html,application/xhtml+xml' } });
  assert.equal(r.status, 303);
  const loc = new URL(r.headers.location, s.gateway.origin);
  assert.equal(loc.origin, s.gateway.origin);
  assert.equal(loc.pathname, '/auth/login');
  assert.ok(loc.searchParams.get('next')?.startsWith(`/app/${id}`), r.headers.location);
  assert.equal(s.upstream.requestsFor(id).length, 0, 'upstream never sees it');
});

test('no session, API request → 401 JSON with WWW-Authenticate and an error code', async () => {
  const id = uid();
  const r = await s.gateway.req('GET', `/api/${id}`, { headers: { accept: 'application/json' } });
  assert.equal(r.status, 401);
  assert.match(r.headers['content-type'] ?? '', /application\/json/);
  assert.ok(r.headers['www-authenticate'], 'WWW-Authenticate present');
  assert.ok(AUTH_ERRORS.includes(r.json?.error), r.text);
  assert.equal(r.json.error, 'session_expired');
  assert.equal(typeof r.json.message, 'string');
  assert.ok(r.headers['www-authenticate'].includes(r.json.error), 'same code in WWW-Authenticate');
  assert.equal(s.upstream.requestsFor(id).length, 0);
});

test('no session, non-GET with Accept: text/html → 401, not a redirect', async () => {
  const id = uid();
  const r = await s.gateway.req('POST', `/app/${id}`, {
    headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded', origin: s.gateway.origin }, body: 'a=1',
  });
  assert.equal(r.status, 401);
  assert.equal(s.upstream.requestsFor(id).length, 0);
});

test('proxied request: Bearer token replaces a client-supplied Authorization, session cookie stripped', async () => {
  const { jar, res } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  const r = await s.gateway.req('GET', `/api/${id}`, {
    headers: { accept: 'application/json', cookie: jar.header(), authorization: 'Bearer forged.by.client' },
  });
  assert.equal(r.status, 200);
  const e = s.upstream.requestsFor(id).at(-1);
  const authHeaders = [];
  for (let i = 0; i < e.rawHeaders.length; i += 2) if (e.rawHeaders[i].toLowerCase() === 'authorization') authHeaders.push(e.rawHeaders[i + 1]);
  assert.equal(authHeaders.length, 1, `one Authorization header: ${authHeaders}`);
  const token = bearerOf(e);
  assert.ok(token && token !== 'forged.by.client');
  assert.equal(decodeJwt(token).sub, res.json.user.sub);
  assert.ok(!(e.headers.cookie ?? '').split(/;\s*/).some((c) => c.startsWith(`${COOKIE}=`) || c.startsWith(`${COOKIE}.`)),
    `session cookie reached upstream: ${e.headers.cookie}`);
});

test('proxied request: other cookies still reach upstream', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  await s.gateway.req('GET', `/api/${id}`, { headers: { accept: 'application/json', cookie: `theme=dark; ${jar.header()}; lang=en` } });
  const e = s.upstream.requestsFor(id).at(-1);
  assert.match(e.headers.cookie ?? '', /theme=dark/);
  assert.match(e.headers.cookie ?? '', /lang=en/);
});

test('proxied request carries X-Forwarded-For/Proto/Host', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  await s.gateway.req('GET', `/api/${id}`, { headers: { accept: 'application/json', cookie: jar.header() } });
  const e = s.upstream.requestsFor(id).at(-1);
  assert.equal((e.headers['x-forwarded-for'] ?? '').split(',').at(-1).trim(), '127.0.0.1');
  assert.equal(e.headers['x-forwarded-proto'], 'http');
  assert.equal(e.headers['x-forwarded-host'], `127.0.0.1:${s.gateway.port}`);
});

test('client-spoofed X-Forwarded-Host/Proto are not trusted by default', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  await s.gateway.req('GET', `/api/${id}`, {
    headers: { accept: 'application/json', cookie: jar.header(), 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', 'x-forwarded-for': '6.6.6.6' },
  });
  const e = s.upstream.requestsFor(id).at(-1);
  assert.equal(e.headers['x-forwarded-host'], `127.0.0.1:${s.gateway.port}`);
  assert.equal(e.headers['x-forwarded-proto'], 'http');
  assert.equal((e.headers['x-forwarded-for'] ?? '').split(',').at(-1).trim(), '127.0.0.1');
});

test('client-sent identity headers never reach upstream', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  await s.gateway.req('GET', `/api/${id}`, {
    headers: { accept: 'application/json', cookie: jar.header(), 'x-auth-request-user': 'admin', 'x-auth-request-roles': 'admin' },
  });
  const e = s.upstream.requestsFor(id).at(-1);
  assert.notEqual(e.headers['x-auth-request-user'], 'admin');
  assert.notEqual(e.headers['x-auth-request-roles'], 'admin');
  const pub = uid();
  await s.gateway.req('GET', `/public/${pub}`, { headers: { 'x-auth-request-user': 'admin' } });
  assert.notEqual(s.upstream.requestsFor(pub).at(-1)?.headers['x-auth-request-user'], 'admin');
});

test('public path without a session is proxied without Authorization', async () => {
  const id = uid();
  const r = await s.gateway.req('GET', `/public/a/b/${id}.css`, { headers: { accept: 'text/html' } });
  assert.equal(r.status, 200);
  const e = s.upstream.requestsFor(id).at(-1);
  assert.ok(e, 'reached upstream');
  assert.equal(e.headers.authorization, undefined);
  assert.equal(sessionSets(r).length, 0);
});

test('public path with a session gets the token attached', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  const r = await s.gateway.req('GET', `/public/${id}`, { headers: { cookie: jar.header() } });
  assert.equal(r.status, 200);
  const token = bearerOf(s.upstream.requestsFor(id).at(-1));
  assert.ok(token && decodeJwt(token).sub, 'Bearer attached on a public path');
});

test('public glob does not leak onto neighbouring paths (/publicity, /public without slash)', async () => {
  for (const p of ['/publicity', '/public-api/x', '/api/public/x']) {
    const id = uid();
    const r = await s.gateway.req('GET', `${p}?${id}`, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 401, `${p} → ${r.status}`);
    assert.equal(s.upstream.requestsFor(id).length, 0, `${p} reached upstream`);
  }
});

test('dot-segments cannot turn a public path into a protected one', async () => {
  for (const p of ['/public/../api/secret', '/public/%2e%2e/api/secret', '/public/%2E%2E/api/secret', '/public/..%2fapi/secret', '/public/.%2e/api/secret']) {
    const id = uid();
    const r = await rawRequest(s.gateway.port, `GET ${p}?${id} HTTP/1.1\r\nHost: 127.0.0.1:${s.gateway.port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`);
    assert.ok(r.status < 500, `${p} → ${r.status}`);
    const seen = s.upstream.requestsFor(id).at(-1);
    if (seen) {
      const normalized = new URL(seen.url, 'http://x').pathname;
      assert.ok(normalized.startsWith('/public/'), `${p}: upstream saw ${seen.url} (= ${normalized}) without a session`);
    }
  }
});

test('dot-segments through the gateway prefix cannot reach upstream without a session', async () => {
  for (const p of ['/auth/../api/secret', '/auth/%2e%2e/api/secret', '/auth/login/../../api/secret', '/healthz/../api/secret']) {
    const id = uid();
    const r = await rawRequest(s.gateway.port, `GET ${p}?${id} HTTP/1.1\r\nHost: 127.0.0.1:${s.gateway.port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`);
    assert.ok(r.status < 500, `${p} → ${r.status}`);
    const seen = s.upstream.requestsFor(id).at(-1);
    assert.ok(!seen || bearerOf(seen), `${p}: reached upstream as ${seen?.url} without a session`);
  }
});

test('response bodies stream (the first chunk arrives before upstream finishes)', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  const got = await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: s.gateway.port, path: `/stream/${id}`, headers: { cookie: jar.header(), accept: '*/*' } }, (res) => {
      let body = '';
      res.once('data', (d) => {
        body += d;
        const first = body;
        s.upstream.release(id);
        res.on('data', (d2) => { body += d2; });
        res.on('end', () => resolve({ first, body, status: res.statusCode }));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
    setTimeout(() => { s.upstream.release(id); }, 15000).unref();
  });
  assert.equal(got.status, 200);
  assert.equal(got.first, 'first-chunk;', 'first chunk delivered before the rest existed');
  assert.equal(got.body, 'first-chunk;last-chunk');
});

test('request bodies stream (upstream sees the head and first part before the client finishes)', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  const result = await new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: s.gateway.port, method: 'POST', path: `/echo-stream/${id}`,
      headers: { cookie: jar.header(), origin: s.gateway.origin, 'content-type': 'text/plain', 'transfer-encoding': 'chunked' },
    }, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
        if (body.includes('got:part1') && !req.writableEnded) req.end('part2');
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.write('part1');
    req.flushHeaders();
    setTimeout(() => { if (!req.writableEnded) { req.end('late'); } }, 15000).unref();
  });
  assert.equal(result.status, 200);
  assert.ok(result.body.startsWith('got:part1'), result.body);
  assert.ok(!result.body.includes('late'), 'the gateway waited for the whole request body before forwarding');
});

test('WebSocket upgrade passes through with the token attached', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  const echoed = await withTimeout(new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: s.gateway.port, path: `/ws/${id}`,
      headers: {
        cookie: jar.header(), connection: 'Upgrade', upgrade: 'websocket', origin: s.gateway.origin,
        'sec-websocket-version': '13', 'sec-websocket-key': crypto.randomBytes(16).toString('base64'),
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.once('data', (d) => { socket.destroy(); resolve({ status: res.statusCode, data: d.toString() }); });
      socket.write('ping-through-gateway');
    });
    req.on('response', (res) => resolve({ status: res.statusCode, data: '' }));
    req.on('error', reject);
    req.end();
  }), 15000, 'websocket');
  assert.equal(echoed.status, 101);
  assert.equal(echoed.data, 'ping-through-gateway');
  const e = s.upstream.requestsFor(`/ws/${id}`).at(-1);
  assert.ok(bearerOf(e), 'upgrade request carried the Bearer token');
});

test('WebSocket upgrade without a session is refused', async () => {
  const id = uid();
  const status = await withTimeout(new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: s.gateway.port, path: `/ws/${id}`,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': crypto.randomBytes(16).toString('base64') },
    });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', reject);
    req.end();
  }), 15000, 'websocket');
  assert.equal(status, 401);
  assert.equal(s.upstream.requestsFor(id).length, 0);
});

test('upstream 401 on GET → one renewal and one replay with the new token', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const warm = uid();
  await api(s.gateway, jar, 'GET', `/api/${warm}`);
  const t1 = bearerOf(s.upstream.requestsFor(warm).at(-1));
  s.upstream.rejected.add(t1);
  const before = await s.issuer.refreshCount();
  const id = uid();
  const r = await api(s.gateway, jar, 'GET', `/reject/${id}`);
  const seen = s.upstream.requestsFor(id);
  assert.equal(r.status, 200, r.text);
  assert.equal(seen.length, 2, 'original + one replay');
  assert.equal(bearerOf(seen[0]), t1);
  assert.notEqual(bearerOf(seen[1]), t1);
  assert.equal(await s.issuer.refreshCount(), before + 1);
  assert.ok(sessionSets(r).length >= 1, 'renewed session sent to the browser');
});

test('10 concurrent GETs all answered 401 by upstream share one renewal and all succeed', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const warm = uid();
  await api(s.gateway, jar, 'GET', `/api/${warm}`);
  s.upstream.rejected.add(bearerOf(s.upstream.requestsFor(warm).at(-1)));
  const before = await s.issuer.refreshCount();
  const tag = uid();
  const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => api(s.gateway, jar, 'GET', `/reject/${tag}/${i}`)));
  assert.deepEqual(rs.map((r) => r.status), Array(10).fill(200));
  assert.equal(await s.issuer.refreshCount(), before + 1, 'one renewal for all ten');
});

test('upstream 401 on POST without Idempotency-Key is not replayed', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const warm = uid();
  await api(s.gateway, jar, 'GET', `/api/${warm}`);
  s.upstream.rejected.add(bearerOf(s.upstream.requestsFor(warm).at(-1)));
  const id = uid();
  const r = await api(s.gateway, jar, 'POST', `/reject/${id}`, { headers: { origin: s.gateway.origin, 'content-type': 'application/json' }, body: '{"n":1}' });
  assert.equal(r.status, 401);
  assert.equal(s.upstream.requestsFor(id).length, 1, 'a non-idempotent request is sent once');
});

test('upstream 401 on POST with Idempotency-Key is replayed once', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const warm = uid();
  await api(s.gateway, jar, 'GET', `/api/${warm}`);
  s.upstream.rejected.add(bearerOf(s.upstream.requestsFor(warm).at(-1)));
  const id = uid();
  const r = await api(s.gateway, jar, 'POST', `/reject/${id}`, {
    headers: { origin: s.gateway.origin, 'content-type': 'application/json', 'idempotency-key': id }, body: '{"n":1}',
  });
  const seen = s.upstream.requestsFor(id);
  assert.equal(r.status, 200);
  assert.equal(seen.length, 2);
  assert.equal(seen[1].body, '{"n":1}', 'the replay carries the same body');
});

test('upstream that always answers 401 → replayed at most once, no loop', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const id = uid();
  const r = await api(s.gateway, jar, 'GET', `/always401/${id}`);
  assert.equal(r.status, 401);
  assert.ok(s.upstream.requestsFor(id).length <= 2, `upstream saw ${s.upstream.requestsFor(id).length} requests`);
});

test('upstream down → 502 plain page, not a hang', async () => {
  const dead = await freePort();
  const g = await new Gateway({ issuer: s.issuer, upstreamPort: dead }).start();
  const { jar } = await loginJson(g, s.issuer.addUser());
  const r = await withTimeout(api(g, jar, 'GET', '/api/x'), 15000, 'upstream down');
  assert.equal(r.status, 502);
  const p = await withTimeout(g.req('GET', '/page', { headers: { accept: 'text/html', cookie: jar.header() } }), 15000, 'page');
  assert.equal(p.status, 502);
});

test('upstream slower than response_timeout → 504, not a hang', async () => {
  const g = await new Gateway({ issuer: s.issuer, upstreamPort: s.upstream.port, responseTimeoutMs: 1000 }).start();
  const { jar } = await loginJson(g, s.issuer.addUser());
  const id = uid();
  const r = await withTimeout(api(g, jar, 'GET', `/hold/${id}`), 20000, 'slow upstream');
  s.upstream.release(id);
  assert.equal(r.status, 504);
});
