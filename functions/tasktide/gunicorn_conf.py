"""gunicorn settings for a function container (`tasktide serve` with `FUNCTION_TARGET`).

With several workers and `PROMETHEUS_MULTIPROC_DIR` set, a dead worker's live gauges are dropped so
`/metrics` (served by any worker) aggregates only the living ones.
"""

from __future__ import annotations

import os
from typing import Any

from tasktide import metrics


def child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics.mark_process_dead(worker.pid)
