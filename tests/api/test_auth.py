"""Bearer tokens: `aud`/`iss` checked, a maximum lifetime, key rotation by `kid` (issue 12 finding 8)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from tasktide.api import auth
from tasktide.api.app import create_app
from tasktide.api.auth import Verified, VerifiedTokens, encode_token, key_id
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


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token whose signature `authorize` checks from now on."""
    checked: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(auth.jwt, "decode", counting)
    return checked


def fresh(secret: str = JWT_SECRET, kid: str | None = None) -> str:
    """A token no earlier test has seen (a unique `jti`)."""
    return raw({"jti": uuid.uuid4().hex}, secret=secret, kid=kid)


def test_authorize_same_token_signature_checked_once(client: TestClient, decodes: list[str]) -> None:
    token = fresh()
    assert [get(client, token) for _ in range(3)] == [200, 200, 200]
    assert decodes == [token]


def test_authorize_remembered_token_on_another_users_path_forbidden(
    client: TestClient, decodes: list[str]
) -> None:
    token = fresh()
    headers = {"Authorization": f"Bearer {token}"}
    assert get(client, token) == 200
    assert client.get("/api/bob/tasks", headers=headers).status_code == 403
    assert client.get("/api/bob/tasks", headers=headers).status_code == 403
    assert decodes == [token]


def test_authorize_remembered_token_past_exp_refused(
    client: TestClient, decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = fresh()  # expires in an hour
    assert get(client, token) == 200
    monkeypatch.setattr(auth, "clock", lambda: time.time() + 2 * 3600)
    response = client.get("/api/alice/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    assert decodes == [token]


def test_authorize_remembered_token_of_a_removed_key_refused(
    rotated: TestClient, client: TestClient, decodes: list[str]
) -> None:
    token = fresh(OLD_SECRET, kid=key_id(OLD_SECRET))
    assert get(rotated, token) == 200  # OLD_SECRET is still accepted there
    assert get(client, token) == 401  # this server has only JWT_SECRET: the remembered entry is dropped
    assert get(rotated, token) == 200  # verified again where the key is configured
    assert decodes == [token, token]  # the 401 came from the unknown kid, before any signature check


def test_verified_tokens_full_forgets_least_recently_used() -> None:
    tokens = VerifiedTokens(size=2)
    policy = ("tasktide-api", "tasktide", 3600)
    for name in ("a", "b"):
        tokens.put(name, Verified("alice", time.time() + 60, JWT_SECRET, policy))
    assert tokens.get("a", (JWT_SECRET,), policy) is not None  # "b" is now the least recently used
    tokens.put("c", Verified("alice", time.time() + 60, JWT_SECRET, policy))
    assert len(tokens) == 2
    assert tokens.get("b", (JWT_SECRET,), policy) is None
    assert tokens.get("a", (JWT_SECRET,), policy) is not None
    assert tokens.get("a", (JWT_SECRET,), ("tasktide-api", "tasktide", 60)) is None  # policy changed
    assert len(tokens) == 1
