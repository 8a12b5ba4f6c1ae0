"""Fixtures for the Stytch Python SDK (stytch==15.3.0) compatibility suite against Latch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest
import stytch

import latch_sdk as L


@pytest.fixture(scope="session")
def settings() -> L.Settings:
    return L.load_settings()


@pytest.fixture(autouse=True)
def _require_server(settings: L.Settings) -> None:
    """Every test needs the env; a missing LATCH_BASE_URL fails the suite (it never skips)."""


@pytest.fixture(scope="session")
def env_word(settings: L.Settings) -> str:
    return settings.env_word


@pytest.fixture(scope="session")
def client(settings: L.Settings) -> stytch.Client:
    return L.make_client(settings)


@pytest.fixture(scope="session")
def client2(settings: L.Settings) -> stytch.Client:
    if not settings.project2_id or not settings.secret2:
        pytest.fail(
            "LATCH_PROJECT2_ID and LATCH_SECRET2 must be set (a second test project for isolation checks).",
            pytrace=False,
        )
    return L.make_client(settings, settings.project2_id, settings.secret2)


@dataclass
class NewUser:
    user_id: str
    email: str
    create: Any  # users.CreateResponse


@dataclass
class NewUserWithTotp(NewUser):
    totp: Any  # totps.CreateResponse


@pytest.fixture
def new_user(client: stytch.Client) -> Callable[..., NewUser]:
    """Factory: creates a user with a unique email (extra kwargs go to users.create)."""

    def make(**kwargs: Any) -> NewUser:
        email = kwargs.pop("email", None) or L.unique_email()
        resp = client.users.create(email=email, **kwargs)
        return NewUser(user_id=resp.user_id, email=email, create=resp)

    return make


@pytest.fixture
def new_user_with_totp(client: stytch.Client, new_user: Callable[..., NewUser]) -> Callable[..., NewUserWithTotp]:
    """Factory: creates a user and a (not yet verified) TOTP for it."""

    def make(**kwargs: Any) -> NewUserWithTotp:
        u = new_user(**kwargs)
        totp = client.totps.create(user_id=u.user_id)
        return NewUserWithTotp(user_id=u.user_id, email=u.email, create=u.create, totp=totp)

    return make

