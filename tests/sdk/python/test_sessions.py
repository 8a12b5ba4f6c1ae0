"""Sessions through the official Python SDK (stytch==15.3.0, sync client) against Latch.

Sessions minted by totps.authenticate / totps.recover, local JWT verification by the SDK,
sessions.authenticate / get / revoke, JWKS, and the errors around them (spec §2.1, §2.2, §2.4).

Time steps: each 30 s step is accepted once per TOTP and the server accepts S-1..S+1, so a test's
first TOTP success uses the current step T's code and the next one T+1's (no test sleeps).
Recovery codes (10 per TOTP) are used where a test needs more successes.

What the Python SDK checks when it verifies a session JWT locally (read from the installed source:
stytch/consumer/api/sessions.py, stytch/shared/jwt_helpers.py, stytch/consumer/client.py and
PyJWT's api_jwt.py / jwks_client.py):

- Keys: ``jwt.PyJWKClient(<base>/v1/sessions/jwks/<project_id>)`` (urllib, no credentials; JSON
  object required; cached). ``get_signing_key_from_jwt`` decodes the token WITHOUT verification to
  read the header ``kid`` and picks the key with that kid among keys whose ``use`` is "sig" or
  absent (refetching once if the kid is unknown). This step runs outside the SDK's try/except: an
  undecodable token (e.g. a payload that is no longer JSON) raises ``jwt.DecodeError`` and an
  unknown kid raises ``jwt.PyJWKClientError`` out of ``authenticate_jwt_local``.
- ``jwt.decode(token, key, algorithms=["RS256"], audience=project_id,
  issuer=["stytch.com/<project_id>", base_url.rstrip("/")], leeway=leeway (default 0),
  options={"require": ["aud", "iss", "exp", "iat", "nbf"], verify signature/aud/iss/exp/iat/nbf})``:
  RS256 only (so "none" is refused), the signature, the five claims present, ``aud`` (string or
  list) containing the project id, ``iss`` one of the two issuers, ``exp`` in the future, ``nbf``
  and ``iat`` not in the future. The header ``typ`` is not checked (Node checks it). Any failure
  here makes ``authenticate_jwt_local`` return ``None`` (no exception).
- ``max_token_age_seconds`` (optional): ``None`` when now - iat >= max (0 = always ``None``).
- The Session is built from the "https://stytch.com/session" claim, indexing ``id``,
  ``started_at``, ``last_accessed_at``, ``attributes``, ``authentication_factors`` and ``roles``
  directly (KeyError if missing), ``expires_at`` from the claim (else ``exp``), ``sub`` as user_id,
  and every other non-registered claim as custom_claims. Revocation is NOT seen locally.
- ``authenticate_jwt``: local first; when it returns ``None`` (any decode/claim failure, or
  ``max_token_age_seconds=0``), POST /v1/sessions/authenticate with the JWT. An exception raised by
  the key lookup (above) propagates instead of falling back.
"""

from __future__ import annotations

import datetime
import json
import time
import urllib.request

import jwt as pyjwt
import pytest

import latch_sdk as L


def local_rejects(client, token: str) -> str:
    """Asserts the SDK's local verification refuses the token; says how (None or an exception)."""
    try:
        result = client.sessions.authenticate_jwt_local(session_jwt=token)
    except pyjwt.PyJWTError as e:  # raised by the key lookup before verification (see module doc)
        return f"raised {type(e).__name__}"
    assert result is None, f"tampered JWT verified locally: {result}"
    return "None"


@pytest.fixture
def user_with_session(client, new_user_with_totp):
    """Factory: a user with a verified TOTP and a session minted by authenticate with step T's code."""

    def make(minutes: int = 60, **extra):
        u = new_user_with_totp()
        step = L.current_step()
        auth = client.totps.authenticate(
            user_id=u.user_id,
            totp_code=L.totp_at(u.totp.secret, step),
            session_duration_minutes=minutes,
            **extra,
        )
        return u, step, auth

    return make


