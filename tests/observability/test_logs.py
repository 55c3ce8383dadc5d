"""Tests for tasktide.observability.logs: JSON lines on stdout, contextual fields, trace ids and secret
redaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tasktide.observability import logs

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXNlY3JldA"


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    logs.configure_logging("reminders", level="DEBUG")
    capsys.readouterr()
    yield capsys
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_configure_logging_info_record_emits_one_json_object_with_base_fields(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger("tasktide.test").info("hello %s", "world")

    [line] = _lines(json_logs)
    assert line["msg"] == "hello world"
    assert line["level"] == "INFO"
    assert line["logger"] == "tasktide.test"
    assert line["function"] == "reminders"
    assert line["ts"].endswith("+00:00")


def test_configure_logging_called_twice_keeps_single_handler(json_logs: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging("reminders", level="INFO")
    logging.getLogger("tasktide.test").warning("once")

    assert [line["msg"] for line in _lines(json_logs)] == ["once"]


def test_bind_with_traceparent_adds_context_fields_and_trace_id(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    log = logging.getLogger("tasktide.test")
    with logs.bind(ce_id="evt-1", ce_type="com.tasktide.reminder.due", traceparent=TRACEPARENT):
        with logs.bind(task_id="task-9", user_id="user-1"):
            log.info("inside")
        log.info("outer")
    log.info("outside")

    inner, outer, outside = _lines(json_logs)
    assert inner["ce_id"] == "evt-1"
    assert inner["ce_type"] == "com.tasktide.reminder.due"
    assert inner["task_id"] == "task-9"
    assert inner["user_id"] == "user-1"
    assert inner["trace_id"] == TRACE_ID
    assert "traceparent" not in inner
    assert "task_id" not in outer
    assert outer["trace_id"] == TRACE_ID
    assert not {"ce_id", "trace_id", "task_id"} & outside.keys()


def test_bind_function_field_overrides_configured_function(json_logs: pytest.CaptureFixture[str]) -> None:
    with logs.bind(function="notifier"):
        logging.getLogger("tasktide.test").info("served by dev")

    [line] = _lines(json_logs)
    assert line["function"] == "notifier"


def test_extra_fields_with_traceparent_present_in_output(json_logs: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("tasktide.test").info(
        "via extra", extra={"task_id": "t-2", "traceparent": TRACEPARENT, "attempt": 3}
    )

    [line] = _lines(json_logs)
    assert line["task_id"] == "t-2"
    assert line["trace_id"] == TRACE_ID
    assert line["attempt"] == 3


def test_log_bearer_token_and_password_field_secrets_redacted(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger("tasktide.test").info(
        "calling webhook with Authorization: Bearer s3cr3t-bearer-value, jwt=%s password=hunter2",
        JWT,
        extra={
            "password": "hunter2",
            "api_key": "key-123",
            "headers": {"Authorization": "Bearer s3cr3t-bearer-value", "Accept": "application/json"},
            "task_id": "task-1",
        },
    )

    raw = json_logs.readouterr().out
    for secret in ("s3cr3t-bearer-value", "hunter2", "key-123", JWT, "c2lnbmF0dXJlLXNlY3JldA"):
        assert secret not in raw
    [line] = [json.loads(raw_line) for raw_line in raw.splitlines()]
    assert line["password"] == logs.REDACTED
    assert line["api_key"] == logs.REDACTED
    assert line["headers"] == {"Authorization": logs.REDACTED, "Accept": "application/json"}
    assert line["task_id"] == "task-1"
    assert logs.REDACTED in line["msg"]
    assert line["msg"].startswith("calling webhook with Authorization:")


def test_log_exception_with_secret_traceback_redacted(json_logs: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError("token=abc123 rejected")
    except RuntimeError:
        logging.getLogger("tasktide.test").exception("delivery failed")

    [line] = _lines(json_logs)
    assert line["level"] == "ERROR"
    assert "RuntimeError" in line["exc"]
    assert "abc123" not in line["exc"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACEPARENT, TRACE_ID),
        (TRACEPARENT.upper(), TRACE_ID),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        ("not-a-traceparent", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_traceparent_various_inputs_returns_trace_id_or_none(
    value: str | None, expected: str | None
) -> None:
    assert logs.parse_traceparent(value) == expected


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        (f"token {JWT} here", JWT),
        ('{"client_secret": "shh-123"}', "shh-123"),
        ("db password: pa55word", "pa55word"),
        # one per pattern with no other trigger word, so a quick pre-check can never let one through
        (f"sent {JWT}", JWT),
        ("signed with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("dsn postgresql://app:s3cr3t@db:5432/tasks", "s3cr3t"),
        ("APIKEY=zz9-top", "zz9-top"),
        ("BEARER xyz.123", "xyz.123"),
    ],
)
def test_redact_text_credentials_removed(text: str, secret: str) -> None:
    redacted = logs.redact_text(text)

    assert secret not in redacted
    assert logs.REDACTED in redacted


def test_redact_text_ordinary_message_unchanged() -> None:
    text = "task task-1 completed by user-7 in 12ms"

    assert logs.redact_text(text) == text


def test_json_formatter_uvicorn_color_message_dropped_and_ansi_stripped(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger("tasktide.test.uvicorn").info(  # uvicorn.error may not propagate after a server ran
        "Started server process [%d]", 42, extra={"color_message": "Started \x1b[36m%d\x1b[0m"}
    )
    logging.getLogger("tasktide.test").info("\x1b[32mgreen\x1b[0m")

    first, second = _lines(json_logs)
    assert "color_message" not in first and first["msg"] == "Started server process [42]"
    assert second["msg"] == "green"


def _record(msg: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("tasktide.test", logging.WARNING, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_text_formatter_same_fields_as_json_one_readable_line() -> None:
    record = _record("delivery failed", ce_id="ev-1", task_id="t-1", attempt=2, token=JWT)
    as_json = json.loads(logs.JsonFormatter("notifier").format(record))
    as_text = logs.TextFormatter("notifier").format(record)

    assert "\n" not in as_text and not as_text.startswith("{")
    assert " WARNING notifier tasktide.test: delivery failed" in as_text
    for key in ("ce_id", "task_id", "attempt", "token"):
        assert f"{key}={as_json[key]}" in as_text
    assert JWT not in as_text and logs.REDACTED in as_text


class _Terminal:
    def isatty(self) -> bool:
        return True


def _installed_formatter() -> logging.Formatter | None:
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "_tasktide_json_handler", False)]
    return handler.formatter


def test_configure_logging_auto_text_on_terminal_json_otherwise(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    logs.configure_logging("api", log_format="auto")
    assert isinstance(_installed_formatter(), logs.JsonFormatter)  # captured stdout is no terminal
    logs.configure_logging("api", log_format="text")
    assert isinstance(_installed_formatter(), logs.TextFormatter)
    terminal: Any = _Terminal()
    assert logs._wants_text("auto", terminal) and logs._wants_text("text", terminal)
    assert not logs._wants_text("json", terminal)


def test_redact_url_credentials_secret_query_and_path_segments_removed() -> None:
    url = "https://bob:hunter2@hooks.example.com/services/T0001/B0002/XyZ9876543210abcdefGHIJ?access_token=abc&page=2"
    safe = logs.redact_url(url)
    assert "hunter2" not in safe and "bob" not in safe
    assert "XyZ9876543210abcdefGHIJ" not in safe and "access_token=[REDACTED]" in safe
    assert "page=2" in safe and "/services/T0001/B0002/" in safe
    task_path = "/api/alice/tasks/0c5d3c52-4f0e-4f59-9a57-5c2d6a9b8e13"
    assert logs.redact_url(task_path) == task_path


def test_redact_text_url_password_and_webhook_secret_redacted() -> None:
    text = "tasktide dev ready: postgresql+psycopg://tasktide:s3cret-pw@127.0.0.1:5432/db, whsec_QUJDRA=="
    safe = logs.redact_text(text)
    assert "s3cret-pw" not in safe and "QUJDRA" not in safe
    assert "postgresql+psycopg://tasktide:[REDACTED]@127.0.0.1:5432/db" in safe


def test_uvicorn_access_record_json_with_redacted_query(json_logs: pytest.CaptureFixture[str]) -> None:
    """Issue 12 finding 3: uvicorn's access log logged `?access_token=<JWT>` whole, as plain text."""
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.INFO)  # an earlier uvicorn server on this worker may have left it at WARNING
    access.addHandler(logging.StreamHandler())  # what uvicorn's own LOGGING_CONFIG installs
    access.propagate = False
    logs.route_server_loggers()
    path = f"/api/u1/stream?access_token={JWT}"
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
    [line] = _lines(json_logs)
    assert JWT not in json.dumps(line)
    assert line["path"] == "/api/u1/stream?access_token=[REDACTED]"
    assert (line["http_method"], line["status"], line["client"]) == ("GET", 200, "127.0.0.1:5000")
    assert access.handlers == [] and access.propagate


def test_kafka_closed_socket_race_logged_at_debug_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure_logging("test", "INFO", "json")
    transport = logging.getLogger(logs.KAFKA_TRANSPORT_LOGGER)
    try:
        None.recv(4096)  # type: ignore[attr-defined]
    except AttributeError:
        transport.exception(
            "<KafkaTCPTransport [none] (closed)>: Error receiving network data closing socket"
        )
    try:
        raise ConnectionResetError("peer reset")
    except ConnectionResetError:
        transport.exception("<KafkaTCPTransport [127.0.0.1:9092]>: Error receiving network data")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [line["msg"] for line in lines] == [
        "<KafkaTCPTransport [127.0.0.1:9092]>: Error receiving network data"
    ]
    assert lines[0]["level"] == "ERROR"
