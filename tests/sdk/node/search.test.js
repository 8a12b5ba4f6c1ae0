'use strict';
// Users search (POST /v1/users/search, spec §2.3) through the official Node SDK (stytch@14.2.0).
//
// The test project is shared with every other test (and with earlier runs), so each search here is
// scoped to this file's own users: their emails carry a random marker and every query ANDs an
// `email_address_fuzzy` operand on it (the OR query names two unique emails instead, as OR applies
// to all operands).
//
// What the SDK constrains (read from node_modules/stytch/dist/b2c/users.js and types):
// - `users.search(data)` posts `data` as-is (cursor, limit, query); `query` is
//   {operator: "AND" | "OR" | string, operands: [{filter_name, filter_value}]}, and the operand type
//   has a catch-all `{filter_name: string, [key]: unknown}` member, so unknown filters type-check.
// - `users.searchAll(data)` returns a `UserSearchIterator`, not a promise: an async iterator whose
//   items are PAGES (`User[]`, one per request). It calls `search` with the current cursor, then
//   stores `results_metadata.next_cursor` as the next cursor and stops when it is falsy (null,
//   absent or ""). `results_metadata` (total, next_cursor) is never exposed by the iterator.

const crypto = require('node:crypto');
const { describe, it, before } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

// A unique E.164 number: +1 555 and 10 random digits (14 digits; the server takes 7 to 15).
function uniquePhone() {
  return `+1555${String(crypto.randomInt(0, 10_000_000_000)).padStart(10, '0')}`;
}

// Expected order: created_at, then user_id, oldest first (created_at is second-precision RFC 3339 UTC,
// so string order is time order).
function byCreation(a, b) {
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? -1 : 1;
  return a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : 0;
}

