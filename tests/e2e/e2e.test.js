// End-to-end tests of `sallyport demo` in a real browser: Playwright
// (playwright-core) driving Debian's Chromium, headless.
//
//   SALLYPORT_BIN=/path/to/sallyport npm test
//
// Both sign-in flows of the demo: the default OpenID Connect code flow (the
// login page is the issuer's; the gateway is its relying party) and the
// article's password flow (`--flow password`, the gateway's own login form).
// Screenshots of the login pages and the demo page go to tests/e2e/artifacts/.

import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { artifacts, launchBrowser, sleepUntil, startDemo, submitLogin } from "./harness.js";

// Seconds of access-token lifetime in these tests: short, so expiry happens
// within a test; the gateway renews in the last second (a sixth of it).
const TTL = 6;

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** The `exp` of the access token the page was rendered with (unix seconds). */
async function tokenExp(page) {
  return Number(await page.locator("#token-exp").getAttribute("data-unix"));
}

/** Calls `/api/hello` through client.js's authFetch, `n` at once, from the page. */
async function authFetchFromPage(page, n) {
  return page.evaluate(async (count) => {
    const { authFetch } = await import("/auth/client.js");
    const responses = await Promise.all(Array.from({ length: count }, () => authFetch("/api/hello")));
    return Promise.all(responses.map(async (r) => ({ status: r.status, body: await r.json() })));
  }, n);
}

/** Records every URL the page's main frame navigates to. */
function trackNavigations(page) {
  const urls = [];
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) urls.push(frame.url());
  });
  return urls;
}

/** Records every document request of the page, redirects included. */
function trackDocumentRequests(page) {
  const urls = [];
  page.on("request", (r) => {
    if (r.resourceType() === "document") urls.push(r.url());
  });
  return urls;
}

/** A fresh browser profile (no cookies) with a logged-in page on `/`. */
async function loggedIn(demo, contextOptions = {}) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  await page.goto(`${demo.gateway}/`);
  assert.ok(demo.isLoginPage(page.url()), page.url());
  await submitLogin(page, demo.username, demo.password);
  assert.equal(page.url(), `${demo.gateway}/`);
  return { context, page };
}

/**
 * The tests both flows must pass. `demo()` is the running demo of the suite.
 */
