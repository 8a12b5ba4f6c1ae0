'use strict';
// Shared helpers for the Stytch Node SDK (stytch@14.2.0) compatibility suite.
// The suite runs against an already-running Latch server named by env vars:
//   LATCH_BASE_URL (no trailing slash), LATCH_PROJECT_ID, LATCH_SECRET,
//   LATCH_PROJECT2_ID, LATCH_SECRET2, LATCH_LOCK_THRESHOLD (default 10).

const crypto = require('node:crypto');
const assert = require('node:assert/strict');
const stytch = require('stytch');

function requireEnv(name) {
  const value = process.env[name];
  if (!value) {
    // Thrown at load time on purpose: a missing server must FAIL the suite, never skip it.
    throw new Error(
      `${name} is not set. The SDK compatibility suite needs a running Latch server: ` +
        'export LATCH_BASE_URL (e.g. http://127.0.0.1:18080), LATCH_PROJECT_ID, LATCH_SECRET, ' +
        'LATCH_PROJECT2_ID and LATCH_SECRET2 (optional LATCH_LOCK_THRESHOLD, default 10).',
    );
  }
  return value;
}

const BASE_URL = requireEnv('LATCH_BASE_URL').replace(/\/+$/, '');
const PROJECT_ID = requireEnv('LATCH_PROJECT_ID');
const SECRET = requireEnv('LATCH_SECRET');
const LOCK_THRESHOLD = Number.parseInt(process.env.LATCH_LOCK_THRESHOLD || '10', 10);
if (!Number.isInteger(LOCK_THRESHOLD) || LOCK_THRESHOLD < 2) {
  throw new Error(`LATCH_LOCK_THRESHOLD must be an integer >= 2, got ${process.env.LATCH_LOCK_THRESHOLD}`);
}

// "test" or "live": every id the server mints carries the project's word (spec §5.12, §5.13).
const ENV_WORD = PROJECT_ID.startsWith('project-live-') ? 'live' : 'test';
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const ID_RE = {
  user: new RegExp(`^user-${ENV_WORD}-${UUID}$`),
  totp: new RegExp(`^totp-${ENV_WORD}-${UUID}$`),
  email: new RegExp(`^email-${ENV_WORD}-${UUID}$`),
  request: new RegExp(`^request-id-${ENV_WORD}-${UUID}$`),
  session: new RegExp(`^session-${ENV_WORD}-${UUID}$`),
  jwk: new RegExp(`^jwk-${ENV_WORD}-${UUID}$`),
};
// Session tokens: 44 base64url characters (spec §4).
const SESSION_TOKEN_RE = /^[A-Za-z0-9_-]{44}$/;
const RECOVERY_CODE_RE = /^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$/;
const RFC3339_UTC_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

// Node needs the trailing slash: `env` is used verbatim as the base URL (spec §1.6).
function makeClient(project_id = PROJECT_ID, secret = SECRET) {
  return new stytch.Client({ project_id, secret, env: BASE_URL + '/' });
}

let sharedClient;
function client() {
  if (!sharedClient) sharedClient = makeClient();
  return sharedClient;
}

function project2() {
  const project_id = process.env.LATCH_PROJECT2_ID;
  const secret = process.env.LATCH_SECRET2;
  if (!project_id || !secret) {
    assert.fail('LATCH_PROJECT2_ID and LATCH_SECRET2 must be set (a second test project for isolation checks).');
  }
  return { project_id, secret, client: makeClient(project_id, secret) };
}

// ---- unique names so the suite can run repeatedly against one server ----

function suffix() {
  return `${Date.now().toString(36)}${crypto.randomBytes(5).toString('hex')}`;
}
function uniqueEmail(tag = 'user') {
  return `node-${tag}-${suffix()}@example.com`;
}
function uniqueExternalId(tag = 'ext') {
  return `node-${tag}-${suffix()}`;
}

