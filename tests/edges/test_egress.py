"""The webhook egress policy: every spelling of an internal address is refused, the resolved address is
pinned, redirects are not followed and replies are bounded (issue 12, finding 2: webhook SSRF)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tasktide.edges import egress
from tasktide.functions._channels import WebhookFailed, send_webhook

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes
INTERNAL = [
    "https://169.254.169.254/latest/meta-data/",
    "https://2852039166/",  # decimal 169.254.169.254
    "https://0251.0376.0251.0376/",  # octal
    "https://0xa9fea9fe/",  # hex
    "https://0xa9.0xfe.0xa9.0xfe/",
    "https://127.0.0.1:3500/v1.0/shutdown",  # the pod's own Dapr sidecar
    "https://127.1/",
    "https://2130706433/",
    "https://0.0.0.0/",
    "https://0/",
    "https://[::1]/",
    "https://[::]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:a9fe:a9fe]/",
    "https://[::ffff:10.0.0.1]/",
    "https://[2002:a9fe:a9fe::1]/",  # 6to4 of the metadata address
    "https://[fe80::1]/",
    "https://[fc00::1]/",
    "https://[ff02::1]/",
    "https://10.0.0.1/",
    "https://172.16.0.1/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",
    "https://224.0.0.251/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    "https://localhost/",
    "https://app.localhost/",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_check_url_internal_address_any_spelling_refused(url: str) -> None:
    with pytest.raises(egress.EgressRefused):
        egress.check_url(url)
    with pytest.raises(egress.EgressRefused):
        egress.check_literal(url)


@pytest.mark.parametrize(
    "url", ["https://169.254.169.254/", "https://2852039166/", "https://10.1.2.3/", "https://[fe80::1]/"]
)
def test_check_url_local_setting_still_refuses_non_loopback_internal(url: str) -> None:
    with pytest.raises(egress.EgressRefused):
        egress.check_url(url, allow_local=True)


@pytest.mark.parametrize(
    "url", ["http://93.184.216.34/hook", "ftp://93.184.216.34/", "file:///etc/passwd", "x"]
)
def test_check_url_not_https_refused(url: str) -> None:
    with pytest.raises(egress.EgressRefused, match="only https"):
        egress.check_url(url, resolver=lambda _h, _p: ["93.184.216.34"])


def test_check_url_credentials_refused() -> None:
    with pytest.raises(egress.EgressRefused, match="credentials"):
        egress.check_url("https://user:pw@93.184.216.34/")


def test_check_url_name_with_any_internal_answer_refused() -> None:
    answers = ["93.184.216.34", "10.0.0.7"]
    with pytest.raises(egress.EgressRefused, match=r"10\.0\.0\.7"):
        egress.check_url("https://hooks.example.test/x", resolver=lambda _h, _p: answers)


def test_check_url_public_name_pinned_to_resolved_address() -> None:
    target = egress.check_url("https://hooks.example.test/a?b=c", resolver=lambda _h, _p: ["93.184.216.34"])
    assert (target.host, target.port, target.address, target.path) == (
        "hooks.example.test",
        443,
        "93.184.216.34",
        "/a?b=c",
    )
    assert target.origin == "https://hooks.example.test:443"


def test_check_url_local_setting_allows_http_loopback() -> None:
    target = egress.check_url("http://127.0.0.1:9/hook", allow_local=True)
    assert target.address == "127.0.0.1"


class Receiver:
    """An HTTP server on 127.0.0.1 answering with `status` (and `location`, `body`); records requests."""

    def __init__(self, status: int = 204, location: str | None = None, body: bytes = b"") -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(status)
                if location:
                    self.send_header("location", location)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_send_webhook_connects_to_pinned_address_with_original_host(receiver: Receiver) -> None:
    resolved: list[str] = []

    def resolver(host: str, _port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]  # nothing else could reach a name under .test

    url = f"http://hooks.example.test:{receiver.port}/hook?x=1"
    send_webhook(url, SECRET, "msg-1", {"a": 1}, allow_local=True, resolver=resolver)
    assert resolved == ["hooks.example.test"]
    path, headers = receiver.requests[0]
    assert path == "/hook?x=1"
    assert headers["host"] == f"hooks.example.test:{receiver.port}"
    assert headers["webhook-id"] == "msg-1"


def test_send_webhook_loopback_refused_without_local_setting(receiver: Receiver) -> None:
    with pytest.raises(WebhookFailed, match="egress policy"):
        send_webhook(f"http://127.0.0.1:{receiver.port}/hook", SECRET, "msg-2", {})
    assert receiver.requests == []


def test_send_webhook_redirect_not_followed() -> None:
    server = Receiver(status=307, location="http://169.254.169.254/latest/meta-data/")
    try:
        with pytest.raises(WebhookFailed, match="307") as failure:
            send_webhook(f"http://127.0.0.1:{server.port}/s3cr3t-path", SECRET, "msg-3", {}, allow_local=True)
        assert len(server.requests) == 1
        assert "s3cr3t-path" not in str(failure.value)
    finally:
        server.close()


def test_post_large_reply_read_bounded() -> None:
    server = Receiver(status=200, body=b"x" * (4 * egress.MAX_RESPONSE_BYTES))
    try:
        target = egress.check_url(f"http://127.0.0.1:{server.port}/", allow_local=True)
        reply = egress.post(target, b"{}", {"content-type": "application/json"})
        assert reply.status == 200 and len(reply.body) == egress.MAX_RESPONSE_BYTES
    finally:
        server.close()
