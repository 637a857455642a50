// The gateway as an OpenID Connect relying party against the certified OpenID
// provider on npm, `oidc-provider` (panva), driven in Chromium through the provider's
// own pages. Two gateway replicas share Redis (SALLYPORT_TEST_REDIS_URL, exported by
// scripts/test; required under CI, else the replica test is skipped).
//
// A rewritten `iss`, a forged `state` and a replayed callback are tried here against the
// real provider; the attacks a certified provider cannot be made to commit (a wrong
// nonce, an ID token signed by another key, wrong iss/aud/azp, forged logout tokens) are
// tested in Rust against a provider written there: crates/gateway/tests/it/oidc.rs.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  ACCESS_TOKEN_TTL, api, launchBrowser, reserveGateway, rsaKey, signInAtProvider, sleep,
  startGateway, startProvider, startUpstream,
} from './lib.mjs';

const redisUrl = process.env.SALLYPORT_TEST_REDIS_URL || null;
if (!redisUrl && process.env.CI) {
  throw new Error('SALLYPORT_TEST_REDIS_URL is not set, and under CI the two-replica test must run (scripts/lib/redis.sh)');
}

describe('gateway with backend.kind = "oidc" in front of oidc-provider', () => {
  let provider; let upstream; let a; let b; let browser;
  const keyPrefix = `sallyport-oidc-suite-${process.pid}-${Date.now()}:`;

  before(async () => {
    upstream = await startUpstream();
    const slotA = await reserveGateway();
    const slotB = await reserveGateway();
    provider = await startProvider({ gateways: [slotA.url, slotB.url] });
    const common = { issuer: provider.issuer, upstreamPort: upstream.port, redisUrl, keyPrefix };
    a = await startGateway(slotA, common);
    b = await startGateway(slotB, common);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    for (const g of [a, b]) {
      if (g && process.env.OIDC_VERBOSE) console.log(g.log());
      await g?.stop();
    }
    await provider?.stop();
    await upstream?.stop();
  });

  /** A fresh browser profile signed in as `login`, landed on `next` at replica A. */
  async function signedIn(login, next = '/dashboard?tab=1') {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${a.url}${next}`);
    assert.ok(page.url().startsWith(provider.issuer), `sent to the provider, at ${page.url()}`);
    await signInAtProvider(page, provider.issuer, login);
    assert.equal(page.url(), `${a.url}${next}`, 'landed on next');
    return { context, page };
  }

  test('login through the provider pages lands on next; upstream gets the Bearer token', async () => {
    const { context, page } = await signedIn('alice');
    const echoed = JSON.parse(await page.locator('body').innerText());
    assert.equal(echoed.path, '/dashboard?tab=1');
    assert.match(echoed.headers.authorization, /^Bearer \S+$/);
    const session = await api(page, `${a.url}/auth/session`);
    assert.equal(session.body.isLoggedIn, true);
    assert.equal(session.body.user.sub, 'alice');
    // API calls without a session get 401 JSON, not a redirect to the provider.
    const anon = await browser.newContext();
    const r = await anon.request.get(`${a.url}/api/x`, { headers: { accept: 'application/json' }, maxRedirects: 0 });
    assert.equal(r.status(), 401);
    await anon.close();
    await context.close();
  });

  test('a wrong iss, a forged state and a replayed callback end on the error page, never in a loop', async () => {
    // Signed in once, the provider has a session and a grant: a new login goes from the
    // gateway to the provider and back without a page. Following those redirects by
    // hand gives the callback URL, which is altered as an attacker in the middle (or a
    // mix-up with another provider) would, then opened in the browser.
    const { context, page } = await signedIn('mallory', '/');
    const callbackFor = async (next) => {
      let url = `${a.url}/auth/login?next=${encodeURIComponent(next)}`;
      for (let i = 0; i < 10; i++) {
        const r = await page.request.get(url, { maxRedirects: 0 });
        const location = r.headers().location;
        assert.ok(location, `a redirect from ${url} (status ${r.status()})`);
        url = new URL(location, url).href;
        if (url.startsWith(`${a.url}/auth/callback`)) return new URL(url);
      }
      throw new Error('no callback');
    };
    const refusedWith = async (url, text) => {
      const resp = await page.goto(url.href);
      assert.equal(resp.status(), 400, url.href);
      assert.equal(page.url(), url.href, 'no redirect');
      assert.match(await page.locator('[role=alert]').innerText(), text);
      assert.match(await page.locator('#retry').getAttribute('href'), /^\/auth\/login\?next=/);
    };
    const wrongIss = await callbackFor('/x');
    wrongIss.searchParams.set('iss', 'https://other-provider.example');
    await refusedWith(wrongIss, /expected identity provider/);
    const forged = await callbackFor('/x');
    forged.searchParams.set('state', 'forged-state');
    await refusedWith(forged, /not valid in this browser/);
    // The real callback works once; opened again (back button, a leaked URL) it is refused.
    const real = await callbackFor('/x');
    await page.goto(real.href);
    assert.equal(page.url(), `${a.url}/x`);
    await refusedWith(real, /not valid in this browser|already been used/);
    await context.close();
  });

  test('renewal at the provider token endpoint, with refresh-token rotation', async () => {
    const { context, page } = await signedIn('carol');
    const first = (await api(page, `${a.url}/echo`)).body.headers.authorization;
    // The gateway renews within half the token's lifetime of its expiry.
    await sleep((ACCESS_TOKEN_TTL / 2 + 2) * 1000);
    const second = await api(page, `${a.url}/echo`);
    assert.equal(second.status, 200);
    assert.notEqual(second.body.headers.authorization, first, 'a new access token');
    // The rotated refresh token works again (the old one is spent at the provider).
    await sleep((ACCESS_TOKEN_TTL / 2 + 2) * 1000);
    const third = await api(page, `${a.url}/echo`);
    assert.equal(third.status, 200);
    assert.notEqual(third.body.headers.authorization, second.body.headers.authorization);
    await context.close();
  });

  test('provider key rotation: new ID tokens signed with a new key are accepted', async () => {
    const { context, page } = await signedIn('dave');
    const fetched = provider.jwksFetches.count;
    // The verifier refetches keys at most every 10 s; let that pass since the last fetch.
    await sleep(11_000);
    provider.rotate([rsaKey('key-2'), rsaKey('key-1-retired')]);
    // A renewal now returns an ID token signed with key-2: the session goes on.
    await sleep((ACCESS_TOKEN_TTL / 2 + 2) * 1000);
    assert.equal((await api(page, `${a.url}/echo`)).status, 200);
    // A new login's ID token is key-2's: it is verified after a JWKS refetch.
    const fresh = await signedIn('erin', '/after-rotation');
    assert.ok(provider.jwksFetches.count > fetched, 'the gateway refetched the JWKS');
    await fresh.context.close();
    await context.close();
  });

  test('back-channel logout from the provider ends the session on the other replica', { skip: !redisUrl && 'SALLYPORT_TEST_REDIS_URL is not set' }, async () => {
    const { context, page } = await signedIn('frank');
    // The same cookie works on replica B (same host, so the browser sends it there).
    assert.equal((await api(page, `${b.url}/echo`)).status, 200);
    // The user signs out at the provider itself (another app's logout, say): the
    // provider posts a logout token to replica A's back-channel endpoint.
    const calls = provider.backchannelCalls.length;
    await page.goto(`${provider.issuer}/session/end`);
    await Promise.all([page.waitForNavigation(), page.locator('button[name="logout"]').click()]);
    assert.ok(provider.backchannelCalls.length > calls, 'the provider sent a logout token');
    assert.deepEqual(provider.backchannelCalls.at(-1).ok, true, JSON.stringify(provider.backchannelCalls.at(-1)));
    // The very next request on replica B is refused, and nothing is renewed.
    const onB = await api(page, `${b.url}/echo`);
    assert.equal(onB.status, 401, JSON.stringify(onB.body));
    assert.equal((await api(page, `${a.url}/echo`)).status, 401);
    await context.close();
  });

  test('RP-initiated logout ends the session here and at the provider', async () => {
    const { context, page } = await signedIn('grace');
    // The app's logout button: a same-origin form post to {prefix}/logout.
    await page.evaluate(() => {
      const f = document.createElement('form');
      f.method = 'post';
      f.action = '/auth/logout';
      document.body.appendChild(f);
      f.submit();
    });
    await page.waitForURL((u) => u.href.startsWith(provider.issuer));
    // The provider asks for confirmation of the sign-out the gateway requested.
    await Promise.all([page.waitForNavigation(), page.locator('button[name="logout"]').click()]);
    // Back at the app's post_logout_redirect_uri, which needs a session again: the
    // provider session is gone too, so its login form shows.
    await page.waitForLoadState();
    assert.ok(page.url().startsWith(provider.issuer), page.url());
    assert.equal(await page.locator('input[name="login"]').count(), 1, 'the provider asks to sign in again');
    assert.equal((await api(page, `${a.url}/echo`)).status, 401);
    await context.close();
  });
});