function sharedTests(flow, demo) {
  test("a protected page sends the browser to the login page, and signing in returns to it", async () => {
    const start = await demo().stats();
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${demo().gateway}/?from=e2e`);
    assert.ok(demo().isLoginPage(page.url()), page.url());
    const login = new URL(page.url());
    if (flow === "code") {
      // The issuer's own page, asked for by the gateway with PKCE.
      assert.equal(login.searchParams.get("client_id"), "demo-gateway");
      assert.equal(login.searchParams.get("redirect_uri"), `${demo().gateway}/auth/callback`);
      assert.equal(login.searchParams.get("code_challenge_method"), "S256");
      assert.ok(login.searchParams.get("state") && login.searchParams.get("nonce"));
    } else {
      assert.equal(login.searchParams.get("next"), "/?from=e2e");
    }
    await page.screenshot({ path: path.join(artifacts, `login-page-${flow}.png`), fullPage: true });

    await submitLogin(page, demo().username, demo().password);
    const back = new URL(page.url());
    assert.equal(back.origin, demo().gateway);
    assert.equal(back.pathname + back.search, "/?from=e2e");
    await assert.doesNotReject(page.locator("#user-name").waitFor());
    assert.equal(await page.locator("#user-name").textContent(), "Demo User");
    await page.screenshot({ path: path.join(artifacts, `demo-page-${flow}.png`), fullPage: true });
    const stats = await demo().stats();
    assert.equal(stats.logins, start.logins + 1, "one login at the issuer");
    assert.equal(stats.refreshes, start.refreshes, "no refresh");

    // The session cookie is HttpOnly: the browser has it, page scripts cannot see it.
    const cookies = await context.cookies(demo().gateway);
    const session = cookies.find((c) => c.name === "sallyport");
    assert.ok(session, `a session cookie is set (have ${cookies.map((c) => c.name).join(", ")})`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Lax");
    const visible = await page.evaluate(() => document.cookie);
    assert.equal(visible.includes("sallyport"), false, `document.cookie = ${visible}`);
    assert.equal(visible.includes("Fe26.2"), false);
    // Nor can client.js hand out a refresh token (or, in the code flow, the ID token).
    const view = await page.evaluate(async () => (await import("/auth/client.js")).session());
    assert.equal(view.isLoggedIn, true);
    const text = JSON.stringify(view).toLowerCase();
    assert.equal(text.includes("refresh"), false, text);
    assert.equal(text.includes("id_token") || text.includes("idtoken"), false, text);
    await context.close();
  });

  test("signing in works with JavaScript disabled", async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    await page.goto(`${demo().gateway}/`);
    assert.ok(demo().isLoginPage(page.url()), page.url());
    await submitLogin(page, demo().username, demo().password);
    assert.equal(page.url(), `${demo().gateway}/`);
    assert.equal(await page.locator("#user-name").textContent(), "Demo User");
    await context.close();
  });

  test("a wrong password shows the error and keeps the username", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${demo().gateway}/`);
    const statuses = [];
    page.on("response", (r) => r.request().method() === "POST" && statuses.push(r.status()));
    await submitLogin(page, demo().username, "not-the-password");
    assert.ok(demo().isLoginPage(page.url()), page.url());
    assert.deepEqual(statuses, [401]);
    assert.equal(await page.locator('input[name="username"]').inputValue(), demo().username);
    assert.equal(await page.locator('input[name="password"]').inputValue(), "", "the password is not echoed");
    const text = (await page.locator("body").innerText()).toLowerCase();
    assert.match(text, /invalid|incorrect|wrong/, "an error message is shown");
    await page.screenshot({ path: path.join(artifacts, `login-error-${flow}.png`), fullPage: true });
    // The next page after a corrected login is still the one asked for.
    await submitLogin(page, demo().username, demo().password);
    assert.equal(page.url(), `${demo().gateway}/`);
    await context.close();
  });

  test("after the access token expires, navigation and authFetch keep working with one refresh per expiry", async () => {
    const { context, page } = await loggedIn(demo());
    const navigations = trackNavigations(page);
    const start = await demo().stats();
    const startMetric = await demo().issuerRefreshes();
    const firstExp = await tokenExp(page);
    const firstIat = Number(await page.locator("#token-iat").getAttribute("data-unix"));

    // 1. Expired, then a page navigation: renewed on the way, no login page.
    await sleepUntil(firstExp);
    await page.reload();
    assert.equal(page.url(), `${demo().gateway}/`);
    assert.ok((await tokenExp(page)) > firstExp, "the page was rendered with a new token");
    assert.ok(Number(await page.locator("#token-iat").getAttribute("data-unix")) >= firstIat);
    assert.equal((await demo().stats()).refreshes, start.refreshes + 1);

    // Calls right after the renewal use the new token: no further refresh.
    const fresh = await authFetchFromPage(page, 3);
    assert.deepEqual(fresh.map((r) => r.status), [200, 200, 200]);
    assert.equal((await demo().stats()).refreshes, start.refreshes + 1);

    // 2. Expired again, then five API calls at once through authFetch: one refresh.
    await sleepUntil(fresh[0].body.expiresAt);
    const results = await authFetchFromPage(page, 5);
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200]);
    for (const r of results) assert.ok(r.body.expiresAt > fresh[0].body.expiresAt);
    assert.equal((await demo().stats()).refreshes, start.refreshes + 2, "one refresh for five concurrent calls");

    // 3. The page's own button (authFetch inside the page) shows the renewed token.
    await sleepUntil(results[0].body.expiresAt);
    await page.locator("#call-api").click();
    await page.locator("#api-status.ok").waitFor();
    assert.equal(await page.locator("#api-status").textContent(), "200 OK");
    assert.ok((await tokenExp(page)) > results[0].body.expiresAt);
    assert.equal((await demo().stats()).refreshes, start.refreshes + 3);

    assert.deepEqual(
      navigations.filter((u) => demo().isLoginPage(u) || new URL(u).pathname.startsWith("/auth/login")),
      [],
      "never sent to the login page",
    );
    assert.equal((await demo().stats()).logins, start.logins, "no new login");
    assert.equal(await demo().issuerRefreshes(), startMetric + 3, "the issuer's /metrics agrees");
    await context.close();
  });

  test("five tabs waking with an expired token cause one refresh (PP-14)", async () => {
    const { context, page } = await loggedIn(demo());
    const tabs = [page];
    for (let i = 1; i < 5; i++) {
      const tab = await context.newPage();
      await tab.goto(`${demo().gateway}/?tab=${i}`);
      tabs.push(tab);
    }
    const exp = Math.max(...(await Promise.all(tabs.map(tokenExp))));
    const before = await demo().stats();
    const beforeMetric = await demo().issuerRefreshes();
    await sleepUntil(exp);
    // All five at once: page reloads and authFetch calls, racing on one cookie.
    const results = await Promise.all(
      tabs.map((tab, i) => (i % 2 ? tab.reload().then(() => 200) : authFetchFromPage(tab, 2).then((r) => r[0].status))),
    );
    assert.deepEqual(results, [200, 200, 200, 200, 200]);
    for (const tab of tabs) assert.equal(new URL(tab.url()).pathname, "/");
    assert.equal((await demo().stats()).refreshes, before.refreshes + 1, "one refresh for five tabs");
    assert.equal(await demo().issuerRefreshes(), beforeMetric + 1, "the issuer's /metrics agrees");
    await context.close();
  });

  test("logout in one tab sends the other tab to the login page", async () => {
    const { context, page: tabA } = await loggedIn(demo());
    const tabB = await context.newPage();
    await tabB.goto(`${demo().gateway}/?tab=b`);
    assert.equal(new URL(tabB.url()).pathname, "/");
    // Let tab B's module script load and subscribe to the channel.
    await tabB.waitForFunction(() => document.readyState === "complete");
    await tabB.evaluate(() => import("/auth/client.js"));
    const before = await demo().stats();

    const requests = trackDocumentRequests(tabA);
    await Promise.all([tabA.waitForURL((u) => demo().isAfterLogout(u)), tabA.locator("#logout").click()]);
    await tabB.waitForURL((u) => demo().isLoginPage(u));
    const stats = await demo().stats();
    assert.equal(stats.logouts, before.logouts + 1, "the gateway ended the session at the issuer");
    if (flow === "password") {
      assert.equal(new URL(tabB.url()).searchParams.get("next"), "/?tab=b");
    } else {
      // RP-initiated logout: through the issuer's end-session endpoint, then the
      // app's signed-out page, which told tab B.
      assert.equal(stats.endSessions, before.endSessions + 1);
      assert.ok(
        requests.some((u) => u.startsWith(`${demo().issuer}/oauth/logout?`)),
        `the issuer's end-session endpoint was visited: ${requests.join("\n")}`,
      );
      assert.equal(await tabA.locator("h1").textContent(), "You are signed out");
      await tabA.screenshot({ path: path.join(artifacts, "signed-out-code.png"), fullPage: true });
      // `next` travels in the gateway's login state: signing in lands on it.
      await submitLogin(tabB, demo().username, demo().password);
      assert.equal(tabB.url(), `${demo().gateway}/?tab=b`);
      await Promise.all([tabB.waitForURL((u) => demo().isAfterLogout(u)), tabB.locator("#logout").click()]);
    }

    // And the session is really gone: a navigation lands on login too.
    await tabA.goto(`${demo().gateway}/`);
    assert.ok(demo().isLoginPage(tabA.url()), tabA.url());
    await context.close();
  });
}

