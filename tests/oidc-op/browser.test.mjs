// The login form in a real browser (Debian's Chromium through playwright-core, no
// browser download): what fetch cannot show — the browser's own Origin, cookie,
// CSP `form-action` and referrer rules around the form post and the redirect to the
// client — must let a sign-in through to the registered redirect URI.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';

import * as client from 'openid-client';
import { chromium } from 'playwright-core';

import { APP_SECRET, Issuer, PASSWORD, backchannelReceiver } from './lib/harness.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let issuer;
let receiver;
let rp; // the relying party's callback, on the registered redirect URI
let callbacks;
let browser;

before(async () => {
  receiver = await backchannelReceiver();
  issuer = await new Issuer({ backchannel: receiver.url }).start();
  issuer.addUser('bob');
  callbacks = [];
  rp = http.createServer((req, res) => {
    if (req.url.startsWith('/callback')) callbacks.push({ url: req.url, referer: req.headers.referer });
    res.writeHead(200, { 'content-type': 'text/plain' }).end('callback');
  });
  await new Promise((r) => rp.listen(issuer.rpPort, '127.0.0.1', r));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  issuer?.stop();
  await new Promise((r) => (rp ? rp.close(r) : r()));
  await receiver?.close();
});

test('sign in through the form in Chromium and redeem the code', async () => {
  const config = await client.discovery(new URL(issuer.base), 'app', APP_SECRET,
    client.ClientSecretBasic(APP_SECRET), { execute: [client.allowInsecureRequests] });
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: issuer.redirectUri,
    scope: 'openid profile',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  const page = await browser.newPage();
  await page.goto(url.href);
  await page.fill('#username', 'bob');
  await page.fill('#password', PASSWORD);
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(issuer.redirectUri)),
    page.click('button[type=submit]'),
  ]);
  assert.equal(callbacks.length, 1);
  assert.equal(callbacks[0].referer, undefined, 'no Referer to the client');
  const callback = new URL(callbacks[0].url, issuer.redirectUri);
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  assert.equal(tokens.claims().preferred_username, 'bob');
  await page.close();
});

test('a wrong password shows the form again with an error, in Chromium', async () => {
  const config = await client.discovery(new URL(issuer.base), 'spa', undefined, client.None(),
    { execute: [client.allowInsecureRequests] });
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: issuer.spaRedirectUri,
    scope: 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  const page = await browser.newPage();
  await page.goto(url.href);
  await page.fill('#username', 'bob');
  await page.fill('#password', 'not the password');
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
  assert.match(await page.textContent('#form-error'), /Invalid username or password/);
  assert.equal(await page.inputValue('#username'), 'bob');
  await page.close();
});
