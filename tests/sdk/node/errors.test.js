'use strict';
// Error envelope, credentials, project isolation and bad input through the Node SDK (stytch@14.2.0).

const crypto = require('node:crypto');
const test = require('node:test');
const assert = require('node:assert/strict');
const stytch = require('stytch');
const h = require('./helpers');

test('StytchError carries the envelope fields copied from the body (unknown user → user_not_found 404)', async () => {
  const user_id = `user-${h.ENV_WORD}-${crypto.randomUUID()}`;
  let err;
  try {
    await h.client().users.get({ user_id });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof stytch.StytchError, `expected StytchError, got ${err}`);
  assert.ok(err instanceof Error);
  assert.equal(err.status_code, 404);
  assert.equal(err.error_type, 'user_not_found');
  assert.ok(err.request_id.startsWith(`request-id-${h.ENV_WORD}-`), err.request_id);
  assert.match(err.request_id, h.ID_RE.request);
  assert.equal(typeof err.error_message, 'string');
  assert.ok(err.error_message.length > 0);
  assert.equal(typeof err.error_url, 'string');
  // The SDK stringifies the whole body into message.
  const body = JSON.parse(err.message);
  assert.equal(body.status_code, 404);
  assert.equal(body.error_type, 'user_not_found');
  assert.equal(body.request_id, err.request_id);
});

test('unknown user on every user_id route is user_not_found (404)', async () => {
  const user_id = `user-${h.ENV_WORD}-${crypto.randomUUID()}`;
  const c = h.client();
  await h.expectStytchError(c.users.get({ user_id }), 404, 'user_not_found');
  await h.expectStytchError(c.users.update({ user_id, name: { first_name: 'X' } }), 404, 'user_not_found');
  await h.expectStytchError(c.users.delete({ user_id }), 404, 'user_not_found');
  await h.expectStytchError(c.totps.create({ user_id }), 404, 'user_not_found');
  await h.expectStytchError(c.totps.authenticate({ user_id, totp_code: '123456' }), 404, 'user_not_found');
  await h.expectStytchError(c.totps.recoveryCodes({ user_id }), 404, 'user_not_found');
  await h.expectStytchError(c.totps.recover({ user_id, recovery_code: 'abcd-efgh-ijkl' }), 404, 'user_not_found');
  // An external id that does not exist.
  await h.expectStytchError(c.users.get({ user_id: h.uniqueExternalId('missing') }), 404, 'user_not_found');
});

test('unknown TOTP id on deleteTOTP is totp_not_found (404)', async () => {
  await h.expectStytchError(
    h.client().users.deleteTOTP({ totp_id: `totp-${h.ENV_WORD}-${crypto.randomUUID()}` }),
    404,
    'totp_not_found',
  );
});

test('bad credentials are unauthorized_credentials (401)', async () => {
  const wrongSecret = h.makeClient(h.PROJECT_ID, `secret-test-${crypto.randomBytes(26).toString('base64url')}`);
  await h.expectStytchError(wrongSecret.users.create({ email: h.uniqueEmail('badcred') }), 401, 'unauthorized_credentials');
  await h.expectStytchError(
    wrongSecret.totps.recoveryCodes({ user_id: `user-${h.ENV_WORD}-${crypto.randomUUID()}` }),
    401,
    'unauthorized_credentials',
  );

  const unknownProject = h.makeClient(`project-test-${crypto.randomUUID()}`, h.SECRET);
  await h.expectStytchError(
    unknownProject.users.get({ user_id: `user-test-${crypto.randomUUID()}` }),
    401,
    'unauthorized_credentials',
  );
});

test('project isolation: a user of project 1 is user_not_found from project 2', async () => {
  const p2 = h.project2();
  const external_id = h.uniqueExternalId('iso');
  const u = await h.createUserWithTotp({ external_id });
  const other = p2.client;

  await h.expectStytchError(other.users.get({ user_id: u.user_id }), 404, 'user_not_found');
  await h.expectStytchError(other.users.get({ user_id: external_id }), 404, 'user_not_found');
  await h.expectStytchError(other.users.update({ user_id: u.user_id, name: { first_name: 'Mallory' } }), 404, 'user_not_found');
  await h.expectStytchError(other.users.delete({ user_id: u.user_id }), 404, 'user_not_found');
  await h.expectStytchError(other.totps.create({ user_id: u.user_id }), 404, 'user_not_found');
  await h.expectStytchError(
    other.totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, h.currentStep()) }),
    404,
    'user_not_found',
  );
  await h.expectStytchError(other.totps.recoveryCodes({ user_id: u.user_id }), 404, 'user_not_found');
  await h.expectStytchError(
    other.totps.recover({ user_id: u.user_id, recovery_code: u.totp.recovery_codes[0] }),
    404,
    'user_not_found',
  );
  await h.expectStytchError(other.users.deleteTOTP({ totp_id: u.totp.totp_id }), 404, 'totp_not_found');

  // Nothing changed in project 1.
  const got = await h.client().users.get({ user_id: u.user_id });
  assert.deepEqual(got.totps, [{ totp_id: u.totp.totp_id, verified: false }]);
  assert.notEqual(got.name?.first_name, 'Mallory');

  // The same external id is free in project 2 (unique per project, not globally).
  const p2user = await other.users.create({ email: h.uniqueEmail('iso2'), external_id });
  assert.notEqual(p2user.user_id, u.user_id);
  assert.equal((await other.users.get({ user_id: external_id })).user_id, p2user.user_id);
  assert.equal((await h.client().users.get({ user_id: external_id })).user_id, u.user_id);
});

