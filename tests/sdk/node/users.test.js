'use strict';
// Users API through the official Node SDK (stytch@14.2.0) against a running Latch server.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

test('users.create with an email returns an active user, ids and the user object', async () => {
  const email = h.uniqueEmail('create');
  const resp = await h.client().users.create({ email });
  // spec §5.11: create answers HTTP 200 with status_code 200.
  h.assertRequestEnvelope(resp, 200);
  assert.match(resp.user_id, h.ID_RE.user);
  assert.match(resp.email_id, h.ID_RE.email);
  assert.equal(resp.phone_id, ''); // spec §5.8: absent ids are "" (never null)
  assert.equal(resp.status, 'active');
  h.assertUserShape(resp.user);
  assert.equal(resp.user.user_id, resp.user_id);
  assert.equal(resp.user.status, 'active');
  assert.equal(resp.user.is_locked, false);
  assert.deepEqual(resp.user.totps, []);
  assert.equal(resp.user.emails.length, 1);
  assert.equal(resp.user.emails[0].email, email);
  assert.equal(resp.user.emails[0].email_id, resp.email_id);
  assert.equal(resp.user.external_id, undefined); // spec §5.8: absent external_id is omitted
});

test('users.create as pending gives status "pending"', async () => {
  const resp = await h.client().users.create({ email: h.uniqueEmail('pending'), create_user_as_pending: true });
  h.assertRequestEnvelope(resp);
  assert.equal(resp.status, 'pending');
  assert.equal(resp.user.status, 'pending');
  const got = await h.client().users.get({ user_id: resp.user_id });
  assert.equal(got.status, 'pending');
});

test('users.create with external_id; users.get by id and by external id (with "|")', async () => {
  const external_id = `node|ext|${h.uniqueExternalId('pipe')}`;
  const email = h.uniqueEmail('ext');
  const created = await h.client().users.create({
    email,
    external_id,
    name: { first_name: 'Grace', last_name: 'Hopper' },
    trusted_metadata: { plan: 'pro' },
    untrusted_metadata: { theme: 'dark' },
  });
  h.assertRequestEnvelope(created);
  assert.equal(created.user.external_id, external_id);

  // By user_id: Get User flattens the User at the top level (no `user` wrapper).
  const byId = await h.client().users.get({ user_id: created.user_id });
  h.assertRequestEnvelope(byId);
  h.assertUserShape(byId);
  assert.equal(byId.user, undefined);
  assert.equal(byId.user_id, created.user_id);
  assert.equal(byId.external_id, external_id);
  assert.equal(byId.emails[0].email, email);
  assert.equal(byId.name.first_name, 'Grace');
  assert.equal(byId.name.last_name, 'Hopper');
  assert.deepEqual(byId.trusted_metadata, { plan: 'pro' });
  assert.deepEqual(byId.untrusted_metadata, { theme: 'dark' });
  assert.match(byId.created_at, h.RFC3339_UTC_RE);

  // By external id: the SDK sends /v1/users/node%7Cext%7C... (encodeURIComponent).
  const byExt = await h.client().users.get({ user_id: external_id });
  h.assertRequestEnvelope(byExt);
  assert.equal(byExt.user_id, created.user_id);
  assert.equal(byExt.external_id, external_id);
});

test('users.update: name, metadata top-level merge (null deletes a key), external_id', async () => {
  const { user_id } = await h.createUser({
    trusted_metadata: { keep: 'yes', drop: 1, nested: { a: 1, b: 2 } },
    untrusted_metadata: { u1: 'one' },
  });

  const updated = await h.client().users.update({
    user_id,
    name: { first_name: 'Ada', last_name: 'Lovelace' },
    trusted_metadata: { drop: null, nested: { c: 3 }, added: true },
    untrusted_metadata: { u2: 'two' },
  });
  h.assertRequestEnvelope(updated);
  assert.equal(updated.user_id, user_id);
  assert.ok(Array.isArray(updated.emails));
  assert.ok(Array.isArray(updated.phone_numbers));
  assert.ok(Array.isArray(updated.crypto_wallets));
  h.assertUserShape(updated.user);
  assert.equal(updated.user.name.first_name, 'Ada');
  assert.equal(updated.user.name.last_name, 'Lovelace');
  // Merged at the top level only: null deletes, nested objects are replaced wholesale.
  assert.deepEqual(updated.user.trusted_metadata, { keep: 'yes', nested: { c: 3 }, added: true });
  assert.deepEqual(updated.user.untrusted_metadata, { u1: 'one', u2: 'two' });

  const got = await h.client().users.get({ user_id });
  assert.deepEqual(got.trusted_metadata, { keep: 'yes', nested: { c: 3 }, added: true });
  assert.equal(got.name.first_name, 'Ada');

  // Set, then change, the external id; the new one resolves, the old one does not.
  const ext1 = h.uniqueExternalId('upd1');
  const r1 = await h.client().users.update({ user_id, external_id: ext1 });
  assert.equal(r1.user.external_id, ext1);
  assert.equal((await h.client().users.get({ user_id: ext1 })).user_id, user_id);

  const ext2 = `${h.uniqueExternalId('upd2')}|v2`;
  const r2 = await h.client().users.update({ user_id: ext1, external_id: ext2 });
  assert.equal(r2.user_id, user_id);
  assert.equal(r2.user.external_id, ext2);
  assert.equal((await h.client().users.get({ user_id: ext2 })).user_id, user_id);
  await h.expectStytchError(h.client().users.get({ user_id: ext1 }), 404, 'user_not_found');
});

test('users.delete removes the user', async () => {
  const { user_id } = await h.createUser();
  const resp = await h.client().users.delete({ user_id });
  h.assertRequestEnvelope(resp);
  assert.equal(resp.user_id, user_id);
  await h.expectStytchError(h.client().users.get({ user_id }), 404, 'user_not_found');
  await h.expectStytchError(h.client().totps.create({ user_id }), 404, 'user_not_found');
});

test('users.delete by external id', async () => {
  const external_id = h.uniqueExternalId('del');
  const { user_id } = await h.createUser({ external_id });
  const resp = await h.client().users.delete({ user_id: external_id });
  assert.equal(resp.user_id, user_id);
  await h.expectStytchError(h.client().users.get({ user_id }), 404, 'user_not_found');
});

test('users.deleteTOTP removes the TOTP from the user; a new one can then be created', async () => {
  const u = await h.createUserWithTotp();
  const step = h.currentStep();
  await h.client().totps.authenticate({ user_id: u.user_id, totp_code: h.totpAt(u.totp.secret, step) });

  const resp = await h.client().users.deleteTOTP({ totp_id: u.totp.totp_id });
  h.assertRequestEnvelope(resp);
  assert.equal(resp.user_id, u.user_id);
  h.assertUserShape(resp.user);
  assert.ok(!resp.user.totps.some((t) => t.totp_id === u.totp.totp_id), 'deleted TOTP still listed');

  const got = await h.client().users.get({ user_id: u.user_id });
  assert.deepEqual(got.totps, []);

  const codes = await h.client().totps.recoveryCodes({ user_id: u.user_id });
  assert.deepEqual(codes.totps, []);

  // With the verified TOTP gone, creating a new one is allowed again.
  const again = await h.client().totps.create({ user_id: u.user_id });
  assert.notEqual(again.totp_id, u.totp.totp_id);

  // Deleting the same TOTP twice: it no longer exists in this project.
  await h.expectStytchError(h.client().users.deleteTOTP({ totp_id: u.totp.totp_id }), 404, 'totp_not_found');
});
