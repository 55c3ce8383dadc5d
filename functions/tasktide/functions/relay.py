"""relay: the periodic outbox sweep, so a Kafka outage delays events but never loses them.

Consumes: the `outbox-sweep` PingSource tick (`dev.knative.sources.ping`). Emits: every unsent outbox
event to its Kafka topic (`task-events`, `task-updates`, `reminders`); then retention
(`tasktide.db.retention`):
sent outbox rows and expired state rows past their configured age are deleted.
"""

from __future__ import annotations

import logging
from typing import Any

import functions_framework

from tasktide.db import retention
from tasktide.functions import _kit
from tasktide.observability import metrics


@functions_framework.cloud_event
def relay(event: Any) -> None:
    with _kit.bind_event("relay", event):
        services = _kit.services()
        if services.relay is None:
            _kit.outcome("relay", event, "invalid")
            raise RuntimeError("relay has no publisher: set TASKTIDE_KAFKA_BOOTSTRAP")
        sent = services.relay.run_once()
        settings = services.settings
        purged = retention.purge(
            services.sessions,
            settings.outbox_retention,
            settings.state_retention,
            idempotency_age=settings.idempotency_retention,
        )
        if any(purged.values()):
            _kit.log.info("retention deleted %s", purged)
        metrics.EVENTS_CONSUMED.labels("relay", _kit.attr(event, "type") or "", "ok").inc()
        # an idle sweep (every second with --ping-every 1s) is DEBUG; one that published is INFO
        _kit.log.log(logging.INFO if sent else logging.DEBUG, "outbox sweep published %d events", sent)
