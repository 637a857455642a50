-- OpenID provider: authorization codes and the client of each code-flow session.
-- A code is stored as the hex SHA-256 of its value. The row outlives its use (used_at)
-- so that a second redemption is recognised as reuse and revokes the session issued
-- from the first one (RFC 6749 §4.1.2); rows are deleted a while after they expire.
CREATE TABLE authorization_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    scope          TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id     TEXT NOT NULL,
    auth_time      BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);
CREATE INDEX authorization_codes_expires_at ON authorization_codes(expires_at);

-- The client a code-flow session belongs to (password-grant sessions have no row):
-- whom its ID tokens are for, and whom to tell when it ends (back-channel logout).
CREATE TABLE oidc_sessions (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    auth_time  BIGINT NOT NULL,
    scope      TEXT NOT NULL
);
