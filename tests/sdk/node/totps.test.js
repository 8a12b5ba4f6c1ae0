'use strict';
// TOTP API through the official Node SDK (stytch@14.2.0) against a running Latch server.
//
// Time steps: a code for step T is computed locally; the server accepts steps S-1..S+1 and refuses
// any step <= the last accepted one (spec §4, §5.5). After a success with T's code, a replay uses the
// same code, and the next success uses T+1's code (never sleep for the clock).

const { describe, it, before, test } = require('node:test');
const assert = require('node:assert/strict');
const stytch = require('stytch');
const h = require('./helpers');

test('RFC 6238 helper matches the RFC test vector (SHA1, T=59 -> 94287082)', () => {
  // Secret "12345678901234567890" (ASCII) in base32.
  const secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
  assert.equal(h.base32Decode(secret).toString('ascii'), '12345678901234567890');
  assert.equal(h.totpAt(secret, Math.floor(59 / 30)), '287082');
  assert.equal(h.totpAt(secret, Math.floor(1111111109 / 30)), '081804');
  assert.equal(h.totpAt(secret, Math.floor(20000000000 / 30)), '353130');
});

test('totps.create: secret, QR code, 10 recovery codes, unverified TOTP on the user', async () => {
  const { user_id } = await h.createUser();
  const resp = await h.client().totps.create({ user_id });
  h.assertRequestEnvelope(resp);
  assert.match(resp.totp_id, h.ID_RE.totp);
  assert.equal(resp.user_id, user_id);

  assert.match(resp.secret, /^[A-Z2-7]{32}$/);
  assert.equal(h.base32Decode(resp.secret).length, 20);

  assert.ok(resp.qr_code.startsWith('data:image/png;base64,'), `qr_code prefix: ${resp.qr_code.slice(0, 40)}`);
  const png = Buffer.from(resp.qr_code.slice('data:image/png;base64,'.length), 'base64');
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');

  assert.equal(resp.recovery_codes.length, 10);
  for (const code of resp.recovery_codes) assert.match(code, h.RECOVERY_CODE_RE);
  assert.equal(new Set(resp.recovery_codes).size, 10, 'recovery codes must be distinct');

  h.assertUserShape(resp.user);
  assert.equal(resp.user.user_id, user_id);
  assert.deepEqual(resp.user.totps, [{ totp_id: resp.totp_id, verified: false }]);

  const got = await h.client().users.get({ user_id });
  assert.deepEqual(got.totps, [{ totp_id: resp.totp_id, verified: false }]);
});

test('totps.create with expiration_minutes within 5..1440 succeeds', async () => {
  const { user_id } = await h.createUser();
  const resp = await h.client().totps.create({ user_id, expiration_minutes: 5 });
  assert.match(resp.totp_id, h.ID_RE.totp);
});

