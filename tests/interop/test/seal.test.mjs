// Seal-level interoperability: the real iron-session 9 (and @hapi/iron 7) against
// sallyport-iron, through the Rust peer. Both directions, password maps, expiry.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import Iron from "@hapi/iron";
import { sealData, unsealData } from "iron-session";

import { jsonRoundTrip, payload, rng, startPeer } from "./peer.mjs";

const A = "interop-password-A-0123456789abcdefghijkl";
const B = "interop-password-B-0123456789abcdefghijkl";
const C = "interop-password-C-🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂";
const COUNT = 240;

let peer;
before(() => {
  peer = startPeer();
});
after(() => peer.close());

/** Runs `fn` with Date.now pinned (the only clock iron-session reads). */
async function at(nowMs, fn) {
  const real = Date.now;
  Date.now = () => nowMs;
  try {
    return await fn();
  } finally {
    Date.now = real;
  }
}

describe("iron-session seals, Rust unseals", () => {
  test(`${COUNT} random payloads (unicode, numbers, ~3 KB)`, async () => {
    const next = rng(1);
    let big = 0;
    for (let i = 0; i < COUNT; i++) {
      const data = payload(next, i);
      const sealed = await sealData(data, { password: A });
      if (sealed.length > 4000) big++;
      const answer = await peer.call({ op: "unseal", password: A, sealed });
      assert.equal(answer.ok, true, `payload ${i}: ${answer.error}`);
      assert.deepEqual(answer.value, jsonRoundTrip(data), `payload ${i}`);
      assert.equal(answer.password_id, "1");
    }
    assert.ok(big >= COUNT / 10, `only ${big} large payloads`);
  });

  test("password maps: sealed with the highest id, opened by any map holding it", async () => {
    const next = rng(2);
    for (let i = 0; i < 40; i++) {
      const data = payload(next, i);
      const sealed = await sealData(data, { password: { 2: B, 1: A } });
      assert.match(sealed, /^Fe26\.2\*2\*/);
      for (const password of [{ 1: A, 2: B }, { 2: B }, { 2: B, 3: C }]) {
        const answer = await peer.call({ op: "unseal", password, sealed });
        assert.equal(answer.ok, true, answer.error);
        assert.deepEqual(answer.value, jsonRoundTrip(data));
        assert.equal(answer.password_id, "2");
      }
      const wrong = await peer.call({ op: "unseal", password: { 1: A }, sealed });
      assert.equal(wrong.ok, false);
      assert.equal(wrong.reason, "unknown-password");
      const swapped = await peer.call({ op: "unseal", password: { 2: A }, sealed });
      assert.equal(swapped.ok, false);
      assert.equal(swapped.reason, "invalid");
    }
  });

  test("@hapi/iron seals (no id, no ~2) open with the same password under iron-session's rules", async () => {
    const data = { hello: "wörld", n: [1, 2.5, -3] };
    const sealed = await Iron.seal(data, A, Iron.defaults);
    // iron-session opens an empty id only via a `default` password; Rust likewise
    // refuses it for a plain id-1 set.
    const answer = await peer.call({ op: "unseal", password: A, sealed });
    assert.equal(answer.ok, false);
    assert.equal(answer.reason, "unknown-password");
    assert.deepEqual(await unsealData(sealed, { password: A }), {});
  });

  test("expiry matches: valid until expiration + 59.999 s, expired at + 60 s", async () => {
    const t0 = 1767225600000;
    const sealed = await at(t0, () => sealData({ a: 1 }, { password: A, ttl: 3600 }));
    const exp = t0 + 3600 * 1000;
    const ok = await peer.call({ op: "unseal", password: A, sealed, now_ms: exp + 59999 });
    assert.equal(ok.ok, true);
    const expired = await peer.call({ op: "unseal", password: A, sealed, now_ms: exp + 60000 });
    assert.equal(expired.reason, "expired");
  });
});

describe("Rust seals, iron-session unseals", () => {
  test(`${COUNT} random payloads (unicode, numbers, ~3 KB)`, async () => {
    const next = rng(3);
    for (let i = 0; i < COUNT; i++) {
      const data = payload(next, i);
      const answer = await peer.call({ op: "seal", password: A, data });
      assert.equal(answer.ok, true, answer.error);
      assert.match(answer.sealed, /^Fe26\.2\*1\*[0-9a-f]{64}\*[\w-]{22}\*[\w-]+\*\d{13}\*[0-9a-f]{64}\*[\w-]{43}~2$/);
      let reason;
      const opened = await unsealData(answer.sealed, { password: A, onUnsealError: (r) => (reason = r) });
      assert.equal(reason, undefined, `payload ${i}`);
      assert.deepEqual(opened, jsonRoundTrip(data), `payload ${i}`);
      // The same seal length as iron-session's for the same JSON: byte-identical JSON.
      const theirs = await sealData(data, { password: A });
      assert.equal(answer.sealed.length, theirs.length, `payload ${i}`);
    }
  });

  test("@hapi/iron opens Rust seals too (after dropping the ~2 suffix)", async () => {
    const data = { user: "ada", roles: ["admin"], n: 1e21 };
    const answer = await peer.call({ op: "seal", password: A, data });
    const opened = await Iron.unseal(answer.sealed.replace(/~2$/, ""), A, Iron.defaults);
    assert.deepEqual(opened, data);
  });

  test("password maps: Rust seals with the highest id; iron-session rotation reads it", async () => {
    const next = rng(4);
    for (let i = 0; i < 40; i++) {
      const data = payload(next, i);
      const answer = await peer.call({ op: "seal", password: { 1: A, 3: C, 2: B }, data });
      assert.match(answer.sealed, /^Fe26\.2\*3\*/);
      assert.deepEqual(await unsealData(answer.sealed, { password: { 3: C } }), jsonRoundTrip(data));
      assert.deepEqual(await unsealData(answer.sealed, { password: { 1: A, 3: C } }), jsonRoundTrip(data));
      let reason;
      const refused = await unsealData(answer.sealed, { password: { 1: A, 2: B }, onUnsealError: (r) => (reason = r) });
      assert.deepEqual(refused, {});
      assert.equal(reason, "unknown-password");
    }
  });

  test("expiry matches in iron-session", async () => {
    const t0 = 1767225600000;
    const answer = await peer.call({ op: "seal", password: A, data: { a: 1 }, ttl: 60, now_ms: t0 });
    const exp = t0 + 60000;
    assert.deepEqual(await at(exp + 59999, () => unsealData(answer.sealed, { password: A })), { a: 1 });
    let reason;
    await at(exp + 60000, () => unsealData(answer.sealed, { password: A, onUnsealError: (r) => (reason = r) }));
    assert.equal(reason, "expired");
  });
});
