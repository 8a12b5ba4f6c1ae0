'use strict';
// Sessions through the official Node SDK (stytch@14.2.0) against a running Latch server:
// sessions minted by totps.authenticate / totps.recover, local JWT verification by the SDK,
// sessions.authenticate / get / revoke, JWKS, and the errors around them (spec §2.1, §2.2, §2.4).
//
// Time steps: each 30 s step is accepted once per TOTP, the server accepts S-1..S+1. A test's first
// TOTP success uses the current step T's code and the next one T+1's (never sleep for the clock).
// Recovery codes (10 per TOTP) are used where a test needs more successes.
//
// What the Node SDK checks when it verifies a session JWT locally (read from the installed source:
// node_modules/stytch/dist/b2c/sessions.js, dist/shared/sessions.js, dist/b2c/client.js, and jose
// 5.x jwt/verify.js, lib/jwt_claims_set.js, jwks/local.js, runtime/fetch_jwks.js):
//   - The key set is jose.createRemoteJWKSet(new URL('/v1/sessions/jwks/' + project_id, base)),
//     fetched without credentials over http or https; it needs HTTP 200 and a JSON body, and is
//     cached (re-fetched at most every 30 s when a kid is unknown).
//   - Key choice: the header `alg` must be an RS/PS/ES/Ed algorithm (so "none" is refused); the key
//     must have the header's `kid`, kty RSA for RS256, and, when present, the same `alg`,
//     use "sig" and key_ops containing "verify". Exactly one key must match.
//   - jose.jwtVerify: the RS256 signature over header.payload; then the claims with
//     { audience: project_id, issuer: ['stytch.com/' + project_id, base URL without trailing
//     slashes], typ: 'JWT' }: header `typ` must be "JWT"; `aud` and `iss` must be present; `aud`
//     (string or array) must contain the project id; `iss` must be one of the two issuers;
//     `exp` (if present, a number) must be in the future and `nbf` (if present) not in the future,
//     with clock_tolerance_seconds (default 0) against current_date (default now); `iat`, if
//     present, must be a number. No `algorithms` allow-list is passed, `exp`/`nbf`/`iat`/`sub` are
//     not required by Node (Python requires them).
//   - max_token_age_seconds (optional): rejects when now - iat >= max (0 = every token is too old).
//   - Any failure is a stytch.ClientError with code "jwt_invalid" ("jwt_too_old" for the age check).
//   - The result is built from the "https://stytch.com/session" claim (id, started_at,
//     last_accessed_at, expires_at, attributes, authentication_factors, roles), `sub` as user_id,
//     and every other non-registered claim as custom_claims. Revocation is NOT seen locally.
//   - authenticateJwt: max_token_age_seconds === 0 → straight to POST /v1/sessions/authenticate;
//     otherwise local first and, on ANY local failure, POST /v1/sessions/authenticate with the JWT
//     (so a tampered JWT ends as the server's StytchError).

const crypto = require('node:crypto');
const { describe, it, before, test } = require('node:test');
const assert = require('node:assert/strict');
const stytch = require('stytch');
const h = require('./helpers');

const SESSION_CLAIM = 'https://stytch.com/session';

// Asserts that the SDK's local verification refuses the JWT (a ClientError, never a session).
async function expectLocalRejection(c, session_jwt, extra = {}, code = 'jwt_invalid') {
  await assert.rejects(c.sessions.authenticateJwtLocal({ session_jwt, ...extra }), (e) => {
    assert.ok(e instanceof stytch.ClientError, `expected ClientError, got ${e && e.constructor && e.constructor.name}: ${e}`);
    assert.equal(e.code, code, String(e));
    return true;
  });
}

// A user with a verified TOTP and a fresh session minted by authenticate with step T's code.
async function userWithSession(extra = {}, minutes = 60) {
  const u = await h.createUserWithTotp();
  const step = h.currentStep();
  const auth = await h.client().totps.authenticate({
    user_id: u.user_id,
    totp_code: h.totpAt(u.totp.secret, step),
    session_duration_minutes: minutes,
    ...extra,
  });
  return { ...u, step, auth };
}

