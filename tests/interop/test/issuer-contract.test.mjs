// Black-box contract audit of the real `sallyport issuer` binary over HTTP: every
// endpoint of issue 3 / docs/design.md "The issuer", checked against the contract and the
// RFCs it names (6749 token endpoint, 7009 revocation, 8414 discovery, 9700 reuse
// detection). A check the issuer does not meet yet is marked `{ todo: "reason" }` so
// the suite stays green while the violation stays visible in the TAP output.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { login, me, refresh, request, runCli, startIssuer } from "./lib/issuer.mjs";
import { registerSecrets } from "../../../scripts/lib/test-log.mjs";

const PASSWORD = "correct horse battery staple";
// The passwords sent to the issuer here, which the log scan of scripts/test looks for.
registerSecrets("interop-contract", [PASSWORD, "wrong password!!"]);

function assertApiError(res, status, code, what = "") {
  assert.equal(res.status, status, `${what} expected ${status}, got ${res.status}: ${res.text}`);
  assert.match(res.headers.get("content-type") || "", /^application\/json/, `${what} content-type`);
  assert.equal(typeof res.body, "object", `${what} body is JSON: ${res.text}`);
  if (code) assert.equal(res.body.error, code, `${what} error code: ${res.text}`);
  else assert.equal(typeof res.body.error, "string", `${what} error code: ${res.text}`);
  assert.equal(typeof res.body.message, "string", `${what} message: ${res.text}`);
}

/** RFC 6749 §5.2: 400 (401 for invalid_client) with `error`, JSON, no-store. */
function assertOAuthError(res, code, status = 400, what = "") {
  assert.equal(res.status, status, `${what} expected ${status}, got ${res.status}: ${res.text}`);
  assert.match(res.headers.get("content-type") || "", /^application\/json/, `${what} content-type`);
  assert.equal(res.body.error, code, `${what} error code: ${res.text}`);
  if (res.body.error_description !== undefined) {
    assert.equal(typeof res.body.error_description, "string");
    // RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
    assert.match(res.body.error_description, /^[\x20\x21\x23-\x5B\x5D-\x7E]*$/, `${what} error_description charset`);
  }
  assert.equal(res.headers.get("cache-control"), "no-store", `${what} Cache-Control`);
}

function assertTokenResponse(res) {
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.match(res.headers.get("content-type") || "", /^application\/json/);
  const b = res.body;
  assert.equal(typeof b.accessToken, "string");
  assert.equal(b.accessToken.split(".").length, 3);
  assert.equal(typeof b.refreshToken, "string");
  assert.equal(b.tokenType, "Bearer");
  // The access token's remaining lifetime: 900 s for a fresh token, less for a recorded
  // answer replayed within the reuse interval (same token, issued a moment earlier — a
  // second boundary is crossed whenever the machine is busy).
  const left = decodePayload(b.accessToken).exp - Date.now() / 1000;
  assert.ok(b.expiresIn <= 900 && Math.abs(b.expiresIn - left) <= 1.5, `expiresIn ${b.expiresIn}, token has ${left} s left`);
  assert.equal(typeof b.refreshTokenExpiresIn, "number");
  assert.ok(b.refreshTokenExpiresIn > 0);
}

function decodePayload(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());
}

/**
 * A chunked (no Content-Length) JSON POST written 1 KiB at a time; stops writing as
 * soon as the server answers, so an early 413 is read rather than lost to EPIPE.
 */
