"""gunicorn settings for a function container (`tasktide serve` with `FUNCTION_TARGET`).

Every line gunicorn's master and workers log is JSON (`logconfig_dict`, the same handler as
`tasktide.observability.logs.configure_logging`).

The relay (`FUNCTION_TARGET=relay`) starts listening for `NOTIFY tasktide_outbox` as soon as a worker is up,
not on its first event: a warm relay publishes within milliseconds of a commit (prod keeps one pod warm).

With several workers and `PROMETHEUS_MULTIPROC_DIR` set, a dead worker's live gauges are dropped so
`/metrics` (served by any worker) aggregates only the living ones.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tasktide.observability import logs, metrics

logconfig_dict = logs.dict_config(
    os.environ.get("FUNCTION_TARGET", "function"), os.environ.get("TASKTIDE_LOG_LEVEL", "INFO")
)


def child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics.mark_process_dead(worker.pid)


def post_worker_init(_worker: Any) -> None:
    if os.environ.get("FUNCTION_TARGET") != "relay":
        return
    from tasktide.functions import _kit

    try:
        _kit.services()  # builds the container and starts the outbox listener
    except Exception:  # the database may not be up yet: the first sweep or event retries
        logging.getLogger("tasktide.relay").warning("outbox listener not started yet", exc_info=True)
