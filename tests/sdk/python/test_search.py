"""Users search (POST /v1/users/search, spec §2.3) through the official Python SDK (stytch==15.3.0).

The test project is shared with every other test (and with earlier runs), so each search here is
scoped to this module's own users: their emails carry a random marker and every query ANDs an
``email_address_fuzzy`` operand on it (the OR query names two unique emails instead, as OR applies
to all operands).

What the SDK constrains (read from stytch/consumer/api/users.py and models/users.py):

- ``client.users.search(cursor=None, limit=None, query=None)`` sends only the arguments that are not
  ``None``; ``query`` is either a ``SearchUsersQuery`` (sent as ``query.dict()``) or a plain dict
  sent as-is. ``SearchUsersQuery.operator`` is the enum ``SearchUsersQueryOperator`` (AND / OR; a
  str enum, so it serialises as "AND"), and ``operands`` is ``List[Dict[str, Any]]``: operands are
  plain ``{"filter_name", "filter_value"}`` dicts, the SDK has no per-filter model, so unknown
  filters and wrongly typed values reach the server unchanged.
- The SDK has no iterator (Node's ``searchAll`` has no Python counterpart): callers loop on
  ``results_metadata.next_cursor`` (``Optional[str]``, default ``None``).
- ``results`` is ``List[User]`` and ``results_metadata.total`` is a required int: a missing total
  or a malformed user would fail the pydantic parse.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from typing import Any, List, Optional

import pytest
import stytch
from stytch.consumer.models.users import SearchUsersQuery, SearchUsersQueryOperator

import latch_sdk as L


@dataclass
class SearchUser:
    user_id: str
    email: str
    email_id: str
    phone: Optional[str]
    phone_id: str
    created_at: datetime.datetime
    totp: Any  # totps.CreateResponse or None


@dataclass
class Population:
    marker: str
    users: List[SearchUser]
    ordered: List[str]  # the user ids in the order the server must return them

    def want(self, *idx: int) -> List[str]:
        """The ids of users[idx...], in server order (created_at, then user_id)."""
        chosen = {self.users[i].user_id for i in idx}
        return [uid for uid in self.ordered if uid in chosen]

    def query(self, *operands: dict) -> SearchUsersQuery:
        """AND of the marker and the given operands."""
        return SearchUsersQuery(
            operator=SearchUsersQueryOperator.AND,
            operands=[{"filter_name": "email_address_fuzzy", "filter_value": self.marker}, *operands],
        )


def unique_phone() -> str:
    """A unique E.164 number: +1 555 and 10 random digits (14 digits; the server takes 7 to 15)."""
    return f"+1555{secrets.randbelow(10**10):010d}"


def op(name: str, value: Any) -> dict:
    return {"filter_name": name, "filter_value": value}


@pytest.fixture(scope="module")
def pop(client: stytch.Client) -> Population:
    """7 users whose emails carry one random marker (created once for the module).

    0: Ada Lovelace, phone, verified TOTP     1: verified TOTP
    2: phone, unverified TOTP                 3: phone, pending
    4: Grace Brewster Hopper                  5, 6: email only
    """
    marker = L.unique_external_id("search")  # py-search-<time><random>
    specs: List[dict] = [
        {"name": {"first_name": "Ada", "last_name": "Lovelace"}, "phone": True, "totp": "verified"},
        {"totp": "verified"},
        {"phone": True, "totp": "unverified"},
        {"phone": True, "create_user_as_pending": True},
        {"name": {"first_name": "Grace", "middle_name": "Brewster", "last_name": "Hopper"}},
        {},
        {},
    ]
    users: List[SearchUser] = []
    for i, spec in enumerate(specs):
        email = f"{marker}-{i}@example.com"
        phone = unique_phone() if spec.get("phone") else None
        resp = client.users.create(
            email=email,
            phone_number=phone,
            name=spec.get("name"),
            create_user_as_pending=spec.get("create_user_as_pending"),
        )
        assert resp.status == ("pending" if spec.get("create_user_as_pending") else "active")
        L.assert_utc(resp.user.created_at)
        totp = None
        if spec.get("totp"):
            totp = client.totps.create(user_id=resp.user_id)
            if spec["totp"] == "verified":
                auth = client.totps.authenticate(
                    user_id=resp.user_id, totp_code=L.totp_at(totp.secret, L.current_step())
                )
                assert [(t.totp_id, t.verified) for t in auth.user.totps] == [(totp.totp_id, True)]
        users.append(
            SearchUser(
                user_id=resp.user_id,
                email=email,
                email_id=resp.email_id,
                phone=phone,
                phone_id=resp.phone_id,
                created_at=resp.user.created_at,
                totp=totp,
            )
        )
    ordered = [u.user_id for u in sorted(users, key=lambda u: (u.created_at, u.user_id))]
    return Population(marker=marker, users=users, ordered=ordered)


def search_ids(client: stytch.Client, query: Any, env_word: str) -> List[str]:
    """One page holding every match: envelope, total == len(results), no next cursor."""
    resp = client.users.search(query=query)
    L.assert_envelope(resp, env_word)
    assert resp.results_metadata.total == len(resp.results)
    assert not resp.results_metadata.next_cursor, resp.results_metadata.next_cursor
    for user in resp.results:
        assert L.id_re("user", env_word).match(user.user_id), user.user_id
        assert user.status in ("active", "pending")
        L.assert_utc(user.created_at)
    return [user.user_id for user in resp.results]


def test_marker_alone_finds_all_seven_oldest_first(client, pop, env_word):
    resp = client.users.search(query=pop.query())
    L.assert_envelope(resp, env_word)
    assert resp.results_metadata.total == 7
    assert resp.results_metadata.next_cursor is None
    assert [user.user_id for user in resp.results] == pop.ordered

    by_id = {user.user_id: user for user in resp.results}
    ada, u0 = by_id[pop.users[0].user_id], pop.users[0]
    assert [(e.email, e.email_id) for e in ada.emails] == [(u0.email, u0.email_id)]
    assert [(p.phone_number, p.phone_id) for p in ada.phone_numbers] == [(u0.phone, u0.phone_id)]
    assert [(t.totp_id, t.verified) for t in ada.totps] == [(u0.totp.totp_id, True)]
    assert ada.name.first_name == "Ada" and ada.name.last_name == "Lovelace"
    assert ada.is_locked is False
    assert by_id[pop.users[3].user_id].status == "pending"
    assert [(t.totp_id, t.verified) for t in by_id[pop.users[2].user_id].totps] == [
        (pop.users[2].totp.totp_id, False)
    ]


def test_totp_filters(client, pop, env_word):
    assert search_ids(client, pop.query(op("totp_verified", True)), env_word) == pop.want(0, 1)
    assert search_ids(client, pop.query(op("totp_verified", False)), env_word) == pop.want(2)
    assert search_ids(client, pop.query(op("totp_id", [pop.users[2].totp.totp_id])), env_word) == pop.want(2)
    both = [pop.users[0].totp.totp_id, pop.users[2].totp.totp_id]
    assert search_ids(client, pop.query(op("totp_id", both)), env_word) == pop.want(0, 2)


def test_or_of_two_email_addresses(client, pop, env_word):
    # A plain dict is sent as-is; the email is matched case-insensitively.
    query = {
        "operator": "OR",
        "operands": [
            op("email_address", [pop.users[1].email]),
            op("email_address", [pop.users[4].email.upper()]),
        ],
    }
    assert search_ids(client, query, env_word) == pop.want(1, 4)
    # The same through the model, with the operator given as a string.
    model = SearchUsersQuery(operator="OR", operands=query["operands"])
    assert search_ids(client, model, env_word) == pop.want(1, 4)


def test_status_filter(client, pop, env_word):
    assert search_ids(client, pop.query(op("status", "pending")), env_word) == pop.want(3)
    assert search_ids(client, pop.query(op("status", "active")), env_word) == pop.want(0, 1, 2, 4, 5, 6)


def test_full_name_fuzzy(client, pop, env_word):
    assert search_ids(client, pop.query(op("full_name_fuzzy", "ada love")), env_word) == pop.want(0)
    assert search_ids(client, pop.query(op("full_name_fuzzy", "BREWSTER")), env_word) == pop.want(4)


def test_phone_filters(client, pop, env_word):
    u = pop.users
    assert search_ids(client, pop.query(op("phone_number", [u[0].phone, u[3].phone])), env_word) == pop.want(0, 3)
    assert search_ids(client, pop.query(op("phone_id", [u[2].phone_id])), env_word) == pop.want(2)
    assert search_ids(client, pop.query(op("phone_number_fuzzy", "1555")), env_word) == pop.want(0, 2, 3)


def test_user_id_and_email_filters(client, pop, env_word):
    u = pop.users
    ids = [u[6].user_id, u[1].user_id, u[5].user_id]
    assert search_ids(client, pop.query(op("user_id", ids)), env_word) == pop.want(1, 5, 6)
    assert search_ids(client, pop.query(op("email_id", [u[4].email_id])), env_word) == pop.want(4)
    assert search_ids(client, pop.query(op("email_verified", False)), env_word) == pop.ordered
    assert search_ids(client, pop.query(op("email_verified", True)), env_word) == []


def test_created_at_filters(client, pop, env_word):
    def rfc3339(t: datetime.datetime) -> str:
        return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    lower = rfc3339(min(u.created_at for u in pop.users) - datetime.timedelta(minutes=1))
    upper = rfc3339(max(u.created_at for u in pop.users) + datetime.timedelta(minutes=1))
    assert search_ids(client, pop.query(op("created_at_greater_than", lower)), env_word) == pop.ordered
    assert search_ids(client, pop.query(op("created_at_less_than", lower)), env_word) == []
    assert search_ids(client, pop.query(op("created_at_less_than", upper)), env_word) == pop.ordered
    between = op("created_at_between", {"greater_than": lower, "less_than": upper})
    assert search_ids(client, pop.query(between), env_word) == pop.ordered


def test_and_operands_narrow_together(client, pop, env_word):
    q = pop.query(op("phone_number_fuzzy", "1555"), op("totp_verified", True))
    assert search_ids(client, q, env_word) == pop.want(0)
    q = pop.query(op("status", "pending"), op("totp_verified", True))
    assert search_ids(client, q, env_word) == []


def test_pagination_walk_returns_each_user_once_in_order(client, pop, env_word):
    seen: List[str] = []
    sizes: List[int] = []
    cursor: Optional[str] = None
    for _ in range(10):
        resp = client.users.search(limit=3, cursor=cursor, query=pop.query())
        L.assert_envelope(resp, env_word)
        assert resp.results_metadata.total == 7
        seen.extend(user.user_id for user in resp.results)
        sizes.append(len(resp.results))
        cursor = resp.results_metadata.next_cursor
        if not cursor:
            break
    else:
        pytest.fail(f"the walk did not stop after 10 pages: {sizes}")
    assert sizes == [3, 3, 1]
    assert len(set(seen)) == 7, seen
    assert seen == pop.ordered


def test_unsupported_filters(client, pop, env_word):
    for operand in [
        op("oauth_provider", ["google"]),
        op("webauthn_registration_verified", True),
        op("webauthn_registration_id", ["webauthn-registration-test-x"]),
        op("crypto_wallet_id", ["crypto-wallet-test-x"]),
        op("crypto_wallet_address", ["0x0"]),
        op("crypto_wallet_verified", False),
        op("password_exists", True),
    ]:
        with L.raises_stytch(400, "user_search_filter_not_supported", env_word):
            client.users.search(query=pop.query(operand))


def test_unknown_filter_name(client, pop, env_word):
    with L.raises_stytch(400, "user_search_filter_name_not_recognized", env_word):
        client.users.search(query=pop.query(op("favourite_colour", "blue")))


def test_wrongly_typed_filter_values(client, pop, env_word):
    for operand in [
        op("totp_verified", "yes"),
        op("totp_id", pop.users[0].totp.totp_id),  # a string, not a list
        op("status", "deleted"),
        op("created_at_greater_than", "yesterday"),
    ]:
        with L.raises_stytch(400, "user_search_invalid_filter_value", env_word):
            client.users.search(query=pop.query(operand))


def test_invalid_limits(client, pop, env_word):
    for limit in (0, 1001):
        with L.raises_stytch(400, "user_search_invalid_limit", env_word):
            client.users.search(limit=limit, query=pop.query())


def test_invalid_cursors(client, client2, pop, env_word):
    with L.raises_stytch(400, "user_search_invalid_cursor", env_word):
        client.users.search(cursor="garbage", query=pop.query())

    cursor = client.users.search(limit=1, query=pop.query()).results_metadata.next_cursor
    assert isinstance(cursor, str) and cursor
    i = len(cursor) // 2
    tampered = cursor[:i] + ("B" if cursor[i] == "A" else "A") + cursor[i + 1 :]
    with L.raises_stytch(400, "user_search_invalid_cursor", env_word):
        client.users.search(cursor=tampered, limit=1, query=pop.query())
    with L.raises_stytch(400, "user_search_invalid_cursor", env_word):
        client2.users.search(cursor=cursor, limit=1, query=pop.query())

    # The untouched cursor still works.
    resp = client.users.search(cursor=cursor, limit=1, query=pop.query())
    assert [user.user_id for user in resp.results] == [pop.ordered[1]]


def test_project_isolation(client2, pop, env_word):
    resp = client2.users.search(query=pop.query())
    L.assert_envelope(resp, env_word)
    assert resp.results == []
    assert resp.results_metadata.total == 0
    assert resp.results_metadata.next_cursor is None
    assert search_ids(client2, pop.query(op("user_id", [pop.users[0].user_id])), env_word) == []
    assert search_ids(client2, pop.query(op("totp_verified", True)), env_word) == []
