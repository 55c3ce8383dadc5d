"""Logs carry no secret (issue 12 finding 3): `tasktide dev` and `tasktide serve` (the API under uvicorn)
on real Postgres, a realistic flow (tokens in headers and in `?access_token=`, a reminder whose webhook
keeps failing), then every log line of both processes must be JSON and free of the bearer token, the JWT
and webhook signing secrets, the database password and the webhook URL's secret path and query parts; a
failing webhook is one warning line per attempt, without a traceback."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tasktide.api.auth import encode_token

from .support import (
    TASKTIDE,
    child_env,
    free_port,
    fresh_database,
    start_process,
    wait_for,
    wait_until_serving,
)

pytestmark = [pytest.mark.postgres]

SEGMENT = "XyZ9876543210abcdefGHIJ"
QUERY_TOKEN = "qtok" + "7" * 20


def parse(path: Path) -> list[dict[str, object]]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name}: a log line is not JSON: {line[:300]}") from None
    return parsed


def test_full_flow_logs_carry_no_secret(tmp_path: Path, postgres_url: str) -> None:
    jwt_secret = f"jwt-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    webhook_key = base64.b64encode(os.urandom(32)).decode()
    webhook_secret = f"whsec_{webhook_key}"
    env = {
        "TASKTIDE_JWT_SECRET": jwt_secret,
        "TASKTIDE_WEBHOOK_SECRET": webhook_secret,
        "TASKTIDE_WEBHOOK_ALLOW_LOCAL": "true",
        "TASKTIDE_LOG_LEVEL": "INFO",
    }
    with fresh_database(postgres_url, "logs") as database_url:
        dev_port, api_port = free_port(), free_port()
        dev = start_process(
            "dev",
            [TASKTIDE, "dev", "--port", str(dev_port), "--ping-every", "1s", "--database-url", database_url],
            child_env(env),
            tmp_path,
        )
        api = start_process(
            "serve",
            [TASKTIDE, "serve"],
            child_env({**env, "PORT": str(api_port), "TASKTIDE_DATABASE_URL": database_url}),
            tmp_path,
        )
        try:
            dev_url, api_url = f"http://127.0.0.1:{dev_port}", f"http://127.0.0.1:{api_port}"
            wait_until_serving(dev, f"{dev_url}/readyz", timeout=90, ok=lambda s: s == 200)
            wait_until_serving(api, f"{api_url}/readyz", timeout=90, ok=lambda s: s == 200)
            token = encode_token("alice", jwt_secret)
            auth = {"Authorization": f"Bearer {token}"}
            hook = f"http://127.0.0.1:{free_port()}/hooks/T0001/{SEGMENT}?token={QUERY_TOKEN}"
            with httpx.Client(timeout=10) as client:
                put = client.put(
                    f"{api_url}/api/alice/notification-settings", json={"webhook_url": hook}, headers=auth
                )
                assert put.status_code == 200, put.text
                due = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
                body = {"title": "leaky", "due_at": due, "reminders": ["PT2M"]}
                assert client.post(f"{dev_url}/api/alice/tasks", json=body, headers=auth).status_code == 201
                assert client.get(f"{api_url}/api/alice/tasks", headers=auth).status_code == 200
                assert client.get(f"{api_url}/api/alice/tasks?access_token={token}").status_code == 401
                with client.stream("GET", f"{api_url}/api/alice/stream?access_token={token}") as stream:
                    assert stream.status_code == 200
            wait_for(
                lambda: "channels failed" in dev.log_path.read_text(errors="replace"),
                timeout=60,
                what="the notifier to try the failing webhook",
            )
        finally:
            dev.stop()
            api.stop()
    lines = parse(dev.log_path) + parse(api.log_path)
    assert any(line.get("path", "").startswith("/api/alice/stream") for line in lines)  # type: ignore[union-attr]
    text = "\n".join(json.dumps(line) for line in lines)
    for secret in (token, jwt_secret, webhook_key, ":tasktide@", SEGMENT, QUERY_TOKEN):
        assert secret not in text, f"{secret[:12]}... appears in the logs"
    assert "dev ready" in text
    notifier = [line for line in lines if line.get("function") == "notifier"]
    failures = [line for line in notifier if "channels failed" in str(line.get("msg"))]
    assert failures and all("exc" not in line for line in notifier)
    receiver = hook.split("/hooks/")[0].removeprefix("http://")  # 127.0.0.1:<port>
    mentions = [line for line in lines if receiver in json.dumps(line) or "/hooks/" in json.dumps(line)]
    assert len(mentions) == len(failures), [m.get("msg") for m in mentions]
