"""An in-process fake Dapr sidecar: the real Dapr gRPC API (the SDK's generated ``DaprServicer``) plus the
HTTP health endpoint the SDK's ``DaprClient`` constructor polls.

Consumes: nothing; binds free ports on 127.0.0.1 (kept across ``stop``/``start`` so clients can reconnect).
Emits: ``FakeSidecar`` (state + secrets that survive restarts, like an external store behind a real
sidecar), ``FakeClock``, and the test helpers ``CountingFactory`` / ``FAST_RETRY``.
Error codes and messages mirror daprd v1.16 with state.postgresql behind it (pinned by the same contract
suite run against the real daprd, tests/dapr/test_dapr_real.py): etag mismatch -> ABORTED, malformed
etag -> INVALID_ARGUMENT, a lost first write (key live, no etag) -> INTERNAL "... no item was updated",
unknown store -> INVALID_ARGUMENT, missing secret -> INTERNAL "... not found", a secret outside the
Configuration's scope (``allowed_secrets``) -> PERMISSION_DENIED.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

import grpc
from dapr.clients import DaprClient
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, metadata_pb2, secret_pb2, state_pb2
from google.protobuf import empty_pb2  # type: ignore[import-untyped]

from tasktide.dapr.sidecar import ClientFactory, RetryConfig

FAST_RETRY = RetryConfig(attempts=3, base_delay=0.01, max_delay=0.05)


class CountingFactory:
    """Wraps a client factory and counts how many clients were (attempted to be) built."""

    def __init__(self, inner: ClientFactory) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self) -> DaprClient:
        self.calls += 1
        return self.inner()


FIRST_WRITE = common_pb2.StateOptions.StateConcurrency.CONCURRENCY_FIRST_WRITE
LAST_WRITE = common_pb2.StateOptions.StateConcurrency.CONCURRENCY_LAST_WRITE


class FakeClock:
    """A settable clock (naive UTC) shared by stores under test so TTL expiry needs no sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2030, 1, 1, 12, 0, 0)
        # Called with the seconds advanced: a store whose clock is not ours (real daprd on Postgres)
        # ages its rows instead, so TTL expiry needs no sleeping there either.
        self.on_advance: list[Callable[[float], None]] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        for hook in self.on_advance:
            hook(seconds)


@dataclass
class _Entry:
    value: bytes
    etag: int
    expires_at: datetime | None


@dataclass
class FakeStores:
    """What lives behind the sidecar: it outlives sidecar restarts."""

    clock: FakeClock
    state_store_name: str = "statestore"
    secret_store_name: str = "secretstore"
    secrets: dict[str, str] = field(default_factory=dict)
    bundles: dict[str, dict[str, str]] = field(default_factory=dict)
    allowed_secrets: set[str] | None = None  # None: no secret scope; else every other name is denied
    state: dict[str, _Entry] = field(default_factory=dict)
    next_etag: int = 1
    get_delay: float = 0.0  # seconds GetState stalls, to simulate a hung sidecar
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def live(self, key: str) -> _Entry | None:
        entry = self.state.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= self.clock():
            del self.state[key]
            return None
        return entry


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("grpc context.abort() always raises")


