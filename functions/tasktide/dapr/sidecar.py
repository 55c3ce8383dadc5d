"""Dapr sidecar adapters: ``SecretStore`` / ``StateStore`` over Dapr gRPC (``dapr.clients.DaprClient``).

Consumes: a Dapr sidecar at ``DAPR_RUNTIME_HOST`` (default 127.0.0.1) : ``DAPR_GRPC_PORT``; the SDK's
health probe also uses ``DAPR_HTTP_PORT`` (or ``DAPR_HTTP_ENDPOINT``).
Emits: ``DaprSecretStore``, ``DaprStateStore`` and ``dapr_client_factory``.

Error mapping (as daprd v1.16 answers, see tests/dapr/test_dapr_real.py): gRPC ABORTED (and
FAILED_PRECONDITION / INVALID_ARGUMENT mentioning an etag) -> ``EtagMismatch`` (``put_if_absent`` ->
False); a write's INTERNAL ``... no item was updated`` -> ``EtagMismatch`` too: it is how
``state.postgresql`` (and the other SQL stores) answer a lost first write, the key being live already;
a secret's PERMISSION_DENIED (the Configuration's ``secrets.scopes`` deny it) -> ``SecretAccessDenied``
(a ``SecretNotFound``: the app cannot have it); UNAVAILABLE -> reconnect and retry a bounded number of
times, then ``SidecarUnavailable``; DEADLINE_EXCEEDED -> ``SidecarUnavailable`` at once (a write may
have landed, so it is not retried blindly); anything else -> ``StoreError``.

Clients are created lazily (never at import or construction). The SDK's constructor blocks on an HTTP
health check for up to ``DAPR_HEALTH_TIMEOUT`` (default 60 s); ``dapr_client_factory`` probes the same
endpoint once with a short timeout first, so a missing sidecar fails fast instead of hanging the caller.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import grpc
from dapr.clients import DaprClient
from dapr.clients.grpc._state import Concurrency, StateOptions
from dapr.clients.http.helpers import get_api_url
from dapr.clients.retry import RetryPolicy

from tasktide.dapr.ports import (
    EtagMismatch,
    SecretAccessDenied,
    SecretNotFound,
    SidecarUnavailable,
    StateItem,
    StoreError,
)

T = TypeVar("T")

ClientFactory = Callable[[], DaprClient]

# Returned by ``put`` when the read-back shows another writer already replaced our value: an etag that
# can never match, so the caller's next conditional write fails with EtagMismatch instead of clobbering.
STALE_ETAG = "tasktide-stale-etag"

_TRANSIENT_BUILD_ERRORS = (SidecarUnavailable, TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Bounded retry on UNAVAILABLE: ``attempts`` tries, exponential backoff from ``base_delay``."""

    attempts: int = 3
    base_delay: float = 0.1
    max_delay: float = 1.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * (2**attempt)))


class _CallDetails(NamedTuple):
    method: Any
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _ClientCallDetails(_CallDetails, grpc.ClientCallDetails):  # type: ignore[misc]
    pass


class DeadlineInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Gives every unary call without its own deadline ``timeout`` seconds, so a hung sidecar cannot block."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        if client_call_details.timeout is None:
            client_call_details = _ClientCallDetails(
                client_call_details.method,
                self._timeout,
                client_call_details.metadata,
                client_call_details.credentials,
                getattr(client_call_details, "wait_for_ready", None),
                getattr(client_call_details, "compression", None),
            )
        return continuation(client_call_details, request)


def sidecar_address(grpc_port: int, host: str | None = None) -> str:
    return f"{host or os.environ.get('DAPR_RUNTIME_HOST') or '127.0.0.1'}:{grpc_port}"


