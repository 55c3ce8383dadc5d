"""The event-latency benchmark's baselines, run small: the HTTP hop (no services) and the bare pipeline
(the local Postgres and Kafka).

Run: make pytest PYTEST_ARGS="loadtests/bench/test_event_latency.py"
"""

from __future__ import annotations

import os

import event_latency


def test_raw_http_round_trip_both_pacings_measured_after_the_warm_up() -> None:
    back_to_back, apart = event_latency.raw_http_round_trip(3)
    assert len(back_to_back) == len(apart) == 3
    assert all(0 < s < 5 for s in back_to_back + apart)


def test_bare_pipeline_round_trip_every_id_reaches_the_sink() -> None:
    # (the sink may commit before the client has read the 201: the record is on Kafka before it is sent)
    posted, done = event_latency.bare_pipeline_round_trip(os.environ["TASKTIDE_TEST_KAFKA"], 3)
    assert len(posted) == len(done) == 3
    assert all(0 < s < 30 for s in posted + done)


def test_render_baselines_lead_and_only_measured_shapes_are_described() -> None:
    summary = event_latency.benchlib.Summary.of_seconds([0.001, 0.002])
    paths = [
        event_latency.Measured("-", "raw", "kafka", summary),
        event_latency.Measured("-", "raw-http", "http", summary),
        event_latency.Measured("cluster", "audit", "audit", summary),
    ]
    text = event_latency.render(paths, ["--shape", "cluster"], (0.1, 0.2))
    assert "| - | raw-http | http |" in text
    assert "- `cluster`:" in text and "- `dev`:" not in text
