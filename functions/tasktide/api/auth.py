"""Bearer JWT (HS256) auth: `sub` must equal the `{user_id}` in the path.

Tokens carry `sub`, `iat`, `exp`, `aud` (settings `jwt_audience`), `iss` (settings `jwt_issuer`) and a `kid`
header naming the signing key (a fingerprint of the secret). Verification picks the key by `kid` among the
keys of `jwt-secret` (comma-separated: the first is current and signs, the others are retired keys still
accepted during a rotation); a token whose `exp` lies more than `jwt_max_ttl` seconds ahead is refused, so a
leaked long-lived token cannot outlive the policy.

A verified token is remembered (bounded LRU, keyed by the token string) until its `exp`, with the key that
verified it and the audience, issuer and lifetime policy it passed: a later request with the same token
skips the signature check (most of `authorize`'s cost) as long as that key is still configured and the
policy unchanged; whether `sub` is the user in the path is checked on every request.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, Path, Request

from tasktide.api.problems import Problem

ALGORITHM = "HS256"
AUDIENCE = "tasktide-api"
ISSUER = "tasktide"
LEEWAY_SECONDS = 30
VERIFIED_TOKENS = 4096  # tokens remembered after their verification
UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")]


def key_id(secret: str) -> str:
    """The `kid` of a signing secret: a short fingerprint, so rotating needs no separate key names."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def encode_token(
    user_id: str,
    secret: str,
    ttl: timedelta = timedelta(hours=24),
    *,
    audience: str = AUDIENCE,
    issuer: str = ISSUER,
) -> str:
    now = datetime.now(UTC)
    claims = {"sub": user_id, "iat": now, "exp": now + ttl, "aud": audience, "iss": issuer}
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": key_id(secret)})


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if not header and request.url.path.endswith("/stream") and request.query_params.get("access_token"):
        header = "Bearer " + request.query_params["access_token"]  # EventSource cannot set headers
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Send 'Authorization: Bearer <token>'; mint one with `tasktide token USER_ID`.")
    return token.strip()


def _verification_key(token: str, current: str, previous: tuple[str, ...]) -> str:
    kid = jwt.get_unverified_header(token).get("kid")
    if kid is None:
        return current
    keys = {key_id(secret): secret for secret in (current, *previous)}
    if kid not in keys:
        raise jwt.InvalidSignatureError(f"unknown signing key {str(kid)[:32]!r}")
    return keys[kid]


@dataclass(frozen=True)
class Verified:
    """What a token's verification established, and under which key and policy."""

    sub: object
    exp: float
    secret: str
    policy: tuple[str, str, int]  # (audience, issuer, max ttl)


class VerifiedTokens:
    """A bounded LRU of verified tokens (thread-safe: sync dependencies run on the thread pool)."""

    def __init__(self, size: int = VERIFIED_TOKENS) -> None:
        self.size = size
        self._entries: OrderedDict[str, Verified] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, keys: tuple[str, ...], policy: tuple[str, str, int]) -> Verified | None:
        """The entry of ``token`` if the key that verified it is among ``keys`` and ``policy`` is the same;
        an entry whose key was removed or whose policy changed is dropped."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if entry.secret not in keys or entry.policy != policy:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return entry

    def put(self, token: str, entry: Verified) -> None:
        with self._lock:
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def drop(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)


verified_tokens = VerifiedTokens()
clock = time.time  # what a remembered token's `exp` is compared with (tests move it)


def authorize(request: Request, user_id: UserId) -> str:
    """The authenticated user, who must be the one named in the path."""
    services = request.app.state.services
    settings = services.settings
    token = _bearer(request)
    policy = (settings.jwt_audience, settings.jwt_issuer, settings.jwt_max_ttl)
    known = verified_tokens.get(token, (services.jwt_secret, *services.jwt_previous_secrets), policy)
    if known is not None:
        if clock() > known.exp + LEEWAY_SECONDS:
            verified_tokens.drop(token)
            raise Problem(401, "The token has expired; mint a new one.")
        if known.sub != user_id:
            raise Problem(403, "The token belongs to another user.")
        return user_id
    try:
        secret = _verification_key(token, services.jwt_secret, services.jwt_previous_secrets)
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["sub", "exp", "iat", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise Problem(401, "The token has expired; mint a new one.") from None
    except jwt.InvalidSignatureError:
        raise Problem(
            401,
            "The token's signature does not match this server's JWT secret: mint it with the secret the "
            "server uses (`TASKTIDE_JWT_SECRET=<the server's secret> tasktide token USER_ID`).",
        ) from None
    except jwt.DecodeError:
        raise Problem(
            401,
            "The bearer token is not a JWT (three base64url parts separated by dots); "
            "mint one with `tasktide token USER_ID`.",
        ) from None
    except jwt.InvalidTokenError as exc:
        raise Problem(401, f"The token is invalid: {exc}.") from None
    if float(claims["exp"]) > time.time() + settings.jwt_max_ttl + LEEWAY_SECONDS:
        raise Problem(
            401, f"The token lives longer than the {settings.jwt_max_ttl} s allowed; mint a new one."
        )
    verified_tokens.put(token, Verified(claims.get("sub"), float(claims["exp"]), secret, policy))
    if claims.get("sub") != user_id:
        raise Problem(403, "The token belongs to another user.")
    return user_id


async def current_user(request: Request, user_id: UserId) -> str:
    """`authorize` as a dependency: async, so FastAPI calls it on the event loop (it only reads a cache or
    checks an HMAC) instead of handing it to the thread pool, a thread round trip per request."""
    return authorize(request, user_id)


CurrentUser = Annotated[str, Depends(current_user)]