class FakeDaprServicer(dapr_pb2_grpc.DaprServicer):
    def __init__(self, stores: FakeStores) -> None:
        self.stores = stores

    def _check_state_store(self, name: str, context: grpc.ServicerContext) -> None:
        if name != self.stores.state_store_name:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"state store {name} is not found")

    @staticmethod
    def _parse_etag(raw: str, context: grpc.ServicerContext, message: str) -> int:
        try:
            return int(raw)
        except ValueError:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{message}: invalid etag value: {raw!r}")

    def GetState(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.stores.calls.append("GetState")
        self._check_state_store(request.store_name, context)
        if self.stores.get_delay:
            time.sleep(self.stores.get_delay)
        with self.stores.lock:
            entry = self.stores.live(request.key)
            if entry is None:
                return state_pb2.GetStateResponse()
            return state_pb2.GetStateResponse(data=entry.value, etag=str(entry.etag))

    def SaveState(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.stores.calls.append("SaveState")
        self._check_state_store(request.store_name, context)
        prefix = f"failed saving state in state store {request.store_name}"
        with self.stores.lock:
            for item in request.states:
                existing = self.stores.live(item.key)
                concurrency = item.options.concurrency if item.HasField("options") else 0
                if item.HasField("etag") and concurrency != LAST_WRITE:
                    wanted = self._parse_etag(item.etag.value, context, prefix)
                    if existing is None or existing.etag != wanted:
                        _abort(
                            context,
                            grpc.StatusCode.ABORTED,
                            f"{prefix}: possible etag mismatch. error from state store: "
                            f"failed to set key {item.key}",
                        )
                elif concurrency == FIRST_WRITE and existing is not None:
                    # state.postgresql's first-write upsert updates no row: not an etag error in daprd
                    _abort(context, grpc.StatusCode.INTERNAL, f"{prefix}: no item was updated")
                expires_at = None
                ttl = item.metadata.get("ttlInSeconds")
                if ttl is not None:
                    try:
                        expires_at = self.stores.clock() + timedelta(seconds=int(ttl))
                    except ValueError:
                        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{prefix}: bad ttl {ttl!r}")
                self.stores.state[item.key] = _Entry(item.value, self.stores.next_etag, expires_at)
                self.stores.next_etag += 1
        return empty_pb2.Empty()

    def DeleteState(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.stores.calls.append("DeleteState")
        self._check_state_store(request.store_name, context)
        prefix = f"failed deleting state with key {request.key}"
        with self.stores.lock:
            existing = self.stores.live(request.key)
            if request.HasField("etag"):
                wanted = self._parse_etag(request.etag.value, context, prefix)
                if existing is None or existing.etag != wanted:
                    _abort(
                        context,
                        grpc.StatusCode.ABORTED,
                        f"{prefix}: possible etag mismatch. error from state store: failed to delete",
                    )
            self.stores.state.pop(request.key, None)
        return empty_pb2.Empty()

    def GetSecret(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.stores.calls.append("GetSecret")
        if request.store_name != self.stores.secret_store_name:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"failed finding secret store with key {request.store_name}",
            )
        allowed = self.stores.allowed_secrets
        if allowed is not None and request.key not in allowed:
            _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f'access denied by policy to get "{request.key}" from "{request.store_name}"',
            )
        value = self.stores.secrets.get(request.key)
        if value is None and request.key not in self.stores.bundles:
            _abort(
                context,
                grpc.StatusCode.INTERNAL,
                f"failed getting secret with key {request.key} from secret store {request.store_name}: "
                f"secret {request.key} not found",
            )
        if request.key in self.stores.bundles:  # a multi-key secret, like a Kubernetes Secret
            return secret_pb2.GetSecretResponse(data=self.stores.bundles[request.key])
        return secret_pb2.GetSecretResponse(data={request.key: value})

    def GetBulkSecret(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.stores.calls.append("GetBulkSecret")
        data = {name: secret_pb2.SecretResponse(secrets={name: v}) for name, v in self.stores.secrets.items()}
        return secret_pb2.GetBulkSecretResponse(data=data)

    def GetMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.stores.calls.append("GetMetadata")
        return metadata_pb2.GetMetadataResponse(id="tasktide-fake", runtime_version="fake")


class _HealthHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 204 if self.path.rstrip("/") in ("/v1.0/healthz", "/v1.0/healthz/outbound") else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class FakeSidecar:
    """gRPC Dapr API + HTTP health on fixed free ports; ``stop()`` then ``start()`` keeps ports and data."""

    def __init__(self, stores: FakeStores) -> None:
        self.stores = stores
        self.grpc_port = 0
        self.http_port = 0
        self._server: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        assert self._server is None, "already running"
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        dapr_pb2_grpc.add_DaprServicer_to_server(FakeDaprServicer(self.stores), server)  # type: ignore[no-untyped-call]
        bound = server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        if bound == 0:
            raise RuntimeError(f"fake sidecar could not bind gRPC port {self.grpc_port}")
        self.grpc_port = bound
        server.start()
        self._server = server
        http = ThreadingHTTPServer(("127.0.0.1", self.http_port), _HealthHandler)
        http.daemon_threads = True
        self.http_port = http.server_address[1]
        self._http = http
        self._http_thread = threading.Thread(
            target=http.serve_forever, args=(0.05,), name="fake-dapr-http", daemon=True
        )
        self._http_thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None
