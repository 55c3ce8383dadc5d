"""RFC 9457 problem details: every error the API answers is `application/problem+json`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from tasktide.domain.errors import Conflict, DomainError, NotFound, PreconditionFailed, ValidationFailed

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    428: "Precondition Required",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
RETRY_AFTER_SECONDS = 5
OUTAGE_LOG_EVERY = 60.0  # seconds between two "database unavailable" lines during one outage


class Problem(Exception):
    """Raise anywhere in a route to answer with a problem document."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def problem_response(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class OutageLog:
    """One log line per outage (and a reminder every OUTAGE_LOG_EVERY s), not a traceback per request."""

    def __init__(self, every: float = OUTAGE_LOG_EVERY) -> None:
        self.every, self.lock = every, threading.Lock()
        self.last: float | None = None
        self.suppressed = 0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self.lock:
            if self.last is not None and now - self.last < self.every:
                self.suppressed += 1
                return
            suppressed, self.suppressed, self.last = self.suppressed, 0, now
        first_line = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        log.warning(
            "database unavailable, answering 503 (%s: %s); %d similar failures since the last line",
            type(exc).__name__,
            first_line[:200],
            suppressed,
        )


def is_outage(exc: BaseException) -> bool:
    """The database cannot be reached (not a bad query or a constraint): retrying later will help."""
    if isinstance(exc, sa_exc.TimeoutError):  # the pool is exhausted
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    return False


def _domain_status(exc: DomainError) -> int:
    if isinstance(exc, ValidationFailed):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, PreconditionFailed):
        return 412
    if isinstance(exc, Conflict):
        return 409
    return 400


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


# The same words for the same mistake, whichever validator caught it (pydantic for POST/PUT, the domain
# for PATCH's merge patch).
_MESSAGES = {"extra_forbidden": "unknown field"}


def _message(error: Mapping[str, Any]) -> str:
    return _MESSAGES.get(str(error.get("type")), str(error.get("msg", "")))


def _json_problem(error: Mapping[str, Any]) -> JSONResponse:
    """A body that is not JSON at all: 400, saying where parsing stopped (not a field named by an offset)."""
    ctx = error.get("ctx") or {}
    reason = str(ctx.get("error") or error.get("msg") or "invalid JSON")
    loc = tuple(error.get("loc", ()))
    where = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
    detail = f"The request body is not valid JSON ({reason}{where}); send a JSON object."
    return problem_response(400, detail, errors=[{"field": "body", "message": f"{reason}{where}"}])


def not_found_hint(path: str) -> str:
    """What to do about a URL no route serves: a trailing slash, or the user left out of a task URL."""
    if path != "/" and path.endswith("/"):
        return f"No route serves {path}; drop the trailing slash: {path.rstrip('/')}"
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "tasks":
        return (
            f"No route serves {path}: task routes name the user, "
            "e.g. /api/alice/tasks (/api/{user_id}/tasks)."
        )
    return f"No route serves {path}; see /docs for the API's routes."


misdirected = APIRouter(include_in_schema=False)
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@misdirected.api_route("/api/tasks", methods=_METHODS)
@misdirected.api_route("/api/tasks/{rest:path}", methods=_METHODS)
async def _user_left_out(request: Request) -> JSONResponse:
    """`/api/tasks...` without a user: a 404 that names the route to use (in `tasktide dev` the broker
    ingress `/{namespace}/{broker}` would otherwise answer for it)."""
    return problem_response(404, not_found_hint(request.url.path))


def install(app: FastAPI) -> None:
    outages = OutageLog()

    async def _database(_: Request, exc: Exception) -> JSONResponse:
        if not is_outage(exc):
            log.exception("unhandled database error", exc_info=exc)
            return problem_response(500, "An unexpected error occurred; it has been logged.")
        outages.failed(exc)
        return problem_response(
            503,
            f"The database is unavailable; retry in {RETRY_AFTER_SECONDS} s (with the same Idempotency-Key).",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    # Handled here (ExceptionMiddleware), not by the catch-all below, which Starlette re-raises (a traceback).
    app.add_exception_handler(sa_exc.DBAPIError, _database)
    app.add_exception_handler(sa_exc.TimeoutError, _database)

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, **exc.extra)

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        if isinstance(exc, ValidationFailed):
            errors = [{"field": e.field, "message": e.message} for e in exc.errors]
            return problem_response(422, f"The request has invalid fields: {exc.detail}", errors=errors)
        return problem_response(_domain_status(exc), exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        invalid_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if invalid_json:
            return _json_problem(invalid_json[0])
        errors = [{"field": _location(tuple(e.get("loc", ()))), "message": _message(e)} for e in exc.errors()]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(422, f"The request has invalid fields: {summary}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = not_found_hint(request.url.path)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's (RFC 9110 15.5.6)
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(exc.status_code, detail, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "An unexpected error occurred; it has been logged.")


_PROBE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app accepts for this request's path (405's ``Allow``): each route
    (included routers too) is asked whether it would fully match the path with that method."""
    from starlette.routing import Match

    routes = request.app.router.routes
    return [
        method
        for method in _PROBE_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def _problems_of(path: str, method: str) -> set[int]:
    codes = {400}  # a NUL in the URL, JSON nested too deeply, a malformed Idempotency-Key
    if path.startswith("/api/{user_id}"):
        codes |= {401, 403, 404, 422, 503}
        if method in ("post", "patch"):
            codes |= {409}  # an Idempotency-Key still in flight (422: used with another body)
    if method in ("post", "put", "patch"):
        codes |= {413}
    return codes


def document(app: FastAPI) -> None:
    """Put every problem an operation can answer into the OpenAPI (schemathesis checks the status codes):
    400 anywhere; on the per-user routes 401/403 (token), 404, 422 and 503 (database outage, `Retry-After`);
    413 on bodies; 409 for an Idempotency-Key in flight on POST and PATCH. Added to the generated document,
    so it holds for every route, whichever router declares it."""
    from tasktide.api.schemas import ProblemOut

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault(
            "ProblemOut", ProblemOut.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                for code in sorted(_problems_of(path, method)):
                    responses.setdefault(
                        str(code), {"description": TITLES.get(code, "Error"), "content": content}
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