function rawChunkedPost(issuer, path, kib) {
  const { hostname, port } = new URL(issuer.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let raw = "";
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1]);
      const body = raw.slice(raw.indexOf("{"), raw.lastIndexOf("}") + 1);
      if (status) resolve({ status, raw, body });
      else reject(new Error(`no HTTP response: ${JSON.stringify(raw)}`));
    };
    const timer = setTimeout(finish, 15_000);
    socket.on("data", (d) => {
      raw += d.toString("latin1");
      // A complete chunked response ends with the zero-size chunk.
      if (raw.includes("\r\n0\r\n\r\n")) finish();
    });
    socket.on("error", () => {});
    socket.on("close", finish);
    socket.on("connect", async () => {
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\n` +
          "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      );
      for (let i = 0; i < kib && !raw && !done; i++) {
        socket.write(`400\r\n${"x".repeat(1024)}\r\n`);
        await new Promise((r) => setTimeout(r, 2));
      }
      if (!raw && !done) socket.write("0\r\n\r\n");
    });
  });
}

/** Writes `payload` on a raw socket; resolves with what came back once the server closes or `waitMs` passes. */
function rawRequest(issuer, payload, waitMs) {
  const { hostname, port } = new URL(issuer.url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    let raw = "";
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on("data", (d) => {
      raw += d.toString("latin1");
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(raw);
    });
    socket.write(payload);
  });
}

const post = (issuer, path, opts) => request(`${issuer.url}${path}`, { method: "POST", ...opts });

describe("issuer contract (default settings)", () => {
  let issuer;
  let user;

  before(async () => {
    issuer = await startIssuer();
    user = await issuer.addUser("alice", PASSWORD, { name: "Alice", roles: ["admin"] });
    await issuer.addUser("dora", PASSWORD, { name: "Dora" });
    await issuer.cli(["user", "disable", "dora"]);
  });
  after(async () => {
    await issuer?.stop();
  });

  describe("POST /api/login", () => {
    test("200 with the token shape, no-store, a >= 256-bit refresh token", async () => {
      const res = await login(issuer, "alice", PASSWORD);
      assertTokenResponse(res);
      assert.match(res.body.refreshToken, /^[A-Za-z0-9_-]{43,}$/);
      assert.ok(Buffer.from(res.body.refreshToken, "base64url").length >= 32);
      const claims = decodePayload(res.body.accessToken);
      assert.equal(claims.sub, user.id);
    });

    test("every login gets a distinct refresh token and session", async () => {
      const a = await login(issuer, "alice", PASSWORD);
      const b = await login(issuer, "alice", PASSWORD);
      assert.notEqual(a.body.refreshToken, b.body.refreshToken);
      assert.notEqual(decodePayload(a.body.accessToken).sid, decodePayload(b.body.accessToken).sid);
    });

    test("401 invalid_credentials, byte-identical for unknown user and wrong password", async () => {
      const wrong = await login(issuer, "alice", "wrong password!!");
      const unknown = await login(issuer, "nobody-at-all", "wrong password!!");
      assertApiError(wrong, 401, "invalid_credentials");
      assertApiError(unknown, 401, "invalid_credentials");
      assert.equal(wrong.text, unknown.text);
      assert.equal(wrong.headers.get("www-authenticate"), unknown.headers.get("www-authenticate"));
      assert.equal(wrong.headers.get("cache-control"), "no-store");
    });

    test("403 JSON for a disabled account (right password)", async () => {
      assertApiError(await login(issuer, "dora", PASSWORD), 403);
    });

    test("a disabled account with a wrong password is indistinguishable from unknown", async () => {
      const res = await login(issuer, "dora", "wrong password!!");
      assertApiError(res, 401, "invalid_credentials");
    });

    test("malformed JSON, wrong content type, missing fields, wrong types → 4xx JSON", async () => {
      const cases = [
        ["malformed JSON", { body: '{"username": "alice", ', headers: { "content-type": "application/json" } }, 400],
        ["empty body", { body: "", headers: { "content-type": "application/json" } }, 400],
        ["JSON array", { body: "[]", headers: { "content-type": "application/json" } }, 400],
        ["JSON null", { body: "null", headers: { "content-type": "application/json" } }, 400],
        ["not UTF-8", { body: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), headers: { "content-type": "application/json" } }, 400],
        ["missing password", { json: { username: "alice" } }, 400],
        ["missing username", { json: { password: PASSWORD } }, 400],
        ["number username", { json: { username: 5, password: PASSWORD } }, 400],
        ["null password", { json: { username: "alice", password: null } }, 400],
        ["text/plain", { body: JSON.stringify({ username: "alice", password: PASSWORD }), headers: { "content-type": "text/plain" } }, 415],
        ["no content type", { body: JSON.stringify({ username: "alice", password: PASSWORD }) }, 415],
        ["form encoded", { form: { username: "alice", password: PASSWORD } }, 415],
      ];
      for (const [what, opts, status] of cases) {
        const res = await post(issuer, "/api/login", opts);
        assertApiError(res, status, undefined, what);
      }
    });

    test("body over the limit → 413 JSON (with and without Content-Length)", async () => {
      const big = JSON.stringify({ username: "alice", password: "x".repeat(64 * 1024) });
      assertApiError(await post(issuer, "/api/login", { body: big, headers: { "content-type": "application/json" } }), 413);
      const res = await rawChunkedPost(issuer, "/api/login", 64);
      assert.equal(res.status, 413, res.raw.slice(0, 300));
      assert.equal(typeof JSON.parse(res.body).error, "string");
    });

    test("absurdly long fields under the body limit → 4xx JSON, not 5xx", async () => {
      for (const json of [
        { username: "u".repeat(15_000), password: PASSWORD },
        { username: "alice", password: "p".repeat(15_000) },
        { username: "", password: "" },
        { username: "al\u0000ice", password: PASSWORD },
      ]) {
        const res = await post(issuer, "/api/login", { json });
        assert.ok(res.status >= 400 && res.status < 500, `${res.status} ${res.text}`);
        assertApiError(res, res.status);
      }
    });
  });

  describe("POST /api/refresh-token", () => {
    test("200, same shape, always a new refresh token; the old one continues the same session", async () => {
      const first = (await login(issuer, "alice", PASSWORD)).body;
      const second = await refresh(issuer, first.refreshToken);
      assertTokenResponse(second);
      assert.notEqual(second.body.refreshToken, first.refreshToken);
      assert.equal(decodePayload(second.body.accessToken).sid, decodePayload(first.accessToken).sid);
      const third = await refresh(issuer, second.body.refreshToken);
      assertTokenResponse(third);
      assert.notEqual(third.body.refreshToken, second.body.refreshToken);
    });

    test("reuse within the interval gets a valid answer continuing the same session", async () => {
      const first = (await login(issuer, "alice", PASSWORD)).body;
      const a = await refresh(issuer, first.refreshToken);
      const b = await refresh(issuer, first.refreshToken);
      assertTokenResponse(a);
      assertTokenResponse(b);
      const sid = decodePayload(first.accessToken).sid;
      assert.equal(decodePayload(b.body.accessToken).sid, sid);
      // Both answers keep working: the session was not revoked.
      const next = await refresh(issuer, b.body.refreshToken);
      assertTokenResponse(next);
      assert.equal(decodePayload(next.body.accessToken).sid, sid);
    });

    test("concurrent refreshes of one token (50 at once) all succeed in one session", async () => {
      const first = (await login(issuer, "alice", PASSWORD)).body;
      const answers = await Promise.all(Array.from({ length: 50 }, () => refresh(issuer, first.refreshToken)));
      const sid = decodePayload(first.accessToken).sid;
      for (const a of answers) {
        assertTokenResponse(a);
        assert.equal(decodePayload(a.body.accessToken).sid, sid);
      }
      assertTokenResponse(await refresh(issuer, answers[0].body.refreshToken));
    });

    test("401 invalid_grant for unknown, empty and garbage tokens", async () => {
      for (const token of ["AssyKSgCWYzZh1jIp-QsrcjARdYkMjaNDbxvmzDRjnM", "", "x", "ünïcødé", "a".repeat(4000)]) {
        assertApiError(await refresh(issuer, token), 401, "invalid_grant", `token ${token.slice(0, 20)}`);
      }
    });

    test("refreshTokenExpiresIn defaults to the 30-day idle expiry", async () => {
      const res = await login(issuer, "alice", PASSWORD);
      assert.equal(res.body.refreshTokenExpiresIn, 30 * 24 * 3600);
    });

    test("401 responses carry a WWW-Authenticate challenge (RFC 9110 §15.5.2)", async () => {
      const a = await login(issuer, "alice", "wrong password!!");
      const b = await refresh(issuer, "unknown-token");
      assert.equal(a.status, 401);
      assert.equal(b.status, 401);
      assert.ok(a.headers.get("www-authenticate"), "login 401 without WWW-Authenticate");
      assert.ok(b.headers.get("www-authenticate"), "refresh 401 without WWW-Authenticate");
    });

    test("`sallyport session revoke` and `user passwd` end sessions: refresh → 401 invalid_grant", async () => {
      await issuer.addUser("frank", PASSWORD);
      const a = (await login(issuer, "frank", PASSWORD)).body;
      const sid = decodePayload(a.accessToken).sid;
      const listed = (await issuer.cli(["session", "list", "--user", "frank", "--json"])).stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l));
      assert.ok(listed.some((x) => x.id === sid), "the session is listed");
      await issuer.cli(["session", "revoke", sid]);
      assertApiError(await refresh(issuer, a.refreshToken), 401, "invalid_grant", "after session revoke");

      const b = (await login(issuer, "frank", PASSWORD)).body;
      await issuer.cli(["user", "passwd", "frank", "--password-stdin"], { stdin: "another long password\n" });
      assertApiError(await refresh(issuer, b.refreshToken), 401, "invalid_grant", "after passwd");
      assertApiError(await login(issuer, "frank", PASSWORD), 401, "invalid_credentials", "old password");
      assertTokenResponse(await login(issuer, "frank", "another long password"));
    });

    test("disabling a user revokes their sessions; enabling lets them log in again", async () => {
      await issuer.addUser("gina", PASSWORD);
      const a = (await login(issuer, "gina", PASSWORD)).body;
      await issuer.cli(["user", "disable", "gina"]);
      assertApiError(await refresh(issuer, a.refreshToken), 401, "invalid_grant");
      assertApiError(await login(issuer, "gina", PASSWORD), 403);
      await issuer.cli(["user", "enable", "gina"]);
      assertTokenResponse(await login(issuer, "gina", PASSWORD));
    });

    test("an access token is not a refresh token", async () => {
      const first = (await login(issuer, "alice", PASSWORD)).body;
      assertApiError(await refresh(issuer, first.accessToken), 401, "invalid_grant");
    });

    test("bad input → 4xx JSON", async () => {
      const cases = [
        ["missing field", { json: {} }],
        ["camelCase only", { json: { refreshToken: "abc" } }],
        ["number", { json: { refresh_token: 12 } }],
        ["malformed", { body: "{", headers: { "content-type": "application/json" } }],
        ["text/plain", { body: '{"refresh_token":"a"}', headers: { "content-type": "text/plain" } }],
        ["huge", { json: { refresh_token: "a".repeat(100_000) } }],
        ["long under limit", { json: { refresh_token: "a".repeat(15_000) } }],
      ];
      for (const [what, opts] of cases) {
        const res = await post(issuer, "/api/refresh-token", opts);
        assert.ok(res.status >= 400 && res.status < 500, `${what}: ${res.status} ${res.text}`);
        assertApiError(res, res.status, undefined, what);
      }
    });
  });

  describe("POST /api/logout", () => {
    test("204 and the whole family is revoked (older and newer tokens)", async () => {
      const first = (await login(issuer, "alice", PASSWORD)).body;
      const second = (await refresh(issuer, first.refreshToken)).body;
      const res = await post(issuer, "/api/logout", { json: { refresh_token: second.refreshToken } });
      assert.equal(res.status, 204, res.text);
      assert.equal(res.text, "");
      assertApiError(await refresh(issuer, second.refreshToken), 401, "invalid_grant");
      assertApiError(await refresh(issuer, first.refreshToken), 401, "invalid_grant", "old token within interval");
    });

    test("logout with the first token of the family revokes the newest one too", async () => {
      const first = (await login(issuer, "alice", PASSWORD)).body;
      const second = (await refresh(issuer, first.refreshToken)).body;
      assert.equal((await post(issuer, "/api/logout", { json: { refresh_token: first.refreshToken } })).status, 204);
      assertApiError(await refresh(issuer, second.refreshToken), 401, "invalid_grant");
    });

    test("an unknown token → 204 as well (nothing to reveal)", async () => {
      const res = await post(issuer, "/api/logout", { json: { refresh_token: "never-issued" } });
      assert.equal(res.status, 204, res.text);
    });

    test("bad input → 4xx JSON", async () => {
      for (const opts of [{ json: {} }, { body: "{", headers: { "content-type": "application/json" } }, { form: { refresh_token: "x" } }]) {
        const res = await post(issuer, "/api/logout", opts);
        assert.ok(res.status >= 400 && res.status < 500, `${res.status} ${res.text}`);
        assertApiError(res, res.status);
      }
    });
  });

  describe("GET /api/me", () => {
    test("the profile: id, username, name, roles; no-store", async () => {
      const { accessToken } = (await login(issuer, "alice", PASSWORD)).body;
      const res = await me(issuer, accessToken);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.id, user.id);
      assert.equal(res.body.username, "alice");
      assert.equal(res.body.name, "Alice");
      assert.deepEqual(res.body.roles, ["admin"]);
      assert.equal(res.headers.get("cache-control"), "no-store");
    });

    test("401 + WWW-Authenticate: Bearer error=\"invalid_token\" without a valid token", async () => {
      for (const headers of [{}, { authorization: "Bearer" }, { authorization: "Bearer a.b.c" }, { authorization: "Token abc" }]) {
        const res = await request(`${issuer.url}/api/me`, { headers });
        assertApiError(res, 401, "invalid_token", JSON.stringify(headers));
        assert.match(res.headers.get("www-authenticate") || "", /^Bearer\b/);
      }
      const res = await me(issuer, "garbage");
      assert.match(res.headers.get("www-authenticate") || "", /error="invalid_token"/);
    });

    test("the bearer scheme name is case-insensitive (RFC 7235 §2.1)", async () => {
      const { accessToken } = (await login(issuer, "alice", PASSWORD)).body;
      const res = await request(`${issuer.url}/api/me`, { headers: { authorization: `bearer ${accessToken}` } });
      assert.equal(res.status, 200, res.text);
    });

    test("a disabled user's still-unexpired token no longer gets the profile", async () => {
      await issuer.addUser("erin", PASSWORD);
      const { accessToken } = (await login(issuer, "erin", PASSWORD)).body;
      assert.equal((await me(issuer, accessToken)).status, 200);
      await issuer.cli(["user", "disable", "erin"]);
      assertApiError(await me(issuer, accessToken), 401, "invalid_token");
    });
  });

  describe("POST /oauth/token (RFC 6749)", () => {
    const token = (opts) => post(issuer, "/oauth/token", opts);

    test("password grant: 200, RFC 6749 §5.1 body, Cache-Control: no-store, Pragma: no-cache", async () => {
      const res = await token({ form: { grant_type: "password", username: "alice", password: PASSWORD } });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.equal(res.headers.get("pragma"), "no-cache");
      assert.match(res.headers.get("content-type") || "", /^application\/json/);
      assert.equal(typeof res.body.access_token, "string");
      assert.equal(res.body.token_type.toLowerCase(), "bearer");
      assert.equal(res.body.expires_in, 900);
      assert.equal(typeof res.body.refresh_token, "string");
      assert.equal(res.body.accessToken, undefined, "snake_case only");
    });

    test("refresh_token grant rotates; tokens interoperate with /api/refresh-token", async () => {
      const first = (await token({ form: { grant_type: "password", username: "alice", password: PASSWORD } })).body;
      const second = await token({ form: { grant_type: "refresh_token", refresh_token: first.refresh_token } });
      assert.equal(second.status, 200, second.text);
      assert.equal(second.headers.get("cache-control"), "no-store");
      assert.notEqual(second.body.refresh_token, first.refresh_token);
      assertTokenResponse(await refresh(issuer, second.body.refresh_token));
    });

    test("wrong password and unknown user → 400 invalid_grant, identical", async () => {
      const a = await token({ form: { grant_type: "password", username: "alice", password: "wrong password!!" } });
      const b = await token({ form: { grant_type: "password", username: "nobody-x", password: "wrong password!!" } });
      assertOAuthError(a, "invalid_grant");
      assertOAuthError(b, "invalid_grant");
      assert.equal(a.text, b.text);
    });

    test("invalid refresh token → 400 invalid_grant", async () => {
      assertOAuthError(await token({ form: { grant_type: "refresh_token", refresh_token: "nope" } }), "invalid_grant");
    });

    test("unknown grant types → 400 unsupported_grant_type", async () => {
      for (const grant_type of ["client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer", "PASSWORD"]) {
        assertOAuthError(await token({ form: { grant_type, username: "alice", password: PASSWORD } }), "unsupported_grant_type", 400, grant_type);
      }
    });

    test("missing parameters → 400 invalid_request", async () => {
      for (const form of [
        {},
        { username: "alice", password: PASSWORD },
        { grant_type: "password", username: "alice" },
        { grant_type: "password", password: PASSWORD },
        { grant_type: "refresh_token" },
        // The code flow (tests/oidc-op) needs its client, code, redirect URI and verifier.
        { grant_type: "authorization_code", username: "alice", password: PASSWORD },
        { grant_type: "authorization_code", client_id: "spa", code: "x".repeat(43) },
      ]) {
        assertOAuthError(await token({ form }), "invalid_request", 400, JSON.stringify(form));
      }
    });

    test("unrecognized parameters are ignored (RFC 6749 §3.2)", async () => {
      const res = await token({
        form: { grant_type: "password", username: "alice", password: PASSWORD, scope: "openid profile", client_id: "spa", foo: "bar" },
      });
      assert.equal(res.status, 200, res.text);
      const r2 = await token({ form: { grant_type: "refresh_token", refresh_token: res.body.refresh_token, client_id: "spa", scope: "x" } });
      assert.equal(r2.status, 200, r2.text);
    });

    test("parameters sent without a value count as omitted → invalid_request (RFC 6749 §3.2)", async () => {
      for (const form of [
        { grant_type: "" },
        { grant_type: "password", username: "", password: PASSWORD },
        { grant_type: "password", username: "alice", password: "" },
      ]) {
        assertOAuthError(await token({ form }), "invalid_request", 400, JSON.stringify(form));
      }
    });

    test("an empty refresh_token counts as omitted → invalid_request (RFC 6749 §3.2)", async () => {
      const form = { grant_type: "refresh_token", refresh_token: "" };
      assertOAuthError(await token({ form }), "invalid_request", 400, JSON.stringify(form));
    });

    test("repeated parameters → 400 invalid_request (RFC 6749 §3.2)", async () => {
      const body = `grant_type=password&username=alice&username=mallory&password=${encodeURIComponent(PASSWORD)}`;
      assertOAuthError(
        await token({ body, headers: { "content-type": "application/x-www-form-urlencoded" } }),
        "invalid_request",
      );
    });

    test("form with charset parameter is accepted", async () => {
      const body = new URLSearchParams({ grant_type: "password", username: "alice", password: PASSWORD }).toString();
      const res = await token({ body, headers: { "content-type": "application/x-www-form-urlencoded; charset=UTF-8" } });
      assert.equal(res.status, 200, res.text);
    });

    test("a JSON body is refused with 400 invalid_request (RFC 6749 §5.2: 400 unless specified otherwise)", async () => {
      const res = await token({ json: { grant_type: "password", username: "alice", password: PASSWORD } });
      assertOAuthError(res, "invalid_request", 400);
    });

    test("a JSON body is refused with a 4xx invalid_request OAuth error and no-store", async () => {
      const res = await token({ json: { grant_type: "password", username: "alice", password: PASSWORD } });
      assert.ok(res.status === 400 || res.status === 415, res.text);
      assertOAuthError(res, "invalid_request", res.status);
    });

    test("oversized form → 413 JSON OAuth error", async () => {
      const res = await token({ form: { grant_type: "password", username: "alice", password: "x".repeat(40_000) } });
      assert.equal(res.status, 413, res.text);
      assert.equal(typeof res.body.error, "string");
    });

    test("unsupported client authentication → 401 invalid_client with WWW-Authenticate (RFC 6749 §5.2)", async () => {
      const res = await token({
        form: { grant_type: "password", username: "alice", password: PASSWORD },
        headers: { authorization: `Basic ${Buffer.from("unknown-client:secret").toString("base64")}` },
      });
      assertOAuthError(res, "invalid_client", 401);
      assert.match(res.headers.get("www-authenticate") || "", /^Basic/i);
    });

    test("GET is not allowed → 405 JSON", async () => {
      const res = await request(`${issuer.url}/oauth/token?grant_type=password&username=alice&password=x`);
      assert.equal(res.status, 405);
      assert.equal(typeof res.body.error, "string");
    });
  });

  describe("POST /oauth/revoke (RFC 7009)", () => {
    const revoke = (opts) => post(issuer, "/oauth/revoke", opts);

    test("revoking a refresh token → 200, the session's tokens stop working", async () => {
      const first = (await login(issuer, "alice", PASSWORD)).body;
      const second = (await refresh(issuer, first.refreshToken)).body;
      const res = await revoke({ form: { token: first.refreshToken, token_type_hint: "refresh_token" } });
      assert.equal(res.status, 200, res.text);
      assertApiError(await refresh(issuer, second.refreshToken), 401, "invalid_grant");
    });

    test("unknown tokens, access tokens and unknown hints → 200 (§2.2)", async () => {
      const { accessToken } = (await login(issuer, "alice", PASSWORD)).body;
      for (const form of [
        { token: "never-issued" },
        { token: accessToken, token_type_hint: "access_token" },
        { token: "never-issued", token_type_hint: "something_else" },
      ]) {
        const res = await revoke({ form });
        assert.equal(res.status, 200, `${JSON.stringify(form).slice(0, 60)}: ${res.text}`);
      }
    });

    test("unrecognized parameters are ignored", async () => {
      const res = await revoke({ form: { token: "never-issued", client_id: "spa", foo: "bar" } });
      assert.equal(res.status, 200, res.text);
    });

    test("missing token → 400 invalid_request", async () => {
      assertOAuthError(await revoke({ form: {} }), "invalid_request");
      assertOAuthError(await revoke({ form: { token_type_hint: "refresh_token" } }), "invalid_request");
    });

    test("revoking twice is fine, and the revoked token then fails at /oauth/token with invalid_grant", async () => {
      const first = (await login(issuer, "alice", PASSWORD)).body;
      assert.equal((await revoke({ form: { token: first.refreshToken } })).status, 200);
      assert.equal((await revoke({ form: { token: first.refreshToken } })).status, 200);
      assertOAuthError(
        await post(issuer, "/oauth/token", { form: { grant_type: "refresh_token", refresh_token: first.refreshToken } }),
        "invalid_grant",
      );
    });

    test("a JSON body → 4xx invalid_request", async () => {
      const res = await revoke({ json: { token: "x" } });
      assert.ok(res.status === 400 || res.status === 415, res.text);
      assert.equal(res.body.error, "invalid_request");
    });
  });

  describe("discovery and keys", () => {
    test("openid-configuration: issuer, jwks_uri, token and revocation endpoints, grants, algorithms", async () => {
      const res = await request(`${issuer.url}/.well-known/openid-configuration`);
      assert.equal(res.status, 200);
      const d = res.body;
      assert.equal(d.issuer, issuer.url);
      assert.equal(d.jwks_uri, `${issuer.url}/.well-known/jwks.json`);
      assert.equal(d.token_endpoint, `${issuer.url}/oauth/token`);
      assert.equal(d.revocation_endpoint, `${issuer.url}/oauth/revoke`);
      assert.deepEqual([...d.grant_types_supported].sort(), ["authorization_code", "password", "refresh_token"]);
      const algs = Object.entries(d)
        .filter(([k]) => k.includes("alg_values_supported"))
        .flatMap(([, v]) => v);
      assert.ok(algs.includes("ES256"), JSON.stringify(d));
      // Every advertised endpoint is served.
      for (const key of ["jwks_uri", "token_endpoint", "revocation_endpoint"]) {
        const r = await fetch(d[key], { method: key === "jwks_uri" ? "GET" : "POST" });
        assert.notEqual(r.status, 404, key);
      }
      const iss = decodePayload((await login(issuer, "alice", PASSWORD)).body.accessToken).iss;
      assert.equal(iss, d.issuer);
    });

    test("jwks.json: public keys only, with kid, alg, use", async () => {
      const res = await request(`${issuer.url}/.well-known/jwks.json`);
      assert.equal(res.status, 200);
      assert.ok(res.body.keys.length >= 1);
      for (const k of res.body.keys) {
        assert.equal(typeof k.kid, "string");
        assert.ok(["ES256", "EdDSA"].includes(k.alg));
        assert.equal(k.use, "sig");
        for (const priv of ["d", "p", "q", "dp", "dq", "qi", "k"]) assert.equal(k[priv], undefined, priv);
      }
    });
  });

  describe("operations", () => {
    test("/healthz and /readyz → 200", async () => {
      assert.equal((await request(`${issuer.url}/healthz`)).status, 200);
      assert.equal((await request(`${issuer.url}/readyz`)).status, 200);
    });

    test("/metrics: Prometheus text with logins/refreshes by outcome, reuse detections, revocations, latency histogram", async () => {
      // Produce one of each event first (a counter appears once incremented).
      const reuseIssuer = await startIssuer({ refresh_reuse_interval_secs: 0 });
      try {
        await reuseIssuer.addUser("alice", PASSWORD);
        const first = (await login(reuseIssuer, "alice", PASSWORD)).body;
        await login(reuseIssuer, "alice", "wrong password!!");
        await refresh(reuseIssuer, first.refreshToken);
        await new Promise((r) => setTimeout(r, 20));
        await refresh(reuseIssuer, first.refreshToken); // reuse after the (zero) interval
        const other = (await login(reuseIssuer, "alice", PASSWORD)).body;
        await post(reuseIssuer, "/api/logout", { json: { refresh_token: other.refreshToken } });
        const res = await request(`${reuseIssuer.url}/metrics`);
        assert.equal(res.status, 200);
        assert.match(res.headers.get("content-type") || "", /^text\/plain/);
        const text = res.text;
        const type = (name) => new RegExp(`^# TYPE ${name} (\\w+)$`, "m").exec(text)?.[1];
        assert.equal(type("sallyport_issuer_logins_total"), "counter", text);
        assert.match(text, /^sallyport_issuer_logins_total\{[^}]*outcome="[^"]+"[^}]*\} \d/m);
        const loginOutcomes = new Set([...text.matchAll(/^sallyport_issuer_logins_total\{[^}]*outcome="([^"]+)"/gm)].map((m) => m[1]));
        assert.ok(loginOutcomes.size >= 2, `login outcomes ${[...loginOutcomes]}`);
        assert.equal(type("sallyport_issuer_refreshes_total"), "counter");
        assert.match(text, /^sallyport_issuer_refreshes_total\{[^}]*outcome="[^"]+"/m);
        assert.equal(type("sallyport_issuer_reuse_detections_total"), "counter");
        assert.match(text, /^sallyport_issuer_reuse_detections_total(\{[^}]*\})? [1-9]/m);
        assert.equal(type("sallyport_issuer_revocations_total"), "counter");
        assert.equal(type("sallyport_issuer_request_duration_seconds"), "histogram");
        assert.match(text, /^sallyport_issuer_request_duration_seconds_bucket\{[^}]*le="\+Inf"/m);
      } finally {
        await reuseIssuer.stop();
      }
    });

    test("/openapi.json: OpenAPI 3 describing every endpoint, with resolvable security schemes", async () => {
      const res = await request(`${issuer.url}/openapi.json`);
      assert.equal(res.status, 200);
      const doc = res.body;
      assert.match(doc.openapi, /^3\./);
      for (const [path, method] of [
        ["/api/login", "post"],
        ["/api/refresh-token", "post"],
        ["/api/logout", "post"],
        ["/api/me", "get"],
        ["/oauth/token", "post"],
        ["/oauth/revoke", "post"],
        ["/.well-known/jwks.json", "get"],
        ["/.well-known/openid-configuration", "get"],
        ["/healthz", "get"],
        ["/readyz", "get"],
        ["/metrics", "get"],
      ]) {
        assert.ok(doc.paths?.[path]?.[method], `${method.toUpperCase()} ${path} documented`);
      }
      const schemas = doc.components?.schemas ?? {};
      const token = schemas.TokenResponse;
      assert.ok(token, "TokenResponse schema");
      for (const prop of ["accessToken", "refreshToken", "tokenType", "expiresIn"]) {
        assert.ok(token.properties?.[prop], `TokenResponse.${prop}`);
      }
      // Every $ref resolves.
      const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]);
      for (const r of refs) assert.ok(schemas[r], `$ref ${r} resolves`);
    });

    test("/openapi.json: every security requirement names a defined securityScheme", async () => {
      const doc = (await request(`${issuer.url}/openapi.json`)).body;
      const defined = Object.keys(doc.components?.securitySchemes ?? {});
      for (const [path, ops] of Object.entries(doc.paths)) {
        for (const [method, op] of Object.entries(ops)) {
          for (const req of op.security ?? []) {
            for (const name of Object.keys(req)) {
              assert.ok(defined.includes(name), `${method} ${path}: security scheme ${name} undefined`);
            }
          }
        }
      }
    });

    test("unknown paths → 404 JSON, wrong methods → 405 JSON", async () => {
      assertApiError(await request(`${issuer.url}/api/nope`), 404);
      assertApiError(await request(`${issuer.url}/api/login`), 405);
      assertApiError(await request(`${issuer.url}/api/me`, { method: "POST" }), 405);
    });

    // Both wait for server timeouts (30 s), so they run side by side.
    describe("slow clients", { concurrency: true }, () => {
      test("a body that never completes → 408 JSON (no hang)", async () => {
        const res = await rawRequest(
          issuer,
          "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
          45_000,
        );
        assert.match(res, /^HTTP\/1\.1 408 /);
        assert.match(res, /"error":"timeout"/);
      });

      test("headers that never complete are cut off (no slowloris hang)", async () => {
        const started = Date.now();
        await rawRequest(issuer, "GET /healthz HTTP/1.1\r\nHost: x\r\n", 40_000);
        assert.ok(Date.now() - started < 39_000, "the server did not close the connection within 40 s");
      });
    });

    test("no 5xx for a battery of odd requests", async () => {
      const odd = [
        ["/api/login", { body: "{\"username\":\"a\",\"password\":\"b\"}", headers: { "content-type": "application/json; charset=latin1" } }],
        ["/api/login", { body: "\u0000\u0001", headers: { "content-type": "application/json" } }],
        ["/api/login", { body: "{\"username\":\"" + "\\u0000".repeat(2000) + "\",\"password\":\"x\"}", headers: { "content-type": "application/json" } }],
        ["/api/login", { body: "[".repeat(5000), headers: { "content-type": "application/json" } }],
        ["/api/refresh-token", { body: "{\"refresh_token\":\"\\ud800\"}", headers: { "content-type": "application/json" } }],
        ["/api/logout", { body: "{\"refresh_token\":[1,2]}", headers: { "content-type": "application/json" } }],
        ["/oauth/token", { body: "%%%", headers: { "content-type": "application/x-www-form-urlencoded" } }],
        ["/oauth/token", { body: "grant_type=password&username=%FF&password=%FE", headers: { "content-type": "application/x-www-form-urlencoded" } }],
        ["/oauth/revoke", { body: "token=%", headers: { "content-type": "application/x-www-form-urlencoded" } }],
        ["/oauth/revoke", { body: "token=" + "a".repeat(10_000), headers: { "content-type": "application/x-www-form-urlencoded" } }],
      ];
      for (const [path, opts] of odd) {
        const res = await post(issuer, path, opts);
        assert.ok(res.status >= 200 && res.status < 500, `${path} ${opts.body.slice(0, 30)}: ${res.status} ${res.text}`);
        if (res.status >= 400) assert.equal(typeof res.body.error, "string", `${path}: ${res.text}`);
      }
    });
  });
});

