// The real npm `jose` against the real `sallyport issuer` binary: jose verifies the
// issuer's access tokens through discovery + JWKS (ES256 and EdDSA, across login,
// refresh and key rotation), and tokens forged with jose (alg none, HS256 keyed with
// the public key, a foreign key under the issuer's kid, expired, wrong audience or
// issuer) are refused by the issuer's `GET /api/me` with 401 and
// `WWW-Authenticate: Bearer error="invalid_token"`.
import assert from "node:assert/strict";
import { createPublicKey, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import * as jose from "jose";
import { login, me, refresh, request, startIssuer } from "./lib/issuer.mjs";

const PASSWORD = "correct horse battery staple";

async function discover(issuer) {
  const res = await request(`${issuer.url}/.well-known/openid-configuration`);
  assert.equal(res.status, 200);
  return res.body;
}

function verifyOptions(issuer, discovery, algorithm) {
  return {
    issuer: discovery.issuer,
    audience: issuer.audience,
    algorithms: [algorithm],
    typ: "at+jwt",
    requiredClaims: ["iss", "sub", "aud", "exp", "iat", "jti", "sid"],
  };
}

function assertClaims(payload, { issuer, discovery, user, ttl = 900 }) {
  assert.equal(payload.iss, discovery.issuer);
  assert.equal(payload.iss, issuer.url);
  assert.equal(payload.sub, user.id);
  assert.equal(payload.aud, issuer.audience);
  assert.equal(typeof payload.exp, "number");
  assert.equal(typeof payload.iat, "number");
  assert.equal(payload.exp - payload.iat, ttl);
  const now = Math.floor(Date.now() / 1000);
  assert.ok(Math.abs(payload.iat - now) < 300, `iat ${payload.iat} far from now ${now}`);
  assert.equal(typeof payload.jti, "string");
  assert.ok(payload.jti.length >= 16);
  assert.equal(typeof payload.sid, "string");
  assert.ok(payload.sid.length > 0);
  assert.equal(payload.name, user.name);
  assert.deepEqual([...payload.roles].sort(), [...user.roles].sort());
}

/** 401 + `WWW-Authenticate: Bearer error="invalid_token"` + JSON error from /api/me. */
async function assertRejected(issuer, token, what) {
  const res = await me(issuer, token);
  assert.equal(res.status, 401, `${what}: expected 401, got ${res.status} ${res.text}`);
  const challenge = res.headers.get("www-authenticate") || "";
  assert.match(challenge, /^Bearer\b/, `${what}: WWW-Authenticate ${challenge}`);
  assert.match(challenge, /error="invalid_token"/, `${what}: WWW-Authenticate ${challenge}`);
  assert.equal(res.body.error, "invalid_token", `${what}: body ${res.text}`);
}

function b64url(value) {
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
}

describe("jose verifies ES256 access tokens of sallyport issuer", () => {
  let issuer;
  let discovery;
  let user;
  let first; // login response body
  let firstKid;

  before(async () => {
    issuer = await startIssuer();
    user = await issuer.addUser("alice", PASSWORD, { name: "Alice Liddell", roles: ["admin", "editor"] });
    user.name = "Alice Liddell";
    user.roles = ["admin", "editor"];
    discovery = await discover(issuer);
  });
  after(async () => {
    await issuer?.stop();
  });

  test("discovery points at the JWKS of this issuer", () => {
    assert.equal(discovery.issuer, issuer.url);
    assert.equal(discovery.jwks_uri, `${issuer.url}/.well-known/jwks.json`);
  });

  test("login token verifies with createRemoteJWKSet + jwtVerify", async () => {
    const res = await login(issuer, "alice", PASSWORD);
    assert.equal(res.status, 200, res.text);
    first = res.body;
    const jwks = jose.createRemoteJWKSet(new URL(discovery.jwks_uri));
    const { payload, protectedHeader } = await jose.jwtVerify(
      first.accessToken,
      jwks,
      verifyOptions(issuer, discovery, "ES256"),
    );
    assert.equal(protectedHeader.alg, "ES256");
    assert.equal(protectedHeader.typ, "at+jwt");
    assert.equal(typeof protectedHeader.kid, "string");
    firstKid = protectedHeader.kid;
    const published = await request(discovery.jwks_uri);
    const key = published.body.keys.find((k) => k.kid === firstKid);
    assert.ok(key, "the header kid is published in the JWKS");
    assert.equal(key.kty, "EC");
    assert.equal(key.crv, "P-256");
    assert.equal(key.d, undefined, "no private key material in the JWKS");
    assertClaims(payload, { issuer, discovery, user });
    assert.equal(first.expiresIn, 900);

    const profile = await me(issuer, first.accessToken);
    assert.equal(profile.status, 200, profile.text);
    assert.equal(profile.body.username, "alice");
  });

  test("jose with the wrong audience, issuer, algorithm or typ rejects it (the options bite)", async () => {
    const jwks = jose.createRemoteJWKSet(new URL(discovery.jwks_uri));
    const base = verifyOptions(issuer, discovery, "ES256");
    for (const [name, opts] of [
      ["audience", { ...base, audience: "someone-else" }],
      ["issuer", { ...base, issuer: "http://evil.example" }],
      ["algorithm", { ...base, algorithms: ["EdDSA"] }],
      ["typ", { ...base, typ: "JWT" }],
    ]) {
      await assert.rejects(jose.jwtVerify(first.accessToken, jwks, opts), `wrong ${name} accepted`);
    }
  });

  test("refreshed token verifies, continues the session with a new jti", async () => {
    const res = await refresh(issuer, first.refreshToken);
    assert.equal(res.status, 200, res.text);
    assert.notEqual(res.body.refreshToken, first.refreshToken);
    const jwks = jose.createRemoteJWKSet(new URL(discovery.jwks_uri));
    const opts = verifyOptions(issuer, discovery, "ES256");
    const { payload } = await jose.jwtVerify(res.body.accessToken, jwks, opts);
    const { payload: old } = await jose.jwtVerify(first.accessToken, jwks, opts);
    assertClaims(payload, { issuer, discovery, user });
    assert.equal(payload.sid, old.sid);
    assert.notEqual(payload.jti, old.jti);
  });

  test("OAuth token endpoint tokens verify too", async () => {
    const res = await request(`${issuer.url}/oauth/token`, {
      method: "POST",
      form: { grant_type: "password", username: "alice", password: PASSWORD },
    });
    assert.equal(res.status, 200, res.text);
    const jwks = jose.createRemoteJWKSet(new URL(discovery.jwks_uri));
    const { payload } = await jose.jwtVerify(
      res.body.access_token,
      jwks,
      verifyOptions(issuer, discovery, "ES256"),
    );
    assertClaims(payload, { issuer, discovery, user });
  });

  test("after `sallyport keys rotate` old and new tokens verify; the new one has the new kid", async () => {
    const kidsBefore = (await request(discovery.jwks_uri)).body.keys.map((k) => k.kid);
    // A resource server's long-lived JWKS client, warmed up before the rotation: jose
    // must find the new kid by refetching (cooldown 0 so the test need not wait 30 s).
    const warm = jose.createRemoteJWKSet(new URL(discovery.jwks_uri), { cooldownDuration: 0 });
    await jose.jwtVerify(first.accessToken, warm, verifyOptions(issuer, discovery, "ES256"));
    await issuer.rotateKeys();
    const res = await login(issuer, "alice", PASSWORD);
    assert.equal(res.status, 200, res.text);
    const newHeader = jose.decodeProtectedHeader(res.body.accessToken);
    assert.notEqual(newHeader.kid, firstKid, "new tokens are signed with the new key");
    assert.ok(!kidsBefore.includes(newHeader.kid), "the new kid was not published before rotation");

    const kidsAfter = (await request(discovery.jwks_uri)).body.keys.map((k) => k.kid);
    assert.ok(kidsAfter.includes(firstKid), "the old key stays published");
    assert.ok(kidsAfter.includes(newHeader.kid), "the new key is published");

    // A fresh JWKS client (no cache) and the one jose would refetch on an unknown kid.
    const jwks = jose.createRemoteJWKSet(new URL(discovery.jwks_uri));
    const opts = verifyOptions(issuer, discovery, "ES256");
    const newer = await jose.jwtVerify(res.body.accessToken, jwks, opts);
    const older = await jose.jwtVerify(first.accessToken, jwks, opts);
    assert.equal(newer.protectedHeader.kid, newHeader.kid);
    assert.equal(older.protectedHeader.kid, firstKid);
    assertClaims(newer.payload, { issuer, discovery, user });
    const viaWarm = await jose.jwtVerify(res.body.accessToken, warm, opts);
    assert.equal(viaWarm.protectedHeader.kid, newHeader.kid);

    // Refresh after rotation also moves to the new key.
    const refreshed = await refresh(issuer, res.body.refreshToken);
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.equal(jose.decodeProtectedHeader(refreshed.body.accessToken).kid, newHeader.kid);

    for (const token of [first.accessToken, res.body.accessToken]) {
      const profile = await me(issuer, token);
      assert.equal(profile.status, 200, profile.text);
    }
  });
});

describe("jose verifies EdDSA access tokens", () => {
  let issuer;
  before(async () => {
    issuer = await startIssuer({ algorithm: "EdDSA", audience: "api.example" });
  });
  after(async () => {
    await issuer?.stop();
  });

  test("Ed25519 JWKS, jwtVerify with algorithms ['EdDSA']", async () => {
    const user = await issuer.addUser("bob", PASSWORD, { name: "Bob", roles: ["viewer"] });
    user.name = "Bob";
    user.roles = ["viewer"];
    const discovery = await discover(issuer);
    const res = await login(issuer, "bob", PASSWORD);
    assert.equal(res.status, 200, res.text);
    const jwks = jose.createRemoteJWKSet(new URL(discovery.jwks_uri));
    const { payload, protectedHeader } = await jose.jwtVerify(
      res.body.accessToken,
      jwks,
      verifyOptions(issuer, discovery, "EdDSA"),
    );
    assert.equal(protectedHeader.alg, "EdDSA");
    const key = (await request(discovery.jwks_uri)).body.keys.find((k) => k.kid === protectedHeader.kid);
    assert.equal(key.kty, "OKP");
    assert.equal(key.crv, "Ed25519");
    assert.equal(payload.aud, "api.example");
    assertClaims(payload, { issuer, discovery, user });
    await assert.rejects(
      jose.jwtVerify(res.body.accessToken, jwks, verifyOptions(issuer, discovery, "ES256")),
    );
    assert.equal((await me(issuer, res.body.accessToken)).status, 200);
  });
});

describe("the issuer refuses tokens forged with jose", () => {
  let issuer;
  let user;
  let genuine; // a real access token
  let claims; // its payload
  let kid;
  let signingKey; // the issuer's own private key, read from its database

  before(async () => {
    issuer = await startIssuer();
    user = await issuer.addUser("mallory-target", PASSWORD, { name: "Target", roles: ["admin"] });
    const res = await login(issuer, "mallory-target", PASSWORD);
    assert.equal(res.status, 200, res.text);
    genuine = res.body.accessToken;
    claims = jose.decodeJwt(genuine);
    kid = jose.decodeProtectedHeader(genuine).kid;
    const keys = issuer.signingKeys();
    signingKey = keys.find((k) => k.kid === kid)?.privateKey;
    assert.ok(signingKey, "the kid of the genuine token is in the database");
  });
  after(async () => {
    await issuer?.stop();
  });

  /** Signs `payload` with the issuer's real key: only the claims can make it fail. */
  function signReal(payload, header = {}) {
    return new jose.SignJWT(payload)
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid, ...header })
      .sign(signingKey);
  }

  function fresh(overrides = {}) {
    const now = Math.floor(Date.now() / 1000);
    return { ...claims, iat: now, exp: now + 600, jti: randomUUID(), ...overrides };
  }

  test("controls: the genuine token and one re-signed with the real key are accepted", async () => {
    assert.equal(user.username, "mallory-target");
    assert.equal((await me(issuer, genuine)).status, 200);
    const resigned = await signReal(fresh());
    const res = await me(issuer, resigned);
    assert.equal(res.status, 200, `re-signed control refused: ${res.text}`);
  });

  test("no token, empty token, not a JWT, wrong scheme", async () => {
    await assertRejected(issuer, undefined, "no Authorization");
    await assertRejected(issuer, "", "empty bearer");
    await assertRejected(issuer, "not-a-jwt", "garbage");
    const res = await request(`${issuer.url}/api/me`, { headers: { authorization: `Basic ${genuine}` } });
    assert.equal(res.status, 401);
    assert.match(res.headers.get("www-authenticate") || "", /^Bearer/);
  });

  test("alg: none (jose UnsecuredJWT, and with the issuer's kid and typ)", async () => {
    const unsecured = new jose.UnsecuredJWT(fresh()).encode();
    assert.equal(jose.decodeProtectedHeader(unsecured).alg, "none");
    await assertRejected(issuer, unsecured, "UnsecuredJWT");
    const withKid = `${b64url({ alg: "none", typ: "at+jwt", kid })}.${b64url(fresh())}.`;
    await assertRejected(issuer, withKid, "alg none with kid");
    const noneWithSig = `${b64url({ alg: "none", typ: "at+jwt", kid })}.${b64url(fresh())}.${genuine.split(".")[2]}`;
    await assertRejected(issuer, noneWithSig, "alg none keeping a signature");
    for (const alg of ["None", "NONE", "nOnE"]) {
      await assertRejected(issuer, `${b64url({ alg, typ: "at+jwt", kid })}.${b64url(fresh())}.`, `alg ${alg}`);
    }
  });

  test("algorithm confusion: HS256 keyed with the issuer's public key bytes", async () => {
    const jwk = (await request(`${issuer.url}/.well-known/jwks.json`)).body.keys.find((k) => k.kid === kid);
    const publicKey = createPublicKey({ key: jwk, format: "jwk" });
    const secrets = {
      "SPKI PEM": Buffer.from(publicKey.export({ type: "spki", format: "pem" })),
      "SPKI DER": publicKey.export({ type: "spki", format: "der" }),
      "JWK JSON": Buffer.from(JSON.stringify(jwk)),
      "raw point": Buffer.concat([
        Buffer.from([4]),
        Buffer.from(jwk.x, "base64url"),
        Buffer.from(jwk.y, "base64url"),
      ]),
      "x coordinate": Buffer.from(jwk.x, "base64url"),
    };
    for (const [name, secret] of Object.entries(secrets)) {
      for (const alg of ["HS256", "HS384", "HS512"]) {
        const token = await new jose.SignJWT(fresh())
          .setProtectedHeader({ alg, typ: "at+jwt", kid })
          .sign(new Uint8Array(secret));
        await assertRejected(issuer, token, `${alg} with ${name}`);
      }
    }
  });

  test("ES256 signed by a foreign key under the issuer's kid, or under its own kid", async () => {
    const { privateKey, publicKey } = await jose.generateKeyPair("ES256");
    const borrowed = await new jose.SignJWT(fresh())
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid })
      .sign(privateKey);
    await assertRejected(issuer, borrowed, "foreign key, issuer kid");
    const ownKid = await new jose.SignJWT(fresh())
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: "attacker-key" })
      .sign(privateKey);
    await assertRejected(issuer, ownKid, "foreign key, unknown kid");
    const noKid = await new jose.SignJWT(fresh())
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt" })
      .sign(privateKey);
    await assertRejected(issuer, noKid, "foreign key, no kid");
    // An embedded JWK must not be trusted (RFC 7515 `jwk` header).
    const embedded = await new jose.SignJWT(fresh())
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid, jwk: await jose.exportJWK(publicKey) })
      .sign(privateKey);
    await assertRejected(issuer, embedded, "foreign key embedded as jwk header");
  });

  test("a tampered genuine token (claims or signature changed)", async () => {
    const [h, , s] = genuine.split(".");
    const elevated = `${h}.${b64url({ ...claims, roles: ["admin", "superuser"], sub: randomUUID() })}.${s}`;
    await assertRejected(issuer, elevated, "payload swapped");
    const sig = Buffer.from(s, "base64url");
    sig[5] ^= 1;
    await assertRejected(issuer, `${h}.${genuine.split(".")[1]}.${sig.toString("base64url")}`, "signature bit flipped");
  });

  test("signed with the real key but expired", async () => {
    const now = Math.floor(Date.now() / 1000);
    await assertRejected(issuer, await signReal(fresh({ iat: now - 7200, exp: now - 3600 })), "expired 1 h ago");
    await assertRejected(issuer, await signReal(fresh({ iat: now - 1000, exp: now - 120 })), "expired 2 min ago");
  });

  test("signed with the real key but for another audience or issuer, or missing claims", async () => {
    await assertRejected(issuer, await signReal(fresh({ aud: "someone-else" })), "wrong aud");
    await assertRejected(issuer, await signReal(fresh({ aud: ["someone-else"] })), "wrong aud array");
    await assertRejected(issuer, await signReal(fresh({ iss: "http://evil.example" })), "wrong iss");
    for (const claim of ["exp", "aud", "iss"]) {
      const payload = fresh();
      delete payload[claim];
      await assertRejected(issuer, await signReal(payload), `missing ${claim}`);
    }
  });

  test("jose itself refuses the forgeries against the published JWKS", async () => {
    const discovery = await discover(issuer);
    const jwks = jose.createRemoteJWKSet(new URL(discovery.jwks_uri));
    const opts = verifyOptions(issuer, discovery, "ES256");
    const { privateKey } = await jose.generateKeyPair("ES256");
    const foreign = await new jose.SignJWT(fresh())
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid })
      .sign(privateKey);
    await assert.rejects(jose.jwtVerify(foreign, jwks, opts), jose.errors.JWSSignatureVerificationFailed);
    const now = Math.floor(Date.now() / 1000);
    const expired = await signReal(fresh({ iat: now - 7200, exp: now - 3600 }));
    await assert.rejects(jose.jwtVerify(expired, jwks, opts), jose.errors.JWTExpired);
    await jose.jwtVerify(await signReal(fresh()), jwks, opts);
  });
});
