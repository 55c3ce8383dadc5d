"""Sender authentication on the event path: the bearer tokens Knative Eventing's OIDC feature sends.

On a cluster with ``authentication-oidc`` enabled, the Kafka Broker's dispatcher (for a Trigger) and a
PingSource send ``Authorization: Bearer <JWT>`` with every event: a Kubernetes service-account token of the
sender's OIDC identity (``sub`` = ``system:serviceaccount:<ns>:<name>-oidc-<group>-<kind>``) whose ``aud`` is
the subscriber's audience (the ``audience`` of the Trigger's subscriber / PingSource's sink:
:func:`service_audience`), signed by the cluster's service-account issuer. Knative Serving does not check
it, so the function server does (:class:`SenderAuth`, from ``tasktide.functions._server.guarded``).

Locally ``tasktide dev`` mirrors that: the router (``tasktide.router.delivery.post_event``) asks
:func:`outgoing_headers` for the token of each delivery, signed HS256 with a per-process key for the audience
of the target ``/services/<name>``, and each function verifies it with the same key.

Consumes: settings ``TASKTIDE_EVENT_AUDIENCE`` (verification is on when it is set), and the keys: HS256
secrets ``TASKTIDE_EVENT_SIGNING_KEY`` (comma-separated: the first signs, all verify) and/or a JWKS URL
``TASKTIDE_EVENT_JWKS_URL`` (the cluster issuer's keys, RS256/ES256: ``https://kubernetes.default.svc/openid/
v1/jwks``, fetched with the pod's own service-account token and CA); optional ``TASKTIDE_EVENT_ISSUER`` and
``TASKTIDE_EVENT_SUBJECTS`` (comma-separated, a trailing ``*`` matches any suffix, as EventPolicy ``sub``).
Emits: 401 ``application/problem+json`` with ``WWW-Authenticate: Bearer`` for a POST without a valid token
(the Kafka Broker dead-letters a 401 without retrying); other methods (``GET /healthz``, ``/metrics``, Dapr's
``OPTIONS``) pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import ssl
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

LOCAL_ISSUER = "tasktide-router"
LOCAL_SUBJECT = "system:serviceaccount:tasktide:tasktide-router"
LOCAL_TTL = 300.0  # seconds: a token covers one delivery attempt (Knative's tokens live an hour)
LEEWAY = 30.0  # seconds of clock skew accepted on exp/iat/nbf
VERIFIED_TTL = 60.0  # seconds a verified token is trusted again without decoding it (never past its exp)
VERIFIED_MAX = 1024  # tokens kept verified at most (the cache is emptied when full)
HMAC_ALGORITHMS = ("HS256",)
JWKS_ALGORITHMS = ("RS256", "ES256")
JWKS_TTL = 300.0
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICES_PREFIX = "/services/"


def service_audience(name: str, namespace: str) -> str:
    """Knative's audience of a Knative Service: ``serving.knative.dev/service/<namespace>/<name>``."""
    return f"serving.knative.dev/service/{namespace}/{name}"


def split_keys(text: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (text or "").split(",") if k.strip())


def sign(
    key: str, audience: str, *, subject: str = LOCAL_SUBJECT, ttl: float = LOCAL_TTL, now: float | None = None
) -> str:
    """A token as the local router sends it: HS256, ``iss`` tasktide-router, ``aud`` = ``audience``."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": LOCAL_ISSUER, "sub": subject, "aud": audience, "iat": issued, "exp": issued + int(ttl)}
    return jwt.encode(claims, key, algorithm="HS256")


@dataclass(frozen=True)
class Signer:
    """The local router's side: a key and the audience of each function path (``/services/<name>``).

    As Knative's dispatcher reuses a service-account token until it nears expiry, a token is reused for
    its audience until half its lifetime has passed (one HS256 signature per audience every ``ttl / 2``
    seconds instead of one per delivery)."""

    key: str
    audiences: Mapping[str, str]  # "/services/<name>" -> audience
    ttl: float = LOCAL_TTL
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict, compare=False, repr=False)

    def token(self, audience: str) -> str:
        """A token for ``audience`` with at least half of ``ttl`` left."""
        now = time.time()
        cached = self._tokens.get(audience)
        if cached is not None and now < cached[1]:
            return cached[0]
        token = sign(self.key, audience, ttl=self.ttl, now=now)
        self._tokens[audience] = (token, now + self.ttl / 2)
        return token

    def headers(self, url: str) -> dict[str, str]:
        audience = self.audiences.get(urlsplit(url).path)
        if audience is None:
            return {}
        return {"Authorization": f"Bearer {self.token(audience)}"}


_signer: Signer | None = None


def install_signer(signer: Signer | None) -> None:
    """Make the router of this process authenticate its deliveries (``None``: stop)."""
    global _signer
    _signer = signer


def outgoing_headers(url: str) -> dict[str, str]:
    """``Authorization`` for a delivery to ``url``, as Knative's dispatcher adds it ({}: not configured)."""
    signer = _signer
    return signer.headers(url) if signer is not None else {}


_process_key: list[str] = []


def process_key() -> str:
    """This process's random signing key (``tasktide dev`` without ``TASKTIDE_EVENT_SIGNING_KEY``): one per
    process, so every dev app and router of the process agree; never written anywhere."""
    if not _process_key:
        _process_key.append(secrets.token_urlsafe(32))
    return _process_key[0]


class SenderRejected(Exception):
    """The request's sender is not authenticated; ``str(exc)`` says why (safe to answer: no token echoed)."""