describe("sallyport demo in Chromium: the OpenID Connect code flow (default)", () => {
  let demo;
  before(async () => {
    demo = await startDemo({ ttl: TTL });
  });
  after(async () => {
    await demo?.cleanup();
  });

  sharedTests("code", () => demo);

  test("logging out goes through the issuer's end-session endpoint (RP-initiated logout), also without JavaScript", async () => {
    // The page's logout button posts the form: the gateway ends the session,
    // revokes the refresh token and sends the browser to the issuer's
    // end_session_endpoint, which sends it back to the app's signed-out page.
    const { context, page } = await loggedIn(demo, { javaScriptEnabled: false });
    const requests = trackDocumentRequests(page);
    const before = await demo.stats();
    await Promise.all([page.waitForURL((u) => demo.isAfterLogout(u)), page.locator("#logout").click()]);
    const endSession = requests.find((u) => u.startsWith(`${demo.issuer}/oauth/logout?`));
    assert.ok(endSession, `the browser visited the issuer's end-session endpoint: ${requests.join("\n")}`);
    const q = new URL(endSession).searchParams;
    assert.ok(q.get("id_token_hint"), "with id_token_hint");
    assert.equal(q.get("client_id"), "demo-gateway");
    assert.equal(q.get("post_logout_redirect_uri"), `${demo.gateway}/signed-out`);
    assert.equal(await page.locator("h1").textContent(), "You are signed out");
    const stats = await demo.stats();
    assert.equal(stats.endSessions, before.endSessions + 1);
    assert.equal(stats.logouts, before.logouts + 1, "the refresh token was revoked too");
    const cookies = await context.cookies(demo.gateway);
    assert.equal(cookies.find((c) => c.name === "sallyport"), undefined, "the session cookie is gone");
    // "Sign in again" starts a new login at the issuer.
    await page.locator("#sign-in").click();
    assert.ok(demo.isLoginPage(page.url()), page.url());
    await context.close();
  });

  test("`sallyport session revoke` in another process makes the very next page request go to login", async () => {
    // Tokens that live five minutes: nothing here can be a renewal failing.
    const own = await startDemo({ ttl: 300 });
    try {
      const { context, page } = await loggedIn(own);
      const exp = await tokenExp(page);
      await page.waitForFunction(() => document.readyState === "complete");
      const before = await own.stats();

      // The command waits until the issuer's back-channel logout reached the gateway.
      const { stdout } = await own.revoke();
      assert.match(stdout, /revoked 1 sessions of demo/);

      // The open page's next API call (authFetch): 401, client.js goes to login.
      await Promise.all([page.waitForURL((u) => own.isLoginPage(u)), page.locator("#call-api").click()]);
      // A navigation too, and the app's `next` is kept through the sign-in.
      await page.goto(`${own.gateway}/?after=revoke`);
      assert.ok(own.isLoginPage(page.url()), page.url());
      assert.ok(Date.now() / 1000 < exp - 60, "the access token had not expired");
      assert.equal((await own.stats()).refreshes, before.refreshes, "no renewal was tried: the gateway knew");
      await submitLogin(page, own.username, own.password);
      assert.equal(page.url(), `${own.gateway}/?after=revoke`);
      await context.close();
    } finally {
      await own.cleanup();
    }
  });
});

