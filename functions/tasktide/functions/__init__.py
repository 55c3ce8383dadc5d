"""One CloudEvents function per module, picked by `FUNCTION_TARGET` and served by `tasktide.functions._server`
(functions-framework's app plus `/healthz` and `/metrics`; gunicorn in the container)."""

TARGETS = ("recurring", "reminders", "notifier", "audit", "relay")