describe("issuer contract: reuse after the interval (RFC 9700)", () => {
  let issuer;
  before(async () => {
    issuer = await startIssuer({ refresh_reuse_interval_secs: 1 });
    await issuer.addUser("alice", PASSWORD);
  });
  after(async () => {
    await issuer?.stop();
  });

  test("a token used again after the interval revokes the whole family", async () => {
    const first = (await login(issuer, "alice", PASSWORD)).body;
    const second = (await refresh(issuer, first.refreshToken)).body;
    assert.ok(second.refreshToken);
    await new Promise((r) => setTimeout(r, 2_100)); // past the 1 s interval
    assertApiError(await refresh(issuer, first.refreshToken), 401, "invalid_grant", "reused token");
    assertApiError(await refresh(issuer, second.refreshToken), 401, "invalid_grant", "successor after reuse");
    // Audited: the session shows as revoked, with a reason.
    const sid = decodePayload(first.accessToken).sid;
    const sessions = (await issuer.cli(["session", "list", "--all", "--json"])).stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const session = sessions.find((x) => x.id === sid);
    assert.ok(session, "session listed with --all");
    assert.equal(typeof session.revoked_at_ms, "number");
    assert.match(session.revoked_reason || "", /reuse/i);
  });

  test("the same through /oauth/token", async () => {
    const first = (await login(issuer, "alice", PASSWORD)).body;
    const second = (await refresh(issuer, first.refreshToken)).body;
    await new Promise((r) => setTimeout(r, 2_100));
    const form = (t) => ({ form: { grant_type: "refresh_token", refresh_token: t } });
    assertOAuthError(await post(issuer, "/oauth/token", form(first.refreshToken)), "invalid_grant");
    assertOAuthError(await post(issuer, "/oauth/token", form(second.refreshToken)), "invalid_grant");
  });
});