describe("sallyport demo in Chromium: the password flow (--flow password)", () => {
  let demo;
  before(async () => {
    demo = await startDemo({ ttl: TTL, flow: "password" });
  });
  after(async () => {
    await demo?.cleanup();
  });

  sharedTests("password", () => demo);

  test("after `sallyport session revoke`, the next navigation after expiry lands on login with next", async () => {
    const { context, page } = await loggedIn(demo);
    const exp = await tokenExp(page);
    await demo.revoke();
    // Without back-channel logout the gateway learns it when the token needs renewing.
    await sleepUntil(exp);
    await page.goto(`${demo.gateway}/?after=revoke`);
    const url = new URL(page.url());
    assert.equal(url.pathname, "/auth/login");
    assert.equal(url.searchParams.get("next"), "/?after=revoke");
    await context.close();
  });
});

describe("sallyport demo as a process", () => {
  test("stops cleanly on SIGTERM and a second run reuses the data", async () => {
    const first = await startDemo({ ttl: 30 });
    try {
      assert.equal(first.createdUser, true);
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${first.gateway}/`);
      assert.ok(first.isLoginPage(page.url()), page.url());
      await submitLogin(page, first.username, first.password);
      assert.equal(page.url(), `${first.gateway}/`);

      const status = await first.stop();
      assert.deepEqual(status, { code: 0, signal: null });

      const second = await startDemo({ ttl: 30, dataDir: first.dataDir, password: "ignored-on-second-run" });
      try {
        assert.equal(second.createdUser, false);
        assert.equal(second.password, first.password, "the same login");
        // The session cookie from the first run is still good (same secret,
        // same issuer database; cookies are not bound to a port).
        await page.goto(`${second.gateway}/`);
        assert.equal(new URL(page.url()).pathname, "/");
        assert.equal(await page.locator("#user-name").textContent(), "Demo User");
      } finally {
        assert.deepEqual(await second.stop(), { code: 0, signal: null });
      }
      await context.close();
    } finally {
      await first.cleanup();
    }
  });
});
