"""Schemathesis over `/openapi.json` on SQLite and Postgres: no 5xx, and every response matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tasktide.api.app import create_app
from tasktide.api.auth import encode_token
from tasktide.db.migrate import upgrade
from tasktide.services import Services
from tasktide.settings import Settings
from tests.testenv import JWT_SECRET, truncate_all

BACKEND: dict[str, Any] = {}
STREAM_READ_S = 0.3


def _app():  # type: ignore[no-untyped-def]
    return BACKEND["app"]  # one app per backend: building one per example is most of a case's cost


@pytest.fixture(params=["sqlite", "postgres"], autouse=True)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("postgres_url")
        truncate_all(url)
    services = Services.build(Settings(database_url=url, jwt_secret=JWT_SECRET))
    BACKEND["services"] = services
    BACKEND["app"] = create_app(services)
    yield
    services.engine.dispose()


schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Services.build(Settings(jwt_secret=JWT_SECRET, database_url="sqlite://")))
)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzzed_requests_never_5xx_and_match_schema(case: schemathesis.Case) -> None:
    user = (case.path_parameters or {}).get("user_id")
    if isinstance(user, str):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {encode_token(user, JWT_SECRET)}"}
    app = _app()
    # An event stream answers 200 and then waits for updates: it is cut after STREAM_READ_S, keeping what it
    # sent (its status and headers are what is checked), instead of at the default 10 s read timeout.
    response = case.call(app=app, **({"timeout": STREAM_READ_S} if case.path.endswith("/stream") else {}))
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    # Every status is documented (400 for a NUL in the URL, 401/403 for tokens, ...), and a 405 lists in
    # `Allow` every method of the path (issue 12: both were reported).
    case.validate_response(
        response, checks=[response_schema_conformance, status_code_conformance, unsupported_method]
    )