describe('users.search', () => {
  const marker = h.uniqueExternalId('search'); // node-search-<time><random>
  const byMarker = { filter_name: 'email_address_fuzzy', filter_value: marker };
  // AND of the marker and any further operands.
  const and = (...operands) => ({ operator: 'AND', operands: [byMarker, ...operands] });

  // u[i] = { user_id, email, email_id, phone, phone_id, created_at, totp }
  const u = [];
  let ordered; // the 7 user ids in the order the server must return them

  before(async () => {
    const c = h.client();
    const specs = [
      { name: { first_name: 'Ada', last_name: 'Lovelace' }, phone: true, totp: 'verified' },
      { totp: 'verified' },
      { phone: true, totp: 'unverified' },
      { phone: true, create_user_as_pending: true },
      { name: { first_name: 'Grace', middle_name: 'Brewster', last_name: 'Hopper' } },
      {},
      {},
    ];
    for (const [i, s] of specs.entries()) {
      const email = `${marker}-${i}@example.com`;
      const phone_number = s.phone ? uniquePhone() : undefined;
      const req = { email };
      if (phone_number) req.phone_number = phone_number;
      if (s.name) req.name = s.name;
      if (s.create_user_as_pending) req.create_user_as_pending = true;
      const resp = await c.users.create(req);
      assert.match(resp.email_id, h.ID_RE.email);
      assert.equal(resp.status, s.create_user_as_pending ? 'pending' : 'active');
      const entry = {
        user_id: resp.user_id,
        email,
        email_id: resp.email_id,
        phone: phone_number,
        phone_id: resp.phone_id,
        created_at: resp.user.created_at,
        totp: undefined,
      };
      if (s.totp) {
        entry.totp = await c.totps.create({ user_id: resp.user_id });
        if (s.totp === 'verified') {
          const auth = await c.totps.authenticate({
            user_id: resp.user_id,
            totp_code: h.totpAt(entry.totp.secret, h.currentStep()),
          });
          assert.deepEqual(auth.user.totps, [{ totp_id: entry.totp.totp_id, verified: true }]);
        }
      }
      u.push(entry);
    }
    assert.equal(u.length, 7);
    for (const e of u) assert.match(e.created_at, h.RFC3339_UTC_RE);
    ordered = [...u].sort(byCreation).map((e) => e.user_id);
  });

  // One page that holds every match: the envelope, full User objects, total = number of results and
  // no next cursor. Returns the user ids in the order the server sent them.
  async function searchIds(query, client = h.client()) {
    const resp = await client.users.search({ query });
    h.assertRequestEnvelope(resp);
    assert.ok(Array.isArray(resp.results), 'results must be an array');
    for (const user of resp.results) h.assertUserShape(user);
    assert.equal(resp.results_metadata.total, resp.results.length, 'total');
    assert.equal(resp.results_metadata.next_cursor ?? null, null, 'next_cursor on the only page');
    return resp.results.map((user) => user.user_id);
  }

  // The expected ids, in server order (created_at, then user_id).
  const want = (...idx) => ordered.filter((id) => idx.some((i) => u[i].user_id === id));

  it('the marker alone finds all 7 users, oldest first, with full User objects', async () => {
    const resp = await h.client().users.search({ query: and() });
    h.assertRequestEnvelope(resp);
    assert.equal(resp.results_metadata.total, 7);
    assert.equal(resp.results_metadata.next_cursor ?? null, null);
    assert.deepEqual(
      resp.results.map((r) => r.user_id),
      ordered,
    );
    for (const user of resp.results) h.assertUserShape(user);

    const ada = resp.results.find((r) => r.user_id === u[0].user_id);
    assert.deepEqual(ada.emails.map((e) => [e.email, e.email_id]), [[u[0].email, u[0].email_id]]);
    assert.deepEqual(
      ada.phone_numbers.map((p) => [p.phone_number, p.phone_id]),
      [[u[0].phone, u[0].phone_id]],
    );
    assert.deepEqual(ada.totps, [{ totp_id: u[0].totp.totp_id, verified: true }]);
    assert.equal(ada.name.first_name, 'Ada');
    assert.equal(ada.name.last_name, 'Lovelace');
    const pending = resp.results.find((r) => r.user_id === u[3].user_id);
    assert.equal(pending.status, 'pending');
  });

  it('totp_verified true → the 2 users with a verified TOTP', async () => {
    assert.deepEqual(await searchIds(and({ filter_name: 'totp_verified', filter_value: true })), want(0, 1));
  });

  it('totp_verified false → the user whose TOTP is not verified yet', async () => {
    assert.deepEqual(await searchIds(and({ filter_name: 'totp_verified', filter_value: false })), want(2));
  });

  it('totp_id [id] → the owner of that TOTP', async () => {
    assert.deepEqual(await searchIds(and({ filter_name: 'totp_id', filter_value: [u[2].totp.totp_id] })), want(2));
    assert.deepEqual(
      await searchIds(and({ filter_name: 'totp_id', filter_value: [u[0].totp.totp_id, u[2].totp.totp_id] })),
      want(0, 2),
    );
  });

  it('OR of two email_address operands → both users (email matched case-insensitively)', async () => {
    const query = {
      operator: 'OR',
      operands: [
        { filter_name: 'email_address', filter_value: [u[1].email] },
        { filter_name: 'email_address', filter_value: [u[4].email.toUpperCase()] },
      ],
    };
    assert.deepEqual(await searchIds(query), want(1, 4));
  });

  it('status pending → the pending user; status active → the other 6', async () => {
    assert.deepEqual(await searchIds(and({ filter_name: 'status', filter_value: 'pending' })), want(3));
    assert.deepEqual(await searchIds(and({ filter_name: 'status', filter_value: 'active' })), want(0, 1, 2, 4, 5, 6));
  });

  it('full_name_fuzzy matches part of first/middle/last name, case-insensitively', async () => {
    assert.deepEqual(await searchIds(and({ filter_name: 'full_name_fuzzy', filter_value: 'ada love' })), want(0));
    assert.deepEqual(await searchIds(and({ filter_name: 'full_name_fuzzy', filter_value: 'BREWSTER' })), want(4));
  });

  it('phone_number [list], phone_id [list] and phone_number_fuzzy', async () => {
    assert.deepEqual(
      await searchIds(and({ filter_name: 'phone_number', filter_value: [u[0].phone, u[3].phone] })),
      want(0, 3),
    );
    assert.deepEqual(await searchIds(and({ filter_name: 'phone_id', filter_value: [u[2].phone_id] })), want(2));
    assert.deepEqual(await searchIds(and({ filter_name: 'phone_number_fuzzy', filter_value: '1555' })), want(0, 2, 3));
  });

  it('user_id [list], email_id [list] and email_verified', async () => {
    assert.deepEqual(
      await searchIds(and({ filter_name: 'user_id', filter_value: [u[6].user_id, u[1].user_id, u[5].user_id] })),
      want(1, 5, 6),
    );
    assert.deepEqual(await searchIds(and({ filter_name: 'email_id', filter_value: [u[4].email_id] })), want(4));
    assert.deepEqual(await searchIds(and({ filter_name: 'email_verified', filter_value: false })), ordered);
    assert.deepEqual(await searchIds(and({ filter_name: 'email_verified', filter_value: true })), []);
  });

  it('created_at filters with bounds a minute away from the users', async () => {
    const first = Date.parse(u.map((e) => e.created_at).sort()[0]);
    const last = Date.parse(u.map((e) => e.created_at).sort()[6]);
    const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const lower = iso(first - 60_000);
    const upper = iso(last + 60_000);
    assert.deepEqual(await searchIds(and({ filter_name: 'created_at_greater_than', filter_value: lower })), ordered);
    assert.deepEqual(await searchIds(and({ filter_name: 'created_at_less_than', filter_value: lower })), []);
    assert.deepEqual(await searchIds(and({ filter_name: 'created_at_less_than', filter_value: upper })), ordered);
    assert.deepEqual(
      await searchIds(and({ filter_name: 'created_at_between', filter_value: { greater_than: lower, less_than: upper } })),
      ordered,
    );
  });

  it('several AND operands narrow together', async () => {
    assert.deepEqual(
      await searchIds(
        and({ filter_name: 'phone_number_fuzzy', filter_value: '1555' }, { filter_name: 'totp_verified', filter_value: true }),
      ),
      want(0),
    );
    assert.deepEqual(
      await searchIds(
        and({ filter_name: 'status', filter_value: 'pending' }, { filter_name: 'totp_verified', filter_value: true }),
      ),
      [],
    );
  });

  it('searchAll({ limit: 3, query }) walks pages of 3, 3, 1: every user exactly once, oldest first', async () => {
    const iterator = h.client().users.searchAll({ limit: 3, query: and() });
    assert.equal(typeof iterator[Symbol.asyncIterator], 'function', 'searchAll returns an async iterator');
    const pages = [];
    for await (const page of iterator) {
      assert.ok(Array.isArray(page), 'searchAll yields pages (arrays of users)');
      for (const user of page) h.assertUserShape(user);
      pages.push(page.map((user) => user.user_id));
      assert.ok(pages.length <= 10, 'searchAll did not stop');
    }
    assert.deepEqual(
      pages.map((p) => p.length),
      [3, 3, 1],
    );
    const all = pages.flat();
    assert.equal(new Set(all).size, 7, 'no user twice');
    assert.deepEqual(all, ordered);
    assert.equal(iterator.hasNext(), false);
  });

  it('search with cursor by hand: total 7 on every page, next_cursor until the last page', async () => {
    const seen = [];
    let cursor;
    for (let page = 1; ; page += 1) {
      assert.ok(page <= 10, 'the walk did not stop');
      const resp = await h.client().users.search({ limit: 3, query: and(), ...(cursor ? { cursor } : {}) });
      h.assertRequestEnvelope(resp);
      assert.equal(resp.results_metadata.total, 7, `total on page ${page}`);
      seen.push(...resp.results.map((user) => user.user_id));
      cursor = resp.results_metadata.next_cursor;
      if (page < 3) {
        assert.equal(resp.results.length, 3);
        assert.equal(typeof cursor, 'string', `next_cursor on page ${page}`);
        assert.ok(cursor.length > 0);
      } else {
        assert.equal(resp.results.length, 1);
        assert.equal(cursor ?? null, null, 'next_cursor on the last page');
        break;
      }
    }
    assert.deepEqual(seen, ordered);
  });

  describe('bad searches are 400 user_search_*', () => {
    it('a Stytch filter Latch does not have → user_search_filter_not_supported', async () => {
      for (const operand of [
        { filter_name: 'oauth_provider', filter_value: ['google'] },
        { filter_name: 'webauthn_registration_verified', filter_value: true },
        { filter_name: 'webauthn_registration_id', filter_value: ['webauthn-registration-test-x'] },
        { filter_name: 'crypto_wallet_id', filter_value: ['crypto-wallet-test-x'] },
        { filter_name: 'crypto_wallet_address', filter_value: ['0x0'] },
        { filter_name: 'crypto_wallet_verified', filter_value: false },
        { filter_name: 'password_exists', filter_value: true },
      ]) {
        await h.expectStytchError(
          h.client().users.search({ query: and(operand) }),
          400,
          'user_search_filter_not_supported',
        );
      }
    });

    it('an unknown filter_name → user_search_filter_name_not_recognized', async () => {
      await h.expectStytchError(
        h.client().users.search({ query: and({ filter_name: 'favourite_colour', filter_value: 'blue' }) }),
        400,
        'user_search_filter_name_not_recognized',
      );
    });

    it('a filter_value of the wrong type → user_search_invalid_filter_value', async () => {
      for (const operand of [
        { filter_name: 'totp_verified', filter_value: 'yes' },
        { filter_name: 'totp_id', filter_value: u[0].totp.totp_id }, // a string, not a list
        { filter_name: 'status', filter_value: 'deleted' },
        { filter_name: 'created_at_greater_than', filter_value: 'yesterday' },
      ]) {
        await h.expectStytchError(
          h.client().users.search({ query: and(operand) }),
          400,
          'user_search_invalid_filter_value',
        );
      }
    });

    it('limit 0 or 1001 → user_search_invalid_limit', async () => {
      for (const limit of [0, 1001]) {
        await h.expectStytchError(h.client().users.search({ limit, query: and() }), 400, 'user_search_invalid_limit');
      }
    });

    it('a garbage, tampered or other project\'s cursor → user_search_invalid_cursor', async () => {
      await h.expectStytchError(
        h.client().users.search({ cursor: 'garbage', query: and() }),
        400,
        'user_search_invalid_cursor',
      );

      const first = await h.client().users.search({ limit: 1, query: and() });
      const cursor = first.results_metadata.next_cursor;
      assert.equal(typeof cursor, 'string');
      const i = Math.floor(cursor.length / 2);
      const tampered = cursor.slice(0, i) + (cursor[i] === 'A' ? 'B' : 'A') + cursor.slice(i + 1);
      await h.expectStytchError(
        h.client().users.search({ cursor: tampered, limit: 1, query: and() }),
        400,
        'user_search_invalid_cursor',
      );
      await h.expectStytchError(
        h.project2().client.users.search({ cursor, limit: 1, query: and() }),
        400,
        'user_search_invalid_cursor',
      );

      // The untouched cursor still works.
      const second = await h.client().users.search({ cursor, limit: 1, query: and() });
      assert.deepEqual(
        second.results.map((user) => user.user_id),
        [ordered[1]],
      );
    });
  });

  it('project isolation: project 2 searching with the marker finds nothing', async () => {
    const p2 = h.project2().client;
    const resp = await p2.users.search({ query: and() });
    h.assertRequestEnvelope(resp);
    assert.deepEqual(resp.results, []);
    assert.equal(resp.results_metadata.total, 0);
    assert.equal(resp.results_metadata.next_cursor ?? null, null);
    assert.deepEqual(await searchIds(and({ filter_name: 'user_id', filter_value: [u[0].user_id] }), p2), []);
    assert.deepEqual(await searchIds(and({ filter_name: 'totp_verified', filter_value: true }), p2), []);
  });
});