describe('TOTP lifecycle: authenticate, replay, recovery codes, recover, active_totp_exists', () => {
  let u; // { user_id, email, totp }
  let step; // the step T whose code authenticated first

  before(async () => {
    u = await h.createUserWithTotp();
  });

  it('authenticate with the current code verifies the TOTP and mints no session', async () => {
    step = h.currentStep();
    const resp = await h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, step) });
    h.assertRequestEnvelope(resp);
    assert.equal(resp.user_id, u.user_id);
    assert.equal(resp.totp_id, u.totp.totp_id);
    assert.equal(resp.session_token, '');
    assert.equal(resp.session_jwt, '');
    assert.equal(resp.session, null);
    h.assertUserShape(resp.user);
    assert.deepEqual(resp.user.totps, [{ totp_id: u.totp.totp_id, verified: true }]);
    assert.equal(resp.user.status, 'active');
  });

  it('replaying the same code is totp_code_already_authenticated (400)', async () => {
    await h.expectStytchError(
      h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, step) }),
      400,
      'totp_code_already_authenticated',
    );
  });

  it('the next step\'s code is accepted (skew ±1)', async () => {
    const resp = await h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, step + 1) });
    assert.equal(resp.totp_id, u.totp.totp_id);
    assert.equal(resp.session, null);
  });

  it('a wrong code is unable_to_authenticate_totp (401)', async () => {
    await h.expectStytchError(
      h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.wrongCode(u.totp.secret, step) }),
      401,
      'unable_to_authenticate_totp',
    );
  });

  it('users.get shows the TOTP verified', async () => {
    const got = await h.client().users.get({ user_id: u.user_id });
    assert.deepEqual(got.totps, [{ totp_id: u.totp.totp_id, verified: true }]);
    assert.equal(got.is_locked, false);
  });

  it('recoveryCodes returns the 10 unused codes of the verified TOTP', async () => {
    const resp = await h.client().totps.recoveryCodes({ user_id: u.user_id });
    h.assertRequestEnvelope(resp);
    assert.equal(resp.user_id, u.user_id);
    assert.equal(resp.totps.length, 1);
    assert.equal(resp.totps[0].totp_id, u.totp.totp_id);
    assert.equal(resp.totps[0].verified, true);
    assert.deepEqual([...resp.totps[0].recovery_codes].sort(), [...u.totp.recovery_codes].sort());
  });

  it('recover with a recovery code succeeds; reusing it is unable_to_authenticate_recovery_code (401)', async () => {
    const code = u.totp.recovery_codes[0];
    const resp = await h.client().totps.recover({ user_id: u.user_id, recovery_code: code });
    h.assertRequestEnvelope(resp);
    assert.equal(resp.user_id, u.user_id);
    assert.equal(resp.totp_id, u.totp.totp_id);
    assert.equal(resp.session_token, '');
    assert.equal(resp.session_jwt, '');
    assert.equal(resp.session, null);
    h.assertUserShape(resp.user);
    // A successful recover does not delete the TOTP (spec §5.4).
    assert.deepEqual(resp.user.totps, [{ totp_id: u.totp.totp_id, verified: true }]);

    await h.expectStytchError(
      h.client().totps.recover({ user_id: u.user_id, recovery_code: code }),
      401,
      'unable_to_authenticate_recovery_code',
    );

    const codes = await h.client().totps.recoveryCodes({ user_id: u.user_id });
    assert.equal(codes.totps[0].recovery_codes.length, 9);
    assert.ok(!codes.totps[0].recovery_codes.includes(code), 'spent code still listed');
  });

  it('recover normalises input (upper case, hyphens and spaces removed)', async () => {
    const code = u.totp.recovery_codes[1];
    const mangled = `  ${code.replace(/-/g, ' ').toUpperCase()} `;
    const resp = await h.client().totps.recover({ user_id: u.user_id, recovery_code: mangled });
    assert.equal(resp.totp_id, u.totp.totp_id);
    const codes = await h.client().totps.recoveryCodes({ user_id: u.user_id });
    assert.equal(codes.totps[0].recovery_codes.length, 8);
    assert.ok(!codes.totps[0].recovery_codes.includes(code));
  });

  it('creating a second TOTP for a verified user is active_totp_exists (400)', async () => {
    await h.expectStytchError(h.client().totps.create({ user_id: u.user_id }), 400, 'active_totp_exists');
  });
});

test('documented snippet: client.totps.recoveryCodes({ user_id }).then(resp => ...)', async () => {
  const u = await h.createUserWithTotp();
  await h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, h.currentStep()) });

  const project_id = h.PROJECT_ID;
  const secret = h.SECRET;
  const base_url = h.BASE_URL + '/';
  const user_id = u.user_id;

  const client = new stytch.Client({ project_id, secret, env: base_url });
  await client.totps.recoveryCodes({ user_id }).then((resp) => {
    assert.equal(resp.status_code, 200);
    assert.equal(resp.user_id, user_id);
    assert.equal(resp.totps.length, 1);
    assert.equal(resp.totps[0].totp_id, u.totp.totp_id);
    assert.equal(resp.totps[0].verified, true);
    assert.equal(resp.totps[0].recovery_codes.length, 10);
    for (const code of resp.totps[0].recovery_codes) assert.match(code, h.RECOVERY_CODE_RE);
  });
});

