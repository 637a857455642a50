// A route handler calling the backend's API with the Authorization header the gateway
// forwarded. No session code: the header is always there and always fresh, because the
// gateway lets no request without a session reach the app.
import { createHash } from "node:crypto";
import { headers } from "next/headers";

const BACKEND_URL = process.env.BACKEND_URL ?? "http://127.0.0.1:8300";

export const dynamic = "force-dynamic";

export async function GET() {
  const authorization = (await headers()).get("authorization") ?? "";
  const res = await fetch(`${BACKEND_URL}/api/me`, { headers: { authorization }, cache: "no-store" });
  if (!res.ok) {
    return Response.json({ error: "backend_error", status: res.status }, { status: 502 });
  }
  const me = await res.json();
  return Response.json(
    { user: { name: me.name, username: me.username, roles: me.roles }, token: describe(authorization) },
    { headers: { "cache-control": "private, no-store" } },
  );
}

/** When the token expires, and a fingerprint to tell tokens apart (never the token). */
function describe(authorization) {
  const token = authorization.replace(/^Bearer\s+/i, "");
  let exp = null;
  try {
    exp = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8")).exp ?? null;
  } catch {
    // Not a JWT: the backend accepted it anyway; just no expiry to show.
  }
  const fingerprint = createHash("sha256").update(token).digest("hex").slice(0, 16);
  return { exp, fingerprint };
}
