"""Bearer JWT (HS256) auth: `sub` must equal the `{user_id}` in the path.

Tokens carry `sub`, `iat`, `exp`, `aud` (settings `jwt_audience`), `iss` (settings `jwt_issuer`) and a `kid`
header naming the signing key (a fingerprint of the secret). Verification picks the key by `kid` among the
keys of `jwt-secret` (comma-separated: the first is current and signs, the others are retired keys still
accepted during a rotation); a token whose `exp` lies more than `jwt_max_ttl` seconds ahead is refused, so a
leaked long-lived token cannot outlive the policy.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, Path, Request

from tasktide.api.problems import Problem

ALGORITHM = "HS256"
AUDIENCE = "tasktide-api"
ISSUER = "tasktide"
LEEWAY_SECONDS = 30
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


def authorize(request: Request, user_id: UserId) -> str:
    """The authenticated user, who must be the one named in the path."""
    services = request.app.state.services
    settings = services.settings
    token = _bearer(request)
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
    if claims.get("sub") != user_id:
        raise Problem(403, "The token belongs to another user.")
    return user_id


CurrentUser = Annotated[str, Depends(authorize)]
