"""Event catalogue: envelope shape, topics, and drift between the code's data schemas and the checked-in docs.

Consumes `tasktide.messaging.events` and the documents `docs/schemas/*.json` and `docs/asyncapi.yaml`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasktide.domain.tasks import Task, new_task
from tasktide.messaging import codec, events

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMAS = DOCS / "schemas"
ASYNCAPI = DOCS / "asyncapi.yaml"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ALL_TYPES = sorted(events.DATA_MODELS)


def a_task() -> Task:
    return new_task(
        "alice",
        {"title": "Pay rent", "tags": ["home"], "due_at": "2030-01-31T09:00:00Z", "reminders": ["PT1H"]},
        now=datetime(2030, 1, 1, tzinfo=UTC),
    )


def test_task_envelope_created_has_cloudevents_attributes() -> None:
    task = a_task()

    doc = events.task_envelope(events.TASK_CREATED, task, actor="alice", traceparent=TRACEPARENT).to_json()

    assert doc["specversion"] == "1.0"
    assert doc["type"] == "com.tasktide.task.created"
    assert doc["source"] == "/tasktide/api"
    assert doc["subject"] == str(task.id)
    assert doc["partitionkey"] == str(task.id)
    assert doc["traceparent"] == TRACEPARENT
    assert doc["datacontenttype"] == "application/json"
    assert uuid.UUID(doc["id"])
    assert doc["time"].endswith("Z")
    assert datetime.fromisoformat(doc["time"].replace("Z", "+00:00")).tzinfo is not None


def test_task_envelope_data_carries_snapshot_changed_and_actor() -> None:
    task = a_task()

    doc = events.task_envelope(
        events.TASK_UPDATED, task, function="recurring", changed=("title",), actor="bob"
    ).to_json()

    assert doc["source"] == "/tasktide/recurring"
    assert doc["data"]["task"]["id"] == str(task.id)
    assert doc["data"]["task"]["title"] == "Pay rent"
    assert doc["data"]["task"]["user_id"] == "alice"
    assert doc["data"]["task"]["tags"] == ["home"]
    assert doc["data"]["changed"] == ["title"]
    assert doc["data"]["actor"] == "bob"
    events.TaskEventData.model_validate(doc["data"])


def test_task_envelope_without_traceparent_omits_extension() -> None:
    doc = events.task_envelope(events.TASK_DELETED, a_task()).to_json()

    assert "traceparent" not in doc
    assert set(doc) == {
        "specversion",
        "id",
        "type",
        "source",
        "subject",
        "time",
        "datacontenttype",
        "partitionkey",
        "data",
    }


def test_envelope_explicit_event_id_is_kept() -> None:
    task = a_task()
    data = events.ReminderDueData(
        reminder_id=uuid.uuid4(),
        task_id=task.id,
        user_id="alice",
        title="Pay rent",
        offset="PT1H",
        remind_at=datetime(2030, 1, 31, 8, tzinfo=UTC),
        due_at=datetime(2030, 1, 31, 9, tzinfo=UTC),
        fired_at=datetime(2030, 1, 31, 8, tzinfo=UTC),
    )

    doc = events.envelope(events.REMINDER_DUE, "reminders", str(task.id), data, event_id="rem-1").to_json()

    assert doc["id"] == "rem-1"
    assert doc["source"] == "/tasktide/reminders"
    assert doc["partitionkey"] == doc["subject"] == str(task.id)


def test_envelope_to_json_is_the_structured_document_the_codec_writes() -> None:
    envelope = events.task_envelope(events.TASK_CREATED, a_task(), traceparent=TRACEPARENT)
    doc = envelope.to_json()

    _, body = codec.to_structured_http(envelope.to_cloud_event())
    assert json.loads(body) == doc
    assert codec.to_dict(codec.from_dict(doc)) == doc
    assert doc["time"] == codec.attributes(envelope.to_cloud_event())["time"]
    assert doc["time"].endswith("Z")


def test_envelope_to_kafka_record_keys_by_task_and_keeps_traceparent() -> None:
    task = a_task()
    doc = events.task_envelope(events.TASK_CREATED, task, traceparent=TRACEPARENT).to_json()

    key, headers, value = codec.to_kafka_record(codec.from_dict(doc))
    named = dict(headers)

    assert key == str(task.id).encode()
    assert named["ce_traceparent"] == TRACEPARENT.encode()
    assert named["ce_partitionkey"] == str(task.id).encode()
    assert named["content-type"] == b"application/json"
    assert json.loads(value)["task"]["id"] == str(task.id)


@pytest.mark.parametrize(
    ("event_type", "topics"),
    [
        *[(t, ("task-events", "task-updates")) for t in events.TASK_TYPES],
        (events.REMINDER_DUE, ("reminders",)),
        (events.NOTIFICATION_SENT, ("task-updates",)),
    ],
)
def test_topics_for_each_catalogue_type_returns_its_topics(event_type: str, topics: tuple[str, ...]) -> None:
    assert events.topics_for(event_type) == topics


def test_topics_for_unknown_type_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        events.topics_for("com.example.nope")


def test_json_schemas_match_checked_in_docs_schemas() -> None:
    """Drift guard: the data models and docs/schemas/*.json must agree."""
    expected = events.json_schemas()
    on_disk = {p.name.removesuffix(".json"): json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    hint = "docs/schemas drifted from tasktide.messaging.events: run `tasktide schemas --out docs/schemas`"

    assert sorted(on_disk) == sorted(expected), hint
    for event_type, schema in expected.items():
        assert on_disk[event_type] == schema, f"{event_type}: {hint}"


def test_write_json_schemas_writes_one_file_per_type(tmp_path: Path) -> None:
    written = events.write_json_schemas(tmp_path / "out")

    assert sorted(p.name for p in written) == [f"{t}.json" for t in ALL_TYPES]
    assert json.loads((tmp_path / "out" / f"{events.TASK_CREATED}.json").read_text())["title"] == (
        "TaskEventData"
    )


def _asyncapi() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return loaded


def test_asyncapi_document_is_version_3_with_every_topic_channel() -> None:
    doc = _asyncapi()
    addresses = {channel["address"] for channel in doc["channels"].values()}

    assert str(doc["asyncapi"]).startswith("3.")
    assert addresses == {"task-events", "task-updates", "reminders", "tasktide-dead-letter"}
    for name, operation in doc["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.removeprefix("#/channels/") in doc["channels"], name


def test_asyncapi_every_catalogue_type_has_message_with_existing_payload_file() -> None:
    doc = _asyncapi()
    messages = doc["components"]["messages"]
    by_type = {
        message["headers"]["properties"]["ce_type"]["const"]: message
        for message in messages.values()
        if "const" in message["headers"]["properties"]["ce_type"]
    }

    assert set(ALL_TYPES) <= set(by_type)
    for event_type in ALL_TYPES:
        message = by_type[event_type]
        assert message["contentType"] == codec.STRUCTURED_CONTENT_TYPE  # the relay writes structured mode
        ref = message["payload"]["properties"]["data"]["$ref"]
        assert (ASYNCAPI.parent / ref).resolve().is_file(), f"{event_type}: {ref} does not exist"
        assert Path(ref).name == f"{event_type}.json"


def test_asyncapi_channels_carry_the_catalogue_topics_for_each_type() -> None:
    doc = _asyncapi()
    messages = doc["components"]["messages"]
    channel_of = {channel["address"]: channel for channel in doc["channels"].values()}

    for event_type in ALL_TYPES:
        names = [
            n for n, m in messages.items() if m["headers"]["properties"]["ce_type"].get("const") == event_type
        ]
        for topic in events.topics_for(event_type):
            refs = {
                ref["$ref"].removeprefix("#/components/messages/")
                for ref in (m for m in channel_of[topic]["messages"].values())
            }
            assert refs & set(names), f"{event_type} is missing from channel {topic}"