def test_authenticate_with_session_duration_mints_session(client, new_user_with_totp, settings, env_word):
    u = new_user_with_totp()
    before = int(time.time())
    resp = client.totps.authenticate(
        user_id=u.user_id,
        totp_code=L.totp_at(u.totp.secret, L.current_step()),
        session_duration_minutes=60,
        # Reserved claims are ignored (spec §2.2); the rest become custom claims.
        session_custom_claims={"plan": "pro", "sub": "ignored", "iss": "ignored", "nested": {"a": [1, 2]}},
    )
    L.assert_envelope(resp, env_word)
    assert resp.user_id == u.user_id
    assert resp.totp_id == u.totp.totp_id
    assert L.SESSION_TOKEN_RE.match(resp.session_token), resp.session_token
    assert isinstance(resp.session_jwt, str) and resp.session_jwt
    assert [(t.totp_id, t.verified) for t in resp.user.totps] == [(u.totp.totp_id, True)]

    s = resp.session
    L.assert_session_shape(s, u.user_id, env_word, minutes=60)
    assert len(s.authentication_factors) == 1
    L.assert_totp_factor(s.authentication_factors[0], u.totp.totp_id)
    assert s.roles == resp.user.roles
    assert s.custom_claims == {"plan": "pro", "nested": {"a": [1, 2]}}
    assert s.started_at == s.last_accessed_at

    # The JWT, decoded by hand (spec §2.1 "Session JWT").
    header, payload, _ = L.decode_jwt(resp.session_jwt)
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    assert L.id_re("jwk", env_word).match(header["kid"]), header
    assert payload["aud"] == [settings.project_id]
    assert payload["iss"] == f"stytch.com/{settings.project_id}"
    assert payload["sub"] == u.user_id
    for k in ("iat", "nbf", "exp"):
        assert isinstance(payload[k], int), (k, payload[k])
    assert payload["exp"] - payload["iat"] == 300
    assert payload["nbf"] <= payload["iat"]
    assert abs(payload["iat"] - before) < 120, (payload["iat"], before)
    assert payload["plan"] == "pro"
    assert payload["nested"] == {"a": [1, 2]}
    claim = payload[L.SESSION_CLAIM]
    assert claim["id"] == s.session_id
    assert datetime.datetime.fromisoformat(claim["started_at"].replace("Z", "+00:00")) == s.started_at
    assert datetime.datetime.fromisoformat(claim["expires_at"].replace("Z", "+00:00")) == s.expires_at
    assert isinstance(claim["last_accessed_at"], str)
    assert isinstance(claim["attributes"], dict)
    assert claim["roles"] == s.roles
    assert [(f["type"], f["authenticator_app_factor"]["totp_id"]) for f in claim["authentication_factors"]] == [
        ("totp", u.totp.totp_id)
    ]


def test_jwks_served_with_and_without_credentials(client, settings, env_word, user_with_session):
    _, _, auth = user_with_session()
    header, _, _ = L.decode_jwt(auth.session_jwt)

    resp = client.sessions.get_jwks(project_id=settings.project_id)  # every JWK field is required here
    L.assert_envelope(resp, env_word)
    assert resp.keys
    for k in resp.keys:
        assert k.kty == "RSA"
        assert k.use == "sig"
        assert "verify" in k.key_ops
        assert k.alg == "RS256"
        assert L.id_re("jwk", env_word).match(k.kid), k.kid
        assert isinstance(k.x5c, list)
        assert isinstance(k.x5tS256, str)
        assert k.n and k.e
    assert header["kid"] in {k.kid for k in resp.keys}

    # The endpoint is public: PyJWKClient fetches it without credentials (spec §5.14).
    with urllib.request.urlopen(f"{settings.base_url}/v1/sessions/jwks/{settings.project_id}") as r:
        assert r.status == 200
        body = json.loads(r.read())
    assert sorted(k["kid"] for k in body["keys"]) == sorted(k.kid for k in resp.keys)


