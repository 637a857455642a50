// Logic tests of client.js against a fake gateway on loopback (node --test).

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";

import { AuthError, createClient, FetchError } from "../client.js";
import { fakeLocation, startFakeGateway } from "./fake-gateway.js";

let gw;
let clients;

beforeEach(async () => {
  gw = await startFakeGateway();
  clients = [];
});

afterEach(async () => {
  for (const c of clients) c.close();
  await gw.close();
});

function makeClient(options = {}) {
  const location = options.location ?? fakeLocation("/page", "?x=1");
  const c = createClient({ fetch: gw.fetch, location, crossTab: false, ...options });
  clients.push(c);
  return { c, location };
}

describe("authFetch", () => {
  test("sends same-origin credentials by default and leaves a 200 alone", async () => {
    const { c } = makeClient();
    const res = await c.authFetch("/api/data");
    assert.equal(res.status, 200);
    assert.equal(gw.seen[0].credentials, "same-origin");
    assert.equal(gw.state.refreshCalls, 0);
  });

  test("an explicit credentials option is kept", async () => {
    const { c } = makeClient();
    await c.authFetch("/api/data", { credentials: "include" });
    assert.equal(gw.seen[0].credentials, "include");
  });

  test("10 parallel 401s cause one refresh and one retry each (PP-15)", async () => {
    const { c, location } = makeClient();
    gw.expire();
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => c.authFetch(`/api/item/${i}`)));
    assert.deepEqual(results.map((r) => r.status), Array(10).fill(200));
    assert.equal(gw.state.refreshCalls, 1);
    for (let i = 0; i < 10; i++) assert.equal(gw.apiCalls(`/api/item/${i}`), 2, `item ${i} sent twice`);
    assert.deepEqual(location.assigned, []);
  });

  test("a 401 that arrives after a newer refresh finished retries without refreshing again", async () => {
    const { c } = makeClient();
    gw.expire();
    const releaseSlow = gw.gate("/api/slow");
    const slow = c.authFetch("/api/slow"); // judged stale on arrival, answered later
    // Wait until the slow request has reached the server before the refresh.
    while (gw.apiCalls("/api/slow") === 0) await new Promise((r) => setImmediate(r));
    const fast = await c.authFetch("/api/fast");
    assert.equal(fast.status, 200);
    assert.equal(gw.state.refreshCalls, 1);
    releaseSlow();
    const res = await slow;
    assert.equal(res.status, 200);
    assert.equal(gw.state.refreshCalls, 1, "the late 401 reused the finished refresh");
    assert.equal(gw.apiCalls("/api/slow"), 2);
  });

  test("calls that 401 while the refresh is in flight share it", async () => {
    const { c } = makeClient();
    gw.expire();
    const releaseRefresh = gw.gate("/auth/refresh");
    const first = c.authFetch("/api/a");
    while (gw.state.refreshCalls === 0) await new Promise((r) => setImmediate(r));
    const second = c.authFetch("/api/b");
    while (gw.apiCalls("/api/b") === 0) await new Promise((r) => setImmediate(r));
    releaseRefresh();
    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.equal(gw.state.refreshCalls, 1);
  });

  test("a retried call that gets 401 again is not retried a second time", async () => {
    const { c, location } = makeClient();
    const res = await c.authFetch("/api/always-401");
    assert.equal(res.status, 401);
    assert.equal(gw.apiCalls("/api/always-401"), 2);
    assert.equal(gw.state.refreshCalls, 1);
    assert.deepEqual(location.assigned, [], "the session itself was renewed fine");
  });

  for (const code of ["session_expired", "reauth_required"]) {
    test(`refresh refused with ${code}: one navigation to login with next, every call rejects`, async () => {
      const { c, location } = makeClient();
      gw.expire();
      gw.state.refreshMode = code;
      const results = await Promise.allSettled([c.authFetch("/api/a"), c.authFetch("/api/b"), c.authFetch("/api/c")]);
      for (const r of results) {
        assert.equal(r.status, "rejected");
        assert.ok(r.reason instanceof AuthError);
        assert.equal(r.reason.code, code);
        assert.equal(r.reason.status, 401);
      }
      assert.equal(gw.state.refreshCalls, 1);
      assert.deepEqual(location.assigned, ["/auth/login?next=%2Fpage%3Fx%3D1"]);
    });
  }

  for (const [mode, status] of [
    ["down", 503],
    ["bad_gateway", 502],
    ["rate_limited", 429],
    ["forbidden", 403],
  ]) {
    test(`refresh answered ${status}: backend_unavailable, the user stays on the page`, async () => {
      const events = [];
      const { c, location } = makeClient();
      c.subscribe((e) => events.push(e.type));
      gw.expire();
      gw.state.refreshMode = mode;
      await assert.rejects(c.authFetch("/api/a"), (err) => {
        assert.ok(err instanceof AuthError);
        assert.equal(err.code, "backend_unavailable");
        assert.equal(err.status, status);
        return true;
      });
      assert.deepEqual(location.assigned, []);
      assert.deepEqual(events, ["backend_unavailable"]);
    });
  }

  for (const [mode, code] of [
    ["invalid_grant", "reauth_required"],
    ["bare_401", "session_expired"],
  ]) {
    test(`refresh answered ${mode}: ${code}, the user goes to login`, async () => {
      const { c, location } = makeClient();
      gw.expire();
      gw.state.refreshMode = mode;
      await assert.rejects(c.authFetch("/api/a"), { name: "AuthError", code });
      assert.deepEqual(location.assigned, ["/auth/login?next=%2Fpage%3Fx%3D1"]);
    });
  }

  test("refresh network error: backend_unavailable, no navigation", async () => {
    const location = fakeLocation();
    const flaky = async (input, init) => {
      if (String(input).endsWith("/auth/refresh")) throw new TypeError("fetch failed");
      return gw.fetch(input, init);
    };
    const { c } = makeClient({ fetch: flaky, location });
    gw.expire();
    await assert.rejects(c.authFetch("/api/a"), { name: "AuthError", code: "backend_unavailable", status: 0 });
    assert.deepEqual(location.assigned, []);
  });

  test("after an outage, the next 401 tries to renew again", async () => {
    const { c } = makeClient();
    gw.expire();
    gw.state.refreshMode = "down";
    await assert.rejects(c.authFetch("/api/a"), { code: "backend_unavailable" });
    gw.state.refreshMode = "ok";
    const res = await c.authFetch("/api/a");
    assert.equal(res.status, 200);
    assert.equal(gw.state.refreshCalls, 2);
  });

  test("an app-supplied handler is called instead of navigating", async () => {
    const ended = [];
    const { c, location } = makeClient({ onSessionEnd: (e) => ended.push(e) });
    gw.expire();
    gw.state.refreshMode = "reauth_required";
    await assert.rejects(c.authFetch("/api/a"), { code: "reauth_required" });
    assert.deepEqual(location.assigned, []);
    assert.deepEqual(ended, [{ code: "reauth_required", reason: "refresh_failed", next: "/page?x=1" }]);
  });

  test("a POST body is sent again on the retry", async () => {
    const { c } = makeClient();
    gw.expire();
    const res = await c.authFetch("/api/echo", { method: "POST", body: '{"n":1}', headers: { "content-type": "application/json" } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true, path: "/api/echo", method: "POST", body: '{"n":1}' });
    const bodies = gw.state.calls.filter((x) => x.path === "/api/echo").map((x) => x.body);
    assert.deepEqual(bodies, ['{"n":1}', '{"n":1}']);
  });

  test("a Request object is replayed from a clone", async () => {
    const { c } = makeClient();
    gw.expire();
    const req = new Request(`${gw.base}/api/echo`, { method: "PUT", body: "hello" });
    const res = await c.authFetch(req);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).body, "hello");
    assert.equal(gw.apiCalls("/api/echo"), 2);
  });

  test("a streamed body cannot be replayed: the session is renewed, the 401 returned", async () => {
    const { c } = makeClient();
    gw.expire();
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("once"));
        controller.close();
      },
    });
    const res = await c.authFetch("/api/upload", { method: "POST", body, duplex: "half" });
    assert.equal(res.status, 401);
    assert.equal(gw.apiCalls("/api/upload"), 1);
    assert.equal(gw.state.refreshCalls, 1);
  });

  test("a network error of the call itself is passed through, not turned into a logout", async () => {
    const location = fakeLocation();
    const broken = async () => {
      throw new TypeError("fetch failed");
    };
    const { c } = makeClient({ fetch: broken, location });
    await assert.rejects(c.authFetch("/api/a"), TypeError);
    assert.deepEqual(location.assigned, []);
  });
});

