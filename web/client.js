// Sallyport browser helper, served by the gateway at `/auth/client.js`.
//
//   import { authFetch, fetcher, session, logout } from "/auth/client.js";
//
// A dependency-free ES module; no build step. It talks only to the gateway's
// `/auth/*` routes with the browser's own (HttpOnly) session cookie, so it never
// sees a refresh token — nor an access token: the gateway attaches that when it
// proxies the request upstream.
//
// Why it exists (the article's step 5, done carefully):
// - On a 401, `authFetch` asks the gateway to renew (`POST /auth/refresh`) and
//   retries the call once. However many calls are in flight, one renewal is made
//   (PP-15): a call whose 401 arrives after a renewal that started *after it was
//   sent* simply retries, and a retried call that gets 401 again is not retried
//   again.
// - Only a definite refusal (`session_expired`, `reauth_required`) ends the
//   session in the page; an outage of the backend or the gateway
//   (`backend_unavailable`: network errors, 429, 5xx) is reported to the caller
//   and never sends the user to the login page.
// - There is deliberately no cross-tab lock (`navigator.locks`): a frozen tab
//   can hold such a lock forever (PP-14). Tabs share one cookie, and the gateway
//   renews single-flight per session, so tabs that renew at once share one
//   backend call there.
// - `logout()` tells the other tabs through a BroadcastChannel; they go to the
//   login page (or call the app's handler).

/** Error codes shared with the gateway (`error` in its JSON bodies). */
export const SESSION_EXPIRED = "session_expired";
export const REAUTH_REQUIRED = "reauth_required";
export const BACKEND_UNAVAILABLE = "backend_unavailable";

const ENDED_CODES = new Set([SESSION_EXPIRED, REAUTH_REQUIRED]);

/**
 * An authentication failure, with one of the three codes. `status` is the
 * HTTP status that caused it (0 for a network error).
 */
export class AuthError extends Error {
  constructor(code, message, status = 0, cause = undefined) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "AuthError";
    this.code = code;
    this.status = status;
  }
}

/**
 * A non-2xx answer seen by `fetcher` (SWR / TanStack Query convention: the
 * error carries `status` and the parsed body as `info`).
 */
export class FetchError extends Error {
  constructor(response, info) {
    super(`request failed with status ${response.status}`);
    this.name = "FetchError";
    this.status = response.status;
    this.info = info;
    this.response = response;
  }
}

/**
 * Creates an independent client. Most pages use the default one through the
 * module-level exports; `createClient` is for a non-default prefix, an
 * app-supplied session-end handler, or tests.
 *
 * @param {object} [options]
 * @param {string} [options.prefix="/auth"] the gateway's route prefix
 * @param {string} [options.loginPath] login page; defaults to `${prefix}/login`
 * @param {(event: {code: string, reason: string, next: string}) => void} [options.onSessionEnd]
 *   called instead of navigating to the login page when the session has ended
 * @param {typeof fetch} [options.fetch] the fetch to use (tests)
 * @param {{pathname: string, search: string, assign(url: string): void}} [options.location]
 * @param {boolean} [options.crossTab=true] listen for logouts in other tabs
 */
