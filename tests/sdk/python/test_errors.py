"""Error envelope, credentials, project isolation and bad input through the Python SDK."""

from __future__ import annotations

import secrets

import pytest
from stytch.core.response_base import StytchError

import latch_sdk as L


def test_error_details_envelope(client, env_word):
    with pytest.raises(StytchError) as info:
        client.users.get(user_id=L.random_id("user", env_word))
    d = info.value.details
    assert d.status_code == 404
    assert d.error_type == "user_not_found"
    assert d.request_id.startswith(f"request-id-{env_word}-")
    assert L.id_re("request-id", env_word).match(d.request_id)
    assert isinstance(d.error_message, str) and d.error_message
    assert isinstance(d.error_url, str) and d.error_url
    # The whole body is kept as original_json: the real error was parsed, not the fallback.
    assert d.original_json["error_type"] == "user_not_found"
    assert d.original_json["status_code"] == 404


def test_unknown_user_everywhere(client, env_word):
    user_id = L.random_id("user", env_word)
    calls = [
        lambda: client.users.get(user_id=user_id),
        lambda: client.users.update(user_id=user_id, name={"first_name": "X"}),
        lambda: client.users.delete(user_id=user_id),
        lambda: client.totps.create(user_id=user_id),
        lambda: client.totps.authenticate(user_id=user_id, totp_code="123456"),
        lambda: client.totps.recovery_codes(user_id=user_id),
        lambda: client.totps.recover(user_id=user_id, recovery_code="abcd-efgh-ijkl"),
        lambda: client.users.get(user_id=L.unique_external_id("missing")),
    ]
    for call in calls:
        with L.raises_stytch(404, "user_not_found", env_word):
            call()


def test_unknown_totp_on_delete_totp(client, env_word):
    with L.raises_stytch(404, "totp_not_found", env_word):
        client.users.delete_totp(totp_id=L.random_id("totp", env_word))


def test_bad_credentials(settings, env_word):
    wrong_secret = L.make_client(settings, settings.project_id, "secret-test-" + secrets.token_urlsafe(26))
    with L.raises_stytch(401, "unauthorized_credentials", env_word):
        wrong_secret.users.create(email=L.unique_email("badcred"))
    with L.raises_stytch(401, "unauthorized_credentials", env_word):
        wrong_secret.totps.recovery_codes(user_id=L.random_id("user", env_word))

    unknown_project = L.make_client(settings, L.random_id("project", "test"), settings.secret)
    with L.raises_stytch(401, "unauthorized_credentials", "test"):
        unknown_project.users.get(user_id=L.random_id("user", "test"))


def test_project_isolation(client, client2, new_user_with_totp, env_word):
    ext = L.unique_external_id("iso")
    u = new_user_with_totp(external_id=ext)
    code = L.totp_at(u.totp.secret, L.current_step())
    calls = [
        lambda: client2.users.get(user_id=u.user_id),
        lambda: client2.users.get(user_id=ext),
        lambda: client2.users.update(user_id=u.user_id, name={"first_name": "Mallory"}),
        lambda: client2.users.delete(user_id=u.user_id),
        lambda: client2.totps.create(user_id=u.user_id),
        lambda: client2.totps.authenticate(user_id=u.user_id, totp_code=code),
        lambda: client2.totps.recovery_codes(user_id=u.user_id),
        lambda: client2.totps.recover(user_id=u.user_id, recovery_code=u.totp.recovery_codes[0]),
    ]
    for call in calls:
        with L.raises_stytch(404, "user_not_found", env_word):
            call()
    with L.raises_stytch(404, "totp_not_found", env_word):
        client2.users.delete_totp(totp_id=u.totp.totp_id)

    got = client.users.get(user_id=u.user_id)
    assert [(t.totp_id, t.verified) for t in got.totps] == [(u.totp.totp_id, False)]
    assert got.name is None or got.name.first_name != "Mallory"

    # External ids are unique per project, not globally.
    other = client2.users.create(email=L.unique_email("iso2"), external_id=ext)
    assert other.user_id != u.user_id
    assert client2.users.get(user_id=ext).user_id == other.user_id
    assert client.users.get(user_id=ext).user_id == u.user_id


@pytest.mark.parametrize("totp_code", ["12345", "1234567", "12 456", "+12345", "abcdef", "١٢٣٤٥٦"])
def test_invalid_totp_code(client, new_user_with_totp, env_word, totp_code):
    u = new_user_with_totp()
    with L.raises_stytch(400, "invalid_totp_code", env_word):
        client.totps.authenticate(user_id=u.user_id, totp_code=totp_code)


def test_bad_input_table(client, new_user, new_user_with_totp, env_word):
    u = new_user_with_totp()
    with L.raises_stytch(400, "recovery_code_used_as_totp_code", env_word):
        client.totps.authenticate(user_id=u.user_id, totp_code=u.totp.recovery_codes[0])
    with L.raises_stytch(400, "invalid_recovery_code", env_word):
        client.totps.recover(user_id=u.user_id, recovery_code="abc")
    with L.raises_stytch(400, "invalid_recovery_code", env_word):
        client.totps.recover(user_id=u.user_id, recovery_code="abcd-efgh-ijk!")
    with L.raises_stytch(400, "totp_code_used_as_recovery_code", env_word):
        client.totps.recover(user_id=u.user_id, recovery_code="123456")

    fresh = new_user()
    for minutes in (4, 1441):
        with L.raises_stytch(400, "invalid_expiration", env_word):
            client.totps.create(user_id=fresh.user_id, expiration_minutes=minutes)

    with L.raises_stytch(400, "invalid_user_id", env_word):
        client.totps.create(user_id=f"user-{env_word}-not-a-uuid")
    with L.raises_stytch(400, "invalid_user_id", env_word):
        client.users.get(user_id="bad id with spaces")
    with L.raises_stytch(400, "invalid_user_id", env_word):
        client.totps.recovery_codes(user_id="x" * 129)

    with L.raises_stytch(404, "totps_not_found_for_user", env_word):
        client.totps.authenticate(user_id=fresh.user_id, totp_code="123456")
    with L.raises_stytch(404, "totps_not_found_for_user", env_word):
        client.totps.recover(user_id=fresh.user_id, recovery_code="abcd-efgh-ijkl")

    # Malformed input is not counted towards the lock; the TOTP still works.
    ok = client.totps.authenticate(user_id=u.user_id, totp_code=L.totp_at(u.totp.secret, L.current_step()))
    assert ok.totp_id == u.totp.totp_id


def test_create_user_duplicates_and_bad_external_ids(client, new_user, env_word):
    u = new_user()
    with L.raises_stytch(400, "duplicate_email", env_word):
        client.users.create(email=u.email)
    ext = L.unique_external_id("dup")
    new_user(external_id=ext)
    with L.raises_stytch(400, "duplicate_user_external_id", env_word):
        client.users.create(email=L.unique_email("dup2"), external_id=ext)
    with L.raises_stytch(400, "invalid_external_id", env_word):
        client.users.create(email=L.unique_email("badext"), external_id=L.random_id("user", env_word))
    with L.raises_stytch(400, "invalid_external_id", env_word):
        client.users.create(email=L.unique_email("badext2"), external_id="has space")
