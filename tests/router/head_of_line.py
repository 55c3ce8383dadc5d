"""Measure head-of-line blocking in the router's Kafka mode: how late is one user's event that follows
``--failing`` events whose webhook keeps failing, all on one partition, behind an unordered Trigger?

Real Kafka, real backoff (the Trigger retries as eventing/triggers.yaml's do: retry 5, exponential,
PT0.5S by default, so each failing event retries for 1+2+4+8+16 = 31 s), a real HTTP subscriber.

    TASKTIDE_TEST_KAFKA=127.0.0.1:9092 .venv/bin/python -m tests.router.head_of_line [--failing 4]
    TASKTIDE_TEST_KAFKA=127.0.0.1:9092 .venv/bin/python -m tests.router.head_of_line --failing 0 --others 500

Prints the delay from producing the events to the first other user's delivery, and with ``--others N``
the time until all N were delivered (a burst through the consumer). Not a test (no timed assertions in
tests); the numbers go in the report and docs/architecture.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from tasktide.messaging import codec
from tasktide.router.manifests import load_documents
from tasktide.router.runtime import EventRuntime


async def _subscriber(arrivals: dict[str, float]) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    """The subscriber, served on the runtime's own event loop (as `tasktide dev` serves its functions)."""
    app = FastAPI()

    @app.post("/services/{name}")
    async def service(name: str, request: Request) -> Response:
        event = codec.from_http(dict(request.headers), await request.body())
        if str(event["subject"]).startswith("failing"):
            return Response(b"webhook down", status_code=503)
        arrivals.setdefault(str(event["subject"]), time.monotonic())
        return Response(status_code=202)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, task


def _docs(topic: str, dead_letter: str, group: str, backoff: str) -> list[dict[str, Any]]:
    dls = {"ref": {"kind": "KafkaSink", "name": "dlq"}}
    return [
        {"kind": "Broker", "metadata": {"name": "default"}},
        {"kind": "KafkaSink", "metadata": {"name": "dlq"}, "spec": {"topic": dead_letter}},
        {
            "kind": "KafkaSource",
            "metadata": {"name": "reminders"},
            "spec": {
                "consumerGroup": group,
                "topics": [topic],
                "sink": {"ref": {"kind": "Broker", "name": "default"}},
            },
        },
        {
            "kind": "Trigger",
            "metadata": {"name": "notifier"},  # unordered, as eventing/triggers.yaml's notifier
            "spec": {
                "broker": "default",
                "filter": {"attributes": {"type": "com.tasktide.reminder.due"}},
                "subscriber": {"ref": {"kind": "Service", "name": "tasktide-notifier"}},
                "delivery": {
                    "retry": 5,
                    "backoffPolicy": "exponential",
                    "backoffDelay": backoff,
                    "deadLetterSink": dls,
                },
            },
        },
    ]


async def measure(
    bootstrap: str, failing: int, backoff: str, others: int = 1, **options: Any
) -> tuple[float, float]:
    suffix = uuid.uuid4().hex[:8]
    topic, dead_letter, group = f"hol-{suffix}", f"hol-dlq-{suffix}", f"hol-group-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1), NewTopic(dead_letter, 1, 1)])
    arrivals: dict[str, float] = {}
    base_url, server, serving = await _subscriber(arrivals)
    runtime = EventRuntime.create(
        base_url,
        kafka_bootstrap=bootstrap,
        manifests=load_documents(_docs(topic, dead_letter, group, backoff)),
        **options,
    )
    await runtime.start()
    try:
        other = [f"other-user-{i}" for i in range(others)]
        subjects = [f"failing-webhook-{i}" for i in range(failing)] + other
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        started = time.monotonic()
        for subject in subjects:
            event = codec.new_event(
                "com.tasktide.reminder.due",
                "/bench",
                {},
                subject=subject,
                extensions={"partitionkey": "same"},
            )
            key, headers, value = codec.to_kafka_record(event)
            producer.send(topic, value=value, key=key, headers=headers)
        producer.flush(timeout=30)
        producer.close()
        produced = time.monotonic()
        deadline = produced + failing * 40 + others + 60
        while len(arrivals) < others and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        first = arrivals.get(other[0], float("inf")) - produced
        return first, max(arrivals.values(), default=float("inf")) - started
    finally:
        await runtime.stop()
        server.should_exit = True
        await serving
        admin.delete_topics([topic, dead_letter])
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failing", type=int, default=4)
    parser.add_argument("--backoff", default="PT0.5S")
    parser.add_argument("--others", type=int, default=1)
    parser.add_argument("--max-in-flight", type=int, default=None)
    args = parser.parse_args()
    bootstrap = os.environ.get("TASKTIDE_TEST_KAFKA", "127.0.0.1:9092")
    options = {} if args.max_in_flight is None else {"max_in_flight": args.max_in_flight}
    first, last = asyncio.run(measure(bootstrap, args.failing, args.backoff, args.others, **options))
    print(f"other user's event behind {args.failing} failing webhooks ({args.backoff}): {first:.3f} s late")
    if args.others > 1:
        print(f"all {args.others} other events delivered after {last:.3f} s ({args.others / last:.0f}/s)")


if __name__ == "__main__":
    main()
