"""Ports for secrets and key/value state, and the errors every adapter raises.

Consumes: nothing (pure types).
Emits: ``SecretStore`` / ``StateStore`` protocols, the ``StateItem`` value object and the error types
``SecretNotFound``, ``SecretAccessDenied``, ``EtagMismatch``, ``SidecarUnavailable`` and ``StoreError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StoreError(RuntimeError):
    """A store failed in a way callers cannot act on (misconfiguration, unexpected backend error)."""


class SecretNotFound(KeyError):
    """The secret store has no secret with this name."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(name)
        self.name = name
        self.detail = detail

    def __str__(self) -> str:
        suffix = f" ({self.detail})" if self.detail else ""
        return f"secret {self.name!r} not found{suffix}"


class SecretAccessDenied(SecretNotFound):
    """The secret store refuses this secret to this app (Dapr: the Configuration's ``spec.secrets.scopes``).

    A ``SecretNotFound`` so that optional secrets fall back as when absent; its message names the cause."""

    def __init__(self, name: str, store: str, detail: str = "") -> None:
        super().__init__(name, detail)
        self.store = store

    def __str__(self) -> str:
        return (
            f"secret {self.name!r} is denied to this app by secret store {self.store!r}: allow it in the "
            f"Dapr Configuration's spec.secrets.scopes (dapr/configuration.yaml) or keep it in the "
            f"tasktide-secrets bundle ({self.detail})"
        )


class EtagMismatch(RuntimeError):
    """A conditional write/delete lost: the stored etag differs from the one given (or the key is gone)."""

    def __init__(self, key: str, detail: str = "") -> None:
        suffix = f": {detail}" if detail else ""
        super().__init__(f"etag mismatch for state key {key!r}{suffix}")
        self.key = key


class SidecarUnavailable(RuntimeError):
    """The Dapr sidecar could not be reached after bounded retries.

    Transient: callers let it propagate (HTTP 5xx) so the triggering event is redelivered.
    """


@dataclass(frozen=True, slots=True)
class StateItem:
    """A stored value together with the etag identifying this version of it."""

    value: bytes
    etag: str


@runtime_checkable
class SecretStore(Protocol):
    def get_secret(self, name: str) -> str:
        """Return the secret called ``name``; raise ``SecretNotFound`` when there is none."""
        ...


@runtime_checkable
class StateStore(Protocol):
    def get(self, key: str) -> StateItem | None:
        """Return the live (non-expired) item, or None."""
        ...

    def put_if_absent(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> bool:
        """First write wins: True if this call created the key, False if a live item already existed."""
        ...

    def put(self, key: str, value: bytes, *, etag: str | None, ttl_seconds: int | None = None) -> str:
        """Write ``value``; with ``etag`` only if it still matches (else ``EtagMismatch``). -> new etag."""
        ...

    def delete(self, key: str, *, etag: str | None = None) -> None:
        """Delete ``key`` (no-op if absent); with ``etag`` only if it matches (else ``EtagMismatch``)."""
        ...
