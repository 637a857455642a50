// Types for Sallyport's browser helper, `/auth/client.js`.

/** Why a request could not be authenticated (the gateway's error codes). */
export type AuthErrorCode = "session_expired" | "reauth_required" | "backend_unavailable";

export declare const SESSION_EXPIRED: "session_expired";
export declare const REAUTH_REQUIRED: "reauth_required";
export declare const BACKEND_UNAVAILABLE: "backend_unavailable";

/** An authentication failure. `status` is 0 for a network error. */
export declare class AuthError extends Error {
  constructor(code: AuthErrorCode, message: string, status?: number, cause?: unknown);
  readonly name: "AuthError";
  readonly code: AuthErrorCode;
  readonly status: number;
}

/** A non-2xx answer seen by `fetcher`; `info` is the parsed body. */
export declare class FetchError<Info = unknown> extends Error {
  constructor(response: Response, info: Info);
  readonly name: "FetchError";
  readonly status: number;
  readonly info: Info;
  readonly response: Response;
}

/** The user in the gateway's session view. */
export interface SessionUser {
  sub: string;
  name?: string | null;
  roles: string[];
  [claim: string]: unknown;
}

/** `GET /auth/session`. Never contains a refresh token. */
export interface SessionView {
  isLoggedIn: boolean;
  user?: SessionUser | null;
  /** Unix seconds. */
  accessTokenExpiresAt?: number | null;
  /** Present when the request could not be authenticated. */
  error?: AuthErrorCode;
  [field: string]: unknown;
}

export interface SessionEndEvent {
  code: "session_expired" | "reauth_required";
  /** `refresh_failed`: renewal refused; `logout_elsewhere`: another tab logged out. */
  reason: "refresh_failed" | "logout_elsewhere";
  /** The current location as a relative path, for a login page's `next`. */
  next: string;
}

export type AuthEvent =
  | { type: "refresh"; session: SessionView }
  | { type: "logout"; remote?: boolean }
  | { type: "session_end"; code: SessionEndEvent["code"]; reason: SessionEndEvent["reason"] }
  | { type: AuthErrorCode; error: AuthError };

export interface ClientOptions {
  /** The gateway's route prefix. Default `/auth`. */
  prefix?: string;
  /** The login page. Default `${prefix}/login`. */
  loginPath?: string;
  /** Called instead of going to the login page when the session has ended. */
  onSessionEnd?: ((event: SessionEndEvent) => void) | null;
  /** Listen for logouts in other tabs. Default true. */
  crossTab?: boolean;
  /** For tests: the fetch, location and BroadcastChannel to use. */
  fetch?: typeof fetch;
  location?: Pick<Location, "pathname" | "search" | "assign">;
  BroadcastChannel?: typeof BroadcastChannel;
}

export interface LogoutOptions {
  /** `true` (default): go to the login page; a string: go there; `false`: stay. */
  redirect?: boolean | string;
}

/** SWR keys (`url`, `[url, init]`) and TanStack Query's function context. */
export type FetcherKey =
  | string
  | URL
  | readonly [string | URL, RequestInit?]
  | { queryKey: readonly [string | URL, RequestInit?] | readonly unknown[]; signal?: AbortSignal };

export interface SallyportClient {
  /**
   * `fetch` with same-origin credentials; on 401 one renewal shared by all
   * calls in flight, then one retry. Rejects with an AuthError when renewal
   * fails (after sending the user to the login page, except for
   * `backend_unavailable`).
   */
  authFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** JSON of a 2xx answer (null for 204); otherwise throws a FetchError. */
  fetcher<T = unknown>(key: FetcherKey, init?: RequestInit): Promise<T>;
  session(): Promise<SessionView>;
  logout(options?: LogoutOptions): Promise<void>;
  /** Forces a renewal, shared with concurrent callers. */
  refresh(): Promise<SessionView>;
  subscribe(listener: (event: AuthEvent) => void): () => void;
  /** The login page URL with `next` (default: the current location). */
  loginUrl(next?: string): string;
  onSessionEnd(handler: ((event: SessionEndEvent) => void) | null): void;
  close(): void;
  readonly prefix: string;
}

export declare function createClient(options?: ClientOptions): SallyportClient;
/** Replaces the default client's options; returns the new default client. */
export declare function configure(options?: ClientOptions): SallyportClient;

export declare function authFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
export declare function fetcher<T = unknown>(key: FetcherKey, init?: RequestInit): Promise<T>;
export declare function session(): Promise<SessionView>;
export declare function logout(options?: LogoutOptions): Promise<void>;
export declare function refresh(): Promise<SessionView>;
export declare function subscribe(listener: (event: AuthEvent) => void): () => void;
