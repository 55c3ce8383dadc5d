"""One CloudEvents function per module; each is served by functions-framework (`FUNCTION_TARGET`)."""

TARGETS = ("recurring", "reminders", "notifier", "audit", "relay")
