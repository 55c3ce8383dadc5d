"""Shared fixtures: real SQLite and real Postgres databases, the services container and an API client.

Parallel runs (pytest-xdist, `make pytest` uses `-n`): each worker gets a Postgres database of its own
(`<TASKTIDE_TEST_DATABASE_URL's database>_<worker id>`), and every test that needs real Kafka (marker
`kafka`) runs on one worker, in the xdist group `kafka` (`--dist loadgroup`), because the outage test stops
and restarts the broker. The end-to-end tests of one `tasktide dev` mode share a group, so each worker does
not start its own dev server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from tasktide.api.app import create_app
from tasktide.api.auth import encode_token
from tasktide.db.engine import make_engine
from tasktide.db.migrate import upgrade
from tasktide.services import Services
from tasktide.settings import Settings
from tests.testenv import JWT_SECRET, require_env, truncate_all


@pytest.hookimpl(tryfirst=True)  # the marks must exist before xdist reads them into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """xdist groups (used with `--dist loadgroup`): Kafka tests together, e2e tests by dev-server mode."""
    for item in items:
        if item.get_closest_marker("kafka") is not None:
            item.add_marker(pytest.mark.xdist_group("kafka"))
            continue
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("dev") if callspec is not None else None
        if isinstance(mode, str):
            item.add_marker(pytest.mark.xdist_group(f"e2e-{mode}"))


def worker_database(url: str) -> str:
    """This xdist worker's own database next to `url`'s (created if missing); `url` itself when serial."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if found is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = worker_database(require_env("TASKTIDE_TEST_DATABASE_URL"))
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