test('recoveryCodes for a user without a TOTP is 200 with totps: []', async () => {
  const { user_id } = await h.createUser();
  const resp = await h.client().totps.recoveryCodes({ user_id });
  h.assertRequestEnvelope(resp);
  assert.equal(resp.user_id, user_id);
  assert.deepEqual(resp.totps, []);
});

test('creating a TOTP while an unverified one exists replaces it', async () => {
  const u = await h.createUserWithTotp();
  const second = await h.client().totps.create({ user_id: u.user_id });
  assert.notEqual(second.totp_id, u.totp.totp_id);
  assert.notEqual(second.secret, u.totp.secret);
  assert.deepEqual(second.user.totps, [{ totp_id: second.totp_id, verified: false }]);

  const step = h.currentStep();
  const oldCode = h.totpAt(u.totp.secret, step);
  const newCode = h.totpAt(second.secret, step);
  if (oldCode !== newCode) {
    await h.expectStytchError(
      h.client().totps.authenticate({ user_id: u.user_id, totp_code: oldCode }),
      401,
      'unable_to_authenticate_totp',
    );
  }
  const ok = await h.client().totps.authenticate({ user_id: u.user_id, totp_code: newCode });
  assert.equal(ok.totp_id, second.totp_id);
  assert.deepEqual(ok.user.totps, [{ totp_id: second.totp_id, verified: true }]);
});

test('recover with a code of an unverified TOTP is unable_to_authenticate_recovery_code (401)', async () => {
  const u = await h.createUserWithTotp();
  await h.expectStytchError(
    h.client().totps.recover({ user_id: u.user_id, recovery_code: u.totp.recovery_codes[0] }),
    401,
    'unable_to_authenticate_recovery_code',
  );
});

test('a pending user becomes active on the first successful authenticate', async () => {
  const u = await h.createUserWithTotp({ create_user_as_pending: true });
  assert.equal(u.resp.status, 'pending');
  assert.equal(u.totp.user.status, 'pending');
  const resp = await h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, h.currentStep()) });
  assert.equal(resp.user.status, 'active');
  assert.equal((await h.client().users.get({ user_id: u.user_id })).status, 'active');
});

test('TOTP endpoints accept the external id in place of user_id', async () => {
  const external_id = `node|totp|${h.uniqueExternalId('x')}`;
  const { user_id } = await h.createUser({ external_id });
  const created = await h.client().totps.create({ user_id: external_id });
  assert.equal(created.user_id, user_id);
  const step = h.currentStep();
  const auth = await h.client().totps.authenticate({ user_id: external_id, totp_code: h.totpAt(created.secret, step) });
  assert.equal(auth.user_id, user_id);
  const codes = await h.client().totps.recoveryCodes({ user_id: external_id });
  assert.equal(codes.user_id, user_id);
  assert.equal(codes.totps[0].recovery_codes.length, 10);
  const rec = await h.client().totps.recover({ user_id: external_id, recovery_code: created.recovery_codes[3] });
  assert.equal(rec.user_id, user_id);
});