test('totps.authenticate with session_duration_minutes: 60 mints a session (token, JWT, Session with a totp factor)', async () => {
  const u = await h.createUserWithTotp();
  const step = h.currentStep();
  const before = Math.floor(Date.now() / 1000);
  const resp = await h.client().totps.authenticate({
    user_id: u.user_id,
    totp_code: h.totpAt(u.totp.secret, step),
    session_duration_minutes: 60,
    // Reserved claims are ignored (spec §2.2); the rest become custom claims.
    session_custom_claims: { plan: 'pro', sub: 'ignored', iss: 'ignored', nested: { a: [1, 2] } },
  });
  h.assertRequestEnvelope(resp);
  assert.equal(resp.user_id, u.user_id);
  assert.equal(resp.totp_id, u.totp.totp_id);
  assert.match(resp.session_token, h.SESSION_TOKEN_RE);
  assert.equal(typeof resp.session_jwt, 'string');
  assert.ok(resp.session_jwt.length > 0, 'session_jwt is empty');
  h.assertUserShape(resp.user);
  assert.deepEqual(resp.user.totps, [{ totp_id: u.totp.totp_id, verified: true }]);

  const s = resp.session;
  h.assertSessionShape(s, { user_id: u.user_id, minutes: 60 });
  assert.equal(s.authentication_factors.length, 1);
  h.assertTotpFactor(s.authentication_factors[0], u.totp.totp_id);
  assert.deepEqual(s.roles, resp.user.roles);
  assert.deepEqual(s.custom_claims, { plan: 'pro', nested: { a: [1, 2] } });
  assert.equal(s.started_at, s.last_accessed_at);

  // The JWT, decoded by hand (spec §2.1 "Session JWT").
  const { header, payload } = h.decodeJwt(resp.session_jwt);
  assert.equal(header.alg, 'RS256');
  assert.equal(header.typ, 'JWT');
  assert.match(header.kid, h.ID_RE.jwk);
  assert.deepEqual(payload.aud, [h.PROJECT_ID]);
  assert.equal(payload.iss, `stytch.com/${h.PROJECT_ID}`);
  assert.equal(payload.sub, u.user_id);
  for (const k of ['iat', 'nbf', 'exp']) assert.ok(Number.isInteger(payload[k]), `${k} must be an integer`);
  assert.equal(payload.exp - payload.iat, 300, 'JWT lifetime is 5 minutes');
  assert.ok(payload.nbf <= payload.iat, 'nbf <= iat');
  assert.ok(Math.abs(payload.iat - before) < 120, `iat ${payload.iat} far from the local clock ${before}`);
  assert.equal(payload.plan, 'pro');
  assert.deepEqual(payload.nested, { a: [1, 2] });
  const claim = payload[SESSION_CLAIM];
  assert.equal(claim.id, s.session_id);
  assert.equal(Date.parse(claim.started_at), Date.parse(s.started_at));
  assert.equal(Date.parse(claim.expires_at), Date.parse(s.expires_at));
  assert.equal(typeof claim.last_accessed_at, 'string');
  assert.equal(typeof claim.attributes, 'object');
  assert.deepEqual(claim.roles, s.roles);
  assert.equal(claim.authentication_factors.length, 1);
  h.assertTotpFactor(claim.authentication_factors[0], u.totp.totp_id);
});

test('JWKS: getJWKS and an unauthenticated GET serve the RSA key that signed the JWT', async () => {
  const { auth } = await userWithSession();
  const { header } = h.decodeJwt(auth.session_jwt);

  const resp = await h.client().sessions.getJWKS({ project_id: h.PROJECT_ID });
  h.assertRequestEnvelope(resp);
  assert.ok(Array.isArray(resp.keys) && resp.keys.length >= 1, `keys: ${JSON.stringify(resp.keys)}`);
  for (const k of resp.keys) {
    assert.equal(k.kty, 'RSA');
    assert.equal(k.use, 'sig');
    assert.ok(Array.isArray(k.key_ops) && k.key_ops.includes('verify'), `key_ops ${JSON.stringify(k.key_ops)}`);
    assert.equal(k.alg, 'RS256');
    assert.match(k.kid, h.ID_RE.jwk);
    assert.ok(Array.isArray(k.x5c), 'x5c must be an array');
    assert.equal(typeof k.x5tS256, 'string');
    assert.match(k.n, /^[A-Za-z0-9_-]+$/);
    assert.match(k.e, /^[A-Za-z0-9_-]+$/);
  }
  assert.ok(resp.keys.some((k) => k.kid === header.kid), `JWT kid ${header.kid} not in the JWKS`);

  // The endpoint is public: the SDK's jose key set fetches it without credentials (spec §5.14).
  const raw = await fetch(`${h.BASE_URL}/v1/sessions/jwks/${h.PROJECT_ID}`);
  assert.equal(raw.status, 200);
  const body = await raw.json();
  assert.deepEqual(
    body.keys.map((k) => k.kid).sort(),
    resp.keys.map((k) => k.kid).sort(),
  );
});

