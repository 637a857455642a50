// The article's Next.js app, rewritten without its auth code, behind the real
// `sallyport gateway` and `sallyport issuer`, driven in Debian's Chromium.
//
//   SALLYPORT_BIN=/path/to/sallyport npm test      # builds the app once, then runs this
//
// Screenshots go to test/artifacts/.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { sealData, unsealData } from "iron-session";

import { artifacts, Issuer, killAll, launchBrowser, sleep, startApp, submitLogin } from "./harness.js";

// Access tokens live this many seconds; the gateway renews in the second half of that
// (its leeway is capped at half a token's lifetime), so a renewal comes every ~2 s.
const TTL = 4;
const PROFILE_REFRESH_MS = 700;

// The same secret for the gateway and Next.js (the article's SESSION_SECRET).
const SECRET = "nextjs-example-session-secret-0123456789-abcdef";
const USER = "alice";
const NAME = "Alice Example";
const PASSWORD = "nextjs example password 42";

let issuer;
let app;
let browser;

before(async () => {
  issuer = await new Issuer({ accessTtl: TTL }).start();
  issuer.addUser(USER, NAME, PASSWORD, ["reader"]);
  // The gateway's default cookie name on plain-http localhost.
  app = await startApp({ issuer, secret: SECRET, cookieName: "sallyport", profileRefreshMs: PROFILE_REFRESH_MS });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.stop();
  await issuer?.stop();
  killAll();
});

/** The session the gateway sealed into the browser's cookie (opened with npm iron-session). */
async function sessionIn(context, url, cookieName, secret = SECRET) {
  const cookie = (await context.cookies(url)).find((c) => c.name === cookieName);
  if (!cookie) return null;
  return { cookie, data: await unsealData(cookie.value, { password: secret }) };
}

/** Everything the browser receives: statuses, Set-Cookie headers and bodies of every response. */
function recordResponses(page) {
  const seen = [];
  page.on("response", async (r) => {
    const entry = { url: r.url(), status: r.status(), body: "", setCookies: [] };
    seen.push(entry);
    try {
      entry.setCookies = await r.headerValues("set-cookie");
    } catch {
      // The page is gone.
    }
    if (r.status() >= 300 && r.status() < 400) return;
    try {
      entry.body = (await r.body()).toString("utf8");
    } catch {
      // A body the page navigated away from before it arrived.
    }
  });
  return seen;
}

function trackNavigations(page) {
  const urls = [];
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) urls.push(frame.url());
  });
  return urls;
}

/** What page JavaScript can see: cookies, storage, the RSC payload and the DOM. */
function pageState(page) {
  return page.evaluate(() =>
    JSON.stringify({
      cookie: document.cookie,
      local: { ...localStorage },
      session: { ...sessionStorage },
      rsc: self.__next_f ?? null,
      html: document.documentElement.outerHTML,
      globals: Object.keys(window).filter((k) => /token|session|auth/i.test(k)),
    }),
  );
}

/**
 * A fresh browser profile, closed when test `t` ends even if it fails: a page left open
 * would keep polling and renewing, and the issuer's refresh count is shared by the tests.
 */
async function newContext(t) {
  const context = await browser.newContext();
  t.after(() => context.close());
  return context;
}

async function loggedIn(t, url = app.url) {
  const context = await newContext(t);
  const page = await context.newPage();
  const responses = recordResponses(page);
  await page.goto(`${url}/`);
  await submitLogin(page, USER, PASSWORD);
  assert.equal(new URL(page.url()).pathname, "/");
  const navigations = trackNavigations(page); // from here on
  return { context, page, responses, navigations };
}

