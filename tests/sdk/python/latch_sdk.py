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
import os
import re
import secrets
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Iterator, Optional

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
