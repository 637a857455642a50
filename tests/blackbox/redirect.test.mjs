// docs/design.md step 7: `next` return paths are accepted only as same-site relative paths —
// no open redirect. Every hostile value is tried on the login page (hidden field), the
// form login (303 Location), the JSON login and the no-session redirect.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startStack, form, sessionSets, staysOnSite, htmlUnescape, rawRequest, PASSWORD,
} from './lib/harness.mjs';

let s;
let user;
before(async () => {
  s = await startStack();
  user = s.issuer.addUser();
});
after(async () => { await s?.stop(); });

export const HOSTILE_NEXT = [
  '//evil.example',
  '//evil.example/path',
  '///evil.example',
  '////evil.example/',
  '/\\evil.example',
  '\\\\evil.example',
  '\\/evil.example',
  '/\\/evil.example',
  '\\evil.example',
  'https://evil.example',
  'http://evil.example/x',
  'HTTPS://EVIL.EXAMPLE',
  'https:evil.example',
  'http:/evil.example',
  'http:\\\\evil.example',
  '%2F%2Fevil.example',
  '%2f%2fevil.example',
  '/%2F/evil.example',
  '/%5Cevil.example',
  '%5C%5Cevil.example',
  '/%09/evil.example',
  '%09//evil.example',
  'javascript:alert(1)',
  'JaVaScRiPt:alert(document.domain)',
  'java\tscript:alert(1)',
  'data:text/html,<script>alert(1)</script>',
  'vbscript:msgbox(1)',
  '/\t/evil.example',
  '/\n/evil.example',
  '/\r\n/evil.example',
  '\t//evil.example',
  ' //evil.example',
  '\n//evil.example',
  '/\\\t\\evil.example',
  '@evil.example',
  '//user@evil.example',
  'https://127.0.0.1@evil.example',
  '//127.0.0.1@evil.example/',
  '/\uFF0F/evil.example',          // fullwidth solidus
  '\uFF0F\uFF0Fevil.example',
  '/\u2215/evil.example',          // division slash
  '\u2044\u2044evil.example',      // fraction slash
  '/\uFF3Cevil.example',           // fullwidth reverse solidus
  '//evil%E3%80%82example',        // ideographic full stop
  '/%2F%2Fevil.example',
  '/%252F%252Fevil.example',
  '//%65vil.example',
  '/.//evil.example',
  '/..//evil.example',
  '\u0000//evil.example',
  '/\r\nLocation: https://evil.example',
  '/\r\nSet-Cookie: sallyport=planted',
];

/** The `next` a login page carries in its hidden field (HTML-unescaped). */
function hiddenNext(html) {
  const m = /<input[^>]*name="next"[^>]*>/i.exec(html)?.[0];
  if (!m) return undefined;
  const v = /value="([^"]*)"/i.exec(m);
  return v ? htmlUnescape(v[1]) : undefined;
}

const label = (v) => JSON.stringify(v);

test('the list has at least 15 hostile values', () => {
  assert.ok(HOSTILE_NEXT.length >= 15);
});

test('safe relative next values are kept (control)', async () => {
  for (const next of ['/', '/dashboard', '/a/b?c=d&e=f', '/search?q=%2F%2Fx', '/@me', '/path#frag']) {
    const r = await s.gateway.req('POST', '/auth/login', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: s.gateway.origin },
      body: form({ username: user, password: PASSWORD, next }),
    });
    assert.equal(r.status, 303);
    const want = new URL(next, s.gateway.origin);
    const got = new URL(r.headers.location, s.gateway.origin);
    assert.equal(got.origin, s.gateway.origin);
    assert.equal(got.pathname, want.pathname, `${next} → ${r.headers.location}`);
  }
});

test('GET /auth/login?next=<hostile> never carries an off-site next in the form', async () => {
  const bad = [];
  for (const next of HOSTILE_NEXT) {
    const r = await s.gateway.req('GET', `/auth/login?next=${encodeURIComponent(next)}`, { headers: { accept: 'text/html' } });
    if (r.status >= 500) { bad.push(`${label(next)} → ${r.status}`); continue; }
    if (r.status >= 300 && r.status < 400 && !staysOnSite(r.headers.location, s.gateway.origin)) bad.push(`${label(next)} → redirect ${r.headers.location}`);
    const hidden = hiddenNext(r.text);
    if (hidden !== undefined && hidden !== '' && !staysOnSite(hidden, s.gateway.origin)) bad.push(`${label(next)} → hidden next ${label(hidden)}`);
  }
  assert.deepEqual(bad, []);
});

