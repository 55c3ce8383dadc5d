"""`tasktide` command line: dev (everything in one process), migrate, token, serve, dead-letters, schemas."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from datetime import timedelta
from pathlib import Path

DURATION = re.compile(r"^(?P<n>\d+)(?P<unit>[smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    match = DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s, 15m, 24h or 7d")
    return timedelta(**{UNITS[match["unit"]]: int(match["n"])})


def parse_seconds(text: str) -> float:
    from tasktide.settings import parse_seconds as seconds

    try:
        return seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _apply_env(args: argparse.Namespace) -> None:
    """CLI flags win over TASKTIDE_* env vars; settings read them lazily afterwards."""
    for flag, env in (
        ("host", "TASKTIDE_HOST"),
        ("port", "TASKTIDE_PORT"),
        ("database_url", "TASKTIDE_DATABASE_URL"),
        ("kafka", "TASKTIDE_KAFKA_BOOTSTRAP"),
        ("ping_every", "TASKTIDE_PING_EVERY"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[env] = str(value)
    from tasktide.settings import get_settings

    get_settings.cache_clear()


def cmd_migrate(args: argparse.Namespace) -> int:
    _apply_env(args)
    from tasktide.db.migrate import MigrationLocked, upgrade
    from tasktide.settings import get_settings

    try:
        upgrade(get_settings().database_url)
    except MigrationLocked as exc:
        print(f"not migrated: {exc}", file=sys.stderr)
        return 1
    print("migrated", file=sys.stderr)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from tasktide.api.auth import encode_token
    from tasktide.dapr import secret_store
    from tasktide.services import configured_jwt_secret, split_jwt_secrets
    from tasktide.settings import DEV_JWT_SECRET, get_settings

    settings = get_settings()
    if args.ttl.total_seconds() > settings.jwt_max_ttl:
        print(f"--ttl exceeds the maximum token lifetime ({settings.jwt_max_ttl} s)", file=sys.stderr)
        return 2
    configured = configured_jwt_secret(settings, secret_store(settings))
    secret = split_jwt_secrets(configured)[0] if configured else None  # the current key; kid in the header
    if not secret:
        secret = DEV_JWT_SECRET
        print(
            "tasktide token: TASKTIDE_JWT_SECRET is not set, so this token is signed with the development "
            "secret that `tasktide dev` uses; a server started with TASKTIDE_JWT_SECRET refuses it "
            "(run `TASKTIDE_JWT_SECRET=<the server's secret> tasktide token ...`)",
            file=sys.stderr,
        )
    token = encode_token(
        args.user_id, secret, args.ttl, audience=settings.jwt_audience, issuer=settings.jwt_issuer
    )
    print(token)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    _apply_env(args)
    os.environ.setdefault("TASKTIDE_DEV_MODE", "1")  # development secrets on any database (local only)
    from tasktide.entrypoints.dev import serve_dev
    from tasktide.router.manifests import KustomizeNotFound, find_kustomize

    try:
        find_kustomize()  # the router reads what `kustomize build` renders
    except KustomizeNotFound as exc:
        print(f"tasktide dev: {exc}", file=sys.stderr)
        return 2
    serve_dev()
    return 0


def cmd_dapr_run(args: argparse.Namespace) -> int:
    """Every app beside its own real daprd on Postgres + Kafka, until Ctrl-C (tasktide.dapr.mode)."""
    import signal
    import threading

    from tasktide.dapr.mode import APPS, DaprMode
    from tasktide.db.migrate import upgrade

    mode = DaprMode(
        Path(args.workdir),
        database_url=args.database_url,
        kafka=args.kafka,
        apps=args.apps or tuple(APPS),
        cron_schedule=args.cron,
    )
    if args.render:
        from tasktide.dapr.mode import CLI_PORTS

        resources = mode.render({app_id: ports[1] for app_id, ports in CLI_PORTS.items()})
        print(f"wrote {resources.path} and {resources.config} (for `dapr run -f dapr.yaml`)", file=sys.stderr)
        return 0
    upgrade(args.database_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    mode.start()
    try:
        for app_id, (app, sidecar) in mode.running.items():
            print(
                f"{app_id:20} app http://127.0.0.1:{app.port}  daprd http {sidecar.http_port} "
                f"grpc {sidecar.grpc_port}",
                file=sys.stderr,
            )
        api = mode.running.get("tasktide-api")
        if api is not None:
            print(
                f"API: http://127.0.0.1:{api[0].port}  logs: {args.workdir}  (Ctrl-C stops)", file=sys.stderr
            )
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        mode.stop()
    return 0


def cmd_serve(_: argparse.Namespace) -> int:
    from tasktide.entrypoints.serve import serve

    serve()
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from tasktide.messaging.replay import read_dead_letters, replay

    if args.action == "list":
        for record in read_dead_letters(args.kafka, group=None):
            print(record.offset, record.summary)
        return 0
    if not args.broker_url:
        print("replay needs --broker-url, e.g. http://127.0.0.1:8080/tasktide/default", file=sys.stderr)
        return 2
    print(f"replayed {replay(args.kafka, args.broker_url)} events", file=sys.stderr)
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from tasktide.messaging.events import write_json_schemas

    for path in write_json_schemas(Path(args.out)):
        print(path)
    return 0


SERVE_HELP = """Container entrypoint. With FUNCTION_TARGET set (recurring, reminders, notifier, audit, relay)
it runs that CloudEvents function under gunicorn, else the task API under uvicorn, listening on $PORT
(default 8080). Env: FUNCTION_TARGET, PORT, TASKTIDE_WORKERS, TASKTIDE_THREADS and every TASKTIDE_*
setting."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("tasktide")
    except PackageNotFoundError:
        return "unknown"


