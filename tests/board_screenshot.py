"""`make screenshots`: docs/board.png, the board on `tasktide dev` with a few tasks, in headless Chromium.

Consumes: the `tasktide` console script, /usr/bin/chromium (`.ci/chromium.sh`). Emits: the PNG path given.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.browser import chromium
from tests.loadtests.devserver import run_dev_server

TASKS = [
    {
        "title": "Water the plants",
        "priority": "high",
        "tags": ["home"],
        "due_at": "2030-01-07T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "recurrence": "FREQ=WEEKLY;BYDAY=MO",
        "reminders": ["PT15M"],
    },
    {
        "title": "Call mom",
        "priority": "medium",
        "tags": ["family"],
        "due_at": "2030-01-14T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "recurrence": "FREQ=MONTHLY;BYDAY=2MO",
    },
    {"title": "Renew passport", "priority": "low", "tags": ["errands"]},
]


def main(target: str) -> None:
    with tempfile.TemporaryDirectory() as work, run_dev_server(Path(work), ready_timeout=180) as dev:
        for body in TASKS:
            httpx.post(
                f"{dev.base_url}/api/alice/tasks", json=body, headers=dev.headers("alice")
            ).raise_for_status()
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(dev.base_url + "/")
            page.get_by_label("Access token").fill(dev.token("alice"))
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("li.task")).to_have_count(len(TASKS))
            page.screenshot(path=target, full_page=True)
    print(target)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/board.png")
