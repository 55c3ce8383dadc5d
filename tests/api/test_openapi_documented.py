"""The OpenAPI documents every problem a route can answer, and a 405 lists every method of its path
(issue 12, finding 8: schemathesis reported undocumented 400/403 and `Allow` headers naming one method)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

Auth = Callable[[str], dict[str, str]]


def test_openapi_every_user_route_documents_token_and_bad_request_problems(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    user_routes = [(path, ops) for path, ops in spec["paths"].items() if path.startswith("/api/{user_id}")]
    assert len(user_routes) >= 8
    for path, operations in user_routes:
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"400", "401", "403", "422", "503"} <= documented, (method, path)
            if method in ("post", "patch"):
                assert {"409", "413"} <= documented, (method, path)  # Idempotency-Key in flight; bodies
            content = operation["responses"]["403"]["content"]
            assert "application/problem+json" in content
            assert any(c.get("schema", {}).get("$ref", "").endswith("/ProblemOut") for c in content.values())
    assert "400" in spec["paths"]["/healthz"]["get"]["responses"]  # a NUL in any URL


def test_openapi_method_not_allowed_allow_lists_every_method_of_the_path(
    client: TestClient, auth: Auth
) -> None:
    response = client.request(
        "TRACE", "/api/alice/tasks/00000000-0000-0000-0000-000000000000", headers=auth("alice")
    )
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "GET, PUT, PATCH, DELETE"
    collection = client.delete("/api/alice/tasks", headers=auth("alice"))
    assert collection.status_code == 405 and collection.headers["allow"] == "GET, POST"