test('local JWT verification: authenticateJwtLocal / authenticateJwt accept the real JWT and refuse tampered ones', async () => {
  const c = h.client();
  const u = await userWithSession({ session_custom_claims: { plan: 'pro' } });
  const jwt = u.auth.session_jwt;
  const s = u.auth.session;

  // authenticateJwtLocal: verified against the JWKS, no call to sessions/authenticate.
  const local = await c.sessions.authenticateJwtLocal({ session_jwt: jwt });
  assert.equal(local.session_id, s.session_id);
  assert.equal(local.user_id, u.user_id);
  assert.equal(local.authentication_factors.length, 1);
  h.assertTotpFactor(local.authentication_factors[0], u.totp.totp_id);
  assert.deepEqual(local.roles, s.roles);
  assert.deepEqual(local.custom_claims, { plan: 'pro' });
  assert.equal(Date.parse(local.started_at), Date.parse(s.started_at));
  assert.equal(Date.parse(local.expires_at), Date.parse(s.expires_at));
  assert.equal(typeof local.attributes, 'object');

  // The SDK's own time checks run on the server's claims.
  await c.sessions.authenticateJwtLocal({ session_jwt: jwt, max_token_age_seconds: 120 });
  await expectLocalRejection(c, jwt, { max_token_age_seconds: 0 }, 'jwt_too_old');
  const { payload } = h.decodeJwt(jwt);
  await expectLocalRejection(c, jwt, { current_date: new Date((payload.exp + 1) * 1000) }); // expired
  await expectLocalRejection(c, jwt, { current_date: new Date((payload.nbf - 60) * 1000) }); // not yet valid

  // authenticateJwt prefers the local path: it answers without an API round trip.
  const viaJwt = await c.sessions.authenticateJwt({ session_jwt: jwt });
  assert.equal(viaJwt.session_jwt, jwt);
  assert.equal(viaJwt.session.session_id, s.session_id);
  assert.equal(viaJwt.session.user_id, u.user_id);
  assert.equal(viaJwt.status_code, undefined, 'local path expected (no API response fields)');
  // max_token_age_seconds: 0 forces POST /v1/sessions/authenticate with the JWT.
  const remote = await c.sessions.authenticateJwt({ session_jwt: jwt, max_token_age_seconds: 0 });
  h.assertRequestEnvelope(remote);
  assert.equal(remote.session.session_id, s.session_id);
  assert.equal(remote.session_token, '');
  assert.ok(remote.session_jwt.length > 0);

  // Tampered JWTs: every one is refused locally.
  const otherUser = `user-${h.ENV_WORD}-${crypto.randomUUID()}`;
  const forgedSub = h.jwtWithPayload(jwt, (p) => {
    p.sub = otherUser;
  });
  const tampered = {
    'payload claims changed (sub), signature kept': forgedSub,
    'payload claims changed (exp + 1 h), signature kept': h.jwtWithPayload(jwt, (p) => {
      p.exp += 3600;
    }),
    'session claim changed (roles), signature kept': h.jwtWithPayload(jwt, (p) => {
      p[SESSION_CLAIM].roles = ['admin'];
    }),
    'one payload character flipped': h.jwtWithFlippedChar(jwt, 1),
    'one signature character flipped': h.jwtWithFlippedChar(jwt, 2),
    'alg "none" without a signature': [
      Buffer.from(JSON.stringify({ ...h.decodeJwt(jwt).header, alg: 'none' })).toString('base64url'),
      h.decodeJwt(jwt).parts[1],
      '',
    ].join('.'),
    'unknown kid': [
      Buffer.from(JSON.stringify({ ...h.decodeJwt(jwt).header, kid: `jwk-${h.ENV_WORD}-${crypto.randomUUID()}` })).toString(
        'base64url',
      ),
      h.decodeJwt(jwt).parts[1],
      h.decodeJwt(jwt).parts[2],
    ].join('.'),
  };
  for (const [what, bad] of Object.entries(tampered)) {
    assert.notEqual(bad, jwt, what);
    await expectLocalRejection(c, bad).catch((e) => {
      e.message = `${what}: ${e.message}`;
      throw e;
    });
  }

  // authenticateJwt falls back to the API on a local failure; the server checks the signature too.
  await h.expectStytchError(c.sessions.authenticateJwt({ session_jwt: forgedSub }), 404, 'session_not_found');
  await h.expectStytchError(c.sessions.authenticate({ session_jwt: forgedSub }), 404, 'session_not_found');

  // The real JWT still works afterwards.
  assert.equal((await c.sessions.authenticateJwtLocal({ session_jwt: jwt })).session_id, s.session_id);
});