describe("refresh", () => {
  test("concurrent refresh() calls share one request and resolve to the session view", async () => {
    const { c } = makeClient();
    const events = [];
    c.subscribe((e) => events.push(e.type));
    const views = await Promise.all([c.refresh(), c.refresh(), c.refresh()]);
    assert.equal(gw.state.refreshCalls, 1);
    for (const v of views) assert.equal(v.isLoggedIn, true);
    assert.deepEqual(events, ["refresh"]);
    assert.equal(JSON.stringify(views[0]).includes("refresh"), false, "no refresh token in the view");
  });
});

describe("re-entrancy", () => {
  test("a listener that calls authFetch on refresh does not deadlock or refresh again", async () => {
    const { c } = makeClient();
    const nested = [];
    c.subscribe((e) => {
      if (e.type === "refresh") nested.push(c.authFetch("/api/from-listener").then((r) => r.status));
    });
    gw.expire();
    assert.equal((await c.authFetch("/api/a")).status, 200);
    assert.deepEqual(await Promise.all(nested), [200]);
    assert.equal(gw.state.refreshCalls, 1);
  });

  test("a throwing listener does not break authentication", async () => {
    const { c } = makeClient();
    c.subscribe(() => {
      throw new Error("listener bug");
    });
    const reported = [];
    const saved = globalThis.reportError;
    globalThis.reportError = (err) => reported.push(err.message);
    try {
      gw.expire();
      assert.equal((await c.authFetch("/api/a")).status, 200);
    } finally {
      globalThis.reportError = saved;
    }
    assert.deepEqual(reported, ["listener bug"], "reported, not swallowed");
  });
});