def test_local_jwt_verification(client, env_word, user_with_session):
    u, _, auth = user_with_session(session_custom_claims={"plan": "pro"})
    token = auth.session_jwt
    s = auth.session

    # authenticate_jwt_local: verified against the JWKS, no call to sessions/authenticate.
    local = client.sessions.authenticate_jwt_local(session_jwt=token)
    assert local is not None, "the real JWT did not verify locally"
    assert local.session_id == s.session_id
    assert local.user_id == u.user_id
    assert len(local.authentication_factors) == 1
    L.assert_totp_factor(local.authentication_factors[0], u.totp.totp_id)
    assert local.roles == s.roles
    assert local.custom_claims == {"plan": "pro"}
    assert local.started_at == s.started_at
    assert local.expires_at == s.expires_at

    # The SDK's own age check.
    assert client.sessions.authenticate_jwt_local(session_jwt=token, max_token_age_seconds=120) is not None
    assert client.sessions.authenticate_jwt_local(session_jwt=token, max_token_age_seconds=0) is None

    # authenticate_jwt prefers the local path: no API round trip (request_id "").
    via = client.sessions.authenticate_jwt(session_jwt=token)
    assert via.request_id == ""
    assert via.session_jwt == token
    assert via.session.session_id == s.session_id
    # max_token_age_seconds=0 makes the local result None, so it asks POST /v1/sessions/authenticate.
    remote = client.sessions.authenticate_jwt(session_jwt=token, max_token_age_seconds=0)
    L.assert_envelope(remote, env_word)
    assert remote.session.session_id == s.session_id
    assert remote.session_jwt

    # Tampered JWTs: every one is refused locally.
    forged_sub = L.jwt_with_payload(token, lambda p: p.update(sub=L.random_id("user", env_word)))
    tampered = {
        "payload claims changed (sub), signature kept": forged_sub,
        "payload claims changed (exp + 1 h), signature kept": L.jwt_with_payload(
            token, lambda p: p.update(exp=p["exp"] + 3600)
        ),
        "session claim changed (roles), signature kept": L.jwt_with_payload(
            token, lambda p: p[L.SESSION_CLAIM].update(roles=["admin"])
        ),
        "one payload character flipped": L.jwt_with_flipped_char(token, 1),
        "one signature character flipped": L.jwt_with_flipped_char(token, 2),
        'alg "none" without a signature': L.jwt_with_header(token, lambda h: h.update(alg="none"), signature=""),
        "unknown kid": L.jwt_with_header(token, lambda h: h.update(kid=L.random_id("jwk", env_word))),
    }
    for what, bad in tampered.items():
        assert bad != token, what
        try:
            local_rejects(client, bad)
        except AssertionError as e:
            raise AssertionError(f"{what}: {e}") from e

    # authenticate_jwt falls back to the API when local verification returns None; the server
    # checks the signature too.
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate_jwt(session_jwt=forged_sub)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_jwt=forged_sub)

    # The real JWT still verifies afterwards.
    assert client.sessions.authenticate_jwt_local(session_jwt=token).session_id == s.session_id