describe("issuer contract: idle expiry and absolute session lifetime", () => {
  let issuer;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  before(async () => {
    issuer = await startIssuer({ refresh_idle_ttl_secs: 3, session_max_lifetime_secs: 5 });
    await issuer.addUser("alice", PASSWORD);
  });
  after(async () => {
    await issuer?.stop();
  });

  test("a refresh token unused past the idle expiry → 401 invalid_grant", async () => {
    const first = (await login(issuer, "alice", PASSWORD)).body;
    assert.ok(first.refreshTokenExpiresIn <= 3, `refreshTokenExpiresIn ${first.refreshTokenExpiresIn}`);
    await sleep(3_800);
    assertApiError(await refresh(issuer, first.refreshToken), 401, "invalid_grant");
  });

  test("refreshing within the idle time cannot extend a session past its absolute lifetime", async () => {
    let tokens = (await login(issuer, "alice", PASSWORD)).body;
    const started = Date.now();
    // Refresh at 1.5 s, 3 s, 4 s (each within the 3 s idle expiry, before the 5 s
    // lifetime); at 5.7 s the last token is idle-valid until 7 s but the session is over.
    for (const at of [1_500, 3_000, 4_000]) {
      await sleep(Math.max(0, at - (Date.now() - started)));
      const res = await refresh(issuer, tokens.refreshToken);
      assertTokenResponse(res);
      tokens = res.body;
    }
    assert.ok(tokens.refreshTokenExpiresIn <= 2, `refreshTokenExpiresIn ${tokens.refreshTokenExpiresIn} exceeds the remaining lifetime`);
    await sleep(Math.max(0, 5_700 - (Date.now() - started)));
    assertApiError(await refresh(issuer, tokens.refreshToken), 401, "invalid_grant", "past the absolute lifetime");
  });
});

