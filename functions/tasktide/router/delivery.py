"""Deliver one CloudEvent to one HTTP subscriber as the Knative Kafka Broker's dispatcher does.

Consumes an event, a subscriber URL, a :class:`DeliverySpec` and the dispatcher's request headers; POSTs the
event in binary mode and reads the answer the way the real data plane does (measured on the
eventing-kafka-broker dispatcher, see docs/architecture.md):

- 2xx with an empty body: delivered. 2xx with a CloudEvent (binary or structured): delivered, and the
  reply is returned for the broker to publish. 2xx with any other body (e.g. functions-framework's
  `200 text/html "OK"`, `202 "Accepted"`): a failure, not retried, dead-lettered with ``knativeerrordest``
  only.
- 5xx, 404, 408, 409, 429, a timeout or no connection: retried after ``backoff`` (exponential:
  ``backoffDelay * 2^n`` before retry n = 1..retry; linear: ``backoffDelay * n``); after the last attempt
  dead-lettered with ``knativeerrordest``, ``knativeerrorcode``, ``knativeerrordata`` (base64 of the body,
  at most :data:`ERROR_DATA_LIMIT` bytes) and every ``Kne-<name>`` response header as extension ``<name>``;
  no answer at all (timeout, connection refused) carries ``knativeerrordest`` only.
- any other 4xx: not retried, dead-lettered at once (same extensions).

Emits a :class:`DeliveryOutcome` (with any reply event); a dead-letter sink that fails raises
:class:`DeadLetterFailed` (the broker counts and logs it).

The POSTs go through one :class:`HttpSender` (aiohttp, keep-alive): on the event path the sender's own
CPU is paid at every delivery, and aiohttp's is about a quarter of httpx's (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import aiohttp

from tasktide.edges import senderauth
from tasktide.messaging import codec
from tasktide.router.manifests import DeliverySpec

log = logging.getLogger(__name__)

RETRYABLE = frozenset({404, 408, 409, 429})
ERROR_DATA_LIMIT = 1024
DEFAULT_TIMEOUT = 600.0  # the dispatcher's request timeout when no `delivery.timeout` is set (10 min)
KNE_PREFIX = "kne-"
_EXTENSION = re.compile(r"^[a-z0-9]+$")
Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int | None], None]  # called before each retry with the failed attempt's status


class DeadLetterSink(Protocol):
    """Where undeliverable events go; ``target`` is a Kafka topic or URL naming the configured sink."""

    async def send(self, event: codec.CloudEvent, target: str) -> None: ...


class DeadLetterFailed(RuntimeError):
    """A dead-letter sink did not accept an event."""


class NoAnswer(Exception):
    """A POST got no HTTP answer: no connection, a reset, a timeout."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, read to its end; ``headers`` have lower-case names (repeats joined by ``, ``)."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""


