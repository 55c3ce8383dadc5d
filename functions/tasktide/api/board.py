"""The task board: static HTML, JS and CSS (in `api/static/`, no build step, no CDN) served at `/`.

Consumes: `GET /` and `GET /static/<file>`. Emits: the files; the page itself calls the REST API, the SSE
stream (`?access_token=`) and the chat endpoint from the browser.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
# Everything the page loads is same-origin; nothing inline, so the policy can stay strict.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def install(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def board() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
        )

    app.router.routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
