"""TOTP API through the official Python SDK (stytch==15.3.0, sync client) against Latch.

Time steps: a code for step T is computed locally; the server accepts steps S-1..S+1 and refuses
any step <= the last accepted one (spec §4, §5.5). After a success with T's code, a replay uses the
same code and the next success uses T+1's code, so no test sleeps for the clock.
"""

from __future__ import annotations

import base64

from stytch.core.response_base import StytchError

import latch_sdk as L


def test_rfc6238_vectors():
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # ASCII "12345678901234567890"
    assert L.base32_decode(secret) == b"12345678901234567890"
    assert L.totp_at(secret, 59 // 30) == "287082"
    assert L.totp_at(secret, 1111111109 // 30) == "081804"
    assert L.totp_at(secret, 20000000000 // 30) == "353130"


def test_create_totp_shape(client, new_user, env_word):
    u = new_user()
    resp = client.totps.create(user_id=u.user_id)
    L.assert_envelope(resp, env_word)
    assert L.id_re("totp", env_word).match(resp.totp_id)
    assert resp.user_id == u.user_id

    assert len(resp.secret) == 32 and resp.secret == resp.secret.upper()
    assert len(L.base32_decode(resp.secret)) == 20

    prefix = "data:image/png;base64,"
    assert resp.qr_code.startswith(prefix), resp.qr_code[:40]
    assert base64.b64decode(resp.qr_code[len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"

    assert len(resp.recovery_codes) == 10
    assert all(L.RECOVERY_CODE_RE.match(c) for c in resp.recovery_codes), resp.recovery_codes
    assert len(set(resp.recovery_codes)) == 10

    assert [(t.totp_id, t.verified) for t in resp.user.totps] == [(resp.totp_id, False)]
    got = client.users.get(user_id=u.user_id)
    assert [(t.totp_id, t.verified) for t in got.totps] == [(resp.totp_id, False)]


def test_create_totp_with_expiration(client, new_user, env_word):
    u = new_user()
    resp = client.totps.create(user_id=u.user_id, expiration_minutes=1440)
    assert L.id_re("totp", env_word).match(resp.totp_id)


def test_totp_lifecycle(client, new_user_with_totp, env_word):
    """authenticate → replay → next step → wrong code → recovery_codes → recover → reuse → create again.

    Ordered so that no more than one failure happens in a row (a success resets the lock counter).
    """
    u = new_user_with_totp()
    secret = u.totp.secret
    step = L.current_step()

    # authenticate: verifies the TOTP, no session.
    resp = client.totps.authenticate(user_id=u.user_id, totp_code=L.totp_at(secret, step))
    L.assert_envelope(resp, env_word)
    assert resp.user_id == u.user_id
    assert resp.totp_id == u.totp.totp_id
    assert resp.session_token == ""
    assert resp.session_jwt == ""
    assert resp.session is None
    assert resp.user_device is None
    assert [(t.totp_id, t.verified) for t in resp.user.totps] == [(u.totp.totp_id, True)]
    assert resp.user.status == "active"

    # replay of the same code.
    with L.raises_stytch(400, "totp_code_already_authenticated", env_word):
        client.totps.authenticate(user_id=u.user_id, totp_code=L.totp_at(secret, step))

    # the next step's code (skew ±1) is accepted.
    resp = client.totps.authenticate(user_id=u.user_id, totp_code=L.totp_at(secret, step + 1))
    assert resp.totp_id == u.totp.totp_id

    # a wrong code.
    with L.raises_stytch(401, "unable_to_authenticate_totp", env_word):
        client.totps.authenticate(user_id=u.user_id, totp_code=L.wrong_code(secret, step))

    # recovery codes: 10 unused codes of the verified TOTP.
    codes = client.totps.recovery_codes(user_id=u.user_id)
    L.assert_envelope(codes, env_word)
    assert codes.user_id == u.user_id
    assert [(t.totp_id, t.verified) for t in codes.totps] == [(u.totp.totp_id, True)]
    assert sorted(codes.totps[0].recovery_codes) == sorted(u.totp.recovery_codes)

    # recover with one code.
    code = u.totp.recovery_codes[0]
    rec = client.totps.recover(user_id=u.user_id, recovery_code=code)
    L.assert_envelope(rec, env_word)
    assert rec.user_id == u.user_id
    assert rec.totp_id == u.totp.totp_id
    assert rec.session_token == ""
    assert rec.session_jwt == ""
    assert rec.session is None
    assert [(t.totp_id, t.verified) for t in rec.user.totps] == [(u.totp.totp_id, True)]

    # reusing it.
    with L.raises_stytch(401, "unable_to_authenticate_recovery_code", env_word):
        client.totps.recover(user_id=u.user_id, recovery_code=code)

    remaining = client.totps.recovery_codes(user_id=u.user_id).totps[0].recovery_codes
    assert len(remaining) == 9
    assert code not in remaining

    # recover normalises its input (spec §5.3).
    code2 = u.totp.recovery_codes[1]
    client.totps.recover(user_id=u.user_id, recovery_code=" " + code2.upper().replace("-", " ") + " ")
    remaining = client.totps.recovery_codes(user_id=u.user_id).totps[0].recovery_codes
    assert len(remaining) == 8
    assert code2 not in remaining

    # a verified TOTP blocks a new one.
    with L.raises_stytch(400, "active_totp_exists", env_word):
        client.totps.create(user_id=u.user_id)


def test_recovery_codes_without_totp(client, new_user, env_word):
    u = new_user()
    resp = client.totps.recovery_codes(user_id=u.user_id)
    L.assert_envelope(resp, env_word)
    assert resp.user_id == u.user_id
    assert resp.totps == []


def test_create_replaces_unverified_totp(client, new_user_with_totp, env_word):
    u = new_user_with_totp()
    second = client.totps.create(user_id=u.user_id)
    assert second.totp_id != u.totp.totp_id
    assert second.secret != u.totp.secret
    assert [(t.totp_id, t.verified) for t in second.user.totps] == [(second.totp_id, False)]

    step = L.current_step()
    old_code, new_code = L.totp_at(u.totp.secret, step), L.totp_at(second.secret, step)
    if old_code != new_code:
        with L.raises_stytch(401, "unable_to_authenticate_totp", env_word):
            client.totps.authenticate(user_id=u.user_id, totp_code=old_code)
    ok = client.totps.authenticate(user_id=u.user_id, totp_code=new_code)
    assert ok.totp_id == second.totp_id


def test_recover_with_code_of_unverified_totp(client, new_user_with_totp, env_word):
    u = new_user_with_totp()
    with L.raises_stytch(401, "unable_to_authenticate_recovery_code", env_word):
        client.totps.recover(user_id=u.user_id, recovery_code=u.totp.recovery_codes[0])


def test_pending_user_becomes_active(client, new_user_with_totp):
    u = new_user_with_totp(create_user_as_pending=True)
    assert u.create.status == "pending"
    assert u.totp.user.status == "pending"
    resp = client.totps.authenticate(user_id=u.user_id, totp_code=L.totp_at(u.totp.secret, L.current_step()))
    assert resp.user.status == "active"
    assert client.users.get(user_id=u.user_id).status == "active"


def test_totp_endpoints_accept_external_id(client, new_user):
    ext = f"py|totp|{L.unique_external_id('x')}"
    u = new_user(external_id=ext)
    created = client.totps.create(user_id=ext)
    assert created.user_id == u.user_id
    auth = client.totps.authenticate(user_id=ext, totp_code=L.totp_at(created.secret, L.current_step()))
    assert auth.user_id == u.user_id
    codes = client.totps.recovery_codes(user_id=ext)
    assert codes.user_id == u.user_id
    assert len(codes.totps[0].recovery_codes) == 10
    assert client.totps.recover(user_id=ext, recovery_code=created.recovery_codes[3]).user_id == u.user_id


def test_user_lock(client, new_user_with_totp, settings, env_word):
    """LATCH_LOCK_THRESHOLD wrong codes lock the user; then even a correct code gets 429."""
    u = new_user_with_totp()
    secret = u.totp.secret
    step = L.current_step()
    client.totps.authenticate(user_id=u.user_id, totp_code=L.totp_at(secret, step))

    wrong = L.wrong_code(secret, step)
    n = settings.lock_threshold
    for i in range(1, n + 1):
        if i < n:
            with L.raises_stytch(401, "unable_to_authenticate_totp", env_word):
                client.totps.authenticate(user_id=u.user_id, totp_code=wrong)
        else:
            # The failure that sets the lock may report the wrong code or the lock itself.
            try:
                client.totps.authenticate(user_id=u.user_id, totp_code=wrong)
            except StytchError as e:
                d = e.details
                assert (d.status_code, d.error_type) in {
                    (401, "unable_to_authenticate_totp"),
                    (429, "user_lock_limit_reached"),
                }, d
            else:
                raise AssertionError(f"attempt {i} with a wrong code succeeded")

    # A correct, never-used code (step T+1) and a valid recovery code are refused while locked.
    with L.raises_stytch(429, "user_lock_limit_reached", env_word):
        client.totps.authenticate(user_id=u.user_id, totp_code=L.totp_at(secret, step + 1))
    with L.raises_stytch(429, "user_lock_limit_reached", env_word):
        client.totps.recover(user_id=u.user_id, recovery_code=u.totp.recovery_codes[0])

    got = client.users.get(user_id=u.user_id)  # lock timestamps must parse as datetimes
    assert got.is_locked is True
    L.assert_utc(got.lock_created_at)
    L.assert_utc(got.lock_expires_at)
    assert got.lock_expires_at > got.lock_created_at

    assert len(client.totps.recovery_codes(user_id=u.user_id).totps[0].recovery_codes) == 10


def test_bad_session_duration_spends_nothing_then_mints_session(client, new_user_with_totp, env_word):
    """Session arguments are checked before the factor (spec §2.2): a refused request spends nothing,
    so the same code then mints a session. The session flows themselves are in test_sessions.py."""
    u = new_user_with_totp()
    code = L.totp_at(u.totp.secret, L.current_step())
    for minutes in (4, 527041):
        with L.raises_stytch(400, "invalid_session_duration_minutes", env_word):
            client.totps.authenticate(user_id=u.user_id, totp_code=code, session_duration_minutes=minutes)
    ok = client.totps.authenticate(user_id=u.user_id, totp_code=code, session_duration_minutes=5)
    L.assert_envelope(ok, env_word)
    assert L.SESSION_TOKEN_RE.match(ok.session_token), ok.session_token
    assert ok.session_jwt
    L.assert_session_shape(ok.session, u.user_id, env_word, minutes=5)
    assert len(ok.session.authentication_factors) == 1
    L.assert_totp_factor(ok.session.authentication_factors[0], u.totp.totp_id)

    rc = u.totp.recovery_codes[0]
    with L.raises_stytch(400, "invalid_session_duration_minutes", env_word):
        client.totps.recover(user_id=u.user_id, recovery_code=rc, session_duration_minutes=527041)
    rec = client.totps.recover(user_id=u.user_id, recovery_code=rc, session_duration_minutes=527040)
    L.assert_envelope(rec, env_word)
    assert L.SESSION_TOKEN_RE.match(rec.session_token), rec.session_token
    L.assert_session_shape(rec.session, u.user_id, env_word, minutes=527040)
    assert rec.session.session_id != ok.session.session_id
    assert len(rec.session.authentication_factors) == 1
    L.assert_recovery_code_factor(rec.session.authentication_factors[0])