describe('session lifecycle: authenticate by token and JWT, get, revoke (by id, token, JWT)', () => {
  let u; // { user_id, totp, step, auth }
  let sid;
  const c = () => h.client();

  before(async () => {
    u = await userWithSession();
    sid = u.auth.session.session_id;
  });

  it('sessions.authenticate with the session_token returns the session, the same token, a JWT and the user', async () => {
    const resp = await c().sessions.authenticate({ session_token: u.auth.session_token });
    h.assertRequestEnvelope(resp);
    h.assertSessionShape(resp.session, { user_id: u.user_id });
    assert.equal(resp.session.session_id, sid);
    assert.equal(resp.session_token, u.auth.session_token);
    assert.ok(resp.session_jwt.length > 0);
    h.assertUserShape(resp.user);
    assert.equal(resp.user.user_id, u.user_id);
    h.assertTotpFactor(resp.session.authentication_factors[0], u.totp.totp_id);
    // The fresh JWT verifies locally and names the same session.
    assert.equal((await c().sessions.authenticateJwtLocal({ session_jwt: resp.session_jwt })).session_id, sid);
  });

  it('sessions.authenticate with the session_jwt returns session_token "" and a fresh JWT', async () => {
    const resp = await c().sessions.authenticate({ session_jwt: u.auth.session_jwt });
    h.assertRequestEnvelope(resp);
    assert.equal(resp.session.session_id, sid);
    assert.equal(resp.session_token, '');
    assert.ok(resp.session_jwt.length > 0);
    const { payload } = h.decodeJwt(resp.session_jwt);
    assert.equal(payload[SESSION_CLAIM].id, sid);
    assert.equal(payload.sub, u.user_id);
  });

  it('session_duration_minutes on sessions.authenticate extends the session', async () => {
    const old = u.auth.session.expires_at;
    const resp = await c().sessions.authenticate({ session_token: u.auth.session_token, session_duration_minutes: 180 });
    assert.equal(resp.session.session_id, sid);
    const gained = Date.parse(resp.session.expires_at) - Date.parse(old);
    assert.ok(gained >= 110 * 60_000, `expires_at moved by ${gained} ms only`);
  });

  it('sessions.get({ user_id }) lists the live session', async () => {
    const resp = await c().sessions.get({ user_id: u.user_id });
    h.assertRequestEnvelope(resp);
    assert.ok(Array.isArray(resp.sessions));
    assert.deepEqual(resp.sessions.map((x) => x.session_id), [sid]);
    h.assertSessionShape(resp.sessions[0], { user_id: u.user_id });
    h.assertTotpFactor(resp.sessions[0].authentication_factors[0], u.totp.totp_id);
  });

  it('sessions.revoke({ session_id }) ends it: authenticate by token or JWT is session_not_found (404)', async () => {
    const resp = await c().sessions.revoke({ session_id: sid });
    h.assertRequestEnvelope(resp);
    await h.expectStytchError(c().sessions.authenticate({ session_token: u.auth.session_token }), 404, 'session_not_found');
    await h.expectStytchError(c().sessions.authenticate({ session_jwt: u.auth.session_jwt }), 404, 'session_not_found');
    await h.expectStytchError(c().sessions.revoke({ session_id: sid }), 404, 'session_not_found');
    assert.deepEqual((await c().sessions.get({ user_id: u.user_id })).sessions, []);
    // Local verification is stateless: a revoked session's JWT still verifies until its exp
    // (at most 5 minutes). authenticateJwt with max_token_age_seconds: 0 asks the server and fails.
    assert.equal((await c().sessions.authenticateJwtLocal({ session_jwt: u.auth.session_jwt })).session_id, sid);
    await h.expectStytchError(
      c().sessions.authenticateJwt({ session_jwt: u.auth.session_jwt, max_token_age_seconds: 0 }),
      404,
      'session_not_found',
    );
  });

  it('sessions.revoke by session_token and by session_jwt (sessions minted by recover)', async () => {
    const a = await c().totps.recover({ user_id: u.user_id, recovery_code: u.totp.recovery_codes[0], session_duration_minutes: 30 });
    const b = await c().totps.recover({ user_id: u.user_id, recovery_code: u.totp.recovery_codes[1], session_duration_minutes: 30 });
    assert.notEqual(a.session.session_id, b.session.session_id);
    assert.notEqual(a.session_token, b.session_token);
    const listed = (await c().sessions.get({ user_id: u.user_id })).sessions.map((x) => x.session_id).sort();
    assert.deepEqual(listed, [a.session.session_id, b.session.session_id].sort());

    h.assertRequestEnvelope(await c().sessions.revoke({ session_token: a.session_token }));
    await h.expectStytchError(c().sessions.authenticate({ session_token: a.session_token }), 404, 'session_not_found');
    assert.equal((await c().sessions.authenticate({ session_token: b.session_token })).session.session_id, b.session.session_id);

    h.assertRequestEnvelope(await c().sessions.revoke({ session_jwt: b.session_jwt }));
    await h.expectStytchError(c().sessions.authenticate({ session_token: b.session_token }), 404, 'session_not_found');
    assert.deepEqual((await c().sessions.get({ user_id: u.user_id })).sessions, []);
  });
});