describe("issuer contract: login rate limits", () => {
  let issuer;
  before(async () => {
    issuer = await startIssuer({
      // The test client plays a proxy on loopback that names the client in X-Forwarded-For.
      http: { trusted_proxies: ["127.0.0.1/32", "::1/128"] },
      rate_limit: {
        account_burst: 3,
        account_replenish_secs: 600,
        account_address_burst: 3,
        account_address_replenish_secs: 600,
        address_burst: 5,
        address_replenish_secs: 600,
      },
    });
    await issuer.addUser("alice", PASSWORD);
    await issuer.addUser("carol", PASSWORD);
    await issuer.addUser("dave", PASSWORD);
  });
  after(async () => {
    await issuer?.stop();
  });

  function assert429(res, what) {
    assertApiError(res, 429, undefined, what);
    const retry = res.headers.get("retry-after");
    assert.match(retry || "", /^\d+$/, `${what}: Retry-After ${retry}`);
    assert.ok(Number(retry) >= 1, `${what}: Retry-After ${retry}`);
  }

  test("per (account, address): failures from one address → 429 + Retry-After", async () => {
    const from = { "x-forwarded-for": "10.0.0.1" };
    for (let i = 0; i < 3; i++) {
      assertApiError(await login(issuer, "alice", "wrong password!!", from), 401, "invalid_credentials");
    }
    assert429(await login(issuer, "alice", "wrong password!!", from), "4th failure");
  });

  test("a limited (account, address) refuses even the right password (a 200 would confirm a guess)", async () => {
    const res = await login(issuer, "alice", PASSWORD, { "x-forwarded-for": "10.0.0.1" });
    assert.equal(res.status, 429, res.text);
  });

  test("…but the right password from an address that has not failed still logs in (no lockout)", async () => {
    assertTokenResponse(await login(issuer, "alice", PASSWORD, { "x-forwarded-for": "10.0.0.50" }));
  });

  test("per account over many addresses: slows addresses that failed, never locks out a clean one", async () => {
    for (let i = 0; i < 4; i++) {
      await login(issuer, "dave", "wrong password!!", { "x-forwarded-for": `10.3.0.${i + 1}` });
    }
    // The account budget (3) is spent: an address that failed is refused…
    assert429(await login(issuer, "dave", PASSWORD, { "x-forwarded-for": "10.3.0.2" }), "failed address");
    // …one that never failed is not.
    assertTokenResponse(await login(issuer, "dave", PASSWORD, { "x-forwarded-for": "10.3.0.99" }));
  });

  test("the limited (account, address) is limited on /oauth/token too (429 + Retry-After)", async () => {
    const res = await post(issuer, "/oauth/token", {
      form: { grant_type: "password", username: "alice", password: "wrong password!!" },
      headers: { "x-forwarded-for": "10.0.0.1" },
    });
    assert.equal(res.status, 429, res.text);
    assert.match(res.headers.get("retry-after") || "", /^\d+$/);
    assert.equal(typeof res.body.error, "string");
  });

  test("per address: failures on many usernames from one address → 429; other addresses unaffected", async () => {
    const from = { "x-forwarded-for": "192.0.2.7" };
    let limited;
    for (let i = 0; i < 8; i++) {
      const res = await login(issuer, `nobody-${i}`, "wrong password!!", from);
      if (res.status === 429) {
        limited = res;
        break;
      }
      assertApiError(res, 401, "invalid_credentials");
    }
    assert.ok(limited, "no 429 after 8 failures from one address with address_burst 5");
    assert429(limited, "address");
    assertTokenResponse(await login(issuer, "carol", PASSWORD, { "x-forwarded-for": "192.0.2.8" }));
  });

  test("unknown users are limited like real ones (no user enumeration through the limiter)", async () => {
    const from = { "x-forwarded-for": "10.2.0.1" };
    for (let i = 0; i < 3; i++) {
      await login(issuer, "ghost", "wrong password!!", from);
    }
    assert429(await login(issuer, "ghost", "wrong password!!", from), "ghost");
  });
});