export function createClient(options = {}) {
  const prefix = trimSlash(options.prefix ?? "/auth");
  const loginPath = options.loginPath ?? `${prefix}/login`;
  const channelName = `sallyport:${prefix}`;
  const doFetch = options.fetch ?? ((...args) => globalThis.fetch(...args));
  const loc = () => options.location ?? globalThis.location;
  let onSessionEnd = options.onSessionEnd ?? null;

  // Renewal bookkeeping. `generation` counts finished renewals; a request
  // remembers the generation it was sent in, so a 401 for a request that a
  // later renewal already covers is retried without renewing again.
  let generation = 0;
  let inflight = null; // Promise<outcome> of the renewal in progress
  let last = null; // { generation, ok, view?, error? } of the last renewal
  let ending = false; // the page is already leaving for the login page
  const listeners = new Set();

  function emit(event) {
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (err) {
        // A faulty listener must not break authentication; report it the way
        // the browser reports uncaught errors.
        if (typeof globalThis.reportError === "function") globalThis.reportError(err);
        else console.error(err);
      }
    }
  }

  /** The current location as a same-site relative path, for `next`. */
  function currentPath() {
    const l = loc();
    if (!l) return "/";
    return `${l.pathname ?? "/"}${l.search ?? ""}` || "/";
  }

  function loginUrl(next = currentPath()) {
    return `${loginPath}?next=${encodeURIComponent(next)}`;
  }

  /** The session is over in this tab: app handler, else the login page. */
  function endSession(code, reason) {
    const next = currentPath();
    emit({ type: "session_end", code, reason });
    if (onSessionEnd) {
      onSessionEnd({ code, reason, next });
      return;
    }
    if (ending) return;
    ending = true;
    loc()?.assign(loginUrl(next));
  }

  async function renewOnce() {
    let response;
    try {
      response = await doFetch(`${prefix}/refresh`, {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
    } catch (err) {
      throw new AuthError(BACKEND_UNAVAILABLE, "the gateway could not be reached", 0, err);
    }
    const body = await readJson(response);
    if (response.ok) return body;
    throw classify(response, body);
  }

  /**
   * Forces a renewal, shared with every other caller while it runs.
   * Resolves to the session view; rejects with an AuthError. Does not itself
   * navigate anywhere: `authFetch` decides that.
   */
  function refresh() {
    if (!inflight) {
      inflight = renewOnce().then(
        (view) => {
          generation += 1;
          last = { generation, ok: true, view };
          inflight = null;
          emit({ type: "refresh", session: view });
          return last;
        },
        (error) => {
          generation += 1;
          last = { generation, ok: false, error };
          inflight = null;
          emit({ type: error.code, error });
          return last;
        },
      );
    }
    return inflight.then((outcome) => {
      if (outcome.ok) return outcome.view;
      throw outcome.error;
    });
  }

  /** The renewal outcome that covers a 401 for a request sent in `sentIn`. */
  function renewalFor(sentIn) {
    if (inflight) return inflight;
    if (last && last.generation > sentIn) return Promise.resolve(last);
    refresh().catch(() => {}); // starts `inflight`; the outcome is read below
    return inflight;
  }

  /**
   * `fetch` for calls through the gateway: same-origin credentials, and on a
   * 401 one shared renewal and one retry. Resolves with the response (the
   * retried one after a renewal); rejects with an AuthError when renewal fails
   * — after sending the user to the login page for `session_expired` /
   * `reauth_required`, but never for `backend_unavailable`.
   */
  async function authFetch(input, init = undefined) {
    const opts = { ...(init ?? {}) };
    const isRequest = typeof Request !== "undefined" && input instanceof Request;
    if (!isRequest && opts.credentials === undefined) opts.credentials = "same-origin";
    // Keep a replayable copy: a Request's body can be read only once.
    const spare = isRequest && !input.bodyUsed ? input.clone() : null;
    const replayable = isRequest ? spare !== null : !isStream(opts.body);

    const sentIn = generation;
    const first = await doFetch(input, opts);
    if (first.status !== 401) return first;

    const outcome = await renewalFor(sentIn);
    if (!outcome.ok) {
      const error = outcome.error;
      if (ENDED_CODES.has(error.code)) endSession(error.code, "refresh_failed");
      throw error;
    }
    if (!replayable) return first;
    // Retried once only: a second 401 is the caller's answer (the API refuses
    // this user, not this token).
    return doFetch(spare ?? input, opts);
  }

  /**
   * A fetcher for SWR (`useSWR(url, fetcher)`, also `[url, init]` keys) and
   * TanStack Query (`queryFn: fetcher` with `queryKey: [url, init?]`): JSON of
   * a 2xx answer (null for 204), else a FetchError.
   */
  async function fetcher(key, maybeInit = undefined) {
    let url = key;
    let init = maybeInit;
    if (key && typeof key === "object" && Array.isArray(key.queryKey)) {
      // TanStack Query's QueryFunctionContext.
      [url, init] = key.queryKey;
      init = { ...(init ?? {}), signal: key.signal };
    } else if (Array.isArray(key)) {
      [url, init] = key;
    }
    const headers = new Headers(init?.headers);
    if (!headers.has("accept")) headers.set("accept", "application/json");
    const response = await authFetch(url, { ...(init ?? {}), headers });
    const body = await readJson(response);
    if (!response.ok) throw new FetchError(response, body);
    return body;
  }

  /**
   * The gateway's session view (`{isLoggedIn, user, accessTokenExpiresAt, …}`).
   * It never renews or re-seals the session. Rejects with an AuthError
   * (`backend_unavailable`) when the gateway cannot answer.
   */
  async function session() {
    let response;
    try {
      response = await doFetch(`${prefix}/session`, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
    } catch (err) {
      throw new AuthError(BACKEND_UNAVAILABLE, "the gateway could not be reached", 0, err);
    }
    const body = await readJson(response);
    if (response.ok) return body;
    if (response.status === 401) return { isLoggedIn: false, ...(isObject(body) ? body : {}) };
    throw classify(response, body);
  }

  /**
   * Logs out: the gateway revokes the session at the backend and clears the
   * cookie; the other tabs are told. Then goes to the login page, unless
   * `{redirect: false}` (or `{redirect: "/somewhere"}` for another page).
   */
  async function logout({ redirect = true } = {}) {
    let response;
    try {
      response = await doFetch(`${prefix}/logout`, {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
    } catch (err) {
      throw new AuthError(BACKEND_UNAVAILABLE, "the gateway could not be reached", 0, err);
    }
    // 401: there was no session left to end — logged out all the same.
    if (!response.ok && response.status !== 401) {
      throw classify(response, await readJson(response));
    }
    // Anything in flight belongs to the ended session.
    last = { generation: ++generation, ok: false, error: new AuthError(SESSION_EXPIRED, "logged out", 401) };
    emit({ type: "logout" });
    post({ type: "logout" });
    if (redirect) {
      ending = true;
      loc()?.assign(typeof redirect === "string" ? redirect : loginPath);
    }
  }

  /** Subscribes to auth events (`refresh`, `session_end`, `logout`, error codes). */
  function subscribe(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  // Cross-tab logout.
  const BC = options.BroadcastChannel ?? globalThis.BroadcastChannel;
  let channel = null;
  if ((options.crossTab ?? true) && typeof BC === "function") {
    channel = new BC(channelName);
    channel.onmessage = (message) => {
      if (message?.data?.type !== "logout") return;
      last = { generation: ++generation, ok: false, error: new AuthError(SESSION_EXPIRED, "logged out in another tab", 401) };
      emit({ type: "logout", remote: true });
      endSession(SESSION_EXPIRED, "logout_elsewhere");
    };
  }

  function post(message) {
    try {
      channel?.postMessage(message);
    } catch {
      // A closed channel: nothing else to tell.
    }
  }

  return {
    authFetch,
    fetcher,
    session,
    logout,
    refresh,
    subscribe,
    loginUrl,
    /** Replaces the session-end handler (null restores the login redirect). */
    onSessionEnd(handler) {
      onSessionEnd = handler ?? null;
    },
    /** Stops listening to other tabs. */
    close() {
      channel?.close();
      channel = null;
    },
    prefix,
  };
}

/**
 * Sorts a failed gateway answer into one of the three codes. Only a definite
 * refusal ends the session (PP-15): the gateway's `session_expired` /
 * `reauth_required`, a backend's `invalid_grant`, or a bare 401. Anything else
 * (a 403 from a proxy, a 404 from a misrouted prefix, 429, 5xx) keeps it.
 */
function classify(response, body) {
  const code = isObject(body) && typeof body.error === "string" ? body.error : null;
  const message = isObject(body) && typeof body.message === "string" ? body.message : `status ${response.status}`;
  if (code === REAUTH_REQUIRED || code === SESSION_EXPIRED) {
    return new AuthError(code, message, response.status);
  }
  if (code === "invalid_grant") return new AuthError(REAUTH_REQUIRED, message, response.status);
  if (response.status === 401 && code !== BACKEND_UNAVAILABLE) {
    return new AuthError(SESSION_EXPIRED, message, response.status);
  }
  return new AuthError(BACKEND_UNAVAILABLE, message, response.status);
}

async function readJson(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function isObject(value) {
  return value !== null && typeof value === "object";
}

function isStream(body) {
  return typeof ReadableStream !== "undefined" && body instanceof ReadableStream;
}

function trimSlash(path) {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

// The default client, used by the module-level exports. Created on first use
// so `configure()` can set its options before it starts listening to tabs.
let defaultClient = null;
let defaultOptions = {};

function client() {
  defaultClient ??= createClient(defaultOptions);
  return defaultClient;
}

/**
 * Sets the default client's options (prefix, onSessionEnd, …). Call it before
 * the first `authFetch`; calling it later replaces the default client.
 */
export function configure(options = {}) {
  defaultOptions = { ...options };
  defaultClient?.close();
  defaultClient = null;
  return client();
}

export const authFetch = (input, init) => client().authFetch(input, init);
export const fetcher = (key, init) => client().fetcher(key, init);
export const session = () => client().session();
export const logout = (options) => client().logout(options);
export const refresh = () => client().refresh();
export const subscribe = (listener) => client().subscribe(listener);

// Start listening for logouts from other tabs as soon as a page loads the
// module, not only after its first call.
if (typeof window !== "undefined") client();