describe('recover mints a recovery_codes session; a later TOTP authenticate adds its factor', () => {
  let u;
  let step;
  let rec;

  before(async () => {
    u = await h.createUserWithTotp();
    step = h.currentStep();
    // Recovery codes only work once the TOTP is verified: step T verifies it (no session).
    const first = await h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, step) });
    assert.equal(first.session, null);
  });

  it('recover with session_duration_minutes: the session has one recovery_codes factor', async () => {
    rec = await h.client().totps.recover({
      user_id: u.user_id,
      recovery_code: u.totp.recovery_codes[0],
      session_duration_minutes: 60,
    });
    h.assertRequestEnvelope(rec);
    assert.equal(rec.totp_id, u.totp.totp_id);
    assert.match(rec.session_token, h.SESSION_TOKEN_RE);
    assert.ok(rec.session_jwt.length > 0);
    h.assertSessionShape(rec.session, { user_id: u.user_id, minutes: 60 });
    assert.equal(rec.session.authentication_factors.length, 1);
    h.assertRecoveryCodeFactor(rec.session.authentication_factors[0]);
    const local = await h.client().sessions.authenticateJwtLocal({ session_jwt: rec.session_jwt });
    assert.equal(local.session_id, rec.session.session_id);
    h.assertRecoveryCodeFactor(local.authentication_factors[0]);
  });

  it('totps.authenticate with session_token (step T+1) adds the totp factor to the same session', async () => {
    const resp = await h.client().totps.authenticate({
      user_id: u.user_id,
      totp_code: h.totpAt(u.totp.secret, step + 1),
      session_token: rec.session_token,
    });
    h.assertRequestEnvelope(resp);
    assert.equal(resp.session.session_id, rec.session.session_id);
    assert.equal(resp.session_token, rec.session_token);
    const factors = resp.session.authentication_factors;
    assert.equal(factors.length, 2, JSON.stringify(factors));
    h.assertRecoveryCodeFactor(factors.find((f) => f.type === 'recovery_codes'));
    h.assertTotpFactor(factors.find((f) => f.type === 'totp'), u.totp.totp_id);
    // The fresh JWT carries both factors.
    const local = await h.client().sessions.authenticateJwtLocal({ session_jwt: resp.session_jwt });
    assert.equal(local.session_id, rec.session.session_id);
    assert.deepEqual(local.authentication_factors.map((f) => f.type).sort(), ['recovery_codes', 'totp']);
    // Still one session for the user.
    const listed = await h.client().sessions.get({ user_id: u.user_id });
    assert.deepEqual(listed.sessions.map((x) => x.session_id), [rec.session.session_id]);
  });

  it('recover with session_jwt attaches to the same session (session_token "" in the answer)', async () => {
    const resp = await h.client().totps.recover({
      user_id: u.user_id,
      recovery_code: u.totp.recovery_codes[1],
      session_jwt: rec.session_jwt,
    });
    assert.equal(resp.session.session_id, rec.session.session_id);
    assert.equal(resp.session_token, '');
    assert.ok(resp.session_jwt.length > 0);
    // Same kinds of factor as before: the recovery_codes factor is refreshed, not duplicated.
    assert.deepEqual(resp.session.authentication_factors.map((f) => f.type).sort(), ['recovery_codes', 'totp']);
  });
});

