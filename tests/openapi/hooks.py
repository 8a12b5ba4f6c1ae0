"""Schemathesis hooks for Latch (loaded with SCHEMATHESIS_HOOKS=hooks).

`latch_positive_data_acceptance` replaces the built-in `positive_data_acceptance` check with a
stricter one in spirit: a request the schema accepts must not be refused as malformed. The only
400s allowed for schema-valid input are Stytch's conflicts that no JSON Schema can express —
state (a duplicate email, an active TOTP, a replayed code), the other environment's ids, byte
sizes — each named by its `error_type`. A `bad_request` or `invalid_*` answer to schema-valid
data is a failure: the schema (or the server) is wrong.
"""

import schemathesis

# 400s a schema-valid request can legitimately get, with why the schema cannot rule them out.
CONFLICTS = {
    "duplicate_email": "uniqueness depends on existing users",
    "duplicate_phone_number": "uniqueness depends on existing users",
    "duplicate_user_external_id": "uniqueness depends on existing users",
    "active_totp_exists": "depends on the user's TOTP state",
    "totp_code_already_authenticated": "depends on which step was last accepted",
    "live_id_used_in_test_environment": "depends on the project the credentials name",
    "test_id_used_in_live_environment": "depends on the project the credentials name",
    "metadata_too_large": "a byte size of serialised JSON",
    "metadata_too_many_keys": "maxProperties is not expressible through utoipa here",
    "custom_claims_too_large": "a byte size of serialised JSON",
    "user_search_invalid_cursor": "an opaque, MACed token only the server can check",
}
# Ids that start like a user id but do not carry a UUID are refused by the spec (§5.15);
# a regex without look-ahead cannot exclude them from the external-id pattern.
PREFIX_ERRORS = {"invalid_user_id", "invalid_external_id"}


def _values(case):
    out = []
    for part in (case.path_parameters, case.query, case.body if isinstance(case.body, dict) else None):
        if part:
            out.extend(v for v in part.values() if isinstance(v, str))
    return out


@schemathesis.check
def latch_positive_data_acceptance(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status < 400 or status in (401, 403, 404, 409, 429) or status >= 500:
        return None
    error_type = None
    try:
        error_type = response.json().get("error_type")
    except Exception:  # noqa: BLE001 - a non-JSON body is reported below
        pass
    if status == 400 and error_type in CONFLICTS:
        return None
    if status == 400 and error_type in PREFIX_ERRORS and any(
        v.startswith(("user-test-", "user-live-")) for v in _values(case)
    ):
        return None
    raise AssertionError(
        f"schema-valid request refused with {status} {error_type!r}; "
        "tighten the schema or accept the input"
    )


# 404s that mean "the resource you named does not exist". A 404 about something else the
# request named (an unknown session token passed to recover) says nothing about the resource a
# previous call created, and neither does a 404 for an id the request did not take from that
# call (the built-in check counts only path/query/header parameters as linked, so for a body
# that carries its own random user_id it calls every 404 a lost resource).
RESOURCE_404 = {"user_not_found", "totp_not_found", "totps_not_found_for_user", "route_not_found"}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@schemathesis.check
def latch_ensure_resource_availability(ctx, response, case):
    from schemathesis.specs.openapi.checks import ensure_resource_availability

    if response.status_code == 404:
        try:
            error_type = response.json().get("error_type")
        except Exception:  # noqa: BLE001
            error_type = None
        if error_type not in RESOURCE_404:
            return None
        parent = ctx.internals.find_parent(case_id=case.id)
        parent_response = ctx.internals.find_response(case_id=parent.id) if parent else None
        if parent_response is not None:
            try:
                created = {s for s in _strings(parent_response.json()) if s.startswith(("user-", "totp-"))}
            except Exception:  # noqa: BLE001
                created = set()
            linked = created.intersection(_values(case))
            if not linked:
                return None
            if _gone_since(response, case, linked, error_type):
                return None
    return ensure_resource_availability(ctx, response, case)


def _gone_since(response, case, linked, error_type):
    """Whether the linked resource was removed after it was created, by a later call of the
    same run (a DELETE of the user or of the TOTP, or a new create replacing a pending TOTP,
    spec §5.2). Latch never removes a user or a TOTP by itself, so asking it now tells."""
    from urllib.parse import quote, urlsplit

    import requests

    parts = urlsplit(response.request.url)
    base = f"{parts.scheme}://{parts.netloc}"
    auth = {"Authorization": response.request.headers.get("Authorization", "")}
    user_ids = [v for v in _values(case) if v.startswith("user-")] or [
        v for v in linked if v.startswith("user-")
    ]
    for uid in user_ids:
        r = requests.get(f"{base}/v1/users/{quote(uid, safe='')}", headers=auth, timeout=10)
        if r.status_code == 404:
            return True
        if error_type in ("totp_not_found", "totps_not_found_for_user") and r.status_code == 200:
            current = {t["totp_id"] for t in r.json().get("totps", [])}
            if not current.intersection(v for v in linked if v.startswith("totp-")):
                return True
    return False


_SPEC = None


def _spec():
    global _SPEC
    if _SPEC is None:
        import json
        import pathlib

        _SPEC = json.loads((pathlib.Path(__file__).resolve().parent.parent.parent / "openapi" / "openapi.json").read_text())
    return _SPEC


def _sent_request_is_valid(case, response):
    """Whether the request that actually went over the wire (as opposed to the generated case)
    satisfies the operation's query parameters and JSON body schema.

    Schemathesis can generate a violation that never reaches the server — a None-valued query
    parameter the HTTP client drops, or a body a stateful link replaces with a valid one — and
    then reports the server's acceptance of the request it really received, a valid one, as
    "schema-violating request accepted". This re-checks what was sent against the document.
    """
    import json
    import re as _re
    from urllib.parse import parse_qsl, urlsplit

    import jsonschema_rs

    declared = {
        p.name: p.definition
        for p in case.operation.iter_parameters()
        if p.definition.get("in") == "query"
    }
    sent = parse_qsl(urlsplit(response.request.url).query, keep_blank_values=True)
    names = [k for k, _ in sent]
    if len(names) != len(set(names)):
        return False
    for name, value in sent:
        definition = declared.get(name)
        if definition is None:
            return False
        pattern = (definition.get("schema") or {}).get("pattern")
        if pattern and not _re.search(pattern, value):
            return False
    if not all(name in names for name, d in declared.items() if d.get("required")):
        return False
    operation = _spec()["paths"].get(case.operation.path, {}).get(case.operation.method.lower(), {})
    body_schema = (
        operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    )
    if body_schema is None:
        return True
    raw = response.request.body
    if raw is None:
        return False
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    root = dict(body_schema)
    root["components"] = _spec()["components"]
    return jsonschema_rs.Draft202012Validator(root).is_valid(body)


@schemathesis.check
def latch_negative_data_rejection(ctx, response, case):
    from schemathesis.specs.openapi.checks import negative_data_rejection

    try:
        return negative_data_rejection(ctx, response, case)
    except AssertionError:
        if response.status_code < 400 and _sent_request_is_valid(case, response):
            return None
        raise
