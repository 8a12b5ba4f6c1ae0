"""Shared helpers for the Stytch Python SDK (stytch==15.3.0) compatibility suite.

The suite runs against an already-running Latch server named by env vars:
LATCH_BASE_URL (no trailing slash), LATCH_PROJECT_ID, LATCH_SECRET,
LATCH_PROJECT2_ID, LATCH_SECRET2, LATCH_LOCK_THRESHOLD (default 10).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import pytest
import stytch
from stytch.core.response_base import StytchError

ENV_HELP = (
    "The SDK compatibility suite needs a running Latch server: export LATCH_BASE_URL "
    "(e.g. http://127.0.0.1:18080), LATCH_PROJECT_ID, LATCH_SECRET, LATCH_PROJECT2_ID and "
    "LATCH_SECRET2 (optional LATCH_LOCK_THRESHOLD, default 10)."
)


@dataclass(frozen=True)
class Settings:
    base_url: str
    project_id: str
    secret: str
    project2_id: Optional[str]
    secret2: Optional[str]
    lock_threshold: int

    @property
    def env_word(self) -> str:
        """The "test" or "live" word that every id the server mints carries."""
        return "live" if self.project_id.startswith("project-live-") else "test"


def load_settings() -> Settings:
    """Reads the env; fails (never skips) the calling test when the server is not configured."""
    missing = [n for n in ("LATCH_BASE_URL", "LATCH_PROJECT_ID", "LATCH_SECRET") if not os.environ.get(n)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not set. {ENV_HELP}", pytrace=False)
    raw_threshold = os.environ.get("LATCH_LOCK_THRESHOLD") or "10"
    try:
        threshold = int(raw_threshold)
    except ValueError:
        threshold = -1
    if threshold < 2:
        pytest.fail(f"LATCH_LOCK_THRESHOLD must be an integer >= 2, got {raw_threshold!r}", pytrace=False)
    return Settings(
        base_url=os.environ["LATCH_BASE_URL"].rstrip("/"),
        project_id=os.environ["LATCH_PROJECT_ID"],
        secret=os.environ["LATCH_SECRET"],
        project2_id=os.environ.get("LATCH_PROJECT2_ID") or None,
        secret2=os.environ.get("LATCH_SECRET2") or None,
        lock_threshold=threshold,
    )


def make_client(settings: Settings, project_id: Optional[str] = None, secret: Optional[str] = None) -> stytch.Client:
    # Any `environment` other than "test"/"live" is used verbatim as the base URL (spec §1.6).
    return stytch.Client(
        project_id=project_id or settings.project_id,
        secret=secret or settings.secret,
        environment=settings.base_url,
    )


# ---- ids and patterns ----

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
RECOVERY_CODE_RE = re.compile(r"^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$")
# Session tokens: 44 base64url characters (spec §4).
SESSION_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{44}$")
SESSION_CLAIM = "https://stytch.com/session"


def id_re(kind: str, env_word: str = "test") -> re.Pattern:
    return re.compile(rf"^{kind}-{env_word}-{UUID_RE}$")


def random_id(kind: str, env_word: str = "test") -> str:
    return f"{kind}-{env_word}-{uuid.uuid4()}"


def _suffix() -> str:
    return f"{int(time.time() * 1000):x}{secrets.token_hex(5)}"


def unique_email(tag: str = "user") -> str:
    return f"py-{tag}-{_suffix()}@example.com"


def unique_external_id(tag: str = "ext") -> str:
    return f"py-{tag}-{_suffix()}"


# ---- RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s) ----

PERIOD_SECONDS = 30


def base32_decode(secret: str) -> bytes:
    s = secret.upper().rstrip("=")
    return base64.b32decode(s + "=" * (-len(s) % 8))


def current_step(now: Optional[float] = None) -> int:
    return int((time.time() if now is None else now) // PERIOD_SECONDS)


def totp_at(secret: str, step: int) -> str:
    mac = hmac.new(base32_decode(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{binary % 1_000_000:06d}"


def wrong_code(secret: str, step: Optional[int] = None) -> str:
    """A 6-digit code matching none of the steps the server could accept now or shortly after."""
    step = current_step() if step is None else step
    taken = {totp_at(secret, s) for s in range(max(0, step - 3), step + 4)}
    n = 0
    while True:
        candidate = f"{(n * 7919 + 123457) % 1_000_000:06d}"
        if candidate not in taken:
            return candidate
        n += 1


# ---- assertions ----


def assert_envelope(resp, env_word: str = "test", status: int = 200) -> None:
    assert resp.status_code == status
    assert id_re("request-id", env_word).match(resp.request_id), resp.request_id


@contextlib.contextmanager
def raises_stytch(status: int, error_type: str, env_word: str = "test") -> Iterator[pytest.ExceptionInfo]:
    """Asserts the block raises StytchError with the given status/error_type and a full envelope."""
    with pytest.raises(StytchError) as info:
        yield info
    d = info.value.details
    assert d.error_type == error_type, f"error_type {d.error_type!r} != {error_type!r}: {d}"
    assert d.status_code == status, f"status_code {d.status_code} != {status}: {d}"
    assert id_re("request-id", env_word).match(d.request_id), d.request_id
    assert isinstance(d.error_message, str) and d.error_message, d


def assert_utc(ts: Optional[datetime.datetime]) -> None:
    assert isinstance(ts, datetime.datetime), ts
    assert ts.utcoffset() == datetime.timedelta(0), ts


# ---- sessions ----


def assert_session_shape(session, user_id: Optional[str] = None, env_word: str = "test", minutes: Optional[int] = None) -> None:
    """Checks a parsed Session (spec §2.1); `minutes` is the lifetime it was created with."""
    assert session is not None, "session is None"
    assert id_re("session", env_word).match(session.session_id), session.session_id
    if user_id is not None:
        assert session.user_id == user_id
    assert len(session.authentication_factors) >= 1
    assert all(isinstance(r, str) for r in session.roles), session.roles
    for ts in (session.started_at, session.last_accessed_at, session.expires_at):
        assert_utc(ts)
    assert session.expires_at > session.started_at
    if minutes is not None:
        assert session.expires_at - session.started_at == datetime.timedelta(minutes=minutes)
    assert session.attributes is not None
    assert isinstance(session.custom_claims, dict), session.custom_claims
    for f in session.authentication_factors:
        for ts in (f.last_authenticated_at, f.created_at, f.updated_at):
            if ts is not None:
                assert_utc(ts)


def assert_totp_factor(f, totp_id: str) -> None:
    assert f.type == "totp"
    assert f.delivery_method == "authenticator_app"
    assert f.authenticator_app_factor is not None and f.authenticator_app_factor.totp_id == totp_id
    assert f.recovery_code_factor is None


def assert_recovery_code_factor(f) -> None:
    assert f.type == "recovery_codes"
    assert f.delivery_method == "recovery_code"
    assert f.recovery_code_factor is not None and f.recovery_code_factor.totp_recovery_code_id
    assert f.authenticator_app_factor is None


# ---- JWTs (decoded by hand; verification is the SDK's job) ----


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(obj: Any) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


def decode_jwt(token: str) -> tuple[dict, dict, list[str]]:
    """(header, payload, parts) of a compact JWS, without verifying anything."""
    parts = token.split(".")
    assert len(parts) == 3, f"a compact JWS has 3 parts: {token}"
    return json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1])), parts


def jwt_with_payload(token: str, mutate: Callable[[dict], None]) -> str:
    """The same header and signature over a payload edited by mutate(payload)."""
    _, payload, parts = decode_jwt(token)
    mutate(payload)
    return ".".join([parts[0], b64url_json(payload), parts[2]])


def jwt_with_header(token: str, mutate: Callable[[dict], None], signature: Optional[str] = None) -> str:
    header, _, parts = decode_jwt(token)
    mutate(header)
    return ".".join([b64url_json(header), parts[1], parts[2] if signature is None else signature])


def jwt_with_flipped_char(token: str, index: int) -> str:
    """Replaces one middle character of part `index` (0 header, 1 payload, 2 signature)."""
    parts = token.split(".")
    s = parts[index]
    i = len(s) // 2
    parts[index] = s[:i] + ("B" if s[i] == "A" else "A") + s[i + 1 :]
    return ".".join(parts)
