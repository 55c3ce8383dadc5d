"""Task CRUD, completion and the filtered, sorted, paginated list.

Consumes: HTTP requests on `/api/{user_id}/tasks`. Emits (via the outbox, same transaction):
`com.tasktide.task.created|updated|completed|reopened|deleted|skipped`.

Recurring series: `POST .../{id}/skip` skips one pending occurrence (EXDATE on the series, the occurrence
removed, the next one created: `task.skipped` + `task.created`); `PATCH` of `due_at` alone moves one
occurrence without changing the rule (`?scope=series` moves the whole series' start instead);
`GET .../{id}/occurrences?count=N` lists the next due times.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from tasktide.api.auth import CurrentUser
from tasktide.api.deps import DbCallsDep, ServicesDep, TasksDep
from tasktide.api.problems import Problem
from tasktide.api.schemas import (
    CompleteIn,
    OccurrenceOut,
    OccurrencesOut,
    ProblemOut,
    SkipOut,
    TaskFilters,
    TaskIn,
    TaskOut,
    to_fields,
)
from tasktide.app.ports import Precondition, TaskQuery
from tasktide.domain.errors import PreconditionFailed
from tasktide.domain.tasks import Task, parse_datetime, upcoming_due

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemOut, "content": {"application/problem+json": {}}}
    for code in (400, 401, 403, 404, 409, 412, 413, 415, 422)
}
MAX_OCCURRENCES = 100
INLINE_MAX_OFFSET = 1000  # a list page further down than this reads on the thread pool
SCAN_SORTS = frozenset({"-due_at", "priority", "-priority"})  # so does a page in one of these orders


async def require_json(request: Request) -> None:
    """A body must be JSON (``application/json``, ``application/merge-patch+json``, any ``+json``): 415
    for anything else, e.g. ``text/plain``, instead of a confusing validation error. Async: it runs on the
    event loop, not the thread pool."""
    content_type = request.headers.get("content-type")
    if content_type is None or request.method not in ("POST", "PUT", "PATCH"):
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return
    raise Problem(
        415,
        f"The body is {media or 'untyped'}; send JSON with 'Content-Type: application/json'.",
        headers={"Accept-Post": "application/json", "Accept-Patch": "application/merge-patch+json"},
    )


router = APIRouter(
    prefix="/api/{user_id}/tasks", tags=["tasks"], responses=ERRORS, dependencies=[Depends(require_json)]
)


def _etag(task: Task) -> str:
    return f'"{task.version}"'


def _if_match(request: Request) -> Precondition | None:
    """The request's If-Match as a precondition on the loaded task (None: no header, or `*`)."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}

    def check(task: Task) -> None:
        if _etag(task) not in tags:
            raise PreconditionFailed(
                f"If-Match {header} does not match the current version {_etag(task)}; reload the task."
            )

    return check


def _task_path(request: Request, user_id: str, task_id: uuid.UUID) -> str:
    """The path of `get_task` for this task, as `request.url_for(...).path` gives it (the root path, then
    the route's own template filled in), without searching every route for the name."""
    return f"{request.scope.get('root_path', '')}{router.prefix.format(user_id=user_id)}/{task_id}"


def _traceparent(request: Request) -> str | None:
    return request.headers.get("traceparent")


def _respond(response: Response, task: Task) -> TaskOut:
    response.headers["ETag"] = _etag(task)
    return TaskOut.of(task)


@router.post("", status_code=201)
async def create_task(
    user_id: CurrentUser,
    body: TaskIn,
    request: Request,
    response: Response,
    tasks: TasksDep,
    db: DbCallsDep,
) -> TaskOut:
    # a series' rule is checked by walking it (up to one 400-year calendar cycle): CPU off the loop
    run = db.blocking if body.recurrence or body.recurrence_text else db.one_statement
    task = await run(tasks.create, user_id, to_fields(body), trace=_traceparent(request))
    response.headers["Location"] = _task_path(request, user_id, task.id)
    return _respond(response, task)


@router.get("")
async def list_tasks(
    user_id: CurrentUser,
    request: Request,
    response: Response,
    services: ServicesDep,
    tasks: TasksDep,
    db: DbCallsDep,
    filters: Annotated[TaskFilters, Query()],
) -> list[TaskOut]:
    for name, value in (("due_from", filters.due_from), ("due_to", filters.due_to)):
        if value is None:
            continue
        try:
            parse_datetime(value)
        except ValueError as exc:
            raise Problem(422, f"{name} {exc} (RFC 3339, e.g. 2026-01-31T09:00:00Z).") from None
    offset = _decode_cursor(filters.cursor)
    limit = filters.limit
    query = TaskQuery(
        status=filters.status,
        priorities=tuple(filters.priority),
        tags=tuple(t.strip().lower() for t in filters.tag),
        q=filters.q,
        due_from=filters.due_from,
        due_to=filters.due_to,
        overdue=filters.overdue,
        sort=filters.sort,
        limit=limit + 1,
        offset=offset,
    )
    # an index serves the page: one short SELECT, run inline (no thread round trip); a text search, a deep
    # page, `-due_at` (no index gives DESC NULLS LAST) or a priority sort (4 ranks: the ties of a whole
    # rank are sorted by creation) can read many of the user's rows: a pool thread, never the loop
    scans = bool(query.q) or offset > INLINE_MAX_OFFSET or query.sort in SCAN_SORTS
    run = db.blocking if scans else db.one_statement
    found = await run(tasks.search, user_id, query)
    if len(found) > limit:
        found = found[:limit]
        # relative (or under the configured public URL): the client's Host header is never reflected
        next_url = request.url.include_query_params(cursor=_encode_cursor(offset + limit))
        base = (services.settings.public_url or "").rstrip("/")
        response.headers["Link"] = f'<{base}{next_url.path}?{next_url.query}>; rel="next"'
    return [TaskOut.of(t) for t in found]


