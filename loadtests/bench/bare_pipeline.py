"""The event path at its floor on this machine, for `event_latency.py`: tasktide's hops and nothing else.

Consumes: env BARE_PG (libpq URL of a database with tables `bare_tasks(id)` and `bare_audit(id)`),
BARE_KAFKA (bootstrap), BARE_TOPIC, and for `forward` BARE_SINK_URL.
Emits, per role (each its own process, on 127.0.0.1, as tasktide's are on a cluster):
  api      ASGI `POST /` with an id as the body: INSERT it into `bare_tasks` and COMMIT (psycopg,
           autocommit), produce it to BARE_TOPIC (kafka-python, acks=all) and wait for the ack, answer 201;
  forward  a group-less kafka-python consumer at the end of BARE_TOPIC POSTs each record's value to
           BARE_SINK_URL (one HTTP hop, as a Trigger delivers), until SIGTERM;
  sink     ASGI `POST /`: INSERT the id into `bare_audit` and COMMIT.
No outbox, no relay, no Broker, no CloudEvents, no auth, no ORM: what is left is the hardware's cost of an
HTTP hop, two commits, an acks=all produce, a consume and another HTTP hop.

    uvicorn bare_pipeline:api | uvicorn bare_pipeline:sink | python bare_pipeline.py forward
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

_state: dict[str, Any] = {}


def _connection() -> Any:
    if "pg" not in _state:
        import psycopg

        _state["pg"] = psycopg.connect(os.environ["BARE_PG"], autocommit=True)
    return _state["pg"]


def _producer() -> Any:
    if "kafka" not in _state:
        from kafka import KafkaProducer

        _state["kafka"] = KafkaProducer(bootstrap_servers=os.environ["BARE_KAFKA"], acks="all", linger_ms=0)
    return _state["kafka"]


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _created(send: Any) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def api(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    key = await _body(receive)
    _connection().execute("INSERT INTO bare_tasks (id) VALUES (%s)", (key.decode(),))
    _producer().send(os.environ["BARE_TOPIC"], key=key, value=key).get(timeout=30)
    await _created(send)


async def sink(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    key = await _body(receive)
    _connection().execute("INSERT INTO bare_audit (id) VALUES (%s)", (key.decode(),))
    await _created(send)


def forward() -> int:
    import httpx
    from kafka import KafkaConsumer, TopicPartition

    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
    topic = os.environ["BARE_TOPIC"]
    consumer = KafkaConsumer(
        bootstrap_servers=os.environ["BARE_KAFKA"],
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)
    print("ready", flush=True)
    with httpx.Client(timeout=30.0) as client:
        while not stopped:
            for batch in consumer.poll(timeout_ms=100).values():
                for record in batch:
                    client.post(os.environ["BARE_SINK_URL"], content=record.value).raise_for_status()
    consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(forward() if sys.argv[1:] == ["forward"] else 2)
