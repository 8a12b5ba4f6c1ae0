"""The Python SDK's async (aiohttp) path against Latch.

aiohttp only parses JSON when the response Content-Type is application/json; otherwise the body
becomes {} and deserialisation fails. This proves Latch's content type on success and error bodies.
"""

from __future__ import annotations

import asyncio

import latch_sdk as L


def test_async_client_full_flow(settings, env_word):
    async def flow() -> None:
        client = L.make_client(settings)
        try:
            email = L.unique_email("async")
            created = await client.users.create_async(email=email)
            L.assert_envelope(created, env_word)
            user_id = created.user_id

            got = await client.users.get_async(user_id=user_id)
            assert got.emails[0].email == email

            totp = await client.totps.create_async(user_id=user_id)
            L.assert_envelope(totp, env_word)
            assert totp.user_id == user_id
            assert len(totp.recovery_codes) == 10
            assert totp.qr_code.startswith("data:image/png;base64,")

            step = L.current_step()
            auth = await client.totps.authenticate_async(user_id=user_id, totp_code=L.totp_at(totp.secret, step))
            assert auth.totp_id == totp.totp_id
            assert auth.session is None and auth.session_token == "" and auth.session_jwt == ""

            with L.raises_stytch(400, "totp_code_already_authenticated", env_word):
                await client.totps.authenticate_async(user_id=user_id, totp_code=L.totp_at(totp.secret, step))

            codes = await client.totps.recovery_codes_async(user_id=user_id)
            assert len(codes.totps[0].recovery_codes) == 10

            rec = await client.totps.recover_async(user_id=user_id, recovery_code=totp.recovery_codes[0])
            assert rec.user_id == user_id

            upd = await client.users.update_async(user_id=user_id, untrusted_metadata={"async": True})
            assert upd.user.untrusted_metadata == {"async": True}

            deleted_totp = await client.users.delete_totp_async(totp_id=totp.totp_id)
            assert deleted_totp.user.totps == []

            deleted = await client.users.delete_async(user_id=user_id)
            assert deleted.user_id == user_id

            with L.raises_stytch(404, "user_not_found", env_word):
                await client.users.get_async(user_id=user_id)
        finally:
            await client.close()

    asyncio.run(flow())
