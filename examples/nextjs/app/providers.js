"use client";
// Replaces the article's SWRProvider: no token in React state, no refresh logic here.
// `fetcher` comes from the gateway (/auth/client.js): it sends the cookie, asks the
// gateway to renew once on a 401 and sends the user to the login page when the
// session is over.
import { SWRConfig } from "swr";

// Loaded from the gateway at run time, so the bundler leaves it alone.
const auth = () => import(/* webpackIgnore: true */ /* turbopackIgnore: true */ "/auth/client.js");

export const fetcher = async (key) => (await auth()).fetcher(key);

export function Providers({ children }) {
  return <SWRConfig value={{ fetcher }}>{children}</SWRConfig>;
}