class HttpSender:
    """POSTs over keep-alive connections (aiohttp), the session opened on the running loop at first use.

    As the dispatcher sends, and nothing more: only the caller's headers (no ``Content-Type``,
    ``User-Agent`` or ``Accept`` of its own: an event without ``datacontenttype`` arrives without a content
    type), no redirect followed (a 3xx is an answer, and a failure), no cookie kept from one delivery to the
    next. An idle connection is dropped after ``KEEP_IDLE_S``, before uvicorn's 5 s keep-alive closes it
    from the other end (a POST on a connection closing under it would get no answer)."""

    KEEP_IDLE_S = 4.0

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no cap on connections: a burst of deliveries never waits for one
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=self.KEEP_IDLE_S)
            self._session = aiohttp.ClientSession(
                connector=connector,
                skip_auto_headers=("Content-Type", "User-Agent", "Accept", "Accept-Encoding"),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> Reply:
        """POST ``body``; the answer read to its end, or :class:`NoAnswer` (``timeout`` bounds it all)."""
        try:
            async with self._open().post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                content = await response.read()
                names: dict[str, str] = {}
                for name, value in response.headers.items():
                    key = name.lower()
                    names[key] = f"{names[key]}, {value}" if key in names else value
                return Reply(response.status, names, content)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NoAnswer(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True)
class DeliveryOutcome:
    status: Literal["delivered", "dead_lettered", "dropped"]
    attempts: int
    status_code: int | None = None
    reply: codec.CloudEvent | None = None


@dataclass(frozen=True)
class Answer:
    """One attempt's result, classified as the dispatcher does."""

    result: Literal["delivered", "retry", "fail"]
    status: int | None = None
    body: bytes = b""
    reply: codec.CloudEvent | None = None
    error_extensions: Mapping[str, str] | None = None  # None: knativeerrordest only


def backoff(delivery: DeliverySpec, retry_number: int) -> float:
    """Seconds to wait before retry ``retry_number`` (1-based): exponential d*2^n, linear d*n."""
    delay = delivery.backoff_delay if delivery.backoff_delay is not None else 0.0
    if delivery.backoff_policy == "linear":
        return delay * retry_number
    return float(delay * 2**retry_number)


def _retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE


def kne_extensions(headers: Mapping[str, str]) -> dict[str, str]:
    """``Kne-Reason: quota`` -> ``{"reason": "quota"}`` (names that are no valid attribute are dropped)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(KNE_PREFIX) and _EXTENSION.match(lowered[len(KNE_PREFIX) :]):
            out[lowered[len(KNE_PREFIX) :]] = value
    return out


def with_error_extensions(
    event: codec.CloudEvent, url: str, status: int | None, body: bytes, extra: Mapping[str, str] | None = None
) -> codec.CloudEvent:
    """A copy of ``event`` carrying the Knative dead-letter error extensions (data untouched)."""
    attrs = codec.attributes(event)
    for name, value in (extra or {}).items():
        attrs.setdefault(name, value)
    attrs["knativeerrordest"] = url
    if status is not None:
        attrs["knativeerrorcode"] = str(status)
    if body:
        attrs["knativeerrordata"] = base64.b64encode(body[:ERROR_DATA_LIMIT]).decode()
    return codec.CloudEvent(attrs, event.get_data())


def _is_cloudevent(headers: Mapping[str, str]) -> bool:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return "ce-specversion" in headers or media == codec.STRUCTURED_CONTENT_TYPE


def classify(response: Reply) -> Answer:
    """What the dispatcher makes of one HTTP answer."""
    status, body = response.status, response.body
    if 200 <= status < 300:
        if _is_cloudevent(response.headers):
            try:
                reply = codec.from_http(dict(response.headers), body, raw_data=True)
            except codec.InvalidEvent as exc:
                log.warning("subscriber answered %d with a malformed CloudEvent: %s", status, exc)
                return Answer("fail", status, body)
            return Answer("delivered", status, reply=reply)
        if not body:
            return Answer("delivered", status)
        return Answer("fail", status, body)  # a non-empty body that is no CloudEvent
    extensions = {**kne_extensions(response.headers), "knativeerrorcode": str(status)}
    return Answer("retry" if _retryable(status) else "fail", status, body, error_extensions=extensions)


async def post_event(
    sender: HttpSender,
    url: str,
    event: codec.CloudEvent,
    timeout: float,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """POST ``event`` in binary mode; raises :class:`NoAnswer` (Knative's ``timeout`` bounds it all)."""
    ce_headers, body = codec.to_binary_http(event)
    # The sender's OIDC-style token for the target's audience, as Knative's dispatcher sends it (local mode).
    request_headers = {**(headers or {}), **senderauth.outgoing_headers(url), **ce_headers}
    return await sender.post(url, request_headers, body, timeout)


async def _attempt(
    sender: HttpSender, url: str, event: codec.CloudEvent, timeout: float, headers: Mapping[str, str]
) -> Answer:
    try:
        response = await post_event(sender, url, event, timeout, headers)
    except NoAnswer as exc:
        log.info("delivery to %s got no answer: %s", url, exc)
        return Answer("retry")
    return classify(response)


async def deliver(
    event: codec.CloudEvent,
    url: str,
    delivery: DeliverySpec | None,
    sender: HttpSender,
    *,
    dead_letter: DeadLetterSink | None = None,
    dead_letter_target: str = "",
    sleep: Sleep = asyncio.sleep,
    on_retry: OnRetry | None = None,
    headers: Mapping[str, str] | None = None,
) -> DeliveryOutcome:
    """Deliver ``event`` to ``url``; see the module docstring for the retry/dead-letter rules.

    ``headers`` are sent with every attempt (the dispatcher's ``Prefer: reply``, ``Kn-Namespace``, ...).
    ``on_retry(status)`` is called before each retry with the failed attempt's status (None: no answer).
    """
    spec = delivery or DeliverySpec()
    max_attempts = 1 + max(spec.retry or 0, 0)
    timeout = spec.timeout or DEFAULT_TIMEOUT
    answer = Answer("retry")
    attempt = 0
    while attempt < max_attempts:
        if attempt:
            if on_retry is not None:
                on_retry(answer.status)
            await sleep(backoff(spec, attempt))
        attempt += 1
        answer = await _attempt(sender, url, event, timeout, headers or {})
        if answer.result == "delivered":
            return DeliveryOutcome("delivered", attempt, answer.status, answer.reply)
        log.info("delivery to %s failed: %s (attempt %d/%d)", url, answer.status, attempt, max_attempts)
        if answer.result == "fail":
            break
    if answer.error_extensions is None:  # no answer, or a 2xx that was no CloudEvent: the destination only
        failed = with_error_extensions(event, url, None, b"")
    else:
        extra = {k: v for k, v in answer.error_extensions.items() if k != "knativeerrorcode"}
        failed = with_error_extensions(event, url, answer.status, answer.body, extra)
    if dead_letter is None:
        log.warning(
            "dropping event %s for %s after %d attempt(s): no dead-letter sink", event["id"], url, attempt
        )
        return DeliveryOutcome("dropped", attempt, answer.status)
    try:
        await dead_letter.send(failed, dead_letter_target)
    except DeadLetterFailed:
        raise
    except Exception as exc:
        raise DeadLetterFailed(f"dead-letter sink {dead_letter_target} failed: {exc!r}") from exc
    return DeliveryOutcome("dead_lettered", attempt, answer.status)
