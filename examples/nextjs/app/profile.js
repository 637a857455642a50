"use client";
import useSWR from "swr";

// Polls the app's own API (a route handler that calls the backend with the token the
// gateway forwarded). Across access-token expiries nothing here changes: the gateway
// renews before the token runs out.
export function Profile({ refreshMs }) {
  const { data, error } = useSWR("/api/profile", { refreshInterval: refreshMs });
  if (error) return <p id="profile-error">Could not load the profile ({error.status ?? error.message})</p>;
  if (!data) return <p id="profile-loading">Loading…</p>;
  return (
    <dl id="profile" data-token={data.token.fingerprint}>
      <dt>Name (from the backend&apos;s /api/me)</dt>
      <dd id="profile-name">{data.user.name}</dd>
      <dt>Roles</dt>
      <dd id="profile-roles">{data.user.roles.join(", ")}</dd>
      <dt>Access token expires</dt>
      <dd id="profile-exp" data-unix={data.token.exp}>
        {new Date(data.token.exp * 1000).toISOString()}
      </dd>
    </dl>
  );
}