@router.get("/{task_id}")
async def get_task(
    user_id: CurrentUser, task_id: uuid.UUID, response: Response, tasks: TasksDep, db: DbCallsDep
) -> TaskOut:
    return _respond(response, await db.one_statement(tasks.get, user_id, task_id))


@router.put("/{task_id}")
async def replace_task(
    user_id: CurrentUser,
    task_id: uuid.UUID,
    body: TaskIn,
    request: Request,
    response: Response,
    tasks: TasksDep,
    db: DbCallsDep,
) -> TaskOut:
    task = await db.blocking(
        tasks.replace,
        user_id,
        task_id,
        to_fields(body),
        check=_if_match(request),
        trace=_traceparent(request),
    )
    return _respond(response, task)


@router.patch("/{task_id}")
async def patch_task(
    user_id: CurrentUser,
    task_id: uuid.UUID,
    body: Annotated[
        dict[str, Any], Body(description="RFC 7396 JSON merge patch of the task's editable fields")
    ],
    request: Request,
    response: Response,
    tasks: TasksDep,
    db: DbCallsDep,
    scope: Annotated[
        Literal["occurrence", "series"],
        Query(
            description="For a recurring task: `occurrence` (default) moves only this occurrence when due_at "
            "changes; `series` restarts the series (its DTSTART) at the new due_at"
        ),
    ] = "occurrence",
) -> TaskOut:
    patch = dict(body)
    if "completed" in patch:
        completed = patch.pop("completed")
        if not isinstance(completed, bool):
            raise Problem(
                422,
                "completed must be true or false.",
                errors=[{"field": "completed", "message": "not a boolean"}],
            )
        patch.setdefault("status", "completed" if completed else "pending")
    task = await db.blocking(
        tasks.patch,
        user_id,
        task_id,
        patch,
        re_anchor=scope == "series",
        check=_if_match(request),
        trace=_traceparent(request),
    )
    return _respond(response, task)


@router.post("/{task_id}/skip")
async def skip_task(
    user_id: CurrentUser,
    task_id: uuid.UUID,
    request: Request,
    response: Response,
    tasks: TasksDep,
    db: DbCallsDep,
) -> SkipOut:
    """Skip this pending occurrence of a recurring task: its rule instance becomes an EXDATE of the
    series, the occurrence is removed (`com.tasktide.task.skipped`) and the next one is created
    (`com.tasktide.task.created`), as completing it now would. 409 for a one-off or completed task."""
    skipped, nxt = await db.blocking(
        tasks.skip, user_id, task_id, check=_if_match(request), trace=_traceparent(request)
    )
    if nxt is not None:
        response.headers["Location"] = _task_path(request, user_id, nxt.id)
    return SkipOut(skipped=TaskOut.of(skipped), next=TaskOut.of(nxt) if nxt is not None else None)


@router.get("/{task_id}/occurrences")
async def task_occurrences(
    user_id: CurrentUser,
    task_id: uuid.UUID,
    tasks: TasksDep,
    db: DbCallsDep,
    count: Annotated[int, Query(ge=1, le=MAX_OCCURRENCES, description="How many due times")] = 10,
) -> OccurrencesOut:
    """The series' next `count` due times from this occurrence on (a pending one lists itself first),
    in UTC and in the task's zone, so a rule can be checked before it is trusted."""
    task = await db.one_statement(tasks.get, user_id, task_id)
    zone = ZoneInfo(task.timezone)
    upcoming = await db.blocking(upcoming_due, task, count)  # walks the rule: CPU off the loop
    return OccurrencesOut(
        task_id=task.id,
        timezone=task.timezone,
        recurrence=task.recurrence,
        recurrence_basis=task.recurrence_basis.value,
        series_start=task.series_start.isoformat() if task.series_start is not None else None,
        occurrences=[OccurrenceOut(due_at=due, local=due.astimezone(zone)) for due in upcoming],
    )


@router.patch("/{task_id}/complete")
async def complete_task(
    user_id: CurrentUser,
    task_id: uuid.UUID,
    request: Request,
    response: Response,
    tasks: TasksDep,
    db: DbCallsDep,
    body: Annotated[CompleteIn | None, Body()] = None,
) -> TaskOut:
    completed = body.completed if body is not None else None  # None: toggle
    task = await db.blocking(
        tasks.complete, user_id, task_id, completed, check=_if_match(request), trace=_traceparent(request)
    )
    return _respond(response, task)


@router.delete("/{task_id}", status_code=204)
async def delete_task(
    user_id: CurrentUser, task_id: uuid.UUID, request: Request, tasks: TasksDep, db: DbCallsDep
) -> Response:
    await db.blocking(tasks.delete, user_id, task_id, check=_if_match(request), trace=_traceparent(request))
    return Response(status_code=204)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = raw["o"]
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**31:
            raise ValueError
        return offset
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "The cursor is not one this API issued; start again without it.") from None
