"""gunicorn settings for a function container (`tasktide serve` with `FUNCTION_TARGET`).

Every line gunicorn's master and workers log is JSON (`logconfig_dict`, the same handler as
`tasktide.observability.logs.configure_logging`).

With several workers and `PROMETHEUS_MULTIPROC_DIR` set, a dead worker's live gauges are dropped so
`/metrics` (served by any worker) aggregates only the living ones.
"""

from __future__ import annotations

import os
from typing import Any

from tasktide.observability import logs, metrics

logconfig_dict = logs.dict_config(
    os.environ.get("FUNCTION_TARGET", "function"), os.environ.get("TASKTIDE_LOG_LEVEL", "INFO")
)


def child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics.mark_process_dead(worker.pid)