def test_session_lifecycle(client, env_word, user_with_session):
    """authenticate by token and by JWT → extend → get → revoke by id / token / JWT."""
    u, _, auth = user_with_session()
    sid = auth.session.session_id

    # By token: the same token back, a JWT, the user.
    resp = client.sessions.authenticate(session_token=auth.session_token)
    L.assert_envelope(resp, env_word)
    L.assert_session_shape(resp.session, u.user_id, env_word)
    assert resp.session.session_id == sid
    assert resp.session_token == auth.session_token
    assert resp.session_jwt
    assert resp.user.user_id == u.user_id
    L.assert_totp_factor(resp.session.authentication_factors[0], u.totp.totp_id)
    assert client.sessions.authenticate_jwt_local(session_jwt=resp.session_jwt).session_id == sid

    # By JWT: session_token "" and a fresh JWT for the same session.
    resp = client.sessions.authenticate(session_jwt=auth.session_jwt)
    L.assert_envelope(resp, env_word)
    assert resp.session.session_id == sid
    assert resp.session_token == ""
    _, payload, _ = L.decode_jwt(resp.session_jwt)
    assert payload[L.SESSION_CLAIM]["id"] == sid
    assert payload["sub"] == u.user_id

    # session_duration_minutes extends it.
    resp = client.sessions.authenticate(session_token=auth.session_token, session_duration_minutes=180)
    assert resp.session.session_id == sid
    assert resp.session.expires_at - auth.session.expires_at >= datetime.timedelta(minutes=110)

    # Listed.
    got = client.sessions.get(user_id=u.user_id)
    L.assert_envelope(got, env_word)
    assert [x.session_id for x in got.sessions] == [sid]
    L.assert_session_shape(got.sessions[0], u.user_id, env_word)

    # Revoked by id: gone for token and JWT.
    L.assert_envelope(client.sessions.revoke(session_id=sid), env_word)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_token=auth.session_token)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_jwt=auth.session_jwt)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.revoke(session_id=sid)
    assert client.sessions.get(user_id=u.user_id).sessions == []
    # Local verification is stateless: a revoked session's JWT still verifies until its exp (at
    # most 5 minutes); max_token_age_seconds=0 forces the server check, which fails.
    assert client.sessions.authenticate_jwt_local(session_jwt=auth.session_jwt).session_id == sid
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate_jwt(session_jwt=auth.session_jwt, max_token_age_seconds=0)

    # Two more sessions (from recover) revoked by token and by JWT.
    a = client.totps.recover(user_id=u.user_id, recovery_code=u.totp.recovery_codes[0], session_duration_minutes=30)
    b = client.totps.recover(user_id=u.user_id, recovery_code=u.totp.recovery_codes[1], session_duration_minutes=30)
    assert a.session.session_id != b.session.session_id
    assert a.session_token != b.session_token
    listed = sorted(x.session_id for x in client.sessions.get(user_id=u.user_id).sessions)
    assert listed == sorted([a.session.session_id, b.session.session_id])

    L.assert_envelope(client.sessions.revoke(session_token=a.session_token), env_word)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_token=a.session_token)
    assert client.sessions.authenticate(session_token=b.session_token).session.session_id == b.session.session_id

    L.assert_envelope(client.sessions.revoke(session_jwt=b.session_jwt), env_word)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_token=b.session_token)
    assert client.sessions.get(user_id=u.user_id).sessions == []


