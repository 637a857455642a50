// A fake gateway on loopback for the client.js logic tests: session cookie,
// `/auth/refresh`, `/auth/session`, `/auth/logout` and a few API routes whose
// answers the tests steer. Counts every call so the tests can assert on them.

import http from "node:http";

export async function startFakeGateway() {
  const state = {
    token: 1, // the current valid session version; the cookie carries one
    refreshMode: "ok", // ok | session_expired | reauth_required | down | bad_gateway | rate_limited
    refreshCalls: 0,
    logoutCalls: 0,
    calls: [], // { method, path, cookie, credentialsHint, body }
    gates: new Map(), // path -> { release(), promise } to hold an answer back
    tokenAtArrival: new Map(), // path -> token version seen when the request arrived
  };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://fake");
    const body = await readBody(req);
    const cookie = parseCookie(req.headers.cookie ?? "");
    const version = Number(cookie.s ?? 0);
    state.calls.push({ method: req.method, path: url.pathname, version, body, headers: req.headers });
    const json = (status, value, headers = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(value === undefined ? "" : JSON.stringify(value));
    };

    switch (url.pathname) {
      case "/auth/refresh": {
        state.refreshCalls += 1;
        const gate = state.gates.get("/auth/refresh");
        if (gate) await gate.promise;
        switch (state.refreshMode) {
          case "ok":
            state.token += 1;
            return json(200, view(state), { "set-cookie": `s=${state.token}; Path=/; HttpOnly` });
          case "session_expired":
          case "reauth_required":
            return json(401, { error: state.refreshMode, message: "log in again" });
          case "down":
            return json(503, { error: "backend_unavailable", message: "try again" }, { "retry-after": "1" });
          case "bad_gateway":
            return json(502, undefined);
          case "rate_limited":
            return json(429, { error: "rate_limited", message: "slow down" });
          case "forbidden":
            return json(403, { error: "cross_site", message: "cross-site request refused" });
          case "invalid_grant":
            return json(400, { error: "invalid_grant", error_description: "revoked" });
          case "bare_401":
            return json(401, undefined);
        }
        return json(500, undefined);
      }
      case "/auth/session":
        if (state.refreshMode === "down") return json(503, { error: "backend_unavailable", message: "x" });
        if (version === state.token) return json(200, view(state));
        return json(200, { isLoggedIn: false });
      case "/auth/logout":
        state.logoutCalls += 1;
        state.token += 1000; // every old cookie is now refused
        res.writeHead(204, { "set-cookie": "s=; Path=/; Max-Age=0" });
        return res.end();
      case "/api/always-401":
        return json(401, { error: "session_expired", message: "no" });
      case "/api/teapot":
        return json(418, { error: "teapot", message: "short and stout" });
      case "/api/empty":
        res.writeHead(204);
        return res.end();
      default: {
        if (!url.pathname.startsWith("/api/")) return json(404, { error: "not_found", message: "" });
        // The version is judged when the request arrives; a gate may hold the
        // answer back to make it arrive "late" at the client.
        const valid = version === state.token;
        const gate = state.gates.get(url.pathname);
        if (gate) await gate.promise;
        if (!valid) {
          return json(401, { error: "session_expired", message: "token expired" }, {
            "www-authenticate": 'Bearer error="invalid_token"',
          });
        }
        return json(200, { ok: true, path: url.pathname, method: req.method, body });
      }
    }
  });

  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}`;

  // A browser-like fetch for Node: relative URLs against the fake origin and a
  // one-cookie jar (the "HttpOnly" cookie is kept here, out of the client's reach).
  const jar = { s: String(state.token) };
  const seen = [];
  async function fetchLikeBrowser(input, init = {}) {
    let request = input instanceof Request ? input : new Request(new URL(String(input), base), init);
    if (input instanceof Request && init && Object.keys(init).length) request = new Request(input, init);
    seen.push({ url: request.url, credentials: init?.credentials ?? request.credentials });
    const headers = new Headers(request.headers);
    if (jar.s !== undefined) headers.set("cookie", `s=${jar.s}`);
    const hasBody = !["GET", "HEAD"].includes(request.method);
    const response = await fetch(request.url, {
      method: request.method,
      headers,
      body: hasBody ? await request.arrayBuffer() : undefined,
      signal: request.signal,
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const [name, value] = pair.split("=");
      if (name === "s") {
        if (/max-age=0/i.test(line)) delete jar.s;
        else jar.s = value;
      }
    }
    return response;
  }

  function gate(path) {
    let release;
    const promise = new Promise((resolve) => (release = resolve));
    state.gates.set(path, { promise });
    return () => {
      state.gates.delete(path);
      release();
    };
  }

  /** Makes the browser's cookie stale, as after the access token expired. */
  function expire() {
    state.token += 1;
  }

  return {
    base,
    state,
    jar,
    seen,
    fetch: fetchLikeBrowser,
    gate,
    expire,
    apiCalls: (path) => state.calls.filter((c) => c.path === path).length,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A stand-in for `window.location` that records navigations. */
export function fakeLocation(pathname = "/page", search = "") {
  return {
    pathname,
    search,
    assigned: [],
    assign(url) {
      this.assigned.push(url);
    },
  };
}

function view(state) {
  return {
    isLoggedIn: true,
    user: { sub: "u1", name: "Demo", roles: ["user"] },
    accessTokenExpiresAt: 1_900_000_000 + state.token,
  };
}

function parseCookie(header) {
  const out = {};
  for (const part of header.split(";")) {
    const [k, v] = part.trim().split("=");
    if (k) out[k] = v;
  }
  return out;
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}
