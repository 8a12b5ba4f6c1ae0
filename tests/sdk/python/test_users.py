"""Users API through the official Python SDK (stytch==15.3.0, sync client) against Latch.

The Python SDK parses every 2xx body into pydantic models and crashes (ValidationError) on a
missing/null required field, so each call below doubles as a response-shape check.
"""

from __future__ import annotations

from stytch.consumer.models.users import Name

import latch_sdk as L


def test_create_user_with_email(client, env_word):
    email = L.unique_email("create")
    resp = client.users.create(email=email)
    L.assert_envelope(resp, env_word, 200)  # spec §5.11: 200, not 201
    assert L.id_re("user", env_word).match(resp.user_id)
    assert L.id_re("email", env_word).match(resp.email_id)
    assert resp.phone_id == ""
    assert resp.status == "active"
    user = resp.user
    assert user.user_id == resp.user_id
    assert user.status == "active"
    assert user.is_locked is False
    assert user.totps == []
    assert [(e.email, e.email_id) for e in user.emails] == [(email, resp.email_id)]
    assert user.phone_numbers == []
    assert user.external_id is None
    assert user.lock_created_at is None and user.lock_expires_at is None
    L.assert_utc(user.created_at)


def test_create_pending_user(client, new_user):
    u = new_user(create_user_as_pending=True)
    assert u.create.status == "pending"
    assert u.create.user.status == "pending"
    assert client.users.get(user_id=u.user_id).status == "pending"


def test_get_user_by_id_and_by_external_id_with_pipe(client, env_word):
    external_id = f"py|ext|{L.unique_external_id('pipe')}"
    email = L.unique_email("ext")
    created = client.users.create(
        email=email,
        external_id=external_id,
        name=Name(first_name="Grace", last_name="Hopper"),  # serialised with middle_name: null
        trusted_metadata={"plan": "pro"},
        untrusted_metadata={"theme": "dark"},
    )
    assert created.user.external_id == external_id

    # The SDK sends GET /v1/users/<id>?user_id=<id> (path params repeated as query).
    by_id = client.users.get(user_id=created.user_id)
    L.assert_envelope(by_id, env_word)
    assert by_id.user_id == created.user_id
    assert by_id.external_id == external_id
    assert by_id.emails[0].email == email
    assert by_id.name is not None
    assert by_id.name.first_name == "Grace"
    assert by_id.name.last_name == "Hopper"
    assert by_id.trusted_metadata == {"plan": "pro"}
    assert by_id.untrusted_metadata == {"theme": "dark"}
    assert by_id.is_locked is False
    L.assert_utc(by_id.created_at)

    # quote(..., safe="") sends py%7Cext%7C... in the path and again in ?user_id=.
    by_ext = client.users.get(user_id=external_id)
    assert by_ext.user_id == created.user_id
    assert by_ext.external_id == external_id


def test_update_user_name_metadata_and_external_id(client, new_user, env_word):
    u = new_user(
        trusted_metadata={"keep": "yes", "drop": 1, "nested": {"a": 1, "b": 2}},
        untrusted_metadata={"u1": "one"},
    )

    # The SDK puts user_id in the PUT body too and serialises Name with null sub-fields.
    resp = client.users.update(
        user_id=u.user_id,
        name=Name(first_name="Ada", last_name="Lovelace"),
        trusted_metadata={"drop": None, "nested": {"c": 3}, "added": True},
        untrusted_metadata={"u2": "two"},
    )
    L.assert_envelope(resp, env_word)
    assert resp.user_id == u.user_id
    assert [e.email for e in resp.emails] == [u.email]
    assert resp.phone_numbers == []
    assert resp.crypto_wallets == []
    assert resp.user.name.first_name == "Ada"
    assert resp.user.name.last_name == "Lovelace"
    # Top-level merge: null deletes a key, nested objects are replaced wholesale.
    assert resp.user.trusted_metadata == {"keep": "yes", "nested": {"c": 3}, "added": True}
    assert resp.user.untrusted_metadata == {"u1": "one", "u2": "two"}

    got = client.users.get(user_id=u.user_id)
    assert got.trusted_metadata == {"keep": "yes", "nested": {"c": 3}, "added": True}
    assert got.name.first_name == "Ada"

    # A dict name is sent as-is.
    resp = client.users.update(user_id=u.user_id, name={"first_name": "Augusta"})
    assert resp.user.name.first_name == "Augusta"

    ext1 = L.unique_external_id("upd1")
    assert client.users.update(user_id=u.user_id, external_id=ext1).user.external_id == ext1
    assert client.users.get(user_id=ext1).user_id == u.user_id

    ext2 = f"{L.unique_external_id('upd2')}|v2"
    resp = client.users.update(user_id=ext1, external_id=ext2)
    assert resp.user_id == u.user_id
    assert resp.user.external_id == ext2
    assert client.users.get(user_id=ext2).user_id == u.user_id
    with L.raises_stytch(404, "user_not_found", env_word):
        client.users.get(user_id=ext1)


def test_delete_user(client, new_user, env_word):
    u = new_user()
    resp = client.users.delete(user_id=u.user_id)  # empty body, Content-Type: application/json
    L.assert_envelope(resp, env_word)
    assert resp.user_id == u.user_id
    with L.raises_stytch(404, "user_not_found", env_word):
        client.users.get(user_id=u.user_id)


def test_delete_user_by_external_id(client, new_user, env_word):
    ext = L.unique_external_id("del")
    u = new_user(external_id=ext)
    assert client.users.delete(user_id=ext).user_id == u.user_id
    with L.raises_stytch(404, "user_not_found", env_word):
        client.users.get(user_id=u.user_id)


def test_delete_totp(client, new_user_with_totp, env_word):
    u = new_user_with_totp()
    client.totps.authenticate(user_id=u.user_id, totp_code=L.totp_at(u.totp.secret, L.current_step()))

    resp = client.users.delete_totp(totp_id=u.totp.totp_id)
    L.assert_envelope(resp, env_word)
    assert resp.user_id == u.user_id
    assert all(t.totp_id != u.totp.totp_id for t in resp.user.totps)

    assert client.users.get(user_id=u.user_id).totps == []
    assert client.totps.recovery_codes(user_id=u.user_id).totps == []

    again = client.totps.create(user_id=u.user_id)
    assert again.totp_id != u.totp.totp_id

    with L.raises_stytch(404, "totp_not_found", env_word):
        client.users.delete_totp(totp_id=u.totp.totp_id)



def test_create_user_invalid_email(client, env_word):
    with L.raises_stytch(400, "invalid_email", env_word):
        client.users.create(email="not-an-email")