describe("the Next.js example behind sallyport gateway + issuer", () => {
  test("login returns to the page; the server component and the SWR data show the user", async (t) => {
    const context = await newContext(t);
    const page = await context.newPage();
    await page.goto(`${app.url}/?from=e2e`);
    const login = new URL(page.url());
    assert.equal(login.pathname, "/auth/login", "no session: the gateway's login page");
    assert.equal(login.searchParams.get("next"), "/?from=e2e");

    await submitLogin(page, USER, PASSWORD);
    const back = new URL(page.url());
    assert.equal(back.pathname + back.search, "/?from=e2e");
    // Rendered on the server from the iron-session cookie the gateway forwarded.
    assert.equal(await page.locator("#user-name").textContent(), NAME);
    // Loaded in the browser by SWR (fetcher from /auth/client.js) from the route
    // handler, which called the issuer's /api/me with the forwarded Authorization.
    await page.locator("#profile-name").waitFor();
    assert.equal(await page.locator("#profile-name").textContent(), NAME);
    assert.equal(await page.locator("#profile-roles").textContent(), "reader");
    await page.screenshot({ path: path.join(artifacts, "nextjs-page.png"), fullPage: true });

    const { cookie } = await sessionIn(context, app.url, "sallyport");
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Lax");
    await context.close();
  });

  test("SWR keeps loading across several access-token expiries, with one refresh per expiry", async (t) => {
    const before = await issuer.refreshes();
    const { context, page, responses, navigations } = await loggedIn(t);
    const fingerprint = (token) => createHash("sha256").update(token).digest("hex").slice(0, 16);

    const profiles = () => responses.filter((r) => new URL(r.url).pathname === "/api/profile" && r.body);
    const tokens = () => [...new Set(profiles().map((r) => JSON.parse(r.body).token?.fingerprint))];
    // Several expiries: five tokens in use one after the other (four renewals). The loop
    // ends right after a renewal, so none is under way when the page is closed.
    const deadline = Date.now() + 60_000;
    while (tokens().length < 5) {
      assert.ok(Date.now() < deadline, `only ${tokens().length} tokens seen in 60 s`);
      await sleep(100);
    }
    const state = await pageState(page);
    await context.close(); // stops SWR's polling
    await sleep(300);

    // Every session the gateway sealed for this browser: the login's, then one per renewal.
    const issued = { access: new Set(), refresh: new Set() };
    for (const r of responses) {
      for (const c of r.setCookies) {
        const m = /^sallyport=([^;]+)/.exec(c);
        if (!m) continue;
        const data = await unsealData(m[1], { password: SECRET });
        issued.access.add(data.accessToken);
        issued.refresh.add(data.refreshToken);
      }
    }

    for (const r of profiles()) assert.equal(r.status, 200, `${r.url}: ${r.body}`);
    const seen = tokens();
    assert.equal(
      (await issuer.refreshes()) - before,
      issued.access.size - 1,
      "one refresh at the issuer for each new token sealed into the cookie",
    );
    const issuedPrints = new Set([...issued.access].map(fingerprint));
    for (const f of seen) assert.ok(issuedPrints.has(f), "the app only ever saw tokens the gateway sealed");
    assert.ok(issued.access.size <= seen.length + 1, "no token was obtained without being used");
    const exps = profiles().map((r) => JSON.parse(r.body).token.exp);
    for (let i = 1; i < exps.length; i++) assert.ok(exps[i] >= exps[i - 1], "tokens only get newer");
    assert.deepEqual(
      navigations.filter((u) => new URL(u).pathname.startsWith("/auth/login")),
      [],
      "never sent to the login page",
    );

    // The refresh tokens (all of them: they rotate) and the access tokens never reach
    // page JavaScript or any body the browser received.
    assert.equal(issued.refresh.size, issued.access.size, "the issuer rotates refresh tokens");
    for (const secret of [...issued.refresh, ...issued.access]) {
      assert.equal(state.includes(secret), false, "a token is visible to page JavaScript");
      for (const r of responses) assert.equal(r.body.includes(secret), false, `a token in the body of ${r.url}`);
    }
    assert.equal(JSON.parse(state).cookie.includes("sallyport"), false, "the session cookie is HttpOnly");
    assert.equal(JSON.parse(state).cookie.includes("Fe26.2"), false);
    assert.ok(responses.length > 10, "the recorder saw the traffic");
  });

  test("logout ends the session at the gateway and the issuer", async (t) => {
    const { context, page } = await loggedIn(t);
    const { data } = await sessionIn(context, app.url, "sallyport");
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.locator("#logout").click()]);
    assert.equal(await sessionIn(context, app.url, "sallyport"), null, "the cookie is gone");
    await page.goto(`${app.url}/`);
    assert.equal(new URL(page.url()).pathname, "/auth/login", "the page needs a login again");
    assert.equal(await issuer.refresh(data.refreshToken), 401, "the issuer revoked the refresh token");
    await context.close();
  });

  test("a session revoked at the issuer ends in the browser: SWR's fetcher sends the user to log in again", async (t) => {
    const { page, navigations } = await loggedIn(t);
    await page.locator("#profile-name").waitFor();
    issuer.revokeSessions(USER);
    // The next renewal is refused; the gateway answers SWR's call with 401
    // session_expired and /auth/client.js's fetcher goes to the login page, keeping the page.
    await page.waitForURL((u) => u.pathname === "/auth/login", { timeout: 30_000 });
    assert.equal(new URL(page.url()).searchParams.get("next"), "/");
    // (Next.js's router also reports "/" itself when it hydrates: a same-document navigation.)
    assert.deepEqual(
      navigations.map((u) => new URL(u).pathname).filter((p) => p !== "/"),
      ["/auth/login"],
      "straight to the login page, no error page on the way",
    );
    await submitLogin(page, USER, PASSWORD);
    assert.equal(new URL(page.url()).pathname, "/");
    assert.equal(await page.locator("#user-name").textContent(), NAME);
  });

  test("a cookie written by the article's code keeps its user logged in when the gateway takes over", async (t) => {
    // The article's app: cookieName "my-app-session", its own SESSION_SECRET, and
    // session = {isLoggedIn, accessToken, refreshToken} saved after its login().
    const articleSecret = "the-article-apps-session-secret-abcdefghij-0123456789";
    const migrated = await startApp({ issuer, secret: articleSecret, cookieName: "my-app-session", profileRefreshMs: 30000 });
    try {
      const tokens = await issuer.login(USER, PASSWORD);
      const sealed = await sealData(
        { isLoggedIn: true, accessToken: tokens.accessToken, refreshToken: tokens.refreshToken },
        { password: articleSecret, ttl: 30 * 24 * 3600 },
      );
      const context = await newContext(t);
      await context.addCookies([
        { name: "my-app-session", value: sealed, url: migrated.url, httpOnly: true, sameSite: "Lax" },
      ]);
      const page = await context.newPage();
      const navigations = trackNavigations(page);
      const before = await issuer.refreshes();

      await page.goto(`${migrated.url}/`);
      assert.equal(new URL(page.url()).pathname, "/", "not sent to the login page");
      assert.match(await page.locator("#signed-in").textContent(), /^Signed in/);
      await page.locator("#profile-name").waitFor();
      assert.equal(await page.locator("#profile-name").textContent(), NAME, "the backend's /api/me answered");

      // Past the article's access token's expiry the user is still signed in: the gateway
      // renewed with the article's refresh token (a cookie without `lastRenewedAt` is
      // renewed as soon as it is within session.leeway_secs of expiry: here at once).
      const exp = JSON.parse(Buffer.from(tokens.accessToken.split(".")[1], "base64url")).exp;
      await sleep(exp * 1000 - Date.now() + 600);
      await page.reload();
      assert.equal(new URL(page.url()).pathname, "/");
      assert.ok((await issuer.refreshes()) > before, "renewed at the issuer");
      // Now sealed by the gateway (same name, same secret), with the user in it.
      assert.equal(await page.locator("#user-name").textContent(), NAME);
      const { data } = await sessionIn(context, migrated.url, "my-app-session", articleSecret);
      assert.equal(data.isLoggedIn, true);
      assert.notEqual(data.refreshToken, tokens.refreshToken, "the refresh token rotated");
      assert.notEqual(data.accessToken, tokens.accessToken);
      await page.locator("#profile-name").waitFor();
      assert.equal(await page.locator("#profile-name").textContent(), NAME);
      assert.deepEqual(navigations.filter((u) => new URL(u).pathname.startsWith("/auth/")), []);
      await context.close();
    } finally {
      await migrated.stop();
    }
  });
});
