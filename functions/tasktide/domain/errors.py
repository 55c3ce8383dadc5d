"""Domain errors: the exceptions the pure domain raises and the API maps to RFC 9457 problems.

Consumes nothing; emits ``FieldError`` values and ``DomainError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one input field, e.g. ``FieldError("title", "must not be empty")``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class DomainError(Exception):
    """Base of every domain error; ``detail`` is a human-readable sentence."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(DomainError):
    """Input failed validation; ``errors`` lists every field problem found (not just the first)."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        super().__init__("; ".join(str(error) for error in self.errors) or "validation failed")

    @classmethod
    def single(cls, field: str, message: str) -> ValidationFailed:
        """A failure with exactly one field error."""
        return cls((FieldError(field, message),))


class NotFound(DomainError):
    """The addressed resource does not exist (or is not visible to the caller)."""


class Conflict(DomainError):
    """The request conflicts with the current state of the resource."""


class PreconditionFailed(DomainError):
    """A precondition (e.g. ``If-Match`` version) did not hold."""