test(`user lock: ${h.LOCK_THRESHOLD} wrong codes lock the user; then even a correct code is user_lock_limit_reached (429)`, async () => {
  const u = await h.createUserWithTotp();
  const step = h.currentStep();
  await h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, step) });

  const wrong = h.wrongCode(u.totp.secret, step);
  for (let i = 1; i <= h.LOCK_THRESHOLD; i += 1) {
    const p = h.client().totps.authenticate({ user_id: u.user_id, totp_code: wrong });
    if (i < h.LOCK_THRESHOLD) {
      await h.expectStytchError(p, 401, 'unable_to_authenticate_totp');
    } else {
      // The failure that sets the lock may itself report the wrong code or the lock (spec §5.16
      // does not say which); everything after it must be the lock.
      const err = await p.then(
        (v) => assert.fail(`attempt ${i} succeeded: ${JSON.stringify(v)}`),
        (e) => e,
      );
      assert.ok(err instanceof stytch.StytchError, String(err));
      assert.ok(
        (err.status_code === 401 && err.error_type === 'unable_to_authenticate_totp') ||
          (err.status_code === 429 && err.error_type === 'user_lock_limit_reached'),
        `attempt ${i}: ${err.message}`,
      );
    }
  }

  // A correct, never-used code (step T+1) is refused while locked.
  await h.expectStytchError(
    h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, step + 1) }),
    429,
    'user_lock_limit_reached',
  );
  // So is a valid, unused recovery code.
  await h.expectStytchError(
    h.client().totps.recover({ user_id: u.user_id, recovery_code: u.totp.recovery_codes[0] }),
    429,
    'user_lock_limit_reached',
  );

  const got = await h.client().users.get({ user_id: u.user_id });
  h.assertUserShape(got);
  assert.equal(got.is_locked, true);
  assert.equal(typeof got.lock_created_at, 'string');
  assert.equal(typeof got.lock_expires_at, 'string');
  assert.match(got.lock_created_at, h.RFC3339_UTC_RE);
  assert.match(got.lock_expires_at, h.RFC3339_UTC_RE);
  assert.ok(Date.parse(got.lock_expires_at) > Date.parse(got.lock_created_at), 'lock_expires_at after lock_created_at');

  // Refused attempts while locked consumed nothing.
  const codes = await h.client().totps.recoveryCodes({ user_id: u.user_id });
  assert.equal(codes.totps[0].recovery_codes.length, 10);
});

// Session arguments are checked before the factor (spec §2.2): a refused request spends nothing, so
// the same code then mints a session. The session flows themselves are in sessions.test.js.
test('a bad session_duration_minutes spends nothing; the same code / recovery code then mints a session', async () => {
  const u = await h.createUserWithTotp();
  const step = h.currentStep();
  const code = h.totpAt(u.totp.secret, step);

  for (const session_duration_minutes of [4, 527041]) {
    await h.expectStytchError(
      h.client().totps.authenticate({ user_id: u.user_id, totp_code: code, session_duration_minutes }),
      400,
      'invalid_session_duration_minutes',
    );
  }
  const ok = await h.client().totps.authenticate({ user_id: u.user_id, totp_code: code, session_duration_minutes: 5 });
  h.assertRequestEnvelope(ok);
  assert.match(ok.session_token, h.SESSION_TOKEN_RE);
  assert.ok(ok.session_jwt.length > 0, 'session_jwt is empty');
  h.assertSessionShape(ok.session, { user_id: u.user_id, minutes: 5 });
  assert.equal(ok.session.authentication_factors.length, 1);
  h.assertTotpFactor(ok.session.authentication_factors[0], u.totp.totp_id);

  const rc = u.totp.recovery_codes[0];
  await h.expectStytchError(
    h.client().totps.recover({ user_id: u.user_id, recovery_code: rc, session_duration_minutes: 527041 }),
    400,
    'invalid_session_duration_minutes',
  );
  const rec = await h.client().totps.recover({ user_id: u.user_id, recovery_code: rc, session_duration_minutes: 527040 });
  h.assertRequestEnvelope(rec);
  assert.match(rec.session_token, h.SESSION_TOKEN_RE);
  h.assertSessionShape(rec.session, { user_id: u.user_id, minutes: 527040 });
  assert.notEqual(rec.session.session_id, ok.session.session_id);
  assert.equal(rec.session.authentication_factors.length, 1);
  h.assertRecoveryCodeFactor(rec.session.authentication_factors[0]);
});