describe("issuer contract: default rate limit", () => {
  let issuer;
  before(async () => {
    issuer = await startIssuer();
    await issuer.addUser("alice", PASSWORD);
  });
  after(async () => {
    await issuer?.stop();
  });

  test("repeated failures on one account with default settings end in 429 + Retry-After", async () => {
    let res;
    for (let i = 0; i < 30; i++) {
      res = await login(issuer, "alice", "wrong password!!");
      if (res.status === 429) break;
      assertApiError(res, 401, "invalid_credentials");
    }
    assertApiError(res, 429);
    assert.match(res.headers.get("retry-after") || "", /^\d+$/);
  });

  test("X-Forwarded-For is not trusted by default: spoofing it does not escape the per-address limit", async () => {
    let limited;
    for (let i = 0; i < 80; i++) {
      const res = await login(issuer, `spoof-${i}`, "wrong password!!", { "x-forwarded-for": `198.51.100.${i}` });
      if (res.status === 429) {
        limited = res;
        break;
      }
      assertApiError(res, 401, "invalid_credentials");
    }
    assert.ok(limited, "80 failures from one TCP peer with 80 different X-Forwarded-For values never hit the default address limit (50)");
    assert.match(limited.headers.get("retry-after") || "", /^\d+$/);
  });
});

