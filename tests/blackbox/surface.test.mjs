// Issue 8, the request/response surface: what a client can make upstream believe
// (spoofed identity and forwarding headers, `_` spellings), where the access token can
// be read (verify only on the admin listener), the session cookie next to non-ASCII
// bytes, `;` path parameters against public globs, upgrades other than WebSocket, and
// CDN caching headers next to the session cookie.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startStack, Gateway, loginJson, api, rawRequest, bearerOf, advanceClock, sessionSets,
} from './lib/harness.mjs';

let s;
before(async () => { s = await startStack({ proxyToml: 'identity_headers = true' }); });
after(async () => { await s?.stop(); });

const uid = () => Math.random().toString(16).slice(2, 12);

const SPOOFED = {
  x_auth_request_user: 'admin',
  'X-Auth-Request-User': 'admin',
  x_forwarded_for: '203.0.113.66',
  'x-forwarded-for': '203.0.113.66',
  'x-forwarded-host': 'evil.example',
  'x-forwarded-proto': 'https',
  'x-forwarded-port': '8443',
  'x-forwarded-prefix': '/evil',
  'x-forwarded-ssl': 'on',
  forwarded: 'for=203.0.113.66;proto=https',
  'x-real-ip': '203.0.113.66',
  'x-original-url': '/admin',
  'x-rewrite-url': '/admin',
  'true-client-ip': '203.0.113.66',
  'x-client-ip': '203.0.113.66',
  'cf-connecting-ip': '203.0.113.66',
  'client-ip': '203.0.113.66',
  'remote-user': 'admin',
  x_custom: 'underscore',
};

test('spoofed identity and forwarding headers, in any spelling, never reach upstream', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  for (const withSession of [false, true]) {
    const id = uid();
    const path = withSession ? `/api/${id}` : `/public/${id}`;
    const r = await api(s.gateway, withSession ? jar : null, 'GET', path, { headers: { ...SPOOFED, authorization: 'Bearer forged' } });
    assert.equal(r.status, 200);
    const seen = s.upstream.requestsFor(id).at(-1);
    const raw = JSON.stringify(seen.rawHeaders);
    for (const bad of ['203.0.113.66', 'evil', '/admin', 'underscore', 'forged', '8443']) {
      assert.ok(!raw.includes(bad), `${bad} reached upstream (${path}): ${raw}`);
    }
    assert.ok(!seen.rawHeaders.some((h, i) => i % 2 === 0 && h.includes('_')), 'an underscore header reached upstream');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-port'], String(s.gateway.port));
    assert.equal(seen.headers.forwarded, `for=127.0.0.1;host="127.0.0.1:${s.gateway.port}";proto=http`);
    if (withSession) assert.ok(bearerOf(seen), 'the gateway token is sent');
    else assert.equal(seen.headers.authorization, undefined);
  }
});

test('the session cookie is stripped next to non-ASCII and non-UTF-8 bytes', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const variants = [
    Buffer.from(`name=José; ${jar.header()}`, 'utf8'),
    Buffer.concat([Buffer.from('a=\xff\xfe; ', 'latin1'), Buffer.from(jar.header())]),
    Buffer.from(`${jar.header()} ;\tz="quoted value"`, 'utf8'),
  ];
  for (const [i, cookie] of variants.entries()) {
    const id = uid();
    const head = Buffer.from(`GET /api/${id} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\nCookie: `);
    const r = await rawRequest(s.gateway.port, Buffer.concat([head, cookie, Buffer.from('\r\n\r\n')]));
    assert.equal(r.status, 200, `variant ${i}`);
    const seen = s.upstream.requestsFor(id).at(-1);
    assert.ok(seen.headers.cookie, `variant ${i}: the other cookies were dropped`);
    assert.ok(!seen.headers.cookie.includes('Fe26.'), `variant ${i}: the sealed cookie reached upstream`);
  }
});