test('session errors (spec §3.3, §5.15)', async (t) => {
  const c = h.client();
  const u = await h.createUserWithTotp();
  const user_id = u.user_id;
  const step = h.currentStep();
  const code = h.totpAt(u.totp.secret, step);
  const unknownToken = 'A'.repeat(44);

  await t.test('session_duration_minutes outside 5..527040 → invalid_session_duration_minutes', async () => {
    for (const session_duration_minutes of [4, 0, 527041]) {
      await h.expectStytchError(
        c.totps.authenticate({ user_id, totp_code: code, session_duration_minutes }),
        400,
        'invalid_session_duration_minutes',
      );
    }
  });
  await t.test('both session_token and session_jwt on totps.authenticate → too_many_session_arguments', async () => {
    await h.expectStytchError(
      c.totps.authenticate({ user_id, totp_code: code, session_token: unknownToken, session_jwt: 'a.b.c' }),
      400,
      'too_many_session_arguments',
    );
  });
  await t.test('an unknown session_token on totps.authenticate → session_not_found', async () => {
    await h.expectStytchError(
      c.totps.authenticate({ user_id, totp_code: code, session_token: unknownToken }),
      404,
      'session_not_found',
    );
  });
  await t.test('session_custom_claims over 4 KB → custom_claims_too_large', async () => {
    await h.expectStytchError(
      c.totps.authenticate({
        user_id,
        totp_code: code,
        session_duration_minutes: 60,
        session_custom_claims: { k: 'v'.repeat(5000) },
      }),
      400,
      'custom_claims_too_large',
    );
  });

  // None of the refused requests spent the code: it still mints a session.
  const ok = await c.totps.authenticate({ user_id, totp_code: code, session_duration_minutes: 60 });
  h.assertSessionShape(ok.session, { user_id, minutes: 60 });

  await t.test('recover: bad session arguments are refused before the recovery code is spent', async () => {
    const rc = u.totp.recovery_codes[0];
    await h.expectStytchError(
      c.totps.recover({ user_id, recovery_code: rc, session_duration_minutes: 4 }),
      400,
      'invalid_session_duration_minutes',
    );
    await h.expectStytchError(
      c.totps.recover({ user_id, recovery_code: rc, session_token: ok.session_token, session_jwt: ok.session_jwt }),
      400,
      'too_many_session_arguments',
    );
    await h.expectStytchError(
      c.totps.recover({ user_id, recovery_code: rc, session_token: unknownToken }),
      404,
      'session_not_found',
    );
    const rec = await c.totps.recover({ user_id, recovery_code: rc });
    assert.equal(rec.session, null);
  });
  await t.test('sessions.authenticate: both → too_many_session_arguments; neither → no_session_arguments', async () => {
    await h.expectStytchError(
      c.sessions.authenticate({ session_token: ok.session_token, session_jwt: ok.session_jwt }),
      400,
      'too_many_session_arguments',
    );
    await h.expectStytchError(c.sessions.authenticate({}), 400, 'no_session_arguments');
  });
  await t.test('sessions.authenticate: bad duration, unparsable JWT, unknown token', async () => {
    await h.expectStytchError(
      c.sessions.authenticate({ session_token: ok.session_token, session_duration_minutes: 4 }),
      400,
      'invalid_session_duration_minutes',
    );
    await h.expectStytchError(c.sessions.authenticate({ session_jwt: 'not-a-jwt' }), 400, 'unable_to_parse_session_jwt');
    await h.expectStytchError(c.sessions.authenticate({ session_token: unknownToken }), 404, 'session_not_found');
  });
  await t.test('sessions.revoke: neither / two arguments', async () => {
    await h.expectStytchError(c.sessions.revoke({}), 400, 'no_session_revoke_arguments');
    await h.expectStytchError(
      c.sessions.revoke({ session_id: ok.session.session_id, session_token: ok.session_token }),
      400,
      'too_many_session_revoke_arguments',
    );
  });
  await t.test('a revoked token is session_not_found everywhere, and attaching to it spends nothing', async () => {
    await c.sessions.revoke({ session_token: ok.session_token });
    await h.expectStytchError(c.sessions.authenticate({ session_token: ok.session_token }), 404, 'session_not_found');
    await h.expectStytchError(c.sessions.revoke({ session_token: ok.session_token }), 404, 'session_not_found');
    const next = h.totpAt(u.totp.secret, step + 1);
    await h.expectStytchError(
      c.totps.authenticate({ user_id, totp_code: next, session_token: ok.session_token }),
      404,
      'session_not_found',
    );
    const again = await c.totps.authenticate({ user_id, totp_code: next });
    assert.equal(again.totp_id, u.totp.totp_id);
    assert.equal(again.session, null);
  });
});