def probe_sidecar(timeout: float) -> None:
    """One quick GET of the health endpoint the SDK's constructor waits on; SidecarUnavailable if not 2xx."""
    url = f"{get_api_url()}/healthz/outbound"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except (urllib.error.URLError, OSError) as exc:
        raise SidecarUnavailable(f"Dapr sidecar health check {url} failed: {exc}") from exc
    if not 200 <= status < 300:
        raise SidecarUnavailable(f"Dapr sidecar health check {url} answered HTTP {status}")


def dapr_client_factory(
    grpc_port: int, *, host: str | None = None, call_timeout: float = 5.0, probe_timeout: float = 1.0
) -> ClientFactory:
    """A factory of ``DaprClient``s for the sidecar at ``host:grpc_port``; each build probes health first."""
    address = sidecar_address(grpc_port, host)

    def build() -> DaprClient:
        probe_sidecar(probe_timeout)
        return DaprClient(
            address=address,
            interceptors=[DeadlineInterceptor(call_timeout)],
            retry_policy=RetryPolicy(max_attempts=0),  # retries are ours (bounded, with reconnect)
        )

    return build


class _Connection:
    """A lazily built client, rebuilt after UNAVAILABLE (a fresh channel reconnects at once, unlike a
    channel sitting in gRPC's reconnect backoff)."""

    def __init__(self, factory: ClientFactory, retry: RetryConfig, what: str) -> None:
        self._factory = factory
        self._retry = retry
        self._what = what
        self._client: DaprClient | None = None
        self._lock = threading.Lock()

    def _current(self) -> DaprClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def _forget(self, client: DaprClient) -> None:
        # Closed, not just dropped: gRPC shares subchannels between channels to the same target, so a
        # still-open old channel would keep the new one in its reconnect backoff. A call another thread
        # has in flight on it ends CANCELLED, which ``call`` retries like UNAVAILABLE.
        with self._lock:
            if self._client is client:
                self._client = None
        client.close()  # type: ignore[no-untyped-call]

    def call(self, op: Callable[[DaprClient], T]) -> T:
        last_error = "no attempt made"
        for attempt in range(self._retry.attempts):
            if attempt:
                time.sleep(self._retry.delay(attempt - 1))
            try:
                client = self._current()
            except _TRANSIENT_BUILD_ERRORS as exc:
                last_error = str(exc)
                continue
            try:
                return op(client)
            except grpc.RpcError as exc:
                code = exc.code()
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    self._forget(client)
                    last_error = f"{code.name}: {exc.details()}"
                    continue
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    self._forget(client)
                    raise SidecarUnavailable(
                        f"Dapr sidecar did not answer in time ({self._what}): {exc.details()}"
                    ) from exc
                raise
        raise SidecarUnavailable(
            f"Dapr sidecar unavailable ({self._what}) after {self._retry.attempts} attempts: {last_error}"
        )

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]


def _code_and_details(exc: grpc.RpcError) -> tuple[Any, str]:
    return exc.code(), str(exc.details() or "")


# What a SQL state store (state.postgresql, state.sqlite, state.mysql ...) says when a first-write save
# finds the key live: its upsert updated no row. daprd passes it on as INTERNAL, not as an etag error.
LOST_FIRST_WRITE = "no item was updated"


def _is_etag_conflict(code: Any, details: str) -> bool:
    if code == grpc.StatusCode.ABORTED:
        return True
    lowered = details.lower()
    if code == grpc.StatusCode.INTERNAL and LOST_FIRST_WRITE in lowered:
        return True
    etag_codes = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
    return code in etag_codes and "etag" in lowered


