"""E2E: `tasktide dev` serves the broker ingress at /<namespace>/<broker> of what `kustomize build eventing/`
renders (namespace tasktide), so /tasktide/default accepts an event and /default/default is unknown."""

from __future__ import annotations

import uuid

import httpx

from .support import DevServer


def _event() -> dict[str, str]:
    return {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "/tests/e2e",
        "type": "com.tasktide.e2e.ping",
        "datacontenttype": "application/json",
    }


def test_dev_ingress_rendered_namespace_path_accepted_default_namespace_not_found(dev: DevServer) -> None:
    headers = {"content-type": "application/cloudevents+json"}
    ok = httpx.post(f"{dev.base_url}/tasktide/default", json=_event(), headers=headers, timeout=30.0)
    assert ok.status_code == 202
    gone = httpx.post(f"{dev.base_url}/default/default", json=_event(), headers=headers, timeout=30.0)
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/problem+json")
