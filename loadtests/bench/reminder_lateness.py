"""Reminder lateness end to end: remind time -> in-app notification row, in the embedded dev runtime.

Consumes: a `tasktide dev --ping-every 1s` subprocess (embedded events, fresh SQLite file): the
reminders-tick PingSource fires every second, the reminders function claims due reminders and emits
`com.tasktide.reminder.due` through the outbox, the notifier writes the in-app notification.
Emits: p50/p90/p99/max of lateness = notification `created_at` (from `GET /api/{user}/notifications`)
minus the reminder's remind time, for `--tasks` reminders spread evenly over `--spread` seconds, and the
`## Reminder lateness` section of docs/benchmarks.md (with --write-doc).

    .venv/bin/python loadtests/bench/reminder_lateness.py [--tasks 200] [--spread 20] [--write-doc]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import benchlib
import httpx

SECTION = "Reminder lateness"
USER = "lateness-user"
OFFSET = "PT1M"  # remind_at = due_at - 1 minute


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run(base: str, tasks: int, spread: float, lead: float) -> tuple[list[float], int]:
    """Create the tasks, wait for their notifications; returns lateness samples (s) and missing count."""
    headers = {"Authorization": f"Bearer {benchlib.token(USER)}"}
    start = datetime.now(UTC) + timedelta(seconds=lead)
    remind_at: dict[str, datetime] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for i in range(tasks):
            when = start + timedelta(seconds=spread * i / tasks)
            body = {
                "title": f"lateness {i}",
                "due_at": iso(when + timedelta(minutes=1)),
                "reminders": [OFFSET],
            }
            response = client.post(f"/api/{USER}/tasks", json=body)
            response.raise_for_status()
            remind_at[response.json()["id"]] = when
        if datetime.now(UTC) > start:
            raise RuntimeError(f"creating {tasks} tasks took longer than the {lead}s lead; raise --lead")
        deadline = time.monotonic() + lead + spread + 30
        notified: dict[str, datetime] = {}
        while time.monotonic() < deadline and len(notified) < tasks:
            time.sleep(1.0)
            response = client.get(f"/api/{USER}/notifications", params={"limit": 200})
            response.raise_for_status()
            for item in response.json():
                if item["task_id"] in remind_at:
                    notified.setdefault(item["task_id"], parse(item["created_at"]))
    lateness = [(notified[t] - remind_at[t]).total_seconds() for t in notified]
    return lateness, tasks - len(notified)


def render(argv: list[str], tasks: int, spread: float, lateness: list[float], missing: int) -> str:
    ms = [s * 1000 for s in lateness]
    rows = [
        [
            len(ms),
            missing,
            f"{benchlib.percentile(ms, 50):.0f}",
            f"{benchlib.percentile(ms, 90):.0f}",
            f"{benchlib.percentile(ms, 99):.0f}",
            f"{min(ms):.0f}",
            f"{max(ms):.0f}",
        ]
    ]
    table = benchlib.table(["notified", "missing", "p50 ms", "p90 ms", "p99 ms", "min ms", "max ms"], rows)
    return f"""Command: `{benchlib.command_line("reminder_lateness.py", argv)}`

`tasktide dev --ping-every 1s` (embedded events, fresh SQLite file); {tasks} tasks created through the API,
each with one `{OFFSET}` reminder, remind times spread evenly over {spread:.0f} s starting a few seconds
after the last create. Lateness = the in-app notification's `created_at` (`GET /api/{{user}}/notifications`)
minus the remind time: PingSource tick -> reminders function claims due rows and writes
`com.tasktide.reminder.due` to the outbox -> relay -> Trigger -> notifier writes the notification.

{table}

With a 1 s tick the floor is a uniform 0-1000 ms wait for the next tick (mean 500 ms); anything above
that is the claim, the outbox relay hop and the notifier. In production the PingSource schedule is
`* * * * *`, so expect up to a minute of lateness there (mean ~30 s) plus the same pipeline cost.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--spread", type=float, default=20.0, help="seconds over which reminders fall due")
    parser.add_argument("--lead", type=float, default=15.0, help="seconds from now to the first reminder")
    parser.add_argument("--write-doc", action="store_true", help=f"replace '## {SECTION}' in docs")
    args = parser.parse_args(argv)
    if args.tasks > 200:
        parser.error("--tasks is at most 200 (one page of GET /notifications)")
    raw_argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-doc"]
    with tempfile.TemporaryDirectory(prefix="tasktide-lateness-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'lateness.db'}"
        with benchlib.dev_server(url, "--ping-every", "1s", log_path=Path(tmp) / "dev.log") as base:
            lateness, missing = run(base, args.tasks, args.spread, args.lead)
    if not lateness:
        raise SystemExit("no notification arrived")
    for q in (50, 90, 99):
        print(f"p{q} lateness {benchlib.percentile(lateness, q) * 1000:8.0f} ms")
    print(f"notified {len(lateness)}, missing {missing}")
    body = render(raw_argv, args.tasks, args.spread, lateness, missing)
    if args.write_doc:
        benchlib.write_section(SECTION, body)
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