test('POST /auth/login (form) with a hostile next never redirects off-site', async () => {
  const bad = [];
  for (const next of HOSTILE_NEXT) {
    const r = await s.gateway.req('POST', '/auth/login', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: s.gateway.origin },
      body: form({ username: user, password: PASSWORD, next }),
    });
    if (r.status >= 500) { bad.push(`${label(next)} → ${r.status}`); continue; }
    if (r.status !== 303) { bad.push(`${label(next)} → ${r.status} (login should still succeed, falling back to a safe path)`); continue; }
    const loc = r.headers.location;
    if (!staysOnSite(loc, s.gateway.origin)) bad.push(`${label(next)} → Location ${label(loc)}`);
    if (/[\r\n]/.test(loc ?? '')) bad.push(`${label(next)} → header injection ${label(loc)}`);
    if (r.setCookies.some((c) => c.includes('planted'))) bad.push(`${label(next)} → planted cookie`);
    if (sessionSets(r).length === 0) bad.push(`${label(next)} → no session`);
  }
  assert.deepEqual(bad, []);
});

test('POST /auth/login (JSON) with a hostile next never yields an off-site redirect', async () => {
  const bad = [];
  for (const next of HOSTILE_NEXT.slice(0, 20)) {
    const r = await s.gateway.req('POST', `/auth/login?next=${encodeURIComponent(next)}`, {
      headers: { 'content-type': 'application/json', accept: 'application/json', origin: s.gateway.origin },
      body: JSON.stringify({ username: user, password: PASSWORD, next }),
    });
    if (r.status >= 500) bad.push(`${label(next)} → ${r.status}`);
    if (r.headers.location && !staysOnSite(r.headers.location, s.gateway.origin)) bad.push(`${label(next)} → Location ${r.headers.location}`);
  }
  assert.deepEqual(bad, []);
});

test('POST /auth/login with next in the query string and the form disagreeing stays on-site', async () => {
  const r = await s.gateway.req('POST', `/auth/login?next=${encodeURIComponent('//evil.example')}`, {
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: s.gateway.origin },
    body: form({ username: user, password: PASSWORD, next: '/ok' }) + `&next=${encodeURIComponent('https://evil.example')}`,
  });
  assert.ok(r.status < 500);
  assert.ok(staysOnSite(r.headers.location, s.gateway.origin), `Location ${r.headers.location}`);
});

test('a failed login re-renders the form without an off-site next', async () => {
  const bad = [];
  for (const next of HOSTILE_NEXT.slice(0, 15)) {
    const r = await s.gateway.req('POST', '/auth/login', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: s.gateway.origin },
      body: form({ username: user, password: 'wrong password!', next }),
    });
    const hidden = hiddenNext(r.text);
    if (hidden && !staysOnSite(hidden, s.gateway.origin)) bad.push(`${label(next)} → ${label(hidden)}`);
  }
  assert.deepEqual(bad, []);
});

test('no-session redirect of a hostile request path carries a next that stays on-site after login', async () => {
  const bad = [];
  for (const p of ['//evil.example', '//evil.example/x', '/\\evil.example', '/%5Cevil.example', '///evil.example', '/%2F%2Fevil.example', '//evil.example/%2e%2e']) {
    const id = crypto.randomBytes(3).toString('hex');
    const r = await rawRequest(s.gateway.port, `GET ${p}?${id} HTTP/1.1\r\nHost: 127.0.0.1:${s.gateway.port}\r\nAccept: text/html\r\nConnection: close\r\n\r\n`);
    if (r.status >= 500) { bad.push(`${p} → ${r.status}`); continue; }
    if (r.status !== 303) continue;
    if (!staysOnSite(r.headers.location, s.gateway.origin)) { bad.push(`${p} → ${r.headers.location}`); continue; }
    const next = new URL(r.headers.location, s.gateway.origin).searchParams.get('next');
    if (next === null) continue;
    const l = await s.gateway.req('POST', '/auth/login', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: s.gateway.origin },
      body: form({ username: user, password: PASSWORD, next }),
    });
    if (!staysOnSite(l.headers.location, s.gateway.origin)) bad.push(`${p} → next ${label(next)} → after login ${l.headers.location}`);
  }
  assert.deepEqual(bad, []);
});

test('logout form ignores hostile next/return values', async () => {
  const bad = [];
  for (const next of HOSTILE_NEXT.slice(0, 15)) {
    const r = await s.gateway.req('POST', `/auth/logout?next=${encodeURIComponent(next)}`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: s.gateway.origin },
      body: form({ next }),
    });
    if (r.status >= 500) bad.push(`${label(next)} → ${r.status}`);
    if (!staysOnSite(r.headers.location, s.gateway.origin)) bad.push(`${label(next)} → ${r.headers.location}`);
  }
  assert.deepEqual(bad, []);
});

test('a very long next (16 KiB) is handled without 5xx and stays on-site', async () => {
  const next = `/${'a'.repeat(16 * 1024)}`;
  const r = await s.gateway.req('POST', '/auth/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: s.gateway.origin },
    body: form({ username: user, password: PASSWORD, next }),
  });
  assert.ok(r.status < 500, `status ${r.status}`);
  assert.ok(staysOnSite(r.headers.location, s.gateway.origin));
});
