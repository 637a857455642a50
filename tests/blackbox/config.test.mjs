// Start-up refusals (docs/design.md "The session cookie", issue 4 "Configuration"):
// misconfiguration stops `sallyport gateway` with a message naming the setting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SECRET } from './lib/harness.mjs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sallyport-bb-config-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

const BASE = {
  top: 'listen = "127.0.0.1:18080"\nupstream = "http://127.0.0.1:3000"',
  session: 'secure = false',
  backend: 'login_url = "http://127.0.0.1:8300/api/login"\nrefresh_url = "http://127.0.0.1:8300/api/refresh-token"',
};

function check({ top = BASE.top, session = BASE.session, backend = BASE.backend, secret = SECRET, run = false } = {}) {
  const file = path.join(dir, `g${Math.random().toString(16).slice(2)}.toml`);
  fs.writeFileSync(file, `${top}\n\n[session]\n${session}\n\n[backend]\n${backend}\n`);
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('SALLYPORT_') || k === 'SESSION_SECRET') delete env[k];
  if (secret !== null) env.SESSION_SECRET = secret;
  const args = ['gateway', '--config', file];
  if (!run) args.push('--check');
  const r = spawnSync(BIN, args, { env, encoding: 'utf8', timeout: 30000 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

test('a valid configuration passes --check', () => {
  const r = check();
  assert.equal(r.status, 0, r.out);
});

const refusals = [
  ['a secret under 32 characters', { secret: 'x'.repeat(31) }, /SESSION_SECRET/],
  ['no secret at all', { secret: null }, /SESSION_SECRET/],
  ['an empty secret', { secret: '' }, /SESSION_SECRET/],
  ['a short secret in the rotation map', { secret: null, session: `secure = false\nsecrets = { "1" = "${SECRET}", "2" = "short" }` }, /secret/i],
  ['an unparsable upstream URL', { top: 'listen = "127.0.0.1:18080"\nupstream = "not a url"' }, /upstream/],
  ['an upstream with a non-http scheme', { top: 'listen = "127.0.0.1:18080"\nupstream = "ftp://127.0.0.1/"' }, /upstream/],
  ['a public path that collides with the prefix', { top: `${BASE.top}\npublic_paths = ["/auth/**"]` }, /public_paths|prefix/],
  ['a public path equal to the login route', { top: `${BASE.top}\npublic_paths = ["/auth/login"]` }, /public_paths|prefix/],
  ['Secure off on a non-loopback address', { top: 'listen = "0.0.0.0:18080"\nupstream = "http://127.0.0.1:3000"' }, /secure/],
  ['SameSite=None without Secure', { session: 'secure = false\nsame_site = "none"' }, /same_site|secure/],
  // Issue 9: the session layer's and iron's rules, not copies of them.
  ['an unknown same_site (never defaulted to lax)', { session: 'secure = false\nsame_site = "lox"' }, /session\.same_site/],
  ['an unknown backend kind', { backend: 'kind = "soap"' }, /backend\.kind/],
  ['a cookie name iron-session would not write', { session: 'secure = false\ncookie_name = "my app"' }, /session\.cookie_name/],
  ['a cookie name too long for any cookie', { session: `secure = false\ncookie_name = "${'a'.repeat(4100)}"` }, /session\.cookie_name/],
  ['a __Secure- cookie name without Secure', { session: 'secure = false\ncookie_name = "__Secure-app"' }, /session\.secure/],
  ['31 UTF-16 units in 31 characters', { secret: '\u20ac'.repeat(31) }, /SESSION_SECRET/],
];

for (const [what, opts, names] of refusals) {
  test(`refused at start-up: ${what}, with a message naming the setting`, () => {
    const r = check(opts);
    assert.notEqual(r.status, 0, `accepted: ${r.out}`);
    assert.match(r.out, names);
    assert.ok(!r.out.includes(SECRET), 'the secret is never printed');
    assert.ok(!/panicked/.test(r.out), 'no panic');
  });
}

test('the same refusal applies when starting, not only with --check', () => {
  const r = check({ secret: 'too-short', run: true });
  assert.notEqual(r.status, 0);
  assert.match(r.out, /SESSION_SECRET/);
});

test('a secret is measured as iron-session measures it: 16 emoji are 32 UTF-16 units', () => {
  const secret = '\u{1F511}'.repeat(16);
  assert.equal(secret.length, 32, 'JavaScript string length, which iron-session checks');
  const r = check({ secret });
  assert.equal(r.status, 0, r.out);
  const map = check({ secret: null, session: `secure = false\nsecrets = { "1" = "${secret}" }` });
  assert.equal(map.status, 0, map.out);
});
