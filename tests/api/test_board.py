"""The board's files are served by the API itself: `/` and `/static/*`, same origin, strict CSP."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_board_root_html_with_strict_csp(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert '<script src="/static/board.js"' in response.text
    assert "http" not in response.text.replace("http-equiv", "")  # nothing from another origin


def test_board_static_assets_served(client: TestClient) -> None:
    for name, kind in (("board.js", "javascript"), ("board.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
    assert client.get("/static/missing.js").status_code == 404
