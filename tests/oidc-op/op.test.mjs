// The issuer as an OpenID provider, driven by openid-client 6 (panva; built on the
// certified oauth4webapi): the library's own discovery, PKCE, state/nonce/iss and
// ID-token checks decide what passes. Back-channel logout tokens are verified with
// jose against the issuer's published JWKS.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as client from 'openid-client';
import * as jose from 'jose';

import { APP_SECRET, Issuer, backchannelReceiver, signIn } from './lib/harness.mjs';

const insecure = { execute: [client.allowInsecureRequests] }; // loopback http only

let issuer;
let receiver;
let app; // confidential client (client_secret_basic), back channel registered
let spa; // public client (PKCE, no secret)
let user;

before(async () => {
  receiver = await backchannelReceiver();
  issuer = await new Issuer({ backchannel: receiver.url, reuseInterval: 1 }).start();
  user = issuer.addUser('alice');
  const server = new URL(issuer.base);
  app = await client.discovery(server, 'app', APP_SECRET, client.ClientSecretBasic(APP_SECRET), insecure);
  spa = await client.discovery(server, 'spa', undefined, client.None(), insecure);
});

after(async () => {
  issuer?.stop();
  await receiver?.close();
});

/** The whole front channel: authorization URL, login form, callback, code grant. */
async function login(config, redirectUri, { scope = 'openid profile offline_access' } = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  const posted = await signIn(url, user);
  assert.equal(posted.status, 303, await posted.text());
  const callback = new URL(posted.headers.get('location'));
  assert.equal(`${callback.origin}${callback.pathname}`, redirectUri);
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  return { tokens, callback };
}

/** Verifies a logout token as a relying party must (Back-Channel Logout 1.0 §2.6). */
async function verifyLogoutToken(token) {
  const jwks = jose.createRemoteJWKSet(new URL(app.serverMetadata().jwks_uri));
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
    issuer: issuer.base,
    audience: 'app',
    typ: 'logout+jwt',
    maxTokenAge: '5m',
  });
  assert.deepEqual(payload.events, { 'http://schemas.openid.net/event/backchannel-logout': {} });
  assert.equal(payload.nonce, undefined);
  assert.ok(payload.jti);
  assert.ok(protectedHeader.kid);
  return payload;
}

describe('discovery', () => {
  test('advertises the code flow, PKCE S256, RP-initiated and back-channel logout', () => {
    const m = app.serverMetadata();
    assert.equal(m.issuer, issuer.base);
    assert.equal(m.authorization_endpoint, `${issuer.base}/oauth/authorize`);
    assert.equal(m.end_session_endpoint, `${issuer.base}/oauth/logout`);
    assert.deepEqual(m.response_types_supported, ['code']);
    assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
    assert.ok(m.id_token_signing_alg_values_supported.includes('ES256'));
    assert.equal(m.backchannel_logout_supported, true);
    assert.equal(m.backchannel_logout_session_supported, true);
    assert.equal(m.authorization_response_iss_parameter_supported, true);
    assert.ok(m.scopes_supported.includes('openid'));
    assert.ok(m.grant_types_supported.includes('authorization_code'));
  });
});