@dataclass
class JwksKeys:
    """Verification keys of an OIDC issuer's JWKS URL, cached ``ttl`` seconds, refetched for unknown kids
    (at most once per 10 s). On a cluster the URL is the API server's and needs the pod's own token."""

    url: str
    token_file: Path = SA_DIR / "token"
    ca_file: Path = SA_DIR / "ca.crt"
    ttl: float = JWKS_TTL
    _keys: dict[str, Any] = field(default_factory=dict)
    _fetched: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _fetch(self) -> None:
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        if self.token_file.is_file():
            request.add_header("Authorization", f"Bearer {self.token_file.read_text().strip()}")
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file.is_file() else None
        with urllib.request.urlopen(request, timeout=5.0, context=context) as response:
            document = json.loads(response.read(1024 * 1024))
        keys = jwt.PyJWKSet.from_dict(document).keys
        self._keys = {str(k.key_id): k.key for k in keys}
        self._fetched = time.monotonic()

    def key(self, kid: str | None) -> Any:
        with self._lock:
            age = time.monotonic() - self._fetched
            if age > self.ttl or (str(kid) not in self._keys and age > 10.0):
                try:
                    self._fetch()
                except (OSError, ValueError, jwt.PyJWKError) as exc:
                    log.warning("event sender keys: %s unreachable: %s", self.url, exc)
            if str(kid) in self._keys:
                return self._keys[str(kid)]
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
        raise SenderRejected("token signed by an unknown key")


@dataclass(frozen=True)
class Verifier:
    """Checks ``Authorization: Bearer`` against one audience, HMAC keys and/or a JWKS, issuer, subjects.

    A token that verified is remembered (its exact text) for :data:`VERIFIED_TTL` seconds and never past
    its ``exp``: a sender reusing its token (Knative's dispatcher, the local :class:`Signer`) costs one
    signature check a minute instead of one per event."""

    audience: str
    hmac_keys: tuple[str, ...] = ()
    jwks: JwksKeys | None = None
    issuer: str | None = None
    subjects: tuple[str, ...] = ()
    _verified: dict[str, tuple[Mapping[str, Any], float]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if not self.hmac_keys and self.jwks is None:
            raise ValueError(
                "event sender verification needs TASKTIDE_EVENT_SIGNING_KEY or TASKTIDE_EVENT_JWKS_URL"
            )

    @property
    def blocking(self) -> bool:
        """Verification may fetch keys over the network (run it off the event loop)."""
        return self.jwks is not None

    def verify(self, authorization: str | None) -> Mapping[str, Any]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SenderRejected("missing sender token: events must come from the broker or a source")
        token = token.strip()
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        claims = self._decode(token)
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (claims, min(time.time() + VERIFIED_TTL, float(claims["exp"])))
        return claims

    def _decode(self, token: str) -> Mapping[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise SenderRejected("malformed token") from exc
        algorithm = str(header.get("alg", ""))
        if algorithm in HMAC_ALGORITHMS and self.hmac_keys:
            candidates: Sequence[Any] = self.hmac_keys
        elif algorithm in JWKS_ALGORITHMS and self.jwks is not None:
            candidates = [self.jwks.key(header.get("kid"))]
        else:
            raise SenderRejected(f"token algorithm {algorithm[:16]!r} not accepted")
        claims: Mapping[str, Any] | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=LEEWAY,
                    options={"require": ["exp", "aud", "sub"]},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError as exc:
                raise SenderRejected("token expired") from exc
            except jwt.InvalidAudienceError as exc:
                raise SenderRejected("token is for another audience") from exc
            except jwt.InvalidIssuerError as exc:
                raise SenderRejected("token from another issuer") from exc
            except jwt.InvalidTokenError as exc:
                raise SenderRejected(f"invalid token: {type(exc).__name__}") from exc
        if claims is None:
            raise SenderRejected("token signature does not verify")
        if self.subjects and not any(_matches(pattern, str(claims["sub"])) for pattern in self.subjects):
            raise SenderRejected("sender not allowed to send to this function")
        return claims


def _matches(pattern: str, subject: str) -> bool:
    if pattern.endswith("*"):
        return subject.startswith(pattern[:-1])
    return subject == pattern


def verifier_from_settings(settings: Any, audience: str | None = None) -> Verifier | None:
    """The verifier the settings configure (``audience`` overrides ``TASKTIDE_EVENT_AUDIENCE``), or None."""
    audience = audience or settings.event_audience
    if not audience:
        return None
    jwks = JwksKeys(settings.event_jwks_url) if settings.event_jwks_url else None
    return Verifier(
        audience,
        split_keys(settings.event_signing_key),
        jwks,
        settings.event_issuer or None,
        split_keys(settings.event_subjects),
    )


async def _send_401(send: Send, detail: str) -> None:
    body = json.dumps(
        {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": detail}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer error="invalid_token"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SenderAuth:
    """ASGI: a POST must carry a valid sender token (:class:`Verifier`) before its body is even read."""

    def __init__(self, app: ASGIApp, verifier: Verifier) -> None:
        self.app, self.verifier = app, verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        authorization = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), None
        )
        try:
            if self.verifier.blocking:
                await asyncio.to_thread(self.verifier.verify, authorization)
            else:
                self.verifier.verify(authorization)
        except SenderRejected as exc:
            log.warning("event refused on %s: %s", scope.get("path", ""), exc)
            await _send_401(send, str(exc))
            return
        await self.app(scope, receive, send)
