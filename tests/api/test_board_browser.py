"""The board in real headless Chromium against `tasktide dev`: sign in, create, complete, skip, delete,
history, the notifications inbox, chat (the real agent, with the scripted OpenAI-protocol model server as
its provider), live updates, keyboard use and a phone-width layout; and the chat panel without a model.

One browser and one dev server for the module; every wait is on an element or an event, never a sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect
from starlette.applications import Starlette
from starlette.routing import Route

from tasktide.agent import chat
from tasktide.api.app import create_app
from tasktide.api.auth import encode_token
from tasktide.services import Services
from tests.agent.fakemodel import ADD_TASK, ASK, FakeModel
from tests.browser import chromium
from tests.liveserver import LiveServer, live_server
from tests.loadtests.devserver import DevServer, run_dev_server
from tests.testenv import JWT_SECRET, require_env

USER = "alice"


@pytest.fixture(scope="module")
def model() -> Iterator[tuple[FakeModel, LiveServer]]:
    fake = FakeModel()
    app = Starlette(routes=[Route("/v1/chat/completions", fake.endpoint, methods=["POST"])])
    with live_server(app) as server:
        yield fake, server


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, model: tuple[FakeModel, LiveServer]) -> Iterator[DevServer]:
    env = {
        "TASKTIDE_MODEL_NAME": "fake-model",
        "TASKTIDE_MODEL_BASE_URL": f"{model[1].base_url}/v1",
        "TASKTIDE_MODEL_API_KEY": "test-key",
    }
    with run_dev_server(tmp_path_factory.mktemp("board"), ready_timeout=180, env=env) as server:
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


def test_board_plain_language_repeats_stored_as_rrule(page: Page, dev: DevServer) -> None:
    page.get_by_label("Title", exact=True).fill("Stretch")
    page.get_by_label("Due", exact=True).fill("2030-01-07T09:00")
    page.get_by_label("Repeats", exact=True).fill("every monday at 9")
    page.keyboard.press("Enter")
    expect(item(page, "Stretch")).to_be_visible()
    (task,) = httpx.get(
        f"{dev.base_url}/api/{USER}/tasks", params={"q": "Stretch"}, headers=dev.headers(USER)
    ).json()
    assert str(task["recurrence"]).startswith("FREQ=WEEKLY") and "BYDAY=MO" in str(task["recurrence"])


def test_board_tag_filter_and_title_sort_list_matching_tasks_in_order(page: Page, dev: DevServer) -> None:
    for title in ("Zeta chore", "Alpha chore", "Mid chore"):
        httpx.post(
            f"{dev.base_url}/api/{USER}/tasks",
            json={"title": title, "tags": ["sortme"]},
            headers=dev.headers(USER),
        )
    httpx.post(
        f"{dev.base_url}/api/{USER}/tasks", json={"title": "Untagged chore"}, headers=dev.headers(USER)
    )
    try:
        page.get_by_label("Sort by").select_option("title")
        page.get_by_label("Tag", exact=True).fill("sortme")
        page.get_by_label("Tag", exact=True).press("Enter")
        listed = page.locator("#task-list li.task")
        expect(listed).to_have_count(3)
        expect(listed).to_contain_text(["Alpha chore", "Mid chore", "Zeta chore"])  # in this order
    finally:  # the page is shared by the module's tests: back to every task, newest first
        page.get_by_label("Tag", exact=True).fill("")
        page.get_by_label("Sort by").select_option("-created_at")
        page.get_by_label("Tag", exact=True).press("Enter")


# Delays every list answer without a tag filter until `window.releaseUnfiltered()`, counting the ones it let
# through: the board's loads then answer out of order, as a slow network or server can make them.
DELAY_UNFILTERED = """() => {
  const fetchNow = window.fetch;
  let release;
  const released = new Promise((resolve) => { release = resolve; });
  window.releaseUnfiltered = release;
  window.unfilteredAnswered = 0;
  window.fetch = (url, options) => {
    const answer = fetchNow(url, options);
    if (!String(url).includes("/tasks?") || String(url).includes("tag=")) return answer;
    const counted = (response) => { window.unfilteredAnswered += 1; return response; };
    return answer.then((response) => released.then(() => counted(response)));
  };
  window.restoreFetch = () => { window.fetch = fetchNow; };
}"""


def test_board_list_answer_older_than_the_filter_is_dropped(page: Page, dev: DevServer) -> None:
    for title in ("Kept chore", "Dropped chore"):
        tags = ["keepme"] if title.startswith("Kept") else []
        httpx.post(
            f"{dev.base_url}/api/{USER}/tasks", json={"title": title, "tags": tags}, headers=dev.headers(USER)
        )
    expect(item(page, "Dropped chore")).to_be_visible()  # both arrived live
    page.evaluate(DELAY_UNFILTERED)
    try:
        page.get_by_label("Sort by").select_option("title")  # a load without the tag: held back
        page.get_by_label("Tag", exact=True).fill("keepme")
        page.get_by_label("Tag", exact=True).press("Enter")  # a later load with it: answers first
        listed = page.locator("#task-list li.task")
        expect(listed).to_have_count(1)
        page.evaluate("window.releaseUnfiltered()")
        page.wait_for_function("window.unfilteredAnswered >= 1")
        expect(listed).to_have_count(1)
        expect(listed).to_contain_text(["Kept chore"])
    finally:  # the page is shared by the module's tests: back to every task, newest first
        page.evaluate("window.releaseUnfiltered(); window.restoreFetch()")
        page.get_by_label("Tag", exact=True).fill("")
        page.get_by_label("Sort by").select_option("-created_at")
        page.get_by_label("Tag", exact=True).press("Enter")


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


def create(dev: DevServer, **body: object) -> dict[str, object]:
    response = httpx.post(f"{dev.base_url}/api/{USER}/tasks", json=body, headers=dev.headers(USER))
    assert response.status_code == 201, response.text
    task: dict[str, object] = response.json()
    return task


def test_board_skip_button_replaces_occurrence_with_next(page: Page, dev: DevServer) -> None:
    task = create(
        dev,
        title="Stand-up",
        due_at="2030-01-07T09:00:00+01:00",
        timezone="Europe/Berlin",
        recurrence="FREQ=WEEKLY;BYDAY=MO",
    )
    row = item(page, "Stand-up")
    expect(row).to_have_attribute("data-task-id", str(task["id"]))
    page.get_by_role("button", name="Skip this occurrence of Stand-up").click()
    expect(row).not_to_have_attribute("data-task-id", str(task["id"]))  # the next occurrence took its place
    (current,) = httpx.get(
        f"{dev.base_url}/api/{USER}/tasks", params={"q": "Stand-up"}, headers=dev.headers(USER)
    ).json()
    assert current["id"] != task["id"] and current["due_at"] == "2030-01-14T08:00:00Z"
    expect(row).to_have_attribute("data-task-id", current["id"])


def test_board_delete_button_after_confirm_removes_task(page: Page, dev: DevServer) -> None:
    task = create(dev, title="Old errand")
    expect(item(page, "Old errand")).to_be_visible()
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Delete Old errand").click()
    expect(item(page, "Old errand")).to_have_count(0)
    assert asked == ['Delete "Old errand"?']
    gone = httpx.get(f"{dev.base_url}/api/{USER}/tasks/{task['id']}", headers=dev.headers(USER))
    assert gone.status_code == 404


def test_board_delete_dismissed_keeps_task(page: Page, dev: DevServer) -> None:
    create(dev, title="Keep me")
    expect(item(page, "Keep me")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete Keep me").click()
    expect(page.locator("#list-error")).to_have_text("")
    expect(item(page, "Keep me")).to_have_count(1)


def test_board_history_button_lists_the_task_events(page: Page, dev: DevServer) -> None:
    task = create(dev, title="Draft report")
    httpx.patch(
        f"{dev.base_url}/api/{USER}/tasks/{task['id']}", json={"priority": "high"}, headers=dev.headers(USER)
    )
    row = item(page, "Draft report")
    expect(row).to_contain_text("priority high")  # the update arrived live
    button = row.get_by_role("button", name="History")
    button.click()
    expect(button).to_have_attribute("aria-expanded", "true")
    history = row.locator("ol.history li")
    expect(history.filter(has_text="created")).to_have_count(1)
    expect(history.filter(has_text="updated (priority")).to_have_count(1)
    expect(history.first).to_contain_text(f"by {USER}")
    httpx.patch(
        f"{dev.base_url}/api/{USER}/tasks/{task['id']}", json={"priority": "low"}, headers=dev.headers(USER)
    )
    expect(history.filter(has_text="updated (priority")).to_have_count(2)  # still open, and read again
    expect(button).to_have_attribute("aria-expanded", "true")


def test_board_inbox_shows_fired_reminder_and_marks_it_read(page: Page, dev: DevServer) -> None:
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    create(dev, title="Call the dentist", due_at=due.isoformat(), reminders=["PT5S"])
    note = page.locator("#inbox li.note", has_text="Call the dentist")
    expect(note).to_be_visible(timeout=60_000)  # the reminder fires at a 1 s tick, then arrives live
    expect(page.locator("#unread-count")).to_contain_text("unread")
    note.get_by_role("button", name="Mark").click()
    expect(note).to_have_class("note read")
    notes = httpx.get(f"{dev.base_url}/api/{USER}/notifications", headers=dev.headers(USER)).json()
    assert [n["read"] for n in notes if "Call the dentist" in n["title"] + n["body"]] == [True]


def test_board_chat_message_agent_adds_task_and_it_is_listed(
    page: Page, dev: DevServer, model: tuple[FakeModel, LiveServer]
) -> None:
    fake, _ = model
    expect(page.locator("#chat-panel")).to_be_visible()
    page.get_by_label("Message").fill(ASK)
    page.get_by_label("Message").press("Enter")
    log = page.locator("#chat-log")
    expect(log.locator("li.me")).to_have_text([ASK])
    expect(log.locator("li.agent")).to_have_text(["Added Call mom (FREQ=MONTHLY;BYDAY=2MO)."], timeout=60_000)
    expect(item(page, "Call mom")).to_contain_text("repeats FREQ=MONTHLY;BYDAY=2MO")
    (task,) = httpx.get(
        f"{dev.base_url}/api/{USER}/tasks", params={"q": "Call mom"}, headers=dev.headers(USER)
    ).json()
    assert (task["timezone"], task["reminders"]) == (ADD_TASK["timezone"], ADD_TASK["reminders"])
    called = [m.get("tool_calls") for r in fake.requests for m in r["messages"] if m.get("tool_calls")]
    assert [c[0]["function"]["name"] for c in called] == ["add_task"]


def test_board_keyboard_alone_creates_and_completes(page: Page, dev: DevServer) -> None:
    title = page.get_by_label("Title", exact=True)
    title.focus()
    page.keyboard.type("Typed only")
    page.keyboard.press("Enter")
    row = item(page, "Typed only")
    expect(row).to_be_visible()
    expect(title).to_be_focused()  # ready for the next task
    checkbox = row.get_by_role("checkbox")
    checkbox.focus()
    page.keyboard.press("Space")
    expect(row).to_have_class("task done")
    skip_link = page.get_by_role("link", name="Skip to tasks")
    page.get_by_role("button", name="Sign out").focus()
    page.keyboard.press("Shift+Tab")  # the skip link is the first stop of the tab order
    expect(skip_link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_focused()


def test_board_live_update_keeps_keyboard_focus_on_the_same_control(page: Page, dev: DevServer) -> None:
    httpx.post(f"{dev.base_url}/api/{USER}/tasks", json={"title": "Focus here"}, headers=dev.headers(USER))
    checkbox = item(page, "Focus here").get_by_role("checkbox")
    checkbox.focus()
    expect(checkbox).to_be_focused()
    httpx.post(f"{dev.base_url}/api/{USER}/tasks", json={"title": "Arrives live"}, headers=dev.headers(USER))
    expect(item(page, "Arrives live")).to_be_visible()  # the list was rendered again from the stream

    expect(item(page, "Focus here").get_by_role("checkbox")).to_be_focused()
    page.keyboard.press("Space")
    expect(item(page, "Focus here")).to_have_class("task done")


def test_board_every_control_has_an_accessible_name(page: Page) -> None:
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('#board input, #board select, #board button')]
              .filter((e) => !e.closest('[hidden]'))
              .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                             && !(e.tagName === 'BUTTON' && e.textContent.trim()))
              .map((e) => e.outerHTML)"""
    )
    assert unnamed == []


def test_board_phone_width_nothing_overflows_sideways(page: Page) -> None:
    assert page.viewport_size == {"width": 390, "height": 844}
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1]
    wide = page.evaluate(
        """() => [...document.querySelectorAll('#board *')]
              .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
              .map((e) => e.tagName + '#' + e.id + '.' + e.className)"""
    )
    assert wide == []


def test_board_without_model_chat_panel_says_how_to_configure(browser: Browser, services: Services) -> None:
    app = create_app(services)
    app.include_router(chat.router)
    with live_server(app) as server:
        context = browser.new_context(viewport={"width": 390, "height": 844})
        page = context.new_page()
        try:
            page.goto(server.base_url + "/")
            page.get_by_label("Access token").fill(encode_token(USER, JWT_SECRET))
            page.get_by_role("button", name="Sign in").click()
            notice = page.locator("#chat-unavailable")
            expect(notice).to_be_visible()
            expect(notice).to_contain_text("TASKTIDE_MODEL_NAME")
            expect(page.locator("#chat-panel")).to_be_hidden()
        finally:
            context.close()