test('a browser never receives the access token: verify is not on the public listener', async () => {
  const { jar, res } = await loginJson(s.gateway, s.issuer.addUser());
  const v = await s.gateway.admin('GET', '/auth/verify', { headers: { cookie: jar.header() } });
  assert.equal(v.status, 200);
  const token = bearerOf({ headers: v.headers });
  assert.ok(token && token.length > 20, 'control: the admin listener hands the proxy a token');
  const browser = {
    cookie: jar.header(), origin: s.gateway.origin, 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'cors', accept: '*/*',
  };
  const seen = [res];
  for (const [m, p] of [['GET', '/auth/verify'], ['POST', '/auth/verify'], ['GET', '/auth/verify?x=1'], ['GET', '/auth/session'], ['POST', '/auth/refresh']]) {
    const r = await s.gateway.req(m, p, { headers: browser });
    if (p === '/auth/verify') assert.equal(r.status, 404, `${m} ${p} on the public listener`);
    seen.push(r);
  }
  // /metrics on the public port is upstream's path, not the gateway's Prometheus text.
  const m = await s.gateway.req('GET', '/metrics', { headers: browser });
  assert.ok(!/sallyport_gateway_/.test(m.text), 'gateway metrics on the public listener');
  for (const r of seen) {
    const visible = r.text + JSON.stringify(r.headers);
    assert.ok(!visible.includes(token), 'the access token reached the browser');
    assert.ok(!/bearer /i.test(JSON.stringify(r.headers)), 'a Bearer header reached the browser');
  }
});

test('verify: a spoofed X-Forwarded-Method cannot turn a cross-site POST into a GET', async () => {
  const { jar } = await loginJson(s.gateway, s.issuer.addUser());
  const r = await s.gateway.admin('GET', '/auth/verify', {
    headers: {
      cookie: jar.header(), origin: 'http://evil.example', 'sec-fetch-site': 'cross-site',
      'x-original-method': 'POST', 'x-forwarded-method': 'GET', 'x-original-uri': '/api/x',
    },
  });
  assert.equal(r.status, 403);
  assert.equal(r.headers.authorization, undefined);
});

test('`;` path parameters never make a path public (extension globs)', async () => {
  const g = await new Gateway({ issuer: s.issuer, upstreamPort: s.upstream.port, publicPaths: ['/public/**', '**/*.css'] }).start();
  const before = s.upstream.log.length;
  for (const p of ['/admin/secret;.css', '/admin;/secret.css', '/admin/secret%3B.css', '/admin/secret%253B.css', '/admin/secret;v=1.css']) {
    const r = await rawRequest(g.port, `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n`);
    assert.equal(r.status, 401, `${p} was served anonymously`);
  }
  assert.equal(s.upstream.log.length, before, 'a parameter path reached upstream anonymously');
  const css = await g.req('GET', '/site/app.css');
  assert.equal(css.status, 200, 'control: a real stylesheet is public');
  // Forward-auth makes the same decision from the proxy's URI headers.
  const v = await g.admin('GET', '/auth/verify', { headers: { 'x-original-uri': '/admin/secret;.css' } });
  assert.equal(v.status, 401);
  const ok = await g.admin('GET', '/auth/verify', { headers: { 'x-original-uri': '/site/app.css' } });
  assert.equal(ok.status, 200);
});

test('only WebSocket upgrades are passed on; h2c is refused with a JSON 400', async () => {
  const before = s.upstream.log.length;
  const r = await rawRequest(s.gateway.port, 'GET /public/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n'
    + 'Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n');
  assert.equal(r.status, 400);
  assert.match(r.raw, /upgrade_refused/);
  assert.equal(s.upstream.log.length, before, 'the h2c request reached upstream');
});

test('CDN cache headers never accompany the session cookie', async () => {
  const t = await startStack({ accessTtl: 6, sessionToml: 'leeway_secs = 5' });
  try {
    const { jar } = await loginJson(t.gateway, t.issuer.addUser());
    // Move the clock until inside the leeway (exp has one-second granularity): that request renews.
    let r;
    for (let i = 0; i < 8; i++) {
      await advanceClock(1000);
      r = await api(t.gateway, jar, 'GET', '/cdn');
      assert.equal(r.status, 200);
      if (sessionSets(r).length > 0) break;
      assert.ok(r.headers['cdn-cache-control'], 'control: without a cookie, upstream caching headers stay');
    }
    assert.ok(sessionSets(r).length > 0, 'control: the response renews the cookie');
    for (const h of ['cdn-cache-control', 'surrogate-control', 'cloudflare-cdn-cache-control']) {
      assert.equal(r.headers[h], undefined, `${h} next to Set-Cookie`);
    }
    assert.equal(r.headers['cache-control'], 'private, no-store');
  } finally { await t.stop(); }
});