// ---- RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s) ----

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32Decode(input) {
  const clean = input.toUpperCase().replace(/=+$/, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const idx = BASE32_ALPHABET.indexOf(ch);
    if (idx < 0) throw new Error(`invalid base32 character ${JSON.stringify(ch)}`);
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

const PERIOD_SECONDS = 30;

function currentStep(nowMs = Date.now()) {
  return Math.floor(nowMs / 1000 / PERIOD_SECONDS);
}

function totpAt(secretBase32, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', base32Decode(secretBase32)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 1_000_000).padStart(6, '0');
}

// A 6-digit code that matches none of the steps the server could accept now or shortly after.
function wrongCode(secretBase32, step = currentStep()) {
  const taken = new Set();
  for (let s = Math.max(0, step - 3); s <= step + 3; s += 1) taken.add(totpAt(secretBase32, s));
  for (let n = 0; ; n += 1) {
    const candidate = String((n * 7919 + 123457) % 1_000_000).padStart(6, '0');
    if (!taken.has(candidate)) return candidate;
  }
}

// ---- assertions ----

// Asserts the promise rejects with a StytchError carrying the Stytch error envelope (spec §3.1).
async function expectStytchError(promise, status, errorType) {
  let err;
  try {
    const value = await promise;
    assert.fail(`expected StytchError ${status} ${errorType}, got success: ${JSON.stringify(value)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.ok(err instanceof stytch.StytchError, `expected StytchError, got ${err && err.constructor && err.constructor.name}: ${err && err.message}`);
  assert.equal(err.error_type, errorType, `error_type (body: ${err.message})`);
  assert.equal(err.status_code, status, `status_code (body: ${err.message})`);
  assert.match(err.request_id, ID_RE.request);
  assert.equal(typeof err.error_message, 'string');
  assert.ok(err.error_message.length > 0, 'error_message is empty');
  return err;
}

function assertRequestEnvelope(resp, status = 200) {
  assert.equal(resp.status_code, status);
  assert.match(resp.request_id, ID_RE.request);
}

// Checks the User object shape every SDK relies on (spec §2.1).
function assertUserShape(user) {
  assert.match(user.user_id, ID_RE.user);
  for (const key of [
    'emails',
    'phone_numbers',
    'webauthn_registrations',
    'providers',
    'totps',
    'crypto_wallets',
    'biometric_registrations',
    'roles',
  ]) {
    assert.ok(Array.isArray(user[key]), `user.${key} must be an array, got ${JSON.stringify(user[key])}`);
  }
  assert.ok(user.status === 'active' || user.status === 'pending', `user.status ${user.status}`);
  assert.equal(typeof user.is_locked, 'boolean');
  for (const t of user.totps) {
    assert.equal(typeof t.totp_id, 'string');
    assert.equal(typeof t.verified, 'boolean');
  }
  for (const e of user.emails) {
    assert.match(e.email_id, ID_RE.email);
    assert.equal(typeof e.email, 'string');
    assert.equal(typeof e.verified, 'boolean');
  }
  if (user.created_at !== undefined && user.created_at !== null) assert.match(user.created_at, RFC3339_UTC_RE);
  for (const k of ['lock_created_at', 'lock_expires_at']) {
    assert.notEqual(user[k], '', `${k} must be null/absent or a timestamp, never ""`);
  }
}

// Checks the Session object shape (spec §2.1). `minutes`, when given, is the lifetime the session
// was created with (expires_at - started_at).
function assertSessionShape(session, { user_id, minutes } = {}) {
  assert.ok(session && typeof session === 'object', `session must be an object, got ${JSON.stringify(session)}`);
  assert.match(session.session_id, ID_RE.session);
  if (user_id !== undefined) assert.equal(session.user_id, user_id);
  assert.ok(Array.isArray(session.authentication_factors), 'authentication_factors must be an array');
  assert.ok(session.authentication_factors.length >= 1, 'a session has at least one factor');
  assert.ok(Array.isArray(session.roles), 'roles must be an array');
  for (const r of session.roles) assert.equal(typeof r, 'string');
  for (const k of ['started_at', 'last_accessed_at', 'expires_at']) {
    assert.match(session[k], RFC3339_UTC_RE, `session.${k}`);
  }
  assert.ok(Date.parse(session.expires_at) > Date.parse(session.started_at), 'expires_at after started_at');
  if (minutes !== undefined) {
    assert.equal(Date.parse(session.expires_at) - Date.parse(session.started_at), minutes * 60_000, 'session lifetime');
  }
  assert.equal(typeof session.attributes, 'object');
  assert.equal(typeof session.custom_claims, 'object');
  for (const f of session.authentication_factors) {
    assert.equal(typeof f.type, 'string');
    assert.equal(typeof f.delivery_method, 'string');
    for (const k of ['last_authenticated_at', 'created_at', 'updated_at']) {
      if (f[k] !== undefined && f[k] !== null) assert.match(f[k], RFC3339_UTC_RE, `factor.${k}`);
    }
  }
}

// The TOTP factor as both SDKs expect it (closed enums in Python, spec §2.0).
function assertTotpFactor(f, totp_id) {
  assert.equal(f.type, 'totp');
  assert.equal(f.delivery_method, 'authenticator_app');
  assert.deepEqual(f.authenticator_app_factor, { totp_id });
  assert.equal(f.recovery_code_factor ?? null, null);
}

function assertRecoveryCodeFactor(f) {
  assert.equal(f.type, 'recovery_codes');
  assert.equal(f.delivery_method, 'recovery_code');
  assert.equal(typeof f.recovery_code_factor?.totp_recovery_code_id, 'string');
  assert.ok(f.recovery_code_factor.totp_recovery_code_id.length > 0, 'totp_recovery_code_id is empty');
  assert.equal(f.authenticator_app_factor ?? null, null);
}

// ---- JWTs (decoded by hand; verification is the SDK's job) ----

function decodeJwt(jwt) {
  const parts = jwt.split('.');
  assert.equal(parts.length, 3, `a compact JWS has 3 parts: ${jwt}`);
  return {
    header: JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')),
    parts,
  };
}

// The same header and signature over a different payload: mutate(payload) edits the claims.
function jwtWithPayload(jwt, mutate) {
  const { payload, parts } = decodeJwt(jwt);
  mutate(payload);
  return [parts[0], Buffer.from(JSON.stringify(payload)).toString('base64url'), parts[2]].join('.');
}

// Replaces one character of part `index` (0 header, 1 payload, 2 signature) with another
// base64url character (taken from the middle, so no padding bits are involved).
function jwtWithFlippedChar(jwt, index) {
  const parts = jwt.split('.');
  const s = parts[index];
  const i = Math.floor(s.length / 2);
  parts[index] = s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
  return parts.join('.');
}

// ---- flows ----

async function createUser(extra = {}) {
  const email = extra.email || uniqueEmail();
  const resp = await client().users.create({ email, ...extra });
  return { email, user_id: resp.user_id, resp };
}

// Creates a user and a TOTP for it; returns { user_id, email, totp } (totp = create response).
async function createUserWithTotp(extra = {}) {
  const u = await createUser(extra);
  const totp = await client().totps.create({ user_id: u.user_id });
  return { ...u, totp };
}

module.exports = {
  stytch,
  BASE_URL,
  PROJECT_ID,
  SECRET,
  LOCK_THRESHOLD,
  ENV_WORD,
  ID_RE,
  SESSION_TOKEN_RE,
  RECOVERY_CODE_RE,
  RFC3339_UTC_RE,
  makeClient,
  client,
  project2,
  uniqueEmail,
  uniqueExternalId,
  base32Decode,
  currentStep,
  totpAt,
  wrongCode,
  expectStytchError,
  assertRequestEnvelope,
  assertUserShape,
  assertSessionShape,
  assertTotpFactor,
  assertRecoveryCodeFactor,
  decodeJwt,
  jwtWithPayload,
  jwtWithFlippedChar,
  createUser,
  createUserWithTotp,
};
