"""gunicorn settings for a function container (`tasktide serve` with `FUNCTION_TARGET`).

Every line gunicorn's master and workers log is JSON (`logconfig_dict`, the same handler as
`tasktide.observability.logs.configure_logging`).

The relay (`FUNCTION_TARGET=relay`) starts listening for `NOTIFY tasktide_outbox` as soon as a worker is up,
not on its first event: a warm relay publishes within milliseconds of a commit (prod keeps one pod warm).

The app is built in the master, before it forks its workers (`preload_app`, as functions-framework's own
gunicorn does): a worker inherits the imported modules instead of importing them itself, so its resident
set holds only the code pages serving touches, and several workers share the rest. Building the app
connects nothing and starts no thread (the container, its connections and the relay's listener are built
in the worker), so nothing is lost across the fork. `tasktide serve` runs that build with cyclic garbage
collection off; `when_ready` (after the build, before the first fork) moves every object built so far out
of the collector's reach (`gc.freeze`) and turns it back on: a worker's collections never scan, nor write
to, the inherited objects, so their pages stay shared.

With several workers and `PROMETHEUS_MULTIPROC_DIR` set, a dead worker's live gauges are dropped so
`/metrics` (served by any worker) aggregates only the living ones, and so are the master's (created when it
imported the metrics module; it serves nothing).
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from tasktide.observability import logs, metrics

preload_app = True

logconfig_dict = logs.dict_config(
    os.environ.get("FUNCTION_TARGET", "function"), os.environ.get("TASKTIDE_LOG_LEVEL", "INFO")
)


def when_ready(_server: Any) -> None:
    gc.freeze()
    gc.enable()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics.mark_process_dead(os.getpid())


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
