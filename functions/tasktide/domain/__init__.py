"""The pure domain: tasks, recurrence rules, reminder offsets and domain errors.

Stdlib + python-dateutil only; no I/O, no settings.  Consumes raw JSON-ish values and ``Task`` values;
emits validated ``Task`` values, next occurrences and ``DomainError`` exceptions.

Import the module you need (``tasktide.domain.tasks``, ``.recurrence``, ``.reminders``, ``.errors``): this
package imports none of them, so a consumer that only reads tasks never loads the rule engine.
"""