describe('code flow', () => {
  test('confidential client: login, ID token, userinfo, refresh, revocation', async () => {
    const { tokens, callback } = await login(app, issuer.redirectUri);
    assert.equal(callback.searchParams.get('iss'), issuer.base, 'RFC 9207 iss in the response');
    const claims = tokens.claims();
    assert.equal(claims.iss, issuer.base);
    assert.equal(claims.aud, 'app');
    assert.equal(claims.azp, 'app');
    assert.equal(claims.preferred_username, user);
    assert.ok(claims.sid);
    assert.ok(claims.auth_time <= claims.iat);
    const [header] = tokens.id_token.split('.');
    assert.equal(JSON.parse(Buffer.from(header, 'base64url')).typ, 'JWT');

    const info = await client.fetchUserInfo(app, tokens.access_token, claims.sub);
    assert.equal(info.sub, claims.sub);

    const refreshed = await client.refreshTokenGrant(app, tokens.refresh_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    const again = refreshed.claims();
    assert.equal(again.sub, claims.sub);
    assert.equal(again.sid, claims.sid);

    await client.tokenRevocation(app, refreshed.refresh_token);
    await assert.rejects(
      client.refreshTokenGrant(app, refreshed.refresh_token),
      (e) => e.error === 'invalid_grant',
    );
  });

  test('public client with PKCE and no secret', async () => {
    const { tokens } = await login(spa, issuer.spaRedirectUri, { scope: 'openid' });
    assert.equal(tokens.claims().aud, 'spa');
    const refreshed = await client.refreshTokenGrant(spa, tokens.refresh_token);
    assert.equal(refreshed.claims().sid, tokens.claims().sid);
    // Its refresh token is bound to it: the other client cannot use it.
    await assert.rejects(
      client.refreshTokenGrant(app, refreshed.refresh_token),
      (e) => e.error === 'invalid_grant',
    );
  });

  test('the library refuses a response whose state does not match', async () => {
    const verifier = client.randomPKCECodeVerifier();
    const url = client.buildAuthorizationUrl(app, {
      redirect_uri: issuer.redirectUri,
      scope: 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: 'the-real-state',
    });
    const posted = await signIn(url, user);
    assert.equal(posted.status, 303);
    await assert.rejects(client.authorizationCodeGrant(app, new URL(posted.headers.get('location')), {
      pkceCodeVerifier: verifier,
      expectedState: 'another-state',
    }));
  });

  test('an error from the provider reaches the client with iss and state', async () => {
    // No PKCE: the provider answers with an error at the redirect URI.
    const url = client.buildAuthorizationUrl(app, {
      redirect_uri: issuer.redirectUri, scope: 'openid', state: 's1',
    });
    const r = await fetch(url, { redirect: 'manual' });
    assert.equal(r.status, 303);
    const back = new URL(r.headers.get('location'));
    assert.equal(back.searchParams.get('error'), 'invalid_request');
    assert.equal(back.searchParams.get('iss'), issuer.base);
    await assert.rejects(
      client.authorizationCodeGrant(app, back, { expectedState: 's1' }),
      (e) => e.error === 'invalid_request',
    );
    // An unregistered redirect URI is never redirected to.
    const evil = client.buildAuthorizationUrl(app, { redirect_uri: 'https://evil.example/cb', scope: 'openid' });
    const page = await fetch(evil, { redirect: 'manual' });
    assert.equal(page.status, 400);
    assert.equal(page.headers.get('location'), null);
  });
});

describe('logout', () => {
  test('RP-initiated logout ends the session and tells the client on the back channel', async () => {
    const { tokens } = await login(app, issuer.redirectUri);
    const sid = tokens.claims().sid;
    const seen = receiver.tokens.length;
    const url = client.buildEndSessionUrl(app, {
      id_token_hint: tokens.id_token,
      post_logout_redirect_uri: issuer.postLogoutUri,
      state: 'after-logout',
    });
    const r = await fetch(url, { redirect: 'manual' });
    assert.equal(r.status, 303);
    const back = new URL(r.headers.get('location'));
    assert.equal(`${back.origin}${back.pathname}`, issuer.postLogoutUri);
    assert.equal(back.searchParams.get('state'), 'after-logout');
    const payload = await verifyLogoutToken(await receiver.nth(seen + 1));
    assert.equal(payload.sid, sid);
    assert.equal(payload.sub, tokens.claims().sub);
    await assert.rejects(client.refreshTokenGrant(app, tokens.refresh_token), (e) => e.error === 'invalid_grant');
  });

  test('an unregistered post_logout_redirect_uri is refused', async () => {
    const { tokens } = await login(app, issuer.redirectUri);
    const url = client.buildEndSessionUrl(app, {
      id_token_hint: tokens.id_token,
      post_logout_redirect_uri: 'https://evil.example/',
    });
    const r = await fetch(url, { redirect: 'manual' });
    assert.equal(r.status, 400);
    assert.equal(r.headers.get('location'), null);
    // The session lives on.
    await client.refreshTokenGrant(app, tokens.refresh_token);
  });

  test('`sallyport session revoke` sends a logout token', async () => {
    const { tokens } = await login(app, issuer.redirectUri);
    const sid = tokens.claims().sid;
    const seen = receiver.tokens.length;
    const { err } = await issuer.cliAsync(['session', 'revoke', sid]);
    // The command waited for the delivery and did not give up on it.
    assert.equal(err, '');
    assert.equal(receiver.tokens.length, seen + 1);
    const payload = await verifyLogoutToken(receiver.tokens[seen]);
    assert.equal(payload.sid, sid);
    await assert.rejects(client.refreshTokenGrant(app, tokens.refresh_token), (e) => e.error === 'invalid_grant');
  });

  test('refresh-token reuse revokes the session and sends a logout token', async () => {
    const { tokens } = await login(app, issuer.redirectUri);
    const sid = tokens.claims().sid;
    await client.refreshTokenGrant(app, tokens.refresh_token);
    await new Promise((r) => setTimeout(r, 1100)); // past refresh_reuse_interval_secs = 1
    const seen = receiver.tokens.length;
    await assert.rejects(client.refreshTokenGrant(app, tokens.refresh_token), (e) => e.error === 'invalid_grant');
    const payload = await verifyLogoutToken(await receiver.nth(seen + 1));
    assert.equal(payload.sid, sid);
  });
});
