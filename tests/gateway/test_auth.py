"""KeyCache authentication and scope checks (in memory, no database)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from inferhub.errors import AuthenticationFailed, PermissionDenied
from inferhub.gateway.auth import KeyCache, require_scope
from inferhub.tenancy.keys import KeyRecord, display_prefix, hash_key

NOW = datetime.now(UTC)
GOOD = "ih-good-key-0123456789"
REVOKED = "ih-revoked-key-0123456789"
EXPIRED = "ih-expired-key-0123456789"
REVOKED_AND_EXPIRED = "ih-both-key-0123456789"
FUTURE = "ih-future-key-0123456789"


def _record(key_id, key, scopes=("inference",), *, expires_at=None, revoked_at=None):
    return KeyRecord(
        id=key_id,
        name=f"key{key_id}",
        prefix=display_prefix(key),
        key_hash=hash_key(key),
        scopes=tuple(scopes),
        created_at=NOW - timedelta(days=2),
        expires_at=expires_at,
        revoked_at=revoked_at,
    )


@pytest.fixture
def cache():
    c = KeyCache()
    c.replace(
        [
            _record(1, GOOD),
            _record(2, REVOKED, revoked_at=NOW - timedelta(hours=1)),
            _record(3, EXPIRED, expires_at=NOW - timedelta(seconds=1)),
            _record(4, REVOKED_AND_EXPIRED, expires_at=NOW - timedelta(days=1), revoked_at=NOW - timedelta(days=1)),
            _record(5, FUTURE, expires_at=NOW + timedelta(days=1)),
        ]
    )
    return c


def _basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _fail(cache, code, authorization=None, x_api_key=None):
    with pytest.raises(AuthenticationFailed) as info:
        cache.authenticate(authorization, x_api_key)
    assert info.value.status_code == 401
    assert info.value.code == code
    assert info.value.openai_body()["error"]["code"] == code
    assert info.value.openai_body()["error"]["type"] == "authentication_error"
    return info.value


@pytest.mark.parametrize("header", [f"Bearer {GOOD}", f"bearer {GOOD}", f"BEARER  {GOOD} "])
def test_bearer_ok(cache, header):
    assert cache.authenticate(header).id == 1


def test_basic_with_key_as_password_ok(cache):
    assert cache.authenticate(_basic("anyone", GOOD)).id == 1
    assert cache.authenticate(_basic("", GOOD)).id == 1


def test_basic_with_key_as_username_only_is_missing(cache):
    _fail(cache, "missing_api_key", _basic(GOOD, ""))


def test_basic_with_invalid_base64_is_missing(cache):
    _fail(cache, "missing_api_key", "Basic !!!not-base64!!!")


def test_x_api_key_ok(cache):
    assert cache.authenticate(None, GOOD).id == 1


def test_x_api_key_used_when_authorization_scheme_unknown(cache):
    assert cache.authenticate("Token something", GOOD).id == 1


def test_authorization_takes_precedence_over_x_api_key(cache):
    _fail(cache, "invalid_api_key", "Bearer ih-nope", GOOD)


@pytest.mark.parametrize(("authorization", "x_api_key"), [(None, None), ("", ""), ("Bearer", None), ("Bearer   ", "")])
def test_missing_key(cache, authorization, x_api_key):
    error = _fail(cache, "missing_api_key", authorization, x_api_key)
    assert "Bearer" in error.message


def test_unknown_key(cache):
    _fail(cache, "invalid_api_key", "Bearer ih-unknown")
    _fail(cache, "invalid_api_key", None, "ih-unknown")


def test_key_is_case_sensitive(cache):
    _fail(cache, "invalid_api_key", f"Bearer {GOOD.upper()}")


def test_revoked_key(cache):
    error = _fail(cache, "key_revoked", f"Bearer {REVOKED}")
    assert display_prefix(REVOKED) in error.message
    assert REVOKED not in error.message  # the full secret is never echoed


def test_expired_key(cache):
    error = _fail(cache, "key_expired", f"Bearer {EXPIRED}")
    assert "expired" in error.message


def test_revoked_wins_over_expired(cache):
    _fail(cache, "key_revoked", None, REVOKED_AND_EXPIRED)


def test_key_expiring_in_future_is_accepted(cache):
    assert cache.authenticate(f"Bearer {FUTURE}").id == 5


def test_replace_drops_old_keys(cache):
    cache.replace([_record(9, FUTURE)])
    _fail(cache, "invalid_api_key", f"Bearer {GOOD}")
    assert cache.authenticate(f"Bearer {FUTURE}").id == 9


def test_require_scope_present():
    require_scope(_record(1, GOOD, ("inference",)), "inference")


def test_require_scope_missing_raises_permission_denied():
    record = _record(1, GOOD, ("inference",))
    with pytest.raises(PermissionDenied) as info:
        require_scope(record, "admin")
    assert info.value.status_code == 403
    assert info.value.code == "insufficient_scope"
    assert "admin" in info.value.message


def test_require_scope_no_scopes_raises():
    with pytest.raises(PermissionDenied):
        require_scope(_record(1, GOOD, ()), "inference")


def test_admin_implies_every_scope():
    record = _record(1, GOOD, ("admin",))
    require_scope(record, "inference")
    require_scope(record, "admin")
    require_scope(record, "anything-else")


def test_a_local_write_applies_at_once_and_survives_a_reload_that_began_before_it(cache):
    """A reload may have read the rows before this process committed its write: the write stays on top."""
    since = cache.generation  # a reload starts reading...
    cache.put(_record(1, GOOD, revoked_at=NOW))  # ...this process revokes the key meanwhile
    _fail(cache, "key_revoked", f"Bearer {GOOD}")
    cache.replace([_record(1, GOOD)], loaded_since=since)  # the reload's rows predate the revocation
    _fail(cache, "key_revoked", f"Bearer {GOOD}")
    cache.replace([_record(1, GOOD, revoked_at=NOW)], loaded_since=cache.generation)  # a later reload
    _fail(cache, "key_revoked", f"Bearer {GOOD}")
    cache.replace([_record(1, GOOD)], loaded_since=cache.generation)  # the database is the truth again
    assert cache.authenticate(f"Bearer {GOOD}").id == 1


def test_a_created_key_is_known_at_once_and_a_dropped_one_is_forgotten(cache):
    fresh = "ih-fresh-key-0123456789"
    since = cache.generation
    cache.put(_record(9, fresh))
    assert cache.authenticate(f"Bearer {fresh}").id == 9 and cache.by_id(9) is not None
    cache.replace([_record(1, GOOD)], loaded_since=since)  # read before the key was committed
    assert cache.authenticate(f"Bearer {fresh}").id == 9
    cache.drop_where(lambda record: record.id in (1, 9))
    _fail(cache, "invalid_api_key", f"Bearer {fresh}")
    _fail(cache, "invalid_api_key", f"Bearer {GOOD}")
    assert cache.by_id(9) is None