test('users.deleteTOTP ends the sessions that TOTP minted', async () => {
  const u = await userWithSession();
  const { session_token, session_jwt } = u.auth;
  assert.equal((await h.client().sessions.authenticate({ session_token })).session.session_id, u.auth.session.session_id);
  const del = await h.client().users.deleteTOTP({ totp_id: u.totp.totp_id });
  assert.deepEqual(del.user.totps, []);
  await h.expectStytchError(h.client().sessions.authenticate({ session_token }), 404, 'session_not_found');
  await h.expectStytchError(h.client().sessions.authenticate({ session_jwt }), 404, 'session_not_found');
  assert.deepEqual((await h.client().sessions.get({ user_id: u.user_id })).sessions, []);
});

test('users.delete ends the user\'s sessions', async () => {
  const u = await userWithSession();
  const { session_token, session_jwt } = u.auth;
  await h.client().users.delete({ user_id: u.user_id });
  await h.expectStytchError(h.client().sessions.authenticate({ session_token }), 404, 'session_not_found');
  await h.expectStytchError(h.client().sessions.authenticate({ session_jwt }), 404, 'session_not_found');
  await h.expectStytchError(h.client().sessions.get({ user_id: u.user_id }), 404, 'user_not_found');
});

test('project isolation: project 2 cannot see, use or revoke a project 1 session', async () => {
  const p2 = h.project2();
  const u = await userWithSession();
  const { session_token, session_jwt, session } = u.auth;

  await h.expectStytchError(p2.client.sessions.authenticate({ session_token }), 404, 'session_not_found');
  await h.expectStytchError(p2.client.sessions.revoke({ session_id: session.session_id }), 404, 'session_not_found');
  await h.expectStytchError(p2.client.sessions.get({ user_id: u.user_id }), 404, 'user_not_found');
  // Project 2's JWKS does not hold project 1's key (and aud names project 1).
  await expectLocalRejection(p2.client, session_jwt);

  // Untouched in project 1.
  assert.equal((await h.client().sessions.authenticate({ session_token })).session.session_id, session.session_id);
});
