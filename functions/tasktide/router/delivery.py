"""Deliver one CloudEvent to one HTTP subscriber with Knative delivery semantics.

Consumes an event, a subscriber URL and a :class:`DeliverySpec`; POSTs the event in binary mode, retries
on 5xx/404/408/409/429 and connection errors with the configured backoff, and after the last attempt (or at
once on any other non-2xx) hands the event, tagged with ``knativeerrorcode``/``knativeerrordest``/
``knativeerrordata``, to a :class:`DeadLetterSink`. Emits a :class:`DeliveryOutcome` (with any reply event).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx

from tasktide import ce
from tasktide.router.manifests import DeliverySpec

log = logging.getLogger(__name__)

RETRYABLE = frozenset({404, 408, 409, 429})
ERROR_DATA_LIMIT = 1024
DEFAULT_TIMEOUT = 30.0
Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int | None], None]  # called before each retry with the failed attempt's status


class DeadLetterSink(Protocol):
    """Where undeliverable events go; ``target`` is a Kafka topic or URL naming the configured sink."""

    async def send(self, event: ce.CloudEvent, target: str) -> None: ...


@dataclass(frozen=True)
class DeliveryOutcome:
    status: Literal["delivered", "dead_lettered", "dropped"]
    attempts: int
    status_code: int | None = None
    reply: ce.CloudEvent | None = None


def backoff(delivery: DeliverySpec, retry_number: int) -> float:
    """Seconds to wait before retry ``retry_number`` (1-based): exponential d*2^(n-1), linear d*n."""
    delay = delivery.backoff_delay if delivery.backoff_delay is not None else 0.0
    if delivery.backoff_policy == "linear":
        return delay * retry_number
    return float(delay * 2 ** (retry_number - 1))


def _retryable(status: int | None) -> bool:
    return status is None or status >= 500 or status in RETRYABLE


def with_error_extensions(event: ce.CloudEvent, url: str, status: int | None, body: bytes) -> ce.CloudEvent:
    """A copy of ``event`` carrying the Knative dead-letter error extensions."""
    attrs = ce.attributes(event)
    attrs["knativeerrordest"] = url
    if status is not None:
        attrs["knativeerrorcode"] = str(status)
    if body:
        attrs["knativeerrordata"] = base64.b64encode(body[:ERROR_DATA_LIMIT]).decode()
    return ce.CloudEvent(attrs, ce.event_data(event))


def _reply(response: httpx.Response) -> ce.CloudEvent | None:
    headers = {k.lower(): v for k, v in response.headers.items()}
    is_ce = "ce-specversion" in headers or headers.get("content-type", "").startswith(
        ce.STRUCTURED_CONTENT_TYPE
    )
    if not is_ce:
        return None
    try:
        return ce.from_http(headers, response.content)
    except ce.InvalidEvent as exc:
        log.warning("ignoring malformed reply event: %s", exc)
        return None


async def post_event(
    client: httpx.AsyncClient, url: str, event: ce.CloudEvent, timeout: float
) -> httpx.Response:
    headers, body = ce.to_binary_http(event)
    return await client.post(url, headers=headers, content=body, timeout=timeout)


async def deliver(
    event: ce.CloudEvent,
    url: str,
    delivery: DeliverySpec | None,
    client: httpx.AsyncClient,
    *,
    dead_letter: DeadLetterSink | None = None,
    dead_letter_target: str = "",
    sleep: Sleep = asyncio.sleep,
    on_retry: OnRetry | None = None,
) -> DeliveryOutcome:
    """Deliver ``event`` to ``url``; see the module docstring for the retry/dead-letter rules.

    ``on_retry(status)`` is called before each retry with the failed attempt's status (None: no answer).
    """
    spec = delivery or DeliverySpec()
    max_attempts = 1 + max(spec.retry or 0, 0)
    timeout = spec.timeout or DEFAULT_TIMEOUT
    status: int | None = None
    body = b""
    attempt = 0
    while attempt < max_attempts:
        if attempt:
            if on_retry is not None:
                on_retry(status)
            await sleep(backoff(spec, attempt))
        attempt += 1
        try:
            response = await post_event(client, url, event, timeout)
        except httpx.HTTPError as exc:
            status, body = None, f"{type(exc).__name__}: {exc}".encode()
            log.info("delivery to %s failed (attempt %d/%d): %s", url, attempt, max_attempts, exc)
            continue
        status, body = response.status_code, response.content
        if 200 <= status < 300:
            return DeliveryOutcome("delivered", attempt, status, _reply(response))
        log.info("delivery to %s got %d (attempt %d/%d)", url, status, attempt, max_attempts)
        if not _retryable(status):
            break
    failed = with_error_extensions(event, url, status, body)
    if dead_letter is None:
        log.warning(
            "dropping event %s for %s after %d attempt(s): no dead-letter sink", event["id"], url, attempt
        )
        return DeliveryOutcome("dropped", attempt, status)
    await dead_letter.send(failed, dead_letter_target)
    return DeliveryOutcome("dead_lettered", attempt, status)
