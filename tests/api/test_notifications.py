"""Notification settings: webhook URLs that point inside the network are refused at the door (SSRF)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

Auth = Callable[[str], dict[str, str]]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://2852039166/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "http://127.0.0.1:3500/v1.0/shutdown",
        "https://user:pw@hooks.example.com/x",
    ],
)
def test_put_notification_settings_internal_webhook_url_422(client: TestClient, auth: Auth, url: str) -> None:
    body = {"webhook_url": url}
    response = client.put("/api/alice/notification-settings", json=body, headers=auth("alice"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "webhook_url"


def test_put_notification_settings_public_https_name_accepted(client: TestClient, auth: Auth) -> None:
    body = {"webhook_url": "https://hooks.example.com/tasktide"}
    response = client.put("/api/alice/notification-settings", json=body, headers=auth("alice"))
    assert response.status_code == 200, response.text