def test_recover_session_then_totp_attaches(client, new_user_with_totp, env_word):
    u = new_user_with_totp()
    step = L.current_step()
    # Recovery codes only work once the TOTP is verified: step T verifies it (no session).
    assert client.totps.authenticate(user_id=u.user_id, totp_code=L.totp_at(u.totp.secret, step)).session is None

    rec = client.totps.recover(user_id=u.user_id, recovery_code=u.totp.recovery_codes[0], session_duration_minutes=60)
    L.assert_envelope(rec, env_word)
    assert rec.totp_id == u.totp.totp_id
    assert L.SESSION_TOKEN_RE.match(rec.session_token), rec.session_token
    assert rec.session_jwt
    L.assert_session_shape(rec.session, u.user_id, env_word, minutes=60)
    assert len(rec.session.authentication_factors) == 1
    L.assert_recovery_code_factor(rec.session.authentication_factors[0])
    local = client.sessions.authenticate_jwt_local(session_jwt=rec.session_jwt)
    assert local is not None and local.session_id == rec.session.session_id
    L.assert_recovery_code_factor(local.authentication_factors[0])

    # A TOTP authenticate (step T+1) with the session_token adds its factor to the same session.
    resp = client.totps.authenticate(
        user_id=u.user_id, totp_code=L.totp_at(u.totp.secret, step + 1), session_token=rec.session_token
    )
    L.assert_envelope(resp, env_word)
    assert resp.session.session_id == rec.session.session_id
    assert resp.session_token == rec.session_token
    factors = resp.session.authentication_factors
    assert len(factors) == 2, factors
    L.assert_recovery_code_factor(next(f for f in factors if f.type == "recovery_codes"))
    L.assert_totp_factor(next(f for f in factors if f.type == "totp"), u.totp.totp_id)
    local = client.sessions.authenticate_jwt_local(session_jwt=resp.session_jwt)
    assert local.session_id == rec.session.session_id
    assert sorted(f.type for f in local.authentication_factors) == ["recovery_codes", "totp"]
    assert [x.session_id for x in client.sessions.get(user_id=u.user_id).sessions] == [rec.session.session_id]

    # recover with session_jwt attaches too (session_token "" in the answer); the recovery_codes
    # factor is refreshed, not listed twice.
    again = client.totps.recover(
        user_id=u.user_id, recovery_code=u.totp.recovery_codes[1], session_jwt=rec.session_jwt
    )
    assert again.session.session_id == rec.session.session_id
    assert again.session_token == ""
    assert again.session_jwt
    assert sorted(f.type for f in again.session.authentication_factors) == ["recovery_codes", "totp"]


def test_session_errors(client, new_user_with_totp, env_word):
    u = new_user_with_totp()
    user_id = u.user_id
    step = L.current_step()
    code = L.totp_at(u.totp.secret, step)
    unknown_token = "A" * 44

    for minutes in (4, 0, 527041):
        with L.raises_stytch(400, "invalid_session_duration_minutes", env_word):
            client.totps.authenticate(user_id=user_id, totp_code=code, session_duration_minutes=minutes)
    with L.raises_stytch(400, "too_many_session_arguments", env_word):
        client.totps.authenticate(user_id=user_id, totp_code=code, session_token=unknown_token, session_jwt="a.b.c")
    with L.raises_stytch(404, "session_not_found", env_word):
        client.totps.authenticate(user_id=user_id, totp_code=code, session_token=unknown_token)
    with L.raises_stytch(400, "custom_claims_too_large", env_word):
        client.totps.authenticate(
            user_id=user_id, totp_code=code, session_duration_minutes=60, session_custom_claims={"k": "v" * 5000}
        )

    # None of the refused requests spent the code: it still mints a session.
    ok = client.totps.authenticate(user_id=user_id, totp_code=code, session_duration_minutes=60)
    L.assert_session_shape(ok.session, user_id, env_word, minutes=60)

    # recover: bad session arguments are refused before the recovery code is spent.
    rc = u.totp.recovery_codes[0]
    with L.raises_stytch(400, "invalid_session_duration_minutes", env_word):
        client.totps.recover(user_id=user_id, recovery_code=rc, session_duration_minutes=4)
    with L.raises_stytch(400, "too_many_session_arguments", env_word):
        client.totps.recover(user_id=user_id, recovery_code=rc, session_token=ok.session_token, session_jwt=ok.session_jwt)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.totps.recover(user_id=user_id, recovery_code=rc, session_token=unknown_token)
    assert client.totps.recover(user_id=user_id, recovery_code=rc).session is None

    # sessions.authenticate: both / neither (the SDK sends {} when no argument is given).
    with L.raises_stytch(400, "too_many_session_arguments", env_word):
        client.sessions.authenticate(session_token=ok.session_token, session_jwt=ok.session_jwt)
    with L.raises_stytch(400, "no_session_arguments", env_word):
        client.sessions.authenticate()
    with L.raises_stytch(400, "invalid_session_duration_minutes", env_word):
        client.sessions.authenticate(session_token=ok.session_token, session_duration_minutes=4)
    with L.raises_stytch(400, "unable_to_parse_session_jwt", env_word):
        client.sessions.authenticate(session_jwt="not-a-jwt")
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_token=unknown_token)

    # sessions.revoke: neither / two arguments.
    with L.raises_stytch(400, "no_session_revoke_arguments", env_word):
        client.sessions.revoke()
    with L.raises_stytch(400, "too_many_session_revoke_arguments", env_word):
        client.sessions.revoke(session_id=ok.session.session_id, session_token=ok.session_token)

    # A revoked token is session_not_found everywhere, and attaching to it spends nothing.
    client.sessions.revoke(session_token=ok.session_token)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_token=ok.session_token)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.revoke(session_token=ok.session_token)
    nxt = L.totp_at(u.totp.secret, step + 1)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.totps.authenticate(user_id=user_id, totp_code=nxt, session_token=ok.session_token)
    again = client.totps.authenticate(user_id=user_id, totp_code=nxt)
    assert again.totp_id == u.totp.totp_id
    assert again.session is None