test('bad input → error table (spec §5.15)', async (t) => {
  const c = h.client();
  const u = await h.createUserWithTotp();
  const user_id = u.user_id;

  await t.test('totp_code not 6 digits → invalid_totp_code', async () => {
    for (const totp_code of ['12345', '1234567', '12 456', '+12345', 'abcdef', '١٢٣٤٥٦']) {
      await h.expectStytchError(c.totps.authenticate({ user_id, totp_code }), 400, 'invalid_totp_code');
    }
  });
  await t.test('totp_code shaped like a recovery code → recovery_code_used_as_totp_code', async () => {
    await h.expectStytchError(
      c.totps.authenticate({ user_id, totp_code: u.totp.recovery_codes[0] }),
      400,
      'recovery_code_used_as_totp_code',
    );
  });
  await t.test('totp_code of the wrong JSON type → bad_request', async () => {
    await h.expectStytchError(c.totps.authenticate({ user_id, totp_code: 123456 }), 400, 'bad_request');
  });
  await t.test('missing required field → bad_request', async () => {
    await h.expectStytchError(c.totps.authenticate({ user_id }), 400, 'bad_request');
  });
  await t.test('recovery_code malformed → invalid_recovery_code; 6 digits → totp_code_used_as_recovery_code', async () => {
    await h.expectStytchError(c.totps.recover({ user_id, recovery_code: 'abc' }), 400, 'invalid_recovery_code');
    await h.expectStytchError(c.totps.recover({ user_id, recovery_code: 'abcd-efgh-ijk!' }), 400, 'invalid_recovery_code');
    await h.expectStytchError(c.totps.recover({ user_id, recovery_code: '123456' }), 400, 'totp_code_used_as_recovery_code');
  });
  await t.test('expiration_minutes outside 5..1440 → invalid_expiration', async () => {
    const other = await h.createUser();
    await h.expectStytchError(c.totps.create({ user_id: other.user_id, expiration_minutes: 4 }), 400, 'invalid_expiration');
    await h.expectStytchError(c.totps.create({ user_id: other.user_id, expiration_minutes: 1441 }), 400, 'invalid_expiration');
  });
  await t.test('malformed user ids → invalid_user_id', async () => {
    await h.expectStytchError(c.totps.create({ user_id: `user-${h.ENV_WORD}-not-a-uuid` }), 400, 'invalid_user_id');
    await h.expectStytchError(c.users.get({ user_id: 'bad id with spaces' }), 400, 'invalid_user_id');
    await h.expectStytchError(c.totps.recoveryCodes({ user_id: 'x'.repeat(129) }), 400, 'invalid_user_id');
  });
  await t.test('user without a TOTP → totps_not_found_for_user', async () => {
    const other = await h.createUser();
    await h.expectStytchError(
      c.totps.authenticate({ user_id: other.user_id, totp_code: '123456' }),
      404,
      'totps_not_found_for_user',
    );
    await h.expectStytchError(
      c.totps.recover({ user_id: other.user_id, recovery_code: 'abcd-efgh-ijkl' }),
      404,
      'totps_not_found_for_user',
    );
  });
  await t.test('users.create: invalid/duplicate email, duplicate external id, invalid external id', async () => {
    await h.expectStytchError(c.users.create({ email: 'not-an-email' }), 400, 'invalid_email');
    await h.expectStytchError(c.users.create({ email: u.email }), 400, 'duplicate_email');
    const ext = h.uniqueExternalId('dup');
    await c.users.create({ email: h.uniqueEmail('dup1'), external_id: ext });
    await h.expectStytchError(
      c.users.create({ email: h.uniqueEmail('dup2'), external_id: ext }),
      400,
      'duplicate_user_external_id',
    );
    await h.expectStytchError(
      c.users.create({ email: h.uniqueEmail('badext'), external_id: `user-${h.ENV_WORD}-${crypto.randomUUID()}` }),
      400,
      'invalid_external_id',
    );
    await h.expectStytchError(
      c.users.create({ email: h.uniqueEmail('badext2'), external_id: 'has space' }),
      400,
      'invalid_external_id',
    );
  });
  await t.test('malformed input did not count towards the lock, and the TOTP still works', async () => {
    const resp = await c.totps.authenticate({ user_id, totp_code: h.totpAt(u.totp.secret, h.currentStep()) });
    assert.equal(resp.totp_id, u.totp.totp_id);
  });
});