describe("issuer contract: start-up refuses bad settings, naming them", () => {
  for (const [setting, toml] of [
    ["algorithm", 'algorithm = "HS256"'],
    ["access_token_ttl_secs", "access_token_ttl_secs = 0"],
    ["database_url", 'database_url = "mysql://x"'],
    ["acess_token_ttl_secs", "acess_token_ttl_secs = 60"],
    ["issuer", 'issuer = "ftp://x"'],
  ]) {
    test(`${setting}`, async () => {
      const dir = mkdtempSync(path.join(tmpdir(), "sallyport-badcfg-"));
      try {
        const config = path.join(dir, "issuer.toml");
        writeFileSync(config, `listen = "127.0.0.1:0"\ndatabase_url = "sqlite://${dir}/i.db"\n${toml}\n`);
        const err = await runCli(["issuer", "--config", config], { cwd: dir, timeout: 20_000 }).then(
          () => null,
          (e) => e,
        );
        assert.ok(err, "the issuer started (or exited 0) with a bad setting");
        assert.ok(err.message.includes(setting), `stderr should name ${setting}: ${err.message}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test("an environment override is checked too (SALLYPORT_ISSUER_ALGORITHM)", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "sallyport-badcfg-"));
    try {
      const err = await runCli(["issuer"], {
        cwd: dir,
        timeout: 20_000,
        env: { SALLYPORT_ISSUER_DATABASE_URL: `sqlite://${dir}/i.db`, SALLYPORT_ISSUER_LISTEN: "127.0.0.1:0", SALLYPORT_ISSUER_ALGORITHM: "RS256" },
      }).then(
        () => null,
        (e) => e,
      );
      assert.ok(err, "started with a bad algorithm");
      assert.match(err.message, /algorithm/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("no password on the command line: `user add --password` is refused", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "sallyport-badcfg-"));
    try {
      await assert.rejects(
        runCli(["user", "add", "x", "--password", "secret-secret", "--database-url", `sqlite://${dir}/i.db`], { cwd: dir, timeout: 20_000 }),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