def test_delete_totp_ends_its_sessions(client, env_word, user_with_session):
    u, _, auth = user_with_session()
    assert client.sessions.authenticate(session_token=auth.session_token).session.session_id == auth.session.session_id
    deleted = client.users.delete_totp(totp_id=u.totp.totp_id)
    assert deleted.user.totps == []
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_token=auth.session_token)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_jwt=auth.session_jwt)
    assert client.sessions.get(user_id=u.user_id).sessions == []


def test_delete_user_ends_its_sessions(client, env_word, user_with_session):
    u, _, auth = user_with_session()
    client.users.delete(user_id=u.user_id)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_token=auth.session_token)
    with L.raises_stytch(404, "session_not_found", env_word):
        client.sessions.authenticate(session_jwt=auth.session_jwt)
    with L.raises_stytch(404, "user_not_found", env_word):
        client.sessions.get(user_id=u.user_id)


def test_session_project_isolation(client, client2, env_word, user_with_session):
    u, _, auth = user_with_session()
    with L.raises_stytch(404, "session_not_found", env_word):
        client2.sessions.authenticate(session_token=auth.session_token)
    with L.raises_stytch(404, "session_not_found", env_word):
        client2.sessions.revoke(session_id=auth.session.session_id)
    with L.raises_stytch(404, "user_not_found", env_word):
        client2.sessions.get(user_id=u.user_id)
    # Project 2's JWKS does not hold project 1's key (and aud names project 1).
    local_rejects(client2, auth.session_jwt)
    # Untouched in project 1.
    assert client.sessions.authenticate(session_token=auth.session_token).session.session_id == auth.session.session_id


def test_session_flow_with_async_client(settings, env_word, new_user_with_totp):
    """The aiohttp path: authenticate with a session, sessions.*_async, local verification."""
    import asyncio

    u = new_user_with_totp()

    async def flow() -> None:
        client = L.make_client(settings)
        try:
            auth = await client.totps.authenticate_async(
                user_id=u.user_id, totp_code=L.totp_at(u.totp.secret, L.current_step()), session_duration_minutes=60
            )
            L.assert_session_shape(auth.session, u.user_id, env_word, minutes=60)
            sid = auth.session.session_id
            local = await client.sessions.authenticate_jwt_local_async(session_jwt=auth.session_jwt)
            assert local is not None and local.session_id == sid
            resp = await client.sessions.authenticate_async(session_token=auth.session_token)
            assert resp.session.session_id == sid
            got = await client.sessions.get_async(user_id=u.user_id)
            assert [x.session_id for x in got.sessions] == [sid]
            await client.sessions.revoke_async(session_id=sid)
            with L.raises_stytch(404, "session_not_found", env_word):
                await client.sessions.authenticate_async(session_token=auth.session_token)
        finally:
            await client.close()

    asyncio.run(flow())
