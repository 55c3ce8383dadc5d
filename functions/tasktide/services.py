"""The process-wide services container: engine, sessions, secrets, state, and the after-commit hooks.

Secrets (database URL, JWT secret, webhook signing secret, SMTP password) come through the `SecretStore`
port: the Dapr secret store when a sidecar is configured, else a local file / `TASKTIDE_SECRET_*` env vars,
else the `TASKTIDE_*` settings; built-in development defaults exist only for the embedded default.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from tasktide.dapr import SecretNotFound, SecretStore, StateStore, secret_store, state_store
from tasktide.settings import DEV_JWT_SECRET, ConfigurationError, Settings

if TYPE_CHECKING:  # SQLAlchemy, the relay and Kafka are imported when they are used, not with this module
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from tasktide.db.dbapi import DbapiDatabase
    from tasktide.db.unit_of_work import SqlUnitOfWork
    from tasktide.messaging.kafka import TopicFollower
    from tasktide.messaging.outbox import OutboxListener, Relay, RelayWorker
    from tasktide.messaging.stream import StreamHub

log = logging.getLogger(__name__)
T = TypeVar("T")
_BUILDING = threading.RLock()  # re-entrant: building one part may read another
DEV_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"tasktide-dev-webhook-signing-key!").decode()


def read_secret(store: SecretStore, name: str, fallback: str | None) -> str | None:
    try:
        return store.get_secret(name)
    except SecretNotFound:
        return fallback


class built_once(Generic[T]):  # lower case: a decorator, like functools.cached_property
    """`functools.cached_property` that builds its value once even when threads race for it first (as
    3.11's did; 3.12 dropped that lock, so two threads could each build a database pool or a client)."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build, self.name, self.__doc__ = build, build.__name__, build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> built_once[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> T | built_once[T]:
        if instance is None:
            return self
        cache = instance.__dict__
        if self.name in cache:
            return cache[self.name]  # type: ignore[no-any-return]
        with _BUILDING:
            if self.name not in cache:
                cache[self.name] = self.build(instance)
            return cache[self.name]  # type: ignore[no-any-return]


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    secrets: SecretStore
    jwt_secret: str  # the current signing key
    jwt_previous_secrets: tuple[str, ...] = ()  # retired keys, still verified (by kid) during a rotation
    relay: Relay | None = None
    relay_worker: RelayWorker | None = None
    outbox_listener: OutboxListener | None = None
    updates_follower: TopicFollower | None = None
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def committed(self) -> None:
        """Run the after-commit hooks (e.g. kick the outbox relay); never raises."""
        for hook in self.after_commit:
            try:
                hook()
            except Exception:  # a hook failing must not fail the request: the sweep catches up
                log.exception("after-commit hook failed")

    def unit_of_work(self, *, read_only: bool = False) -> SqlUnitOfWork:
        """A unit of work on this database (`tasktide.app.ports.UnitOfWorkFactory`): one transaction that
        kicks the relay after committing outbox rows; read-only ones read on `read_sessions`."""
        from tasktide.db.unit_of_work import SqlUnitOfWork

        if read_only:
            return SqlUnitOfWork(self.read_sessions, read_only=True)
        return SqlUnitOfWork(self.sessions, after_commit=self.committed)

    @built_once
    def read_sessions(self) -> sessionmaker[Session]:
        """Sessions for single-statement reads: autocommit on Postgres, so a read is one round trip (no
        BEGIN / ROLLBACK around it); on SQLite the same sessions as writes."""
        if self.engine.dialect.name != "postgresql":
            return self.sessions
        from tasktide.db.engine import session_factory

        return session_factory(self.engine.execution_options(isolation_level="AUTOCOMMIT"))

    @built_once
    def audit_log(self) -> DbapiDatabase:
        """The audit function's units of work: the DBAPI driver alone on this database (on Postgres one
        round trip a record, no ORM session), as its own container records (`tasktide.db.dbapi`)."""
        from tasktide.db.dbapi import DbapiDatabase

        return DbapiDatabase(self.engine.url.render_as_string(hide_password=False))

    @built_once
    def state(self) -> StateStore:
        return state_store(self.settings, self.engine)

    @built_once
    def webhook_secret(self) -> str:
        secret = read_secret(self.secrets, "webhook-signing-secret", self.settings.webhook_secret)
        if secret:
            return secret
        if not self.settings.embedded:
            raise ConfigurationError(
                "set TASKTIDE_WEBHOOK_SECRET (or the webhook-signing-secret secret): the development "
                "secret is only used by `tasktide dev` and the SQLite default"
            )
        log.warning("using the built-in development webhook signing secret (embedded default only)")
        return DEV_WEBHOOK_SECRET

    @built_once
    def smtp_password(self) -> str | None:
        return read_secret(self.secrets, "smtp-password", self.settings.smtp_password)

    def start_relay(self, relay: Relay, *, sweep_every: float = 1.0) -> RelayWorker:
        """Publish on a background thread: what this process's sessions commit is handed to the worker
        right after each commit (no claim query), and it sweeps periodically for anything else."""
        from tasktide.messaging.outbox import RelayWorker, enable_handoff

        self.relay = relay
        self.relay_worker = RelayWorker(relay, sweep_every=sweep_every)
        self.relay_worker.start()
        if relay.sessions is self.sessions:
            enable_handoff(self.sessions, self.relay_worker)
        else:  # a relay on other sessions: sweep after every commit that wrote outbox rows
            self.after_commit.append(self.relay_worker.kick)
        return self.relay_worker

    def listen_outbox(self) -> None:
        """Postgres: wake the relay worker on every outbox NOTIFY (the `tasktide-relay` Service's mode)."""
        if self.relay_worker is None or self.engine.dialect.name != "postgresql":
            return
        from tasktide.messaging.outbox import OutboxListener

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.outbox_listener = OutboxListener(url, self.relay_worker.notified)
        self.outbox_listener.start()

    def follow_updates(self, hub: StreamHub) -> None:
        """Kafka: feed ``hub`` from the `task-updates` topic (every partition from its end, no consumer
        group, so each process sees every event) until :meth:`close`. Without Kafka the relay feeds it."""
        if self.updates_follower is not None or not self.settings.kafka_bootstrap:
            return
        from tasktide.messaging.events import TOPIC_TASK_UPDATES
        from tasktide.messaging.kafka import TopicFollower

        self.updates_follower = TopicFollower(self.settings.kafka_bootstrap, TOPIC_TASK_UPDATES, hub.publish)
        self.updates_follower.start()

    def stream_hub(self) -> StreamHub:
        """The API's live-updates hub: with Kafka it follows `task-updates` from its first SSE subscriber on,
        so a process that never streams never consumes the topic."""
        from tasktide.messaging.stream import StreamHub

        hub = StreamHub(on_first_subscriber=lambda: self.follow_updates(hub))
        return hub

    def close(self) -> None:
        """Stop the background work (outbox listener, relay, updates follower), then the connection pool."""
        if self.outbox_listener is not None:
            self.outbox_listener.stop()
        if self.relay_worker is not None:
            self.relay_worker.stop()
        if self.updates_follower is not None:
            self.updates_follower.stop()
        if "audit_log" in self.__dict__:
            self.audit_log.dispose()
        self.engine.dispose()

    @classmethod
    def build(
        cls, settings: Settings, *, jwt_secret: str | None = None, with_relay: bool = False
    ) -> Services:
        from tasktide.db.engine import make_engine, session_factory, track_pool

        secrets = secret_store(settings)
        engine = make_engine(database_url(settings, secrets))
        track_pool(engine)
        current, *retired = split_jwt_secrets(jwt_secret or resolve_jwt_secret(settings, secrets))
        previous = tuple(retired)
        services = cls(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            secrets=secrets,
            jwt_secret=current,
            jwt_previous_secrets=previous,
        )
        if with_relay and settings.kafka_bootstrap:
            from tasktide.messaging.kafka import KafkaPublisher
            from tasktide.messaging.outbox import Relay

            services.start_relay(
                Relay(services.sessions, KafkaPublisher(settings.kafka_bootstrap)), sweep_every=30
            )
        elif settings.outbox_notify_handoff and engine.dialect.name == "postgresql":
            from tasktide.db.outbox import HANDOFF_INFO, NotifyHandoff

            services.sessions.configure(info={HANDOFF_INFO: NotifyHandoff()})
        return services


def database_url(settings: Settings, secrets: SecretStore) -> str:
    """`TASKTIDE_DATABASE_URL` when set, else the `database-url` secret, else the embedded default."""
    if "database_url" in settings.model_fields_set:
        return settings.database_url
    return read_secret(secrets, "database-url", None) or settings.database_url


def split_jwt_secrets(value: str) -> list[str]:
    """`jwt-secret` may list several keys, comma-separated: the first signs, every one verifies (by its
    `kid`). Rotate by prepending a new key, then drop the old one once its tokens have expired."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
    return keys or [value]


def configured_jwt_secret(settings: Settings, secrets: SecretStore | None = None) -> str | None:
    """The JWT secret an operator configured (secret store, then ``TASKTIDE_JWT_SECRET``), if any."""
    return read_secret(secrets, "jwt-secret", settings.jwt_secret) if secrets else settings.jwt_secret


def resolve_jwt_secret(settings: Settings, secrets: SecretStore | None = None) -> str:
    """The configured secret; else, for `tasktide dev` and the SQLite default, the development secret
    (which `tasktide token` also signs with when no secret is configured); else ConfigurationError."""
    secret = configured_jwt_secret(settings, secrets)
    if secret:
        return secret
    if settings.embedded:
        log.warning(
            "using the built-in development JWT secret (`tasktide token` signs with it when "
            "TASKTIDE_JWT_SECRET is unset); set TASKTIDE_JWT_SECRET for anything but local development"
        )
        return DEV_JWT_SECRET
    raise ConfigurationError(
        "set TASKTIDE_JWT_SECRET (or the jwt-secret secret): the development secret is only used by "
        "`tasktide dev` and the SQLite default; mint tokens with the same secret (`tasktide token USER`)"
    )
