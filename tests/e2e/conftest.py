"""End-to-end fixtures: `tasktide dev` as a subprocess in two modes, plus the servers it talks to.

`dev` is parametrised: "embedded" (SQLite tmp file, in-process topics) and "kafka" (a dedicated Postgres
database created next to TASKTIDE_TEST_DATABASE_URL, real Kafka at TASKTIDE_TEST_KAFKA). Kafka mode skips
locally when either is absent and fails under CI=true (`require_env`). Its KafkaSource consumer groups get a
per-run suffix and start at the topics' current end, so records left by earlier runs (or another dev
process sharing the broker) are neither replayed nor stolen.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from tasktide.settings import REPO_ROOT
from tests.testenv import JWT_SECRET, require_env

from .support import (
    EVENT_SIGNING_KEY,
    TASKTIDE,
    DevServer,
    MailRecorder,
    WebhookRecorder,
    child_env,
    free_port,
    fresh_database,
    start_process,
    wait_until_serving,
)

CONSUMER_GROUP = re.compile(r"^(\s*consumerGroup:\s*)(\S+)\s*$", re.MULTILINE)
KAFKA_TOPICS = ("task-events", "reminders")

MODES = [
    pytest.param("embedded", id="embedded"),
    pytest.param("kafka", id="kafka", marks=[pytest.mark.kafka, pytest.mark.postgres]),
]


@pytest.fixture(scope="session")
def webhook_recorder() -> Iterator[WebhookRecorder]:
    recorder = WebhookRecorder()
    recorder.start()
    yield recorder
    recorder.stop()


@pytest.fixture(scope="session")
def mail_recorder() -> Iterator[MailRecorder]:
    recorder = MailRecorder()
    recorder.start()
    yield recorder
    recorder.stop()


@pytest.fixture(scope="session")
def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="session")
def e2e_database_url(postgres_url: str) -> Iterator[str]:
    """A database of its own, so the dev server's relay never touches other tests' outbox rows."""
    with fresh_database(postgres_url, "e2e") as url:
        yield url


def commit_end_offsets(bootstrap: str, group: str, topics: tuple[str, ...]) -> None:
    """Give a new consumer group committed offsets at the end of `topics` (nothing old is replayed)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in (consumer.partitions_for_topic(topic) or ())
        ]
        if partitions:
            consumer.assign(partitions)
            ends = consumer.end_offsets(partitions)
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in ends.items()})
    finally:
        consumer.close(autocommit=False)


@pytest.fixture(scope="session")
def isolated_eventing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(bootstrap, eventing dir): the repo's eventing YAML with per-run KafkaSource consumer groups."""
    yield from _isolated_eventing(tmp_path_factory)


@pytest.fixture
def own_eventing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Like ``isolated_eventing`` with groups of its own: for a test that starts a second `tasktide dev`
    beside the session's, which would otherwise share (and split) the session's consumer groups."""
    yield from _isolated_eventing(tmp_path_factory)


def _isolated_eventing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    bootstrap = require_env("TASKTIDE_TEST_KAFKA")
    suffix = uuid.uuid4().hex[:8]
    target = tmp_path_factory.mktemp("eventing")
    source = REPO_ROOT / "eventing"
    groups: list[str] = []
    for path in source.rglob("*.yaml"):
        if "local" in path.relative_to(source).parts:
            continue
        text_ = path.read_text()

        def rename(match: re.Match[str]) -> str:
            groups.append(f"{match[2]}-e2e-{suffix}")
            return f"{match[1]}{groups[-1]}"

        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(CONSUMER_GROUP.sub(rename, text_))
    assert groups, "no KafkaSource consumerGroup found in eventing/"
    for group in groups:
        commit_end_offsets(bootstrap, group, KAFKA_TOPICS)
    yield bootstrap, target
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_consumer_groups(groups)
    except Exception:  # best effort: an unused group expires on its own
        pass
    finally:
        admin.close()
    shutil.rmtree(target, ignore_errors=True)


@pytest.fixture(scope="session", params=MODES)
def dev(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    webhook_recorder: WebhookRecorder,
    mail_recorder: MailRecorder,
    webhook_secret: str,
) -> Iterator[DevServer]:
    mode: str = request.param
    workdir = tmp_path_factory.mktemp(f"dev-{mode}")
    port = free_port()
    env = {
        "TASKTIDE_JWT_SECRET": JWT_SECRET,
        "TASKTIDE_EVENT_SIGNING_KEY": EVENT_SIGNING_KEY,
        "TASKTIDE_SMTP_HOST": "127.0.0.1",
        "TASKTIDE_SMTP_PORT": str(mail_recorder.port),
        "TASKTIDE_WEBHOOK_SECRET": webhook_secret,
        "TASKTIDE_WEBHOOK_ALLOW_LOCAL": "true",  # the recorder listens on http://127.0.0.1
        "TASKTIDE_LOG_LEVEL": "INFO",
    }
    argv = [TASKTIDE, "dev", "--port", str(port), "--ping-every", "1s"]
    if mode == "kafka":
        bootstrap, eventing_dir = request.getfixturevalue("isolated_eventing")
        database_url: str = request.getfixturevalue("e2e_database_url")
        env["TASKTIDE_EVENTING_DIR"] = str(eventing_dir)
        argv += ["--kafka", bootstrap]
        timeout = 60.0
    else:
        database_url = f"sqlite:///{workdir / 'tasktide.db'}"
        timeout = 30.0
    argv += ["--database-url", database_url]
    proc = start_process(f"tasktide-dev-{mode}", argv, child_env(env), workdir)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_serving(proc, f"{base_url}/readyz", timeout=60.0, ok=lambda status: status == 200)
    yield DevServer(
        mode,
        base_url,
        database_url,
        timeout,
        proc,
        webhook_recorder,
        mail_recorder,
        webhook_secret,
        JWT_SECRET,
    )
    proc.stop()
    if proc.popen.returncode not in (0, -15):
        print(f"tasktide dev ({mode}) exited with {proc.popen.returncode}:\n{proc.log_tail()}")