class DaprSecretStore:
    """``SecretStore`` reading from Dapr secret store component ``store_name``.

    Looks in the bundle secret (Kubernetes Secret ``tasktide-secrets``, one key per secret) first, then in
    a secret named after the key itself (how ``secretstores.local.file`` serves a flat JSON file).
    """

    def __init__(
        self,
        store_name: str,
        client_factory: ClientFactory,
        *,
        retry: RetryConfig = RetryConfig(),
        bundle: str | None = "tasktide-secrets",
    ):
        self._store = store_name
        self._bundle = bundle
        self._conn = _Connection(client_factory, retry, f"secret store {store_name!r}")

    def _fetch(self, key: str) -> dict[str, str]:
        try:
            response = self._conn.call(lambda client: client.get_secret(self._store, key))
        except grpc.RpcError as exc:
            code, details = _code_and_details(exc)
            not_found = code == grpc.StatusCode.NOT_FOUND or (
                code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and "not found" in details.lower()
            )
            if not_found:
                raise SecretNotFound(key, details) from exc
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise SecretAccessDenied(key, self._store, details) from exc
            message = f"Dapr get_secret {key!r} from {self._store!r} failed: {code}: {details}"
            raise StoreError(message) from exc
        return dict(response.secret)

    def get_secret(self, name: str) -> str:
        if self._bundle:
            try:
                bundle = self._fetch(self._bundle)
            except SecretNotFound:
                bundle = {}
            if name in bundle:
                return bundle[name]
        data = self._fetch(name)
        if name in data:
            return data[name]
        if len(data) == 1:  # stores such as Kubernetes answer {<field>: value}
            return next(iter(data.values()))
        raise SecretNotFound(name, f"secret store {self._store!r} returned no value for it")

    def close(self) -> None:
        self._conn.close()


class DaprStateStore:
    """``StateStore`` on Dapr state store component ``store_name`` (first-write concurrency + etags)."""

    def __init__(self, store_name: str, client_factory: ClientFactory, *, retry: RetryConfig = RetryConfig()):
        self._store = store_name
        self._conn = _Connection(client_factory, retry, f"state store {store_name!r}")

    def _rpc(self, key: str, operation: str, op: Callable[[DaprClient], T]) -> T:
        try:
            return self._conn.call(op)
        except grpc.RpcError as exc:
            code, details = _code_and_details(exc)
            if operation != "get" and _is_etag_conflict(code, details):
                raise EtagMismatch(key, details) from exc
            raise StoreError(
                f"Dapr {operation} of key {key!r} in {self._store!r} failed: {code}: {details}"
            ) from exc

    @staticmethod
    def _metadata(ttl_seconds: int | None) -> dict[str, str]:
        if ttl_seconds is None:
            return {}
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        return {"ttlInSeconds": str(ttl_seconds)}

    def get(self, key: str) -> StateItem | None:
        response = self._rpc(key, "get", lambda client: client.get_state(self._store, key))
        if not response.etag and not response.data:
            return None
        return StateItem(value=bytes(response.data), etag=str(response.etag))

    def put_if_absent(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> bool:
        metadata = self._metadata(ttl_seconds)
        options = StateOptions(concurrency=Concurrency.first_write)
        try:
            self._rpc(
                key,
                "put_if_absent",
                lambda client: client.save_state(
                    self._store, key, value, options=options, state_metadata=metadata
                ),
            )
        except EtagMismatch:
            return False
        return True

    def put(self, key: str, value: bytes, *, etag: str | None, ttl_seconds: int | None = None) -> str:
        metadata = self._metadata(ttl_seconds)
        concurrency = Concurrency.first_write if etag is not None else Concurrency.last_write
        options = StateOptions(concurrency=concurrency)
        self._rpc(
            key,
            "put",
            lambda client: client.save_state(
                self._store, key, value, etag=etag, options=options, state_metadata=metadata
            ),
        )
        # Dapr's SaveState returns no etag: read it back, and only trust it if the value is still ours.
        item = self.get(key)
        if item is None or item.value != value:
            return STALE_ETAG
        return item.etag

    def delete(self, key: str, *, etag: str | None = None) -> None:
        options = StateOptions(concurrency=Concurrency.first_write) if etag is not None else None
        self._rpc(
            key, "delete", lambda client: client.delete_state(self._store, key, etag=etag, options=options)
        )

    def close(self) -> None:
        self._conn.close()