describe("fetcher", () => {
  test("returns JSON of a 2xx answer", async () => {
    const { c } = makeClient();
    assert.deepEqual(await c.fetcher("/api/thing"), { ok: true, path: "/api/thing", method: "GET", body: "" });
    assert.equal(gw.state.calls[0].headers.accept, "application/json");
  });

  test("a caller's Accept header wins", async () => {
    const { c } = makeClient();
    await c.fetcher(["/api/thing", { headers: { accept: "application/vnd.api+json" } }]);
    assert.equal(gw.state.calls[0].headers.accept, "application/vnd.api+json");
  });

  test("renews on 401 like authFetch", async () => {
    const { c } = makeClient();
    gw.expire();
    assert.equal((await c.fetcher("/api/thing")).ok, true);
    assert.equal(gw.state.refreshCalls, 1);
  });

  test("throws a FetchError with status and info for non-2xx", async () => {
    const { c } = makeClient();
    await assert.rejects(c.fetcher("/api/teapot"), (err) => {
      assert.ok(err instanceof FetchError);
      assert.equal(err.status, 418);
      assert.deepEqual(err.info, { error: "teapot", message: "short and stout" });
      return true;
    });
  });

  test("204 gives null", async () => {
    const { c } = makeClient();
    assert.equal(await c.fetcher("/api/empty"), null);
  });

  test("SWR array keys [url, init]", async () => {
    const { c } = makeClient();
    const out = await c.fetcher(["/api/echo", { method: "POST", body: "x" }]);
    assert.equal(out.method, "POST");
    assert.equal(out.body, "x");
  });

  test("TanStack Query function context", async () => {
    const { c } = makeClient();
    const controller = new AbortController();
    const out = await c.fetcher({ queryKey: ["/api/q"], signal: controller.signal });
    assert.equal(out.path, "/api/q");
  });
});

