"""Shared fixtures: real SQLite and real Postgres databases, the services container and an API client."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tasktide.api.app import create_app
from tasktide.api.auth import encode_token
from tasktide.db.engine import make_engine
from tasktide.db.migrate import upgrade
from tasktide.services import Services
from tasktide.settings import Settings
from testenv import JWT_SECRET, require_env, truncate_all


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = require_env("TASKTIDE_TEST_DATABASE_URL")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every test using this runs once on SQLite and once on real Postgres."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'tasktide.db'}"
        upgrade(url)
        return url
    url: str = request.getfixturevalue("postgres_url")
    truncate_all(url)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, jwt_secret=JWT_SECRET)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = Services.build(settings)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def auth() -> Callable[[str], dict[str, str]]:
    def headers(user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {encode_token(user_id, JWT_SECRET)}"}

    return headers
