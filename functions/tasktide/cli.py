"""`tasktide` command line: dev (everything in one process), migrate, token, serve, dead-letters, schemas."""

from __future__ import annotations

import argparse
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
    try:
        return parse_duration(text).total_seconds()
    except argparse.ArgumentTypeError:
        return float(text)


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
    from tasktide.db.migrate import upgrade
    from tasktide.settings import get_settings

    upgrade(get_settings().database_url)
    print("migrated", file=sys.stderr)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from tasktide.api.auth import encode_token
    from tasktide.dapr import secret_store
    from tasktide.services import resolve_jwt_secret
    from tasktide.settings import get_settings

    settings = get_settings()
    print(encode_token(args.user_id, resolve_jwt_secret(settings, secret_store(settings)), args.ttl))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    _apply_env(args)
    from tasktide.dev import serve_dev

    serve_dev()
    return 0


def cmd_serve(_: argparse.Namespace) -> int:
    from tasktide.serve import serve

    serve()
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from tasktide.replay import read_dead_letters, replay

    if args.action == "list":
        for record in read_dead_letters(args.kafka, group=None):
            print(record.offset, record.summary)
        return 0
    if not args.broker_url:
        print("replay needs --broker-url, e.g. http://127.0.0.1:8080/default/default", file=sys.stderr)
        return 2
    print(f"replayed {replay(args.kafka, args.broker_url)} events", file=sys.stderr)
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from tasktide.events import write_json_schemas

    for path in write_json_schemas(Path(args.out)):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tasktide", description=__doc__)
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
    dev.add_argument("--ping-every", type=parse_seconds, help="run every PingSource this often, e.g. 1s")
    dev.set_defaults(func=cmd_dev)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--database-url")
    migrate.set_defaults(func=cmd_migrate)

    token = sub.add_parser("token", help="print a bearer token for USER_ID")
    token.add_argument("user_id")
    token.add_argument("--ttl", type=parse_duration, default=timedelta(hours=24))
    token.set_defaults(func=cmd_token)

    serve = sub.add_parser(
        "serve", help="container entrypoint: FUNCTION_TARGET's function, else the API, on $PORT"
    )
    serve.set_defaults(func=cmd_serve)

    dead = sub.add_parser("dead-letters", help="list or replay the dead-letter topic")
    dead.add_argument("action", choices=["list", "replay"])
    dead.add_argument("--kafka", required=True, metavar="HOST:PORT")
    dead.add_argument("--broker-url", help="Broker ingress to replay into")
    dead.set_defaults(func=cmd_dead_letters)

    schemas = sub.add_parser("schemas", help="write the JSON Schemas of every event's data")
    schemas.add_argument("--out", default="docs/schemas")
    schemas.set_defaults(func=cmd_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
