"""Bearer tokens: `aud`/`iss` checked, a maximum lifetime, key rotation by `kid` (issue 12 finding 8)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from tasktide.api.app import create_app
from tasktide.api.auth import encode_token, key_id
from tasktide.entrypoints.cli import main
from tasktide.services import Services
from tasktide.settings import Settings, get_settings
from tests.testenv import JWT_SECRET

OLD_SECRET = "old-secret-0123456789abcdef0123456789"


@pytest.fixture
def rotated(database_url: str) -> Iterator[TestClient]:
    """The current secret is JWT_SECRET; OLD_SECRET is retired but still accepted."""
    services = Services.build(Settings(database_url=database_url, jwt_secret=f"{JWT_SECRET}, {OLD_SECRET}"))
    assert (services.jwt_secret, services.jwt_previous_secrets) == (JWT_SECRET, (OLD_SECRET,))
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client
    services.engine.dispose()


def get(client: TestClient, token: str) -> int:
    return client.get("/api/alice/tasks", headers={"Authorization": f"Bearer {token}"}).status_code


def raw(claims: dict[str, object], secret: str = JWT_SECRET, kid: str | None = None) -> str:
    now = datetime.now(UTC)
    base: dict[str, object] = {"sub": "alice", "iat": now, "exp": now + timedelta(hours=1)}
    base |= {"aud": "tasktide-api", "iss": "tasktide"}
    headers = {"kid": kid} if kid else None
    return jwt.encode({**base, **claims}, secret, algorithm="HS256", headers=headers)


def test_authorize_far_future_exp_refused(client: TestClient) -> None:
    assert get(client, raw({})) == 200
    assert get(client, raw({"exp": datetime.now(UTC) + timedelta(days=3650)})) == 401
    assert get(client, encode_token("alice", JWT_SECRET, timedelta(days=30))) == 401


@pytest.mark.parametrize(
    "claims", [{"aud": "someone-else"}, {"iss": "evil"}, {"aud": None}, {"iss": None}, {"iat": None}]
)
def test_authorize_wrong_or_missing_audience_issuer_refused(
    client: TestClient, claims: dict[str, object]
) -> None:
    token = raw({k: v for k, v in claims.items() if v is not None})
    if None in claims.values():
        payload = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False})
        for name in claims:
            payload.pop(name)
        token = jwt.encode(payload, JWT_SECRET, algorithm="HS256")
    assert get(client, token) == 401


def test_authorize_rotated_keys_selected_by_kid(rotated: TestClient) -> None:
    assert get(rotated, encode_token("alice", JWT_SECRET)) == 200
    assert get(rotated, encode_token("alice", OLD_SECRET)) == 200  # retired, still verified by its kid
    assert get(rotated, encode_token("alice", "never-configured-secret-0123456789")) == 401
    # a kid naming the current key does not make a token signed with another key valid
    assert get(rotated, raw({}, secret=OLD_SECRET, kid=key_id(JWT_SECRET))) == 401


def test_token_command_signs_with_current_kid_and_refuses_long_ttl(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TASKTIDE_JWT_SECRET", f"{JWT_SECRET},{OLD_SECRET}")
    get_settings.cache_clear()
    try:
        assert main(["token", "alice"]) == 0
        token = capsys.readouterr().out.strip()
        assert jwt.get_unverified_header(token)["kid"] == key_id(JWT_SECRET)
        claims = jwt.decode(
            token, JWT_SECRET, algorithms=["HS256"], audience="tasktide-api", issuer="tasktide"
        )
        assert claims["sub"] == "alice"
        assert main(["token", "alice", "--ttl", "365d"]) == 2
    finally:
        get_settings.cache_clear()


def test_settings_default_lifetime_allows_a_day() -> None:
    assert Settings().jwt_max_ttl >= 24 * 3600