describe("session", () => {
  test("returns the gateway's session view", async () => {
    const { c } = makeClient();
    const view = await c.session();
    assert.equal(view.isLoggedIn, true);
    assert.equal(view.user.sub, "u1");
    assert.equal(gw.state.refreshCalls, 0, "session() never renews");
  });

  test("logged out: isLoggedIn false", async () => {
    const { c } = makeClient();
    gw.expire();
    assert.equal((await c.session()).isLoggedIn, false);
  });

  test("gateway answering 503: backend_unavailable", async () => {
    const { c } = makeClient();
    gw.state.refreshMode = "down";
    await assert.rejects(c.session(), { code: "backend_unavailable", status: 503 });
  });
});

describe("logout", () => {
  test("posts to the gateway, then goes to the login page", async () => {
    const { c, location } = makeClient();
    await c.logout();
    assert.equal(gw.state.logoutCalls, 1);
    assert.equal(gw.state.calls[0].method, "POST");
    assert.deepEqual(location.assigned, ["/auth/login"]);
  });

  test("redirect: false stays; redirect: path goes there", async () => {
    const { c, location } = makeClient();
    await c.logout({ redirect: false });
    assert.deepEqual(location.assigned, []);
    await c.logout({ redirect: "/bye" });
    assert.deepEqual(location.assigned, ["/bye"]);
  });

  test("in-flight calls of the ended session do not renew it again", async () => {
    const { c, location } = makeClient({ location: fakeLocation("/p") });
    gw.expire();
    const release = gw.gate("/api/slow");
    const slow = c.authFetch("/api/slow");
    while (gw.apiCalls("/api/slow") === 0) await new Promise((r) => setImmediate(r));
    await c.logout({ redirect: false });
    release();
    await assert.rejects(slow, { code: "session_expired" });
    assert.equal(gw.state.refreshCalls, 0);
    assert.deepEqual(location.assigned, ["/auth/login?next=%2Fp"]);
  });

  test("an unreachable gateway: backend_unavailable, nothing broadcast", async () => {
    const received = [];
    const other = createClient({ prefix: "/auth", fetch: gw.fetch, location: fakeLocation(), onSessionEnd: (e) => received.push(e) });
    clients.push(other);
    const { c, location } = makeClient({
      crossTab: true,
      fetch: async () => {
        throw new TypeError("fetch failed");
      },
    });
    await assert.rejects(c.logout(), { code: "backend_unavailable" });
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(received, []);
    assert.deepEqual(location.assigned, []);
  });

  test("logout in one tab sends the other tabs to login with next", async () => {
    const tabA = makeClient({ crossTab: true, location: fakeLocation("/a") });
    const otherLocation = fakeLocation("/orders", "?page=2");
    const tabB = makeClient({ crossTab: true, location: otherLocation });
    const arrived = new Promise((resolve) => tabB.c.subscribe((e) => e.type === "session_end" && resolve(e)));
    await tabA.c.logout();
    const event = await arrived;
    assert.equal(event.reason, "logout_elsewhere");
    assert.deepEqual(otherLocation.assigned, ["/auth/login?next=%2Forders%3Fpage%3D2"]);
    assert.deepEqual(tabA.location.assigned, ["/auth/login"], "the sender does not hear itself");
  });

  test("a custom prefix uses its own routes and channel", async () => {
    const { c, location } = makeClient({ prefix: "/sso/", crossTab: true });
    const other = makeClient({ crossTab: true, location: fakeLocation("/x") });
    // /sso/logout is a 404 in the fake: an error, and no logout is announced.
    await assert.rejects(c.logout(), { code: "backend_unavailable", status: 404 });
    assert.equal(c.prefix, "/sso");
    assert.equal(c.loginUrl("/y"), "/sso/login?next=%2Fy");
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(other.location.assigned, []);
    assert.deepEqual(location.assigned, []);
  });
});
