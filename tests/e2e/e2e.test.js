// End-to-end tests of `sallyport demo` in a real browser: Playwright
// (playwright-core) driving Debian's Chromium, headless.
//
//   SALLYPORT_BIN=/path/to/sallyport npm test
//
// Screenshots of the login page and the demo page go to tests/e2e/artifacts/.

import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { artifacts, launchBrowser, sallyport, sleepUntil, startDemo, submitLogin } from "./harness.js";

// Seconds of access-token lifetime in these tests: short, so expiry happens
// within a test; the gateway renews in the last second (a sixth of it).
const TTL = 6;

let demo;
let browser;

before(async () => {
  demo = await startDemo({ ttl: TTL });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.cleanup();
});

/** A fresh browser profile (no cookies) with a logged-in page on `/`. */
async function loggedIn(contextOptions = {}) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  await page.goto(`${demo.gateway}/`);
  await submitLogin(page, demo.username, demo.password);
  assert.equal(new URL(page.url()).pathname, "/");
  return { context, page };
}

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

describe("sallyport demo in Chromium", () => {
  test("a protected page sends the browser to login, and logging in returns to it", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${demo.gateway}/?from=e2e`);
    const login = new URL(page.url());
    assert.equal(login.pathname, "/auth/login");
    assert.equal(login.searchParams.get("next"), "/?from=e2e");
    await page.screenshot({ path: path.join(artifacts, "login-page.png"), fullPage: true });

    await submitLogin(page, demo.username, demo.password);
    const back = new URL(page.url());
    assert.equal(back.pathname + back.search, "/?from=e2e");
    await assert.doesNotReject(page.locator("#user-name").waitFor());
    assert.equal(await page.locator("#user-name").textContent(), "Demo User");
    await page.screenshot({ path: path.join(artifacts, "demo-page.png"), fullPage: true });

    // The session cookie is HttpOnly: the browser has it, page scripts cannot see it.
    const cookies = await context.cookies(demo.gateway);
    const session = cookies.find((c) => c.name === "sallyport");
    assert.ok(session, `a session cookie is set (have ${cookies.map((c) => c.name).join(", ")})`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Lax");
    const visible = await page.evaluate(() => document.cookie);
    assert.equal(visible.includes("sallyport"), false, `document.cookie = ${visible}`);
    assert.equal(visible.includes("Fe26.2"), false);
    // Nor can client.js hand out a refresh token.
    const view = await page.evaluate(async () => (await import("/auth/client.js")).session());
    assert.equal(view.isLoggedIn, true);
    assert.equal(JSON.stringify(view).toLowerCase().includes("refresh"), false, JSON.stringify(view));
    await context.close();
  });

  test("logging in works with JavaScript disabled", async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    await page.goto(`${demo.gateway}/`);
    assert.equal(new URL(page.url()).pathname, "/auth/login");
    await submitLogin(page, demo.username, demo.password);
    assert.equal(new URL(page.url()).pathname, "/");
    assert.equal(await page.locator("#user-name").textContent(), "Demo User");
    await context.close();
  });

  test("a wrong password shows the error and keeps the username", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${demo.gateway}/`);
    const statuses = [];
    page.on("response", (r) => r.request().method() === "POST" && statuses.push(r.status()));
    await submitLogin(page, demo.username, "not-the-password");
    assert.equal(new URL(page.url()).pathname, "/auth/login");
    assert.deepEqual(statuses, [401]);
    assert.equal(await page.locator('input[name="username"]').inputValue(), demo.username);
    assert.equal(await page.locator('input[name="password"]').inputValue(), "", "the password is not echoed");
    const text = (await page.locator("body").innerText()).toLowerCase();
    assert.match(text, /invalid|incorrect|wrong/, "an error message is shown");
    await page.screenshot({ path: path.join(artifacts, "login-error.png"), fullPage: true });
    // The next page after a corrected login is still the one asked for.
    await submitLogin(page, demo.username, demo.password);
    assert.equal(new URL(page.url()).pathname, "/");
    await context.close();
  });

  test("after the access token expires, navigation and authFetch keep working with one refresh per expiry", async () => {
    const { context, page } = await loggedIn();
    const navigations = trackNavigations(page);
    const start = await demo.stats();
    const startMetric = await demo.issuerRefreshes();
    const firstExp = await tokenExp(page);
    const firstIat = Number(await page.locator("#token-iat").getAttribute("data-unix"));

    // 1. Expired, then a page navigation: renewed on the way, no login page.
    await sleepUntil(firstExp);
    await page.reload();
    assert.equal(new URL(page.url()).pathname, "/");
    assert.ok((await tokenExp(page)) > firstExp, "the page was rendered with a new token");
    assert.ok(Number(await page.locator("#token-iat").getAttribute("data-unix")) >= firstIat);
    assert.equal((await demo.stats()).refreshes, start.refreshes + 1);

    // Calls right after the renewal use the new token: no further refresh.
    const fresh = await authFetchFromPage(page, 3);
    assert.deepEqual(fresh.map((r) => r.status), [200, 200, 200]);
    assert.equal((await demo.stats()).refreshes, start.refreshes + 1);

    // 2. Expired again, then five API calls at once through authFetch: one refresh.
    await sleepUntil(fresh[0].body.expiresAt);
    const results = await authFetchFromPage(page, 5);
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200]);
    for (const r of results) assert.ok(r.body.expiresAt > fresh[0].body.expiresAt);
    assert.equal((await demo.stats()).refreshes, start.refreshes + 2, "one refresh for five concurrent calls");

    // 3. The page's own button (authFetch inside the page) shows the renewed token.
    await sleepUntil(results[0].body.expiresAt);
    await page.locator("#call-api").click();
    await page.locator("#api-status.ok").waitFor();
    assert.equal(await page.locator("#api-status").textContent(), "200 OK");
    assert.ok((await tokenExp(page)) > results[0].body.expiresAt);
    assert.equal((await demo.stats()).refreshes, start.refreshes + 3);

    assert.deepEqual(
      navigations.filter((u) => new URL(u).pathname.startsWith("/auth/login")),
      [],
      "never sent to the login page",
    );
    assert.equal((await demo.stats()).logins, start.logins, "no new login");
    assert.equal(await demo.issuerRefreshes(), startMetric + 3, "the issuer's /metrics agrees");
    await context.close();
  });

  test("five tabs waking with an expired token cause one refresh (PP-14)", async () => {
    const { context, page } = await loggedIn();
    const tabs = [page];
    for (let i = 1; i < 5; i++) {
      const tab = await context.newPage();
      await tab.goto(`${demo.gateway}/?tab=${i}`);
      tabs.push(tab);
    }
    const exp = Math.max(...(await Promise.all(tabs.map(tokenExp))));
    const before = await demo.stats();
    const beforeMetric = await demo.issuerRefreshes();
    await sleepUntil(exp);
    // All five at once: page reloads and authFetch calls, racing on one cookie.
    const results = await Promise.all(
      tabs.map((tab, i) => (i % 2 ? tab.reload().then(() => 200) : authFetchFromPage(tab, 2).then((r) => r[0].status))),
    );
    assert.deepEqual(results, [200, 200, 200, 200, 200]);
    for (const tab of tabs) assert.equal(new URL(tab.url()).pathname, "/");
    assert.equal((await demo.stats()).refreshes, before.refreshes + 1, "one refresh for five tabs");
    assert.equal(await demo.issuerRefreshes(), beforeMetric + 1, "the issuer's /metrics agrees");
    await context.close();
  });

  test("logout in one tab sends the other tab to the login page", async () => {
    const { context, page: tabA } = await loggedIn();
    const tabB = await context.newPage();
    await tabB.goto(`${demo.gateway}/?tab=b`);
    assert.equal(new URL(tabB.url()).pathname, "/");
    // Let tab B's module script load and subscribe to the channel.
    await tabB.waitForFunction(() => document.readyState === "complete");
    await tabB.evaluate(() => import("/auth/client.js"));

    await Promise.all([tabA.waitForURL((u) => u.pathname === "/auth/login"), tabA.locator("#logout").click()]);
    await tabB.waitForURL((u) => u.pathname === "/auth/login");
    assert.equal(new URL(tabB.url()).searchParams.get("next"), "/?tab=b");

    // And the session is really gone: a navigation lands on login too.
    await tabA.goto(`${demo.gateway}/`);
    assert.equal(new URL(tabA.url()).pathname, "/auth/login");
    await context.close();
  });

  test("after `sallyport session revoke`, the next navigation lands on login with next", async () => {
    const { context, page } = await loggedIn();
    const exp = await tokenExp(page);
    await sallyport("session", "revoke", "--database-url", demo.database, "--user", demo.username);
    // The gateway asks the issuer only when the access token needs renewing.
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
      await submitLogin(page, first.username, first.password);
      assert.equal(new URL(page.url()).pathname, "/");

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
