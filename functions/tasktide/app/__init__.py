"""The application layer: the use cases of tasktide over the pure domain and the ports.

Each use case loads through a unit of work, changes state with the domain's pure functions, and saves the
state and its events atomically (task rows and outbox rows in one transaction; the relay is kicked after
the commit). The API routes and every function call these: routes parse, call, respond; functions parse,
call, count. Imports the domain, the event catalogue and `tasktide.app.ports` only (never `db`, `api`,
`functions`): `tasktide.db` implements the ports, `tasktide.services` wires them.

- `tasks.Tasks`: create, get, search, replace, patch, complete, reopen, delete, skip, next occurrence.
- `audit.Audit`: record a task event (trusted and not seen before), a task's history.
- `notifications.Notifications`: channel settings, in-app notifications, the reminder's deliveries.
- `reminders.scan`: claim the due reminders and announce them.
"""
