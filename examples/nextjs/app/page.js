// A server component reading the session with iron-session, as the article's pages do.
// It only reads: the gateway has already checked (and if needed renewed) the session
// before this request reached Next.js.
import { getSession } from "@/lib/session";
import { Profile } from "./profile";

// How often the profile is reloaded in the browser (the tests make it short).
const PROFILE_REFRESH_MS = Number(process.env.PROFILE_REFRESH_MS ?? 30000);

export default async function Home() {
  const session = await getSession();
  const user = session.user;
  return (
    <main>
      <h1>Next.js behind Sallyport</h1>
      <p id="signed-in">
        {session.isLoggedIn ? "Signed in" : "Not signed in"}
        {user ? (
          <>
            {" as "}
            <strong id="user-name">{user.name ?? user.sub}</strong>
          </>
        ) : null}
      </p>
      <Profile refreshMs={PROFILE_REFRESH_MS} />
      {/* Logging out needs no JavaScript: the gateway revokes the session at the backend. */}
      <form method="post" action="/auth/logout">
        <button id="logout" type="submit">
          Log out
        </button>
      </form>
    </main>
  );
}
