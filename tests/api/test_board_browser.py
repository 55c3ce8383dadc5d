"""The board in real headless Chromium against `tasktide dev`: sign in, create, complete, live updates.

One browser and one dev server for the module; every wait is on an element or an event, never a sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium
from tests.loadtests.devserver import DevServer, run_dev_server
from tests.testenv import require_env

USER = "alice"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with run_dev_server(tmp_path_factory.mktemp("board"), ready_timeout=180) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path("/usr/bin/chromium").exists():
        require_env("TASKTIDE_CHROMIUM")  # skips locally, fails under CI
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def page(browser: Browser, dev: DevServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    page.goto(dev.base_url + "/")
    page.get_by_label("Access token").fill(dev.token(USER))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {USER}")).to_be_visible()
    expect(page.locator("body[data-stream='open']")).to_have_count(1)  # the SSE stream is connected
    yield page
    context.close()


def item(page: Page, title: str):  # type: ignore[no-untyped-def]
    return page.locator("li.task", has=page.get_by_text(title, exact=True))


def test_board_create_form_task_listed_and_stored(page: Page, dev: DevServer) -> None:
    page.get_by_label("Title", exact=True).fill("Water the plants")
    page.get_by_label("Priority", exact=True).first.select_option("high")
    page.get_by_label("Tags", exact=True).fill("home, garden")
    page.get_by_label("Due", exact=True).fill("2030-01-07T09:00")
    page.get_by_label("Repeats", exact=True).fill("FREQ=WEEKLY;BYDAY=MO")
    page.get_by_label("Reminders before due").fill("15m, 1d")
    page.keyboard.press("Enter")
    row = item(page, "Water the plants")
    expect(row).to_be_visible()
    expect(row).to_contain_text("priority high")
    expect(row).to_contain_text("#garden")
    stored = httpx.get(f"{dev.base_url}/api/{USER}/tasks", params={"q": "plants"}, headers=dev.headers(USER))
    (task,) = stored.json()
    assert (task["priority"], task["tags"], task["recurrence"]) == (
        "high",
        ["home", "garden"],
        "FREQ=WEEKLY;BYDAY=MO",
    )
    assert task["reminders"] == ["PT15M", "P1D"] and task["due_at"] is not None


def test_board_checkbox_completes_task(page: Page, dev: DevServer) -> None:
    httpx.post(f"{dev.base_url}/api/{USER}/tasks", json={"title": "Pay rent"}, headers=dev.headers(USER))
    row = item(page, "Pay rent")
    expect(row).to_be_visible()  # arrives live
    row.get_by_role("checkbox").check()
    expect(row).to_have_class("task done")
    (task,) = httpx.get(
        f"{dev.base_url}/api/{USER}/tasks", params={"q": "rent"}, headers=dev.headers(USER)
    ).json()
    assert task["status"] == "completed"


def test_board_change_made_over_http_appears_without_reload(page: Page, dev: DevServer) -> None:
    marker = page.evaluate("performance.timeOrigin")
    created = httpx.post(
        f"{dev.base_url}/api/{USER}/tasks", json={"title": "Made by curl"}, headers=dev.headers(USER)
    ).json()
    expect(item(page, "Made by curl")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Made by curl")
    httpx.patch(
        f"{dev.base_url}/api/{USER}/tasks/{created['id']}",
        json={"title": "Renamed by curl"},
        headers=dev.headers(USER),
    )
    expect(item(page, "Renamed by curl")).to_be_visible()
    assert page.evaluate("performance.timeOrigin") == marker  # the same document: no reload happened