class VersionAction(argparse.Action):
    """`--version`, looked up only when asked (importlib.metadata would slow every `tasktide serve`)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasktide", description=__doc__)
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the API, every function and the event router in one process")
    dev.add_argument("--host", help="bind address (TASKTIDE_HOST, default 127.0.0.1)")
    dev.add_argument("--port", type=int, help="port (TASKTIDE_PORT, default 8080)")
    dev.add_argument(
        "--database-url", help="SQLAlchemy URL (TASKTIDE_DATABASE_URL, default sqlite:///./tasktide.db)"
    )
    dev.add_argument(
        "--kafka", metavar="HOST:PORT", help="use a real Kafka broker (TASKTIDE_KAFKA_BOOTSTRAP)"
    )
    dev.add_argument(
        "--ping-every",
        type=parse_seconds,
        metavar="DURATION",
        help="run every PingSource this often instead of its schedule, e.g. 1s (TASKTIDE_PING_EVERY)",
    )
    dev.set_defaults(func=cmd_dev)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument(
        "--database-url", help="SQLAlchemy URL (TASKTIDE_DATABASE_URL, default sqlite:///./tasktide.db)"
    )
    migrate.set_defaults(func=cmd_migrate)

    token = sub.add_parser(
        "token",
        help="print a bearer token for USER_ID",
        description="Print a bearer token for USER_ID, signed with TASKTIDE_JWT_SECRET (or the jwt-secret "
        "secret); without one, with the development secret that `tasktide dev` uses.",
    )
    token.add_argument("user_id", metavar="USER_ID", help="the user the token is for (its sub claim)")
    token.add_argument(
        "--ttl",
        type=parse_duration,
        default=timedelta(hours=24),
        metavar="DURATION",
        help="lifetime, e.g. 30m, 24h or 7d (default 24h)",
    )
    token.set_defaults(func=cmd_token)

    serve = sub.add_parser(
        "serve",
        help="container entrypoint: FUNCTION_TARGET's function, else the API, on $PORT",
        description=SERVE_HELP,
    )
    serve.set_defaults(func=cmd_serve)

    dapr_run = sub.add_parser(
        "dapr-run", help="run every app beside its own real daprd on Postgres + Kafka (Dapr mode)"
    )
    dapr_run.add_argument(
        "--database-url",
        default="postgresql+psycopg://tasktide:tasktide@127.0.0.1:55432/tasktide",
        help="Postgres (apps read it through their sidecar's secret store; state.postgresql uses it too)",
    )
    dapr_run.add_argument(
        "--kafka",
        default="127.0.0.1:9092",
        metavar="HOST:PORT",
        help="Kafka bootstrap for the sidecars' pub/sub (default 127.0.0.1:9092)",
    )
    dapr_run.add_argument("--apps", nargs="*", help="app ids to run (default: all six)")
    dapr_run.add_argument("--cron", help='override the cron bindings\' schedule, e.g. "@every 5s"')
    dapr_run.add_argument("--workdir", default=".local/dapr-run", help="rendered resources and logs")
    dapr_run.add_argument(
        "--render", action="store_true", help="only write the resources dapr.yaml (Dapr CLI) points at"
    )
    dapr_run.set_defaults(func=cmd_dapr_run)

    dead = sub.add_parser("dead-letters", help="list or replay the dead-letter topic")
    dead.add_argument("action", choices=["list", "replay"], help="list the dead letters, or replay them")
    dead.add_argument(
        "--kafka", required=True, metavar="HOST:PORT", help="Kafka bootstrap server holding the topic"
    )
    dead.add_argument(
        "--broker-url",
        metavar="URL",
        help="Broker ingress to replay into, e.g. http://127.0.0.1:8080/tasktide/default "
        "(on a cluster: kubectl port-forward, see docs/operations.md)",
    )
    dead.set_defaults(func=cmd_dead_letters)

    schemas = sub.add_parser("schemas", help="write the JSON Schemas of every event's data")
    schemas.add_argument(
        "--out", default="docs/schemas", metavar="DIR", help="directory to write to (default docs/schemas)"
    )
    schemas.set_defaults(func=cmd_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:
        # Imported only now: `tasktide serve` execs its server at once, without pydantic or the settings.
        from pydantic import ValidationError

        from tasktide.settings import ConfigurationError

        if isinstance(exc, ConfigurationError):
            print(f"tasktide {args.command}: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, ValidationError):  # a TASKTIDE_* variable the settings refused
            for error in exc.errors():
                name = "TASKTIDE_" + "_".join(str(part) for part in error["loc"]).upper()
                print(f"tasktide {args.command}: error: {name}: {error['msg']}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
