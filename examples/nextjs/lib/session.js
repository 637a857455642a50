// The article's lib/session.ts, kept only so that server code can READ the session.
// The gateway writes and renews it; this app never saves tokens into it.
import { getIronSession } from "iron-session";
import { cookies } from "next/headers";

/**
 * What the gateway seals (iron-session `Fe26.2`, same secret):
 *   { isLoggedIn, accessToken, refreshToken, accessTokenExpiresAt, lastRenewedAt, sid,
 *     user: { sub, name, roles } }
 * A cookie written by the article's own code has only the first three until the gateway
 * renews it; `user` appears then.
 */
export const sessionOptions = {
  // The gateway's SESSION_SECRET (or an object { 1: "old", 2: "new" } while rotating).
  password: process.env.SESSION_SECRET,
  // The gateway's session.cookie_name: "__Host-sallyport" by default, "sallyport" on
  // plain-http localhost, "my-app-session" when taking over the article's cookie.
  cookieName: process.env.SESSION_COOKIE_NAME ?? "__Host-sallyport",
  ttl: 30 * 24 * 3600, // = session.ttl_secs
  cookieOptions: {
    secure: process.env.SESSION_COOKIE_SECURE !== "false",
    sameSite: "lax",
    path: "/",
    httpOnly: true,
  },
};

/** The session of the current request (read-only in server components). */
export async function getSession() {
  return getIronSession(await cookies(), sessionOptions);
}
