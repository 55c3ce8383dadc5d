"""The `tasktide` command line as a new user meets it: --version, help on every option, one-line errors,
durations in flags and env vars alike, and a token that says which secret signed it."""

from __future__ import annotations

import argparse

import jwt
import pytest

from tasktide.entrypoints import cli
from tasktide.services import resolve_jwt_secret
from tasktide.settings import DEV_JWT_SECRET, ConfigurationError, Settings, get_settings

POSTGRES = "postgresql+psycopg://tasktide:tasktide@127.0.0.1:1/tasktide"


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TASKTIDE_JWT_SECRET", "TASKTIDE_DATABASE_URL", "TASKTIDE_DEV_MODE", "TASKTIDE_PING_EVERY"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_cli_version_prints_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == "tasktide 0.1.0"


def test_cli_every_option_of_every_command_has_help() -> None:
    for name, sub in _subparsers(cli.build_parser()).items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"tasktide {name} {action.dest}: no help text"


def test_cli_serve_help_mentions_function_target_and_port() -> None:
    text = _subparsers(cli.build_parser())["serve"].format_help()
    assert "FUNCTION_TARGET" in text and "$PORT" in text


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("0.5", 0.5)])
def test_settings_ping_every_duration_text_accepted(
    monkeypatch: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    monkeypatch.setenv("TASKTIDE_PING_EVERY", text)
    assert Settings().ping_every == seconds
    assert cli.parse_seconds(text) == seconds


def test_cli_invalid_setting_env_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TASKTIDE_PING_EVERY", "soon")
    assert cli.main(["token", "alice"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("tasktide token: error: TASKTIDE_PING_EVERY:") and "1s" in line


def test_resolve_jwt_secret_postgres_without_secret_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="TASKTIDE_JWT_SECRET"):
        resolve_jwt_secret(Settings(database_url=POSTGRES))


def test_resolve_jwt_secret_dev_mode_on_postgres_uses_dev_secret() -> None:
    assert resolve_jwt_secret(Settings(database_url=POSTGRES, dev_mode=True)) == DEV_JWT_SECRET


def test_cli_token_without_secret_signs_with_dev_secret_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["token", "alice"]) == 0
    out, err = capsys.readouterr()
    claims = jwt.decode(out.strip(), DEV_JWT_SECRET, algorithms=["HS256"], audience="tasktide-api")
    assert claims["sub"] == "alice"
    assert "TASKTIDE_JWT_SECRET is not set" in err and "development secret" in err


def test_cli_token_with_secret_signs_with_it_silently(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TASKTIDE_JWT_SECRET", "s3cret-0123456789abcdef0123456789ab")
    monkeypatch.setenv("TASKTIDE_DATABASE_URL", POSTGRES)
    assert cli.main(["token", "bob", "--ttl", "30m"]) == 0
    out, err = capsys.readouterr()
    secret = "s3cret-0123456789abcdef0123456789ab"
    claims = jwt.decode(out.strip(), secret, algorithms=["HS256"], audience="tasktide-api")
    assert claims["sub"] == "bob" and claims["exp"] - claims["iat"] == 1800
    assert err == ""
